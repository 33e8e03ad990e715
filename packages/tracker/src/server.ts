/**
 * The tracker: HTTP (BEP 3, 7, 23, 48) and UDP (BEP 15) over one in-memory swarm table, with
 * bid-announce and bid-scrape (docs/protocol/bid-scrape.md). Every handler is wrapped: a malformed
 * request gets a `failure reason` (HTTP) or an error packet (UDP), never a crash.
 */
import { createHmac, randomBytes } from 'node:crypto'
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { isIPv4 } from 'node:net'
import { encode, formatAmount, parseAmount, BTT_MAX_AMOUNT, type Encodable } from '@btt/wire'
import * as C from './constants.js'
import { TrackerError } from './errors.js'
import { intParam, one, parseQuery, type Query } from './query.js'
import { addressKey, Swarm, type Peer } from './swarms.js'

export interface TrackerInit {
  /** Address to bind HTTP and UDP to. Default 127.0.0.1; '::' listens dual-stack. */
  host?: string
  /** HTTP port; 0 = any free port. Default 0. `false` disables HTTP. */
  httpPort?: number | false
  /** UDP port; 0 = any free port. Default 0. `false` disables UDP. */
  udpPort?: number | false
  /** Announce interval (s). Peers expire after 2 × interval. Default 1800. */
  interval?: number
  /** `min interval` (s). Default 60. */
  minInterval?: number
  maxPeersPerSwarm?: number
  /** Peers across all swarms (default 2,000,000); past it new peers are answered but not stored. */
  maxPeersTotal?: number
  /** Peers one address (IPv4, or an IPv6 /64) may hold in one swarm (default 8). */
  maxPeersPerAddress?: number
  maxSwarms?: number
  /** Per-IP announce token bucket; `false` disables it. */
  rateLimit?: { perSecond: number, burst: number } | false
  /** When set, only these info hashes (20 bytes or 40 hex chars) are tracked. */
  allowList?: Iterable<Uint8Array | string>
  /** Paid slots assumed by the clearing-price estimate. Default 4. */
  paidSlots?: number
  /** How stale (ms) the bid-scrape order may be. Default 1000; 0 = always fresh. */
  bidIndexMaxAgeMs?: number
  /** Secret for UDP connection ids; random by default. */
  secret?: Uint8Array
  /** Clock in ms (tests). Default Date.now. */
  now?: () => number
}

export interface AnnounceInput {
  infoHash: Uint8Array
  peerId: Uint8Array
  ip: string
  port: number
  left?: number
  event?: 'started' | 'stopped' | 'completed' | 'none'
  bid?: bigint
  pk?: string
  /** Leave a known peer's bid as it is (UDP announces cannot carry one). */
  keepBid?: boolean
}

export interface SwarmStats { complete: number, incomplete: number, downloaded: number }

const FAIL = (code: string, message: string): TrackerError => new TrackerError(code, message)

const HEX64 = /^[0-9a-f]{64}$/
const CURSOR = /^[0-9a-f]{72}$/

interface AnnounceResult {
  swarm: Swarm | undefined
  self: Peer | undefined
}

class TrackerServerImpl {
  readonly swarms = new Map<string, Swarm>()
  private readonly interval: number
  private readonly minInterval: number
  private readonly ttlMs: number
  private readonly maxPeers: number
  private readonly maxPeersTotal: number
  private readonly totals = { peers: 0 }
  private readonly maxPerAddress: number
  private readonly maxSwarms: number
  private readonly rate: { perSecond: number, burst: number } | false
  private readonly buckets = new Map<string, { tokens: number, t: number }>()
  private readonly allow: Set<string> | undefined
  private readonly paidSlots: number
  private readonly bidIndexMaxAgeMs: number
  private readonly secret: Uint8Array
  private readonly now: () => number
  private http: Server | undefined
  private udp: Socket | undefined
  private sweeper: NodeJS.Timeout | undefined
  /** sorted bid-scrape index */
  private bidIndex: Swarm[] = []
  private bidDirty = true
  private bidBuiltAt = 0
  httpPort = 0
  udpPort = 0

