import { homePaths, loadWallet, assertInitialised } from '@btt/node'
import { BaseCommand } from '../../base.js'

export default class WalletAddress extends BaseCommand {
  static override description = 'Print this node\'s wallet account (ed25519 public key, hex): what payers open channels to. Works with the node stopped.'
  static override enableJsonFlag = true

  async run (): Promise<{ account: string }> {
    const { flags } = await this.parse(WalletAddress)
    const home = this.homeFrom(flags)
    await assertInitialised(home)
    const account = Buffer.from((await loadWallet(homePaths(home))).publicKey).toString('hex')
    this.log(account)
    return { account }
  }
}
