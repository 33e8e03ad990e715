import {
  isValidPublicKey,
  BadSignatureError,
  InvalidAmountError,
  MAX_AMOUNT,
  MalformedVoucherError,
  OverDepositError,
  WrongChannelError,
  WrongLedgerError,
  channelIdOf,
  toHex,
  verifyVoucher,
  type LedgerChannel,
  type LedgerInfo,
  type Voucher
} from '@btt/channel'
import {
  BUSY_TIMEOUT_MS,
  DEFAULT_CHALLENGE_WINDOW_MS,
  LEDGER_VERSION,
  MAX_BATCH_OPS,
  MAX_CHALLENGE_WINDOW_MS,
  MAX_EXPIRY_AHEAD_MS,
  NONCE_PRUNE_BATCH,
  NONCE_PRUNE_INTERVAL_MS,
  NONCE_RETENTION_MS
} from './constants.js'
import {
  AlreadyRefundingError,
  BadExpiryError,
  BadRequestError,
  ChallengeOpenError,
  ChannelExistsError,
  ChannelFinalizedError,
  FaucetDisabledError,
  InsufficientFundsError,
  LedgerClosedError,
  NotExpiredError,
  NotPartyError,
  NotPayeeError,
  NotPayerError,
  NotRefundingError,
  ReplayError,
  UnknownChannelError
} from './errors.js'
import { LedgerStore, type BatchJob, type ChannelRow } from './store.js'

export interface LedgerInit {
  /** The database file; `:memory:` for a throw-away ledger in this process only. */
  path: string
  /** Enable the faucet that mints test BTT. Never on a ledger holding real value. */
  dev?: boolean
  /** Refund challenge window; default 1 h. */
  challengeWindowMs?: number
  /** The clock (unix ms); injectable for tests. */
  now?: () => number
  /** How long to wait for another process's write lock; default 10 s. */
  busyTimeoutMs?: number
  /** Most operations per group-commit transaction (see `enqueue`); default 256. */
  maxBatchOps?: number
}

/** The conservation invariant: balances + locked == totalMinted (and no channel has claimed > deposit). */
export interface LedgerCheck {
  ok: boolean
  totalMinted: bigint
  /** Sum of all account balances. */
  balances: bigint
  /** Sum of deposit − claimed over channels not finalized. */
  locked: bigint
}

interface Pending {
  job: BatchJob
  resolve: (value: never) => void
  reject: (error: unknown) => void
}

const KEY_HEX = /^[0-9a-f]{64}$/

/**
 * The settlement ledger: accounts, channels, claims, refunds (DESIGN.md "Payment channels"), on
 * node:sqlite. Every state change is one transaction (`BEGIN IMMEDIATE` … `COMMIT`), so several
 * processes may share one database file. `account`, `payer`, `payee` and `caller` are the
 * lower-case hex public key of the authenticated caller: the ledger trusts its caller to have
 * authenticated it (the HTTP server checks the request signature; LocalLedgerClient holds the key).
 *
 * Each operation runs at once in its own transaction. `enqueue` runs operations by group commit:
 * those queued in one event-loop turn share one transaction, each in its own savepoint.
 */
export class Ledger {
  readonly ledgerId: string
  readonly dev: boolean
  readonly challengeWindowMs: number
  private readonly ledgerIdBytes: Uint8Array
  private readonly store: LedgerStore
  private readonly clock: () => number
  private readonly maxBatchOps: number
  private pending: Pending[] = []
  private scheduled = false
  private lastPrune = Number.NEGATIVE_INFINITY
  private pruneBacklog = false
  private closed = false

  constructor (init: LedgerInit) {
    if (typeof init?.path !== 'string' || init.path === '') throw new BadRequestError('a ledger needs a database path (or ":memory:")')
    const window = init.challengeWindowMs ?? DEFAULT_CHALLENGE_WINDOW_MS
    if (!Number.isSafeInteger(window) || window < 0 || window > MAX_CHALLENGE_WINDOW_MS) {
      throw new BadRequestError(`challengeWindowMs must be an integer from 0 to ${MAX_CHALLENGE_WINDOW_MS}`)
    }
    this.challengeWindowMs = window
    this.dev = init.dev === true
    this.clock = init.now ?? Date.now
    this.maxBatchOps = Math.max(1, init.maxBatchOps ?? MAX_BATCH_OPS)
    this.store = new LedgerStore(init.path, init.busyTimeoutMs ?? BUSY_TIMEOUT_MS)
    this.ledgerIdBytes = this.store.ledgerId
    this.ledgerId = toHex(this.ledgerIdBytes)
  }

  /** The ledger's clock (unix ms). */
  now (): number {
    return this.clock()
  }

