import { createReadStream, createWriteStream } from 'node:fs'
import { mkdir, rename, rm, stat } from 'node:fs/promises'
import { basename, isAbsolute, join } from 'node:path'
import { finished } from 'node:stream/promises'
import { parseBtt } from '@btt/channel'
import { defineService, zAmount } from '@btt/node'
import { Hono, type Context } from 'hono'
import { Counter, type Registry } from 'prom-client'
import { z } from 'zod'
import type { StorageClient, StoredFile } from './client.js'
import { StorageError } from './errors.js'
import type { ProviderContract, StorageProvider } from './provider.js'
import { MAX_SPEEDTEST_BYTES, STORAGE_PROTOCOL } from './protocol.js'

const MIB = 1024 * 1024

/** The `[services.storage]` section. Prices are BTT; sizes MiB; times seconds. */
export const storageConfig = z.object({
  /** Sell storage: answer /btt/storage/1.0.0 as a provider. Off: this node only stores its own files elsewhere. */
  provide: z.boolean().default(true),
  /** The most this node stores for others, MiB (the operator's maximum). */
  quota_mib: z.int().min(1).max(1 << 30).default(10_240),
  /** Largest single file accepted, MiB (also capped by the quota). */
  max_file_mib: z.int().min(1).max(1 << 30).default(10_240),
  /** Storage price, BTT per GiB per 30 days; contracts below it are refused. */
  price_per_gib_month: zAmount.default(parseBtt('1')),
  /** Retrieval price, BTT per GiB. */
  retrieval_price_per_gib: zAmount.default(parseBtt('0.1')),
  /** One proof and one payment per period. */
  proof_period_seconds: z.int().min(1).max(366 * 86_400).default(86_400),
  /** Unpaid (unproven) periods tolerated before a contract ends and its data is deleted. */
  allowed_misses: z.int().min(0).max(1000).default(3),
  min_duration_seconds: z.int().min(1).default(3600),
  max_duration_seconds: z.int().min(1).default(366 * 86_400),
  /** Uploads accepted at the same time. */
  max_uploads: z.int().min(1).max(1000).default(4),
  /** An upload with no data for this long is dropped. */
  idle_timeout_seconds: z.int().min(1).max(3600).default(60),
  /** Requester side: challenge this node's own contracts when their periods fall due. */
  challenge: z.boolean().default(true)
})

export type StorageConfig = z.output<typeof storageConfig>

const STATUS: Record<string, number> = {
  STORAGE_UNKNOWN_FILE: 404,
  STORAGE_PRICE_TOO_HIGH: 409,
  STORAGE_PRICE_TOO_LOW: 409,
  STORAGE_OVER_QUOTA: 409,
  STORAGE_TOO_LARGE: 409,
  STORAGE_FUNDS: 402,
  STORAGE_UNREACHABLE: 502,
  STORAGE_TAMPERED: 502,
  STORAGE_TIMEOUT: 504,
  STORAGE_CONTRACT_ENDED: 409,
  STORAGE_BUSY: 503
}

function httpError (err: unknown): Error {
  if (err instanceof StorageError) {
    return Object.assign(err, { status: STATUS[err.code] ?? (/^STORAGE_(BAD|INVALID)/.test(err.code) ? 400 : 502) })
  }
  return err as Error
}

const wrap = (fn: (c: Context) => Promise<Response>) => async (c: Context): Promise<Response> => {
  try {
    return await fn(c)
  } catch (err) {
    throw httpError(err)
  }
}

const ID = /^[0-9a-f]{32}$/
function idParam (c: Context): string {
  const id = c.req.param('id') ?? ''
  if (!ID.test(id)) throw new StorageError('STORAGE_BAD_ID', `"${id.slice(0, 64)}" is not a file id (32 hex digits)`)
  return id
}

export function fileJson (f: StoredFile): Record<string, unknown> {
  return { ...f, price: f.price.toString(), retrieval: f.retrieval.toString(), spent: f.spent.toString() }
}

export function contractJson (c: ProviderContract): Record<string, unknown> {
  return { ...c, price: c.price.toString(), retrieval: c.retrieval.toString(), earned: c.earned.toString() }
}

const putQuery = z.strictObject({
  name: z.string().min(1).max(255),
  size: z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  provider: z.union([z.string(), z.array(z.string())]).transform(p => Array.isArray(p) ? p : [p]),
  duration: z.coerce.number().int().min(1),
  max_price: z.string().regex(/^(0|[1-9][0-9]{0,38})$/, 'base units').transform(s => BigInt(s))
})

