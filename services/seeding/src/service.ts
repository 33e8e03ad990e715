import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { defineService, zAmount, zPort, type ServicePayments } from '@btt/node'
import { Hono, type Context } from 'hono'
import { parseBtt } from '@btt/channel'
import { z } from 'zod'
import { bidScrapeUrl } from '@btt/tracker'
import type { Autopilot } from './autopilot.js'
import type { AddSource, Engine, EngineOptions } from './engine.js'
import type { SpeedOptions } from './speed.js'
import { SeedingError, isSeedingError } from './errors.js'
import { seedingMetrics } from './metrics.js'

/** Largest .torrent read from a path the API is given. */
const MAX_TORRENT_FILE = 64 * 1024 * 1024

/** The `[services.seeding]` section. Rates are KiB/s (0 = unlimited), as Transmission counts them. */
export const seedingConfig = z.object({
  listen_host: z.string().default('0.0.0.0'),
  listen_port: zPort.default(6881),
  download_dir: z.string().default(''),
  dht: z.boolean().default(true),
  dht_bootstrap: z.array(z.string().regex(/^[^\s:]+:\d{1,5}$/, 'must be host:port')).max(64).default([]),
  trackers: z.boolean().default(true),
  pex: z.boolean().default(true),
  ut_metadata: z.boolean().default(true),
  upload_limit_kib: z.int().min(0).default(0),
  download_limit_kib: z.int().min(0).default(0),
  torrent_upload_limit_kib: z.int().min(0).default(0),
  torrent_download_limit_kib: z.int().min(0).default(0),
  max_peers: z.int().min(1).max(100_000).default(500),
  max_peers_per_torrent: z.int().min(1).max(10_000).default(50),
  max_active_torrents: z.int().min(1).max(100_000).default(1000),
  upload_slots: z.int().min(1).max(1000).default(8),
  cache_mib: z.int().min(0).max(65_536).default(64),
  min_announce_interval: z.int().min(1).max(86_400).default(60),
  /** Re-announce on this period whatever trackers ask (0 = as they ask); for private swarms and tests. */
  announce_interval: z.int().min(0).max(86_400).default(0),
  /** How often the choker runs (seconds). */
  rechoke_seconds: z.number().min(0.1).max(600).default(10),
  // --- BitTorrent Speed (paid seeding). Prices are BTT per KiB. ---
  /** Upload slots sold by auction per torrent; 0 = paid seeding off (upload_slots by rate, as plain BitTorrent). */
  paid_slots: z.int().min(0).max(1000).default(4),
  /** With paid seeding on: slots by upload rate for peers that do not bid (legacy clients). */
  free_slots: z.int().min(0).max(1000).default(4),
  /** Optimistic unchokes (free), rotated every 30 s. */
  optimistic_slots: z.int().min(0).max(100).default(1),
  /** Bids are collected this long before the first auction of an idle torrent. */
  bid_window_seconds: z.number().min(0).max(600).default(2),
  /** Reserve-price growth per hour since another peer last proved possession (BTT per KiB). */
  reserve_growth_per_hour: zAmount.default(parseBtt('0.000001')),
  /** The reserve never exceeds this (BTT per KiB). */
  reserve_cap: zAmount.default(parseBtt('0.0001')),
  /** A fixed reserve for every torrent instead of the schedule (BTT per KiB); unset: the schedule. */
  reserve_fixed: zAmount.optional(),
  /** A payer's channel must hold at least this many pieces at its price. */
  min_deposit_pieces: z.int().min(1).max(1_000_000).default(2),
  /** A payer's channel must stay open at least this long (seconds). */
  min_channel_seconds: z.int().min(60).max(365 * 86_400).default(3600),
  /** The autopilot: bid-scrape `autopilot_trackers`, fetch and seed the best-paying torrents. */
  autopilot: z.boolean().default(false),
  /** Trackers to bid-scrape (their http(s) announce URLs). */
  autopilot_trackers: z.array(z.url({ protocol: /^https?$/ })).max(16).default([]),
  /** Seconds between autopilot rounds. */
  autopilot_interval_seconds: z.number().min(1).max(86_400).default(300),
  /** Disk the autopilot's torrents may take together (MiB). */
  autopilot_disk_budget_mib: z.int().min(0).default(10_240),
  /** Most torrents the autopilot holds at once. */
  autopilot_max_torrents: z.int().min(0).max(1000).default(10),
  /** Torrents whose clearing price is below this are not fetched (BTT per KiB). */
  autopilot_min_price: zAmount.default(0n),
  /** An autopilot torrent nobody paid for in this long is removed with its data (hours). */
  autopilot_drop_after_hours: z.number().min(0.001).max(8760).default(24),
  /** Infohashes the autopilot never drops / never fetches (and drops if it fetched them). */
  autopilot_pins: z.array(z.string().regex(/^[0-9a-fA-F]{40}$/, 'must be a 40-hex-digit infohash').transform(s => s.toLowerCase())).max(10_000).default([]),
  autopilot_bans: z.array(z.string().regex(/^[0-9a-fA-F]{40}$/, 'must be a 40-hex-digit infohash').transform(s => s.toLowerCase())).max(10_000).default([])
}).refine(c => !c.autopilot || c.autopilot_trackers.length > 0, { message: 'autopilot = true needs at least one autopilot_trackers URL', path: ['autopilot_trackers'] })
  .superRefine((c, ctx) => {
    for (const url of c.autopilot_trackers) {
      try {
        bidScrapeUrl(url)
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: (err as Error).message, path: ['autopilot_trackers'] })
      }
    }
  })


