import { Gauge, type Registry } from 'prom-client'
import type { Engine } from './engine.js'

const BASE_UNITS_PER_BTT = 10n ** 18n

/** The engine the metrics read, per registry: a service re-created on enable must not register twice. */
const holders = new WeakMap<Registry, { engine?: Engine }>()

/**
 * Prometheus gauges read from the running engine at scrape time: torrents by state, peers, rates,
 * lifetime bytes, disk counters, and paid-seeding earnings and bans. Registered once per registry; `attach` points them at the
 * engine of the current service instance.
 */
export function seedingMetrics (registry: Registry): { attach (engine: Engine | undefined): void } {
  let holder = holders.get(registry)
  if (holder === undefined) {
    const h: { engine?: Engine } = {}
    holder = h
    holders.set(registry, h)
    const torrents = (): Engine['torrents'] | undefined => h.engine?.torrents
    new Gauge({
      name: 'btt_seeding_torrents',
      help: 'Torrents by state',
      labelNames: ['state'] as const,
      registers: [registry],
      collect () {
        this.reset()
        for (const t of torrents()?.values() ?? []) this.inc({ state: t.state })
      }
    })
    const sum = (name: string, help: string, f: (t: NonNullable<ReturnType<typeof torrents>> extends Map<string, infer T> ? T : never) => number): void => {
      new Gauge({
        name,
        help,
        registers: [registry],
        collect () {
          let n = 0
          for (const t of torrents()?.values() ?? []) n += f(t)
          this.set(n)
        }
      })
    }
    sum('btt_seeding_peers', 'Connected BitTorrent peers', t => t.peers.size)
    sum('btt_seeding_upload_rate_bytes', 'Upload rate over the last 5 s, bytes per second', t => t.up.rate)
    sum('btt_seeding_download_rate_bytes', 'Download rate over the last 5 s, bytes per second', t => t.down.rate)
    sum('btt_seeding_uploaded_bytes', 'Bytes uploaded by the torrents now present, over their lives', t => t.uploaded)
    sum('btt_seeding_downloaded_bytes', 'Bytes downloaded by the torrents now present, over their lives', t => t.downloaded)
    new Gauge({
      name: 'btt_seeding_disk_bytes',
      help: 'Bytes the engine read, hashed and wrote since the process started',
      labelNames: ['op'] as const,
      registers: [registry],
      collect () {
        const disk = h.engine?.status().disk as { readBytes: number, hashedBytes: number, writtenBytes: number } | undefined
        this.set({ op: 'read' }, disk?.readBytes ?? 0)
        this.set({ op: 'hashed' }, disk?.hashedBytes ?? 0)
        this.set({ op: 'written' }, disk?.writtenBytes ?? 0)
      }
    })
    // prom-client values are float64: exact amounts (bigint base units) stay in the admin API
    new Gauge({
      name: 'btt_seeding_earned_base_units',
      help: 'Base units (1e-18 BTT) paid seeding earned since the process started; a float, exact only below 2^53 (~0.009 BTT): exact totals are in GET /v1/services/seeding/earnings',
      registers: [registry],
      collect () { this.set(Number(h.engine?.earned ?? 0n)) }
    })
    new Gauge({
      name: 'btt_seeding_earned_btt',
      help: 'BTT paid seeding earned since the process started, as a float for dashboards (not exact); exact base units are in GET /v1/services/seeding/earnings',
      registers: [registry],
      collect () { this.set(toBtt(h.engine?.earned ?? 0n)) }
    })
    new Gauge({
      name: 'btt_seeding_paid_payments',
      help: 'Payments (vouchers, about one per piece) credited by paid seeding since the process started',
      registers: [registry],
      collect () { this.set(h.engine?.payments ?? 0) }
    })
    new Gauge({
      name: 'btt_seeding_paid_bytes',
      help: 'Bytes those payments paid for, since the process started',
      registers: [registry],
      collect () { this.set(h.engine?.paidBytes ?? 0) }
    })
    new Gauge({
      name: 'btt_seeding_payment_refusals',
      help: 'Payments refused since the process started, by reason (error code)',
      labelNames: ['reason'] as const,
      registers: [registry],
      collect () {
        this.reset()
        for (const [reason, n] of h.engine?.paymentRefusals ?? []) this.set({ reason }, n)
      }
    })
    new Gauge({
      name: 'btt_seeding_paid_bans',
      help: 'Payers (wallet keys) banned now for not paying',
      registers: [registry],
      collect () { this.set(h.engine?.bans().length ?? 0) }
    })
  }
  const hold = holder
  return { attach (engine) { hold.engine = engine } }
}

/** Base units as a float of BTT: whole BTT and the fraction apart, so values past 2^53 base units keep their leading digits. */
function toBtt (baseUnits: bigint): number {
  return Number(baseUnits / BASE_UNITS_PER_BTT) + Number(baseUnits % BASE_UNITS_PER_BTT) / 1e18
}
