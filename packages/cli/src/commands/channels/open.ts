import { parseBtt } from '@btt/channel'
import type { OutgoingChannelJson } from '@btt/node'
import { Flags } from '@oclif/core'
import { BaseCommand } from '../../base.js'
import { btt, parseDuration } from '../../format.js'

export default class ChannelsOpen extends BaseCommand {
  static override description = 'Open a payment channel to a provider: locks the deposit from the wallet on the ledger'
  static override enableJsonFlag = true
  static override examples = ['<%= config.bin %> channels open --payee 3b6a…e1 --deposit 5 --expires 7d']
  static override flags = {
    payee: Flags.string({ description: 'the provider\'s wallet account (64 hex)', required: true }),
    deposit: Flags.string({ description: 'BTT to lock, e.g. 5 or 0.25', required: true }),
    expires: Flags.string({ description: 'lifetime: 30m, 12h, 7d, 2w', default: '7d' })
  }

  async run (): Promise<OutgoingChannelJson> {
    const { flags } = await this.parse(ChannelsOpen)
    if (!/^[0-9a-f]{64}$/.test(flags.payee)) this.error('--payee must be 64 lower-case hex characters (the provider\'s `btt-node wallet address`)', { exit: 2 })
    let expiresIn: number
    try {
      expiresIn = parseDuration(flags.expires)
    } catch (err) {
      this.error((err as Error).message, { exit: 2 })
    }
    const channel = await (await this.client(this.homeFrom(flags))).openChannel({ payee: flags.payee, deposit: parseBtt(flags.deposit), expiresAt: Date.now() + expiresIn })
    this.log(`opened channel ${channel.id}: ${btt(channel.deposit)} to ${channel.payee}, expires ${new Date(channel.expiresAt).toISOString()}`)
    return channel
  }
}