export type SeedingConfig = z.output<typeof seedingConfig>

export function engineOptions (config: SeedingConfig, dataDir: string, logger: EngineOptions['logger']): EngineOptions {
  return {
    dataDir,
    downloadDir: config.download_dir !== '' ? config.download_dir : join(dataDir, 'downloads'),
    listenHost: config.listen_host,
    port: config.listen_port,
    dht: config.dht,
    dhtBootstrap: config.dht_bootstrap,
    trackers: config.trackers,
    pex: config.pex,
    utMetadata: config.ut_metadata,
    uploadRate: config.upload_limit_kib * 1024,
    downloadRate: config.download_limit_kib * 1024,
    torrentUploadRate: config.torrent_upload_limit_kib * 1024,
    torrentDownloadRate: config.torrent_download_limit_kib * 1024,
    maxPeers: config.max_peers,
    maxPeersPerTorrent: config.max_peers_per_torrent,
    maxActiveTorrents: config.max_active_torrents,
    uploadSlots: config.upload_slots,
    cacheBytes: config.cache_mib * 1024 * 1024,
    minAnnounceInterval: config.min_announce_interval,
    announceInterval: config.announce_interval,
    rechokeIntervalMs: Math.round(config.rechoke_seconds * 1000),
    logger
  }
}

/** The provider side of BitTorrent Speed from the config (undefined when paid_slots = 0). */
export function speedOptions (config: SeedingConfig, payments: ServicePayments, logger: EngineOptions['logger']): SpeedOptions | undefined {
  if (config.paid_slots === 0) return undefined
  return {
    payments,
    logger,
    paidSlots: config.paid_slots,
    freeSlots: config.free_slots,
    optimisticSlots: config.optimistic_slots,
    bidWindowMs: Math.round(config.bid_window_seconds * 1000),
    reserve: {
      perHour: config.reserve_growth_per_hour,
      cap: config.reserve_cap,
      ...(config.reserve_fixed !== undefined ? { override: config.reserve_fixed } : {})
    },
    minDepositPieces: config.min_deposit_pieces,
    minExpirySeconds: config.min_channel_seconds
  }
}

