import { Flags } from '@oclif/core'
import { BaseCommand } from '../../base.js'
import { parseDuration } from '../../format.js'
import { INFOHASH } from '../../seed-format.js'

/** host as it goes into a URL: IPv6 literals in brackets. */
function urlHost (host: string): string {
  return host.includes(':') ? `[${host}]` : host
}

export default class TrackerServe extends BaseCommand {
  static override description = 'Run a BitTorrent tracker (HTTP + UDP) with bid-announce and bid-scrape, until SIGINT/SIGTERM'
  static override enableJsonFlag = true
  static override examples = [
    '<%= config.bin %> tracker serve',
    '<%= config.bin %> tracker serve --host 0.0.0.0 --port 6969 --interval 30m',
    '<%= config.bin %> tracker serve --port 0 --udp-port 0 --json',
    '<%= config.bin %> tracker serve --no-udp --allow 0123456789abcdef0123456789abcdef01234567'
  ]

  static override flags = {
    host: Flags.string({ description: 'address to bind HTTP and UDP to (:: listens dual-stack)', default: '127.0.0.1' }),
    port: Flags.integer({ description: 'HTTP port (0: any free port)', default: 6969, min: 0, max: 65535 }),
    'udp-port': Flags.integer({ description: 'UDP port (0: any free port) [default: same as --port]', min: 0, max: 65535 }),
    udp: Flags.boolean({ description: 'serve UDP announces (BEP 15); --no-udp serves HTTP only', default: true, allowNo: true }),
    interval: Flags.string({ description: 'announce interval told to clients: 90s, 30m, 1h (peers expire after twice this)', default: '30m' }),
    allow: Flags.string({ description: 'track only these info hashes (40 hex digits; repeat the flag)', multiple: true }),
    'paid-slots': Flags.integer({ description: 'paid slots assumed by the bid-scrape clearing-price estimate', default: 4, min: 1, max: 1000 })
  }

  async run (): Promise<void> {
    const { flags } = await this.parse(TrackerServe)
    const { createTracker } = await import('@btt/tracker')
    let intervalMs: number
    try {
      intervalMs = parseDuration(flags.interval)
    } catch (err) {
      this.error(`--interval: ${(err as Error).message}`, { exit: 2 })
    }
    // the tracker's interval is whole seconds and bounded so `2 × interval` timers stay sane
    if (intervalMs > 7 * 86_400_000) this.error('--interval must be at most 7d', { exit: 2 })
    for (const h of flags.allow ?? []) {
      if (!INFOHASH.test(h)) this.error(`--allow "${h}" is not an infohash (40 hex digits)`, { exit: 2 })
    }
    if (flags['udp-port'] !== undefined && !flags.udp) this.error('--udp-port and --no-udp exclude each other', { exit: 2 })
    const udpPort = flags.udp ? (flags['udp-port'] ?? flags.port) : false

    let server: Awaited<ReturnType<typeof createTracker>>
    try {
      server = await createTracker({
        host: flags.host,
        httpPort: flags.port,
        udpPort,
        interval: intervalMs / 1000,
        paidSlots: flags['paid-slots'],
        ...(flags.allow !== undefined ? { allowList: flags.allow.map(h => h.toLowerCase()) } : {})
      })
    } catch (err) {
      this.error(`cannot listen on ${flags.host}: ${(err as Error).message}`, { exit: 1 })
    }

    const base = `http://${urlHost(flags.host)}:${server.httpPort}`
    const announceUrl = `${base}/announce`
    const udpUrl = udpPort === false ? undefined : `udp://${urlHost(flags.host)}:${server.udpPort}`
    const bidScrapeUrl = `${base}/bid-scrape`
    if (this.jsonEnabled()) {
      // one line, so a supervisor or test can read it as soon as it appears
      process.stdout.write(JSON.stringify({ http: announceUrl, udp: udpUrl ?? null, bidScrape: bidScrapeUrl, scrape: `${base}/scrape`, interval: intervalMs / 1000, paidSlots: flags['paid-slots'], allow: flags.allow?.map(h => h.toLowerCase()) ?? null }) + '\n')
    } else {
      this.log(`tracker listening on ${announceUrl} (${udpUrl ?? 'udp disabled'}), bid-scrape ${bidScrapeUrl}` +
        (flags.allow !== undefined ? `, ${flags.allow.length} info hash(es) allowed` : ''))
    }

    await this.serveUntilSignal(async () => { await server.close() })
  }
}
