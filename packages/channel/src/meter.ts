import { DEFAULT_BAN_AFTER_FAILURES, DEFAULT_BAN_MS, DEFAULT_CLAIM_SAFETY_MARGIN_MS, DEFAULT_CLAIM_THRESHOLD, DEFAULT_MAX_UNPAID_UNITS, DEFAULT_PAYMENT_TIMEOUT_MS } from './constants.js'
import { toHex } from './crypto.js'
import { ChannelClosedError, ChannelError, DepositExhaustedError, OverDepositError, PaymentTimeoutError, PeerBannedError, SessionClosedError, UnknownChannelError, WrongChannelError, WrongLedgerError } from './errors.js'
import type { LedgerClient } from './ledger-api.js'
import { fromLedger, reduce, type ChannelEffect, type ClaimPolicy, type ClaimReason, type IncomingChannel } from './state.js'
import type { ChannelStore } from './store.js'
import { decodeVoucher, type Voucher } from './voucher.js'

export interface MeterInit {
  store: ChannelStore
  /** Where channels not yet seen are looked up. */
  ledger: Pick<LedgerClient, 'channel'>
  /** Our wallet public key (hex): an incoming channel must pay it. */
  payee: string
  ledgerId: string
  policy?: Partial<ClaimPolicy>
  paymentTimeoutMs?: number
  /** Credit-exposure cap in units per session (default 1). */
  maxUnpaidUnits?: number
  banAfterFailures?: number
  banMs?: number
  now?: () => number
  /** The state machine asked for a claim (wire this to the Claimer). */
  onClaim?: (channelId: string, reason: ClaimReason) => void
}

/** A reservation of units about to be delivered. `apply()` after delivering; `cleanup()` in `finally`. */
export interface Debit {
  apply(): void
  cleanup(): void
}

export interface SessionInit {
  /** Who pays (peer id, IP or wallet key): failures and bans are counted per peer. */
  peer: string
  channelId: string
  /** Price per unit, base units. */
  price: bigint
  /** This session's credit-exposure cap in units (default: the Meter's `maxUnpaidUnits`). */
  maxUnpaidUnits?: number
  /**
   * Base units the payer still owes from an earlier session (one that timed out): counted as
   * delivered, so a payer cannot reset its exposure by reconnecting.
   */
  owed?: bigint
}

/**
 * Metering for services. Services never see signatures or the ledger: they open a session on the
 * payer's channel, `await session.prepare(units)` before delivering (it waits, up to the payment
 * timeout, until the unpaid exposure allows it), `debit.apply()` after delivering, and hand
 * incoming vouchers to `session.accept()`, which persists them before it returns.
 */
export class Meter {
  readonly policy: ClaimPolicy
  private readonly failures = new Map<string, number>()
  private readonly bans = new Map<string, number>()
  private readonly now: () => number

  constructor (readonly init: MeterInit) {
    this.policy = { threshold: init.policy?.threshold ?? DEFAULT_CLAIM_THRESHOLD, safetyMarginMs: init.policy?.safetyMarginMs ?? DEFAULT_CLAIM_SAFETY_MARGIN_MS }
    this.now = init.now ?? Date.now
  }

  /** Open a metering session on an incoming channel; learns the channel from the ledger on first use. */
  async open (session: SessionInit): Promise<MeterSession> {
    this.assertNotBanned(session.peer)
    if (typeof session.price !== 'bigint' || session.price <= 0n) throw new ChannelError('CHANNEL_BAD_PRICE', 'a session price must be a positive amount')
    if (session.maxUnpaidUnits !== undefined && (!Number.isSafeInteger(session.maxUnpaidUnits) || session.maxUnpaidUnits < 1)) throw new RangeError('maxUnpaidUnits must be a positive integer')
    let channel = this.init.store.getIncoming(session.channelId)
    if (channel === undefined) {
      const remote = fromLedger(await this.init.ledger.channel(session.channelId))
      // check before storing: a peer must not be able to fill our store with other people's channels
      this.checkUsable(remote)
      channel = await this.init.store.updateIncoming(session.channelId, cur => {
        const state = cur ?? remote
        return { state, result: state }
      })
    }
    this.checkUsable(channel)
    return new MeterSession(this, session)
  }

  /** @internal a channel we may deliver on now: ours, on our ledger, open, not near expiry. */
  checkUsable (channel: IncomingChannel): void {
    if (channel.ledgerId !== this.init.ledgerId) throw new WrongLedgerError(`channel ${channel.id} is on ledger ${channel.ledgerId}, we settle on ${this.init.ledgerId}`)
    if (channel.payee !== this.init.payee) throw new WrongChannelError(`channel ${channel.id} pays ${channel.payee}, not this node`)
    if (channel.status !== 'open') throw new ChannelClosedError(`channel ${channel.id} is ${channel.status}`)
    if (channel.expiresAt - this.policy.safetyMarginMs <= this.now()) throw new ChannelClosedError(`channel ${channel.id} expires too soon to be used`)
  }

