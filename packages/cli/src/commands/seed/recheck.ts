import { Args } from '@oclif/core'
import { BaseCommand } from '../../base.js'
import { INFOHASH } from '../../seed-format.js'
import type { TorrentDetailJson } from '../../seed-types.js'

export default class SeedRecheck extends BaseCommand {
  static override description = 'Re-hash a torrent\'s files on disk and seed (or download) what is valid'
  static override enableJsonFlag = true

  static override args = {
    infohash: Args.string({ description: '40 hex digits', required: true })
  }

  async run (): Promise<TorrentDetailJson> {
    const { args, flags } = await this.parse(SeedRecheck)
    if (!INFOHASH.test(args.infohash)) this.error(`"${args.infohash}" is not an infohash (40 hex digits)`, { exit: 2 })
    const client = await this.client(this.homeFrom(flags))
    const { torrent } = await client.serviceRequest<{ torrent: TorrentDetailJson }>('seeding', 'POST', `/torrents/${args.infohash.toLowerCase()}/recheck`)
    this.log(`rechecking ${torrent.name}; follow it with \`btt-node seed show ${torrent.infoHash}\``)
    return torrent
  }
}
