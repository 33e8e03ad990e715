import { chmod, mkdtemp, readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import sodium from 'sodium-native'
import { describe, expect, it } from 'vitest'
import {
  ABYTES, BLOCK_BYTES, ciphertextSize, decryptMetadata, Decryptor, Encryptor, fileKey, HEADER_BYTES,
  loadOrCreateMasterKey, METADATA_BYTES, METADATA_PREFIX_BYTES, newFileId, type FileMeta
} from './crypto.js'
import { StorageError } from './errors.js'

const FRAME = BLOCK_BYTES + ABYTES
const SIZES = [0, 1, 65535, 65536, 65537, 1024 * 1024 + 7]

function randomKey (): Uint8Array {
  const key = Buffer.alloc(32)
  sodium.randombytes_buf(key)
  return key
}

function randomData (n: number): Buffer {
  const b = Buffer.alloc(n)
  sodium.randombytes_buf(b)
  return b
}

/** Split `data` cyclically by `lengths` (0-length chunks included). */
function chunks (data: Uint8Array, lengths: number[]): Uint8Array[] {
  const out: Uint8Array[] = []
  let off = 0
  for (let i = 0; off < data.length; i++) {
    const n = lengths[i % lengths.length] ?? 1
    out.push(data.subarray(off, off + n))
    off += n
  }
  if (lengths.includes(0)) out.push(new Uint8Array(0))
  return out
}

function encrypt (key: Uint8Array, meta: FileMeta, data: Uint8Array, lengths: number[] = [data.length]): Buffer {
  const enc = new Encryptor(key, meta)
  const out: Uint8Array[] = []
  for (const c of chunks(data, lengths)) out.push(...enc.push(c))
  out.push(...enc.final())
  return Buffer.concat(out)
}

function decrypt (key: Uint8Array, cipher: Uint8Array, lengths: number[] = [cipher.length]): { meta: FileMeta | undefined, data: Buffer } {
  const dec = new Decryptor(key)
  const out: Uint8Array[] = []
  for (const c of chunks(cipher, lengths)) out.push(...dec.push(c))
  dec.final()
  return { meta: dec.meta, data: Buffer.concat(out) }
}

function codeOf (fn: () => unknown): string | undefined {
  try {
    fn()
  } catch (err) {
    if (err instanceof StorageError) return err.code
    throw err
  }
  return undefined
}

const chunkLengths = fc.array(
  fc.oneof(fc.integer({ min: 0, max: 64 }), fc.integer({ min: 1, max: 3 * BLOCK_BYTES })),
  { minLength: 1, maxLength: 12 }
).filter(ls => ls.some(l => l > 0))

// a 3-block file shared by the tamper tests
const KEY = randomKey()
const DATA = randomData(2 * BLOCK_BYTES + 1000)
const META = { name: 'report.pdf', size: DATA.length, mtime: 1_700_000_000_123 }
const CIPHER = encrypt(KEY, META, DATA)

const M = sodium.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
const F = sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL

/**
 * A stream forged by a key holder: every message authentic, the contents chosen freely.
 * `metadata` is JSON-encoded and zero-padded unless given as raw bytes.
 */
function forge (metadata: unknown, messages: Array<[number, number]>, metadataTag = M): Buffer {
  const state = Buffer.alloc(sodium.crypto_secretstream_xchacha20poly1305_STATEBYTES)
  const header = Buffer.alloc(HEADER_BYTES)
  sodium.crypto_secretstream_xchacha20poly1305_init_push(state, header, KEY)
  const parts: Buffer[] = [header]
  const seal = (m: Uint8Array, tag: number): void => {
    const c = Buffer.alloc(m.length + ABYTES)
    sodium.crypto_secretstream_xchacha20poly1305_push(state, c, m, null, tag)
    parts.push(c)
  }
  let block = Buffer.alloc(METADATA_BYTES)
  if (metadata instanceof Uint8Array) block = Buffer.from(metadata)
  else block.write(JSON.stringify(metadata))
  seal(block, metadataTag)
  for (const [length, tag] of messages) seal(new Uint8Array(length), tag)
  return Buffer.concat(parts)
}

describe('encrypt/decrypt round trip', () => {
  for (const size of SIZES) {
    it(`${size} bytes, random chunkings on both sides`, () => {
      const key = randomKey()
      const data = randomData(size)
      const meta = { name: `file-${size}.bin`, size }
      fc.assert(fc.property(chunkLengths, chunkLengths, (inLengths, outLengths) => {
        const cipher = encrypt(key, meta, data, inLengths)
        expect(cipher.length).toBe(ciphertextSize(size))
        const got = decrypt(key, cipher, outLengths)
        expect(got.meta).toEqual(meta)
        expect(got.data.equals(data)).toBe(true)
      }), { numRuns: size > BLOCK_BYTES * 2 ? 15 : 40 })
    })
  }

  it('ciphertextSize follows the formula', () => {
    expect(ciphertextSize(0)).toBe(24 + 1041 + 17)
    expect(ciphertextSize(1)).toBe(24 + 1041 + 17 + 1)
    expect(ciphertextSize(65536)).toBe(24 + 1041 + 65553)
    expect(ciphertextSize(65537)).toBe(24 + 1041 + 65553 + 18)
    expect(METADATA_PREFIX_BYTES).toBe(HEADER_BYTES + METADATA_BYTES + ABYTES)
    expect(() => ciphertextSize(-1)).toThrow(RangeError)
    expect(() => ciphertextSize(1.5)).toThrow(RangeError)
  })

  it('keeps mtime, and the metadata is readable from the first 1065 bytes alone', () => {
    expect(decryptMetadata(KEY, CIPHER.subarray(0, METADATA_PREFIX_BYTES))).toEqual(META)
    expect(decryptMetadata(KEY, CIPHER)).toEqual(META)
    expect(codeOf(() => decryptMetadata(KEY, CIPHER.subarray(0, METADATA_PREFIX_BYTES - 1)))).toBe('STORAGE_TRUNCATED')
    expect(codeOf(() => decryptMetadata(randomKey(), CIPHER))).toBe('STORAGE_DECRYPT_FAILED')
  })

  it('streams: each message comes out as soon as it is complete', () => {
    const enc = new Encryptor(KEY, META)
    const first = enc.push(DATA.subarray(0, BLOCK_BYTES - 1))
    expect(first.map(p => p.length)).toEqual([METADATA_PREFIX_BYTES])
    expect(enc.push(DATA.subarray(BLOCK_BYTES - 1, BLOCK_BYTES)).map(p => p.length)).toEqual([FRAME])
    expect(enc.push(DATA.subarray(BLOCK_BYTES, DATA.length)).map(p => p.length)).toEqual([FRAME, 1000 + ABYTES])
    expect(enc.final()).toEqual([])

    const dec = new Decryptor(KEY)
    const upToBlock = METADATA_PREFIX_BYTES + FRAME
    for (let i = 0; i < upToBlock - 1; i++) {
      expect(dec.push(CIPHER.subarray(i, i + 1))).toEqual([])
      expect(dec.meta === undefined).toBe(i < METADATA_PREFIX_BYTES - 1)
    }
    const block = dec.push(CIPHER.subarray(upToBlock - 1, upToBlock))
    expect(block.length).toBe(1)
    expect(Buffer.from(block[0] as Uint8Array).equals(DATA.subarray(0, BLOCK_BYTES))).toBe(true)
  })

  it('a 0-byte file is one empty final message, emitted by final()', () => {
    const enc = new Encryptor(KEY, { name: 'empty', size: 0 })
    expect(enc.push(new Uint8Array(0)).map(p => p.length)).toEqual([METADATA_PREFIX_BYTES])
    expect(enc.final().map(p => p.length)).toEqual([ABYTES])
  })
})

describe('encryptor size check', () => {
  it('refuses more bytes than meta.size at push, fewer at final', () => {
    const enc = new Encryptor(KEY, { name: 'a', size: 10 })
    enc.push(new Uint8Array(6))
    expect(codeOf(() => enc.push(new Uint8Array(5)))).toBe('STORAGE_SIZE_MISMATCH')
    expect(codeOf(() => enc.final())).toBe('STORAGE_SIZE_MISMATCH')
    enc.push(new Uint8Array(4)) // the refused push consumed nothing
    expect(enc.final()).toEqual([])
    expect(codeOf(() => enc.push(new Uint8Array(1)))).toBe('STORAGE_SIZE_MISMATCH')
  })

  it('refuses a bad size, mtime or key length', () => {
    expect(() => new Encryptor(KEY, { name: 'a', size: -1 })).toThrow(RangeError)
    expect(() => new Encryptor(KEY, { name: 'a', size: 2 ** 53 })).toThrow(RangeError)
    expect(() => new Encryptor(KEY, { name: 'a', size: 1, mtime: Number.NaN })).toThrow(RangeError)
    expect(() => new Encryptor(new Uint8Array(31), { name: 'a', size: 1 })).toThrow(RangeError)
    expect(() => new Decryptor(new Uint8Array(33))).toThrow(RangeError)
  })
})

describe('tampering', () => {
  it('any flipped bit fails with STORAGE_DECRYPT_FAILED', () => {
    const regions = [
      fc.integer({ min: 0, max: HEADER_BYTES - 1 }), // header
      fc.integer({ min: HEADER_BYTES, max: METADATA_PREFIX_BYTES - 1 }), // metadata
      fc.integer({ min: METADATA_PREFIX_BYTES, max: CIPHER.length - 1 }), // data
      fc.integer({ min: CIPHER.length - 16, max: CIPHER.length - 1 }) // the last MAC
    ]
    fc.assert(fc.property(fc.oneof(...regions), fc.integer({ min: 0, max: 7 }), chunkLengths, (pos, bit, lengths) => {
      const bad = Buffer.from(CIPHER)
      bad[pos] = (bad[pos] as number) ^ (1 << bit)
      expect(codeOf(() => decrypt(KEY, bad, lengths))).toBe('STORAGE_DECRYPT_FAILED')
    }), { numRuns: 200 })
  })

  it('truncation anywhere fails, never silently', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: CIPHER.length - 1 }), chunkLengths, (cut, lengths) => {
      const code = codeOf(() => decrypt(KEY, CIPHER.subarray(0, cut), lengths))
      expect(['STORAGE_TRUNCATED', 'STORAGE_DECRYPT_FAILED']).toContain(code)
    }), { numRuns: 200 })
    // a whole message missing at the end
    expect(codeOf(() => decrypt(KEY, CIPHER.subarray(0, CIPHER.length - 1000 - ABYTES)))).toBe('STORAGE_TRUNCATED')
  })

  it('data after the final message fails with STORAGE_TRUNCATED', () => {
    expect(codeOf(() => decrypt(KEY, Buffer.concat([CIPHER, Buffer.from([0])])))).toBe('STORAGE_TRUNCATED')
    const empty = encrypt(KEY, { name: 'e', size: 0 }, new Uint8Array(0))
    expect(codeOf(() => decrypt(KEY, Buffer.concat([empty, empty])))).toBe('STORAGE_TRUNCATED')
  })

  it('swapped, dropped or transplanted blocks fail', () => {
    const at = (i: number): number => METADATA_PREFIX_BYTES + i * FRAME
    const block = (i: number): Buffer => CIPHER.subarray(at(i), at(i + 1))
    const swapped = Buffer.concat([CIPHER.subarray(0, at(0)), block(1), block(0), CIPHER.subarray(at(2))])
    expect(swapped.length).toBe(CIPHER.length)
    expect(codeOf(() => decrypt(KEY, swapped))).toBe('STORAGE_DECRYPT_FAILED')
    const dropped = Buffer.concat([CIPHER.subarray(0, at(1)), CIPHER.subarray(at(2))])
    expect(['STORAGE_TRUNCATED', 'STORAGE_DECRYPT_FAILED']).toContain(codeOf(() => decrypt(KEY, dropped)))
    // block 1 of another encryption of the same file under the same key
    const other = encrypt(KEY, META, DATA)
    const transplanted = Buffer.concat([CIPHER.subarray(0, at(1)), other.subarray(at(1), at(2)), CIPHER.subarray(at(2))])
    expect(codeOf(() => decrypt(KEY, transplanted))).toBe('STORAGE_DECRYPT_FAILED')
  })

  it('a different key fails at the metadata', () => {
    const dec = new Decryptor(randomKey())
    expect(codeOf(() => dec.push(CIPHER))).toBe('STORAGE_DECRYPT_FAILED')
    expect(dec.meta).toBeUndefined()
  })

  it('a failed decryptor stays failed', () => {
    const bad = Buffer.from(CIPHER)
    bad[METADATA_PREFIX_BYTES + 5] = (bad[METADATA_PREFIX_BYTES + 5] as number) ^ 1
    const dec = new Decryptor(KEY)
    dec.push(bad.subarray(0, METADATA_PREFIX_BYTES))
    expect(codeOf(() => dec.push(bad.subarray(METADATA_PREFIX_BYTES)))).toBe('STORAGE_DECRYPT_FAILED')
    expect(codeOf(() => dec.push(CIPHER.subarray(METADATA_PREFIX_BYTES)))).toBe('STORAGE_DECRYPT_FAILED')
    expect(codeOf(() => dec.final())).toBe('STORAGE_DECRYPT_FAILED')
  })

  it('a stream whose messages disagree with the metadata size fails with STORAGE_SIZE_MISMATCH', () => {
    expect(decrypt(KEY, forge({ name: 'x', size: BLOCK_BYTES + 1 }, [[BLOCK_BYTES, M], [1, F]])).data.length).toBe(BLOCK_BYTES + 1) // the forge is sound
    expect(codeOf(() => decrypt(KEY, forge({ name: 'x', size: BLOCK_BYTES + 1 }, [[BLOCK_BYTES, F]])))).toBe('STORAGE_SIZE_MISMATCH')
    expect(codeOf(() => decrypt(KEY, forge({ name: 'x', size: BLOCK_BYTES }, [[BLOCK_BYTES, M], [0, F]])))).toBe('STORAGE_SIZE_MISMATCH')
    expect(codeOf(() => decrypt(KEY, forge({ name: 'x', size: 0 }, [[0, M], [0, F]])))).toBe('STORAGE_SIZE_MISMATCH')
  })
  it('authentic but malformed metadata fails with STORAGE_DECRYPT_FAILED', () => {
    const ok = { name: 'x', size: 1 }
    expect(decrypt(KEY, forge(ok, [[1, F]])).meta).toEqual(ok) // the forge is sound
    const padded = (text: string, tail = 0): Buffer => {
      const b = Buffer.alloc(METADATA_BYTES)
      b.write(text)
      b[METADATA_BYTES - 1] = tail
      return b
    }
    const bad: unknown[] = [
      padded(JSON.stringify(ok), 1), // non-zero padding
      padded('{"name":"x","size":1'), // not JSON
      Buffer.concat([Buffer.from('{"name":"'), Buffer.from([0xff]), Buffer.from('","size":1}')], METADATA_BYTES), // not UTF-8
      [ok],
      { name: 'a/b', size: 1 },
      { name: '', size: 1 },
      { size: 1 },
      { name: 'x', size: -1 },
      { name: 'x', size: 1.5 },
      { name: 'x', size: '1' },
      { name: 'x', size: 1, mtime: 'yesterday' }
    ]
    for (const metadata of bad) {
      expect(codeOf(() => decrypt(KEY, forge(metadata, [[1, F]]))), String(metadata)).toBe('STORAGE_DECRYPT_FAILED')
    }
    expect(codeOf(() => decrypt(KEY, forge(ok, [[1, F]], F)))).toBe('STORAGE_DECRYPT_FAILED') // metadata tagged final
    expect(codeOf(() => decrypt(KEY, forge(ok, [[1, sodium.crypto_secretstream_xchacha20poly1305_TAG_PUSH]])))).toBe('STORAGE_DECRYPT_FAILED')
  })
})