const addBody = z.object({
  path: z.string().min(1).optional(),
  torrent: z.base64().optional(),
  torrent_path: z.string().min(1).optional(),
  magnet: z.string().min(1).max(16 * 1024).optional(),
  save_path: z.string().min(1).optional(),
  trackers: z.array(z.url({ protocol: /^(https?|udp)$/ })).max(64).optional(),
  piece_length: z.int().positive().optional(),
  private: z.boolean().optional(),
  paused: z.boolean().optional()
}).strict()

const STATUS: Record<string, 400 | 404 | 409> = {
  SEEDING_NOT_FOUND: 404,
  SEEDING_EXISTS: 409,
  SEEDING_BUSY: 409,
  SEEDING_NO_METADATA: 409,
  SEEDING_NOT_RUNNING: 409
}

/** Coded seeding errors → HTTP: the caller's input is 400, state conflicts 409, unknown 404. */
function httpError (err: unknown): Error & { status?: number } {
  if (isSeedingError(err)) {
    const status = STATUS[err.code] ?? (/^(TORRENT|MAGNET|BENCODE|SEEDING_BAD|SEEDING_INVALID)/.test(err.code) ? 400 : 500)
    return Object.assign(err, { status })
  }
  const e = err as NodeJS.ErrnoException
  if (e.code === 'ENOENT' || e.code === 'EACCES' || e.code === 'ENOTDIR') {
    return Object.assign(new SeedingError('SEEDING_BAD_PATH', e.message), { status: 400 })
  }
  return err as Error
}

function infoHashParam (c: Context): string {
  const ih = c.req.param('infoHash') ?? ''
  if (!/^[0-9a-fA-F]{40}$/.test(ih)) throw new SeedingError('SEEDING_INVALID_INFOHASH', `"${ih.slice(0, 64)}" is not a 40-hex-digit infohash`)
  return ih.toLowerCase()
}

/** Admin routes under /v1/services/seeding (the node serves them only while the service runs). */
export function seedingRoutes (running: () => Engine, autopilot: () => Autopilot | undefined = () => undefined): Hono {
  const app = new Hono()
  const wrap = (fn: (c: Context) => Promise<Response>) => async (c: Context): Promise<Response> => {
    try {
      return await fn(c)
    } catch (err) {
      throw httpError(err)
    }
  }
  app.get('/torrents', wrap(async c => c.json({ torrents: running().list() })))
  app.post('/torrents', wrap(async c => {
    let raw: unknown
    try {
      raw = await c.req.json()
    } catch {
      throw new SeedingError('SEEDING_INVALID_BODY', 'the body must be JSON')
    }
    const parsed = addBody.safeParse(raw)
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!
      throw new SeedingError('SEEDING_INVALID_BODY', `${issue.path.join('.') || 'body'}: ${issue.message}`)
    }
    const b = parsed.data
    const given = [b.path, b.torrent, b.torrent_path, b.magnet].filter(x => x !== undefined).length
    if (given !== 1) throw new SeedingError('SEEDING_INVALID_BODY', 'give exactly one of path, torrent, torrent_path, magnet')
    let source: AddSource
    if (b.path !== undefined) {
      source = { path: b.path, ...(b.piece_length !== undefined ? { pieceLength: b.piece_length } : {}), ...(b.private !== undefined ? { private: b.private } : {}) }
    } else if (b.magnet !== undefined) {
      source = { magnet: b.magnet }
    } else if (b.torrent !== undefined) {
      source = { torrent: Buffer.from(b.torrent, 'base64') }
    } else {
      const st = await stat(b.torrent_path!)
      if (st.size > MAX_TORRENT_FILE) throw new SeedingError('TORRENT_TOO_LARGE', `${b.torrent_path} is over ${MAX_TORRENT_FILE} bytes`)
      source = { torrent: await readFile(b.torrent_path!) }
    }
    const t = await running().add(source, {
      ...(b.save_path !== undefined ? { savePath: b.save_path } : {}),
      ...(b.trackers !== undefined ? { trackers: b.trackers } : {}),
      ...(b.paused !== undefined ? { paused: b.paused } : {})
    })
    return c.json({ torrent: t }, 201)
  }))
  app.get('/torrents/:infoHash', wrap(async c => c.json({ torrent: running().detail(infoHashParam(c)) })))
  app.delete('/torrents/:infoHash', wrap(async c => {
    const ih = infoHashParam(c)
    const deleteData = c.req.query('delete_data') === 'true'
    await running().remove(ih, { deleteData })
    return c.json({ removed: ih, deletedData: deleteData })
  }))
  app.post('/torrents/:infoHash/recheck', wrap(async c => c.json({ torrent: await running().recheck(infoHashParam(c)) })))
  app.post('/torrents/:infoHash/pause', wrap(async c => c.json({ torrent: await running().pause(infoHashParam(c)) })))
  app.post('/torrents/:infoHash/resume', wrap(async c => c.json({ torrent: await running().resumeTorrent(infoHashParam(c)) })))
  app.get('/status', wrap(async c => c.json(running().status())))
  app.get('/earnings', wrap(async c => c.json(running().earnings())))
  app.get('/bans', wrap(async c => c.json({ bans: running().bans() })))
  app.get('/autopilot', wrap(async c => c.json(autopilot()?.status() ?? { enabled: false })))
  return app
}

