import { createHash, webcrypto } from 'node:crypto'
import { constants as fsConstants } from 'node:fs'
import { open, readFile, rename, rm, stat, truncate, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { writeFileAtomic, type ServicePayments } from '@btt/node'
import type { Libp2p } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import type { Logger } from 'pino'
import { ProxyError } from './errors.js'
import {
  DEFAULT_CHUNK_BYTES, FRAME_DATA, Framed, MAX_CHUNK_BYTES, MIN_CHUNK_BYTES, PROXY_PROTOCOL, parseMessage, raiseIfError,
  zProviderMessage, type ProviderMessage
} from './protocol.js'

const DIAL_TIMEOUT_MS = 15_000
const READ_TIMEOUT_MS = 120_000
/** A channel for proxy payments outlives its last use by this much. */
const CHANNEL_LIFETIME_MS = 7 * 86_400_000

/**
 * What a download has received, next to its partial file: the URL, the chunk size, each chunk's
 * SHA-256 and the origin's validators. Written (durably) after a chunk is on disk and before it is
 * paid, so a resumed download neither pays a chunk twice nor keeps bytes it did not check.
 */
/**
 * What a download has received, next to its partial file: the URL, the chunk size, each chunk's
 * SHA-256, the origin's validators, and the segments of its payment (each a channel from a byte on,
 * with the channel's spent amount when the segment began). Segments are written durably before
 * anything is paid on them; the chunk list is saved lazily, and a resume completes it from the
 * channel (see ProxyClient.reconcile).
 */
export interface Manifest {
  v: 2
  url: string
  chunkSize: number
  chunks: string[]
  bytes: number
  segments: Segment[]
  status?: number
  etag?: string
  lastModified?: string
  length?: number
}

export interface Segment {
  channel: string
  /** the provider's wallet account and addresses */
  account: string
  addrs: string[]
  /** base units per byte */
  price: string
  spentAtStart: string
  fromByte: number
}

export interface FetchOptions {
  url: string
  /** provider multiaddrs ending in /p2p/<peer id> */
  addrs: string[]
  /** the output file; `<out>.btt-partial` and `<out>.btt-manifest.json` beside it while it downloads */
  out: string
  chunkSize?: number
  /** continue from the manifest beside `out` (its chunks are kept, the next one is fetched) */
  resume?: boolean
  /** without `resume`: discard an interrupted download of `out` (its last payment is settled first) */
  force?: boolean
  /** highest price accepted, base units per byte */
  maxPrice: bigint
  /** deposit of a new channel to the provider when none with enough left exists */
  budget: bigint
  onProgress?: (bytes: number, total?: number) => void
  signal?: AbortSignal
}

export interface FetchResult { url: string, status: number, bytes: number, chunks: number, paid: bigint, resumedFrom: number, channels: string[] }

/** A running download, as `GET /v1/services/proxy/fetches` shows it. */
export interface ActiveFetch { out: string, url: string, bytes: number, length?: number, chunks: number, paid: bigint, provider: string, startedAt: number }

export interface ProxyClientInit {
  p2p: Pick<Libp2p, 'dialProtocol'>
  payments: ServicePayments
  logger: Logger
  /** where the client keeps which channel each unfinished download holds */
  dataDir: string
}

const PEER_OF = /\/p2p\/[1-9A-HJ-NP-Za-km-z]+$/

/**
 * The requester side of the URL proxy. Money rules: a chunk is paid only once its SHA-256 matched
 * and it is on disk with the manifest; a payment made and not known to have arrived is sent again
 * (the same voucher), never made twice; a channel serves one download at a time, from its first
 * chunk until it completes or is discarded (held across restarts in `<dataDir>/held-channels.json`),
 * so the "spent before" check that tells a made payment from one not made stays true.
 */
export class ProxyClient {
  /** One download per output file: a new one (a resume) stops the one before and waits for it. */
  private readonly running = new Map<string, { ac: AbortController, done: Promise<unknown> }>()
  private readonly active = new Map<string, ActiveFetch>()
  private readonly held: HeldChannels

  constructor (private readonly init: ProxyClientInit) {
    this.held = new HeldChannels(join(init.dataDir, 'held-channels.json'))
  }

  /** Downloads running now. */
  list (): ActiveFetch[] {
    return [...this.active.values()].map(a => ({ ...a }))
  }

  async fetch (opts: FetchOptions): Promise<FetchResult> {
    const before = this.running.get(opts.out)
    if (before !== undefined) {
      before.ac.abort(new ProxyError('PROXY_SUPERSEDED', 'a newer fetch of the same file started'))
      await before.done.catch(() => {})
    }
    const ac = new AbortController()
    const signal = opts.signal !== undefined ? AbortSignal.any([opts.signal, ac.signal]) : ac.signal
    const done = this.fetchOnce({ ...opts, signal })
    const entry = { ac, done }
    this.running.set(opts.out, entry)
    try {
      return await done
    } finally {
      if (this.running.get(opts.out) === entry) {
        this.running.delete(opts.out)
        this.active.delete(opts.out)
      }
    }
  }

  private async fetchOnce (opts: FetchOptions): Promise<FetchResult> {
    let chunkSize = opts.chunkSize ?? DEFAULT_CHUNK_BYTES
    if (!Number.isInteger(chunkSize) || chunkSize < MIN_CHUNK_BYTES || chunkSize > MAX_CHUNK_BYTES) throw new ProxyError('PROXY_BAD_REQUEST', `chunk size must be ${MIN_CHUNK_BYTES}–${MAX_CHUNK_BYTES} bytes`)
    if (opts.addrs.length === 0) throw new ProxyError('PROXY_BAD_PROVIDER', 'no provider address')
    const partialPath = `${opts.out}.btt-partial`
    const manifestPath = `${opts.out}.btt-manifest.json`
    const payments = this.init.payments
    let manifest = await readManifest(manifestPath)
    if (manifest !== undefined && !(await exists(partialPath)) && await exists(opts.out)) {
      // the download finished and stopped between putting the file in place and removing its manifest
      await rm(manifestPath, { force: true })
      await this.held.release(opts.out)
      manifest = undefined
    }
    if (manifest !== undefined && opts.resume !== true && opts.force !== true) {
      throw new ProxyError('PROXY_UNFINISHED', `an interrupted download of ${manifest.url} is at ${opts.out} (${manifest.bytes} bytes or more): resume it, or force to discard it`)
    }
    if (manifest === undefined && opts.resume === true && await exists(opts.out)) {
      // finished already (its manifest goes when the file is complete): fetching again would pay again
      throw new ProxyError('PROXY_ALREADY_COMPLETE', `${opts.out} is complete (no manifest to resume from); fetch without resume to download it again`)
    }
    if (manifest !== undefined && opts.resume === true && manifest.url !== opts.url) throw new ProxyError('PROXY_RESUME_MISMATCH', `${manifestPath} is for ${manifest.url}, not ${opts.url}`)

    const terms = await this.quote(opts.addrs, opts.signal)
    if (terms.ledger !== payments.ledgerId) throw new ProxyError('PROXY_WRONG_LEDGER', `the provider settles on ledger ${terms.ledger}, this node on ${payments.ledgerId}`)
    if (terms.price > opts.maxPrice) throw new ProxyError('PROXY_PRICE_TOO_HIGH', `the provider charges ${terms.price} base units per byte, above the limit ${opts.maxPrice}`)

    // the interrupted download: what its channel says was paid is what it holds; the last voucher
    // goes to its provider again (one that has it ignores it)
    let settle: Awaited<ReturnType<ProxyClient['reconcile']>>
    if (manifest !== undefined) {
      settle = await this.reconcile(manifest, partialPath)
      await writeManifest(manifestPath, manifest)
      if (settle !== undefined && settle.account !== terms.account) {
        await this.deliver(settle.addrs, settle.channel, settle.voucher, opts.signal)
        settle = undefined
      }
    }
    if (manifest !== undefined && opts.resume !== true) {
      // discarded: the bytes go, the channel is free again
      await rm(partialPath, { force: true })
      await rm(manifestPath, { force: true })
      await this.held.release(opts.out)
      manifest = undefined
    }
    if (manifest === undefined) {
      await rm(partialPath, { force: true })
      manifest = { v: 2, url: opts.url, chunkSize, chunks: [], bytes: 0, segments: [] }
    } else {
      // bytes past the last paid chunk were never paid for: dropped, fetched again
      chunkSize = manifest.chunkSize
      await truncate(partialPath, manifest.bytes)
    }
    const from = manifest.chunks.length
    const need = terms.price * BigInt(chunkSize)
    const state: ActiveFetch = { out: opts.out, url: opts.url, bytes: manifest.bytes, ...(manifest.length !== undefined ? { length: manifest.length } : {}), chunks: from, paid: 0n, provider: opts.addrs[0] as string, startedAt: Date.now() }
    this.active.set(opts.out, state)
    const used: string[] = []
    const saver = new ManifestSaver(manifestPath)
    // positional writes (never O_APPEND: Linux ignores pwrite's offset under it)
    const fh = await open(partialPath, fsConstants.O_RDWR | fsConstants.O_CREAT, 0o600)
    try {
      for (;;) {
        const channel = await this.channelFor(opts, manifest, terms.account, need)
        if (!used.includes(channel)) used.push(channel)
        const seg = manifest.segments.at(-1)
        if (seg === undefined || seg.channel !== channel || seg.price !== terms.price.toString()) {
          // a new segment, durable before anything is paid on it: its channel's spent amount from
          // here on counts this download's paid bytes
          manifest.segments.push({ channel, account: terms.account, addrs: opts.addrs, price: terms.price.toString(), spentAtStart: (payments.outgoing(channel)?.spent ?? 0n).toString(), fromByte: manifest.bytes })
          await saver.now(manifest)
        }
        if (settle !== undefined && settle.channel !== channel) {
          // the last voucher is on a channel this download no longer uses: on its own
          await this.deliver(opts.addrs, settle.channel, settle.voucher, opts.signal)
          settle = undefined
        }
        const complete = await this.session({ opts, manifest, saver, fh, terms, state, channel, need, ...(settle !== undefined ? { settle: settle.voucher } : {}) })
        settle = undefined
        if (complete) break
        this.init.logger.info({ out: opts.out, channel }, 'proxy channel used up; going on with a new one')
      }
    } catch (err) {
      await saver.stop()
      await saver.now(manifest).catch(() => {})
      if (manifest.bytes === 0 && state.paid === 0n) {
        // nothing was paid for this download: no manifest to resume from, the channel is free again
        await fh.close().catch(() => {})
        await rm(partialPath, { force: true })
        await rm(manifestPath, { force: true })
        await this.held.release(opts.out)
      }
      throw err
    } finally {
      await fh.close().catch(() => {})
    }
    await saver.stop()
    await rename(partialPath, opts.out)
    await rm(manifestPath, { force: true })
    await this.held.release(opts.out)
    return { url: opts.url, status: manifest.status ?? 0, bytes: manifest.bytes, chunks: manifest.chunks.length, paid: state.paid, resumedFrom: from, channels: used }
  }

  private async reconcile (manifest: Manifest, partialPath: string): Promise<{ channel: string, account: string, addrs: string[], voucher: Uint8Array } | undefined> {
    const seg = await reconcileManifest(manifest, partialPath, id => this.init.payments.outgoing(id))
    if (seg === undefined) return undefined
    return { channel: seg.channel, account: seg.account, addrs: seg.addrs, voucher: await this.init.payments.latestVoucher(seg.channel) }
  }

  /** A voucher on its own (the download went on through another provider or channel): best effort. */
  private async deliver (addrs: string[], channel: string, voucher: Uint8Array, signal?: AbortSignal): Promise<void> {
    try {
      const io = await this.dial(addrs, signal)
      try {
        await io.sendJson({ t: 'settle', channel, voucher: Buffer.from(voucher).toString('hex') })
        await this.expect(io, 'settled')
      } finally {
        await io.stream.close().catch(() => {})
      }
    } catch (err) {
      // the voucher is in the wallet; the provider gets it with the channel's next voucher, or claims less
      this.init.logger.warn({ err, channel }, 'could not deliver the last payment of an interrupted download to its provider')
    }
  }

  /** A channel to the provider with room for a chunk: the download's own, another free one, or a new one. */
  private async channelFor (opts: FetchOptions, manifest: Manifest, payee: string, need: bigint): Promise<string> {
    const payments = this.init.payments
    const seg = manifest.segments.at(-1)
    const own = seg !== undefined && seg.account === payee ? payments.outgoing(seg.channel) : undefined
    if (own !== undefined && own.status === 'open' && own.deposit - own.spent >= need && own.expiresAt > Date.now() + 60_000) {
      await this.held.hold(opts.out, own.id)
      return own.id
    }
    // found (or opened) and held in one step: two downloads starting together never take the same one
    return await this.held.claim(opts.out, async others => {
      const found = payments.findChannel(payee, need, others)
      if (found !== undefined) return found.id
      if (opts.budget < need) throw new ProxyError('PROXY_FUNDS', `a chunk costs ${need} base units; the budget is ${opts.budget}`)
      return (await payments.openChannel(payee, opts.budget, Date.now() + CHANNEL_LIFETIME_MS)).id
    })
  }

  /** One stream to the provider: chunks from the manifest's end until the body ends (true) or the channel is used up (false). */
  private async session (s: { opts: FetchOptions, manifest: Manifest, saver: ManifestSaver, fh: FileHandle, terms: Terms, state: ActiveFetch, channel: string, need: bigint, settle?: Uint8Array }): Promise<boolean> {
    const { opts, manifest, saver, fh, terms, state, channel } = s
    const payments = this.init.payments
    const from = manifest.chunks.length
    const io = await this.dial(opts.addrs, opts.signal)
    // an abort (the CLI went away, a newer fetch of the same file) cuts the stream at once
    const onAbort = (): void => { io.stream.abort(new ProxyError('PROXY_ABORTED', 'the fetch was stopped')) }
    opts.signal?.addEventListener('abort', onAbort, { once: true })
    try {
      await io.sendJson({ t: 'fetch', url: manifest.url, channel, chunk_size: manifest.chunkSize, from, max_price: opts.maxPrice, verify_previous: from > 0, ...(s.settle !== undefined ? { settle: Buffer.from(s.settle).toString('hex') } : {}) })
      const head = await this.expect(io, 'head')
      if (head.price !== terms.price) throw new ProxyError('PROXY_BAD_PRICE', `the provider quoted ${terms.price} and now asks ${head.price}`)
      if (from > 0) {
        // the same resource as before, from this provider too: validators and the last chunk's hash
        if (head.previous !== manifest.chunks[from - 1]) throw new ProxyError('PROXY_RESUME_MISMATCH', `chunk ${from - 1} has changed since the download started (its SHA-256 differs): start again without resume`)
        if (manifest.etag !== undefined && head.headers.etag !== undefined && head.headers.etag !== manifest.etag) throw new ProxyError('PROXY_RESUME_MISMATCH', 'the resource has changed (ETag): start again without resume')
      } else {
        manifest.status = head.status
        if (head.headers.etag !== undefined) manifest.etag = head.headers.etag
        if (head.headers['last-modified'] !== undefined) manifest.lastModified = head.headers['last-modified']
        if (head.length !== undefined) { manifest.length = head.length; state.length = head.length }
        await saver.now(manifest)
      }
      for (;;) {
        opts.signal?.throwIfAborted()
        const msg = await this.read(io)
        raiseIfError(msg)
        if (msg.t === 'end') return msg.complete
        const index = manifest.chunks.length
        if (msg.t !== 'chunk' || msg.index !== index) throw new ProxyError('PROXY_PROTOCOL', `expected chunk ${index}`)
        if (msg.length > manifest.chunkSize) throw new ProxyError('PROXY_PROTOCOL', `chunk ${index} is larger than the chunk size`)
        // written as the frames arrive; hashed off the main thread (WebCrypto runs in the thread
        // pool) while the bytes are flushed: both must be done before it is paid, neither waits for
        // the other (unverified bytes past the paid ones are dropped on resume)
        const buf = Buffer.allocUnsafe(msg.length)
        const writes: Array<Promise<unknown>> = []
        let flushing: Promise<unknown> = Promise.resolve()
        let flushError: unknown
        let got = 0
        while (got < msg.length) {
          const f = await io.read()
          if (f === undefined || f.type !== FRAME_DATA) throw new ProxyError('PROXY_PROTOCOL', `chunk ${index} ended early`)
          if (got + f.payload.byteLength > msg.length) throw new ProxyError('PROXY_PROTOCOL', `chunk ${index} is longer than announced`)
          buf.set(f.payload, got)
          const w = fh.write(buf, got, f.payload.byteLength, manifest.bytes + got)
          // awaited below; a chunk that fails midway must not leave a rejection nobody handles
          w.catch(() => {})
          writes.push(w)
          got += f.payload.byteLength
          // flushed behind the transfer, one flush at a time, so little is left to flush at the end
          if (got < msg.length) flushing = Promise.all([flushing, w]).then(async () => { if (flushError === undefined) await fh.datasync() }).catch((err: unknown) => { flushError ??= err })
        }
        const [hashed] = await Promise.all([
          webcrypto.subtle.digest('SHA-256', buf),
          Promise.all([flushing, ...writes]).then(async () => {
            if (flushError !== undefined) throw flushError as Error
            await fh.datasync()
          })
        ])
        const digest = Buffer.from(hashed).toString('hex')
        if (digest !== msg.sha256) throw new ProxyError('PROXY_BAD_CHUNK', `chunk ${index} does not match its SHA-256: not paid`)
        const amount = terms.price * BigInt(msg.length)
        const voucher = await payments.pay(channel, amount)
        const ch = payments.outgoing(channel)
        // no room for another chunk on this channel: the provider stops after this one
        const last = ch === undefined || ch.deposit - ch.spent < s.need
        await io.sendJson({ t: 'pay', index, voucher: Buffer.from(voucher).toString('hex'), last })
        manifest.chunks.push(digest)
        manifest.bytes += msg.length
        saver.soon(manifest)
        state.paid += amount
        state.bytes = manifest.bytes
        state.chunks = manifest.chunks.length
        opts.onProgress?.(manifest.bytes, manifest.length)
      }
    } finally {
      opts.signal?.removeEventListener('abort', onAbort)
      await io.stream.close().catch(() => {})
    }
  }

  /** Raw stream throughput from a provider this node has paid (no fetching, hashing or paying): MB/s. */
  async speedtest (addrs: string[], bytes: number): Promise<{ MBps: number, bytes: number, seconds: number }> {
    const io = await this.dial(addrs)
    try {
      const t0 = performance.now()
      await io.sendJson({ t: 'speedtest', bytes })
      // the provider answers `speed` (or an error) before the raw bytes, and `speed` again after them
      await this.expect(io, 'speed')
      await io.discardRaw(bytes)
      await this.expect(io, 'speed')
      const seconds = (performance.now() - t0) / 1000
      return { MBps: bytes / 1e6 / seconds, bytes, seconds }
    } finally {
      await io.stream.close().catch(() => {})
    }
  }

  private async quote (addrs: string[], signal?: AbortSignal): Promise<Terms> {
    const io = await this.dial(addrs, signal)
    try {
      await io.sendJson({ t: 'quote' })
      return await this.expect(io, 'terms')
    } finally {
      await io.stream.close().catch(() => {})
    }
  }

  private async dial (addrs: string[], signal?: AbortSignal): Promise<Framed> {
    let lastErr: unknown
    for (const a of addrs) {
      if (!PEER_OF.test(a)) { lastErr = new ProxyError('PROXY_BAD_PROVIDER', `provider address ${a} must end in /p2p/<peer id>`); continue }
      try {
        const timeout = AbortSignal.timeout(DIAL_TIMEOUT_MS)
        return new Framed(await this.init.p2p.dialProtocol(multiaddr(a), PROXY_PROTOCOL, { signal: signal !== undefined ? AbortSignal.any([signal, timeout]) : timeout }))
      } catch (err) {
        lastErr = err
      }
    }
    throw new ProxyError('PROXY_UNREACHABLE', `cannot reach the provider: ${(lastErr as Error | undefined)?.message ?? 'no address'}`)
  }

  private async read (io: Framed): Promise<ProviderMessage> {
    let timer: NodeJS.Timeout | undefined
    try {
      return parseMessage(zProviderMessage, await Promise.race([io.readJson(), new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => { reject(new ProxyError('PROXY_TIMEOUT', `the provider did not answer within ${READ_TIMEOUT_MS / 1000} s`)) }, READ_TIMEOUT_MS)
      })]))
    } finally {
      clearTimeout(timer)
    }
  }

  private async expect<K extends ProviderMessage['t']> (io: Framed, t: K): Promise<Extract<ProviderMessage, { t: K }>> {
    const m = await this.read(io)
    raiseIfError(m)
    if (m.t !== t) throw new ProxyError('PROXY_PROTOCOL', `expected ${t}, got ${m.t}`)
    return m as Extract<ProviderMessage, { t: K }>
  }
}