  constructor (private readonly init: TrackerInit = {}) {
    this.interval = init.interval ?? C.DEFAULT_INTERVAL
    this.minInterval = init.minInterval ?? Math.min(C.DEFAULT_MIN_INTERVAL, this.interval)
    this.ttlMs = this.interval * 2000
    this.maxPeers = init.maxPeersPerSwarm ?? C.DEFAULT_MAX_PEERS_PER_SWARM
    this.maxPeersTotal = init.maxPeersTotal ?? C.DEFAULT_MAX_PEERS_TOTAL
    this.maxPerAddress = init.maxPeersPerAddress ?? C.MAX_PEERS_PER_ADDRESS
    this.maxSwarms = init.maxSwarms ?? C.DEFAULT_MAX_SWARMS
    this.rate = init.rateLimit ?? { perSecond: C.DEFAULT_RATE_PER_SECOND, burst: C.DEFAULT_RATE_BURST }
    this.paidSlots = init.paidSlots ?? C.DEFAULT_PAID_SLOTS
    this.bidIndexMaxAgeMs = init.bidIndexMaxAgeMs ?? C.DEFAULT_BID_INDEX_MAX_AGE_MS
    this.secret = init.secret ?? randomBytes(32)
    this.now = init.now ?? Date.now
    if (init.allowList !== undefined) {
      this.allow = new Set()
      for (const h of init.allowList) this.allow.add(typeof h === 'string' ? h.toLowerCase() : Buffer.from(h).toString('hex'))
    }
  }

  async listen (): Promise<void> {
    const host = this.init.host ?? '127.0.0.1'
    const httpPort = this.init.httpPort ?? 0
    const udpPort = this.init.udpPort ?? 0
    if (httpPort !== false) {
      const http = createServer({ keepAlive: true }, (req, res) => { this.onHttp(req, res) })
      http.on('clientError', (_err, sock) => { sock.destroy() })
      this.http = http
      await new Promise<void>((resolve, reject) => {
        http.once('error', reject)
        http.listen(httpPort, host, () => { http.off('error', reject); resolve() })
      })
      const a = http.address()
      this.httpPort = typeof a === 'object' && a !== null ? a.port : 0
    }
    if (udpPort !== false) {
      const udp = createSocket({ type: isIPv4(host) ? 'udp4' : 'udp6', ipv6Only: false })
      this.udp = udp
      udp.on('message', (msg, rinfo) => { this.onUdp(msg, rinfo) })
      udp.on('error', () => {})
      await new Promise<void>((resolve, reject) => {
        udp.once('error', reject)
        udp.bind(udpPort, host, () => { udp.off('error', reject); resolve() })
      })
      this.udpPort = udp.address().port
    }
    this.sweeper = setInterval(() => { this.sweep() }, Math.min(this.ttlMs / 4, 60_000))
    this.sweeper.unref()
  }

  async close (): Promise<void> {
    if (this.sweeper !== undefined) clearInterval(this.sweeper)
    const http = this.http
    const udp = this.udp
    this.http = undefined
    this.udp = undefined
    if (udp !== undefined) await new Promise<void>(resolve => { udp.close(() => { resolve() }) })
    if (http !== undefined) {
      http.closeAllConnections()
      await new Promise<void>(resolve => { http.close(() => { resolve() }) })
    }
  }

  /** Removes expired peers and empty swarms, and forgets full rate buckets. */
  sweep (): void {
    const now = this.now()
    for (const [k, s] of this.swarms) {
      if (s.expire(now)) this.bidDirty = true
      if (s.peers.size === 0) this.swarms.delete(k)
    }
    if (this.rate !== false) {
      for (const [ip, b] of this.buckets) {
        if (b.tokens + (now - b.t) / 1000 * this.rate.perSecond >= this.rate.burst) this.buckets.delete(ip)
      }
    }
  }

  stats (infoHash: Uint8Array): SwarmStats {
    const s = this.swarms.get(Buffer.from(infoHash).toString('latin1'))
    return s === undefined
      ? { complete: 0, incomplete: 0, downloaded: 0 }
      : { complete: s.seeders, incomplete: s.leechers, downloaded: s.downloaded }
  }

  // --- core --------------------------------------------------------------------------------------

  private rateLimited (ip: string): boolean {
    if (this.rate === false) return false
    const now = this.now()
    const key = addressKey(ip)
    let b = this.buckets.get(key)
    if (b === undefined) {
      // bounded: an attacker with many source addresses only resets everyone's buckets
      if (this.buckets.size >= C.MAX_RATE_BUCKETS) this.buckets.clear()
      b = { tokens: this.rate.burst, t: now }
      this.buckets.set(key, b)
    } else {
      b.tokens = Math.min(this.rate.burst, b.tokens + (now - b.t) / 1000 * this.rate.perSecond)
      b.t = now
    }
    if (b.tokens < 1) return true
    b.tokens -= 1
    return false
  }

