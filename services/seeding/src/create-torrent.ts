import { createHash, type Hash } from 'node:crypto'
import { open, readdir, stat, type FileHandle } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { encode, type EncodableObject } from '@btt/wire'
import { SeedingError } from './errors.js'
import {
  BLOCK, MAX_FILES, MAX_PIECE_LENGTH, MAX_TOTAL_LENGTH, checkPathComponent, encodeTorrent, isTrackerUrl, parseTorrent,
  type Metainfo
} from './metainfo.js'

export interface CreateTorrentOptions {
  /** Bytes per piece: a multiple of 16 KiB up to 64 MiB. Default: see `autoPieceLength`. */
  pieceLength?: number
  /** Tracker tiers (http, https, udp). Default none: nothing is announced unless asked. */
  announce?: string[][]
  private?: boolean
  /** Torrent name. Default: the file or folder name. */
  name?: string
  comment?: string
  createdBy?: string
  /** Unix seconds. Default: now. */
  creationDate?: number
  signal?: AbortSignal
  onProgress?: (hashedBytes: number, totalBytes: number) => void
}

/** Bytes per read: large reads keep the disk streaming and the per-call overhead negligible. */
const READ_SIZE = 4 * 1024 * 1024
const MIN_AUTO_PIECE = 16 * 1024
const MAX_AUTO_PIECE = 16 * 1024 * 1024
/** Aim for at most this many pieces: small .torrent files, fine-grained enough to share early. */
const TARGET_PIECES = 2000

/** A power of two from 16 KiB to 16 MiB giving about 1,000–2,000 pieces. */
export function autoPieceLength (totalBytes: number): number {
  let pl = MIN_AUTO_PIECE
  while (pl < MAX_AUTO_PIECE && totalBytes / pl > TARGET_PIECES) pl *= 2
  return pl
}

interface SourceFile { abs: string, path: string[], length: number }

/**
 * Creates a v1 .torrent for a file or a folder. A folder is walked recursively for regular files
 * (symlinks and special files are skipped), ordered like mktorrent: by the byte order of the
 * '/'-joined relative path. Files are streamed through sha1 in large reads, one read in flight
 * while the previous chunk is hashed. Aborting through `signal` rejects with the signal's reason.
 */
export async function createTorrent (path: string, opts: CreateTorrentOptions = {}): Promise<{ torrent: Uint8Array, metainfo: Metainfo }> {
  checkOptions(opts)
  const name = opts.name ?? basename(path)
  checkPathComponent(name, 'name')
  const st = await stat(path)
  let files: SourceFile[]
  let multiFile: boolean
  if (st.isFile()) {
    files = [{ abs: path, path: [name], length: st.size }]
    multiFile = false
  } else if (st.isDirectory()) {
    files = await walk(path, opts.signal)
    multiFile = true
  } else {
    throw new SeedingError('TORRENT_BAD_PATH', `${path} is neither a regular file nor a folder`)
  }
  const total = files.reduce((n, f) => n + f.length, 0)
  if (total === 0) throw new SeedingError('TORRENT_EMPTY', `${path} holds no data (no files, or only empty ones)`)
  if (total > MAX_TOTAL_LENGTH) throw new SeedingError('TORRENT_TOO_LARGE', `${path} holds ${total} bytes; the limit is ${MAX_TOTAL_LENGTH}`)
  const pieceLength = opts.pieceLength ?? autoPieceLength(total)
  const pieces = await hashFiles(files, pieceLength, total, opts)

  const info: EncodableObject = {
    name,
    'piece length': pieceLength,
    pieces,
    private: opts.private === true ? 1 : undefined
  }
  if (multiFile) info.files = files.map(f => ({ length: f.length, path: f.path }))
  else info.length = total
  const torrent = encodeTorrent({
    info: encode(info),
    announce: opts.announce ?? [],
    ...(opts.comment !== undefined ? { comment: opts.comment } : {}),
    ...(opts.createdBy !== undefined ? { createdBy: opts.createdBy } : {}),
    creationDate: opts.creationDate ?? Math.floor(Date.now() / 1000)
  })
  return { torrent, metainfo: parseTorrent(torrent) }
}

function checkOptions (opts: CreateTorrentOptions): void {
  const pl = opts.pieceLength
  if (pl !== undefined && (!Number.isInteger(pl) || pl <= 0 || pl % BLOCK !== 0 || pl > MAX_PIECE_LENGTH)) {
    throw new SeedingError('TORRENT_PIECE_LENGTH', `pieceLength ${pl} must be a positive multiple of ${BLOCK} up to ${MAX_PIECE_LENGTH}`)
  }
  if (opts.announce !== undefined) {
    if (!Array.isArray(opts.announce) || !opts.announce.every(t => Array.isArray(t))) {
      throw new SeedingError('TORRENT_BAD_ANNOUNCE', 'announce must be a list of tiers, each a list of URLs')
    }
    for (const url of opts.announce.flat()) {
      if (typeof url !== 'string' || !isTrackerUrl(url)) {
        throw new SeedingError('TORRENT_BAD_ANNOUNCE', `tracker URL ${JSON.stringify(String(url).slice(0, 200))} must be an http, https or udp URL`)
      }
    }
  }
  for (const key of ['name', 'comment', 'createdBy'] as const) {
    if (opts[key] !== undefined && typeof opts[key] !== 'string') throw new SeedingError('TORRENT_BAD_OPTION', `${key} must be a string`)
  }
  const cd = opts.creationDate
  if (cd !== undefined && (!Number.isSafeInteger(cd) || cd < 0)) throw new SeedingError('TORRENT_BAD_OPTION', 'creationDate must be non-negative integer seconds')
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true })

