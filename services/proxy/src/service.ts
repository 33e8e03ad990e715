import { createHash } from 'node:crypto'
import { isAbsolute, join } from 'node:path'
import { parseBtt } from '@btt/channel'
import { defineService, zAmount } from '@btt/node'
import { Hono, type Context } from 'hono'
import { Counter, type Registry } from 'prom-client'
import { z } from 'zod'
import type { ProxyClient } from './client.js'
import { ProxyError } from './errors.js'
import type { DiskCache } from './cache.js'
import type { ProxyProvider } from './provider.js'
import { DEFAULT_CHUNK_BYTES, MAX_CHUNK_BYTES, MAX_SPEEDTEST_BYTES, MIN_CHUNK_BYTES, PROXY_PROTOCOL } from './protocol.js'

const GIB = 1n << 30n

/** The `[services.proxy]` section. */
export const proxyConfig = z.object({
  /** Sell fetches: answer /btt/proxy/1.0.0. Off: this node only fetches through others. */
  provide: z.boolean().default(true),
  /** Price, BTT per GiB delivered (charged per byte: the per-byte price is this / 2^30, rounded down, at least 1 base unit). */
  price_per_gib: zAmount.default(parseBtt('0.5')),
  /** Largest body served, MiB of decoded bytes. */
  max_body_mib: z.int().min(1).max(1 << 20).default(1024),
  /** A whole fetch, headers and body, must finish within this. */
  total_timeout_seconds: z.int().min(1).max(86_400).default(600),
  /** No bytes from the origin for this long ends the fetch. */
  idle_timeout_seconds: z.int().min(1).max(3600).default(30),
  /** Ports other than 80 and 443 the proxy may connect to. */
  allow_ports: z.array(z.int().min(1).max(65535)).max(64).default([]),
  /** Only these domains (and their subdomains), when set. */
  allow_domains: z.array(z.string().min(1).max(253)).max(1000).default([]),
  deny_domains: z.array(z.string().min(1).max(253)).max(10_000).default([]),
  /** Extra address ranges refused (private, loopback, link-local and other non-public ranges always are). */
  deny_cidrs: z.array(z.string().min(1).max(64)).max(10_000).default([]),
  /** Address ranges allowed although non-public (a lab network). Never the node's own addresses. */
  allow_cidrs: z.array(z.string().min(1).max(64)).max(1000).default([]),
  /** Disk cache of whole origin answers (LRU, honours Cache-Control), MiB; 0 turns it off. */
  cache_mib: z.int().min(0).max(1 << 24).default(1024),
  /** Longest time an answer is served from the cache (shorter when the origin's max-age says so). */
  cache_ttl_seconds: z.int().min(1).max(30 * 86_400).default(3600),
  per_payer_concurrency: z.int().min(1).max(1000).default(4),
  /** Fetches at once, all payers together (each holds up to two chunks, ≤ 32 MiB, in memory). */
  max_fetches: z.int().min(1).max(10_000).default(32),
  per_payer_per_minute: z.int().min(1).max(100_000).default(120)
})

export type ProxyConfig = z.output<typeof proxyConfig>

const fetchBody = z.strictObject({
  url: z.string().min(1).max(8192),
  provider: z.array(z.string().max(1024)).min(1).max(16),
  out: z.string().min(1).max(4096).refine(isAbsolute, 'must be an absolute path'),
  chunk_size: z.int().min(MIN_CHUNK_BYTES).max(MAX_CHUNK_BYTES).default(DEFAULT_CHUNK_BYTES),
  resume: z.boolean().default(false),
  /** discard an interrupted download of `out` */
  force: z.boolean().default(false),
  /** base units per byte */
  max_price: z.string().regex(/^(0|[1-9][0-9]{0,38})$/).transform(s => BigInt(s)),
  /** base units: deposit of a new channel */
  budget: z.string().regex(/^(0|[1-9][0-9]{0,38})$/).transform(s => BigInt(s))
})

const speedBody = z.strictObject({ provider: z.array(z.string().max(1024)).min(1).max(16), bytes: z.int().min(1).max(MAX_SPEEDTEST_BYTES) })

/** The request's JSON body, validated; PROXY_BAD_REQUEST naming what is wrong. */
async function jsonBody<T> (c: Context, schema: z.ZodType<T>): Promise<T> {
  let raw: unknown
  try {
    raw = await c.req.json()
  } catch {
    throw new ProxyError('PROXY_BAD_REQUEST', 'the body must be JSON')
  }
  const r = schema.safeParse(raw)
  if (!r.success) {
    const issue = r.error.issues[0]
    throw new ProxyError('PROXY_BAD_REQUEST', `${issue?.path.join('.') || 'body'}: ${issue?.message ?? 'invalid'}`)
  }
  return r.data
}

const wrap = (fn: (c: Context) => Promise<Response>) => async (c: Context): Promise<Response> => {
  try {
    return await fn(c)
  } catch (err) {
    if (err instanceof ProxyError) {
      const status = /FORBIDDEN|BAD_REQUEST|BAD_URL/.test(err.code) ? 400 : /PRICE_TOO_HIGH|UNFINISHED|ALREADY_COMPLETE|RESUME_MISMATCH/.test(err.code) ? 409 : err.code === 'PROXY_FUNDS' ? 402 : 502
      throw Object.assign(err, { status })
    }
    throw err
  }
}

