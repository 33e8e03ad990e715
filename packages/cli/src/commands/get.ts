import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { existsSync, readFileSync } from 'node:fs'
import { Args, Flags } from '@oclif/core'
import { Engine, engineOptions, seedingConfig, type TorrentDetail } from '@btt/service-seeding'
import { pino } from 'pino'
import { BaseCommand } from '../base.js'
import { bar, bytes, percent, rate } from '../seed-format.js'

export default class Get extends BaseCommand {
  static override description = 'Download a torrent (magnet link or .torrent file) into a folder, as a requester; runs its own BitTorrent engine and exits when done'
  static override enableJsonFlag = true
  static override examples = [
    '<%= config.bin %> get "magnet:?xt=urn:btih:...&tr=udp://tracker.example:6969/announce" --out ./downloads',
    '<%= config.bin %> get ./file.torrent --out ./downloads --no-dht --peer 127.0.0.1:6881'
  ]

  static override args = {
    source: Args.string({ description: 'a magnet: link or a .torrent file', required: true })
  }

  static override flags = {
    out: Flags.string({ char: 'o', description: 'folder to download into', required: true }),
    tracker: Flags.string({ description: 'extra tracker announce URL; repeatable', multiple: true }),
    peer: Flags.string({ description: 'a peer to connect to, host:port; repeatable', multiple: true }),
    dht: Flags.boolean({ description: 'find peers on the mainline DHT', default: true, allowNo: true }),
    pex: Flags.boolean({ description: 'exchange peers with peers (PEX)', default: true, allowNo: true }),
    'listen-port': Flags.integer({ description: 'TCP port for incoming peers (0 = any)', default: 0, min: 0, max: 65535 }),
    'listen-host': Flags.string({ description: 'address to listen on', default: '0.0.0.0' }),
    timeout: Flags.integer({ description: 'give up after this many seconds (0 = never)', default: 0, min: 0 })
  }

  async run (): Promise<TorrentDetail> {
    const { args, flags } = await this.parse(Get)
    const peers = (flags.peer ?? []).map(p => {
      const m = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(p)
      if (m === null || Number(m[2]) < 1 || Number(m[2]) > 65535) this.error(`--peer ${p}: expected host:port`, { exit: 2 })
      return { host: m[1]!, port: Number(m[2]) }
    })
    let source: { magnet: string } | { torrent: Uint8Array }
    if (args.source.startsWith('magnet:')) source = { magnet: args.source }
    else if (existsSync(args.source)) source = { torrent: readFileSync(args.source) }
    else this.error(`${args.source}: not a magnet link and no such file`, { exit: 2 })
    const state = await mkdtemp(join(tmpdir(), 'btt-get-'))
    const config = seedingConfig.parse({ listen_port: flags['listen-port'], listen_host: flags['listen-host'], dht: flags.dht, pex: flags.pex, min_announce_interval: 30 })
    const engine = new Engine(engineOptions(config, state, pino({ level: 'warn' }, pino.destination(2))))
    const tty = process.stderr.isTTY && !this.jsonEnabled()
    const started = Date.now()
    let stop = false
    const onSignal = (): void => { stop = true }
    process.once('SIGINT', onSignal)
    process.once('SIGTERM', onSignal)
    try {
      await engine.start()
      const added = await engine.add(source, { savePath: resolve(flags.out), ...(flags.tracker !== undefined ? { trackers: flags.tracker } : {}) })
      for (const p of peers) engine.addPeer(added.infoHash, p)
      let t = engine.detail(added.infoHash)
      while (!stop) {
        t = engine.detail(added.infoHash)
        if (t.state === 'seeding' || t.state === 'error') break
        if (flags.timeout > 0 && Date.now() - started > flags.timeout * 1000) break
        if (tty) {
          const label = t.state === 'metadata' ? 'fetching metadata' : t.state === 'checking' ? `checking ${percent(t.checkProgress ?? 0)}` : `${percent(t.progress)}  ${rate(t.downloadRate)}  ${t.peers} peers`
          process.stderr.write(`\r${bar(t.progress)} ${label}   `)
        }
        await new Promise(resolve => setTimeout(resolve, 250))
      }
      if (tty) process.stderr.write('\n')
      if (t.state === 'error') this.error(`download failed: ${t.error ?? 'unknown error'}`)
      if (t.state !== 'seeding') this.error(stop ? 'interrupted' : `timed out after ${flags.timeout}s at ${percent(t.progress)}`, { exit: 1 })
      const secs = (Date.now() - started) / 1000
      this.log(`downloaded ${t.name} (${bytes(t.size)}) to ${t.savePath} in ${secs.toFixed(1)}s (${rate(t.size / Math.max(secs, 0.001))})`)
      return t
    } finally {
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
      await engine.stop().catch(() => {})
      await rm(state, { recursive: true, force: true })
    }
  }
}
