import { readFile, rename } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { planAutopilot, type Decision, type HeldTorrent, type ScrapedTorrent } from '@btt/market'
import { writeFileAtomic } from '@btt/node'
import { bidScrape, bidScrapeUrl } from '@btt/tracker'
import type { Logger } from 'pino'
import type { Engine } from './engine.js'

export interface AutopilotOptions {
  /** Announce URLs of the trackers to bid-scrape (http/https). */
  trackers: string[]
  intervalMs: number
  diskBudget: number
  maxTorrents: number
  /** Base units per KiB. */
  minPrice: bigint
  dropAfterMs: number
  pinned: string[]
  banned: string[]
  /** Pages of 100 read from each tracker per round. */
  maxPages?: number
  logger: Logger
  now?: () => number
}

export interface AutopilotStatus {
  enabled: true
  trackers: string[]
  intervalSeconds: number
  lastRunAt?: number
  nextRunAt?: number
  /** Every decision of the last round (held torrents and candidates), with its reason. */
  decisions: Array<Omit<Decision, 'score'> & { score?: string }>
  /** Trackers that could not be read in the last round. */
  errors: Array<{ tracker: string, error: string }>
  /** Torrents the autopilot added and holds, with when. */
  torrents: Array<{ infoHash: string, addedAt: number, tracker: string, reason: string }>
}

/** A torrent the autopilot added: when, from which tracker's listing, and why. */
interface Record_ { addedAt: number, tracker: string, reason: string }

/**
 * The seeding autopilot: every interval it bid-scrapes its trackers, plans with `planAutopilot`
 * (@btt/market) and carries the plan out on the engine: adds the best-paying torrents as magnets
 * announced to the tracker that listed them, removes (with their data) the ones it added that
 * stopped paying. It only ever removes torrents it added; which those are is kept in
 * `<dataDir>/autopilot.json`, so a restart does not hand the operator's torrents to it.
 */
export class Autopilot {
  private readonly held = new Map<string, Record_>()
  private timer: NodeJS.Timeout | undefined
  private running: Promise<void> | undefined
  private last: { at: number, decisions: Decision[], errors: Array<{ tracker: string, error: string }> } | undefined
  private nextAt: number | undefined
  private readonly now: () => number
  private readonly file: string
  /** Every autopilot torrent downloads into a folder of its own here, so dropping it with its data can only ever delete what it downloaded. */
  private readonly dir: string
  private readonly abort = new AbortController()

  constructor (private readonly engine: Engine, dataDir: string, private readonly opts: AutopilotOptions) {
    this.now = opts.now ?? Date.now
    this.file = join(dataDir, 'autopilot.json')
    this.dir = resolve(dataDir, 'autopilot')
    for (const t of opts.trackers) bidScrapeUrl(t) // throws on a URL it cannot use, at start
  }

  private folderOf (infoHash: string): string {
    return join(this.dir, infoHash)
  }

  async start (): Promise<void> {
    try {
      const saved = JSON.parse(await readFile(this.file, 'utf8')) as { torrents?: Record<string, Record_> }
      for (const [ih, r] of Object.entries(saved.torrents ?? {})) {
        if (/^[0-9a-f]{40}$/.test(ih) && typeof r.addedAt === 'number' && typeof r.tracker === 'string') this.held.set(ih, { addedAt: r.addedAt, tracker: r.tracker, reason: typeof r.reason === 'string' ? r.reason : '' })
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        // kept aside, not overwritten: the operator can see (and restore) what the autopilot held
        const aside = `${this.file}.corrupt-${this.now()}`
        await rename(this.file, aside).catch(() => {})
        this.opts.logger.warn({ err, movedTo: aside }, 'autopilot.json unreadable: moved aside; the autopilot starts with no torrents of its own')
      }
    }
    this.schedule(0)
  }

  async stop (): Promise<void> {
    // a round in progress gives up its tracker requests at once
    this.abort.abort()
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
    this.nextAt = undefined
    await this.running
  }

  private schedule (ms: number): void {
    this.nextAt = this.now() + ms
    this.timer = setTimeout(() => {
      this.running = this.runOnce().then(() => {}, (err: unknown) => { this.opts.logger.error({ err }, 'autopilot round failed') }).finally(() => {
        this.running = undefined
        if (this.timer !== undefined) this.schedule(this.opts.intervalMs)
      })
    }, ms)
    this.timer.unref()
  }