  private allowed (key: string): boolean {
    return this.allow === undefined || this.allow.has(Buffer.from(key, 'latin1').toString('hex'))
  }

  /** Records an announce (also the in-process API used by benchmarks and tests). */
  announce (a: AnnounceInput): AnnounceResult {
    const key = latin1(a.infoHash)
    if (!this.allowed(key)) throw FAIL('TRACKER_NOT_ALLOWED', 'info_hash not allowed')
    const now = this.now()
    let swarm = this.swarms.get(key)
    if (swarm !== undefined && swarm.expire(now)) this.bidDirty = true
    const id = latin1(a.peerId)
    const event = a.event ?? 'none'
    const v6 = a.ip.includes(':')
    let self = swarm?.peers.get(id)
    if (event === 'stopped') {
      if (swarm !== undefined && self !== undefined) {
        if (swarm.remove(self)) this.bidDirty = true
        if (swarm.peers.size === 0) this.swarms.delete(key)
      }
      return { swarm, self: undefined }
    }
    if (swarm === undefined) {
      if (this.swarms.size >= this.maxSwarms) throw FAIL('TRACKER_FULL', 'tracker is full')
      swarm = new Swarm(Buffer.from(a.infoHash), Buffer.from(a.infoHash).toString('hex'), this.totals)
      this.swarms.set(key, swarm)
    }
    const seeder = a.left === 0
    if (event === 'completed' && (self === undefined || !self.seeder)) swarm.downloaded++
    if (self !== undefined && (self.ip !== a.ip || self.port !== a.port)) {
      // a peer id that moved: replace its address
      if (swarm.remove(self)) this.bidDirty = true
      self = undefined
    }
    if (self === undefined) {
      // full swarm, full tracker, or an address holding its share already: answered, not stored
      if (swarm.peers.size >= this.maxPeers || this.totals.peers >= this.maxPeersTotal ||
        (swarm.perAddress.get(addressKey(a.ip)) ?? 0) >= this.maxPerAddress) return { swarm, self: undefined }
      self = {
        id, ip: a.ip, port: a.port, v6, compact: compactPeer(a.ip, a.port, v6), seeder,
        expires: now + this.ttlMs, bid: a.bid, pk: a.pk, idx: 0
      }
      swarm.add(self)
      if (a.bid !== undefined) this.bidDirty = true
    } else {
      self.expires = now + this.ttlMs
      swarm.touch(self)
      swarm.setSeeder(self, seeder)
      if (a.keepBid !== true && swarm.setBid(self, a.bid, a.pk)) this.bidDirty = true
    }
    return { swarm, self }
  }

  private selectPeers (swarm: Swarm, self: Peer | undefined, numwant: number, byBid: boolean, seeder: boolean): Peer[] {
    const out: Peer[] = []
    if (numwant === 0) return out
    if (byBid) {
      for (const p of swarm.bidders) {
        if (out.length >= numwant) return out
        if (p !== self && !(seeder && p.seeder)) out.push(p)
      }
    }
    const list = swarm.list
    const n = list.length
    if (n === 0) return out
    const start = Math.floor(Math.random() * n)
    for (let k = 0; k < n && out.length < numwant; k++) {
      const p = list[(start + k) % n] as Peer
      if (p === self || (seeder && p.seeder) || (byBid && p.bid !== undefined)) continue
      out.push(p)
    }
    return out
  }

  // --- HTTP ---------------------------------------------------------------------------------------

