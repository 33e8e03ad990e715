/**
 * Client-side encryption of stored files. The requester encrypts before uploading, so a provider
 * only ever holds ciphertext: no file name, and no size beyond what the ciphertext length implies.
 *
 * Keys: one 32-byte master key per requester (a JSON key file, mode 0600), and per file a key
 * `BLAKE2b-256(key = master, "btt-storage-file-v1" ‖ fileId)` for a random 16-byte file id.
 *
 * Format (libsodium crypto_secretstream_xchacha20poly1305, additional data empty):
 *
 *     header (24 B)
 *     ‖ metadata message: METADATA_BYTES of plaintext + 17 (TAG_MESSAGE)
 *     ‖ data messages:    BLOCK_BYTES of plaintext + 17 each, the last one shorter and TAG_FINAL
 *                         (a 0-byte file has one empty TAG_FINAL message)
 *
 * The metadata plaintext is UTF-8 JSON `{"name":…,"size":…}` (plus `"mtime"` in ms when known),
 * zero-padded to METADATA_BYTES. The header is the stream's nonce, so altering it fails the
 * metadata message. Message lengths are not stored: the decryptor derives them from the
 * authenticated `size`, so it never buffers more than one message.
 */
import { randomBytes } from 'node:crypto'
import { link, open, rename, rm } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import sodium from 'sodium-native'
import { StorageError } from './errors.js'

/** Stream header (the secretstream nonce). */
export const HEADER_BYTES: number = sodium.crypto_secretstream_xchacha20poly1305_HEADERBYTES
/** Added to every message: the encrypted tag byte and the 16-byte Poly1305 MAC. */
export const ABYTES: number = sodium.crypto_secretstream_xchacha20poly1305_ABYTES
/** Plaintext of the metadata message, fixed so that its length reveals nothing about the name. */
export const METADATA_BYTES = 1024
/** Plaintext of a data message (the last one may be shorter). */
export const BLOCK_BYTES = 65536
/** Ciphertext bytes needed to read the metadata: header ‖ metadata message (1065). */
export const METADATA_PREFIX_BYTES = HEADER_BYTES + METADATA_BYTES + ABYTES
export const KEY_BYTES = 32
export const FILE_ID_BYTES = 16
/** Like most file systems' NAME_MAX; also keeps the escaped JSON well under METADATA_BYTES. */
export const NAME_MAX_BYTES = 255

const STATE_BYTES: number = sodium.crypto_secretstream_xchacha20poly1305_STATEBYTES
const TAG_MESSAGE: number = sodium.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
const TAG_FINAL: number = sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL
const FILE_KEY_DOMAIN = Buffer.from('btt-storage-file-v1', 'utf8')
const KEYFILE_VERSION = 1
const KEYFILE_TYPE = 'btt-storage-key'
/** A key file is about 100 bytes; anything much larger is not one. */
const KEYFILE_MAX_BYTES = 4096
const EMPTY = new Uint8Array(0)

/** What the metadata message holds. `mtime` is in milliseconds since the epoch. */
export interface FileMeta {
  name: string
  size: number
  mtime?: number
}

// ---------------------------------------------------------------------------------------------
// keys

/** A fresh random 16-byte file id. */
export function newFileId (): Uint8Array {
  const id = Buffer.alloc(FILE_ID_BYTES)
  sodium.randombytes_buf(id)
  return id
}

/** The key of one file: BLAKE2b-256 keyed with the master key over "btt-storage-file-v1" ‖ fileId. */
export function fileKey (master: Uint8Array, fileId: Uint8Array): Uint8Array {
  checkLength(master, KEY_BYTES, 'master key')
  checkLength(fileId, FILE_ID_BYTES, 'file id')
  const out = Buffer.alloc(KEY_BYTES)
  sodium.crypto_generichash(out, Buffer.concat([FILE_KEY_DOMAIN, fileId]), master)
  return out
}

/**
 * Load the master key from `path`, or create it there (32 random bytes, written atomically with
 * mode 0600) if the file does not exist. The parent directory must exist. Two processes creating
 * it at once end up with the same key: the file is published with link(2), which never replaces
 * an existing file.
 */
