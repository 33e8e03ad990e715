import { createHash, webcrypto } from 'node:crypto'
import type { MeterSession } from '@btt/channel'
import type { ServicePayments } from '@btt/node'
import type { Connection, Stream } from '@libp2p/interface'
import type { Logger } from 'pino'
import { ProxyError } from './errors.js'
import type { DiskCache } from './cache.js'
import { checkUrl, safeFetch, type GuardPolicy, type SafeResponse } from './guard.js'
import { FRAME_DATA, Framed, MAX_DATA_FRAME, parseMessage, zClientMessage, type ClientMessage } from './protocol.js'

export interface ProviderConfig {
  /** base units per byte delivered */
  price: bigint
  maxBodyBytes: number
  totalTimeoutMs: number
  idleTimeoutMs: number
  policy: GuardPolicy
  /** fetches one payer may run at once */
  perPayerConcurrency: number
  /** fetches one payer may start per minute */
  perPayerPerMinute: number
  /** how long to wait for a chunk's payment */
  paymentTimeoutMs: number
  /** fetches running at once, all payers together (each holds up to two chunks in memory) */
  maxFetches: number
}

export interface ProviderInit {
  payments: ServicePayments
  config: ProviderConfig
  logger: Logger
  /** the bounded disk cache of origin answers (none: every fetch goes to the origin) */
  cache?: DiskCache
  onEvent?: (event: 'fetch' | 'chunk' | 'paid' | 'refused' | 'cache_hit' | 'cache_miss', detail: { bytes?: number, amount?: bigint, reason?: string }) => void
}

/** Only these response headers are passed to the requester (no cookies, no hop-by-hop). */
const PASS_HEADERS = ['content-type', 'content-length', 'etag', 'last-modified', 'content-disposition', 'cache-control', 'content-language', 'expires']

/**
 * The provider side of the URL proxy: fetches through the SSRF guard (guard.ts), cuts the decoded
 * body into the requester's chunk size and sends chunk by chunk, each paid (exactly price × its
 * bytes) before the next goes out. Per-payer concurrency and rate limits.
 */
export class ProxyProvider {
  private readonly active = new Map<string, number>()
  private readonly starts = new Map<string, number[]>()
  private running = 0
  /** peers that have paid this provider since it started: only they may run a speed test */
  private readonly payers = new Set<string>()
  private readonly speedtests = new Set<string>()

  constructor (private readonly init: ProviderInit) {}

  async handle (stream: Stream, connection: Connection): Promise<void> {
    const io = new Framed(stream)
    const peer = connection.remotePeer.toString()
    try {
      const msg = parseMessage(zClientMessage, await io.readJson())
      if (msg.t === 'quote') {
        await io.sendJson({ t: 'terms', account: this.init.payments.account, ledger: this.init.payments.ledgerId, price: this.init.config.price, max_body: this.init.config.maxBodyBytes })
      } else if (msg.t === 'speedtest') {
        await this.speedtest(io, peer, msg.bytes)
      } else if (msg.t === 'settle') {
        await io.sendJson({ t: 'settled', credited: await this.settle(peer, msg.channel, msg.voucher) })
      } else if (msg.t === 'fetch') {
        await this.limited(peer, async () => { await this.fetch(io, peer, msg) })
      } else {
        throw new ProxyError('PROXY_PROTOCOL', `unexpected ${msg.t} at the start of a stream`)
      }
      await stream.close().catch(() => {})
    } catch (err) {
      const code = (err as { code?: string }).code ?? 'PROXY_INTERNAL'
      this.init.logger.debug({ err, peer }, 'proxy request failed')
      this.init.onEvent?.('refused', { reason: code })
      await io.sendJson({ t: 'error', code: code.slice(0, 64), message: (err as Error).message.slice(0, 1024) }).catch(() => {})
      await stream.close().catch(() => { stream.abort(err as Error) })
    }
  }

  private async limited (peer: string, fn: () => Promise<void>): Promise<void> {
    const c = this.init.config
    const now = Date.now()
    const recent = (this.starts.get(peer) ?? []).filter(t => t > now - 60_000)
    if (recent.length >= c.perPayerPerMinute) throw new ProxyError('PROXY_RATE_LIMITED', `at most ${c.perPayerPerMinute} fetches a minute per payer`)
    const running = this.active.get(peer) ?? 0
    if (running >= c.perPayerConcurrency) throw new ProxyError('PROXY_BUSY', `at most ${c.perPayerConcurrency} fetches at once per payer`)
    // new peer ids cost nothing: the node as a whole has a cap too
    if (this.running >= c.maxFetches) throw new ProxyError('PROXY_BUSY', `this provider runs ${c.maxFetches} fetches at once already; try again later`)
    if (this.starts.size > 10_000) for (const [p, ts] of this.starts) if ((ts[ts.length - 1] ?? 0) <= now - 60_000) this.starts.delete(p)
    recent.push(now)
    this.starts.set(peer, recent)
    this.active.set(peer, running + 1)
    this.running++
    try {
      await fn()
    } finally {
      this.running--
      const left = (this.active.get(peer) ?? 1) - 1
      if (left <= 0) this.active.delete(peer)
      else this.active.set(peer, left)
    }
  }

