import { initHome, type InitResult } from '@btt/node'
import { BaseCommand } from '../base.js'

export default class Init extends BaseCommand {
  static override description = 'Create a node home: config.toml with the defaults, an identity key, a separate wallet key and an admin API token (all 0600)'
  static override enableJsonFlag = true
  static override examples = ['<%= config.bin %> init', '<%= config.bin %> init --home /var/lib/btt-node']

  async run (): Promise<InitResult> {
    const { flags } = await this.parse(Init)
    const result = await initHome(this.homeFrom(flags))
    this.log(`initialised ${result.home}`)
    this.log(`  peer id         ${result.peerId}`)
    this.log(`  wallet key      ${result.walletPublicKey}`)
    this.log(`  config          ${result.config}`)
    this.log(`  admin API token ${result.apiToken}`)
    this.log('Back up the keys/ directory: a lost wallet key is lost money. Start the node with `btt-node start`.')
    return result
  }
}