export async function loadOrCreateMasterKey (path: string): Promise<Uint8Array> {
  const existing = await readKeyFile(path)
  if (existing !== undefined) return existing
  const key = Buffer.alloc(KEY_BYTES)
  sodium.randombytes_buf(key)
  const text = JSON.stringify({ version: KEYFILE_VERSION, type: KEYFILE_TYPE, key: key.toString('base64') }, null, 2) + '\n'
  if (await createExclusive(path, text)) return key
  // another process created it first: use its key
  const theirs = await readKeyFile(path)
  if (theirs === undefined) throw badKeyFile(path, 'disappeared while being created')
  return theirs
}

async function readKeyFile (path: string): Promise<Uint8Array | undefined> {
  let fh
  try {
    fh = await open(path, 'r')
  } catch (err) {
    if (errno(err) === 'ENOENT') return undefined
    throw err
  }
  let text: string
  try {
    const st = await fh.stat()
    if (!st.isFile()) throw badKeyFile(path, 'is not a regular file')
    if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
      const mode = (st.mode & 0o777).toString(8).padStart(4, '0')
      throw new StorageError('STORAGE_BAD_KEYFILE',
        `storage key file ${path} is accessible by others (mode ${mode}); it must be private: chmod 600 ${path}`)
    }
    if (st.size > KEYFILE_MAX_BYTES) throw badKeyFile(path, `is too large (${st.size} bytes)`)
    text = await fh.readFile('utf8')
  } finally {
    await fh.close()
  }
  return parseKeyFile(path, text)
}

function parseKeyFile (path: string, text: string): Uint8Array {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw badKeyFile(path, 'is not valid JSON', err)
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw badKeyFile(path, 'is not a JSON object')
  const { version, type, key } = value as Record<string, unknown>
  if (version !== KEYFILE_VERSION) throw badKeyFile(path, `has version ${JSON.stringify(version)}, expected ${KEYFILE_VERSION}`)
  if (type !== KEYFILE_TYPE) throw badKeyFile(path, `has type ${JSON.stringify(type)}, expected "${KEYFILE_TYPE}"`)
  if (typeof key !== 'string') throw badKeyFile(path, 'has no "key" string')
  const bytes = Buffer.from(key, 'base64')
  if (bytes.toString('base64') !== key) throw badKeyFile(path, 'has a "key" that is not canonical base64')
  if (bytes.length !== KEY_BYTES) throw badKeyFile(path, `has a ${bytes.length}-byte key, expected ${KEY_BYTES}`)
  return bytes
}

function badKeyFile (path: string, what: string, cause?: unknown): StorageError {
  return new StorageError('STORAGE_BAD_KEYFILE',
    `storage key file ${path} ${what}; it decrypts every stored file, so restore it from a backup rather than deleting it`,
    cause === undefined ? undefined : { cause })
}