  /** @internal the ledger's view of a channel (top-ups, extensions, refunds), merged into ours. */
  async refresh (channelId: string): Promise<void> {
    const remote = await this.init.ledger.channel(channelId)
    const now = this.now()
    await this.init.store.updateIncoming(channelId, cur => {
      if (cur === undefined) throw new UnknownChannelError(channelId)
      return { state: reduce(cur, { type: 'ledger', channel: remote, now }, this.policy).state, result: undefined }
    })
  }

  isBanned (peer: string): boolean {
    const until = this.bans.get(peer)
    if (until === undefined) return false
    if (until <= this.now()) {
      this.bans.delete(peer)
      return false
    }
    return true
  }

  /** Peers banned now (for metrics). */
  bannedCount (): number {
    const now = this.now()
    let n = 0
    for (const until of this.bans.values()) if (until > now) n++
    return n
  }

  /** @internal */
  assertNotBanned (peer: string): void {
    if (this.isBanned(peer)) throw new PeerBannedError(peer, this.bans.get(peer) as number)
  }

  /** @internal a payment failure of `peer`; bans it after too many in a row. */
  recordFailure (peer: string): void {
    const n = (this.failures.get(peer) ?? 0) + 1
    this.failures.set(peer, n)
    if (n >= (this.init.banAfterFailures ?? DEFAULT_BAN_AFTER_FAILURES)) {
      this.bans.set(peer, this.now() + (this.init.banMs ?? DEFAULT_BAN_MS))
      this.failures.delete(peer)
    }
  }

  /** @internal */
  recordSuccess (peer: string): void {
    this.failures.delete(peer)
  }

  /** @internal accept a voucher on a channel: verify, persist, then report the new value. */
  async acceptOn (channelId: string, voucher: Voucher): Promise<bigint> {
    if (toHex(voucher.channelId) !== channelId) throw new WrongChannelError(`voucher is for channel ${toHex(voucher.channelId)}, this session pays on ${channelId}`)
    const apply = async (): Promise<ChannelEffect[]> => {
      const now = this.now()
      return await this.init.store.updateIncoming(channelId, cur => {
        if (cur === undefined) throw new UnknownChannelError(channelId)
        const t = reduce(cur, { type: 'voucher', voucher, now }, this.policy)
        return { state: t.state, result: t.effects }
      })
    }
    let effects: ChannelEffect[]
    try {
      effects = await apply()
    } catch (err) {
      // the payer may have topped up since we last asked the ledger: ask, then try once more
      if (!(err instanceof OverDepositError)) throw err
      await this.refresh(channelId)
      effects = await apply()
    }
    let credited = 0n
    for (const e of effects) {
      if (e.type === 'credit') credited += e.amount
      else this.init.onClaim?.(channelId, e.reason)
    }
    return credited
  }

  /** @internal */
  channel (channelId: string): IncomingChannel {
    const c = this.init.store.getIncoming(channelId)
    if (c === undefined) throw new UnknownChannelError(channelId)
    return c
  }

  get paymentTimeoutMs (): number { return this.init.paymentTimeoutMs ?? DEFAULT_PAYMENT_TIMEOUT_MS }
  get maxUnpaidUnits (): bigint { return BigInt(this.init.maxUnpaidUnits ?? DEFAULT_MAX_UNPAID_UNITS) }
}

/** One payer's metered use of a service on one channel. */
export class MeterSession {
  /** Aborted when the payer failed to pay in time or the session closed: stop delivering. */
  readonly signal: AbortSignal
  private readonly controller = new AbortController()
  private delivered = 0n
  private reserved = 0n
  private paid = 0n
  private waiters = new Set<() => void>()
  private closed = false
  private unitPrice: bigint

  constructor (private readonly meter: Meter, readonly init: SessionInit) {
    this.signal = this.controller.signal
    this.unitPrice = init.price
    if (init.owed !== undefined) {
      if (typeof init.owed !== 'bigint' || init.owed < 0n) throw new RangeError('owed must be a non-negative amount')
      this.delivered = init.owed
    }
  }

  /** Delivered and not yet paid, base units. */
  get unpaid (): bigint { return this.delivered > this.paid ? this.delivered - this.paid : 0n }

  /** Price per unit now, base units. */
  get price (): bigint { return this.unitPrice }