export function proxyRoutes (client: () => ProxyClient): Hono {
  const app = new Hono()
  // the node fetches and writes `out` itself; long fetches: the CLI waits without a timeout
  app.post('/fetch', wrap(async c => {
    const b = await jsonBody(c, fetchBody)
    const t0 = performance.now()
    const res = await client().fetch({ url: b.url, addrs: b.provider, out: b.out, chunkSize: b.chunk_size, resume: b.resume, force: b.force, maxPrice: b.max_price, budget: b.budget, signal: c.req.raw.signal })
    return c.json({ ...res, paid: res.paid.toString(), seconds: (performance.now() - t0) / 1000 })
  }))
  // raw libp2p throughput from a provider this node has paid: what fetches are measured against
  app.post('/speedtest', wrap(async c => {
    const b = await jsonBody(c, speedBody)
    return c.json(await client().speedtest(b.provider, b.bytes))
  }))
  app.get('/fetches', wrap(async c => c.json({ fetches: client().list().map(f => ({ ...f, paid: f.paid.toString() })) })))
  return app
}

export const proxyService = defineService({
  name: 'proxy',
  description: 'Chunked, resumable URL proxy: fetches through a connect-time SSRF guard, paid per chunk',
  config: proxyConfig,
  create: ({ config, logger, metrics, payments, p2p, dataDir }) => {
    let client: ProxyClient | undefined
    let provider: ProxyProvider | undefined
    let cache: DiskCache | undefined
    const perByte = (() => { const p = config.price_per_gib / GIB; return p > 0n ? p : 1n })()
    const counters = proxyMetrics(metrics)
    return {
      name: 'proxy',
      protocols: config.provide
        ? [{
            id: PROXY_PROTOCOL,
            handler: async (stream, connection) => {
              if (provider === undefined) { stream.abort(new Error('proxy is not running')); return }
              await provider.handle(stream, connection)
            },
            options: { maxInboundStreams: 64 }
          }]
        : [],
      pricing: config.provide ? [{ item: 'fetch', unit: 'byte', price: perByte }] : [],
      adminRoutes: proxyRoutes(() => {
        if (client === undefined) throw new ProxyError('PROXY_NOT_RUNNING', 'the proxy service is not running')
        return client
      }),
      start: async () => {
        const { ProxyClient } = await import('./client.js')
        const { ProxyProvider } = await import('./provider.js')
        const { DiskCache } = await import('./cache.js')
        client = new ProxyClient({ p2p, payments, logger, dataDir })
        if (config.provide) {
          // the node's own addresses and ports are never fetched, even where allow_cidrs would allow them
          const own = p2p.getMultiaddrs().flatMap(a => {
            const parts = a.getComponents()
            const host = parts.find(x => x.name === 'ip4' || x.name === 'ip6')?.value
            const port = Number(parts.find(x => x.name === 'tcp')?.value)
            return host !== undefined ? [{ host, ...(Number.isInteger(port) ? { port } : {}) }] : []
          })
          const policy = { allowPorts: [80, 443, ...config.allow_ports], allowDomains: config.allow_domains, denyDomains: config.deny_domains, allowCidrs: config.allow_cidrs, denyCidrs: config.deny_cidrs }
          // answers cached under another policy are dropped (the node's own addresses are checked on every fetch)
          const fingerprint = createHash('sha256').update(JSON.stringify(policy)).digest('hex')
          cache = await DiskCache.open({ dir: join(dataDir, 'cache'), maxBytes: config.cache_mib * 1024 * 1024, ttlMs: config.cache_ttl_seconds * 1000, fingerprint })
          provider = new ProxyProvider({
            payments,
            logger,
            cache,
            config: {
              price: perByte,
              maxBodyBytes: config.max_body_mib * 1024 * 1024,
              totalTimeoutMs: config.total_timeout_seconds * 1000,
              idleTimeoutMs: config.idle_timeout_seconds * 1000,
              policy: { ...policy, ownAddresses: own },
              perPayerConcurrency: config.per_payer_concurrency,
              perPayerPerMinute: config.per_payer_per_minute,
              maxFetches: config.max_fetches,
              paymentTimeoutMs: 30_000
            },
            onEvent: (e, d) => { counters.event(e, d) }
          })
        }
      },
      stop: async () => {
        provider = undefined
        client = undefined
        await cache?.close()
        cache = undefined
      },
      status: () => ({ provide: config.provide, pricePerByte: perByte.toString(), ...(cache !== undefined ? { cache: cache.stats() } : {}) })
    }
  }
})

function proxyMetrics (registry: Registry): { event: (e: string, d: { bytes?: number, amount?: bigint, reason?: string }) => void } {
  const fetches = new Counter({ name: 'btt_proxy_fetches_total', help: 'Fetches started for requesters', registers: [registry] })
  const bytes = new Counter({ name: 'btt_proxy_bytes_total', help: 'Body bytes sent to requesters', registers: [registry] })
  const chunks = new Counter({ name: 'btt_proxy_chunks_total', help: 'Chunks sent to requesters', registers: [registry] })
  const earned = new Counter({ name: 'btt_proxy_earned_base_units_total', help: 'Base units earned (a float: exact amounts are in the channel store)', registers: [registry] })
  const refused = new Counter({ name: 'btt_proxy_refusals_total', help: 'Requests refused or ended with an error, by reason (its error code)', labelNames: ['reason'], registers: [registry] })
  const cacheLookups = new Counter({ name: 'btt_proxy_cache_lookups_total', help: 'Disk cache lookups, by result', labelNames: ['result'], registers: [registry] })
  return {
    event: (e, d) => {
      if (e === 'fetch') fetches.inc()
      else if (e === 'chunk') { bytes.inc(d.bytes ?? 0); chunks.inc() }
      else if (e === 'paid') earned.inc(Number(d.amount ?? 0n))
      else if (e === 'refused') refused.inc({ reason: d.reason ?? 'unknown' })
      else if (e === 'cache_hit') cacheLookups.inc({ result: 'hit' })
      else if (e === 'cache_miss') cacheLookups.inc({ result: 'miss' })
    }
  }
}
