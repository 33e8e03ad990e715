import { randomBytes, randomInt } from 'node:crypto'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import net from 'node:net'
import { basename, dirname, join, resolve } from 'node:path'
import type { Logger } from 'pino'
import { Bitfield } from './bitfield.js'
import { AuctionChokePolicy, SlotsChokePolicy, type ChokePolicy } from './choker.js'
import type { Speed } from './speed.js'
import { createTorrent } from './create-torrent.js'
import { SeedingError, isSeedingError } from './errors.js'
import type { PeerAddr } from './extension.js'
import { formatMagnet, MAX_MAGNET_PEERS, parseMagnet } from './magnet.js'
import { encodeTorrent, parseInfo, parseTorrent, type Metainfo } from './metainfo.js'
import { Peer } from './peer.js'
import { PieceCache } from './piece-cache.js'
import { TokenBucket } from './rate.js'
import { ResumeStore, type ResumeRecord } from './resume.js'
import { diskStats } from './storage.js'
import { addrKey, Torrent, type TorrentHost } from './torrent.js'
import { TrackerClient } from './tracker-client.js'
import { decodeHandshake, encodeHandshake, HANDSHAKE_LENGTH, PROTOCOL } from './wire.js'

export const CLIENT_NAME = 'btt-node 0.1.0'
const PEER_ID_PREFIX = '-BN0100-'

export interface EngineOptions {
  /** Where the resume database and written .torrent files live. */
  dataDir: string
  /** Default folder for downloads (magnets and .torrent files). */
  downloadDir: string
  listenHost: string
  /** TCP port for peers (0 = any free port). The DHT uses the same number over UDP. */
  port: number
  dht: boolean
  /** host:port list; empty = bittorrent-dht's public routers. */
  dhtBootstrap: string[]
  trackers: boolean
  pex: boolean
  /** How often PEX messages go out (BEP 11 asks for about once a minute). */
  pexIntervalMs?: number
  /** Serve and fetch metadata over ut_metadata (BEP 9); off: magnet links cannot be added. */
  utMetadata?: boolean
  /** Bytes/s, 0 = unlimited. */
  uploadRate: number
  downloadRate: number
  torrentUploadRate: number
  torrentDownloadRate: number
  maxPeers: number
  maxPeersPerTorrent: number
  maxActiveTorrents: number
  uploadSlots: number
  /** Bytes of whole pieces cached for upload. */
  cacheBytes: number
  /** Lower bound on tracker re-announce intervals, seconds. */
  minAnnounceInterval: number
  /** Re-announce every this many seconds whatever the tracker asks (0 = as the tracker asks), like aria2's --bt-tracker-interval. */
  announceInterval?: number
  logger: Logger
  /** Replaces the default choker (the auction in paid seeding). */
  chokerFactory?: (torrent: Torrent) => ChokePolicy
  /** Paid seeding (BitTorrent Speed): sells slots by auction and/or bids and pays for downloads. */
  speed?: Speed
  /** How often every torrent is rechoked (BitTorrent's classic 10 s). */
  rechokeIntervalMs?: number
}

export interface TorrentEarnings {
  infoHash: string
  name: string
  /** Base units, decimal string. */
  amount: string
  bytes: number
  payers: Array<{ payer: string, amount: string, bytes: number, updatedAt: number }>
}

export interface EarningsReport {
  /** Base units, decimal string. */
  total: string
  torrents: TorrentEarnings[]
}

export type AddSource =
  | { torrent: Uint8Array }
  | { magnet: string }
  | { path: string, pieceLength?: number, private?: boolean, comment?: string }

export interface AddOptions {
  savePath?: string
  /** Extra tracker URLs, each its own tier. */
  trackers?: string[]
  paused?: boolean
}

export interface TorrentSummary {
  infoHash: string
  name: string
  state: string
  size: number
  progress: number
  downloaded: number
  uploaded: number
  ratio: number
  uploadRate: number
  downloadRate: number
  peers: number
  savePath: string
  addedAt: number
  completedAt: number
  magnet: string
  error?: string
}

export interface TorrentDetail extends TorrentSummary {
  pieceLength: number
  pieceCount: number
  piecesHave: number
  private: boolean
  files: Array<{ path: string, length: number }>
  trackers: Array<{ url: string, tier: number, status: string, lastAnnounce: number, peers: number, error?: string }>
  peerList: Array<{ address: string, client?: string, progress: number, uploadRate: number, downloadRate: number, choked: boolean, interested: boolean, incoming: boolean }>
  torrentFile?: string
  checkProgress?: number
}

interface TrackerState { url: string, tier: number, status: string, lastAnnounce: number, peers: number, error?: string }
interface Announcer { next: number, started: boolean, completedSent: boolean, trackers: TrackerState[], running: boolean, dhtNext: number }

