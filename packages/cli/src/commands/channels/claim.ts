import { Args } from '@oclif/core'
import { BaseCommand } from '../../base.js'
import { btt } from '../../format.js'

export default class ChannelsClaim extends BaseCommand {
  static override description = 'Claim now: present the highest voucher held to the ledger (the node also claims by itself)'
  static override enableJsonFlag = true
  static override args = { id: Args.string({ description: 'channel id (64 hex)', required: true }) }

  async run (): Promise<unknown> {
    const { args, flags } = await this.parse(ChannelsClaim)
    const r = await (await this.client(this.homeFrom(flags))).claimChannel(args.id)
    this.log(`claimed ${btt(r.paid)}; ${btt(r.channel.claimed)} claimed in total on ${args.id}`)
    return r
  }
}
