import { encodeVoucher, verifyVoucher, type Voucher } from './voucher.js'
import { toHex, fromHex } from './crypto.js'
import { BadSignatureError, ChannelClosedError, OverDepositError, StaleVoucherError, WrongChannelError, WrongLedgerError } from './errors.js'
import type { LedgerChannel, LedgerChannelStatus } from './ledger-api.js'

/**
 * The payee's record of one incoming channel. Pure data: the functions below compute the next
 * state and the effects; the runtime persists the state, then performs the effects.
 */
export interface IncomingChannel {
  id: string
  ledgerId: string
  payer: string
  payee: string
  deposit: bigint
  /** What the ledger has paid us so far. */
  claimed: bigint
  expiresAt: number
  status: LedgerChannelStatus
  challengeEndsAt: number | null
  /** Highest valid cumulative voucher amount received (0n before the first). */
  highest: bigint
  /** Binary form of that voucher, what we claim with. */
  voucher: Uint8Array | null
}

export type ChannelEvent =
  | { type: 'voucher', voucher: Voucher, now: number }
  | { type: 'ledger', channel: LedgerChannel, now: number }
  | { type: 'tick', now: number }

export type ClaimReason = 'threshold' | 'expiry' | 'refund'

export type ChannelEffect =
  /** Credit this much new value to whoever sent the voucher. */
  | { type: 'credit', amount: bigint }
  /** Present the highest voucher to the ledger. */
  | { type: 'claim', reason: ClaimReason }

export interface ClaimPolicy {
  /** Claim once this much received value is unclaimed. */
  threshold: bigint
  /** Claim everything unclaimed this long before the channel expires. */
  safetyMarginMs: number
}

export interface Transition {
  state: IncomingChannel
  effects: ChannelEffect[]
}

/** A new incoming channel record from the ledger's view of it. */
export function fromLedger (channel: LedgerChannel): IncomingChannel {
  return {
    id: channel.id,
    ledgerId: channel.ledgerId,
    payer: channel.payer,
    payee: channel.payee,
    deposit: channel.deposit,
    claimed: channel.claimed,
    expiresAt: channel.expiresAt,
    status: channel.status,
    challengeEndsAt: channel.challengeEndsAt,
    highest: channel.claimed,
    voucher: null
  }
}

/**
 * The channel state machine: `(state, event) → { state, effects }`. An invalid event throws a coded
 * ChannelError and the caller keeps the old state. Never mutates its input.
 */
export function reduce (state: IncomingChannel, event: ChannelEvent, policy: ClaimPolicy): Transition {
  switch (event.type) {
    case 'voucher': {
      const v = event.voucher
      if (toHex(v.ledgerId) !== state.ledgerId) throw new WrongLedgerError(`voucher is for ledger ${toHex(v.ledgerId)}, this channel is on ${state.ledgerId}`)
      if (toHex(v.channelId) !== state.id) throw new WrongChannelError(`voucher is for channel ${toHex(v.channelId)}, expected ${state.id}`)
      if (state.status === 'finalized') throw new ChannelClosedError(`channel ${state.id} is finalized`)
      if (!verifyVoucher(v, payerKey(state.payer))) throw new BadSignatureError()
      if (v.amount > state.deposit) throw new OverDepositError(`voucher amount ${v.amount} exceeds the deposit ${state.deposit}`)
      if (v.amount <= state.highest) throw new StaleVoucherError(`voucher amount ${v.amount} is not above the last accepted ${state.highest}`)
      const next: IncomingChannel = { ...state, highest: v.amount, voucher: encodeVoucher(v) }
      const effects: ChannelEffect[] = [{ type: 'credit', amount: v.amount - state.highest }]
      return { state: next, effects: withClaim(next, effects, policy, event.now) }
    }
    case 'ledger': {
      const c = event.channel
      if (c.id !== state.id || c.ledgerId !== state.ledgerId || c.payer !== state.payer || c.payee !== state.payee) {
        throw new WrongChannelError(`ledger answered for another channel (${c.id})`)
      }
      // amounts on the ledger only grow; a lower figure is an older answer and changes nothing
      const next: IncomingChannel = {
        ...state,
        deposit: c.deposit > state.deposit ? c.deposit : state.deposit,
        claimed: c.claimed > state.claimed ? c.claimed : state.claimed,
        expiresAt: c.expiresAt > state.expiresAt ? c.expiresAt : state.expiresAt,
        status: rank(c.status) > rank(state.status) ? c.status : state.status,
        challengeEndsAt: c.challengeEndsAt ?? state.challengeEndsAt
      }
      return { state: next, effects: withClaim(next, [], policy, event.now) }
    }
    case 'tick':
      return { state, effects: withClaim(state, [], policy, event.now) }
  }
}

/** Whether the highest voucher should be claimed now, and why. */
export function claimReason (state: IncomingChannel, policy: ClaimPolicy, now: number): ClaimReason | undefined {
  if (state.voucher === null || state.status === 'finalized' || state.highest <= state.claimed) return undefined
  if (state.status === 'refunding') return 'refund'
  if (now >= state.expiresAt - policy.safetyMarginMs) return 'expiry'
  if (state.highest - state.claimed >= policy.threshold) return 'threshold'
  return undefined
}

function withClaim (state: IncomingChannel, effects: ChannelEffect[], policy: ClaimPolicy, now: number): ChannelEffect[] {
  const reason = claimReason(state, policy, now)
  return reason === undefined ? effects : [...effects, { type: 'claim', reason }]
}

/** Parsed payer keys, by hex: parsing is on the per-voucher path. Bounded. */
const payerKeys = new Map<string, Uint8Array>()
function payerKey (hex: string): Uint8Array {
  let key = payerKeys.get(hex)
  if (key === undefined) {
    key = fromHex(hex, 32, 'payer')
    if (payerKeys.size >= 4096) payerKeys.clear()
    payerKeys.set(hex, key)
  }
  return key
}

function rank (s: LedgerChannelStatus): number {
  return s === 'open' ? 0 : s === 'refunding' ? 1 : 2
}
