import { runDoctor, type DoctorReport } from '@btt/node'
import { bidScrape, bidScrapeUrl } from '@btt/tracker'
import { Flags } from '@oclif/core'
import { BaseCommand } from '../base.js'
import { SERVICES } from '../composition.js'
import { table } from '../format.js'

export default class Doctor extends BaseCommand {
  static override description = 'Check this node: config, key permissions, ports, disk against quotas, clock against the ledger, ledger, trackers, DHT and admin API; say what to fix'
  static override enableJsonFlag = true
  static override examples = ['<%= config.bin %> doctor', '<%= config.bin %> doctor --json']
  static override flags = {
    timeout: Flags.integer({ description: 'seconds each check may take', default: 8, min: 1, max: 120 })
  }

  async run (): Promise<DoctorReport> {
    const { flags } = await this.parse(Doctor)
    const report = await runDoctor(this.homeFrom(flags), {
      services: SERVICES,
      env: process.env,
      checkTimeoutMs: flags.timeout * 1000,
      // the autopilot bid-scrapes its trackers: probe them the same way, with the same client
      trackerProbe: async (url, signal) => {
        const page = await bidScrape(bidScrapeUrl(url), { limit: 1 }, { signal })
        return `bid-scrape, ${page.files.length > 0 ? 'bids listed' : 'no bids yet'}`
      }
    })
    if (!this.jsonEnabled()) {
      this.log(table(['CHECK', 'STATUS', 'DETAIL', 'FIX'], report.checks.map(c => [c.id, c.status, c.detail.replaceAll('\n', ' '), c.fix || '-'])))
      const counts = ['fail', 'warn'].map(s => `${report.checks.filter(c => c.status === s).length} ${s}`).join(', ')
      this.log('')
      this.log(report.ok ? `ok (${counts})` : `problems found (${counts}): see FIX`)
    }
    // exit 1 when a check fails; not this.exit(), which throws before oclif prints the --json report
    if (!report.ok) process.exitCode = 1
    return report
  }
}
