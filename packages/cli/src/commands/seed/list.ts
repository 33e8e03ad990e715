import { BaseCommand } from '../../base.js'
import { btt, table } from '../../format.js'
import { bytes, percent, rate, type EarningsJson } from '../../seed-format.js'
import type { TorrentSummaryJson } from '../../seed-types.js'

/** A torrent with what paid seeding earned on it (base units, decimal string); absent when the node does not report earnings. */
type ListedTorrent = TorrentSummaryJson & { earned?: string }

export default class SeedList extends BaseCommand {
  static override description = 'List torrents: name, infohash, size, progress, rates, peers, uploaded, ratio, earned'
  static override enableJsonFlag = true

  async run (): Promise<{ torrents: ListedTorrent[] }> {
    const { flags } = await this.parse(SeedList)
    const client = await this.client(this.homeFrom(flags))
    // earnings are one more request; a node without the route (older) or failing it leaves them out
    const [res, earnings] = await Promise.all([
      client.serviceRequest<{ torrents: ListedTorrent[] }>('seeding', 'GET', '/torrents'),
      client.serviceRequest<EarningsJson>('seeding', 'GET', '/earnings').catch(() => undefined)
    ])
    if (earnings !== undefined) {
      const byHash = new Map(earnings.torrents.map(t => [t.infoHash, t.amount]))
      for (const t of res.torrents) t.earned = byHash.get(t.infoHash) ?? '0'
    }
    if (res.torrents.length === 0) {
      this.log('no torrents; add one with `btt-node seed add <path|.torrent|magnet>`')
      return res
    }
    this.log(table(['NAME', 'INFOHASH', 'SIZE', 'DONE', 'STATE', 'UP', 'DOWN', 'PEERS', 'UPLOADED', 'RATIO', 'EARNED'],
      res.torrents.map(t => [t.name.length > 40 ? t.name.slice(0, 39) + '…' : t.name, t.infoHash, bytes(t.size), percent(t.progress), t.state,
        rate(t.uploadRate), rate(t.downloadRate), String(t.peers), bytes(t.uploaded), t.ratio.toFixed(2), t.earned !== undefined ? btt(t.earned) : '-'])))
    return res
  }
}
