import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { Args, Flags } from '@oclif/core'
import { BaseCommand } from '../../base.js'
import { bytes } from '../../seed-format.js'
import type { TorrentDetailJson } from '../../seed-types.js'

export default class SeedAdd extends BaseCommand {
  static override description = 'Add a torrent to the running node: a file or folder to seed (creates the .torrent), a .torrent file, or a magnet link'
  static override enableJsonFlag = true
  static override examples = [
    '<%= config.bin %> seed add ./my-folder --tracker udp://tracker.example:6969/announce',
    '<%= config.bin %> seed add ./ubuntu.iso.torrent --save-path /srv/torrents',
    '<%= config.bin %> seed add "magnet:?xt=urn:btih:..."'
  ]

  static override args = {
    source: Args.string({ description: 'a path to a file or folder, a .torrent file, or a magnet: link', required: true })
  }

  static override flags = {
    tracker: Flags.string({ description: 'tracker announce URL (http, https or udp); repeatable', multiple: true }),
    'piece-length': Flags.integer({ description: 'piece length in bytes when creating a torrent (a multiple of 16384; default: automatic)', min: 16384 }),
    private: Flags.boolean({ description: 'mark a created torrent private (BEP 27: trackers only, no DHT or PEX)', default: false }),
    'save-path': Flags.string({ description: 'where a .torrent or magnet download is saved (default: the node\'s download_dir)' }),
    paused: Flags.boolean({ description: 'add without starting', default: false })
  }

  async run (): Promise<TorrentDetailJson> {
    const { args, flags } = await this.parse(SeedAdd)
    const src = args.source
    const body: Record<string, unknown> = {}
    if (src.startsWith('magnet:')) {
      body.magnet = src
    } else {
      const path = resolve(src)
      if (!existsSync(path)) this.error(`${src}: no such file or folder`, { exit: 2 })
      if (path.endsWith('.torrent')) body.torrent_path = path
      else body.path = path
    }
    if (body.path === undefined && (flags['piece-length'] !== undefined || flags.private)) {
      this.error('--piece-length and --private apply only when creating a torrent from a file or folder', { exit: 2 })
    }
    if (flags.tracker !== undefined) body.trackers = flags.tracker
    if (flags['piece-length'] !== undefined) body.piece_length = flags['piece-length']
    if (flags.private) body.private = true
    if (flags['save-path'] !== undefined) body.save_path = resolve(flags['save-path'])
    if (flags.paused) body.paused = true
    // hashing a large folder happens in the node: allow it time
    const client = await this.client(this.homeFrom(flags), { timeoutMs: 3_600_000 })
    const { torrent } = await client.serviceRequest<{ torrent: TorrentDetailJson }>('seeding', 'POST', '/torrents', body)
    this.log(`added ${torrent.name} (${bytes(torrent.size)}), ${torrent.state}`)
    this.log(`infohash  ${torrent.infoHash}`)
    this.log(`magnet    ${torrent.magnet}`)
    if (torrent.torrentFile !== undefined) this.log(`torrent   ${torrent.torrentFile}`)
    return torrent
  }
}
