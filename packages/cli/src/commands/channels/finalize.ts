import { Args } from '@oclif/core'
import { BaseCommand } from '../../base.js'
import { btt } from '../../format.js'

export default class ChannelsFinalize extends BaseCommand {
  static override description = 'Finish a refund after its challenge window: the unspent deposit returns to the wallet'
  static override enableJsonFlag = true
  static override args = { id: Args.string({ description: 'channel id (64 hex)', required: true }) }

  async run (): Promise<unknown> {
    const { args, flags } = await this.parse(ChannelsFinalize)
    const r = await (await this.client(this.homeFrom(flags))).finalizeChannel(args.id)
    this.log(`refunded ${btt(r.refunded)}; channel ${args.id} is finalized`)
    return r
  }
}
