import { formatBtt, parseBtt } from '@btt/channel'
import { Args, Flags } from '@oclif/core'
import { BaseCommand } from '../../base.js'
import { table } from '../../format.js'

/** Pages --all follows at most: 100 × 1000 swarms is more than a terminal or a script wants at once. */
const MAX_PAGES = 100
/** Per-request timeout: a tracker that does not answer a page within this is treated as unreachable. */
const REQUEST_TIMEOUT_MS = 30_000

/** One swarm as --json prints it: amounts are base units per KiB, as decimal strings. */
interface ScrapedSwarmJson {
  infoHash: string
  bidders: number
  bidMax: string
  bidMedian: string
  clearingPrice: string
  complete: number
  incomplete: number
  downloaded: number
}

export default class MarketScrape extends BaseCommand {
  static override description = 'List the swarms a tracker knows bids for (bid-scrape): bidders, highest, median and clearing bid in BTT per KiB'
  static override enableJsonFlag = true
  static override examples = [
    '<%= config.bin %> market scrape http://127.0.0.1:6969/announce',
    '<%= config.bin %> market scrape http://tracker.example:6969/announce --min-bid 0.000001 --limit 20',
    '<%= config.bin %> market scrape http://tracker.example:6969/bid-scrape --all --json'
  ]

  static override args = {
    tracker: Args.string({ description: 'the tracker\'s announce (or bid-scrape) URL', required: true })
  }

  static override flags = {
    'min-bid': Flags.string({ description: 'only swarms whose highest bid is at least this many BTT per KiB' }),
    limit: Flags.integer({ description: 'swarms per page, 1..1000 [tracker default: 100]', min: 1, max: 1000 }),
    cursor: Flags.string({ description: 'continue from the `next` cursor a previous page printed' }),
    all: Flags.boolean({ description: `follow next cursors to the end (at most ${MAX_PAGES} pages)` })
  }

  async run (): Promise<{ url: string, files: ScrapedSwarmJson[], next?: string }> {
    const { args, flags } = await this.parse(MarketScrape)
    const { bidScrape, bidScrapeUrl, TrackerError } = await import('@btt/tracker')
    let url: string
    let minBid: bigint | undefined
    try {
      url = bidScrapeUrl(args.tracker)
    } catch (err) {
      this.error((err as Error).message, { exit: 2 })
    }
    if (flags['min-bid'] !== undefined) {
      try {
        minBid = parseBtt(flags['min-bid'])
      } catch (err) {
        this.error(`--min-bid: ${(err as Error).message}`, { exit: 2 })
      }
    }

    const files: ScrapedSwarmJson[] = []
    let cursor = flags.cursor
    let next: string | undefined
    for (let page = 0; page < (flags.all ? MAX_PAGES : 1); page++) {
      let res: Awaited<ReturnType<typeof bidScrape>>
      try {
        res = await bidScrape(url, {
          ...(minBid !== undefined ? { minBid } : {}),
          ...(flags.limit !== undefined ? { limit: flags.limit } : {}),
          ...(cursor !== undefined ? { cursor } : {})
        }, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) })
      } catch (err) {
        if (err instanceof TrackerError) this.error(`tracker ${url}: ${err.message}`, { exit: 1, code: err.code })
        const e = err as Error & { cause?: { code?: string, message?: string } }
        const why = e.name === 'TimeoutError' ? `no answer within ${REQUEST_TIMEOUT_MS / 1000} s` : (e.cause?.code ?? e.cause?.message ?? e.message)
        this.error(`cannot reach tracker ${url}: ${why}`, { exit: 1 })
      }
      for (const f of res.files) {
        files.push({
          infoHash: Buffer.from(f.infoHash).toString('hex'),
          bidders: f.bidders,
          bidMax: f.bidMax.toString(),
          bidMedian: f.bidMedian.toString(),
          clearingPrice: f.clearingPrice.toString(),
          complete: f.complete,
          incomplete: f.incomplete,
          downloaded: f.downloaded
        })
      }
      next = res.next
      if (next === undefined) break
      cursor = next
    }

    if (files.length === 0) {
      this.log(minBid !== undefined ? `no swarm with a bid of at least ${formatBtt(minBid)} BTT/KiB on ${url}` : `no swarm with bids on ${url}`)
    } else {
      this.log(table(['INFOHASH', 'BIDDERS', 'HIGHEST', 'MEDIAN', 'CLEARING', 'SEEDS', 'PEERS'],
        files.map(f => [f.infoHash, String(f.bidders), formatBtt(BigInt(f.bidMax)), formatBtt(BigInt(f.bidMedian)),
          formatBtt(BigInt(f.clearingPrice)), String(f.complete), String(f.complete + f.incomplete)])))
      this.log(`${files.length} swarm(s); bids in BTT per KiB, announced by peers and unverified`)
    }
    if (next !== undefined) {
      this.log(flags.all
        ? `stopped after ${MAX_PAGES} pages; continue with --cursor ${next}`
        : `more swarms follow: --cursor ${next} (or --all)`)
    }
    return { url, files, ...(next !== undefined ? { next } : {}) }
  }
}
