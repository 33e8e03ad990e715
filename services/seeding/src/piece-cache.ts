import type { Torrent } from './torrent.js'

/** A cached piece lent to a sender; `release()` once the socket has taken the bytes. */
export interface PieceRef {
  readonly buf: Buffer
  release (): void
}

interface Entry {
  torrent: Torrent
  size: number
  buf: Buffer
  ready: Promise<void>
  /** Senders holding subarrays of `buf` (plus one while the entry is cached). */
  refs: number
}

/**
 * Whole pieces read for upload, shared by every peer and kept in LRU order within a byte budget.
 * A downloader asks for a piece's blocks in a burst: one positional read per piece instead of one
 * per 16 KiB block, and blocks go out as subarrays of the cached piece (no copy). Evicted buffers
 * are reused once no socket still holds a block of them: allocating a fresh megabyte per piece
 * made V8 run a full GC every few dozen pieces (external-memory pressure), a quarter of the
 * upload path's time.
 */
export class PieceCache {
  private readonly entries = new Map<string, Entry>()
  private readonly free = new Map<number, Buffer[]>()
  private bytes = 0
  private freeBytes = 0
  hits = 0
  misses = 0

  constructor (readonly budget: number) {}

  async acquire (torrent: Torrent, index: number): Promise<PieceRef> {
    const key = `${torrent.infoHash}:${index}`
    let e = this.entries.get(key)
    if (e !== undefined) {
      this.hits++
      this.entries.delete(key)
      this.entries.set(key, e)
    } else {
      this.misses++
      const size = torrent.pieceLength(index)
      const buf = this.take(size)
      const entry: Entry = { torrent, size, buf, refs: 1, ready: Promise.resolve() }
      entry.ready = torrent.storage!.read(index * torrent.meta!.pieceLength, size, buf)
      entry.ready.catch(() => { if (this.entries.get(key) === entry) this.remove(key, entry) })
      this.entries.set(key, entry)
      this.bytes += size
      this.evict()
      e = entry
    }
    const entry = e
    entry.refs++
    try {
      await entry.ready
    } catch (err) {
      this.unref(entry)
      throw err
    }
    let released = false
    return {
      buf: entry.buf,
      release: () => {
        if (released) return
        released = true
        this.unref(entry)
      }
    }
  }

  /** Forgets a torrent's pieces (removed, rechecked or its files changed). */
  drop (torrent: Torrent): void {
    for (const [k, e] of this.entries) if (e.torrent === torrent) this.remove(k, e)
  }

  get size (): number { return this.bytes }

  private take (size: number): Buffer {
    const list = this.free.get(size)
    const buf = list?.pop()
    if (buf !== undefined) {
      this.freeBytes -= size
      return buf
    }
    return Buffer.allocUnsafeSlow(size)
  }

  private unref (e: Entry): void {
    if (--e.refs > 0) return
    // keep a few spare buffers, never more than a quarter of the budget
    if (this.freeBytes + e.size > this.budget / 4) return
    const list = this.free.get(e.size) ?? []
    list.push(e.buf)
    this.free.set(e.size, list)
    this.freeBytes += e.size
  }

  private remove (key: string, e: Entry): void {
    this.entries.delete(key)
    this.bytes -= e.size
    this.unref(e)
  }

  private evict (): void {
    for (const [k, e] of this.entries) {
      if (this.bytes <= this.budget) break
      this.remove(k, e)
    }
  }
}
