import { toHex } from './crypto.js'
import { OverDepositError, UnknownChannelError, InvalidAmountError } from './errors.js'
import type { KeyPair } from './crypto.js'
import type { LedgerChannel, LedgerClient } from './ledger-api.js'
import type { ChannelStore, OutgoingChannel } from './store.js'
import { signVoucher, type Voucher } from './voucher.js'

export interface PayerInit {
  store: ChannelStore
  ledger: LedgerClient
  /** The wallet key: signs vouchers. */
  keyPair: KeyPair
}

/**
 * The paying side. `pay` raises the channel's cumulative amount durably, then signs a voucher for
 * it: after a crash the payer never signs less than it already gave away, and never more than the
 * deposit.
 */
export class Payer {
  constructor (private readonly init: PayerInit) {}

  get account (): string { return toHex(this.init.keyPair.publicKey) }

  async open (req: { payee: string, deposit: bigint, expiresAt: number }): Promise<OutgoingChannel> {
    const channel = await this.init.ledger.open(req)
    return await this.remember(channel)
  }

  /** Pay `amount` more on a channel: returns the voucher for the new cumulative total. */
  async pay (channelId: string, amount: bigint): Promise<Voucher> {
    if (typeof amount !== 'bigint' || amount <= 0n) throw new InvalidAmountError('a payment must be a positive amount')
    const channel = await this.init.store.updateOutgoing(channelId, cur => {
      if (cur === undefined) throw new UnknownChannelError(channelId)
      const spent = cur.spent + amount
      if (spent > cur.deposit) throw new OverDepositError(`paying ${amount} would take channel ${channelId} to ${spent}, above its deposit ${cur.deposit}`)
      const state = { ...cur, spent }
      return { state, result: state }
    })
    return this.voucherOf(channel)
  }

  /**
   * The voucher for what has been paid so far (to re-send after a reconnect). It resolves once that
   * amount is durable: a rewrite of the same record commits after every write queued before it.
   */
  async latestVoucher (channelId: string): Promise<Voucher> {
    const channel = await this.init.store.updateOutgoing(channelId, cur => {
      if (cur === undefined) throw new UnknownChannelError(channelId)
      return { state: cur, result: cur }
    })
    return this.voucherOf(channel)
  }

  channel (channelId: string): OutgoingChannel | undefined {
    return this.init.store.getOutgoing(channelId)
  }

  list (): OutgoingChannel[] {
    return this.init.store.listOutgoing()
  }

  async topup (channelId: string, amount: bigint): Promise<OutgoingChannel> {
    return await this.remember(await this.init.ledger.topup({ channelId, amount }))
  }

  async extend (channelId: string, expiresAt: number): Promise<OutgoingChannel> {
    return await this.remember(await this.init.ledger.extend({ channelId, expiresAt }))
  }

  async refund (channelId: string): Promise<OutgoingChannel> {
    return await this.remember(await this.init.ledger.refund({ channelId }))
  }

  async finalize (channelId: string): Promise<{ channel: OutgoingChannel, refunded: bigint }> {
    const { channel, refunded } = await this.init.ledger.finalize({ channelId })
    return { channel: await this.remember(channel), refunded }
  }

  /** Record the ledger's view of an outgoing channel, keeping what we have signed. */
  async remember (c: LedgerChannel): Promise<OutgoingChannel> {
    return await this.init.store.updateOutgoing(c.id, cur => {
      const state: OutgoingChannel = {
        id: c.id,
        ledgerId: c.ledgerId,
        payer: c.payer,
        payee: c.payee,
        deposit: c.deposit,
        expiresAt: c.expiresAt,
        status: c.status,
        spent: cur === undefined ? c.claimed : (cur.spent > c.claimed ? cur.spent : c.claimed)
      }
      return { state, result: state }
    })
  }

  private voucherOf (c: OutgoingChannel): Voucher {
    return signVoucher({ ledgerId: Buffer.from(c.ledgerId, 'hex'), channelId: Buffer.from(c.id, 'hex'), amount: c.spent }, this.init.keyPair.secretKey)
  }
}