  info (): LedgerInfo {
    return { ledgerId: this.ledgerId, challengeWindowMs: this.challengeWindowMs, dev: this.dev, version: LEDGER_VERSION }
  }

  balance (account: string): bigint {
    checkKey(account, 'account')
    this.checkOpen()
    return this.store.balance(account)
  }

  channel (id: string): LedgerChannel {
    checkKey(id, 'channel id')
    this.checkOpen()
    return this.view(this.get(id))
  }

  /** Channels where `account` is payer or payee, oldest first. */
  channels (account: string): LedgerChannel[] {
    checkKey(account, 'account')
    this.checkOpen()
    return this.store.channels(account).map(c => this.view(c))
  }

  /**
   * Payer: lock `deposit` from its balance into a new channel to `payee`, until `expiresAt`.
   * `nonce` (32 bytes hex) is chosen by the client; the channel id is
   * BLAKE2b(ledgerId ‖ payer ‖ payee ‖ nonce), and an id that exists already is refused.
   */
  open (payer: string, req: { payee: string, deposit: bigint, expiresAt: number, nonce: string }): LedgerChannel {
    checkKey(payer, 'payer')
    checkKey(req.payee, 'payee')
    // a payee key off the curve could never sign a claim: its deposit would be stuck until refund
    if (!isValidPublicKey(Buffer.from(req.payee, 'hex'))) throw new BadRequestError('payee is not a valid ed25519 public key')
    checkKey(req.nonce, 'nonce')
    if (req.payee === payer) throw new BadRequestError('payer and payee must differ')
    positive(req.deposit, 'deposit')
    return this.store.write(() => {
      const now = this.clock()
      this.checkExpiry(req.expiresAt, now)
      const balance = this.store.balance(payer)
      if (req.deposit > balance) throw new InsufficientFundsError(`deposit ${req.deposit} exceeds the balance ${balance}`)
      const id = toHex(channelIdOf(this.ledgerIdBytes, Buffer.from(payer, 'hex'), Buffer.from(req.payee, 'hex'), Buffer.from(req.nonce, 'hex')))
      if (this.store.channel(id) !== undefined) throw new ChannelExistsError()
      const c: ChannelRow = {
        id,
        payer,
        payee: req.payee,
        nonce: req.nonce,
        deposit: req.deposit,
        claimed: 0n,
        expiresAt: req.expiresAt,
        status: 'open',
        challengeEndsAt: null,
        createdAt: now
      }
      this.store.insertChannel(c)
      this.store.setBalance(payer, balance - req.deposit)
      return this.view(c)
    })
  }

  /** Payer, while the channel is open: move `amount` from its balance into the deposit. */
  topup (payer: string, req: { channelId: string, amount: bigint }): LedgerChannel {
    checkKey(payer, 'payer')
    checkKey(req.channelId, 'channel id')
    positive(req.amount, 'amount')
    return this.store.write(() => {
      const c = this.payersOpenChannel(payer, req.channelId)
      const balance = this.store.balance(payer)
      if (req.amount > balance) throw new InsufficientFundsError(`top-up ${req.amount} exceeds the balance ${balance}`)
      c.deposit += req.amount
      this.store.updateChannel(c)
      this.store.setBalance(payer, balance - req.amount)
      return this.view(c)
    })
  }

  /** Payer, while the channel is open: move the expiry later (never earlier). */
  extend (payer: string, req: { channelId: string, expiresAt: number }): LedgerChannel {
    checkKey(payer, 'payer')
    checkKey(req.channelId, 'channel id')
    return this.store.write(() => {
      const c = this.payersOpenChannel(payer, req.channelId)
      this.checkExpiry(req.expiresAt, this.clock())
      if (req.expiresAt < c.expiresAt) throw new BadExpiryError(`an expiry can only move later: ${req.expiresAt} is before ${c.expiresAt}`)
      c.expiresAt = req.expiresAt
      this.store.updateChannel(c)
      return this.view(c)
    })
  }

