import { createHash } from 'node:crypto'
import * as fs from 'node:fs'
import { mkdir, stat, rm, rmdir } from 'node:fs/promises'
import { dirname, join, sep } from 'node:path'
import { SeedingError } from './errors.js'
import type { Metainfo } from './metainfo.js'

/** A file of a torrent on disk, with where its bytes sit in the torrent's byte stream. */
interface FileSlot {
  path: string
  offset: number
  length: number
  fd?: number
  opening?: Promise<number>
  writable: boolean
}

/** Size and modification time of each file, kept with the resume bitfield. */
export interface FileState { size: number, mtimeMs: number }

/** Counters the engine sums into its status: what the disk was asked for. */
export const diskStats = { readBytes: 0, writtenBytes: 0, hashedBytes: 0 }

/**
 * Maps a torrent's pieces onto its files under `savePath`. Reads and writes go through positional
 * fs calls on lazily opened descriptors (a seeding torrent that nobody asks for holds no fd).
 */
export class TorrentStorage {
  private readonly files: FileSlot[]
  readonly root: string
  /** Open files read-write (set while the torrent is incomplete). */
  writeMode = false
  /** Set by deleteFiles: a piece write still in flight must not bring a file back. */
  private deleted = false

  constructor (readonly meta: Metainfo, readonly savePath: string) {
    const base = meta.multiFile ? join(savePath, meta.name) : savePath
    this.root = meta.multiFile ? base : join(savePath, meta.name)
    this.files = meta.files.map(f => {
      const path = meta.multiFile ? join(base, ...f.path) : join(savePath, meta.name)
      // metainfo.ts refuses `..` and separators; this is the second lock on the door
      if (!path.startsWith(savePath.endsWith(sep) ? savePath : savePath + sep)) {
        throw new SeedingError('TORRENT_BAD_PATH', `file path ${f.path.join('/')} leaves the download folder`)
      }
      return { path, offset: f.offset, length: f.length, writable: false }
    })
  }

  get paths (): string[] { return this.files.map(f => f.path) }

  pieceLength (index: number): number {
    const { pieceLength, length } = this.meta
    return index === this.meta.pieceCount - 1 ? length - pieceLength * index : pieceLength
  }

  /** Reads `length` bytes at torrent offset `pos` into `into` at `at`. */
  async read (pos: number, length: number, into: Buffer, at = 0): Promise<void> {
    let done = 0
    for (const { file, fileOffset, n } of this.spans(pos, length)) {
      const fd = await this.open(file, false)
      let got = 0
      while (got < n) {
        const r = await readAsync(fd, into, at + done + got, n - got, fileOffset + got)
        if (r === 0) throw new SeedingError('SEEDING_SHORT_READ', `${file.path} is shorter than the torrent says`)
        got += r
      }
      done += n
    }
    diskStats.readBytes += length
  }

  async write (pos: number, data: Uint8Array): Promise<void> {
    let done = 0
    for (const { file, fileOffset, n } of this.spans(pos, data.length)) {
      const fd = await this.open(file, true)
      let put = 0
      while (put < n) {
        put += await writeAsync(fd, data, done + put, n - put, fileOffset + put)
      }
      done += n
    }
    diskStats.writtenBytes += data.length
  }

  /** SHA-1 of piece `index` as it is on disk, or undefined when a file is missing or short. */
  async hashPiece (index: number, scratch: Buffer): Promise<Buffer | undefined> {
    const len = this.pieceLength(index)
    try {
      await this.read(index * this.meta.pieceLength, len, scratch)
    } catch {
      return undefined
    }
    diskStats.hashedBytes += len
    return createHash('sha1').update(scratch.subarray(0, len)).digest()
  }

  /** Creates folders and the files' full sizes (sparse), so reads of unwritten pieces fail cleanly. */
  async prepare (): Promise<void> {
    for (const f of this.files) {
      await mkdir(dirname(f.path), { recursive: true })
      const fd = await this.open(f, true)
      const st = fs.fstatSync(fd)
      if (st.size !== f.length) fs.ftruncateSync(fd, f.length)
    }
  }

