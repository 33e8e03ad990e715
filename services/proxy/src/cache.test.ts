import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { DiskCache, type DiskCacheOptions } from './cache.js'
import type { SafeResponse } from './guard.js'

const HOUR = 3_600_000
const URL_A = 'https://origin.example.com/a'
const key = (url: string): string => createHash('sha256').update(url).digest('hex')

let root: string
let dir: string
let t: number
const now = (): number => t

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'btt-cache-'))
  dir = join(root, 'cache')
  t = 1_700_000_000_000
})
afterEach(async () => { await rm(root, { recursive: true, force: true }) })

const opened: DiskCache[] = []
async function openCache (over: Partial<DiskCacheOptions> = {}): Promise<DiskCache> {
  const c = await DiskCache.open({ dir, maxBytes: 1024 * 1024, ttlMs: HOUR, fingerprint: 'fp1', now, ...over })
  opened.push(c)
  return c
}

/** Copies are committed in the background (the reader never waits for the disk): wait for them. */
async function settle (): Promise<void> {
  await Promise.all(opened.map(async c => { await c.idle() }))
}

interface Source extends SafeResponse {
  /** the origin body was finished or cancelled (its finally ran) */
  closed: () => boolean
}

/** A SafeResponse whose body yields `chunks`, throwing `fail` after `failAfter` of them when given. */
function response (chunks: Uint8Array[], over: Partial<SafeResponse> = {}, fail?: { after: number, error: Error }): Source {
  let closed = false
  async function * body (): AsyncGenerator<Uint8Array> {
    try {
      for (const [i, c] of chunks.entries()) {
        if (fail !== undefined && i === fail.after) throw fail.error
        yield c
      }
    } finally {
      closed = true
    }
  }
  return { url: URL_A, status: 200, headers: { 'content-type': 'application/octet-stream' }, partial: false, body: body(), closed: () => closed, ...over }
}

async function collect (body: AsyncIterable<Uint8Array>): Promise<Uint8Array[]> {
  const out: Uint8Array[] = []
  for await (const c of body) out.push(c)
  await settle()
  return out
}

async function readAll (body: AsyncIterable<Uint8Array>): Promise<Buffer> {
  return Buffer.concat(await collect(body))
}

async function files (): Promise<string[]> {
  return (await readdir(dir)).sort()
}

/** Stores `chunks` under `url` and reads the pass-through to its end. */
async function put (cache: DiskCache, url: string, chunks: Uint8Array[], over: Partial<SafeResponse> = {}): Promise<void> {
  await collect(cache.store(url, response(chunks, over)).body)
}