  /**
   * Payee: present a voucher; the ledger pays `amount − claimed` if positive. A voucher at or below
   * what was claimed pays 0 (not an error). Allowed while open (even after expiry) and while
   * refunding (the challenge window); refused once finalized. `channelId` (default: the voucher's)
   * is the channel the caller means, e.g. from the request path.
   */
  claim (payee: string, voucher: Voucher, channelId?: string): { channel: LedgerChannel, paid: bigint } {
    checkKey(payee, 'payee')
    checkVoucherShape(voucher)
    const id = channelId ?? toHex(voucher.channelId)
    checkKey(id, 'channel id')
    return this.store.write(() => {
      const c = this.get(id)
      if (c.payee !== payee) throw new NotPayeeError()
      if (c.status === 'finalized') throw new ChannelFinalizedError('the channel is finalized: claims are closed')
      if (!Buffer.from(voucher.ledgerId).equals(this.ledgerIdBytes)) throw new WrongLedgerError()
      if (toHex(voucher.channelId) !== c.id) throw new WrongChannelError()
      if (voucher.amount > c.deposit) throw new OverDepositError(`voucher amount ${voucher.amount} exceeds the deposit ${c.deposit}`)
      if (!verifyVoucher(voucher, Buffer.from(c.payer, 'hex'))) throw new BadSignatureError()
      if (voucher.amount <= c.claimed) return { channel: this.view(c), paid: 0n }
      const paid = voucher.amount - c.claimed
      c.claimed = voucher.amount
      this.store.updateChannel(c)
      this.store.setBalance(payee, this.store.balance(payee) + paid)
      return { channel: this.view(c), paid }
    })
  }

  /**
   * Payer, at or after expiry: start the refund. The channel becomes `refunding` and the challenge
   * window opens (until now + challengeWindowMs), in which the payee can still claim. Only once.
   */
  refund (payer: string, req: { channelId: string }): LedgerChannel {
    checkKey(payer, 'payer')
    checkKey(req.channelId, 'channel id')
    return this.store.write(() => {
      const c = this.payersOpenChannel(payer, req.channelId)
      const now = this.clock()
      if (now < c.expiresAt) throw new NotExpiredError(`the channel expires at ${new Date(c.expiresAt).toISOString()}; a refund is possible from then on`)
      c.status = 'refunding'
      c.challengeEndsAt = now + this.challengeWindowMs
      this.store.updateChannel(c)
      return this.view(c)
    })
  }

  /**
   * Payer or payee, once the challenge window has ended: return deposit − claimed to the payer.
   * The channel is finalized: later claims, top-ups, extensions and refunds are refused.
   */
  finalize (caller: string, req: { channelId: string }): { channel: LedgerChannel, refunded: bigint } {
    checkKey(caller, 'caller')
    checkKey(req.channelId, 'channel id')
    return this.store.write(() => {
      const c = this.get(req.channelId)
      if (caller !== c.payer && caller !== c.payee) throw new NotPartyError()
      if (c.status === 'finalized') throw new ChannelFinalizedError()
      if (c.status === 'open') throw new NotRefundingError()
      const ends = c.challengeEndsAt as number
      if (this.clock() < ends) throw new ChallengeOpenError(`the challenge window ends at ${new Date(ends).toISOString()}`)
      const refunded = c.deposit - c.claimed
      c.status = 'finalized'
      this.store.updateChannel(c)
      this.store.setBalance(c.payer, this.store.balance(c.payer) + refunded)
      return { channel: this.view(c), refunded }
    })
  }

  /** Dev ledgers only: mint `amount` to `account`. Returns the new balance. */
  faucet (account: string, amount: bigint): bigint {
    if (!this.dev) throw new FaucetDisabledError()
    checkKey(account, 'account')
    positive(amount, 'amount')
    return this.store.write(() => {
      const total = this.store.totalMinted()
      // every balance and sum stays ≤ total minted, so this bound keeps them all in 128 bits
      if (amount > MAX_AMOUNT - total) throw new InvalidAmountError(`minting ${amount} would take the total past ${MAX_AMOUNT}`)
      const balance = this.store.balance(account) + amount
      this.store.setBalance(account, balance)
      this.store.setTotalMinted(total + amount)
      return balance
    })
  }

  /**
   * Record a signed request's nonce for `account` (replay protection). A nonce used before by the
   * same account is a ReplayError. Nonces older than the retention time are pruned here, a bounded
   * number at a time (see NONCE_PRUNE_BATCH).
   */
  useRequestNonce (account: string, nonce: string, timestamp: number): void {
    this.store.write(() => {
      const now = this.clock()
      if (this.pruneBacklog || now - this.lastPrune >= NONCE_PRUNE_INTERVAL_MS) {
        this.pruneBacklog = this.store.pruneNonces(now - NONCE_RETENTION_MS, NONCE_PRUNE_BATCH) === NONCE_PRUNE_BATCH
        this.lastPrune = now
      }
      if (!this.store.useNonce(account, nonce, timestamp)) throw new ReplayError()
    })
  }

