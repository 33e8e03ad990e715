import type { Stream } from '@libp2p/interface'
import { Framed as BaseFramed } from '@btt/node'
import { z } from 'zod'
import { StorageError } from './errors.js'

/**
 * The storage protocol, `/btt/storage/1.0.0`: one request per libp2p stream, in frames of
 * `u32be length ‖ u8 type ‖ payload` (length counts type + payload). Control messages are JSON
 * (type 1), upload bytes and retrieval chunks are raw (type 2), proofs are binary (type 3).
 * Amounts are decimal strings of base units. See docs/storage.md.
 */
export const STORAGE_PROTOCOL = '/btt/storage/1.0.0'

export const FRAME_JSON = 1
export const FRAME_DATA = 2
export const FRAME_PROOF = 3

/** A JSON control message is small; a peer cannot make us parse more. */
export const MAX_JSON_FRAME = 64 * 1024
/** Upload and retrieval bytes travel in frames of at most 1 MiB. */
export const MAX_DATA_FRAME = 1024 * 1024
/** A k = 16 proof of a 1 TiB file is under 32 KiB; 256 KiB leaves room and still bounds memory. */
export const MAX_PROOF_FRAME = 256 * 1024
/** What the client sends per data frame. */
export const UPLOAD_FRAME_BYTES = 256 * 1024

/** A speed test moves at most this much (it is free: contract holders only, one at a time per peer). */
export const MAX_SPEEDTEST_BYTES = 512 * 1024 * 1024

/** Proof challenges ask for this many segments. */
export const CHALLENGE_SEGMENTS = 16
/** Prices are per GiB per 30-day month (storage) and per GiB (retrieval). */
export const GIB = 1n << 30n
export const MONTH_SECONDS = 30n * 86400n

const HEX32 = /^[0-9a-f]{64}$/
const ID = /^[0-9a-f]{32}$/
const zAmount = z.string().regex(/^(0|[1-9][0-9]{0,38})$/, 'an amount in base units').transform(s => BigInt(s))
const zHex32 = z.string().regex(HEX32, '32 bytes of lowercase hex')
const zId = z.string().regex(ID, '16 bytes of lowercase hex')
const zCount = z.int().min(0).max(Number.MAX_SAFE_INTEGER)

/** What a provider sells at, answered to `quote`. */
export const zTerms = z.strictObject({
  t: z.literal('terms'),
  account: z.string().regex(/^[0-9a-f]{64}$/),
  ledger: zHex32,
  /** base units per GiB per 30 days */
  price: zAmount,
  /** base units per GiB retrieved */
  retrieval: zAmount,
  period: z.int().min(1).max(366 * 86400),
  allowed_misses: z.int().min(0).max(1000),
  min_duration: z.int().min(1),
  max_duration: z.int().min(1),
  /** largest upload accepted, bytes */
  max_size: zCount,
  /** quota left now, bytes */
  free: zCount
})
export type Terms = z.output<typeof zTerms>

export const zClientMessage = z.discriminatedUnion('t', [
  z.strictObject({ t: z.literal('quote') }),
  z.strictObject({
    t: z.literal('put'),
    /** ciphertext bytes */
    size: z.int().min(1).max(Number.MAX_SAFE_INTEGER),
    duration: z.int().min(1),
    period: z.int().min(1),
    price: zAmount,
    retrieval: zAmount,
    allowed_misses: z.int().min(0).max(1000),
    channel: zHex32
  }),
  z.strictObject({ t: z.literal('commit'), root: zHex32 }),
  z.strictObject({ t: z.literal('challenge'), contract: zId, nonce: zHex32 }),
  /** pay for proven period `period` of the contract with this voucher (binary voucher, hex) */
  z.strictObject({ t: z.literal('pay'), contract: zId, period: zCount, voucher: z.string().regex(/^[0-9a-f]{2,1024}$/) }),
  z.strictObject({ t: z.literal('retrieve'), contract: zId, from: zCount }),
  z.strictObject({ t: z.literal('cancel'), contract: zId }),
  z.strictObject({ t: z.literal('done') }),
  /** link speed test (contract holders only): the client then sends `bytes` raw bytes, or the provider does */
  z.strictObject({ t: z.literal('speedtest'), direction: z.enum(['up', 'down']), bytes: z.int().min(1).max(MAX_SPEEDTEST_BYTES) })
])
export type ClientMessage = z.output<typeof zClientMessage>