  private onHttp (req: IncomingMessage, res: ServerResponse): void {
    try {
      const url = req.url ?? '/'
      const qi = url.indexOf('?')
      const path = qi < 0 ? url : url.slice(0, qi)
      const qs = qi < 0 ? '' : url.slice(qi + 1)
      if (req.method !== 'GET') return this.reply(res, 405, failure('method not allowed'))
      if (qs.length > (path === '/scrape' ? C.MAX_SCRAPE_QUERY_BYTES : C.MAX_QUERY_BYTES)) return this.reply(res, 414, failure('query string too long'))
      const ip = normalizeIp(req.socket.remoteAddress ?? '')
      let body: Encodable
      if (path === '/announce') body = this.httpAnnounce(parseQuery(qs), ip)
      else if (path === '/scrape') body = this.httpScrape(parseQuery(qs, 'info_hash'))
      else if (path === '/bid-scrape') body = this.httpBidScrape(parseQuery(qs))
      else return this.reply(res, 404, failure('unknown path'))
      this.reply(res, 200, body)
    } catch (err) {
      const msg = err instanceof TrackerError ? err.message : 'internal error'
      try { this.reply(res, 200, failure(msg)) } catch { res.destroy() }
    }
  }

  private reply (res: ServerResponse, status: number, body: Encodable): void {
    const buf = encode(body)
    res.writeHead(status, { 'content-type': 'text/plain', 'content-length': buf.length })
    res.end(buf)
  }

  private httpAnnounce (q: Query, ip: string): Encodable {
    const infoHash = hash20(q, 'info_hash')
    const peerId = hash20(q, 'peer_id')
    const port = intParam(q, 'port')
    if (port === undefined) throw FAIL('TRACKER_MISSING_PARAM', 'missing port')
    if (port < 1 || port > 65535) throw FAIL('TRACKER_BAD_PARAM', 'invalid port')
    intParam(q, 'uploaded')
    intParam(q, 'downloaded')
    const left = intParam(q, 'left')
    const numwant = Math.min(intParam(q, 'numwant') ?? C.DEFAULT_NUMWANT, C.MAX_NUMWANT)
    const compact = intParam(q, 'compact') !== 0
    const noPeerId = intParam(q, 'no_peer_id') === 1
    const ev = one(q, 'event')?.toString('latin1') ?? ''
    let event: AnnounceInput['event']
    if (ev === '' || ev === 'empty') event = 'none'
    else if (ev === 'started' || ev === 'stopped' || ev === 'completed') event = ev
    else throw FAIL('TRACKER_BAD_PARAM', 'invalid event')
    let btt = false
    for (const k of q.keys()) if (k.startsWith('btt_')) btt = true
    const bttFlag = one(q, 'btt')
    if (bttFlag !== undefined) {
      if (bttFlag.length !== 1 || (bttFlag[0] !== 0x30 && bttFlag[0] !== 0x31)) throw FAIL('TRACKER_BAD_PARAM', 'invalid btt')
      if (bttFlag[0] === 0x31) btt = true
    }
    const bid = parseBid(one(q, 'btt_bid'), 'btt_bid')
    const pkRaw = one(q, 'btt_pk')
    let pk: string | undefined
    if (pkRaw !== undefined) {
      pk = pkRaw.toString('latin1').toLowerCase()
      if (!HEX64.test(pk)) throw FAIL('TRACKER_BAD_PARAM', 'invalid btt_pk')
    }
    const order = one(q, 'btt_order')?.toString('latin1')
    if (order !== undefined && order !== 'bid') throw FAIL('TRACKER_BAD_PARAM', 'invalid btt_order')
    if (this.rateLimited(ip)) throw FAIL('TRACKER_RATE_LIMITED', 'rate limit exceeded')

    const { swarm, self } = this.announce({ infoHash, peerId, ip, port, left, event, bid, pk })
    const out: Record<string, Encodable> = {
      interval: this.interval,
      'min interval': this.minInterval,
      complete: swarm?.seeders ?? 0,
      incomplete: swarm?.leechers ?? 0
    }
    const peers = swarm === undefined || event === 'stopped'
      ? []
      : this.selectPeers(swarm, self, numwant, order === 'bid', left === 0)
    if (compact) {
      const v4 = peers.filter(p => !p.v6)
      const v6 = peers.filter(p => p.v6)
      out.peers = Buffer.concat(v4.map(p => p.compact))
      if (v6.length > 0) out.peers6 = Buffer.concat(v6.map(p => p.compact))
      if (btt) {
        out.btt_bids = v4.map(p => p.bid === undefined ? '' : p.bid.toString())
        out.btt_pks = v4.map(p => p.pk ?? '')
        if (v6.length > 0) {
          out.btt_bids6 = v6.map(p => p.bid === undefined ? '' : p.bid.toString())
          out.btt_pks6 = v6.map(p => p.pk ?? '')
        }
      }
    } else {
      out.peers = peers.map(p => {
        const d: Record<string, Encodable> = { ip: p.ip, port: p.port }
        if (!noPeerId) d['peer id'] = Buffer.from(p.id, 'latin1')
        if (btt && p.bid !== undefined) d.btt_bid = p.bid.toString()
        if (btt && p.pk !== undefined) d.btt_pk = p.pk
        return d
      })
    }
    return out
  }

