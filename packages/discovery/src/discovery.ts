import DHT, { type DHTPeer, type KrpcMessage, type RpcPeer } from 'bittorrent-dht'
import {
  DEFAULT_FIND_LIMIT, DEFAULT_FIND_TIMEOUT_MS, DEFAULT_REFRESH_INTERVAL_MS, DEFAULT_TTL_SECONDS, OFFER_SALT, PK_QUERY
} from './constants.js'
import { DiscoveryError } from './errors.js'
import {
  mutableTarget, serviceInfohash, signOffer, verifyItem, verifySignature,
  type KeyPair, type Offer, type ServiceName, type VerifiedOffer
} from './offers.js'

export interface DiscoveryInit {
  /** The node's ed25519 identity key pair (libsodium layout). */
  keyPair: KeyPair
  /** DHT bootstrap nodes ("host:port" or {host, port}); false (default) starts a lone node. */
  bootstrap?: false | Array<string | DHTPeer>
  /** Address and UDP port to bind the DHT to (default 0.0.0.0, random port). */
  host?: string
  port?: number
  /** Last seq the caller persisted; the first publish uses seq + 1. */
  seq?: number
  /** Re-put interval; must be well below the offer ttl (default 30 min). */
  refreshIntervalMs?: number
  /** Offer lifetime set on each (re)publish when the offer has no exp (default 2 h). */
  ttlSeconds?: number
  /** Per-query KRPC timeout (default 2000 ms, bittorrent-dht's). */
  queryTimeoutMs?: number
  /** Clock in ms, for tests. */
  now?: () => number
  /** Called after each successful publish or refresh with the new seq (persist it). */
  onSeq?: (seq: number) => void
  /** Called when a background refresh fails. */
  onError?: (err: Error) => void
}

export type OfferInput = Omit<Offer, 'exp' | 'v'> & { exp?: number, v?: 1 }

export interface FindOptions {
  timeoutMs?: number
  limit?: number
  /** Public keys to try besides those the service lookup yields. */
  candidates?: Uint8Array[]
}

export interface PublishResult {
  seq: number
  target: Buffer
  /** DHT nodes that stored the item. */
  stored: number
}

/**
 * Mainline DHT discovery: BEP 44 signed offers under SHA-1(pk ‖ "btt-offer"), BEP 5 announces on
 * SHA-1("btt-service:" + name), and a `btt_pk` KRPC query that maps an announced address to the key
 * whose offer the requester then fetches and verifies. See docs/discovery.md.
 */
export class Discovery {
  private readonly init: DiscoveryInit
  private readonly dht: DHT
  private readonly now: () => number
  private currentSeq: number
  private published: OfferInput | null = null
  private timer: NodeJS.Timeout | null = null
  private puts: Promise<void> = Promise.resolve()
  private started = false
  private readonly highestSeq = new Map<string, number>()
  private readonly onQuery = (query: KrpcMessage, peer: RpcPeer): void => { this.answerPkQuery(query, peer) }

  constructor (init: DiscoveryInit) {
    this.init = init
    this.now = init.now ?? Date.now
    this.currentSeq = init.seq ?? 0
    this.dht = new DHT({
      bootstrap: init.bootstrap ?? false,
      host: false,
      verify: verifySignature,
      ...(init.queryTimeoutMs !== undefined ? { timeout: init.queryTimeoutMs } : {})
    })
    this.dht.on('error', (err: Error) => init.onError?.(err))
    this.dht.on('warning', () => {})
  }

  /** Bind the UDP socket and wait until bootstrap is done. */
  async start (): Promise<void> {
    if (this.started) return
    const ready = new Promise<void>(resolve => { if (this.dht.ready) resolve(); else this.dht.once('ready', () => resolve()) })
    await new Promise<void>(resolve => this.dht.listen(this.init.port ?? 0, this.init.host ?? '0.0.0.0', resolve))
    await ready
    this.dht._rpc.on('query', this.onQuery)
    this.started = true
  }