const pathBody = z.strictObject({
  path: z.string().min(1).max(4096).refine(isAbsolute, 'must be an absolute path'),
  name: z.string().min(1).max(255).optional(),
  provider: z.array(z.string().max(1024)).min(1).max(16),
  duration: z.int().min(1),
  max_price: z.string().regex(/^(0|[1-9][0-9]{0,38})$/, 'base units').transform(s => BigInt(s)),
  transfer: z.string().regex(/^[0-9a-f]{16,64}$/).optional()
})

const retrieveBody = z.strictObject({
  out: z.string().min(1).max(4096).refine(isAbsolute, 'must be an absolute path'),
  force: z.boolean().default(false),
  transfer: z.string().regex(/^[0-9a-f]{16,64}$/).optional()
})

interface Transfer { kind: 'upload' | 'retrieve', name: string, done: number, total: number, started: number }

function pathError (path: string, err: unknown): StorageError {
  const e = err as NodeJS.ErrnoException
  return new StorageError('STORAGE_PATH', `the node cannot use ${path}: ${e.code ?? e.message}${e.code === 'EACCES' ? ' (it may run as another user; the CLI then streams the file)' : ''}`)
}

async function jsonBody<T> (c: Context, schema: z.ZodType<T>): Promise<T> {
  let raw: unknown
  try {
    raw = await c.req.json()
  } catch {
    throw new StorageError('STORAGE_BAD_REQUEST', 'the body must be JSON')
  }
  const r = schema.safeParse(raw)
  if (!r.success) {
    const issue = r.error.issues[0]
    throw new StorageError('STORAGE_BAD_REQUEST', `${issue?.path.join('.') || 'body'}: ${issue?.message ?? 'invalid'}`)
  }
  return r.data
}

/**
 * Admin routes under /v1/services/storage. Requester side: files (put streams the plaintext in
 * the request body, content streams it back); provider side: contracts. Routes under /stream/
 * take or give bodies of any size (the node's 1 MiB body limit does not apply to them).
 */
