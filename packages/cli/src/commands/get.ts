import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { existsSync, readFileSync } from 'node:fs'
import { Args, Flags } from '@oclif/core'
import { formatBtt, parseBtt } from '@btt/channel'
import { assertInitialised, isAlive, loadConfig, loadWallet, servicePaymentsOf, startPayments, readRuntimeInfo, type Payments } from '@btt/node'
import { Engine, engineOptions, parseSpendingRate, seedingConfig, Speed, type TorrentDetail } from '@btt/service-seeding'
import { SERVICES } from '../composition.js'
import { pino } from 'pino'
import { BaseCommand } from '../base.js'
import { bar, bytes, percent, rate } from '../seed-format.js'

export default class Get extends BaseCommand {
  static override description = 'Download a torrent (magnet link or .torrent file) into a folder, as a requester; runs its own BitTorrent engine and exits when done'
  static override enableJsonFlag = true
  static override examples = [
    '<%= config.bin %> get "magnet:?xt=urn:btih:...&tr=udp://tracker.example:6969/announce" --out ./downloads',
    '<%= config.bin %> get ./file.torrent --out ./downloads --no-dht --peer 127.0.0.1:6881',
    '<%= config.bin %> get ./file.torrent --out ./downloads --budget 2 --spending-rate 0.5'
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
    timeout: Flags.integer({ description: 'give up after this many seconds (0 = never)', default: 0, min: 0 }),
    budget: Flags.string({ description: 'pay seeders that sell slots (BitTorrent Speed), spending at most this many BTT from the wallet of --home' }),
    'spending-rate': Flags.string({ description: 'share of the budget the auto-bid offers, 0..1 (with --budget)', default: '1' })
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
    const logger = pino({ level: 'warn' }, pino.destination(2))
    let payments: Payments | undefined
    let speed: Speed | undefined
    if (flags.budget !== undefined) {
      let budget: bigint
      let spendingRatePpm: bigint
      try {
        budget = parseBtt(flags.budget)
        spendingRatePpm = parseSpendingRate(flags['spending-rate'])
      } catch (err) {
        this.error(`--budget/--spending-rate: ${(err as Error).message}`, { exit: 2 })
      }
      if (budget <= 0n) this.error('--budget must be more than 0', { exit: 2 })
      const home = this.homeFrom(flags)
      const paths = await assertInitialised(home)
      const runtime = await readRuntimeInfo(paths)
      if (runtime !== undefined && isAlive(runtime.pid)) {
        // one process at a time signs vouchers from a wallet's channel store
        this.error(`the node at ${home} is running (pid ${runtime.pid}); a paid get signs from the same wallet and channel store: stop the node, or use another --home`, { exit: 1 })
      }
      const config = await loadConfig({ file: paths.config, services: SERVICES, env: process.env })
      payments = await startPayments({ config, dataDir: paths.dataDir, wallet: await loadWallet(paths), logger })
      const balance = await payments.ledger.balance(payments.account)
      if (balance < budget) {
        await payments.stop()
        this.error(`the budget ${formatBtt(budget)} BTT is more than the wallet holds at the ledger (${formatBtt(balance)} BTT)`, { exit: 1 })
      }
      speed = new Speed({
        payments: servicePaymentsOf(payments),
        logger,
        paidSlots: 0,
        freeSlots: 0,
        optimisticSlots: 0,
        reserve: { perHour: 0n, cap: 0n },
        minDepositPieces: 1,
        minExpirySeconds: 0,
        bidding: { budget, spendingRatePpm }
      })
    }
    const state = await mkdtemp(join(tmpdir(), 'btt-get-'))
    const config = seedingConfig.parse({ listen_port: flags['listen-port'], listen_host: flags['listen-host'], dht: flags.dht, pex: flags.pex, min_announce_interval: 30 })
    const engine = new Engine({ ...engineOptions(config, state, logger), ...(speed !== undefined ? { speed } : {}) })
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
      let drawn = 0
      while (!stop) {
        t = engine.detail(added.infoHash)
        if (t.state === 'seeding' || t.state === 'error') break
        if (flags.timeout > 0 && Date.now() - started > flags.timeout * 1000) break
        if (tty && Date.now() - drawn >= 250) {
          drawn = Date.now()
          const paid = speed !== undefined ? `  paid ${formatBtt(speed.spentTotal, 6)} BTT` : ''
          const label = t.state === 'metadata' ? 'fetching metadata' : t.state === 'checking' ? `checking ${percent(t.checkProgress ?? 0)}` : `${percent(t.progress)}  ${rate(t.downloadRate)}  ${t.peers} peers${paid}`
          process.stderr.write(`\r${bar(t.progress)} ${label}   `)
        }
        // poll often enough that the reported time is the download's, not the poll's
        await new Promise(resolve => setTimeout(resolve, 20))
      }
      if (tty) process.stderr.write('\n')
      if (t.state === 'error') this.error(`download failed: ${t.error ?? 'unknown error'}`)
      if (t.state !== 'seeding') this.error(stop ? 'interrupted' : `timed out after ${flags.timeout}s at ${percent(t.progress)}`, { exit: 1 })
      const secs = (Date.now() - started) / 1000
      this.log(`downloaded ${t.name} (${bytes(t.size)}) to ${t.savePath} in ${secs.toFixed(1)}s (${rate(t.size / Math.max(secs, 0.001))})`)
      const result = Object.assign(t, { seconds: Math.round(secs * 1000) / 1000 })
      if (speed === undefined) return result
      // the last piece's voucher may still be on its way: stop once every seeder acknowledged
      if (!await speed.settle(5000)) this.warn('not every seeder acknowledged its last payment within 5 s')
      const spending = speed.spending(t.infoHash)
      this.log(`paid ${formatBtt(speed.spentTotal)} BTT to ${spending.length} seeder(s)${spending.map(s => `\n  ${s.payee.slice(0, 16)}…  ${formatBtt(s.amount)} BTT`).join('')}`)
      return Object.assign(result, { paid: { total: speed.spentTotal.toString(), seeders: spending.map(s => ({ payee: s.payee, amount: s.amount.toString() })) } })
    } finally {
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
      // interrupted or failed: a voucher made durable for a verified piece still goes out before
      // the connections close (settled already on success)
      await speed?.settle(2000).catch(() => false)
      await engine.stop().catch(() => {})
      await payments?.stop().catch(() => {})
      await rm(state, { recursive: true, force: true })
    }
  }
}