describe('confidentiality', () => {
  it('neither a known plaintext nor the file name appears in the ciphertext', () => {
    const marker = Buffer.from('KNOWN-PLAINTEXT-MARKER-0123456789'.slice(0, 32), 'ascii')
    const data = Buffer.concat(Array.from({ length: 5000 }, () => marker)) // 160 000 bytes
    const name = 'quarterly-secret-plans.txt'
    const cipher = encrypt(KEY, { name, size: data.length }, data)
    expect(cipher.indexOf(marker)).toBe(-1)
    expect(cipher.indexOf(marker.subarray(0, 8))).toBe(-1)
    expect(cipher.indexOf(Buffer.from(name))).toBe(-1)
    expect(cipher.indexOf(Buffer.from('"name"'))).toBe(-1)
  })

  it('two encryptions of the same file differ everywhere (random header)', () => {
    const a = encrypt(KEY, META, DATA)
    const b = encrypt(KEY, META, DATA)
    expect(a.length).toBe(b.length)
    expect(a.subarray(0, HEADER_BYTES).equals(b.subarray(0, HEADER_BYTES))).toBe(false)
    for (const off of [HEADER_BYTES, METADATA_PREFIX_BYTES, METADATA_PREFIX_BYTES + FRAME]) {
      expect(a.subarray(off, off + 16).equals(b.subarray(off, off + 16))).toBe(false)
    }
  })
})

