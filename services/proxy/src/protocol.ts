import { Framed as BaseFramed } from '@btt/node'
import type { Stream } from '@libp2p/interface'
import { z } from 'zod'
import { ProxyError } from './errors.js'

/**
 * The proxy protocol, `/btt/proxy/1.0.0`: one fetch per libp2p stream, in @btt/node frames (JSON
 * control messages, raw data frames). The requester asks for a URL from a chunk on; the provider
 * answers the origin's status and headers, then sends the body chunk by chunk, each with its
 * SHA-256, and sends the next only once the last is paid (at most one unpaid chunk). Prices are
 * base units per byte, so a download costs exactly price × bytes. See docs/proxy.md.
 */
export const PROXY_PROTOCOL = '/btt/proxy/1.0.0'

export const FRAME_JSON = 1
export const FRAME_DATA = 2
export const MAX_JSON_FRAME = 64 * 1024
export const MAX_DATA_FRAME = 1024 * 1024
/** Chunk sizes a requester may ask for: 64 KiB to 16 MiB. */
export const MIN_CHUNK_BYTES = 64 * 1024
export const MAX_CHUNK_BYTES = 16 * 1024 * 1024
/** 4 MiB: one chunk's pause for payment (two durable commits and a round trip) is small beside its transfer (see bench/proxy.ts) */
export const DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024
export const MAX_URL_CHARS = 8192
export const MAX_SPEEDTEST_BYTES = 1024 * 1024 * 1024

const zAmount = z.string().regex(/^(0|[1-9][0-9]{0,38})$/, 'an amount in base units').transform(s => BigInt(s))
const HEX32 = /^[0-9a-f]{64}$/

export const zClientMessage = z.discriminatedUnion('t', [
  z.strictObject({ t: z.literal('quote') }),
  /** raw stream throughput provider → requester (for peers that have paid this provider): `bytes` raw bytes, then `speed` */
  z.strictObject({ t: z.literal('speedtest'), bytes: z.int().min(1).max(MAX_SPEEDTEST_BYTES) }),
  z.strictObject({
    t: z.literal('fetch'),
    url: z.string().min(1).max(MAX_URL_CHARS),
    channel: z.string().regex(HEX32),
    chunk_size: z.int().min(MIN_CHUNK_BYTES).max(MAX_CHUNK_BYTES),
    /** first chunk to send (resume) */
    from: z.int().min(0).max(Number.MAX_SAFE_INTEGER),
    /** highest price accepted, base units per byte */
    max_price: zAmount,
    /** resume check: hash chunk `from − 1` without sending it, so a resume is verified against the manifest */
    verify_previous: z.boolean().default(false),
    /** a voucher for a chunk of an earlier, interrupted session that the provider may not have received */
    settle: z.string().regex(/^[0-9a-f]{2,1024}$/).optional()
  }),
  /** `last`: the requester's channel has no room for another chunk; stop after this one (it fetches the rest on a new channel) */
  z.strictObject({ t: z.literal('pay'), index: z.int().min(0), voucher: z.string().regex(/^[0-9a-f]{2,1024}$/), last: z.boolean().default(false) }),
  z.strictObject({ t: z.literal('done') }),
  /** a voucher of an earlier, interrupted download, delivered on its own (the download went on through another provider) */
  z.strictObject({ t: z.literal('settle'), channel: z.string().regex(HEX32), voucher: z.string().regex(/^[0-9a-f]{2,1024}$/) })
])
export type ClientMessage = z.output<typeof zClientMessage>

export const zProviderMessage = z.discriminatedUnion('t', [
  z.strictObject({ t: z.literal('terms'), account: z.string().regex(HEX32), ledger: z.string().regex(HEX32), price: zAmount, max_body: z.int().min(0) }),
  z.strictObject({
    t: z.literal('head'),
    status: z.int().min(100).max(599),
    /** the final URL after redirects */
    url: z.string().max(MAX_URL_CHARS),
    headers: z.record(z.string().max(256), z.string().max(8192)),
    /** the body's length when the origin said it (decoded bytes are what is sent and paid) */
    length: z.int().min(0).optional(),
    price: zAmount,
    /** SHA-256 of chunk `from − 1` when verify_previous was asked */
    previous: z.string().regex(HEX32).optional()
  }),
  /** `length` bytes follow in data frames */
  z.strictObject({ t: z.literal('chunk'), index: z.int().min(0), length: z.int().min(1).max(MAX_CHUNK_BYTES), sha256: z.string().regex(HEX32) }),
  /** `complete`: the body ended (false: stopped after a `last` payment) */
  z.strictObject({ t: z.literal('end'), chunks: z.int().min(0), bytes: z.int().min(0), complete: z.boolean() }),
  z.strictObject({ t: z.literal('settled'), credited: zAmount }),
  z.strictObject({ t: z.literal('speed'), bytes: z.int().min(0), ms: z.number().min(0) }),
  z.strictObject({ t: z.literal('error'), code: z.string().max(64), message: z.string().max(1024) })
])
export type ProviderMessage = z.output<typeof zProviderMessage>

/** Frames of the proxy protocol; protocol violations are PROXY_PROTOCOL errors. */
export class Framed extends BaseFramed {
  constructor (stream: Stream) {
    super(stream, { [FRAME_JSON]: MAX_JSON_FRAME, [FRAME_DATA]: MAX_DATA_FRAME }, message => new ProxyError('PROXY_PROTOCOL', message))
  }
}

export function parseMessage<T> (schema: z.ZodType<T>, raw: unknown): T {
  const r = schema.safeParse(raw)
  if (!r.success) {
    const issue = r.error.issues[0]
    throw new ProxyError('PROXY_PROTOCOL', `bad message${issue !== undefined ? ` (${issue.path.join('.') || 'message'}: ${issue.message})` : ''}`)
  }
  return r.data
}

export function raiseIfError (msg: ProviderMessage): void {
  if (msg.t === 'error') throw new ProxyError(msg.code, msg.message)
}