/**
 * The BitTorrent engine: one TCP listener, many torrents, trackers, DHT and PEX, global limits,
 * and fast resume in SQLite.
 */
export class Engine {
  readonly peerId: Uint8Array
  readonly torrents = new Map<string, Torrent>()
  readonly cache: PieceCache
  readonly globalUp: TokenBucket
  readonly globalDown: TokenBucket
  private server?: net.Server
  private resume?: ResumeStore
  /** Base units earned by paid seeding since start. */
  earned = 0n
  /** Payments credited, and the bytes they paid for, since start. */
  payments = 0
  paidBytes = 0
  /** Payments refused since start, by error code. */
  readonly paymentRefusals = new Map<string, number>()
  private tracker?: TrackerClient
  private dht?: DhtLike
  private timers: NodeJS.Timeout[] = []
  private readonly announcers = new Map<string, Announcer>()
  private readonly dirty = new Set<string>()
  private halfOpen = 0
  private readonly key = randomInt(2 ** 31)
  private closing = false
  port = 0

  constructor (readonly opts: EngineOptions) {
    this.peerId = Buffer.concat([Buffer.from(PEER_ID_PREFIX), randomBytes(12)])
    this.cache = new PieceCache(opts.cacheBytes)
    this.globalUp = new TokenBucket(opts.uploadRate)
    this.globalDown = new TokenBucket(opts.downloadRate)
  }

  get logger (): Logger { return this.opts.logger }

