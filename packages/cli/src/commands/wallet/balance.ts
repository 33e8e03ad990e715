import type { WalletJson } from '@btt/node'
import { BaseCommand } from '../../base.js'
import { btt } from '../../format.js'

export default class WalletBalance extends BaseCommand {
  static override description = 'Show the wallet\'s balance on the node\'s ledger'
  static override enableJsonFlag = true

  async run (): Promise<WalletJson> {
    const { flags } = await this.parse(WalletBalance)
    const wallet = await (await this.client(this.homeFrom(flags))).wallet()
    this.log(`${btt(wallet.balance)}  (account ${wallet.account}, ledger ${wallet.ledger.location} ${wallet.ledger.ledgerId})`)
    return wallet
  }
}
