import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Discovery, OfferInput, ServiceName } from '@btt/discovery'
import type { Logger } from 'pino'
import type { Ed25519KeyPair } from './keys.js'
import { writeFileAtomic } from './fs.js'
import type { PriceItem } from './service.js'

/** The services a DHT offer can list (@btt/discovery's SERVICES). */
const OFFERABLE: readonly string[] = ['seeding', 'storage', 'proxy']
/** @btt/discovery's caps: at most 8 addresses of at most 256 characters. */
const MAX_OFFER_ADDRS = 8
const MAX_ADDR_CHARS = 256
/** A node restarted within this long of its last stop must not reuse a seq; see `firstSeq`. */
const STATE_FILE = 'discovery.json'
/** After a failed publish (DHT unreachable, bootstrap down) try again this much later. */
const RETRY_MS = 60_000
/** Joining the DHT gives up after this long (no route, every bootstrap node down); retried later. */
const START_TIMEOUT_MS = 30_000

export interface OfferPublisherInit {
  config: { enabled: boolean, bootstrap: string[], host: string, port: number }
  identity: Ed25519KeyPair
  /** `<home>/data`: the last published seq is kept in `discovery.json` there. */
  dataDir: string
  logger: Logger
  /** Running services with what they sell. */
  running: () => Array<{ name: string, pricing: readonly PriceItem[], btPort?: number }>
  /** The libp2p addresses others dial (ending in /p2p/<peer id>). */
  addrs: () => string[]
  ledgerId: () => string
  /** For tests: refresh interval and offer lifetime. */
  refreshIntervalMs?: number
  ttlSeconds?: number
}

export interface OfferStatus {
  enabled: boolean
  /** off: disabled; idle: nothing to offer; publishing; published; failed (see error). */
  state: 'off' | 'idle' | 'publishing' | 'published' | 'failed'
  seq: number
  services: string[]
  dht?: { host: string, port: number }
  publishedAt?: string
  error?: string
}

/**
 * Keeps this node's signed offer on the mainline DHT (BEP 44, @btt/discovery) in step with what it
 * sells: the running services that have a price, the libp2p addresses, the BitTorrent port and the
 * ledger id. The DHT node starts with the first offerable service and the offer is republished
 * whenever a service starts or stops; with nothing to sell the node stops refreshing it, so it
 * expires. Publishing runs in the background: an unreachable DHT never delays or fails the node.
 */
export class OfferPublisher {
  private dht: Discovery | undefined
  private started = false
  private stopped = false
  private last = ''
  private chain: Promise<void> = Promise.resolve()
  private retry: NodeJS.Timeout | undefined
  private current: OfferStatus

  constructor (private readonly init: OfferPublisherInit) {
    this.current = { enabled: init.config.enabled, state: init.config.enabled ? 'idle' : 'off', seq: 0, services: [] }
  }

  status (): OfferStatus {
    return { ...this.current, services: [...this.current.services] }
  }

  start (): void {
    this.started = true
    this.update()
  }

  /** Re-read what the node sells and publish or withdraw the offer (queued; never throws). */
  update (): void {
    if (!this.started || this.stopped || !this.init.config.enabled) return
    clearTimeout(this.retry)
    this.chain = this.chain.then(async () => { await this.sync() }).catch((err: unknown) => {
      if (this.stopped) return
      this.current.state = 'failed'
      this.current.error = (err as Error).message
      this.init.logger.warn({ err }, `could not publish the offer on the DHT; retrying in ${RETRY_MS / 1000} s`)
      this.retry = setTimeout(() => { this.update() }, RETRY_MS)
      this.retry.unref()
    })
  }

  async stop (): Promise<void> {
    this.stopped = true
    clearTimeout(this.retry)
    const dht = this.dht
    this.dht = undefined
    // a bootstrap that never finishes (no route to the DHT) must not hold the shutdown
    await Promise.race([this.chain, new Promise(resolve => setTimeout(resolve, 1000).unref())])
    if (dht !== undefined) {
      await dht.unpublish().catch(() => {})
      await dht.stop().catch(() => {})
    }
  }

