import { DEFAULT_CLAIM_POLL_MS } from './constants.js'
import type { LedgerClient } from './ledger-api.js'
import { claimReason, reduce, type ClaimPolicy } from './state.js'
import type { ChannelStore } from './store.js'
import { decodeVoucher } from './voucher.js'

export interface ClaimerInit {
  store: ChannelStore
  ledger: Pick<LedgerClient, 'channel' | 'claim'>
  policy: ClaimPolicy
  pollMs?: number
  now?: () => number
  /** A claim or a refresh failed (logged by the node; retried at the next poll). */
  onError?: (err: unknown, channelId: string) => void
}

/**
 * Claims for the payee: when unclaimed value passes the threshold, before expiry minus the safety
 * margin, and at once when the ledger shows a refund started on one of our channels (the challenge
 * window is when a newer voucher still wins).
 */
export class Claimer {
  private timer: NodeJS.Timeout | undefined
  private readonly inFlight = new Map<string, Promise<bigint>>()
  private readonly now: () => number

  constructor (private readonly init: ClaimerInit) {
    this.now = init.now ?? Date.now
  }

  start (): void {
    if (this.timer !== undefined) return
    this.timer = setInterval(() => { void this.poll() }, this.init.pollMs ?? DEFAULT_CLAIM_POLL_MS)
    this.timer.unref()
    void this.poll()
  }

  async stop (): Promise<void> {
    clearInterval(this.timer)
    this.timer = undefined
    await Promise.allSettled(this.inFlight.values())
  }

  /** Present the highest voucher of a channel now. Resolves to what the ledger paid (0n if nothing new). */
  async claim (channelId: string): Promise<bigint> {
    const running = this.inFlight.get(channelId)
    if (running !== undefined) return await running
    const p = this.doClaim(channelId).finally(() => this.inFlight.delete(channelId))
    this.inFlight.set(channelId, p)
    return await p
  }

  /** Ask for a claim soon (from the Meter's state-machine effects); errors go to onError. */
  request (channelId: string): void {
    this.claim(channelId).catch((err: unknown) => this.init.onError?.(err, channelId))
  }

  /** One pass: refresh every live channel holding unclaimed value from the ledger and claim where the policy says. */
  async poll (): Promise<void> {
    for (const c of this.init.store.listIncoming()) {
      if (c.status === 'finalized' || c.voucher === null || c.highest <= c.claimed) continue
      try {
        const remote = await this.init.ledger.channel(c.id)
        const now = this.now()
        const next = await this.init.store.updateIncoming(c.id, cur => {
          const t = reduce(cur ?? c, { type: 'ledger', channel: remote, now }, this.init.policy)
          return { state: t.state, result: t.state }
        })
        if (claimReason(next, this.init.policy, now) !== undefined) await this.claim(c.id)
      } catch (err) {
        this.init.onError?.(err, c.id)
      }
    }
  }

  private async doClaim (channelId: string): Promise<bigint> {
    const c = this.init.store.getIncoming(channelId)
    if (c === undefined || c.voucher === null || c.highest <= c.claimed || c.status === 'finalized') return 0n
    const { channel, paid } = await this.init.ledger.claim(decodeVoucher(c.voucher))
    const now = this.now()
    await this.init.store.updateIncoming(channelId, cur => ({ state: reduce(cur ?? c, { type: 'ledger', channel, now }, this.init.policy).state, result: undefined }))
    return paid
  }
}