  private httpScrape (q: Query): Encodable {
    const hashes = q.get('info_hash')
    if (hashes === undefined) throw FAIL('TRACKER_MISSING_PARAM', 'missing info_hash')
    if (hashes.length > C.MAX_SCRAPE_HASHES) throw FAIL('TRACKER_BAD_PARAM', 'too many info_hash')
    const files = new Map<string, Encodable>()
    const now = this.now()
    for (const h of hashes) {
      if (h.length !== 20) throw FAIL('TRACKER_BAD_PARAM', 'invalid info_hash')
      const key = h.toString('latin1')
      const s = this.swarms.get(key)
      if (s !== undefined && s.expire(now)) this.bidDirty = true
      files.set(key, { complete: s?.seeders ?? 0, downloaded: s?.downloaded ?? 0, incomplete: s?.leechers ?? 0 })
    }
    return { files }
  }

  // --- bid-scrape --------------------------------------------------------------------------------

  private bidIndexNow (): Swarm[] {
    const now = this.now()
    if (this.bidDirty && now - this.bidBuiltAt >= this.bidIndexMaxAgeMs) {
      const idx: Swarm[] = []
      for (const s of this.swarms.values()) {
        if (s.bidders.length > 0) {
          s.key = s.computeKey()
          idx.push(s)
        }
      }
      idx.sort((a, b) => a.key < b.key ? -1 : a.key > b.key ? 1 : 0)
      this.bidIndex = idx
      this.bidDirty = false
      this.bidBuiltAt = now
    }
    return this.bidIndex
  }

  /** One page of bid-scrape (in-process form of GET /bid-scrape). */
  bidScrapePage (minBid: bigint, limit: number, cursor: string | undefined): { files: Encodable[], next: string | undefined } {
    const idx = this.bidIndexNow()
    let lo = 0
    if (cursor !== undefined) {
      let hi = idx.length
      while (lo < hi) {
        const mid = (lo + hi) >>> 1
        if ((idx[mid] as Swarm).key <= cursor) lo = mid + 1
        else hi = mid
      }
    }
    const files: Encodable[] = []
    let last: Swarm | undefined
    let i = lo
    for (; i < idx.length && files.length < limit; i++) {
      const s = idx[i] as Swarm
      // a swarm in a stale index may have lost its bidders since
      if (s.bidders.length === 0) continue
      if (s.bidMax < minBid) { i = idx.length; break }
      files.push({
        info_hash: s.infoHash,
        complete: s.seeders,
        incomplete: s.leechers,
        downloaded: s.downloaded,
        bidders: s.bidders.length,
        bid_max: formatAmount(s.bidMax),
        bid_median: formatAmount(s.bidMedian),
        clearing_price: formatAmount(s.clearingPrice(this.paidSlots))
      })
      last = s
    }
    let next: string | undefined
    if (last !== undefined && i < idx.length) {
      const after = idx[i] as Swarm
      if (after.bidders.length === 0 || after.bidMax >= minBid) next = last.key
    }
    return { files, next }
  }

  private httpBidScrape (q: Query): Encodable {
    const minBid = parseBid(one(q, 'min_bid'), 'min_bid') ?? 0n
    const limit = intParam(q, 'limit') ?? C.DEFAULT_BID_SCRAPE_LIMIT
    if (limit < 1 || limit > C.MAX_BID_SCRAPE_LIMIT) throw FAIL('TRACKER_BAD_PARAM', 'invalid limit')
    const c = one(q, 'cursor')?.toString('latin1')
    if (c !== undefined && !CURSOR.test(c)) throw FAIL('TRACKER_BAD_PARAM', 'invalid cursor')
    const { files, next } = this.bidScrapePage(minBid, limit, c)
    return { files, next }
  }

  // --- UDP (BEP 15) --------------------------------------------------------------------------------

  /** memo of HMACs: `${ip}|${port}|${bucket}` → id, cleared with each new bucket (bounded below) */
  private cidCache = new Map<string, Buffer>()
  private cidBucket = -1

