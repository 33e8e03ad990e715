import { BaseCommand } from '../../base.js'
import { table } from '../../format.js'
import { bytes, percent, rate } from '../../seed-format.js'
import type { TorrentSummaryJson } from '../../seed-types.js'

export default class SeedList extends BaseCommand {
  static override description = 'List torrents: name, infohash, size, progress, rates, peers, uploaded, ratio'
  static override enableJsonFlag = true

  async run (): Promise<{ torrents: TorrentSummaryJson[] }> {
    const { flags } = await this.parse(SeedList)
    const client = await this.client(this.homeFrom(flags))
    const res = await client.serviceRequest<{ torrents: TorrentSummaryJson[] }>('seeding', 'GET', '/torrents')
    if (res.torrents.length === 0) {
      this.log('no torrents; add one with `btt-node seed add <path|.torrent|magnet>`')
      return res
    }
    this.log(table(['NAME', 'INFOHASH', 'SIZE', 'DONE', 'STATE', 'UP', 'DOWN', 'PEERS', 'UPLOADED', 'RATIO'],
      res.torrents.map(t => [t.name.length > 40 ? t.name.slice(0, 39) + '…' : t.name, t.infoHash, bytes(t.size), percent(t.progress), t.state,
        rate(t.uploadRate), rate(t.downloadRate), String(t.peers), bytes(t.uploaded), t.ratio.toFixed(2)])))
    return res
  }
}
