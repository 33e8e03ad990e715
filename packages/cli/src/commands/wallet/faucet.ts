import { parseBtt } from '@btt/channel'
import { Args } from '@oclif/core'
import { BaseCommand } from '../../base.js'
import { btt } from '../../format.js'

export default class WalletFaucet extends BaseCommand {
  static override description = 'Mint test BTT into the wallet (only on a ledger running in dev mode)'
  static override enableJsonFlag = true
  static override args = { amount: Args.string({ description: 'BTT, e.g. 10 or 0.5', required: true }) }

  async run (): Promise<{ balance: string }> {
    const { args, flags } = await this.parse(WalletFaucet)
    const amount = parseBtt(args.amount)
    const result = await (await this.client(this.homeFrom(flags))).faucet(amount)
    this.log(`minted ${btt(amount)}; balance ${btt(result.balance)}`)
    return result
  }
}