  async stop (): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
    this.dht._rpc.removeListener('query', this.onQuery)
    await new Promise<void>(resolve => this.dht.destroy(() => resolve()))
    this.started = false
  }

  /** The bound UDP address (for bootstrapping others). */
  address (): { host: string, port: number } {
    const a = this.dht.address()
    return { host: a.address, port: a.port }
  }

  /** The seq of the last published item (persist it and pass it back as `seq` on restart). */
  get seq (): number { return this.currentSeq }

  get publicKey (): Uint8Array { return this.init.keyPair.publicKey }

  /**
   * Sign and put the offer with seq + 1, announce on each offered service's infohash, and re-put it
   * every `refreshIntervalMs` with a fresh exp and seq + 1 until stop().
   */
  async publish (offer: OfferInput): Promise<PublishResult> {
    this.assertStarted()
    this.published = offer
    const res = await this.put()
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = setInterval(() => {
      this.put().catch(err => this.init.onError?.(err as Error))
    }, this.init.refreshIntervalMs ?? DEFAULT_REFRESH_INTERVAL_MS)
    this.timer.unref()
    return res
  }

  /**
   * Stop refreshing and stop answering `btt_pk`. The last item stays on the DHT until its exp (readers
   * reject it after that) or until storing nodes drop it (about 2 h on mainline).
   */
  async unpublish (): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
    this.published = null
    // a put already under way finishes (its seq is on the DHT and must be remembered)
    await this.puts
  }

  /** Puts run one at a time: two refreshes racing would sign the same seq twice. */
  private async put (): Promise<PublishResult> {
    const p = this.puts.then(async () => await this.putOnce())
    this.puts = p.then(() => {}, () => {})
    return await p
  }

  private async putOnce (): Promise<PublishResult> {
    const input = this.published
    if (input === null) throw new DiscoveryError('DISCOVERY_NOT_STARTED', 'nothing published')
    const ttl = this.init.ttlSeconds ?? DEFAULT_TTL_SECONDS
    const offer: Offer = {
      ...input,
      exp: input.exp ?? Math.floor(this.now() / 1000) + ttl,
      v: 1
    }
    const seq = this.currentSeq + 1
    // signOffer validates and enforces the 1000-byte limit before anything leaves the node
    const item = signOffer(offer, { seq, keyPair: this.init.keyPair })
    const stored = await new Promise<{ target: Buffer, n: number }>((resolve, reject) => {
      this.dht.put({ k: Buffer.from(item.k), v: Buffer.from(item.v), seq, salt: Buffer.from(item.salt as Uint8Array), sig: Buffer.from(item.sig) },
        (err, target, n) => {
          if (err !== null && err !== undefined) reject(new DiscoveryError('DISCOVERY_PUT_FAILED', `BEP 44 put failed: ${err.message}`, { cause: err }))
          else resolve({ target, n })
        })
    })
    this.currentSeq = seq
    this.init.onSeq?.(seq)
    await Promise.all(offer.services.map(async s => await new Promise<void>(resolve => {
      // port 0 → implied_port: the announced port is our DHT UDP port, which answers btt_pk
      this.dht.announce(serviceInfohash(s), 0, () => resolve())
    })))
    return { seq, target: stored.target, stored: stored.n }
  }

  /** Fetch and verify one node's current offer; null if none is found or it does not verify. */
  async getOffer (publicKey: Uint8Array): Promise<VerifiedOffer | null> {
    this.assertStarted()
    const salt = Buffer.from(OFFER_SALT)
    const target = mutableTarget(publicKey, salt)
    const res = await new Promise<ReturnType<typeof toItem>>(resolve => {
      this.dht.get(target, { salt, verify: verifySignature, cache: false }, (err, r) => resolve(err !== null ? null : toItem(r)))
    })
    if (res === null) return null
    const key = target.toString('hex')
    const seen = this.highestSeq.get(key)
    const verified = verifyItem(res, {
      target, publicKey, now: this.now(), ...(seen !== undefined ? { minSeq: seen } : {})
    })
    this.highestSeq.set(key, verified.seq)
    return verified
  }

  /**
   * Find providers of `service`: look up its infohash, ask each announced address for its key
   * (`btt_pk`), fetch that key's offer from the DHT and verify it. Resolves at `limit` offers, when
   * the lookup and all fetches are done, or at `timeoutMs`, with what verified so far.
   */
  async findProviders (service: ServiceName, opts: FindOptions = {}): Promise<VerifiedOffer[]> {
    this.assertStarted()
    const limit = opts.limit ?? DEFAULT_FIND_LIMIT
    const infoHash = serviceInfohash(service)
    const found = new Map<string, VerifiedOffer>()
    const triedKeys = new Set<string>()
    const triedAddrs = new Set<string>()
    let pending = 0
    let lookupDone = false

    return await new Promise<VerifiedOffer[]>(resolve => {
      let finished = false
      const finish = (): void => {
        if (finished) return
        finished = true
        clearTimeout(timer)
        this.dht.removeListener('peer', onPeer)
        resolve([...found.values()].slice(0, limit))
      }
      const timer = setTimeout(finish, opts.timeoutMs ?? DEFAULT_FIND_TIMEOUT_MS)
      const maybeDone = (): void => {
        if (found.size >= limit || (lookupDone && pending === 0)) finish()
      }
      const tryKey = (pk: Uint8Array): void => {
        const hex = Buffer.from(pk).toString('hex')
        if (pk.length !== 32 || triedKeys.has(hex) || finished) return
        triedKeys.add(hex)
        pending++
        this.getOffer(pk)
          .then(v => { if (v !== null && v.offer.services.includes(service)) found.set(hex, v) })
          .catch(() => { /* a bad offer is skipped, not fatal */ })
          .finally(() => { pending--; maybeDone() })
      }
      const onPeer = (peer: DHTPeer, ih: Buffer): void => {
        if (!ih.equals(infoHash) || finished) return
        const addr = `${peer.host}:${peer.port}`
        if (triedAddrs.has(addr)) return
        triedAddrs.add(addr)
        pending++
        this.queryPk(peer)
          .then(pk => { if (pk !== null) tryKey(pk) })
          .finally(() => { pending--; maybeDone() })
      }
      this.dht.on('peer', onPeer)
      for (const pk of opts.candidates ?? []) tryKey(pk)
      this.dht.lookup(infoHash, () => { lookupDone = true; maybeDone() })
    })
  }

  private async queryPk (peer: DHTPeer): Promise<Uint8Array | null> {
    return await new Promise(resolve => {
      this.dht._rpc.query(peer, { q: PK_QUERY, a: { id: this.dht._rpc.id } }, (err, reply) => {
        const k = reply?.r?.k
        resolve(err === null && Buffer.isBuffer(k) && k.length === 32 ? k : null)
      })
    })
  }

  private answerPkQuery (query: KrpcMessage, peer: RpcPeer): void {
    if (query.q === undefined || query.q.toString() !== PK_QUERY) return
    if (this.published === null) {
      this.dht._rpc.error(peer, query, [204, 'no offer published'])
      return
    }
    this.dht._rpc.response(peer, query, { id: this.dht._rpc.id, k: Buffer.from(this.init.keyPair.publicKey) })
  }

  private assertStarted (): void {
    if (!this.started) throw new DiscoveryError('DISCOVERY_NOT_STARTED', 'call start() first')
  }
}

function toItem (r: { v?: Buffer, k?: Buffer, sig?: Buffer, seq?: number, salt?: Buffer } | null): { k: Buffer, v: Buffer, sig: Buffer, seq: number, salt?: Buffer } | null {
  if (r === null || r.v === undefined || r.k === undefined || r.sig === undefined || typeof r.seq !== 'number' || !Buffer.isBuffer(r.v)) return null
  return { k: r.k, v: r.v, sig: r.sig, seq: r.seq, ...(r.salt !== undefined ? { salt: r.salt } : {}) }
}