  private async fetch (io: Framed, peer: string, msg: Extract<ClientMessage, { t: 'fetch' }>): Promise<void> {
    const c = this.init.config
    if (msg.max_price < c.price) throw new ProxyError('PROXY_PRICE_TOO_HIGH', `this provider charges ${c.price} base units per byte, above the requester's ${msg.max_price}`)
    const size = msg.chunk_size
    // the meter counts bytes: one unpaid chunk at most
    const session = await this.init.payments.meter.open({ peer, channelId: msg.channel, price: c.price, maxUnpaidUnits: size })
    if (msg.settle !== undefined) await this.accept(session, msg.settle)
    const skipTo = msg.from * size
    const firstByte = msg.verify_previous && msg.from > 0 ? skipTo - size : skipTo
    const ac = new AbortController()
    let iterator: AsyncIterator<Uint8Array> | undefined
    try {
      // the URL's own checks (scheme, port, lists) hold for cached answers too
      checkUrl(msg.url, c.policy)
      const range = firstByte > 0 ? { start: firstByte } : undefined
      const cached = await this.init.cache?.get(msg.url, range)
      this.init.onEvent?.(cached !== undefined ? 'cache_hit' : 'cache_miss', {})
      let res: SafeResponse
      if (cached !== undefined) {
        res = cached
      } else {
        res = await safeFetch(msg.url, {
          policy: c.policy,
          maxBodyBytes: c.maxBodyBytes,
          totalTimeoutMs: c.totalTimeoutMs,
          idleTimeoutMs: c.idleTimeoutMs,
          ...(range !== undefined ? { range } : {}),
          signal: ac.signal
        })
        // a whole answer is copied to the cache as it is read (if it may be cached)
        if (range === undefined && this.init.cache !== undefined) res = this.init.cache.store(msg.url, res)
      }
      this.init.onEvent?.('fetch', {})
      // the origin may ignore the range: then its bytes before firstByte are read and dropped
      let position = res.partial ? firstByte : 0
      iterator = res.body[Symbol.asyncIterator]()
      const body = iterator
      let pending: Uint8Array | undefined
      const next = async (): Promise<Uint8Array | undefined> => {
        if (pending !== undefined) { const p = pending; pending = undefined; return p }
        const r = await body.next()
        return r.done === true ? undefined : r.value
      }
      /** Read up to `n` bytes of the body from the current position (fewer at its end). */
      const read = async (n: number): Promise<Buffer> => {
        const parts: Uint8Array[] = []
        let got = 0
        while (got < n) {
          const b = await next()
          if (b === undefined) break
          const take = Math.min(b.byteLength, n - got)
          parts.push(b.subarray(0, take))
          if (take < b.byteLength) pending = b.subarray(take)
          got += take
        }
        position += got
        return Buffer.concat(parts, got)
      }
      while (position < firstByte) {
        const dropped = await read(Math.min(MAX_DATA_FRAME, firstByte - position))
        if (dropped.byteLength === 0) throw new ProxyError('PROXY_RANGE', `the body ends before byte ${firstByte}`)
      }
      let previous: string | undefined
      if (firstByte < skipTo) {
        const prev = await read(size)
        previous = createHash('sha256').update(prev).digest('hex')
      }
      const headers: Record<string, string> = {}
      for (const h of PASS_HEADERS) if (res.headers[h] !== undefined) headers[h] = res.headers[h] as string
      const total = res.headers['content-length'] !== undefined && !res.partial ? Number(res.headers['content-length']) : undefined
      await io.sendJson({ t: 'head', status: res.status, url: res.url, headers, ...(total !== undefined && Number.isSafeInteger(total) ? { length: total } : {}), price: c.price, ...(previous !== undefined ? { previous } : {}) })

      let index = msg.from
      let sent = 0
      // hashed in the thread pool (WebCrypto), not on the thread that encrypts what is being sent
      const readHashed = async (): Promise<{ b: Buffer, d: string }> => { const b = await read(size); return { b, d: Buffer.from(await webcrypto.subtle.digest('SHA-256', b)).toString('hex') } }
      let cur = await readHashed()
      while (cur.b.byteLength > 0) {
        const chunk = cur.b
        // the next chunk comes from the origin, and is hashed, while this one is sent and paid for
        const ahead = readHashed()
        ahead.catch(() => {})
        const debit = await session.prepare(chunk.byteLength)
        try {
          await io.sendJson({ t: 'chunk', index, length: chunk.byteLength, sha256: cur.d })
          for (let off = 0; off < chunk.byteLength; off += MAX_DATA_FRAME) await io.send(FRAME_DATA, chunk.subarray(off, Math.min(chunk.byteLength, off + MAX_DATA_FRAME)))
          debit.apply()
        } finally {
          debit.cleanup()
        }
        this.init.onEvent?.('chunk', { bytes: chunk.byteLength })
        sent += chunk.byteLength
        const pay = await this.payment(io)
        if (pay.t === 'done') return
        if (pay.index !== index) throw new ProxyError('PROXY_PROTOCOL', `expected the payment for chunk ${index}`)
        const amount = c.price * BigInt(chunk.byteLength)
        const { credited } = await session.accept(Buffer.from(pay.voucher, 'hex'))
        // more than the chunk: a voucher of an earlier session that never arrived is included (vouchers are cumulative)
        if (credited < amount) throw new ProxyError('PROXY_BAD_PAYMENT', `chunk ${index} costs ${amount}; the voucher paid ${credited}`)
        this.payers.add(peer)
        this.init.onEvent?.('paid', { amount: credited })
        cur = await ahead
        index++
        if (pay.last && cur.b.byteLength > 0) {
          await io.sendJson({ t: 'end', chunks: index, bytes: sent, complete: false })
          return
        }
      }
      await io.sendJson({ t: 'end', chunks: index, bytes: sent, complete: true })
    } finally {
      // a body stopped early lets go of its socket or cache file (and drops a half-made cache copy);
      // the abort first, so a read-ahead waiting on the origin ends at once
      ac.abort()
      session.close()
      await iterator?.return?.().catch(() => {})
    }
  }