describe('DiskCache', () => {
  it('round trip: passes the chunks through, writes body + metadata, serves them back', async () => {
    const cache = await openCache()
    expect((await stat(dir)).mode & 0o777).toBe(0o700)
    const data = [randomBytes(1000), randomBytes(2000), randomBytes(10)]
    const headers = { 'content-type': 'text/plain', 'cache-control': 'public', etag: '"x"' }
    const res = response(data, { url: 'https://final.example.com/x', headers })
    const out = cache.store(URL_A, res)
    expect(out).not.toBe(res)
    expect(out).toMatchObject({ url: 'https://final.example.com/x', status: 200, headers, partial: false })
    const got = await collect(out.body)
    expect(got).toHaveLength(3)
    got.forEach((c, i) => { expect(c).toBe(data[i]) })

    const k = key(URL_A)
    expect(await files()).toEqual([`${k}.body`, `${k}.json`, 'fingerprint'])
    const meta: unknown = JSON.parse(await readFile(join(dir, `${k}.json`), 'utf8'))
    expect(meta).toEqual({ v: 1, url: URL_A, finalUrl: 'https://final.example.com/x', status: 200, headers, size: 3010, storedAt: t, expiresAt: t + HOUR, fingerprint: 'fp1' })

    const hit = await cache.get(URL_A)
    expect(hit).toMatchObject({ url: 'https://final.example.com/x', status: 200, headers, partial: false, size: 3010 })
    expect((await readAll(hit!.body)).equals(Buffer.concat(data))).toBe(true)
    // the key is the requested URL, not the final one
    expect(await cache.get('https://final.example.com/x')).toBeUndefined()
    expect(cache.stats()).toEqual({ entries: 1, bytes: 3010, hits: 1, misses: 1, evictions: 0 })
    await cache.close()
  })

  it('reads a range from an offset as a partial answer', async () => {
    const cache = await openCache()
    const data = randomBytes(5000)
    await put(cache, URL_A, [data.subarray(0, 2000), data.subarray(2000)])
    const part = await cache.get(URL_A, { start: 1234 })
    expect(part).toMatchObject({ status: 206, partial: true, size: 5000 })
    expect(part!.headers['content-length']).toBe('3766')
    expect(part!.headers['content-range']).toBe('bytes 1234-4999/5000')
    expect((await readAll(part!.body)).equals(data.subarray(1234))).toBe(true)
    const end = await cache.get(URL_A, { start: 5000 })
    expect((await readAll(end!.body)).length).toBe(0)
    expect(await cache.get(URL_A, { start: 5001 })).toBeUndefined()
    await cache.close()
  })

  describe('does not cache', () => {
    const cases: Array<[string, Partial<SafeResponse>]> = [
      ['no-store', { headers: { 'cache-control': 'public, no-store' } }],
      ['private', { headers: { 'cache-control': 'private, max-age=60' } }],
      ['no-cache', { headers: { 'cache-control': 'No-Cache' } }],
      ['max-age=0', { headers: { 'cache-control': 'max-age=0' } }],
      ['s-maxage=0', { headers: { 'cache-control': 'max-age=60, s-maxage=0' } }],
      ['an invalid max-age', { headers: { 'cache-control': 'max-age=soon' } }],
      ['Set-Cookie', { headers: { 'set-cookie': 'id=1' } }],
      ['Vary: *', { headers: { vary: 'accept, *' } }],
      ['a 206', { status: 206, partial: true }],
      ['a 404', { status: 404 }],
      ['a content-length above maxEntryBytes', { headers: { 'content-length': '262145' } }]
    ]
    it.each(cases)('%s', async (_name, over) => {
      const cache = await openCache()
      const res = response([randomBytes(100)], over)
      expect(cache.store(URL_A, res)).toBe(res)
      await collect(res.body)
      expect(await cache.get(URL_A)).toBeUndefined()
      expect(await files()).toEqual(['fingerprint'])
      await cache.close()
    })

    it('but caches the controls: public, max-age=60, Vary: accept-encoding, a content-length at the limit', async () => {
      const cache = await openCache()
      const res = response([randomBytes(100)], { headers: { 'cache-control': 'public, max-age=60', vary: 'accept-encoding', 'content-length': '262144' } })
      const out = cache.store(URL_A, res)
      expect(out).not.toBe(res)
      await collect(out.body)
      expect(cache.stats().entries).toBe(1)
      await cache.close()
    })

    it('a second copy of a URL while the first is being written', async () => {
      const cache = await openCache()
      const first = cache.store(URL_A, response([randomBytes(10)]))
      const again = response([randomBytes(10)])
      expect(cache.store(URL_A, again)).toBe(again)
      await collect(first.body)
      const later = response([randomBytes(10)])
      expect(cache.store(URL_A, later)).not.toBe(later)
      await cache.close()
    })
  })

  it('lets max-age / s-maxage shorten the TTL, never lengthen it', async () => {
    const cache = await openCache()
    await put(cache, URL_A, [randomBytes(10)], { headers: { 'cache-control': 'max-age=10' } })
    await put(cache, 'https://origin.example.com/s', [randomBytes(10)], { headers: { 'cache-control': 'max-age=100, s-maxage=5' } })
    await put(cache, 'https://origin.example.com/long', [randomBytes(10)], { headers: { 'cache-control': 'max-age=7200' } })
    const start = t
    t = start + 4_000
    expect(await cache.get('https://origin.example.com/s')).toBeDefined()
    t = start + 6_000
    expect(await cache.get('https://origin.example.com/s')).toBeUndefined()
    t = start + 9_000
    const hit = await cache.get(URL_A)
    expect(hit).toBeDefined()
    await readAll(hit!.body)
    t = start + 11_000
    expect(await cache.get(URL_A)).toBeUndefined()
    t = start + HOUR - 1
    expect(await cache.get('https://origin.example.com/long')).toBeDefined()
    t = start + HOUR
    expect(await cache.get('https://origin.example.com/long')).toBeUndefined()
    await cache.close()
    // expired entries are deleted from disk, not only forgotten
    expect(await files()).toEqual(['fingerprint'])
    expect(cache.stats().entries).toBe(0)
  })

  it('evicts the least recently used entries first; a get makes an entry recent', async () => {
    const cache = await openCache({ maxBytes: 300, maxEntryBytes: 100 })
    const u = (n: string): string => `https://origin.example.com/${n}`
    for (const n of ['a', 'b', 'c']) await put(cache, u(n), [randomBytes(100)])
    expect(cache.stats()).toMatchObject({ entries: 3, bytes: 300, evictions: 0 })
    await readAll((await cache.get(u('a')))!.body)
    await put(cache, u('d'), [randomBytes(100)])
    expect(cache.stats()).toMatchObject({ entries: 3, bytes: 300, evictions: 1 })
    await put(cache, u('e'), [randomBytes(100)])
    expect(cache.stats()).toMatchObject({ entries: 3, bytes: 300, evictions: 2 })
    await cache.close()
    const kept = ['a', 'd', 'e'].flatMap(n => [`${key(u(n))}.body`, `${key(u(n))}.json`])
    expect(await files()).toEqual([...kept, 'fingerprint'].sort())
  })

  it('passes a body larger than maxEntryBytes through byte-identical without caching it', async () => {
    const cache = await openCache({ maxEntryBytes: 100 })
    const data = [randomBytes(60), randomBytes(60), randomBytes(60)]
    const out = cache.store(URL_A, response(data))
    const got = await collect(out.body)
    expect(Buffer.concat(got).equals(Buffer.concat(data))).toBe(true)
    expect(await cache.get(URL_A)).toBeUndefined()
    expect(await files()).toEqual(['fingerprint'])
  })

  it('discards the copy when the consumer stops early', async () => {
    const cache = await openCache()
    const res = response([randomBytes(100), randomBytes(100), randomBytes(100)])
    for await (const c of cache.store(URL_A, res).body) {
      expect(c.byteLength).toBe(100)
      // the copy is being written (behind the reader)...
      for (let i = 0; i < 100 && !(await files()).some(n => n.endsWith('.tmp')); i++) await new Promise(resolve => setTimeout(resolve, 10))
      expect((await files()).some(n => n.endsWith('.tmp'))).toBe(true)
      break
    }
    await settle()
    // ...and is gone, and the cancellation reached the origin's body
    expect(res.closed()).toBe(true)
    expect(await files()).toEqual(['fingerprint'])
    expect(cache.stats().entries).toBe(0)
    expect(await cache.get(URL_A)).toBeUndefined()
    // the URL is free for the next copy
    await put(cache, URL_A, [randomBytes(10)])
    expect(cache.stats().entries).toBe(1)
  })

  it('drops a copy that falls too far behind the reader, without slowing or changing what it reads', async () => {
    const cache = await openCache({ maxBehindBytes: 150 })
    const data = [randomBytes(100), randomBytes(100), randomBytes(100)]
    // the reader takes the pieces faster than the disk writes them: behind 200 > 150 at the second
    const got = await collect(cache.store(URL_A, response(data)).body)
    expect(Buffer.concat(got).equals(Buffer.concat(data))).toBe(true)
    expect(await files()).toEqual(['fingerprint'])
    expect(cache.stats().entries).toBe(0)
    expect(await cache.get(URL_A)).toBeUndefined()
    // the URL is free for the next copy (one that keeps up)
    await put(cache, URL_A, [randomBytes(100)])
    expect(cache.stats().entries).toBe(1)
  })

  it('discards the copy when the body throws midway, passing the error on', async () => {
    const cache = await openCache()
    const error = new Error('origin reset')
    const got: Uint8Array[] = []
    let caught: unknown
    try {
      for await (const c of cache.store(URL_A, response([randomBytes(100), randomBytes(100), randomBytes(100)], {}, { after: 2, error })).body) got.push(c)
    } catch (err) {
      caught = err
    }
    await settle()
    expect(caught).toBe(error)
    expect(got).toHaveLength(2)
    expect(await files()).toEqual(['fingerprint'])
    expect(await cache.get(URL_A)).toBeUndefined()
  })

  it('keeps passing bytes through when the disk fails', async () => {
    const cache = await openCache()
    await rm(dir, { recursive: true })
    const data = [randomBytes(100), randomBytes(100)]
    const got = await collect(cache.store(URL_A, response(data)).body)
    expect(Buffer.concat(got).equals(Buffer.concat(data))).toBe(true)
    expect(cache.stats().entries).toBe(0)
  })

  it('close() abandons a copy still streaming; the consumer still gets every byte', async () => {
    const cache = await openCache()
    const data = [randomBytes(100), randomBytes(100)]
    const iter = cache.store(URL_A, response(data)).body[Symbol.asyncIterator]()
    const first = await iter.next()
    await cache.close()
    expect(await files()).toEqual(['fingerprint'])
    const second = await iter.next()
    expect([first.value, second.value]).toEqual(data)
    expect((await iter.next()).done).toBe(true)
    expect(await files()).toEqual(['fingerprint'])
    expect(cache.stats().entries).toBe(0)
  })

  it('finds its entries again after a restart, minus the expired ones', async () => {
    const first = await openCache()
    const a = randomBytes(300)
    const b = randomBytes(200)
    await put(first, URL_A, [a])
    t += 1
    await put(first, 'https://origin.example.com/b', [b])
    t += 1
    await put(first, 'https://origin.example.com/short', [randomBytes(50)], { headers: { 'cache-control': 'max-age=10' } })
    await first.close()
    t += 20_000
    const second = await openCache()
    expect(second.stats()).toEqual({ entries: 2, bytes: 500, hits: 0, misses: 0, evictions: 0 })
    expect((await readAll((await second.get(URL_A))!.body)).equals(a)).toBe(true)
    expect((await readAll((await second.get('https://origin.example.com/b'))!.body)).equals(b)).toBe(true)
    expect(await files()).not.toContain(`${key('https://origin.example.com/short')}.body`)
    await second.close()
    // a smaller budget at open evicts the oldest first
    const third = await openCache({ maxBytes: 250 })
    expect(third.stats()).toMatchObject({ entries: 1, bytes: 200, evictions: 1 })
    expect(await third.get(URL_A)).toBeUndefined()
  })

  it('deletes temp files, bodies without metadata and malformed metadata at open()', async () => {
    const first = await openCache()
    await put(first, URL_A, [randomBytes(100)])
    await first.close()
    const k = key(URL_A)
    const meta = await readFile(join(dir, `${k}.json`), 'utf8')
    const [orphan, corrupt, mismatch, moved] = ['o', 'c', 'm', 'v'].map(n => key(`https://origin.example.com/${n}`))
    const junk = {
      [`${k}.a1b2c3.tmp`]: 'half',
      [`${k}.json.d4e5f6.tmp`]: '{"v":',
      'fingerprint.0a0b0c.tmp': 'fp',
      [`${orphan}.body`]: 'no metadata',
      [`${corrupt}.body`]: 'x',
      [`${corrupt}.json`]: '{not json',
      [`${mismatch}.body`]: 'wrong size',
      [`${mismatch}.json`]: JSON.stringify({ ...JSON.parse(meta) as object, url: 'https://origin.example.com/m' }),
      // valid metadata under another key's name
      [`${moved}.body`]: randomBytes(100),
      [`${moved}.json`]: meta
    }
    for (const [name, content] of Object.entries(junk)) await writeFile(join(dir, name), content)
    await writeFile(join(dir, 'notes.txt'), 'not ours')
    const second = await openCache()
    expect(await files()).toEqual([`${k}.body`, `${k}.json`, 'fingerprint', 'notes.txt'])
    expect(second.stats()).toMatchObject({ entries: 1, bytes: 100 })
    expect(await second.get(URL_A)).toBeDefined()
  })

  it('deletes every entry when the fingerprint changed', async () => {
    const first = await openCache()
    await put(first, URL_A, [randomBytes(100)])
    await put(first, 'https://origin.example.com/b', [randomBytes(100)])
    await first.close()
    await writeFile(join(dir, 'notes.txt'), 'not ours')
    const second = await openCache({ fingerprint: 'fp2' })
    expect(second.stats().entries).toBe(0)
    expect(await second.get(URL_A)).toBeUndefined()
    expect(await files()).toEqual(['fingerprint', 'notes.txt'])
    expect(await readFile(join(dir, 'fingerprint'), 'utf8')).toBe('fp2')
  })

  it('is disabled by maxBytes 0', async () => {
    const cache = await openCache({ maxBytes: 0 })
    const res = response([randomBytes(10)])
    expect(cache.store(URL_A, res)).toBe(res)
    await collect(res.body)
    expect(await cache.get(URL_A)).toBeUndefined()
    await expect(stat(dir)).rejects.toThrow()
    expect(cache.stats()).toMatchObject({ entries: 0, bytes: 0 })
  })
})