  async start (): Promise<void> {
    await mkdir(join(this.opts.dataDir, 'torrents'), { recursive: true, mode: 0o700 })
    this.resume = new ResumeStore(join(this.opts.dataDir, 'seeding.db'))
    const speed = this.opts.speed
    if (speed !== undefined) {
      speed.events.onEarn = (infoHash, payer, amount, bytes) => {
        this.earned += amount
        this.payments++
        this.paidBytes += bytes
        this.resume?.addEarning(infoHash, payer, amount, bytes)
      }
      speed.events.onRefuse = reason => { this.paymentRefusals.set(reason, (this.paymentRefusals.get(reason) ?? 0) + 1) }
    }
    const server = net.createServer({ noDelay: true }, sock => { this.onIncoming(sock) })
    server.maxConnections = this.opts.maxPeers + 64
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.opts.port, this.opts.listenHost, () => { server.off('error', reject); resolve() })
    }).catch((err: NodeJS.ErrnoException) => {
      throw new SeedingError('SEEDING_LISTEN', `cannot listen for peers on ${this.opts.listenHost}:${this.opts.port}: ${err.code ?? err.message}`)
    })
    this.server = server
    this.port = (server.address() as net.AddressInfo).port
    if (this.opts.trackers) this.tracker = new TrackerClient(this.opts.listenHost === '0.0.0.0' ? undefined : this.opts.listenHost)
    if (this.opts.dht) {
      try {
        await this.startDht()
      } catch (err) {
        // give back the TCP port and the database: the caller may fix the config and start again
        await new Promise<void>(resolve => { server.close(() => { resolve() }) })
        this.server = undefined
        this.resume.close()
        this.resume = undefined
        throw err
      }
    }
    for (const r of this.resume.all()) {
      try {
        await this.restore(r)
      } catch (err) {
        this.logger.error({ infoHash: r.infoHash, err }, 'could not restore a torrent; it stays in the database')
      }
    }
    this.timers.push(
      setInterval(() => { this.tick() }, 1000),
      setInterval(() => { for (const t of this.torrents.values()) t.rechoke() }, this.opts.rechokeIntervalMs ?? 10_000),
      setInterval(() => { for (const t of this.torrents.values()) t.sendPex() }, this.opts.pexIntervalMs ?? 60_000),
      setInterval(() => { void this.saveDirty() }, 5_000)
    )
    for (const t of this.timers) t.unref()
    this.logger.info({ port: this.port, torrents: this.torrents.size }, 'BitTorrent engine listening')
  }

  private async startDht (): Promise<void> {
    const { default: DHT } = await import('bittorrent-dht') as { default: new (opts: object) => DhtLike }
    const bootstrap = this.opts.dhtBootstrap.length > 0 ? this.opts.dhtBootstrap : undefined
    const dht = new DHT({ ...(bootstrap !== undefined ? { bootstrap } : {}), host: false })
    dht.on('error', (err: Error) => { this.logger.warn({ err }, 'DHT error') })
    dht.on('warning', () => {})
    dht.on('peer', (peer: PeerAddr, infoHash: Buffer) => {
      const t = this.torrents.get(infoHash.toString('hex'))
      if (t !== undefined && !t.privateTorrent) t.addCandidate(peer)
    })
    const host = this.opts.listenHost === '0.0.0.0' ? undefined : this.opts.listenHost
    await new Promise<void>((resolve, reject) => {
      // a bind error (the UDP port taken) arrives as 'error', and the listen callback never runs
      const onError = (err: NodeJS.ErrnoException): void => {
        reject(new SeedingError('SEEDING_LISTEN', `cannot listen for the DHT on udp ${this.opts.listenHost}:${this.port}: ${err.code ?? err.message}`))
      }
      dht.once('error', onError)
      dht.listen(this.port, host, () => { dht.off('error', onError); resolve() })
    }).catch(async (err: unknown) => {
      await new Promise<void>(resolve => { dht.destroy(() => { resolve() }) })
      throw err
    })
    this.dht = dht
  }

  async stop (): Promise<void> {
    this.closing = true
    for (const t of this.timers) clearInterval(t)
    this.timers = []
    await this.saveAll()
    const stopped = [...this.torrents.values()].filter(t => t.active && t.meta !== undefined)
    await Promise.all(stopped.map(async t => { await this.announceNow(t, 'stopped', 2000).catch(() => {}) }))
    for (const t of this.torrents.values()) t.stop()
    this.torrents.clear()
    await new Promise<void>(resolve => {
      if (this.server === undefined) { resolve(); return }
      this.server.close(() => { resolve() })
    })
    this.tracker?.close()
    await new Promise<void>(resolve => { if (this.dht === undefined) resolve(); else this.dht.destroy(() => { resolve() }) })
    this.resume?.close()
    // a save still in flight (a torrent completing during stop) finds no store instead of a closed one
    this.resume = undefined
  }

  // --- torrents ----------------------------------------------------------------------------

  async add (source: AddSource, options: AddOptions = {}): Promise<TorrentDetail> {
    const extra = (options.trackers ?? []).map(u => [u])
    let meta: Metainfo | undefined
    let infoHash: string
    let savePath = resolve(options.savePath ?? this.opts.downloadDir)
    let verified = false
    let torrentFile: Uint8Array | undefined
    let magnetName: string | undefined
    let magnetPeers: PeerAddr[] = []
    let announce: string[][]
    if ('torrent' in source) {
      meta = parseTorrent(source.torrent)
      infoHash = meta.infoHash
      announce = mergeTiers(meta.announce, extra)
      torrentFile = source.torrent
    } else if ('magnet' in source) {
      if (this.opts.utMetadata === false) throw new SeedingError('SEEDING_BAD_SOURCE', 'magnet links need ut_metadata, which is switched off in the config (ut_metadata = false)')
      const m = parseMagnet(source.magnet)
      infoHash = m.infoHash
      magnetName = m.name
      magnetPeers = m.peers
      announce = mergeTiers(m.trackers.map(u => [u]), extra)
    } else {
      const path = resolve(source.path)
      const created = await createTorrent(path, {
        announce: extra,
        ...(source.pieceLength !== undefined ? { pieceLength: source.pieceLength } : {}),
        ...(source.private !== undefined ? { private: source.private } : {}),
        ...(source.comment !== undefined ? { comment: source.comment } : {}),
        createdBy: CLIENT_NAME
      })
      meta = created.metainfo
      infoHash = meta.infoHash
      announce = meta.announce
      torrentFile = created.torrent
      savePath = dirname(path)
      if (basename(path) !== meta.name) throw new SeedingError('SEEDING_BAD_PATH', `cannot seed ${path} under the name ${meta.name}`)
      verified = true
    }
    if (this.torrents.has(infoHash)) throw new SeedingError('SEEDING_EXISTS', `torrent ${infoHash} is already added`)
    const t = this.makeTorrent(infoHash, savePath, meta)
    t.announce = announce
    if (torrentFile !== undefined) await this.writeTorrentFile(t, torrentFile)
    for (const p of magnetPeers) t.addCandidate(p)
    if (magnetName !== undefined) t.displayName = magnetName
    this.torrents.set(infoHash, t)
    const record: ResumeRecord = {
      infoHash, announce, savePath, uploaded: 0, downloaded: 0, addedAt: t.addedAt, completedAt: 0, paused: options.paused === true,
      ...(meta !== undefined ? { info: meta.info } : {}),
      ...(magnetName !== undefined ? { name: magnetName } : {}),
      ...(magnetPeers.length > 0 ? { peers: magnetPeers.map(p => `${p.host}|${p.port}`) } : {})
    }
    this.resume!.put(record)
    if (options.paused === true) {
      t.state = 'paused'
    } else if (meta !== undefined) {
      if (verified) {
        t.restore(Bitfield.full(meta.pieceCount))
        this.markDirty(t)
      } else {
        await this.firstCheck(t)
      }
      this.activate(t)
    } else {
      this.activate(t)
    }
    return this.detail(infoHash)
  }

  /** A torrent added from a .torrent or magnet: if files exist, hash them; else start empty. */
  private async firstCheck (t: Torrent): Promise<void> {
    const states = await t.storage!.fileStates()
    if (states.some(s => s !== undefined)) {
      void t.check().then(() => { this.markDirty(t); this.activate(t) }, err => { t.fail(err) })
    } else {
      t.restore(new Bitfield(t.meta!.pieceCount))
      this.markDirty(t)
    }
  }

  private makeTorrent (infoHash: string, savePath: string, meta?: Metainfo): Torrent {
    const engine = this
    const host: TorrentHost = {
      peerId: this.peerId,
      get port () { return engine.port },
      logger: this.logger,
      cache: this.cache,
      globalUp: this.globalUp,
      globalDown: this.globalDown,
      pex: this.opts.pex,
      utMetadata: this.opts.utMetadata !== false,
      clientName: CLIENT_NAME,
      ...(this.opts.speed !== undefined ? { speed: this.opts.speed } : {}),
      onMetadata: (t) => { void this.onMetadata(t) },
      onProgress: (t, completed) => {
        this.markDirty(t)
        if (completed) {
          void this.saveDirty()
          if (t.active) void this.announceNow(t, 'completed').catch(() => {})
        }
      }
    }
    const t = new Torrent(host, infoHash, {
      savePath,
      maxPeers: this.opts.maxPeersPerTorrent,
      uploadRate: this.opts.torrentUploadRate,
      downloadRate: this.opts.torrentDownloadRate,
      choker: new SlotsChokePolicy({ slots: this.opts.uploadSlots, optimistic: 1, optimisticMs: 30_000 })
    }, meta)
    const speed = this.opts.speed
    if (this.opts.chokerFactory !== undefined) t.choker = this.opts.chokerFactory(t)
    else if (speed?.selling === true) {
      t.choker = new AuctionChokePolicy({
        paidSlots: speed.opts.paidSlots,
        freeSlots: speed.opts.freeSlots,
        optimistic: speed.opts.optimisticSlots,
        optimisticMs: 30_000,
        bidWindowMs: speed.opts.bidWindowMs ?? 2000
      })
    }
    return t
  }

  private async onMetadata (t: Torrent): Promise<void> {
    const meta = t.meta!
    this.logger.info({ infoHash: t.infoHash, name: meta.name }, 'metadata received')
    await this.writeTorrentFile(t, encodeTorrent({ info: meta.info, announce: t.announce, createdBy: CLIENT_NAME }))
    this.markDirty(t)
    await this.firstCheck(t)
  }

  private async writeTorrentFile (t: Torrent, bytes: Uint8Array): Promise<void> {
    await writeFile(this.torrentPath(t.infoHash), bytes, { mode: 0o600 })
  }

  torrentPath (infoHash: string): string {
    return join(this.opts.dataDir, 'torrents', `${infoHash}.torrent`)
  }

  private async restore (r: ResumeRecord): Promise<void> {
    const meta = r.info !== undefined ? parseInfo(r.info, r.infoHash) : undefined
    if (meta !== undefined) meta.announce = r.announce
    const t = this.makeTorrent(r.infoHash, r.savePath, meta)
    t.announce = r.announce
    t.uploaded = r.uploaded
    t.downloaded = r.downloaded
    t.addedAt = r.addedAt
    t.completedAt = r.completedAt
    if (r.name !== undefined) t.displayName = r.name
    for (const p of r.peers ?? []) {
      const i = p.lastIndexOf('|')
      t.addCandidate({ host: p.slice(0, i), port: Number(p.slice(i + 1)) })
    }
    this.torrents.set(r.infoHash, t)
    if (r.paused) { t.state = 'paused'; return }
    if (meta === undefined) { this.activate(t); return }
    // fast resume: trust the saved bitfield only if every file has the size and mtime it had
    const now = await t.storage!.fileStates()
    const same = r.bitfield !== undefined && r.files !== undefined && r.files.length === now.length &&
      r.files.every((f, i) => f === undefined ? now[i] === undefined : (now[i] !== undefined && now[i]!.size === f.size && now[i]!.mtimeMs === f.mtimeMs))
    if (same) {
      t.restore(new Bitfield(meta.pieceCount, r.bitfield))
      this.activate(t)
    } else {
      this.logger.info({ infoHash: t.infoHash }, 'files changed since the last run; rechecking')
      void t.check().then(() => { this.markDirty(t); this.activate(t) }, err => { t.fail(err) })
    }
  }

  /** Moves a torrent into the active set (or the queue when the limit is reached). */
  private activate (t: Torrent): void {
    if (this.closing || t.state === 'checking' || t.state === 'paused' || t.state === 'error') return
    const active = [...this.torrents.values()].filter(x => x !== t && x.active).length
    if (active >= this.opts.maxActiveTorrents) {
      if (t.state !== 'metadata' || t.peers.size === 0) t.state = 'queued'
      return
    }
    if (t.state === 'queued') t.state = t.meta === undefined ? 'metadata' : t.complete ? 'seeding' : 'downloading'
    if (t.have !== undefined && t.storage !== undefined && !t.complete) void t.storage.prepare().catch(err => { t.fail(err) })
    this.announcers.set(t.infoHash, this.announcers.get(t.infoHash) ?? {
      next: 0,
      started: false,
      completedSent: t.complete,
      trackers: t.announce.flatMap((tier, i) => tier.map(url => ({ url, tier: i, status: 'not contacted', lastAnnounce: 0, peers: 0 }))),
      running: false,
      dhtNext: 0
    })
  }

  /** Adds a peer address to try for a torrent (e.g. given on the command line). */
  addPeer (infoHash: string, addr: PeerAddr): void {
    this.require(infoHash).addCandidate(addr)
  }

  async remove (infoHash: string, opts: { deleteData?: boolean } = {}): Promise<void> {
    const t = this.require(infoHash)
    this.torrents.delete(infoHash)
    const wasActive = t.active && t.meta !== undefined
    t.stop()
    this.cache.drop(t)
    this.dirty.delete(infoHash)
    this.resume!.delete(infoHash)
    if (wasActive) void this.announceNow(t, 'stopped', 2000).catch(() => {})
    this.announcers.delete(infoHash)
    await rm(this.torrentPath(infoHash), { force: true })
    if (opts.deleteData === true && t.storage !== undefined) await t.storage.deleteFiles()
    this.promoteQueued()
  }

  async recheck (infoHash: string): Promise<TorrentDetail> {
    const t = this.require(infoHash)
    if (t.meta === undefined) throw new SeedingError('SEEDING_NO_METADATA', 'the torrent has no metadata yet')
    if (t.state === 'checking') throw new SeedingError('SEEDING_BUSY', 'a check is already running')
    t.stop('checking')
    this.cache.drop(t)
    t.error = undefined
    void t.check().then(() => { this.markDirty(t); this.activate(t) }, err => { t.fail(err) })
    return this.detail(infoHash)
  }

  async pause (infoHash: string): Promise<TorrentDetail> {
    const t = this.require(infoHash)
    if (t.active) void this.announceNow(t, 'stopped', 2000).catch(() => {})
    t.stop('paused')
    this.markDirty(t)
    await this.saveDirty()
    this.promoteQueued()
    return this.detail(infoHash)
  }

  async resumeTorrent (infoHash: string): Promise<TorrentDetail> {
    const t = this.require(infoHash)
    if (t.state !== 'paused' && t.state !== 'error') return this.detail(infoHash)
    t.error = undefined
    this.markDirty(t)
    // the files may have changed while paused: hash them again before serving
    if (t.meta === undefined) { t.state = 'metadata'; this.activate(t) } else await this.recheck(infoHash)
    return this.detail(infoHash)
  }

  private promoteQueued (): void {
    for (const t of this.torrents.values()) if (t.state === 'queued') this.activate(t)
  }

  private require (infoHash: string): Torrent {
    const t = this.torrents.get(infoHash.toLowerCase())
    if (t === undefined) throw new SeedingError('SEEDING_NOT_FOUND', `no torrent ${infoHash}`)
    return t
  }

  list (): TorrentSummary[] {
    return [...this.torrents.values()].map(t => this.summary(t))
  }

  private summary (t: Torrent): TorrentSummary {
    const size = t.meta?.length ?? 0
    const done = t.meta === undefined ? 0 : t.have === undefined ? 0 : size - t.left
    return {
      infoHash: t.infoHash,
      name: t.name,
      state: t.state,
      size,
      progress: size === 0 ? 0 : done / size,
      downloaded: t.downloaded,
      uploaded: t.uploaded,
      ratio: size === 0 ? 0 : t.uploaded / size,
      uploadRate: Math.round(t.up.rate),
      downloadRate: Math.round(t.down.rate),
      peers: t.peers.size,
      savePath: t.options.savePath,
      addedAt: t.addedAt,
      completedAt: t.completedAt,
      magnet: formatMagnet({ infoHash: t.infoHash, name: t.name, trackers: t.announce.flat() }),
      ...(t.error !== undefined ? { error: t.error } : {})
    }
  }

  detail (infoHash: string): TorrentDetail {
    const t = this.require(infoHash)
    const a = this.announcers.get(t.infoHash)
    return {
      ...this.summary(t),
      pieceLength: t.meta?.pieceLength ?? 0,
      pieceCount: t.meta?.pieceCount ?? 0,
      piecesHave: t.have?.count ?? 0,
      private: t.privateTorrent,
      files: t.meta?.files.map(f => ({ path: f.path.join('/'), length: f.length })) ?? [],
      trackers: a?.trackers.map(x => ({ ...x })) ?? t.announce.flatMap((tier, i) => tier.map(url => ({ url, tier: i, status: 'not contacted', lastAnnounce: 0, peers: 0 }))),
      peerList: [...t.peers.values()].map(p => ({
        address: p.key,
        ...(p.ext?.v !== undefined ? { client: p.ext.v.slice(0, 64) } : {}),
        progress: p.have === undefined ? 0 : p.have.count / p.have.length,
        uploadRate: Math.round(p.up.rate),
        downloadRate: Math.round(p.down.rate),
        choked: p.amChoking,
        interested: p.peerInterested,
        incoming: p.incoming
      })),
      ...(t.meta !== undefined ? { torrentFile: this.torrentPath(t.infoHash) } : {}),
      ...(t.state === 'checking' ? { checkProgress: t.checkProgress } : {})
    }
  }

  /** Paid-seeding earnings (persisted): per torrent, and per payer inside each. */
  earnings (): EarningsReport {
    const rows = this.resume?.earnings() ?? []
    const byTorrent = new Map<string, TorrentEarnings>()
    let total = 0n
    for (const r of rows) {
      let t = byTorrent.get(r.infoHash)
      if (t === undefined) {
        const live = this.torrents.get(r.infoHash)
        t = { infoHash: r.infoHash, name: live?.meta?.name ?? live?.name ?? '', amount: '0', bytes: 0, payers: [] }
        byTorrent.set(r.infoHash, t)
      }
      t.amount = (BigInt(t.amount) + r.amount).toString()
      t.bytes += r.bytes
      t.payers.push({ payer: r.payer, amount: r.amount.toString(), bytes: r.bytes, updatedAt: r.updatedAt })
      total += r.amount
    }
    return { total: total.toString(), torrents: [...byTorrent.values()] }
  }

  /** Payer keys banned for not paying (paid seeding). */
  bans (): string[] {
    return this.opts.speed?.bans() ?? []
  }

  status (): Record<string, unknown> {
    let peers = 0
    let up = 0
    let down = 0
    const states: Record<string, number> = {}
    for (const t of this.torrents.values()) {
      peers += t.peers.size
      up += t.up.rate
      down += t.down.rate
      states[t.state] = (states[t.state] ?? 0) + 1
    }
    return {
      port: this.port,
      torrents: this.torrents.size,
      paid: this.opts.speed?.selling === true ? { earned: this.earned.toString(), bans: this.bans().length } : false,
      states,
      peers,
      uploadRate: Math.round(up),
      downloadRate: Math.round(down),
      disk: { ...diskStats },
      cache: { bytes: this.cache.size, hits: this.cache.hits, misses: this.cache.misses },
      dht: this.dht !== undefined ? { nodes: this.dht.nodes.count() } : false
    }
  }

  // --- connections -------------------------------------------------------------------------

  private totalPeers (): number {
    let n = 0
    for (const t of this.torrents.values()) n += t.peers.size
    return n
  }

  private onIncoming (sock: net.Socket): void {
    if (this.closing || this.totalPeers() >= this.opts.maxPeers) { sock.destroy(); return }
    this.handshake(sock, undefined).catch(() => { sock.destroy() })
  }

  private async handshake (sock: net.Socket, expect: Torrent | undefined): Promise<void> {
    sock.on('error', () => {})
    sock.setNoDelay(true)
    const incoming = expect === undefined
    if (!incoming) sock.write(encodeHandshake(expect.infoHashBytes, this.peerId, { dht: this.dht !== undefined }))
    const { hs, rest } = await readHandshake(sock)
    const t = this.torrents.get(Buffer.from(hs.infoHash).toString('hex'))
    if (t === undefined || !t.active || (expect !== undefined && t !== expect)) throw new SeedingError('WIRE_HANDSHAKE', 'unknown torrent')
    if (Buffer.from(hs.peerId).equals(this.peerId)) throw new SeedingError('WIRE_SELF', 'connected to ourselves')
    // counted again here: handshakes in flight together all passed the check at accept time
    if (this.totalPeers() >= this.opts.maxPeers) throw new SeedingError('SEEDING_PEER_LIMIT', 'peer limit reached')
    if (incoming) sock.write(encodeHandshake(t.infoHashBytes, this.peerId, { dht: this.dht !== undefined }))
    const peer: Peer = new Peer(sock, hs, incoming, msg => { t.onMessage(peer, msg) })
    if (!t.attach(peer)) throw new SeedingError('SEEDING_PEER_LIMIT', 'peer refused')
    const onData = (chunk: Buffer): void => {
      try {
        peer.parser.push(chunk)
      } catch (err) {
        if (!isSeedingError(err)) this.logger.error({ err, peer: peer.key }, 'bug while handling a peer message')
        else this.logger.debug({ peer: peer.key, code: err.code, msg: err.message }, 'dropping peer')
        peer.destroy()
      }
    }
    sock.on('data', onData)
    sock.on('close', () => { peer.closed = true; t.detach(peer) })
    if (rest.length > 0) onData(rest)
  }

  private connect (t: Torrent, addr: PeerAddr): void {
    this.halfOpen++
    const sock = net.connect({ host: addr.host, port: addr.port, noDelay: true })
    sock.setTimeout(10_000, () => { sock.destroy() })
    let settled = false
    const done = (): void => { if (!settled) { settled = true; this.halfOpen-- } }
    sock.once('connect', () => {
      done()
      sock.setTimeout(0)
      this.handshake(sock, t).catch(() => { sock.destroy() })
    })
    sock.once('close', done)
    sock.on('error', () => {})
  }

  private tick (): void {
    const now = Date.now()
    let total = this.totalPeers()
    for (const t of this.torrents.values()) {
      if (!t.active) continue
      t.tick(now)
      // outgoing connections, within the torrent's and the engine's limits
      // in candidates' form ([v6]:port): an incoming peer by the listen port it told us, not its
      // ephemeral one, so what PEX and trackers say about it does not make us dial it again
      const connected = new Set<string>()
      for (const p of t.peers.values()) {
        const port = p.incoming ? p.listenPort : p.socket.remotePort
        if (port !== undefined) connected.add(addrKey(p.host, port))
      }
      for (const [key, c] of t.candidates) {
        if (this.halfOpen >= 32 || total >= this.opts.maxPeers || t.peers.size >= t.options.maxPeers) break
        const cand = c as PeerAddr & { triedAt?: number, fails?: number }
        // connected now: if it leaves, it is tried again on the short backoff, not the failed one
        if (connected.has(key)) { cand.fails = 0; continue }
        if (cand.triedAt !== undefined && now - cand.triedAt < 30_000 * Math.min(2 ** (cand.fails ?? 0), 64)) continue
        if (cand.host === this.opts.listenHost && cand.port === this.port) continue
        cand.triedAt = now
        cand.fails = (cand.fails ?? 0) + 1
        this.connect(t, cand)
        total++
      }
      void this.maybeAnnounce(t, now)
    }
  }

  // --- trackers and DHT --------------------------------------------------------------------

  private async maybeAnnounce (t: Torrent, now: number): Promise<void> {
    const a = this.announcers.get(t.infoHash)
    if (a === undefined) return
    if (this.dht !== undefined && !t.privateTorrent && now >= a.dhtNext) {
      // re-announce every 15 min; a download with no peer yet looks again every minute
      a.dhtNext = now + (!t.complete && t.peers.size === 0 ? 60_000 : 15 * 60_000)
      const ih = Buffer.from(t.infoHashBytes)
      this.dht.announce(ih, this.port, () => {})
      if (!t.complete) this.dht.lookup(ih, () => {})
    }
    if (this.tracker === undefined || a.running || now < a.next || a.trackers.length === 0) return
    await this.announceNow(t, a.started ? (t.complete && !a.completedSent ? 'completed' : undefined) : 'started').catch(() => {})
  }

  /** Announces to one tracker per tier (the first that answers, BEP 12). */
  private async announceNow (t: Torrent, event?: 'started' | 'completed' | 'stopped', timeoutMs = 15_000): Promise<void> {
    const a = this.announcers.get(t.infoHash)
    if (this.tracker === undefined || a === undefined || a.trackers.length === 0) return
    if (a.running && event !== 'stopped') return
    a.running = true
    let interval = 1800
    try {
      const tiers = new Map<number, TrackerState[]>()
      for (const tr of a.trackers) tiers.set(tr.tier, [...(tiers.get(tr.tier) ?? []), tr])
      await Promise.all([...tiers.values()].map(async tier => {
        for (const tr of tier) {
          try {
            const res = await this.tracker!.announce(tr.url, {
              infoHash: t.infoHashBytes,
              peerId: this.peerId,
              port: this.port,
              uploaded: t.uploaded,
              downloaded: t.downloaded,
              left: t.meta === undefined ? 1 : t.left,
              ...(event !== undefined ? { event } : {}),
              numwant: event === 'stopped' ? 0 : 80,
              key: this.key,
              ...(this.opts.speed !== undefined ? { btt: this.opts.speed.announceFields(t) } : {})
            }, AbortSignal.timeout(timeoutMs))
            tr.status = 'working'
            tr.error = undefined
            tr.lastAnnounce = Date.now()
            tr.peers = res.peers.length
            interval = Math.min(interval, res.interval)
            if (event !== 'stopped') for (const p of res.peers) t.addCandidate(p)
            this.opts.speed?.announcedBids(t, tr.url, res.bids ?? [])
            return
          } catch (err) {
            tr.status = 'error'
            tr.error = (err as Error).message
            tr.lastAnnounce = Date.now()
          }
        }
        interval = Math.min(interval, 60)
      }))
      if (event === 'started') a.started = true
      if (event === 'completed') a.completedSent = true
    } finally {
      a.running = false
      const every = this.opts.announceInterval !== undefined && this.opts.announceInterval > 0
        ? this.opts.announceInterval
        : Math.max(this.opts.minAnnounceInterval, Math.min(interval, 3600))
      a.next = Date.now() + every * 1000
    }
  }

  // --- resume ------------------------------------------------------------------------------

  private markDirty (t: Torrent): void {
    this.dirty.add(t.infoHash)
  }

  private async saveDirty (): Promise<void> {
    const hashes = [...this.dirty]
    this.dirty.clear()
    const records: ResumeRecord[] = []
    for (const h of hashes) {
      const t = this.torrents.get(h)
      if (t === undefined) continue
      const r = await this.record(t)
      if (r !== undefined) records.push(r)
    }
    if (this.resume !== undefined && records.length > 0) this.resume.putMany(records)
  }

  private async saveAll (): Promise<void> {
    for (const t of this.torrents.values()) this.dirty.add(t.infoHash)
    await this.saveDirty()
  }

  private async record (t: Torrent): Promise<ResumeRecord | undefined> {
    const base: ResumeRecord = {
      infoHash: t.infoHash,
      announce: t.announce,
      savePath: t.options.savePath,
      uploaded: t.uploaded,
      downloaded: t.downloaded,
      addedAt: t.addedAt,
      completedAt: t.completedAt,
      paused: t.state === 'paused'
    }
    if (t.meta === undefined) {
      // until the metadata arrives, the magnet's name and the peers to fetch it from are all we have
      const peers = [...t.candidates.values()].slice(0, MAX_MAGNET_PEERS).map(p => `${p.host}|${p.port}`)
      return { ...base, ...(t.displayName !== undefined ? { name: t.displayName } : {}), ...(peers.length > 0 ? { peers } : {}) }
    }
    base.info = t.meta.info
    if (t.have === undefined || t.state === 'checking') return base
    // the bitfield is only worth keeping if the data it vouches for is on disk
    await t.storage!.flush().catch(() => {})
    base.bitfield = Uint8Array.from(t.have.bytes)
    base.files = await t.storage!.fileStates()
    return base
  }
}