/** Write `text` to a temp file (mode 0600, fsynced) and link it to `path`; false if `path` exists. */
async function createExclusive (path: string, text: string): Promise<boolean> {
  const dir = dirname(path)
  const tmp = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`)
  const fh = await open(tmp, 'wx', 0o600)
  try {
    await fh.writeFile(text)
    await fh.chmod(0o600) // exact, whatever the umask
    await fh.sync()
  } catch (err) {
    await fh.close()
    await rm(tmp, { force: true })
    throw err
  }
  await fh.close()
  try {
    try {
      await link(tmp, path)
    } catch (err) {
      const code = errno(err)
      if (code === 'EEXIST') return false
      if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS') throw err
      // no hard links on this file system: rename (atomic, but may replace a racing creator's file)
      await rename(tmp, path)
    }
  } finally {
    await rm(tmp, { force: true })
  }
  if (process.platform !== 'win32') {
    const dh = await open(dir, 'r')
    try {
      await dh.sync()
    } finally {
      await dh.close()
    }
  }
  return true
}

// ---------------------------------------------------------------------------------------------
// format

/** Exact ciphertext length of a file of `plainSize` bytes. */
export function ciphertextSize (plainSize: number): number {
  checkSize(plainSize)
  const blocks = Math.max(1, Math.ceil(plainSize / BLOCK_BYTES))
  return METADATA_PREFIX_BYTES + blocks * ABYTES + plainSize
}

/**
 * Throw StorageError 'STORAGE_BAD_NAME' unless `name` is a usable file name: 1 to 255 UTF-8
 * bytes, well-formed Unicode, no '/', no control characters (NUL included), not "." or "..".
 */
export function checkName (name: string): void {
  const bad = (why: string): StorageError => new StorageError('STORAGE_BAD_NAME', `invalid file name ${JSON.stringify(name)}: ${why}`)
  if (typeof name !== 'string' || name.length === 0) throw bad('empty')
  if (name === '.' || name === '..') throw bad('not a file name')
  if (name.includes('/')) throw bad("contains '/'")
  if (/[\u0000-\u001f\u007f]/.test(name)) throw bad('contains a control character')
  if (!name.isWellFormed()) throw bad('is not well-formed Unicode')
  const bytes = Buffer.byteLength(name, 'utf8')
  if (bytes > NAME_MAX_BYTES) throw bad(`${bytes} UTF-8 bytes, at most ${NAME_MAX_BYTES}`)
}

function encodeMeta (meta: FileMeta): Uint8Array {
  checkName(meta.name)
  checkSize(meta.size)
  if (meta.mtime !== undefined && !Number.isFinite(meta.mtime)) throw new RangeError(`mtime must be a finite number, got ${meta.mtime}`)
  const fields: FileMeta = { name: meta.name, size: meta.size }
  if (meta.mtime !== undefined) fields.mtime = meta.mtime
  const json = JSON.stringify(fields)
  const block = Buffer.alloc(METADATA_BYTES) // the zero padding
  // cannot happen with checkName's limits (at most ~600 bytes); kept so that write() never truncates
  if (Buffer.byteLength(json, 'utf8') > METADATA_BYTES) throw new StorageError('STORAGE_BAD_NAME', 'file metadata too large')
  block.write(json, 'utf8')
  return block
}

const utf8 = new TextDecoder('utf-8', { fatal: true })

/** Strict: JSON then only zero bytes, a valid name, a safe-integer size, a finite mtime if any. */
function decodeMeta (block: Uint8Array): FileMeta {
  let end = block.indexOf(0) // JSON text never contains NUL (control characters are escaped)
  if (end === -1) end = block.length
  for (let i = end; i < block.length; i++) {
    if (block[i] !== 0) throw decryptFailed('metadata padding is not zero')
  }
  let value: unknown
  try {
    value = JSON.parse(utf8.decode(block.subarray(0, end)))
  } catch (err) {
    throw decryptFailed('metadata is not UTF-8 JSON', err)
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw decryptFailed('metadata is not a JSON object')
  const { name, size, mtime } = value as Record<string, unknown>
  if (typeof name !== 'string') throw decryptFailed('metadata has no name')
  try {
    checkName(name)
  } catch (err) {
    throw decryptFailed('metadata has an invalid name', err)
  }
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw decryptFailed('metadata has an invalid size')
  if (mtime === undefined) return { name, size }
  if (typeof mtime !== 'number' || !Number.isFinite(mtime)) throw decryptFailed('metadata has an invalid mtime')
  return { name, size, mtime }
}

/**
 * Streaming encryption of one file of a known size. `push` accepts plaintext in any chunking and
 * returns ciphertext pieces: header ‖ metadata message first, then each data message as soon as
 * its block is complete (the last block's message, TAG_FINAL, when the last byte is pushed). A
 * block that arrives whole inside a chunk is encrypted in place; others are gathered in one
 * reusable 64 KiB buffer. Each message is a new buffer that the caller owns.
 */
export class Encryptor {
  readonly #state = Buffer.alloc(STATE_BYTES)
  readonly #size: number
  #prefix: Uint8Array | undefined
  readonly #block = Buffer.allocUnsafe(BLOCK_BYTES)
  #fill = 0
  #pushed = 0
  #sealed = 0
  #done = false

  constructor (key: Uint8Array, meta: FileMeta) {
    checkLength(key, KEY_BYTES, 'file key')
    const metadata = encodeMeta(meta)
    this.#size = meta.size
    const prefix = Buffer.allocUnsafe(METADATA_PREFIX_BYTES)
    sodium.crypto_secretstream_xchacha20poly1305_init_push(this.#state, prefix.subarray(0, HEADER_BYTES), key)
    sodium.crypto_secretstream_xchacha20poly1305_push(this.#state, prefix.subarray(HEADER_BYTES), metadata, null, TAG_MESSAGE)
    this.#prefix = prefix
  }

  /** Throws StorageError 'STORAGE_SIZE_MISMATCH' (consuming nothing) if this passes `meta.size`. */
  push (plain: Uint8Array): Uint8Array[] {
    if (plain.length > this.#size - this.#pushed) {
      throw new StorageError('STORAGE_SIZE_MISMATCH', `${this.#pushed + plain.length} bytes pushed for a file of ${this.#size} bytes`)
    }
    this.#pushed += plain.length
    const out = this.#takePrefix()
    let off = 0
    while (off < plain.length) {
      const want = Math.min(BLOCK_BYTES, this.#size - this.#sealed)
      const n = Math.min(want - this.#fill, plain.length - off)
      if (this.#fill === 0 && n === want) {
        out.push(this.#seal(plain.subarray(off, off + n)))
      } else {
        this.#block.set(plain.subarray(off, off + n), this.#fill)
        this.#fill += n
        if (this.#fill === want) {
          this.#fill = 0
          out.push(this.#seal(this.#block.subarray(0, want)))
        }
      }
      off += n
    }
    return out
  }

  /** The remaining pieces; throws StorageError 'STORAGE_SIZE_MISMATCH' if fewer than `meta.size` bytes were pushed. */
  final (): Uint8Array[] {
    if (this.#pushed < this.#size) {
      throw new StorageError('STORAGE_SIZE_MISMATCH', `${this.#pushed} bytes pushed for a file of ${this.#size} bytes`)
    }
    const out = this.#takePrefix()
    if (!this.#done) out.push(this.#seal(EMPTY)) // only a 0-byte file gets here
    return out
  }

  #takePrefix (): Uint8Array[] {
    const prefix = this.#prefix
    if (prefix === undefined) return []
    this.#prefix = undefined
    return [prefix]
  }

  #seal (plain: Uint8Array): Uint8Array {
    const last = this.#sealed + plain.length === this.#size
    const c = Buffer.allocUnsafe(plain.length + ABYTES)
    sodium.crypto_secretstream_xchacha20poly1305_push(this.#state, c, plain, null, last ? TAG_FINAL : TAG_MESSAGE)
    this.#sealed += plain.length
    if (last) this.#done = true
    return c
  }
}

type Phase = 'header' | 'metadata' | 'data' | 'done'

/**
 * Streaming decryption, any chunking. `push` returns the plaintext of each data message as soon as
 * that message is complete; it holds at most one incomplete message (≤ BLOCK_BYTES + 17 bytes).
 * Errors (StorageError): 'STORAGE_DECRYPT_FAILED' for a wrong key or a forged, altered or
 * reordered message; 'STORAGE_TRUNCATED' for data after the final message or `final()` before it;
 * 'STORAGE_SIZE_MISMATCH' when the messages end before or continue past the metadata's size.
 * After an error every later call throws it again.
 *
 * Plaintext returned before `final()` succeeds is unauthenticated as a whole (a truncated file
 * looks fine until then): write it to a temporary file and keep it only once `final()` returns.
 */
export class Decryptor {
  readonly #state = Buffer.alloc(STATE_BYTES)
  readonly #key: Buffer
  readonly #buf = Buffer.allocUnsafe(BLOCK_BYTES + ABYTES)
  readonly #tag = Buffer.alloc(1)
  #fill = 0
  #phase: Phase = 'header'
  #meta: Readonly<FileMeta> | undefined
  #opened = 0
  #failed = false
  #error: unknown

  constructor (key: Uint8Array) {
    checkLength(key, KEY_BYTES, 'file key')
    this.#key = Buffer.from(key) // a copy, wiped once the header is read
  }

  /** The file's metadata, once the metadata message has been decrypted. */
  get meta (): Readonly<FileMeta> | undefined {
    return this.#meta
  }

  /** Ciphertext bytes pushed but not yet authenticated (the part of a message still incomplete). */
  get pending (): number {
    return this.#fill
  }

  push (cipher: Uint8Array): Uint8Array[] {
    if (this.#failed) throw this.#error
    try {
      return this.#push(cipher)
    } catch (err) {
      this.#failed = true
      this.#error = err
      throw err
    }
  }

  /** Throws StorageError 'STORAGE_TRUNCATED' unless the final message has been read. */
  final (): void {
    if (this.#failed) throw this.#error
    if (this.#phase !== 'done') {
      this.#failed = true
      this.#error = new StorageError('STORAGE_TRUNCATED', this.#phase === 'data'
        ? `ciphertext ends after ${this.#opened} of ${this.#meta?.size ?? 0} bytes`
        : `ciphertext ends before the ${this.#phase}`)
      throw this.#error
    }
  }

  #push (cipher: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = []
    let off = 0
    while (off < cipher.length) {
      if (this.#phase === 'done') throw new StorageError('STORAGE_TRUNCATED', 'data after the final message')
      const need = this.#frameLength()
      if (this.#fill === 0 && cipher.length - off >= need) {
        this.#open(cipher.subarray(off, off + need), out)
        off += need
      } else {
        const n = Math.min(need - this.#fill, cipher.length - off)
        this.#buf.set(cipher.subarray(off, off + n), this.#fill)
        this.#fill += n
        off += n
        if (this.#fill === need) {
          this.#fill = 0
          this.#open(this.#buf.subarray(0, need), out)
        }
      }
    }
    return out
  }

  #frameLength (): number {
    switch (this.#phase) {
      case 'header': return HEADER_BYTES
      case 'metadata': return METADATA_BYTES + ABYTES
      default: return Math.min(BLOCK_BYTES, (this.#meta?.size ?? 0) - this.#opened) + ABYTES
    }
  }

  #open (frame: Uint8Array, out: Uint8Array[]): void {
    if (this.#phase === 'header') {
      sodium.crypto_secretstream_xchacha20poly1305_init_pull(this.#state, frame, this.#key)
      this.#key.fill(0)
      this.#phase = 'metadata'
      return
    }
    const plain = Buffer.allocUnsafe(frame.length - ABYTES)
    try {
      sodium.crypto_secretstream_xchacha20poly1305_pull(this.#state, plain, this.#tag, frame, null)
    } catch (err) {
      throw decryptFailed(this.#phase === 'metadata'
        ? 'the metadata does not authenticate (wrong key, or altered header or metadata)'
        : `the message at plaintext offset ${this.#opened} does not authenticate (altered, reordered or from another file)`, err)
    }
    const tag = this.#tag[0]
    if (this.#phase === 'metadata') {
      if (tag !== TAG_MESSAGE) throw decryptFailed('unexpected tag on the metadata message')
      this.#meta = Object.freeze(decodeMeta(plain))
      this.#phase = 'data'
      return
    }
    const size = (this.#meta as FileMeta).size
    this.#opened += plain.length
    const last = this.#opened === size
    if (tag === TAG_FINAL) {
      if (!last) throw new StorageError('STORAGE_SIZE_MISMATCH', `the final message ends at ${this.#opened} bytes; the metadata says ${size}`)
      this.#phase = 'done'
    } else if (tag === TAG_MESSAGE) {
      if (last) throw new StorageError('STORAGE_SIZE_MISMATCH', `the ciphertext continues past the ${size} bytes the metadata says`)
    } else {
      throw decryptFailed(`unexpected tag ${tag ?? '?'} on a data message`)
    }
    if (plain.length > 0) out.push(plain)
  }
}

/**
 * Decrypt only the metadata, from the first METADATA_PREFIX_BYTES (24 + 1041) bytes of a
 * ciphertext (more are ignored): for listing without downloading.
 */
export function decryptMetadata (key: Uint8Array, firstBytes: Uint8Array): FileMeta {
  if (firstBytes.length < METADATA_PREFIX_BYTES) {
    throw new StorageError('STORAGE_TRUNCATED', `${firstBytes.length} bytes given, the metadata needs ${METADATA_PREFIX_BYTES}`)
  }
  const d = new Decryptor(key)
  d.push(firstBytes.subarray(0, METADATA_PREFIX_BYTES))
  return { ...(d.meta as FileMeta) }
}

// ---------------------------------------------------------------------------------------------

function decryptFailed (why: string, cause?: unknown): StorageError {
  return new StorageError('STORAGE_DECRYPT_FAILED', `cannot decrypt: ${why}`, cause === undefined ? undefined : { cause })
}

function checkLength (bytes: Uint8Array, length: number, what: string): void {
  if (!(bytes instanceof Uint8Array) || bytes.length !== length) throw new RangeError(`${what} must be ${length} bytes`)
}

function checkSize (size: number): void {
  if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`file size must be a non-negative safe integer, got ${size}`)
}

function errno (err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code
}
