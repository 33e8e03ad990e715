import { BaseCommand } from '../../../base.js'
import { table } from '../../../format.js'

interface AutopilotStatusJson {
  enabled: boolean
  trackers?: string[]
  intervalSeconds?: number
  lastRunAt?: number
  nextRunAt?: number
  decisions?: Array<{ infoHash: string, action: 'add' | 'keep' | 'drop' | 'skip', code: string, score?: string, reason: string }>
  errors?: Array<{ tracker: string, error: string }>
  torrents?: Array<{ infoHash: string, addedAt: number, tracker: string, reason: string }>
}

const when = (ms: number): string => new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z')

export default class SeedAutopilotStatus extends BaseCommand {
  static override description = 'What the seeding autopilot decided in its last round, and why: every torrent it fetched, kept, dropped or passed over'
  static override enableJsonFlag = true
  static override examples = ['<%= config.bin %> seed autopilot status', '<%= config.bin %> seed autopilot status --json']

  async run (): Promise<AutopilotStatusJson> {
    const { flags } = await this.parse(SeedAutopilotStatus)
    const client = await this.client(this.homeFrom(flags))
    const s = await client.serviceRequest<AutopilotStatusJson>('seeding', 'GET', '/autopilot')
    if (!s.enabled) {
      this.log('the autopilot is off: set services.seeding.autopilot = true and services.seeding.autopilot_trackers, then restart the node')
      return s
    }
    this.log(`autopilot on: ${s.trackers?.join(', ')} every ${s.intervalSeconds} s; ${s.torrents?.length ?? 0} torrent(s) of its own`)
    this.log(s.lastRunAt === undefined ? 'no round yet' : `last round ${when(s.lastRunAt)}${s.nextRunAt !== undefined ? `, next ${when(s.nextRunAt)}` : ''}`)
    for (const e of s.errors ?? []) this.warn(`${e.tracker !== '' ? `${e.tracker}: ` : ''}${e.error}`)
    const own = s.torrents ?? []
    if (own.length > 0) {
      this.log('its torrents, and why it took them:')
      this.log(table(['INFOHASH', 'ADDED', 'WHY'], own.map(t => [t.infoHash, when(t.addedAt), t.reason])))
    }
    const decisions = s.decisions ?? []
    if (decisions.length > 0) this.log('last round:')
    if (decisions.length > 0) {
      this.log(table(['INFOHASH', 'ACTION', 'WHY'], decisions.map(d => [d.infoHash, d.action.toUpperCase(), d.reason])))
    }
    return s
  }
}
