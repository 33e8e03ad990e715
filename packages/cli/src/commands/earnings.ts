import { Flags } from '@oclif/core'
import { BaseCommand } from '../base.js'
import { btt, table } from '../format.js'
import { bytes, INFOHASH, shortHash, type EarningsJson, type TorrentEarningsJson } from '../seed-format.js'
import type { TorrentDetailJson } from '../seed-types.js'

export default class Earnings extends BaseCommand {
  static override description = 'What paid seeding (BitTorrent Speed) earned: the total, per torrent, and with --torrent per payer'
  static override enableJsonFlag = true
  static override examples = [
    '<%= config.bin %> earnings',
    '<%= config.bin %> earnings --torrent 0123456789abcdef0123456789abcdef01234567',
    '<%= config.bin %> earnings --json'
  ]

  static override flags = {
    torrent: Flags.string({ description: 'one torrent (40 hex digits): its payers; --json prints that torrent\'s entry' })
  }

  async run (): Promise<EarningsJson | TorrentEarningsJson> {
    const { flags } = await this.parse(Earnings)
    if (flags.torrent !== undefined && !INFOHASH.test(flags.torrent)) this.error(`--torrent "${flags.torrent}" is not an infohash (40 hex digits)`, { exit: 2 })
    const client = await this.client(this.homeFrom(flags))
    const report = await client.serviceRequest<EarningsJson>('seeding', 'GET', '/earnings')

    if (flags.torrent !== undefined) {
      const ih = flags.torrent.toLowerCase()
      let t = report.torrents.find(x => x.infoHash === ih)
      if (t === undefined) {
        // nothing earned on it: say so if the node knows the torrent (else SEEDING_NOT_FOUND)
        const { torrent } = await client.serviceRequest<{ torrent: TorrentDetailJson }>('seeding', 'GET', `/torrents/${ih}`)
        t = { infoHash: ih, name: torrent.name, amount: '0', bytes: 0, payers: [] }
      }
      this.log(`${t.name !== '' ? t.name : '(removed)'}  ${t.infoHash}`)
      this.log(`earned ${btt(t.amount)} for ${bytes(t.bytes)} served to ${t.payers.length} payer(s)`)
      if (t.payers.length > 0) {
        this.log(table(['PAYER', 'EARNED', 'SERVED', 'LAST PAID'],
          t.payers.map(p => [p.payer, btt(p.amount), bytes(p.bytes), new Date(p.updatedAt).toISOString().replace(/\.\d+Z$/, 'Z')])))
      }
      return t
    }

    this.log(`earned ${btt(report.total)} in total`)
    if (report.torrents.length === 0) {
      const status = await client.serviceRequest<{ paid?: unknown }>('seeding', 'GET', '/status').catch(() => undefined)
      this.log(status?.paid === false
        ? 'paid seeding is off on this node: set services.seeding.paid_slots above 0 (`btt-node config set services.seeding.paid_slots 4`) and restart it'
        : 'no torrent has earned anything yet')
      return report
    }
    this.log(table(['NAME', 'INFOHASH', 'EARNED', 'SERVED', 'PAYERS'],
      report.torrents.map(t => [name(t.name), shortHash(t.infoHash), btt(t.amount), bytes(t.bytes), String(t.payers.length)])))
    return report
  }
}

function name (n: string): string {
  if (n === '') return '(removed)'
  return n.length > 40 ? n.slice(0, 39) + '…' : n
}
