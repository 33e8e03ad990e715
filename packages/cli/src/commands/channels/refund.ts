import { Args } from '@oclif/core'
import { BaseCommand } from '../../base.js'

export default class ChannelsRefund extends BaseCommand {
  static override description = 'Start the refund of an expired channel we pay into; the challenge window opens'
  static override enableJsonFlag = true
  static override args = { id: Args.string({ description: 'channel id (64 hex)', required: true }) }

  async run (): Promise<unknown> {
    const { args, flags } = await this.parse(ChannelsRefund)
    const r = await (await this.client(this.homeFrom(flags))).refundChannel(args.id)
    this.log(`refund started on ${r.id}; finalize after the challenge window to get the rest back`)
    return r
  }
}