  /** One round: scrape, plan, act. Exposed for tests and for `autopilot run`. */
  async runOnce (): Promise<Decision[]> {
    const { scraped, sources, errors } = await this.scrape()
    const now = this.now()
    const list = this.engine.list()
    // ours = recorded by us AND still downloading into our folder for it: a torrent the operator
    // removed and added again (elsewhere), or an infohash hand-written into autopilot.json, is not
    const folders = new Map(list.map(t => [t.infoHash, resolve(t.savePath)]))
    let changed = false
    for (const ih of this.held.keys()) if (folders.get(ih) !== this.folderOf(ih)) changed = this.held.delete(ih)
    const lastPaid = new Map<string, number>()
    for (const t of this.engine.earnings().torrents) {
      for (const p of t.payers) lastPaid.set(t.infoHash, Math.max(lastPaid.get(t.infoHash) ?? 0, p.updatedAt))
    }
    const held: HeldTorrent[] = list.map(t => {
      const own = this.held.get(t.infoHash)
      const paid = lastPaid.get(t.infoHash)
      return { infoHash: t.infoHash, size: t.size, addedAt: own?.addedAt ?? 0, byAutopilot: own !== undefined, ...(paid !== undefined && own !== undefined && paid >= own.addedAt ? { lastPaidAt: paid } : {}) }
    })
    const decisions = planAutopilot(scraped, held, {
      diskBudget: this.opts.diskBudget,
      maxTorrents: this.opts.maxTorrents,
      minPrice: this.opts.minPrice,
      dropAfterMs: this.opts.dropAfterMs,
      pinned: new Set(this.opts.pinned),
      banned: new Set(this.opts.banned)
    }, now)
    for (const d of decisions) {
      try {
        if (d.action === 'add') {
          const tracker = sources.get(d.infoHash)!
          await this.engine.add({ magnet: `magnet:?xt=urn:btih:${d.infoHash}&tr=${encodeURIComponent(tracker)}` }, { savePath: this.folderOf(d.infoHash) })
          this.held.set(d.infoHash, { addedAt: now, tracker, reason: d.reason })
          await this.save()
          this.opts.logger.info({ infoHash: d.infoHash, reason: d.reason }, 'autopilot: fetching a torrent')
        } else if (d.action === 'drop') {
          await this.engine.remove(d.infoHash, { deleteData: true })
          this.held.delete(d.infoHash)
          changed = true
          this.opts.logger.info({ infoHash: d.infoHash, reason: d.reason }, 'autopilot: dropped a torrent')
        }
      } catch (err) {
        errors.push({ tracker: '', error: `${d.action} ${d.infoHash}: ${(err as Error).message}` })
      }
    }
    // adds were saved as they happened; a round that forgot or dropped torrents saves once here
    if (changed) await this.save()
    this.last = { at: now, decisions, errors }
    return decisions
  }

  /** bid-scrape every tracker; a torrent listed by several keeps its best figures. */
  private async scrape (): Promise<{ scraped: ScrapedTorrent[], sources: Map<string, string>, errors: Array<{ tracker: string, error: string }> }> {
    const best = new Map<string, ScrapedTorrent>()
    const sources = new Map<string, string>()
    const errors: Array<{ tracker: string, error: string }> = []
    for (const tracker of this.opts.trackers) {
      try {
        let cursor: string | undefined
        for (let page = 0; page < (this.opts.maxPages ?? 10); page++) {
          const res = await bidScrape(bidScrapeUrl(tracker), { limit: 100, ...(cursor !== undefined ? { cursor } : {}) }, { signal: AbortSignal.any([this.abort.signal, AbortSignal.timeout(15_000)]) })
          for (const f of res.files) {
            const ih = Buffer.from(f.infoHash).toString('hex')
            const s: ScrapedTorrent = { infoHash: ih, bidders: f.bidders, bidMax: f.bidMax, clearingPrice: f.clearingPrice, seeders: f.complete, leechers: f.incomplete }
            const prev = best.get(ih)
            if (prev === undefined || s.clearingPrice * BigInt(s.bidders) > prev.clearingPrice * BigInt(prev.bidders)) {
              best.set(ih, s)
              sources.set(ih, tracker)
            }
          }
          cursor = res.next
          if (cursor === undefined) break
        }
      } catch (err) {
        errors.push({ tracker, error: (err as Error).message })
      }
    }
    return { scraped: [...best.values()], sources, errors }
  }

  private async save (): Promise<void> {
    await writeFileAtomic(this.file, JSON.stringify({ torrents: Object.fromEntries(this.held) }, null, 2), 0o600)
  }

  status (): AutopilotStatus {
    return {
      enabled: true,
      trackers: this.opts.trackers,
      intervalSeconds: this.opts.intervalMs / 1000,
      ...(this.last !== undefined ? { lastRunAt: this.last.at } : {}),
      ...(this.nextAt !== undefined ? { nextRunAt: this.nextAt } : {}),
      decisions: (this.last?.decisions ?? []).map(({ score, ...d }) => ({ ...d, ...(score !== undefined ? { score: score.toString() } : {}) })),
      errors: this.last?.errors ?? [],
      torrents: [...this.held].map(([infoHash, r]) => ({ infoHash, ...r }))
    }
  }
}