  /** Size and mtime of every file; undefined where a file is missing. */
  async fileStates (): Promise<Array<FileState | undefined>> {
    return await Promise.all(this.files.map(async f => {
      try {
        const st = await stat(f.path)
        return { size: st.size, mtimeMs: st.mtimeMs }
      } catch {
        return undefined
      }
    }))
  }

  /** fdatasync every file opened for writing (before a resume bitfield is saved). */
  async flush (): Promise<void> {
    await Promise.all(this.files.filter(f => f.writable && f.fd !== undefined).map(async f => {
      await new Promise<void>((resolve, reject) => fs.fdatasync(f.fd!, err => err !== null ? reject(err) : resolve()))
    }))
  }

  close (): void {
    for (const f of this.files) {
      if (f.fd !== undefined) fs.close(f.fd, () => {})
      f.fd = undefined
      f.opening = undefined
      f.writable = false
    }
  }

  /** Deletes the torrent's files and the folders left empty; no later write recreates them. */
  async deleteFiles (): Promise<void> {
    this.deleted = true
    this.close()
    for (const f of this.files) await rm(f.path, { force: true })
    if (this.meta.multiFile) {
      const dirs = new Set<string>()
      for (const f of this.files) {
        for (let d = dirname(f.path); d.startsWith(this.root) && d.length >= this.root.length; d = dirname(d)) dirs.add(d)
      }
      for (const d of [...dirs].sort((a, b) => b.length - a.length)) await rmdir(d).catch(() => {})
    }
  }

  private * spans (pos: number, length: number): Generator<{ file: FileSlot, fileOffset: number, n: number }> {
    const end = pos + length
    if (pos < 0 || end > this.meta.length) throw new SeedingError('SEEDING_OUT_OF_RANGE', `range ${pos}+${length} is outside the torrent`)
    // binary search for the first file containing `pos`
    let lo = 0
    let hi = this.files.length - 1
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1
      if (this.files[mid]!.offset <= pos) lo = mid
      else hi = mid - 1
    }
    for (let i = lo; i < this.files.length && pos < end; i++) {
      const file = this.files[i]!
      if (file.length === 0 || file.offset + file.length <= pos) continue
      const fileOffset = pos - file.offset
      const n = Math.min(end - pos, file.length - fileOffset)
      yield { file, fileOffset, n }
      pos += n
    }
  }

  private async open (file: FileSlot, write: boolean): Promise<number> {
    if (this.deleted) throw new SeedingError('SEEDING_REMOVED', 'the torrent was removed with its data')
    if (file.fd !== undefined && (file.writable || !write)) return file.fd
    if (file.opening !== undefined) {
      await file.opening.catch(() => {})
      return await this.open(file, write)
    }
    // a torrent still downloading opens read-write from the start, so a descriptor is never
    // swapped under reads in flight; seeding torrents open read-only
    const rw = write || this.writeMode
    file.opening = (async () => {
      if (rw) await mkdir(dirname(file.path), { recursive: true })
      return await new Promise<number>((resolve, reject) => {
        fs.open(file.path, rw ? fs.constants.O_RDWR | fs.constants.O_CREAT : fs.constants.O_RDONLY, 0o644, (err, fd) => err !== null ? reject(err) : resolve(fd))
      })
    })()
    try {
      const fd = await file.opening
      if (file.fd !== undefined) fs.close(file.fd, () => {})
      file.fd = fd
      file.writable = rw
      return fd
    } finally {
      file.opening = undefined
    }
  }
}

function readAsync (fd: number, buf: Uint8Array, off: number, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fs.read(fd, buf, off, len, pos, (err, n) => err !== null ? reject(err) : resolve(n))
  })
}

function writeAsync (fd: number, buf: Uint8Array, off: number, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fs.write(fd, buf, off, len, pos, (err, n) => err !== null ? reject(err) : resolve(n))
  })
}