describe('file keys', () => {
  it('are BLAKE2b-256(key = master, "btt-storage-file-v1" ‖ fileId)', () => {
    // known answer computed independently (Python hashlib.blake2b(digest_size=32, key=master))
    const master = Uint8Array.from({ length: 32 }, (_, i) => i)
    const id = Uint8Array.from({ length: 16 }, (_, i) => 0xa0 + i)
    expect(Buffer.from(fileKey(master, id)).toString('hex')).toBe('4d2bfcff686e10c9b0b9b851b932709ce8880dd2e970e6f1fb90db47e625fbaf')
  })

  it('are deterministic per (master, id) and differ across ids and masters', () => {
    const master = randomKey()
    const id = newFileId()
    expect(id.length).toBe(16)
    expect(Buffer.from(fileKey(master, id)).equals(fileKey(Buffer.from(master), Buffer.from(id)))).toBe(true)
    expect(Buffer.from(fileKey(master, id)).equals(fileKey(master, newFileId()))).toBe(false)
    expect(Buffer.from(fileKey(master, id)).equals(fileKey(randomKey(), id))).toBe(false)
    expect(Buffer.from(newFileId()).equals(newFileId())).toBe(false)
    expect(() => fileKey(master, new Uint8Array(15))).toThrow(RangeError)
    expect(() => fileKey(new Uint8Array(16), id)).toThrow(RangeError)
  })
})

