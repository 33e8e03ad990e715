import { mkdir, open, readdir, rename, rm, stat, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { StorageError } from './errors.js'

/** An upload being written. Bytes are appended in order; nothing is visible until `commit`. */
export interface BlobWriter {
  readonly written: number
  write(bytes: Uint8Array): Promise<void>
  /** Append several buffers in one system call where the platform allows. */
  writev(list: Uint8Array[]): Promise<void>
  /** fsync the data and its tree, then publish them under `root` (hex). */
  commit(root: string, tree: Uint8Array): Promise<void>
  /** Drop the partial upload. */
  abort(): Promise<void>
}

/**
 * Where a provider keeps ciphertext: content-addressed by Merkle root. An interface so that an
 * S3-compatible backend can be added later; `FsBlobStore` is the one on disk.
 */
export interface BlobStore {
  create(uploadId: string): Promise<BlobWriter>
  read(root: string, offset: number, length: number): Promise<Uint8Array>
  readTree(root: string): Promise<Uint8Array>
  has(root: string): Promise<boolean>
  delete(root: string): Promise<void>
  /** Remove uploads that never committed (after a crash); returns how many. */
  cleanPartial(): Promise<number>
}

const ROOT_HEX = /^[0-9a-f]{64}$/
const UPLOAD_ID = /^[0-9a-f]{32}$/

/**
 * Blobs on the local disk: `blobs/<root>` (the ciphertext) and `blobs/<root>.tree` (its upper
 * Merkle levels), uploads in `partial/<upload id>` until committed. A commit fsyncs both files,
 * renames them into place and fsyncs the directory, so an acknowledged upload survives a crash.
 */
export class FsBlobStore implements BlobStore {
  private readonly blobs: string
  private readonly partial: string

  constructor (readonly dir: string) {
    this.blobs = join(dir, 'blobs')
    this.partial = join(dir, 'partial')
  }

  async init (): Promise<void> {
    await mkdir(this.blobs, { recursive: true, mode: 0o700 })
    await mkdir(this.partial, { recursive: true, mode: 0o700 })
  }

  async create (uploadId: string): Promise<BlobWriter> {
    if (!UPLOAD_ID.test(uploadId)) throw new StorageError('STORAGE_BAD_ID', 'bad upload id')
    const path = join(this.partial, uploadId)
    const fh = await open(path, 'wx', 0o600)
    let written = 0
    let closed = false
    const close = async (): Promise<void> => {
      if (closed) return
      closed = true
      await fh.close()
    }
    return {
      get written () { return written },
      write: async (bytes: Uint8Array) => {
        let off = 0
        while (off < bytes.byteLength) {
          const { bytesWritten } = await fh.write(bytes, off, bytes.byteLength - off, written)
          off += bytesWritten
          written += bytesWritten
        }
      },
      writev: async (list: Uint8Array[]) => {
        let total = 0
        for (const b of list) total += b.byteLength
        let { bytesWritten } = await fh.writev(list, written)
        written += bytesWritten
        if (bytesWritten < total) {
          // a short write: finish the rest one buffer at a time
          let skip = bytesWritten
          for (const b of list) {
            if (skip >= b.byteLength) { skip -= b.byteLength; continue }
            const rest = b.subarray(skip)
            skip = 0
            let off = 0
            while (off < rest.byteLength) {
              ({ bytesWritten } = await fh.write(rest, off, rest.byteLength - off, written))
              off += bytesWritten
              written += bytesWritten
            }
          }
        }
      },
      commit: async (root: string, tree: Uint8Array) => {
        if (!ROOT_HEX.test(root)) throw new StorageError('STORAGE_BAD_ID', 'bad root')
        await fh.sync()
        await close()
        const final = join(this.blobs, root)
        await writeSynced(join(this.partial, `${uploadId}.tree`), tree)
        await rename(join(this.partial, `${uploadId}.tree`), `${final}.tree`)
        await rename(path, final)
        await syncDir(this.blobs)
        await syncDir(this.partial)
      },
      abort: async () => {
        await close().catch(() => {})
        await rm(path, { force: true })
        await rm(join(this.partial, `${uploadId}.tree`), { force: true })
      }
    }
  }

  async read (root: string, offset: number, length: number): Promise<Uint8Array> {
    const fh = await this.openBlob(root)
    try {
      const out = Buffer.allocUnsafe(length)
      let got = 0
      while (got < length) {
        const { bytesRead } = await fh.read(out, got, length - got, offset + got)
        if (bytesRead === 0) throw new StorageError('STORAGE_BLOB_SHORT', `blob ${root} ends before byte ${offset + length}`)
        got += bytesRead
      }
      return out
    } finally {
      await fh.close()
    }
  }

  /** A handle for many reads of one blob (retrieval, proofs); the caller closes it. */
  async openBlob (root: string): Promise<FileHandle> {
    if (!ROOT_HEX.test(root)) throw new StorageError('STORAGE_BAD_ID', 'bad root')
    try {
      return await open(join(this.blobs, root), 'r')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new StorageError('STORAGE_BLOB_MISSING', `blob ${root} is not on disk`)
      throw err
    }
  }

  async readTree (root: string): Promise<Uint8Array> {
    if (!ROOT_HEX.test(root)) throw new StorageError('STORAGE_BAD_ID', 'bad root')
    const fh = await open(join(this.blobs, `${root}.tree`), 'r').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') throw new StorageError('STORAGE_BLOB_MISSING', `tree of ${root} is not on disk`)
      throw err
    })
    try {
      return await fh.readFile()
    } finally {
      await fh.close()
    }
  }

  async has (root: string): Promise<boolean> {
    if (!ROOT_HEX.test(root)) return false
    try {
      await stat(join(this.blobs, root))
      await stat(join(this.blobs, `${root}.tree`))
      return true
    } catch {
      return false
    }
  }

  async delete (root: string): Promise<void> {
    if (!ROOT_HEX.test(root)) throw new StorageError('STORAGE_BAD_ID', 'bad root')
    await rm(join(this.blobs, root), { force: true })
    await rm(join(this.blobs, `${root}.tree`), { force: true })
  }

  async cleanPartial (): Promise<number> {
    let n = 0
    for (const name of await readdir(this.partial)) {
      await rm(join(this.partial, name), { force: true, recursive: true })
      if (!name.endsWith('.tree')) n++
    }
    return n
  }

  /** Every committed blob's root (for sweeping orphans). */
  async list (): Promise<string[]> {
    return (await readdir(this.blobs)).filter(n => ROOT_HEX.test(n))
  }
}

async function writeSynced (path: string, data: Uint8Array): Promise<void> {
  const fh = await open(path, 'w', 0o600)
  try {
    await fh.writeFile(data)
    await fh.sync()
  } finally {
    await fh.close()
  }
}

async function syncDir (dir: string): Promise<void> {
  const fh = await open(dir, 'r')
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}
