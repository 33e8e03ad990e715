import type { ChannelDetailJson } from '@btt/node'
import { Args } from '@oclif/core'
import { BaseCommand } from '../../base.js'
import { btt } from '../../format.js'

export default class ChannelsShow extends BaseCommand {
  static override description = 'Show one channel as the ledger and this node see it'
  static override enableJsonFlag = true
  static override args = { id: Args.string({ description: 'channel id (64 hex)', required: true }) }

  async run (): Promise<ChannelDetailJson> {
    const { args, flags } = await this.parse(ChannelsShow)
    const d = await (await this.client(this.homeFrom(flags))).channel(args.id)
    const l = d.ledger
    this.log(`channel   ${l.id}`)
    this.log(`payer     ${l.payer}`)
    this.log(`payee     ${l.payee}`)
    this.log(`deposit   ${btt(l.deposit)}`)
    this.log(`claimed   ${btt(l.claimed)}`)
    this.log(`status    ${l.status}${l.challengeEndsAt !== null ? ` (challenge window ends ${new Date(l.challengeEndsAt).toISOString()})` : ''}`)
    this.log(`expires   ${new Date(l.expiresAt).toISOString()}`)
    if (d.incoming !== null) this.log(`received  ${btt(d.incoming.received)} (highest voucher held by this node)`)
    if (d.outgoing !== null) this.log(`spent     ${btt(d.outgoing.spent)} (highest voucher this node signed)`)
    return d
  }
}