type Terms = Extract<ProviderMessage, { t: 'terms' }>

/**
 * Bring an interrupted download's manifest up to what its last channel says was paid. That
 * channel served only this download since the segment began (held), and a chunk's bytes are
 * durable before it is paid, so: paid bytes = segment start + (spent − spent at start) / price;
 * chunks paid but not yet in the manifest (it is saved lazily) are hashed from the file. Bytes past
 * them were never paid (the caller cuts the file there). Returns the last segment when something
 * was paid on it (its latest voucher is to be sent again), else undefined.
 */
export async function reconcileManifest (manifest: Manifest, partialPath: string, outgoing: (channelId: string) => { spent: bigint } | undefined): Promise<Segment | undefined> {
  const seg = manifest.segments.at(-1)
  if (seg === undefined) return undefined
  const ch = outgoing(seg.channel)
  if (ch === undefined) throw new ProxyError('PROXY_RESUME_MISMATCH', `channel ${seg.channel} of this download is not in the wallet`)
  let price: bigint
  let start: bigint
  try {
    price = BigInt(seg.price)
    start = BigInt(seg.spentAtStart)
  } catch {
    throw new ProxyError('PROXY_RESUME_MISMATCH', 'the manifest\'s payment segment is malformed')
  }
  const delta = ch.spent - start
  if (price <= 0n || delta < 0n || delta % price !== 0n || !Number.isSafeInteger(seg.fromByte) || seg.fromByte < 0) {
    throw new ProxyError('PROXY_RESUME_MISMATCH', `channel ${seg.channel} spent ${ch.spent}, which no whole number of bytes since ${seg.spentAtStart} at ${seg.price} explains`)
  }
  const paid = seg.fromByte + Number(delta / price)
  if (paid < manifest.bytes) throw new ProxyError('PROXY_RESUME_MISMATCH', `the manifest holds ${manifest.bytes} bytes, channel ${seg.channel} paid for ${paid}`)
  const have = await stat(partialPath).then(st => st.size, () => 0)
  if (have < paid) throw new ProxyError('PROXY_RESUME_MISMATCH', `${partialPath} holds ${have} bytes, ${paid} were paid for: start again without resume`)
  while (manifest.bytes < paid) {
    const length = Math.min(manifest.chunkSize, paid - manifest.bytes)
    manifest.chunks.push(await hashRange(partialPath, manifest.bytes, length) as string)
    manifest.bytes += length
  }
  return delta > 0n ? seg : undefined
}