export const zContractJson = z.strictObject({
  id: zId,
  root: zHex32,
  size: zCount,
  start: zCount,
  period: z.int().min(1),
  periods: z.int().min(1),
  price: zAmount,
  retrieval: zAmount,
  allowed_misses: z.int().min(0),
  channel: zHex32,
  paid_periods: zCount
})
export type ContractJson = z.output<typeof zContractJson>

export const zProviderMessage = z.discriminatedUnion('t', [
  zTerms,
  z.strictObject({ t: z.literal('ready'), upload: zId }),
  z.strictObject({ t: z.literal('stored'), contract: zContractJson }),
  /** a proof frame follows */
  z.strictObject({ t: z.literal('proof'), paid_periods: zCount, periods: z.int().min(1) }),
  z.strictObject({ t: z.literal('paid'), period: zCount, paid_periods: zCount }),
  /** `length` data bytes follow in data frames; `path` verifies the chunk against the root */
  z.strictObject({ t: z.literal('chunk'), index: zCount, length: z.int().min(1).max(64 * 1024 * 1024), price: zAmount, path: z.array(zHex32).max(64), sectors: z.array(zHex32).max(1024) }),
  z.strictObject({ t: z.literal('end') }),
  /** speed test result as the provider measured it */
  z.strictObject({ t: z.literal('speed'), bytes: zCount, ms: z.number().min(0) }),
  z.strictObject({ t: z.literal('cancelled') }),
  z.strictObject({ t: z.literal('error'), code: z.string().max(64), message: z.string().max(1024), paid_periods: zCount.optional() })
])
export type ProviderMessage = z.output<typeof zProviderMessage>

/** Storage charge for one period: ceil(price × size × period / (GiB × 30 days)), at least 1 base unit. */
export function periodAmount (price: bigint, size: number, period: number): bigint {
  const num = price * BigInt(size) * BigInt(period)
  const den = GIB * MONTH_SECONDS
  const v = (num + den - 1n) / den
  return v > 0n ? v : 1n
}

/** Retrieval charge for `bytes`: ceil(retrieval × bytes / GiB), at least 1 base unit. */
export function chunkAmount (retrieval: bigint, bytes: number): bigint {
  const v = (retrieval * BigInt(bytes) + GIB - 1n) / GIB
  return v > 0n ? v : 1n
}

/** Number of proof periods a duration spans. */
export function periodsOf (duration: number, period: number): number {
  return Math.max(1, Math.ceil(duration / period))
}

export type { Frame } from '@btt/node'

/** Frames of the storage protocol, with its caps; protocol violations are STORAGE_PROTOCOL errors. */
export class Framed extends BaseFramed {
  constructor (stream: Stream, caps: Partial<Record<number, number>> = {}) {
    super(stream, { [FRAME_JSON]: MAX_JSON_FRAME, [FRAME_DATA]: MAX_DATA_FRAME, [FRAME_PROOF]: MAX_PROOF_FRAME, ...caps }, message => new StorageError('STORAGE_PROTOCOL', message))
  }
}

/** Validate a message from the other side, naming what was wrong. */
export function parseMessage<T> (schema: z.ZodType<T>, raw: unknown): T {
  const r = schema.safeParse(raw)
  if (!r.success) {
    const issue = r.error.issues[0]
    throw new StorageError('STORAGE_PROTOCOL', `bad message${issue !== undefined ? ` (${issue.path.join('.') || 'message'}: ${issue.message})` : ''}`)
  }
  return r.data
}

/** Throw the provider's error message as a StorageError with its code. */
export function raiseIfError (msg: ProviderMessage): void {
  if (msg.t === 'error') throw new StorageError(msg.code, msg.message)
}
