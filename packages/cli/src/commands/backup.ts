import { backupHome, type BackupResult } from '@btt/node'
import { Args, Flags } from '@oclif/core'
import { BaseCommand } from '../base.js'
import { PhasedProgress } from '../progress.js'
import { bytes } from '../seed-format.js'

export default class Backup extends BaseCommand {
  static override description = `Write one file holding everything this node needs to come back: its keys, config.toml, api.token, the channel and storage databases (vouchers, contracts) and stored blobs. Works while the node runs (databases are read through SQLite's online backup API, consistently).

The file holds the node's PRIVATE identity and wallet keys (a wallet key is money): it is written mode 0600; keep it like the keys themselves (encrypt it before it leaves the machine). Restore it with \`btt-node restore\`.`

  static override enableJsonFlag = true
  static override examples = [
    '<%= config.bin %> backup /var/backups/btt-node-$(date +%F).tar',
    '<%= config.bin %> backup ./node.tar --home /var/lib/btt-node --force'
  ]

  static override args = { file: Args.string({ description: 'the backup file to write (a tar archive)', required: true }) }
  static override flags = {
    force: Flags.boolean({ description: 'replace the file if it exists', default: false })
  }

  async run (): Promise<BackupResult> {
    const { args, flags } = await this.parse(Backup)
    const bars = new PhasedProgress(!this.jsonEnabled())
    const result = await backupHome({ home: this.homeFrom(flags), file: args.file, force: flags.force, onProgress: p => { bars.update(p) } })
    bars.done()
    if (!this.jsonEnabled()) {
      const dbs = result.manifest.files.filter(f => f.sqlite).length
      this.log(`backed up ${result.manifest.files.length} files (${dbs} databases) to ${result.file} (${bytes(result.size)}, mode 0600)`)
      this.log(`  peer id    ${result.manifest.peerId}`)
      this.log(`  wallet     ${result.manifest.walletPublicKey}`)
      this.log(`  taken      ${result.manifest.created}${result.nodeRunning ? ' (node running)' : ''}`)
      if (result.skipped.length > 0) this.warn(`left out (not regular files): ${result.skipped.join(', ')}`)
      this.log('It holds the private keys: keep it as safe as keys/.')
    }
    return result
  }
}
