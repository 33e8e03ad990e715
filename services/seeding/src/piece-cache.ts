import type { Torrent } from './torrent.js'

interface Entry { torrent: Torrent, size: number, piece: Promise<Buffer> }

/**
 * Whole pieces read for upload, shared by every peer and kept in LRU order within a byte budget.
 * A downloader asks for a piece's blocks in a burst: one positional read per piece instead of one
 * per 16 KiB block, and blocks go out as subarrays of the cached piece (no copy).
 */
export class PieceCache {
  private readonly entries = new Map<string, Entry>()
  private bytes = 0
  hits = 0
  misses = 0

  constructor (readonly budget: number) {}

  get (torrent: Torrent, index: number): Promise<Buffer> {
    const key = `${torrent.infoHash}:${index}`
    const e = this.entries.get(key)
    if (e !== undefined) {
      this.hits++
      this.entries.delete(key)
      this.entries.set(key, e)
      return e.piece
    }
    this.misses++
    const size = torrent.pieceLength(index)
    const buf = Buffer.allocUnsafe(size)
    const piece = torrent.storage!.read(index * torrent.meta!.pieceLength, size, buf).then(() => buf)
    const entry: Entry = { torrent, size, piece }
    this.entries.set(key, entry)
    this.bytes += size
    piece.catch(() => { if (this.entries.get(key) === entry) { this.entries.delete(key); this.bytes -= size } })
    this.evict()
    return piece
  }

  /** Forgets a torrent's pieces (removed, rechecked or its files changed). */
  drop (torrent: Torrent): void {
    for (const [k, e] of this.entries) {
      if (e.torrent === torrent) { this.entries.delete(k); this.bytes -= e.size }
    }
  }

  get size (): number { return this.bytes }

  private evict (): void {
    for (const [k, e] of this.entries) {
      if (this.bytes <= this.budget) break
      this.entries.delete(k)
      this.bytes -= e.size
    }
  }
}