export function storageRoutes (client: () => StorageClient, provider: () => StorageProvider | undefined): Hono {
  const app = new Hono()
  const transfers = new Map<string, Transfer>()
  const track = (id: string | undefined, t: Transfer): ((done: number) => void) => {
    if (id === undefined) return () => {}
    transfers.set(id, t)
    return done => { t.done = done }
  }
  app.get('/transfers/:tid', wrap(async c => {
    const t = transfers.get(c.req.param('tid') ?? '')
    if (t === undefined) throw new StorageError('STORAGE_UNKNOWN_TRANSFER', 'no such transfer (finished or never started)')
    return c.json({ transfer: t })
  }))
  app.get('/files', wrap(async c => c.json({ files: client().list().map(fileJson) })))
  // the node reads the file itself (same machine, a path it may read): no HTTP hop for the bytes
  app.post('/files', wrap(async c => {
    const b = await jsonBody(c, pathBody)
    let size: number
    try {
      const st = await stat(b.path)
      if (!st.isFile()) throw Object.assign(new Error('not a regular file'), { code: 'ENOTFILE' })
      size = st.size
    } catch (err) {
      throw pathError(b.path, err)
    }
    const stream = createReadStream(b.path, { highWaterMark: 1024 * 1024 })
    const opened = new Promise<void>((resolve, reject) => { stream.once('open', () => resolve()); stream.once('error', reject) })
    try {
      await opened
    } catch (err) {
      throw pathError(b.path, err)
    }
    const name = b.name ?? basename(b.path)
    const onProgress = track(b.transfer, { kind: 'upload', name, done: 0, total: size, started: Date.now() })
    const t0 = performance.now()
    try {
      const file = await client().put({ source: stream as AsyncIterable<Uint8Array>, name, size, addrs: b.provider, duration: b.duration, maxPrice: b.max_price, onProgress, signal: c.req.raw.signal })
      return c.json({ file: fileJson(file), seconds: (performance.now() - t0) / 1000 }, 201)
    } finally {
      stream.destroy()
      if (b.transfer !== undefined) transfers.delete(b.transfer)
    }
  }))
  // the node writes the file itself (`<out>.btt-partial`, renamed when complete and verified)
  app.post('/files/:id/retrieve', wrap(async c => {
    const id = idParam(c)
    const b = await jsonBody(c, retrieveBody)
    const f = client().get(id)
    if (!b.force && await stat(b.out).then(() => true, () => false)) throw new StorageError('STORAGE_PATH', `${b.out} exists; pass force to replace it`)
    const tmp = `${b.out}.btt-partial`
    const out = createWriteStream(tmp, { mode: 0o600, highWaterMark: 8 * 1024 * 1024 })
    try {
      await new Promise<void>((resolve, reject) => { out.once('open', () => resolve()); out.once('error', reject) })
    } catch (err) {
      throw pathError(b.out, err)
    }
    const onProgress = track(b.transfer, { kind: 'retrieve', name: f.name, done: 0, total: f.plainSize, started: Date.now() })
    const t0 = performance.now()
    let written = 0
    try {
      const r = await client().retrieve(id, async plain => {
        written += plain.byteLength
        if (!out.write(plain)) await new Promise<void>(resolve => { out.once('drain', () => { resolve() }) })
        onProgress(written)
      }, { signal: c.req.raw.signal })
      out.end()
      await finished(out)
      await rename(tmp, b.out)
      return c.json({ id, out: b.out, name: r.name, size: written, paid: r.paid.toString(), seconds: (performance.now() - t0) / 1000 })
    } catch (err) {
      out.destroy()
      await rm(tmp, { force: true })
      throw err
    } finally {
      if (b.transfer !== undefined) transfers.delete(b.transfer)
    }
  }))
  app.get('/files/:id', wrap(async c => c.json({ file: fileJson(client().get(idParam(c))) })))
  app.post('/stream/files', wrap(async c => {
    const url = new URL(c.req.url)
    const raw: Record<string, string | string[]> = {}
    for (const [k, v] of url.searchParams) {
      const cur = raw[k]
      raw[k] = cur === undefined ? v : Array.isArray(cur) ? [...cur, v] : [cur, v]
    }
    const q = putQuery.safeParse(raw)
    if (!q.success) {
      const issue = q.error.issues[0]
      throw new StorageError('STORAGE_BAD_REQUEST', `${issue?.path.join('.') ?? 'query'}: ${issue?.message ?? 'invalid'}`)
    }
    const body = c.req.raw.body
    if (body === null) throw new StorageError('STORAGE_BAD_REQUEST', 'the file must be the request body')
    let seen = 0
    const source = (async function * () {
      for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
        seen += chunk.byteLength
        if (seen > q.data.size) throw new StorageError('STORAGE_BAD_REQUEST', `the body is longer than size=${q.data.size}`)
        yield chunk
      }
      if (seen !== q.data.size) throw new StorageError('STORAGE_BAD_REQUEST', `the body ended after ${seen} of size=${q.data.size} bytes`)
    })()
    const t0 = performance.now()
    const file = await client().put({ source, name: q.data.name, size: q.data.size, addrs: q.data.provider, duration: q.data.duration, maxPrice: q.data.max_price, signal: c.req.raw.signal })
    // seconds: from the first byte of the body to the provider's acknowledgement (fsynced)
    return c.json({ file: fileJson(file), seconds: (performance.now() - t0) / 1000 }, 201)
  }))
  app.post('/files/:id/prove', wrap(async c => {
    const id = idParam(c)
    const r = await client().prove(id)
    return c.json({ proof: { ok: r.ok, ...(r.paidPeriod !== undefined ? { paidPeriod: r.paidPeriod, amount: (r.amount as bigint).toString() } : {}), ...(r.error !== undefined ? { error: r.error } : {}) }, file: fileJson(client().get(id)) })
  }))
  app.post('/files/:id/speedtest', wrap(async c => {
    const bytes = Number(c.req.query('bytes') ?? 64 * 1024 * 1024)
    if (!Number.isSafeInteger(bytes) || bytes < 1 || bytes > MAX_SPEEDTEST_BYTES) throw new StorageError('STORAGE_BAD_REQUEST', `bytes must be 1–${MAX_SPEEDTEST_BYTES}`)
    return c.json(await client().speedtest(idParam(c), bytes))
  }))
  app.post('/files/:id/cancel', wrap(async c => c.json({ file: fileJson(await client().cancel(idParam(c))) })))
  app.get('/stream/files/:id/content', wrap(async c => {
    const id = idParam(c)
    const f = client().get(id)
    const cl = client()
    const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>(undefined, { highWaterMark: 4 }, { highWaterMark: 4 })
    const writer = writable.getWriter()
    cl.retrieve(id, async plain => { await writer.ready; await writer.write(plain) }, { signal: c.req.raw.signal })
      .then(async () => { await writer.close() }, async (err: unknown) => { await writer.abort(err) })
    return new Response(readable, {
      status: 200,
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(f.plainSize), 'x-btt-file-name': encodeURIComponent(f.name) }
    })
  }))
  app.get('/contracts', wrap(async c => {
    const p = provider()
    if (p === undefined) return c.json({ provide: false, contracts: [] })
    return c.json({ provide: true, contracts: p.contracts().map(contractJson), usedBytes: p.usedBytes(), earned: p.earnings().toString(), terms: { ...p.terms(), price: p.terms().price.toString(), retrieval: p.terms().retrieval.toString() } })
  }))
  return app
}