  /**
   * Group commit: queue `op` (a call of this ledger's operations); all operations queued in one
   * event-loop turn (up to maxBatchOps) run in one transaction, each in its own savepoint, so one
   * failure rolls back only itself. `guard` (e.g. useRequestNonce) runs first in its own savepoint
   * and is kept even if `op` fails; if `guard` fails, `op` does not run. The promise settles only
   * after the batch's COMMIT: nothing is acknowledged that is not on disk.
   */
  async enqueue<T> (op: () => T, guard?: () => void): Promise<T> {
    if (this.closed) throw new LedgerClosedError()
    return await new Promise<T>((resolve, reject) => {
      this.pending.push({ job: guard === undefined ? { op } : { op, guard }, resolve: resolve as (value: never) => void, reject })
      this.schedule()
    })
  }

  /** The conservation invariant on one consistent snapshot. */
  check (): LedgerCheck {
    this.checkOpen()
    return this.store.read(() => {
      const totalMinted = this.store.totalMinted()
      const { balances, locked, claimedOverDeposit } = this.store.sums()
      return { ok: balances + locked === totalMinted && claimedOverDeposit === 0, totalMinted, balances, locked }
    })
  }

  /** Run what is queued, then close the database. */
  close (): void {
    if (this.closed) return
    while (this.pending.length > 0) this.flush()
    this.closed = true
    this.store.close()
  }

  private schedule (): void {
    if (this.scheduled) return
    this.scheduled = true
    setImmediate(() => {
      this.scheduled = false
      this.flush()
      if (this.pending.length > 0) this.schedule()
    })
  }

  private flush (): void {
    const batch = this.pending.splice(0, this.maxBatchOps)
    if (batch.length === 0) return
    const results = this.closed
      ? batch.map(() => ({ ok: false as const, error: new LedgerClosedError() }))
      : this.store.batch(batch.map(p => p.job))
    for (let i = 0; i < batch.length; i++) {
      const p = batch[i] as Pending
      const r = results[i]
      if (r?.ok === true) p.resolve(r.value as never)
      else p.reject(r === undefined ? new Error('batch result missing') : r.error)
    }
  }

  private get (id: string): ChannelRow {
    const c = this.store.channel(id)
    if (c === undefined) throw new UnknownChannelError(`no channel ${id} on this ledger`)
    return c
  }

  /** The channel, checked to be the caller's (as payer) and open. */
  private payersOpenChannel (payer: string, id: string): ChannelRow {
    const c = this.get(id)
    if (c.payer !== payer) throw new NotPayerError()
    if (c.status === 'finalized') throw new ChannelFinalizedError()
    if (c.status === 'refunding') throw new AlreadyRefundingError()
    return c
  }

  private checkExpiry (expiresAt: number, now: number): void {
    if (!Number.isSafeInteger(expiresAt)) throw new BadExpiryError('expiresAt must be an integer (unix ms)')
    if (expiresAt <= now) throw new BadExpiryError(`expiresAt ${expiresAt} is not in the future`)
    if (expiresAt > now + MAX_EXPIRY_AHEAD_MS) throw new BadExpiryError('expiresAt is more than 10 years ahead')
  }

  private view (c: ChannelRow): LedgerChannel {
    return {
      id: c.id,
      ledgerId: this.ledgerId,
      payer: c.payer,
      payee: c.payee,
      nonce: c.nonce,
      deposit: c.deposit,
      claimed: c.claimed,
      expiresAt: c.expiresAt,
      status: c.status,
      challengeEndsAt: c.challengeEndsAt
    }
  }

  private checkOpen (): void {
    if (this.closed) throw new LedgerClosedError()
  }
}

function checkKey (value: unknown, what: string): asserts value is string {
  if (typeof value !== 'string' || !KEY_HEX.test(value)) throw new BadRequestError(`${what} must be 64 lower-case hex characters`)
}

function positive (amount: unknown, what: string): asserts amount is bigint {
  if (typeof amount !== 'bigint' || amount <= 0n || amount > MAX_AMOUNT) throw new InvalidAmountError(`${what} must be a positive amount below 2^128 base units`)
}

function checkVoucherShape (v: Voucher): void {
  if (typeof v !== 'object' || v === null) throw new MalformedVoucherError('voucher must be an object')
  if (!(v.ledgerId instanceof Uint8Array) || v.ledgerId.length !== 32) throw new MalformedVoucherError('voucher ledgerId must be 32 bytes')
  if (!(v.channelId instanceof Uint8Array) || v.channelId.length !== 32) throw new MalformedVoucherError('voucher channelId must be 32 bytes')
  if (!(v.signature instanceof Uint8Array) || v.signature.length !== 64) throw new MalformedVoucherError('voucher signature must be 64 bytes')
  if (typeof v.amount !== 'bigint' || v.amount < 0n || v.amount > MAX_AMOUNT) throw new MalformedVoucherError('voucher amount must be 0 ≤ amount < 2^128')
}