/** SHA-256 (hex) of `length` bytes of a file from `start`; undefined when the file is shorter. */
async function hashRange (path: string, start: number, length: number): Promise<string | undefined> {
  const fh = await open(path, 'r').catch(() => undefined)
  if (fh === undefined) return undefined
  try {
    const buf = Buffer.allocUnsafe(length)
    const { bytesRead } = await fh.read(buf, 0, length, start)
    return bytesRead === length ? createHash('sha256').update(buf).digest('hex') : undefined
  } finally {
    await fh.close()
  }
}

async function exists (path: string): Promise<boolean> {
  return await stat(path).then(() => true, () => false)
}

/**
 * Which channel each unfinished download holds (out path → channel id), durable: a channel is not
 * given to another download while one that paid on it may still resume.
 */
class HeldChannels {
  private map: Record<string, string> | undefined
  private queue: Promise<unknown> = Promise.resolve()

  constructor (private readonly path: string) {}

  private async load (): Promise<Record<string, string>> {
    if (this.map === undefined) {
      try {
        const raw = JSON.parse(await readFile(this.path, 'utf8')) as unknown
        this.map = raw !== null && typeof raw === 'object' && !Array.isArray(raw) ? Object.fromEntries(Object.entries(raw).filter((e): e is [string, string] => typeof e[1] === 'string')) : {}
      } catch (err) {
        if ((err as { code?: string }).code !== 'ENOENT') throw new ProxyError('PROXY_STATE', `${this.path} is unreadable: ${(err as Error).message}`)
        this.map = {}
      }
    }
    return this.map
  }