  /** A voucher of an earlier session, on its own: accepted if new (one already held is fine). */
  private async settle (peer: string, channel: string, voucher: string): Promise<bigint> {
    const session = await this.init.payments.meter.open({ peer, channelId: channel, price: this.init.config.price })
    try {
      return await this.accept(session, voucher)
    } finally {
      session.close()
    }
  }

  /** Raw libp2p throughput to a paying peer, one test at a time: the ceiling fetches are measured against. */
  private async speedtest (io: Framed, peer: string, bytes: number): Promise<void> {
    if (!this.payers.has(peer)) throw new ProxyError('PROXY_FORBIDDEN_SPEEDTEST', 'speed tests are for peers that have paid this provider')
    if (this.speedtests.has(peer)) throw new ProxyError('PROXY_BUSY', 'one speed test at a time')
    this.speedtests.add(peer)
    try {
      const t0 = performance.now()
      await io.sendJson({ t: 'speed', bytes, ms: 0 })
      await io.sendRaw(bytes)
      await io.sendJson({ t: 'speed', bytes, ms: performance.now() - t0 })
    } finally {
      this.speedtests.delete(peer)
    }
  }

  private async accept (session: MeterSession, voucher: string): Promise<bigint> {
    try {
      const { credited } = await session.accept(Buffer.from(voucher, 'hex'))
      if (credited > 0n) this.payers.add(session.init.peer)
      if (credited > 0n) this.init.onEvent?.('paid', { amount: credited })
      return credited
    } catch (err) {
      if ((err as { code?: string }).code !== 'CHANNEL_VOUCHER_STALE') throw err
      return 0n
    }
  }

  private async payment (io: Framed): Promise<Extract<ClientMessage, { t: 'pay' | 'done' }>> {
    let timer: NodeJS.Timeout | undefined
    try {
      const raw = await Promise.race([io.readJson(), new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => { reject(new ProxyError('PROXY_PAYMENT_TIMEOUT', `no payment within ${this.init.config.paymentTimeoutMs / 1000} s`)) }, this.init.config.paymentTimeoutMs)
      })])
      const m = parseMessage(zClientMessage, raw)
      if (m.t !== 'pay' && m.t !== 'done') throw new ProxyError('PROXY_PROTOCOL', `expected pay or done, got ${m.t}`)
      return m
    } finally {
      clearTimeout(timer)
    }
  }
}