  private connectionId (ip: string, port: number, bucket: number): Buffer {
    if (bucket !== this.cidBucket && bucket > this.cidBucket) {
      if (bucket !== this.cidBucket + 1) this.cidCache.clear()
      else for (const k of this.cidCache.keys()) if (!k.endsWith(`|${this.cidBucket}`)) this.cidCache.delete(k)
      this.cidBucket = bucket
    }
    const k = `${ip}|${port}|${bucket}`
    let id = this.cidCache.get(k)
    if (id === undefined) {
      id = createHmac('sha256', this.secret).update(k).digest().subarray(0, 8)
      if (this.cidCache.size < C.MAX_CONNECTION_ID_CACHE) this.cidCache.set(k, id)
    }
    return id
  }

  private validConnection (id: Buffer, ip: string, port: number): boolean {
    const bucket = Math.floor(this.now() / C.UDP_CONNECTION_BUCKET_MS)
    return id.equals(this.connectionId(ip, port, bucket)) || id.equals(this.connectionId(ip, port, bucket - 1))
  }

  private onUdp (msg: Buffer, r: RemoteInfo): void {
    if (msg.length < 16) return // no transaction id to answer with: BEP 15 clients ignore silence
    const tid = msg.readUInt32BE(12)
    let out: Buffer
    try {
      out = this.udpHandle(msg, r, tid)
    } catch (err) {
      const text = err instanceof TrackerError ? err.message : 'internal error'
      out = Buffer.concat([u32(3), u32(tid), Buffer.from(text)])
    }
    this.udp?.send(out, r.port, r.address)
  }

  private udpHandle (msg: Buffer, r: RemoteInfo, tid: number): Buffer {
    const action = msg.readUInt32BE(8)
    const ip = normalizeIp(r.address)
    if (action === 0) {
      if (msg.readBigUInt64BE(0) !== C.UDP_PROTOCOL_ID) throw FAIL('TRACKER_BAD_PROTOCOL', 'bad protocol id')
      const bucket = Math.floor(this.now() / C.UDP_CONNECTION_BUCKET_MS)
      return Buffer.concat([u32(0), u32(tid), this.connectionId(ip, r.port, bucket)])
    }
    if (action !== 1 && action !== 2) throw FAIL('TRACKER_BAD_ACTION', 'unknown action')
    if (!this.validConnection(msg.subarray(0, 8), ip, r.port)) throw FAIL('TRACKER_BAD_CONNECTION', 'bad connection id')
    if (action === 1) {
      if (msg.length < 98) throw FAIL('TRACKER_TRUNCATED', 'truncated announce')
      const left = Number(msg.readBigUInt64BE(64))
      const ev = msg.readUInt32BE(80)
      if (ev > 3) throw FAIL('TRACKER_BAD_PARAM', 'invalid event')
      const event = (['none', 'completed', 'started', 'stopped'] as const)[ev]
      const numwantRaw = msg.readInt32BE(92)
      const numwant = numwantRaw < 0 ? C.DEFAULT_NUMWANT : Math.min(numwantRaw, C.MAX_NUMWANT)
      const port = msg.readUInt16BE(96)
      if (port === 0) throw FAIL('TRACKER_BAD_PARAM', 'invalid port')
      if (this.rateLimited(ip)) throw FAIL('TRACKER_RATE_LIMITED', 'rate limit exceeded')
      const { swarm, self } = this.announce({
        infoHash: msg.subarray(16, 36), peerId: msg.subarray(36, 56), ip, port, left, event, keepBid: true
      })
      const v6 = ip.includes(':')
      const peers = swarm === undefined || event === 'stopped' ? [] : this.selectPeers(swarm, self, numwant, false, left === 0)
      const width = v6 ? 18 : 6
      const out = Buffer.allocUnsafe(20 + peers.length * width)
      out.writeUInt32BE(1, 0)
      out.writeUInt32BE(tid, 4)
      out.writeUInt32BE(this.interval, 8)
      out.writeUInt32BE(swarm?.leechers ?? 0, 12)
      out.writeUInt32BE(swarm?.seeders ?? 0, 16)
      let pos = 20
      for (const p of peers) if (p.v6 === v6) pos += p.compact.copy(out, pos)
      return pos === out.length ? out : out.subarray(0, pos)
    }
    const n = (msg.length - 16) / 20
    if (!Number.isInteger(n) || n < 1) throw FAIL('TRACKER_TRUNCATED', 'truncated scrape')
    if (n > C.MAX_UDP_SCRAPE_HASHES) throw FAIL('TRACKER_BAD_PARAM', 'too many info_hash')
    const out = Buffer.allocUnsafe(8 + 12 * n)
    out.writeUInt32BE(2, 0)
    out.writeUInt32BE(tid, 4)
    for (let i = 0; i < n; i++) {
      const s = this.swarms.get(msg.subarray(16 + 20 * i, 36 + 20 * i).toString('latin1'))
      out.writeUInt32BE(s?.seeders ?? 0, 8 + 12 * i)
      out.writeUInt32BE(s?.downloaded ?? 0, 12 + 12 * i)
      out.writeUInt32BE(s?.leechers ?? 0, 16 + 12 * i)
    }
    return out
  }
}