describe('master key file', () => {
  const tmp = (): Promise<string> => mkdtemp(join(tmpdir(), 'btt-storage-key-'))

  it('is created 0600 with the documented JSON and reloaded equal', async () => {
    const dir = await tmp()
    const path = join(dir, 'storage.key')
    const key = await loadOrCreateMasterKey(path)
    expect(key.length).toBe(32)
    expect((await stat(path)).mode & 0o777).toBe(0o600)
    const json = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>
    expect(json).toEqual({ version: 1, type: 'btt-storage-key', key: Buffer.from(key).toString('base64') })
    expect(Buffer.from(await loadOrCreateMasterKey(path)).equals(key)).toBe(true)
    expect(await readdir(dir)).toEqual(['storage.key']) // no temp file left
  })

  it('concurrent creators agree on one key', async () => {
    const path = join(await tmp(), 'storage.key')
    const keys = await Promise.all(Array.from({ length: 8 }, () => loadOrCreateMasterKey(path)))
    for (const k of keys) expect(Buffer.from(k).equals(keys[0] as Uint8Array)).toBe(true)
    expect(Buffer.from(await loadOrCreateMasterKey(path)).equals(keys[0] as Uint8Array)).toBe(true)
  })

  it('is refused when readable by group or others, with the chmod hint', async () => {
    const path = join(await tmp(), 'storage.key')
    const key = await loadOrCreateMasterKey(path)
    for (const mode of [0o644, 0o640, 0o604]) {
      await chmod(path, mode)
      const err = await loadOrCreateMasterKey(path).then(() => undefined, (e: unknown) => e)
      expect(err).toBeInstanceOf(StorageError)
      expect((err as StorageError).code).toBe('STORAGE_BAD_KEYFILE')
      expect((err as StorageError).message).toContain(`chmod 600 ${path}`)
    }
    await chmod(path, 0o600)
    expect(Buffer.from(await loadOrCreateMasterKey(path)).equals(key)).toBe(true)
  })

  it('is refused when corrupt, and never replaced', async () => {
    const dir = await tmp()
    const good = Buffer.alloc(32, 7).toString('base64')
    const cases = [
      '',
      'not json',
      '[]',
      JSON.stringify({ version: 2, type: 'btt-storage-key', key: good }),
      JSON.stringify({ type: 'btt-storage-key', key: good }),
      JSON.stringify({ version: 1, type: 'ssh-key', key: good }),
      JSON.stringify({ version: 1, type: 'btt-storage-key', key: Buffer.alloc(31).toString('base64') }),
      JSON.stringify({ version: 1, type: 'btt-storage-key', key: Buffer.alloc(33).toString('base64') }),
      JSON.stringify({ version: 1, type: 'btt-storage-key', key: good.slice(0, -1) + '!' }),
      JSON.stringify({ version: 1, type: 'btt-storage-key', key: 42 })
    ]
    for (const [i, text] of cases.entries()) {
      const path = join(dir, `k${i}`)
      await writeFile(path, text, { mode: 0o600 })
      const err = await loadOrCreateMasterKey(path).then(() => undefined, (e: unknown) => e)
      expect((err as StorageError | undefined)?.code, text).toBe('STORAGE_BAD_KEYFILE')
      expect(await readFile(path, 'utf8')).toBe(text)
    }
    await writeFile(join(dir, 'ok'), JSON.stringify({ version: 1, type: 'btt-storage-key', key: good }), { mode: 0o600 })
    expect(Buffer.from(await loadOrCreateMasterKey(join(dir, 'ok'))).equals(Buffer.alloc(32, 7))).toBe(true)
  })

  it('needs the parent directory to exist', async () => {
    await expect(loadOrCreateMasterKey(join(await tmp(), 'missing', 'storage.key'))).rejects.toThrow(/ENOENT/)
  })
})

describe('file names', () => {
  const make = (name: string): string | undefined => codeOf(() => new Encryptor(KEY, { name, size: 0 }))

  it('accepts names up to 255 UTF-8 bytes, any Unicode, and round-trips them', () => {
    const names = ['a', 'résumé final (2).pdf', '日本語.txt', 'x'.repeat(255), 'é'.repeat(127) + 'x', '"'.repeat(255), '\\ back', '..hidden', '🎉']
    for (const name of names) {
      expect(make(name), name).toBeUndefined()
      const cipher = encrypt(KEY, { name, size: 0 }, new Uint8Array(0))
      expect(decryptMetadata(KEY, cipher).name).toBe(name)
    }
  })

  it('refuses the rest with STORAGE_BAD_NAME', () => {
    const names = ['', '.', '..', 'a/b', '/', 'a\0b', 'line\nbreak', 'x'.repeat(256), 'é'.repeat(128), 'x'.repeat(254) + 'é', 'lone \ud800 surrogate']
    for (const name of names) expect(make(name), JSON.stringify(name)).toBe('STORAGE_BAD_NAME')
  })
})
