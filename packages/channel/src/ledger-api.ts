import type { Voucher } from './voucher.js'

/**
 * What the channel core needs of a settlement ledger. Implemented by @btt/ledger's HTTP client and
 * its in-process client; @btt/channel never imports @btt/ledger.
 *
 * Ids and keys are lower-case hex; amounts are bigint base units; times are unix milliseconds.
 */
export type LedgerChannelStatus = 'open' | 'refunding' | 'finalized'

export interface LedgerChannel {
  id: string
  ledgerId: string
  payer: string
  payee: string
  nonce: string
  /** Total locked by the payer (grows with top-ups). */
  deposit: bigint
  /** Total paid to the payee by claims so far. */
  claimed: bigint
  expiresAt: number
  status: LedgerChannelStatus
  /** Set while refunding: after this the payer may finalize. */
  challengeEndsAt: number | null
}

export interface LedgerInfo {
  ledgerId: string
  challengeWindowMs: number
  dev: boolean
  version: string
}

/** A client bound to one account (its key signs every mutating request). */
export interface LedgerClient {
  /** The account this client acts for (hex public key). */
  readonly account: string
  info(): Promise<LedgerInfo>
  balance(account?: string): Promise<bigint>
  channel(id: string): Promise<LedgerChannel>
  /** Channels where the account is payer or payee. */
  channels(): Promise<LedgerChannel[]>
  /** Payer: lock `deposit` into a new channel to `payee`. */
  open(req: { payee: string, deposit: bigint, expiresAt: number }): Promise<LedgerChannel>
  /** Payer: add to the deposit. */
  topup(req: { channelId: string, amount: bigint }): Promise<LedgerChannel>
  /** Payer: move the expiry later (never earlier). */
  extend(req: { channelId: string, expiresAt: number }): Promise<LedgerChannel>
  /** Payee: present a voucher; the ledger pays the difference since the last claim. Idempotent. */
  claim(voucher: Voucher): Promise<{ channel: LedgerChannel, paid: bigint }>
  /** Payer, after expiry: start the refund; the challenge window opens. */
  refund(req: { channelId: string }): Promise<LedgerChannel>
  /** Payer, after the challenge window: return deposit − claimed to the payer. */
  finalize(req: { channelId: string }): Promise<{ channel: LedgerChannel, refunded: bigint }>
  /** Dev ledgers only: mint `amount` to this account. */
  faucet(amount: bigint): Promise<bigint>
}
