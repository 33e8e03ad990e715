import { createHash, randomBytes } from 'node:crypto'
import { mkdir, open, readdir, readFile, rename, rm, stat, writeFile, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { ProxyError } from './errors.js'
import type { SafeResponse } from './guard.js'

/**
 * The provider's bounded disk cache of origin responses.
 *
 * - Only plain, shareable answers are kept: a complete 200 (never a 206), no Set-Cookie, no
 *   `Vary: *`, no Cache-Control no-store / private / no-cache, no zero or invalid max-age. The
 *   lifetime is min(ttlMs, s-maxage or max-age); Expires is ignored (the cap is ours anyway).
 * - The key is the SHA-256 of the REQUESTED URL: the guard checked that URL and every redirect hop
 *   when the entry was written. Entries written under another guard policy (`fingerprint`) are
 *   all deleted at open(), so a policy change never serves what the new policy would refuse.
 * - Files per entry: `<key>.body`, then `<key>.json` (metadata), each put in place by rename. The
 *   metadata is written last and removed first, so a crash leaves at worst a body without metadata,
 *   which open() deletes. Temp files (`*.tmp`) are deleted at open() too.
 * - `store` copies the body to disk while the caller reads it; caching is best effort: a disk error,
 *   a body over `maxEntryBytes`, an error from the origin or a caller that stops early discards the
 *   copy and never changes the bytes or errors the caller sees.
 * - Recency lives in memory (Map order); after a restart entries rank by the time they were stored.
 * - Limits: Vary other than `*` is not honoured (the key is the URL alone; the guard drops the
 *   credentials that would make answers personal). A body returned by `store` or `get` holds a file
 *   until it is read to its end or `return()`ed, like the socket behind a SafeResponse.
 */

export interface DiskCacheOptions {
  /** created 0700 if missing; only files named like entries, temp files and `fingerprint` are ever touched */
  dir: string
  /** total body bytes kept; 0 disables the cache (and it never touches the disk) */
  maxBytes: number
  /** upper bound on freshness */
  ttlMs: number
  /** larger bodies are not cached; default maxBytes / 4 */
  maxEntryBytes?: number
  /** identifies the SSRF policy; entries written under another one are deleted at open() */
  fingerprint: string
  now?: () => number
  /** a copy this far behind the reader is dropped (default 32 MiB) */
  maxBehindBytes?: number
}

export interface CachedResponse {
  /** the final URL the entry was fetched from, after redirects */
  url: string
  status: number
  headers: Record<string, string>
  /** a range was asked for: the body starts at range.start (status 206) */
  partial: boolean
  body: AsyncIterable<Uint8Array>
  /** the whole entry's size, whatever the range */
  size: number
}

export interface CacheStats { entries: number, bytes: number, hits: number, misses: number, evictions: number }

interface Meta {
  v: 1
  url: string
  finalUrl: string
  status: number
  headers: Record<string, string>
  size: number
  storedAt: number
  expiresAt: number
  fingerprint: string
}

/** a streaming copy: `write` and `finish` never throw, whatever the disk does */
interface Copy {
  /** queue a piece for the disk; never waits for it (a copy too far behind the reader is dropped) */
  write: (chunk: Uint8Array) => void
  finish: (complete: boolean) => Promise<void>
  abandon: () => Promise<void>
}

/** a copy this far behind the reader (disk slower than the origin) is dropped rather than slowing the fetch */
const MAX_BEHIND_BYTES = 32 * 1024 * 1024

/** bodies are read back in pieces of this size */
const READ_CHUNK = 1024 * 1024
const ENTRY = /^([0-9a-f]{64})\.(body|json)$/
const TEMP = /^(?:[0-9a-f]{64}|fingerprint)\..*\.tmp$/
const FINGERPRINT = 'fingerprint'
const noop = (): void => {}

function keyOf (url: string): string {
  return createHash('sha256').update(url).digest('hex')
}

function tempName (path: string): string {
  return `${path}.${randomBytes(6).toString('hex')}.tmp`
}

/** write then rename: readers see the old file or the whole new one, never a part */
async function writeAtomic (path: string, data: string): Promise<void> {
  const tmp = tempName(path)
  try {
    await writeFile(tmp, data, { mode: 0o600, flush: true })
    await rename(tmp, path)
  } catch (err) {
    await rm(tmp, { force: true }).catch(noop)
    throw err
  }
}

async function writeAll (fh: FileHandle, chunk: Uint8Array): Promise<void> {
  // a write may be short; the rest follows at the file position
  for (let off = 0; off < chunk.byteLength;) off += (await fh.write(chunk, off)).bytesWritten
}

/**
 * How long `res` may be served from the cache, or undefined when it must not be cached at all.
 * An invalid or repeated max-age counts as its smallest reading (an invalid one is 0, RFC 9111 §4.2.1).
 */
function lifetime (res: SafeResponse, ttlMs: number, maxEntryBytes: number): number | undefined {
  const h = res.headers
  if (res.status !== 200 || res.partial || h['set-cookie'] !== undefined) return undefined
  if ((h.vary ?? '').split(',').some(v => v.trim() === '*')) return undefined
  if (Number(h['content-length'] ?? 0) > maxEntryBytes) return undefined
  const ages = new Map<string, number>()
  for (const part of (h['cache-control'] ?? '').split(',')) {
    const eq = part.indexOf('=')
    const name = (eq < 0 ? part : part.slice(0, eq)).trim().toLowerCase()
    if (name === 'no-store' || name === 'private' || name === 'no-cache') return undefined
    if (name !== 'max-age' && name !== 's-maxage') continue
    const digits = /^"?(\d+)"?$/.exec(eq < 0 ? '' : part.slice(eq + 1).trim())?.[1]
    ages.set(name, Math.min(ages.get(name) ?? Infinity, digits === undefined ? 0 : Number(digits)))
  }
  // s-maxage is the shared caches' max-age and wins over it
  const age = ages.get('s-maxage') ?? ages.get('max-age')
  const ttl = age === undefined ? ttlMs : Math.min(ttlMs, age * 1000)
  return ttl > 0 ? ttl : undefined
}

function isMeta (m: unknown, key: string, fingerprint: string): m is Meta {
  if (typeof m !== 'object' || m === null) return false
  const o = m as Record<string, unknown>
  const h = o.headers
  return o.v === 1 && typeof o.url === 'string' && keyOf(o.url) === key && typeof o.finalUrl === 'string' &&
    Number.isInteger(o.status) && Number.isSafeInteger(o.size) && (o.size as number) >= 0 &&
    Number.isFinite(o.storedAt) && Number.isFinite(o.expiresAt) && o.fingerprint === fingerprint &&
    typeof h === 'object' && h !== null && !Array.isArray(h) && Object.values(h).every(v => typeof v === 'string')
}

export class DiskCache {
  private readonly dir: string
  private readonly maxBytes: number
  private readonly maxEntryBytes: number
  private readonly ttlMs: number
  private readonly fingerprint: string
  private readonly now: () => number
  private readonly maxBehindBytes: number
  /** insertion order is recency: the first key is the least recently used */
  private readonly index = new Map<string, Meta>()
  /** keys with a copy being written: one writer per key */
  private readonly writers = new Map<string, Copy>()
  /** files of dropped entries being deleted, per key: a new copy waits before taking their names */
  private readonly unlinking = new Map<string, Promise<void>>()
  /** copies finishing (writes, fsync, rename, index) in the background */
  private readonly finishing = new Set<Promise<void>>()
  private bytes = 0
  private hits = 0
  private misses = 0
  private evictions = 0
  private closed = false

  private constructor (opts: DiskCacheOptions) {
    const bad = (what: string): ProxyError => new ProxyError('PROXY_BAD_CONFIG', `cache: ${what}`)
    if (!Number.isSafeInteger(opts.maxBytes) || opts.maxBytes < 0) throw bad('maxBytes must be a non-negative integer')
    if (!(opts.ttlMs >= 0)) throw bad('ttlMs must be non-negative')
    this.dir = opts.dir
    this.maxBytes = opts.maxBytes
    this.maxEntryBytes = Math.min(opts.maxEntryBytes ?? Math.floor(opts.maxBytes / 4), opts.maxBytes)
    this.ttlMs = opts.ttlMs
    this.fingerprint = opts.fingerprint
    this.now = opts.now ?? Date.now
    this.maxBehindBytes = opts.maxBehindBytes ?? MAX_BEHIND_BYTES
  }

  /** Opens (creating) the directory and rebuilds the index from it; see the module comment for what is deleted. */
  static async open (opts: DiskCacheOptions): Promise<DiskCache> {
    const cache = new DiskCache(opts)
    if (cache.maxBytes > 0) await cache.load()
    return cache
  }

  private path (key: string, kind: 'body' | 'json'): string {
    return join(this.dir, `${key}.${kind}`)
  }

  private async load (): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 })
    const ours = (await readdir(this.dir)).filter(n => ENTRY.test(n) || TEMP.test(n))
    const written = await readFile(join(this.dir, FINGERPRINT), 'utf8').catch(() => undefined)
    if (written !== this.fingerprint) {
      // another policy (or none on record) wrote these: what it allowed, this one may refuse
      await Promise.all(ours.map(n => rm(join(this.dir, n), { force: true })))
      await writeAtomic(join(this.dir, FINGERPRINT), this.fingerprint)
      return
    }
    const found: Array<[string, Meta]> = []
    for (const n of ours) {
      const m = ENTRY.exec(n)
      if (m?.[1] === undefined || m[2] !== 'json') continue
      const meta = await this.readMeta(m[1])
      if (meta !== undefined) found.push([m[1], meta])
    }
    const keep = new Set(found.map(([key]) => key))
    // temp files are half-written; bodies without valid metadata are garbage
    await Promise.all(ours.filter(n => TEMP.test(n) || !keep.has(n.slice(0, 64))).map(n => rm(join(this.dir, n), { force: true })))
    found.sort((a, b) => a[1].storedAt - b[1].storedAt)
    for (const [key, meta] of found) {
      this.index.set(key, meta)
      this.bytes += meta.size
    }
    this.evict()
    await Promise.all(this.unlinking.values())
  }

  /** the entry's metadata when it is valid, fresh and its body has the size it claims */
  private async readMeta (key: string): Promise<Meta | undefined> {
    try {
      const meta: unknown = JSON.parse(await readFile(this.path(key, 'json'), 'utf8'))
      if (!isMeta(meta, key, this.fingerprint) || meta.expiresAt <= this.now()) return undefined
      const st = await stat(this.path(key, 'body'))
      return st.isFile() && st.size === meta.size ? meta : undefined
    } catch {
      return undefined
    }
  }

  /** Forgets an entry at once and deletes its files in the background (metadata first). */
  private drop (key: string, evicted = false): void {
    const meta = this.index.get(key)
    if (meta === undefined) return
    this.index.delete(key)
    this.bytes -= meta.size
    if (evicted) this.evictions++
    const done = (this.unlinking.get(key) ?? Promise.resolve()).then(async () => {
      await rm(this.path(key, 'json'), { force: true })
      await rm(this.path(key, 'body'), { force: true })
    }).catch(noop)
    this.unlinking.set(key, done)
    void done.then(() => { if (this.unlinking.get(key) === done) this.unlinking.delete(key) })
  }

  private evict (): void {
    for (const key of this.index.keys()) {
      if (this.bytes <= this.maxBytes) break
      this.drop(key, true)
    }
  }

  /** A fresh entry for `url` (from `range.start` when given), or undefined. */
  async get (url: string, range?: { start: number }): Promise<CachedResponse | undefined> {
    if (this.maxBytes === 0 || this.closed) return undefined
    const key = keyOf(url)
    const meta = this.index.get(key)
    const start = range?.start ?? 0
    if (meta === undefined || !Number.isSafeInteger(start) || start < 0 || start > meta.size) return this.miss()
    if (meta.expiresAt <= this.now()) {
      this.drop(key)
      return this.miss()
    }
    let fh: FileHandle
    try {
      fh = await open(this.path(key, 'body'), 'r')
    } catch {
      if (this.index.get(key) === meta) this.drop(key)
      return this.miss()
    }
    // dropped or replaced while opening: the file opened may not be this entry's body. Still
    // indexed means not yet unlinked, so the open file is this body and stays readable after an eviction.
    if (this.index.get(key) !== meta) {
      await fh.close().catch(noop)
      return this.miss()
    }
    this.index.delete(key)
    this.index.set(key, meta)
    this.hits++
    const headers = { ...meta.headers }
    if (range !== undefined) {
      headers['content-length'] = String(meta.size - start)
      if (start < meta.size) headers['content-range'] = `bytes ${start}-${meta.size - 1}/${meta.size}`
    }
    return {
      url: meta.finalUrl,
      status: range !== undefined ? 206 : meta.status,
      headers,
      partial: range !== undefined,
      body: fh.createReadStream({ start, highWaterMark: READ_CHUNK }),
      size: meta.size
    }
  }

  private miss (): undefined {
    this.misses++
    return undefined
  }

  /**
   * `res` with a body that also copies itself to the cache, or `res` itself when it is not cacheable
   * (or `url` already has a copy being written). The copy is indexed only if the body is read to its end.
   */
  store (url: string, res: SafeResponse): SafeResponse {
    if (this.maxBytes === 0 || this.closed) return res
    const ttl = lifetime(res, this.ttlMs, this.maxEntryBytes)
    const key = keyOf(url)
    if (ttl === undefined || this.writers.has(key)) return res
    const tmp = tempName(this.path(key, 'body'))
    let fh: FileHandle | undefined
    let size = 0
    let settled = false
    let chain = Promise.resolve()
    const discard = async (): Promise<void> => {
      settled = true
      const f = fh
      fh = undefined
      await f?.close().catch(noop)
      await rm(tmp, { force: true }).catch(noop)
    }
    // disk steps run one after another; the first failure discards the copy and nothing else
    const step = async (fn: () => Promise<void>): Promise<void> => {
      chain = chain.then(async () => {
        if (settled) return
        try { await fn() } catch { await discard() }
      })
      await chain
    }
    const commit = async (): Promise<void> => {
      fh ??= await open(tmp, 'wx', 0o600)
      await fh.sync()
      const f = fh
      fh = undefined
      await f.close()
      const storedAt = this.now()
      await this.install(key, tmp, { v: 1, url, finalUrl: res.url, status: res.status, headers: res.headers, size, storedAt, expiresAt: storedAt + ttl, fingerprint: this.fingerprint })
      settled = true
    }
    let behind = 0
    // too far behind: no more writes, and the copy is discarded (by a step, so after any under way)
    let dropped = false
    const copy: Copy = {
      write: chunk => {
        if (settled || dropped) return
        if (behind + chunk.byteLength > this.maxBehindBytes) {
          dropped = true
          step(discard).catch(noop)
          return
        }
        behind += chunk.byteLength
        step(async () => {
          size += chunk.byteLength
          if (size > this.maxEntryBytes) return await discard()
          fh ??= await open(tmp, 'wx', 0o600)
          await writeAll(fh, chunk)
        }).finally(() => { behind -= chunk.byteLength }).catch(noop)
      },
      finish: async complete => {
        await step(complete && !dropped ? commit : discard)
        if (this.writers.get(key) === copy) this.writers.delete(key)
      },
      abandon: async () => { await step(discard) }
    }
    this.writers.set(key, copy)
    return { ...res, body: this.tee(res.body, copy) }
  }

  private async * tee (body: AsyncIterable<Uint8Array>, copy: Copy): AsyncGenerator<Uint8Array> {
    let complete = false
    try {
      for await (const chunk of body) {
        // the reader never waits for the disk: the copy is written behind it
        copy.write(chunk)
        yield chunk
      }
      complete = true
    } finally {
      // reached on the end, on an error (rethrown as is) and on the caller's return(); the commit
      // (fsync, rename, index) goes on in the background: a lookup before it is done is a miss
      const done = copy.finish(complete).catch(noop)
      this.finishing.add(done)
      done.finally(() => { this.finishing.delete(done) }).catch(noop)
    }
  }

  /** Puts a complete, synced temp body in place as `key`'s entry, replacing an older one. */
  private async install (key: string, tmp: string, meta: Meta): Promise<void> {
    this.drop(key)
    await this.unlinking.get(key)
    const body = this.path(key, 'body')
    try {
      await rename(tmp, body)
      await writeAtomic(this.path(key, 'json'), JSON.stringify(meta))
    } catch (err) {
      await rm(body, { force: true }).catch(noop)
      throw err
    }
    this.index.set(key, meta)
    this.bytes += meta.size
    this.evict()
  }

  stats (): CacheStats {
    return { entries: this.index.size, bytes: this.bytes, hits: this.hits, misses: this.misses, evictions: this.evictions }
  }

  /**
   * Lets a copy that is being committed finish, abandons copies still streaming (their callers keep
   * reading unchanged: waiting for them could take a whole fetch deadline) and waits for deletions.
   * Afterwards `get` finds nothing and `store` passes responses through.
   */
  async close (): Promise<void> {
    this.closed = true
    await Promise.all([...this.writers.values()].map(async c => { await c.abandon() }))
    await this.idle()
    await Promise.all(this.unlinking.values())
  }

  /** Waits until every copy whose body was read to its end (or stopped) is committed or dropped. */
  async idle (): Promise<void> {
    while (this.finishing.size > 0) await Promise.all([...this.finishing])
  }
}