// --- helpers -------------------------------------------------------------------------------------

function latin1 (b: Uint8Array): string {
  return Buffer.isBuffer(b) ? b.toString('latin1') : Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1')
}

function failure (reason: string): Encodable {
  return { 'failure reason': reason }
}

function u32 (n: number): Buffer {
  const b = Buffer.allocUnsafe(4)
  b.writeUInt32BE(n >>> 0)
  return b
}

function hash20 (q: Query, key: string): Buffer {
  const b = one(q, key)
  if (b === undefined) throw FAIL('TRACKER_MISSING_PARAM', `missing ${key}`)
  if (b.length !== 20) throw FAIL('TRACKER_BAD_PARAM', `invalid ${key}`)
  return b
}

/** A canonical decimal amount 0 ≤ a < 2^128, or undefined when absent. */
function parseBid (b: Buffer | undefined, field: string): bigint | undefined {
  if (b === undefined) return undefined
  try {
    const v = parseAmount(b, field)
    if (v > BTT_MAX_AMOUNT) throw new Error('range')
    return v
  } catch {
    throw FAIL('TRACKER_BAD_PARAM', `invalid ${field}`)
  }
}

function normalizeIp (ip: string): string {
  return ip.startsWith('::ffff:') && isIPv4(ip.slice(7)) ? ip.slice(7) : ip
}

function compactPeer (ip: string, port: number, v6: boolean): Buffer {
  if (!v6) {
    const b = Buffer.allocUnsafe(6)
    const parts = ip.split('.')
    for (let i = 0; i < 4; i++) b[i] = Number(parts[i])
    b.writeUInt16BE(port, 4)
    return b
  }
  const b = Buffer.alloc(18)
  ipv6Bytes(ip).copy(b, 0)
  b.writeUInt16BE(port, 16)
  return b
}

function ipv6Bytes (ip: string): Buffer {
  const out = Buffer.alloc(16)
  const pct = ip.indexOf('%')
  if (pct >= 0) ip = ip.slice(0, pct)
  const [head = '', tail] = ip.split('::')
  const h = head === '' ? [] : head.split(':')
  const t = tail === undefined || tail === '' ? [] : tail.split(':')
  const groups = tail === undefined ? h : [...h, ...new Array<string>(8 - h.length - t.length).fill('0'), ...t]
  for (let i = 0; i < 8; i++) out.writeUInt16BE(parseInt(groups[i] ?? '0', 16) & 0xffff, i * 2)
  return out
}

/** A running tracker. */
export interface TrackerServer {
  readonly httpPort: number
  readonly udpPort: number
  /** In-process announce (benchmarks, tests); throws TrackerError with the failure reason. */
  announce: (a: AnnounceInput) => void
  /** Counts of one swarm. */
  stats: (infoHash: Uint8Array) => SwarmStats
  /** Expires peers now (also runs on a timer). */
  sweep: () => void
  close: () => Promise<void>
}

/** Starts a tracker; resolves once HTTP and UDP listen. */
export async function createTracker (init: TrackerInit = {}): Promise<TrackerServer> {
  const t = new TrackerServerImpl(init)
  await t.listen()
  return {
    get httpPort () { return t.httpPort },
    get udpPort () { return t.udpPort },
    announce: a => { t.announce(a) },
    stats: h => t.stats(h),
    sweep: () => { t.sweep() },
    close: async () => { await t.close() }
  }
}
