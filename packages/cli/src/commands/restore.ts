import { restoreHome, verifyBackup, type BackupManifest, type RestoreResult } from '@btt/node'
import { Args, Flags } from '@oclif/core'
import { BaseCommand } from '../base.js'
import { bytes } from '../seed-format.js'
import { PhasedProgress } from '../progress.js'

export default class Restore extends BaseCommand {
  static override description = `Restore a node home from a \`btt-node backup\` file: same identity, wallet, channels and storage contracts.

Every file is checked against the backup's sha256 manifest before anything is written; a corrupt or foreign file restores nothing. Refuses while a node runs on the home, and refuses an initialised or non-empty home unless --force (which moves its current contents aside into <home>/.pre-restore-<time>/, never deletes them). Keys are written 0600, the home 0700.

Restoring an older backup rolls channels back: vouchers signed after it are unknown to the restored node; see docs/backup.md.`

  static override enableJsonFlag = true
  static override examples = [
    '<%= config.bin %> restore /var/backups/btt-node-2025-01-31.tar --home /var/lib/btt-node',
    '<%= config.bin %> restore ./node.tar --check'
  ]

  static override args = { file: Args.string({ description: 'the backup file to restore', required: true }) }
  static override flags = {
    force: Flags.boolean({ description: 'restore into an initialised or non-empty home, moving its contents aside first', default: false }),
    check: Flags.boolean({ description: 'only verify the file (manifest, every sha256, keys); write nothing', default: false })
  }

  async run (): Promise<RestoreResult | { manifest: BackupManifest }> {
    const { args, flags } = await this.parse(Restore)
    const bars = new PhasedProgress(!this.jsonEnabled())
    if (flags.check) {
      const manifest = await verifyBackup(args.file, p => { bars.update(p) })
      bars.done()
      if (!this.jsonEnabled()) {
        this.log(`${args.file} is a complete btt-node backup: ${manifest.files.length} files, ${bytes(manifest.files.reduce((a, f) => a + f.size, 0))}, every sha256 matches`)
        this.printManifest(manifest)
      }
      return { manifest }
    }
    const result = await restoreHome({ home: this.homeFrom(flags), file: args.file, force: flags.force, onProgress: p => { bars.update(p) } })
    bars.done()
    if (!this.jsonEnabled()) {
      this.log(`restored ${result.manifest.files.length} files into ${result.home}`)
      this.printManifest(result.manifest)
      if (result.previous !== undefined) this.log(`The previous contents of the home (keys included) are in ${result.previous}; delete them once the restored node works.`)
      this.log('Start the node with `btt-node start`.')
    }
    return result
  }

  private printManifest (m: BackupManifest): void {
    this.log(`  peer id    ${m.peerId}`)
    this.log(`  wallet     ${m.walletPublicKey}`)
    this.log(`  taken      ${m.created} by btt-node ${m.nodeVersion}`)
  }
}
