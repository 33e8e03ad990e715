import { Args } from '@oclif/core'
import { BaseCommand } from '../../base.js'
import { table } from '../../format.js'
import { bytes, INFOHASH, percent, rate } from '../../seed-format.js'
import type { TorrentDetailJson } from '../../seed-types.js'

export default class SeedShow extends BaseCommand {
  static override description = 'Show one torrent: files, trackers, peers'
  static override enableJsonFlag = true

  static override args = {
    infohash: Args.string({ description: '40 hex digits', required: true })
  }

  async run (): Promise<TorrentDetailJson> {
    const { args, flags } = await this.parse(SeedShow)
    if (!INFOHASH.test(args.infohash)) this.error(`"${args.infohash}" is not an infohash (40 hex digits)`, { exit: 2 })
    const client = await this.client(this.homeFrom(flags))
    const { torrent: t } = await client.serviceRequest<{ torrent: TorrentDetailJson }>('seeding', 'GET', `/torrents/${args.infohash.toLowerCase()}`)
    this.log(`${t.name}`)
    this.log(`  infohash   ${t.infoHash}`)
    this.log(`  state      ${t.state}${t.error !== undefined ? ` (${t.error})` : ''}${t.checkProgress !== undefined ? ` ${percent(t.checkProgress)}` : ''}`)
    this.log(`  size       ${bytes(t.size)} in ${t.files.length} file(s), ${t.pieceCount} pieces of ${bytes(t.pieceLength)}${t.private ? ', private' : ''}`)
    this.log(`  progress   ${percent(t.progress)} (${t.piecesHave}/${t.pieceCount} pieces)`)
    this.log(`  transfer   up ${rate(t.uploadRate)}, down ${rate(t.downloadRate)}; uploaded ${bytes(t.uploaded)}, downloaded ${bytes(t.downloaded)}, ratio ${t.ratio.toFixed(2)}`)
    this.log(`  save path  ${t.savePath}`)
    if (t.torrentFile !== undefined) this.log(`  .torrent   ${t.torrentFile}`)
    this.log(`  magnet     ${t.magnet}`)
    this.log('files')
    this.log(table(['PATH', 'SIZE'], t.files.map(f => [f.path, bytes(f.length)])).replace(/^/gm, '  '))
    this.log('trackers')
    this.log(t.trackers.length === 0 ? '  none' : table(['TIER', 'URL', 'STATUS', 'PEERS'], t.trackers.map(x => [String(x.tier), x.url, x.error !== undefined ? `${x.status}: ${x.error}` : x.status, String(x.peers)])).replace(/^/gm, '  '))
    this.log('peers')
    this.log(t.peerList.length === 0 ? '  none' : table(['ADDRESS', 'CLIENT', 'HAS', 'UP', 'DOWN', 'FLAGS'], t.peerList.map(p => [p.address, p.client ?? '', percent(p.progress), rate(p.uploadRate), rate(p.downloadRate),
      `${p.incoming ? 'in' : 'out'}${p.choked ? ' choked' : ''}${p.interested ? ' interested' : ''}`])).replace(/^/gm, '  '))
    return t
  }
}