  /** The offer this node would publish now, or undefined when it sells nothing offerable. */
  private offer (): OfferInput | undefined {
    const services: ServiceName[] = []
    const prices: Partial<Record<ServiceName, bigint>> = {}
    let btPort: number | undefined
    for (const s of this.init.running()) {
      if (!OFFERABLE.includes(s.name) || s.pricing.length === 0) continue
      const name = s.name as ServiceName
      services.push(name)
      // the first item is the service's headline price (seeding: the reserve per KiB)
      prices[name] = (s.pricing[0] as PriceItem).price
      if (s.btPort !== undefined && s.btPort > 0) btPort = s.btPort
    }
    if (services.length === 0) return undefined
    const addrs = this.init.addrs().filter(a => a.length <= MAX_ADDR_CHARS).slice(0, MAX_OFFER_ADDRS)
    return { services, prices, addrs, ledger: this.init.ledgerId(), ...(btPort !== undefined ? { bt_port: btPort } : {}) }
  }

  private async sync (): Promise<void> {
    if (this.stopped) return
    const offer = this.offer()
    const key = offer === undefined ? '' : JSON.stringify(offer, (_k, v: unknown) => typeof v === 'bigint' ? v.toString() : v)
    if (key === this.last) return
    if (offer === undefined) {
      await this.dht?.unpublish()
      this.last = ''
      this.current = { ...this.current, state: 'idle', services: [] }
      delete this.current.error
      this.init.logger.info('nothing to offer: the DHT offer is no longer refreshed and expires')
      return
    }
    this.current.state = 'publishing'
    const dht = await this.ensureDht()
    if (this.stopped) return
    const res = await dht.publish(offer)
    this.last = key
    this.current = { ...this.current, state: 'published', seq: res.seq, services: [...offer.services], publishedAt: new Date().toISOString() }
    delete this.current.error
    this.init.logger.info({ seq: res.seq, services: offer.services, storedOn: res.stored }, 'offer published on the DHT')
  }

  private async ensureDht (): Promise<Discovery> {
    if (this.dht !== undefined) return this.dht
    const { Discovery } = await import('@btt/discovery')
    const seq = await this.firstSeq()
    const bootstrap = this.init.config.bootstrap
    const dht = new Discovery({
      keyPair: this.init.identity,
      bootstrap: bootstrap.length > 0 ? bootstrap : false,
      host: this.init.config.host,
      port: this.init.config.port,
      seq,
      ...(this.init.refreshIntervalMs !== undefined ? { refreshIntervalMs: this.init.refreshIntervalMs } : {}),
      ...(this.init.ttlSeconds !== undefined ? { ttlSeconds: this.init.ttlSeconds } : {}),
      onSeq: s => {
        this.current.seq = s
        this.saveSeq(s).catch((err: unknown) => { this.init.logger.warn({ err }, 'could not save the DHT offer seq') })
      },
      onError: err => {
        this.current.error = err.message
        this.init.logger.warn({ err }, 'DHT error')
      }
    })
    let timer: NodeJS.Timeout | undefined
    try {
      await Promise.race([
        dht.start(),
        new Promise((_resolve, reject) => {
          timer = setTimeout(() => { reject(new Error(`could not join the DHT through ${bootstrap.join(', ') || 'no bootstrap node'} within ${START_TIMEOUT_MS / 1000} s`)) }, START_TIMEOUT_MS)
        })
      ])
    } catch (err) {
      await dht.stop().catch(() => {})
      throw err
    } finally {
      clearTimeout(timer)
    }
    if (this.stopped) {
      await dht.stop().catch(() => {})
      throw new Error('stopped')
    }
    this.dht = dht
    this.current.dht = dht.address()
    this.init.logger.info({ dht: this.current.dht, bootstrap }, 'DHT node started')
    return dht
  }

  /**
   * The seq to count up from. BEP 44 nodes keep the highest seq they saw and refuse a lower one, so
   * a seq must never be reused: the saved one, or the clock in seconds when that is higher (a lost
   * or restored-from-backup state file would otherwise restart at an old number; refreshes add one
   * per 30 minutes, far slower than the clock).
   */
  private async firstSeq (): Promise<number> {
    let saved = 0
    try {
      const parsed = JSON.parse(await readFile(join(this.init.dataDir, STATE_FILE), 'utf8')) as { seq?: unknown }
      if (typeof parsed.seq === 'number' && Number.isSafeInteger(parsed.seq) && parsed.seq >= 0) saved = parsed.seq
    } catch {}
    return Math.max(saved, Math.floor(Date.now() / 1000))
  }

  private async saveSeq (seq: number): Promise<void> {
    await writeFileAtomic(join(this.init.dataDir, STATE_FILE), JSON.stringify({ seq }) + '\n', 0o600)
  }
}