export const storageService = defineService({
  name: 'storage',
  description: 'Encrypted storage with proofs-of-storage: paid per proven period and per retrieved chunk',
  config: storageConfig,
  create: ({ config, logger, dataDir, metrics, payments, p2p }) => {
    let client: StorageClient | undefined
    let provider: StorageProvider | undefined
    const running = (): StorageClient => {
      if (client === undefined) throw new StorageError('STORAGE_NOT_RUNNING', 'the storage service is not running')
      return client
    }
    const counters = storageMetrics(metrics)
    return {
      name: 'storage',
      protocols: config.provide
        ? [{
            id: STORAGE_PROTOCOL,
            handler: async (stream, connection) => {
              if (provider === undefined) { stream.abort(new Error('storage is not running')); return }
              await provider.handle(stream, connection)
            },
            options: { maxInboundStreams: 64 }
          }]
        : [],
      pricing: config.provide
        ? [
            { item: 'storage', unit: 'GiB·month', price: config.price_per_gib_month },
            { item: 'retrieval', unit: 'GiB', price: config.retrieval_price_per_gib }
          ]
        : [],
      adminRoutes: storageRoutes(running, () => provider),
      start: async () => {
        if (config.min_duration_seconds > config.max_duration_seconds) throw new StorageError('STORAGE_BAD_CONFIG', 'services.storage.min_duration_seconds must not exceed max_duration_seconds')
        const { FsBlobStore } = await import('./blobs.js')
        const { StorageProvider } = await import('./provider.js')
        const { StorageClient } = await import('./client.js')
        const { loadOrCreateMasterKey } = await import('./crypto.js')
        await mkdir(dataDir, { recursive: true, mode: 0o700 })
        const masterKey = await loadOrCreateMasterKey(join(dataDir, 'storage.key'))
        const c = new StorageClient({ dbPath: join(dataDir, 'client.db'), masterKey, p2p, payments, logger })
        if (config.provide) {
          const blobs = new FsBlobStore(dataDir)
          await blobs.init()
          const p = new StorageProvider({
            dbPath: join(dataDir, 'provider.db'),
            blobs,
            payments,
            logger,
            config: {
              price: config.price_per_gib_month,
              retrieval: config.retrieval_price_per_gib,
              period: config.proof_period_seconds,
              allowedMisses: config.allowed_misses,
              minDuration: config.min_duration_seconds,
              maxDuration: config.max_duration_seconds,
              quotaBytes: config.quota_mib * MIB,
              maxFileBytes: config.max_file_mib * MIB,
              maxUploads: config.max_uploads,
              idleTimeoutMs: config.idle_timeout_seconds * 1000,
              channelMarginMs: 0
            },
            onEvent: (event, d) => { counters.event(event, d) }
          })
          await p.start()
          provider = p
        }
        client = c
        if (config.challenge) c.startSchedule()
      },
      stop: async () => {
        const p = provider
        provider = undefined
        await p?.stop()
        client?.close()
        client = undefined
      },
      status: () => ({
        provide: config.provide,
        files: client?.list().length ?? 0,
        ...(provider !== undefined ? { contracts: provider.contracts().filter(c => c.status === 'active').length, usedBytes: provider.usedBytes(), quotaBytes: config.quota_mib * MIB, earned: provider.earnings().toString() } : {})
      })
    }
  }
})

function storageMetrics (registry: Registry): { event: (e: string, d: { bytes?: number, amount?: bigint, reason?: string }) => void } {
  const uploads = new Counter({ name: 'btt_storage_uploads_total', help: 'Uploads stored', registers: [registry] })
  const stored = new Counter({ name: 'btt_storage_uploaded_bytes_total', help: 'Ciphertext bytes stored by uploads', registers: [registry] })
  const proofs = new Counter({ name: 'btt_storage_proofs_total', help: 'Proof challenges answered', registers: [registry] })
  const retrieved = new Counter({ name: 'btt_storage_retrieved_bytes_total', help: 'Bytes sent to retrievals', registers: [registry] })
  const earned = new Counter({ name: 'btt_storage_earned_base_units_total', help: 'Base units earned (periods and retrievals)', registers: [registry] })
  const refused = new Counter({ name: 'btt_storage_refusals_total', help: 'Requests refused, by reason', labelNames: ['reason'], registers: [registry] })
  return {
    event: (e, d) => {
      if (e === 'upload') { uploads.inc(); stored.inc(d.bytes ?? 0) } else if (e === 'proof') proofs.inc()
      else if (e === 'chunk') retrieved.inc(d.bytes ?? 0)
      else if (e === 'period-paid') earned.inc(Number(d.amount ?? 0n))
      else if (e === 'refused') refused.inc({ reason: d.reason ?? 'unknown' })
    }
  }
}