export const seedingService = defineService({
  name: 'seeding',
  description: 'BitTorrent seedbox with paid seeding (BitTorrent Speed): upload slots sold by auction, paid per piece',
  config: seedingConfig,
  create: ({ config, logger, dataDir, metrics, payments }) => {
    // the engine (sockets, SQLite, undici, the DHT) loads on start: a node with seeding switched
    // off carries none of it
    let engine: Engine | undefined
    let pilot: Autopilot | undefined
    const running = (): Engine => {
      if (engine === undefined) throw new SeedingError('SEEDING_NOT_RUNNING', 'the seeding engine is not running')
      return engine
    }
    const gauges = seedingMetrics(metrics)
    return {
      name: 'seeding',
      protocols: [],
      // paid seeding sells upload slots by auction; the headline price is the lowest a slot goes for
      // (the fixed reserve, else 0: the reserve schedule starts at 0 per torrent and grows)
      pricing: config.paid_slots > 0 ? [{ item: 'upload-slot', unit: 'KiB', price: config.reserve_fixed ?? 0n }] : [],
      adminRoutes: seedingRoutes(running, () => pilot),
      start: async () => {
        const { Engine } = await import('./engine.js')
        const speedOpts = speedOptions(config, payments, logger)
        const { Speed } = await import('./speed.js')
        const e = new Engine({ ...engineOptions(config, dataDir, logger), ...(speedOpts !== undefined ? { speed: new Speed(speedOpts) } : {}) })
        await e.start()
        engine = e
        gauges.attach(e)
        if (config.autopilot) {
          const { Autopilot } = await import('./autopilot.js')
          pilot = new Autopilot(e, dataDir, {
            trackers: config.autopilot_trackers,
            intervalMs: config.autopilot_interval_seconds * 1000,
            diskBudget: config.autopilot_disk_budget_mib * 1024 * 1024,
            maxTorrents: config.autopilot_max_torrents,
            minPrice: config.autopilot_min_price,
            dropAfterMs: config.autopilot_drop_after_hours * 3_600_000,
            pinned: config.autopilot_pins,
            banned: config.autopilot_bans,
            logger
          })
          await pilot.start()
        }
      },
      stop: async () => {
        await pilot?.stop()
        pilot = undefined
        gauges.attach(undefined)
        const e = engine
        engine = undefined
        await e?.stop()
      },
      status: () => engine?.status() ?? {},
      btPort: () => engine?.port
    }
  }
})