function mergeTiers (a: string[][], b: string[][]): string[][] {
  const seen = new Set(a.flat())
  return [...a, ...b.filter(t => t.every(u => !seen.has(u)))]
}

/** Reads the 68-byte handshake, refusing anything that is not BitTorrent as soon as it shows. */
async function readHandshake (sock: net.Socket): Promise<{ hs: ReturnType<typeof decodeHandshake>, rest: Buffer }> {
  return await new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0)
    const timer = setTimeout(() => { cleanup(); reject(new SeedingError('WIRE_HANDSHAKE', 'handshake timeout')) }, 10_000)
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk])
      const head = Math.min(buf.length, 20)
      const expected = Buffer.concat([Buffer.from([19]), Buffer.from(PROTOCOL, 'latin1')])
      if (!buf.subarray(0, head).equals(expected.subarray(0, head))) { cleanup(); reject(new SeedingError('WIRE_HANDSHAKE', 'not BitTorrent')); return }
      if (buf.length < HANDSHAKE_LENGTH) return
      cleanup()
      try {
        resolve({ hs: decodeHandshake(buf), rest: buf.subarray(HANDSHAKE_LENGTH) })
      } catch (err) {
        reject(err)
      }
    }
    const onClose = (): void => { cleanup(); reject(new SeedingError('WIRE_HANDSHAKE', 'closed')) }
    const cleanup = (): void => { clearTimeout(timer); sock.off('data', onData); sock.off('close', onClose) }
    sock.on('data', onData)
    sock.on('close', onClose)
  })
}

interface DhtLike {
  nodes: { count (): number }
  on (event: string, fn: (...args: never[]) => void): void
  once (event: string, fn: (...args: never[]) => void): void
  off (event: string, fn: (...args: never[]) => void): void
  listen (port: number, host: string | undefined, cb: () => void): void
  announce (infoHash: Buffer, port: number, cb: (err?: Error) => void): void
  lookup (infoHash: Buffer, cb: (err?: Error) => void): void
  destroy (cb: () => void): void
}