  /**
   * Change the price of units prepared from now on (a re-priced auction slot). What was delivered
   * and paid is kept in base units, so debt at the old price stays owed exactly.
   */
  reprice (price: bigint): void {
    if (typeof price !== 'bigint' || price <= 0n) throw new ChannelError('CHANNEL_BAD_PRICE', 'a session price must be a positive amount')
    this.unitPrice = price
  }

  /** Value delivered (applied) in this session, base units. */
  get owed (): bigint { return this.delivered }
  /** Value paid in this session, base units. */
  get credited (): bigint { return this.paid }

  /**
   * Reserve `units` for delivery. Waits until delivering them keeps the unpaid exposure within the
   * cap; rejects with PaymentTimeoutError (and aborts `signal`) if payment does not come in time,
   * DepositExhaustedError if the channel cannot cover them, PeerBannedError after repeated failures.
   */
  async prepare (units = 1): Promise<Debit> {
    if (!Number.isSafeInteger(units) || units < 1) throw new RangeError('units must be a positive integer')
    this.assertOpen()
    this.meter.assertNotBanned(this.init.peer)
    const price = this.unitPrice
    const cost = BigInt(units) * price
    const cap = (this.init.maxUnpaidUnits !== undefined ? BigInt(this.init.maxUnpaidUnits) : this.meter.maxUnpaidUnits) * price
    const exposure = (): bigint => this.delivered + this.reserved + cost - this.paid
    const usable = (): void => {
      try {
        // expiry and status are checked on every unit, not only at open
        this.meter.checkUsable(this.meter.channel(this.init.channelId))
      } catch (err) {
        this.controller.abort(err)
        throw err
      }
    }
    const fitsDeposit = (): boolean => {
      const c = this.meter.channel(this.init.channelId)
      return exposure() <= c.deposit - c.highest
    }
    usable()
    if (!fitsDeposit()) {
      // the payer may have topped up since we last asked the ledger
      await this.meter.refresh(this.init.channelId)
      if (!fitsDeposit()) {
        const c = this.meter.channel(this.init.channelId)
        throw new DepositExhaustedError(`channel ${this.init.channelId} has ${c.deposit - c.highest} base units left, ${exposure()} needed: top it up`)
      }
    }
    // check and reserve in one synchronous step, so concurrent prepares cannot both pass the cap
    const tryReserve = (): boolean => {
      if (exposure() > cap || !fitsDeposit()) return false
      this.reserved += cost
      return true
    }
    if (!tryReserve()) await this.waitForCredit(tryReserve)
    try {
      usable()
    } catch (err) {
      this.reserved -= cost
      throw err
    }
    let done = false
    return {
      apply: () => {
        if (done) return
        done = true
        this.reserved -= cost
        this.delivered += cost
      },
      cleanup: () => {
        if (done) return
        done = true
        this.reserved -= cost
        this.wake()
      }
    }
  }

  /** Accept a voucher (binary form or decoded) for this session's channel. Persisted before it returns. */
  async accept (voucher: Voucher | Uint8Array): Promise<{ credited: bigint }> {
    this.assertOpen()
    let credited: bigint
    try {
      credited = await this.meter.acceptOn(this.init.channelId, voucher instanceof Uint8Array ? decodeVoucher(voucher) : voucher)
    } catch (err) {
      this.meter.recordFailure(this.init.peer)
      throw err
    }
    this.paid += credited
    this.meter.recordSuccess(this.init.peer)
    this.wake()
    return { credited }
  }

  close (): void {
    if (this.closed) return
    this.closed = true
    this.controller.abort(new SessionClosedError())
    this.wake()
  }

  private assertOpen (): void {
    if (this.signal.aborted) throw this.signal.reason instanceof Error ? this.signal.reason : new SessionClosedError()
  }

  private wake (): void {
    for (const w of this.waiters) w()
  }

  private async waitForCredit (ready: () => boolean): Promise<void> {
    const timeoutMs = this.meter.paymentTimeoutMs
    await new Promise<void>((resolve, reject) => {
      const check = (): void => {
        if (this.signal.aborted) {
          finish()
          reject(this.signal.reason instanceof Error ? this.signal.reason : new SessionClosedError())
        } else if (ready()) {
          finish()
          resolve()
        }
      }
      const timer = setTimeout(() => {
        finish()
        const err = new PaymentTimeoutError(`no payment from ${this.init.peer} within ${timeoutMs} ms; stop delivering`)
        this.meter.recordFailure(this.init.peer)
        this.controller.abort(err)
        reject(err)
      }, timeoutMs)
      const finish = (): void => {
        clearTimeout(timer)
        this.waiters.delete(check)
      }
      this.waiters.add(check)
    })
  }
}
