import { mkdir } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { Flags } from '@oclif/core'
import { BaseCommand } from '../../base.js'
import { parseDuration } from '../../format.js'

export default class LedgerServe extends BaseCommand {
  static override description = 'Run a settlement ledger server shared by many nodes (set their ledger.url to its URL)'
  static override examples = ['<%= config.bin %> ledger serve --db /var/lib/btt-ledger/ledger.db --port 7080', '<%= config.bin %> ledger serve --dev --port 0 --db /tmp/dev-ledger.db']
  static override flags = {
    db: Flags.string({ description: 'ledger database file [default: <home>/data/ledger-server.db]' }),
    host: Flags.string({ description: 'address to bind', default: '127.0.0.1' }),
    port: Flags.integer({ description: 'port to bind (0: any free port)', default: 7080, min: 0, max: 65535 }),
    dev: Flags.boolean({ description: 'enable the faucet that mints test BTT; never on a ledger holding real value' }),
    'challenge-window': Flags.string({ description: 'refund challenge window: 30s, 10m, 1h, 1d', default: '1h' })
  }

  async run (): Promise<void> {
    const { flags } = await this.parse(LedgerServe)
    const { startLedgerServer } = await import('@btt/ledger')
    let challengeWindowMs: number
    try {
      challengeWindowMs = parseDuration(flags['challenge-window'])
    } catch (err) {
      this.error((err as Error).message, { exit: 2 })
    }
    const dbPath = resolve(flags.db ?? `${this.homeFrom(flags)}/data/ledger-server.db`)
    await mkdir(dirname(dbPath), { recursive: true, mode: 0o700 })
    const server = await startLedgerServer({ dbPath, host: flags.host, port: flags.port, dev: flags.dev, challengeWindowMs })
    this.log(`ledger ${server.ledger.info().ledgerId} listening on ${server.url} (db ${dbPath}${flags.dev ? ', DEV faucet enabled' : ''})`)
    await this.serveUntilSignal(async () => { await server.close() })
  }
}