async function walk (root: string, signal: AbortSignal | undefined): Promise<SourceFile[]> {
  const files: Array<SourceFile & { key: Buffer }> = []
  const visit = async (dir: string, rel: string[]): Promise<void> => {
    signal?.throwIfAborted()
    // names as bytes: a name that is not UTF-8 could not be opened again from a decoded string
    const entries = await readdir(dir, { withFileTypes: true, encoding: 'buffer' })
    const subdirs: Array<Promise<void>> = []
    const found: Array<Promise<void>> = []
    for (const e of entries) {
      let name: string
      try {
        name = strictUtf8.decode(e.name)
      } catch {
        throw new SeedingError('TORRENT_BAD_PATH', `a name in ${dir} is not valid UTF-8`)
      }
      const abs = join(dir, name)
      const path = [...rel, name]
      if (e.isDirectory()) {
        subdirs.push(visit(abs, path))
      } else if (e.isFile()) {
        for (const c of path) checkPathComponent(c, abs)
        if (files.length + found.length >= MAX_FILES) throw new SeedingError('TORRENT_TOO_MANY_FILES', `${root} holds more than ${MAX_FILES} files`)
        found.push(stat(abs).then(s => { files.push({ abs, path, length: s.size, key: Buffer.from(path.join('/')) }) }))
      }
      // symlinks, sockets, fifos and devices are not content
    }
    await Promise.all([...found, ...subdirs])
  }
  await visit(root, [])
  // folders are walked concurrently, so the count inside visit can run a little past the cap
  if (files.length > MAX_FILES) throw new SeedingError('TORRENT_TOO_MANY_FILES', `${root} holds more than ${MAX_FILES} files`)
  files.sort((a, b) => Buffer.compare(a.key, b.key))
  return files.map(({ abs, path, length }) => ({ abs, path, length }))
}

/** Reads the files in order as one stream of chunks; each file is read exactly to its expected length. */
class ChunkReader {
  private index = 0
  private pos = 0
  private fh: FileHandle | undefined

  constructor (private readonly files: SourceFile[]) {}

  /** Fills `buf` from the current file; 0 at the end of the last file. */
  async read (buf: Buffer): Promise<number> {
    for (;;) {
      const f = this.files[this.index]
      if (f === undefined) return 0
      if (this.pos >= f.length) {
        await this.closeCurrent()
        this.index++
        this.pos = 0
        continue
      }
      this.fh ??= await open(f.abs, 'r')
      const want = Math.min(buf.length, f.length - this.pos)
      let got = 0
      while (got < want) {
        const { bytesRead } = await this.fh.read(buf, got, want - got, this.pos + got)
        if (bytesRead === 0) throw new SeedingError('TORRENT_FILE_CHANGED', `${f.abs} shrank while it was being hashed`)
        got += bytesRead
      }
      this.pos += got
      return got
    }
  }

  async closeCurrent (): Promise<void> {
    const fh = this.fh
    this.fh = undefined
    await fh?.close()
  }
}

async function hashFiles (files: SourceFile[], pieceLength: number, total: number, opts: CreateTorrentOptions): Promise<Buffer> {
  const pieceCount = Math.ceil(total / pieceLength)
  const pieces = Buffer.alloc(pieceCount * 20)
  const reader = new ChunkReader(files)
  const bufs = [Buffer.allocUnsafe(READ_SIZE), Buffer.allocUnsafe(READ_SIZE)]
  let which = 0
  const buffer = (i: number): Buffer => bufs[i]!
  let hash: Hash = createHash('sha1')
  let inPiece = 0
  let piece = 0
  let hashed = 0
  let pending: Promise<number> | undefined = reader.read(buffer(which))
  try {
    for (;;) {
      const n = await pending
      pending = undefined
      if (n === 0) break
      opts.signal?.throwIfAborted()
      const chunk = buffer(which)
      which ^= 1
      // the next read fills the other buffer while this one is hashed
      pending = reader.read(buffer(which))
      let off = 0
      while (off < n) {
        const take = Math.min(n - off, pieceLength - inPiece)
        hash.update(chunk.subarray(off, off + take))
        off += take
        inPiece += take
        if (inPiece === pieceLength) {
          hash.digest().copy(pieces, piece++ * 20)
          hash = createHash('sha1')
          inPiece = 0
        }
      }
      hashed += n
      opts.onProgress?.(hashed, total)
    }
  } finally {
    // a read still in flight must settle before its file is closed
    await pending?.catch(() => {})
    await reader.closeCurrent()
  }
  if (inPiece > 0) hash.digest().copy(pieces, piece++ * 20)
  if (piece !== pieceCount || hashed !== total) throw new SeedingError('TORRENT_FILE_CHANGED', 'files changed while they were being hashed')
  return pieces
}