  private async change (fn: (m: Record<string, string>) => boolean | Promise<boolean>): Promise<void> {
    const run = this.queue.then(async () => {
      const m = await this.load()
      if (await fn(m)) await writeFileAtomic(this.path, JSON.stringify(m), 0o600)
    })
    this.queue = run.catch(() => {})
    await run
  }

  /** Pick a channel for `out` (given the ones other downloads hold) and hold it, atomically. */
  async claim (out: string, pick: (others: Set<string>) => Promise<string>): Promise<string> {
    let chosen = ''
    await this.change(async m => {
      chosen = await pick(new Set(Object.entries(m).filter(([k]) => k !== out).map(([, v]) => v)))
      if (m[out] === chosen) return false
      m[out] = chosen
      return true
    })
    return chosen
  }

  async hold (out: string, channel: string): Promise<void> {
    await this.change(m => { if (m[out] === channel) return false; m[out] = channel; return true })
  }

  async release (out: string): Promise<void> {
    await this.change(m => { if (!(out in m)) return false; delete m[out]; return true })
  }
}

export async function readManifest (path: string): Promise<Manifest | undefined> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') return undefined
    throw new ProxyError('PROXY_STATE', `${path} is unreadable: ${(err as Error).message}`)
  }
  let m: Manifest
  try {
    m = JSON.parse(text) as Manifest
  } catch {
    throw new ProxyError('PROXY_RESUME_MISMATCH', `${path} is not a download manifest (not JSON): remove it to start again`)
  }
  if (m === null || typeof m !== 'object' || m.v !== 2 || typeof m.url !== 'string' || !Array.isArray(m.chunks) || !Array.isArray(m.segments) || !Number.isSafeInteger(m.bytes) || !Number.isSafeInteger(m.chunkSize) || m.chunkSize < MIN_CHUNK_BYTES || m.chunkSize > MAX_CHUNK_BYTES) {
    throw new ProxyError('PROXY_RESUME_MISMATCH', `${path} is not a download manifest`)
  }
  return m
}

async function writeManifest (path: string, m: Manifest): Promise<void> {
  await writeFileAtomic(path, JSON.stringify(m), 0o600)
}

/** Saves a manifest durably, one write at a time: `now` waits for it, `soon` at most once a second in the background. */
class ManifestSaver {
  private chain: Promise<void> = Promise.resolve()
  private last = 0
  private timer: NodeJS.Timeout | undefined

  constructor (private readonly path: string) {}

  async now (m: Manifest): Promise<void> {
    const text = JSON.stringify(m)
    const run = this.chain.then(async () => { await writeFileAtomic(this.path, text, 0o600) })
    this.chain = run.catch(() => {})
    this.last = Date.now()
    await run
  }

  soon (m: Manifest): void {
    if (this.timer !== undefined) return
    this.timer = setTimeout(() => {
      this.timer = undefined
      this.now(m).catch(() => {})
    }, Math.max(0, this.last + 1000 - Date.now()))
  }

  /** No more background saves; waits for the one under way. */
  async stop (): Promise<void> {
    clearTimeout(this.timer)
    this.timer = undefined
    await this.chain
  }
}
