import type { LedgerChannel, LedgerInfo } from '@btt/channel'
import { z } from 'zod'

/**
 * The JSON forms of the ledger's answers, shared by the server (writing) and the HTTP client
 * (reading, strictly). Amounts are decimal strings of base units; times unix ms.
 */
export interface ChannelJson {
  id: string
  ledgerId: string
  payer: string
  payee: string
  nonce: string
  deposit: string
  claimed: string
  expiresAt: number
  status: LedgerChannel['status']
  challengeEndsAt: number | null
}

export function channelToJson (c: LedgerChannel): ChannelJson {
  return {
    id: c.id,
    ledgerId: c.ledgerId,
    payer: c.payer,
    payee: c.payee,
    nonce: c.nonce,
    deposit: c.deposit.toString(),
    claimed: c.claimed.toString(),
    expiresAt: c.expiresAt,
    status: c.status,
    challengeEndsAt: c.challengeEndsAt
  }
}

export const hexOf = (bytes: number): z.ZodString => z.string().regex(new RegExp(`^[0-9a-f]{${bytes * 2}}$`), `must be ${bytes * 2} lower-case hex characters`)
/** A decimal string of base units, as written (not yet a bigint). */
export const amountText = z.string().max(80).regex(/^(0|[1-9][0-9]*)$/, 'must be a decimal string of base units')
export const amount = amountText.transform(s => BigInt(s)).refine(v => v < 1n << 128n, 'must be below 2^128')
export const unixMs = z.int().nonnegative()

export const channelSchema = z.strictObject({
  id: hexOf(32),
  ledgerId: hexOf(32),
  payer: hexOf(32),
  payee: hexOf(32),
  nonce: hexOf(32),
  deposit: amount,
  claimed: amount,
  expiresAt: unixMs,
  status: z.enum(['open', 'refunding', 'finalized']),
  challengeEndsAt: unixMs.nullable()
})

export const infoSchema = z.strictObject({
  ledgerId: hexOf(32),
  challengeWindowMs: unixMs,
  dev: z.boolean(),
  version: z.string().max(64)
}) satisfies z.ZodType<LedgerInfo>

export const errorSchema = z.object({
  error: z.object({ code: z.string().regex(/^[A-Z][A-Z0-9_]{0,63}$/), message: z.string().max(4096) })
})

/** "payee: must be 64 lower-case hex characters; deposit: …" */
export function describeIssues (error: z.ZodError): string {
  return error.issues.slice(0, 5).map(i => `${i.path.length === 0 ? 'body' : i.path.join('.')}: ${i.message}`).join('; ')
}
