import { randomBytes } from 'node:crypto'
import dgram from 'node:dgram'
import { decode, type BDict } from '@btt/wire'
import { SeedingError } from './errors.js'
import { decodeCompactPeers, type PeerAddr } from './extension.js'

export interface AnnounceParams {
  infoHash: Uint8Array
  peerId: Uint8Array
  port: number
  uploaded: number
  downloaded: number
  left: number
  event?: 'started' | 'completed' | 'stopped'
  numwant: number
  /** Random per-session key (BEP 7), so a tracker can tell us apart across IP changes. */
  key: number
  /**
   * bid-announce (docs/protocol/bid-scrape.md): our wallet key, and our current bid in base units
   * per KiB while we buy. Sent over HTTP only (BEP 15 has no room for it).
   */
  btt?: { pk: string, bid?: bigint }
}

export interface AnnounceResult {
  /** Seconds until the next announce, clamped by the caller's bounds. */
  interval: number
  peers: PeerAddr[]
  seeders?: number
  leechers?: number
  warning?: string
  /**
   * bid-announce: what the tracker says peers bid, with the wallet key and the address that
   * announced it (a hint, checked on connect). Present (maybe empty) when the tracker speaks it.
   */
  bids?: Array<{ pk: string, bid: bigint, host: string }>
}

/** Largest tracker response body read over HTTP. */
const MAX_HTTP_BODY = 2 * 1024 * 1024
const TIMEOUT_MS = 15_000
const MAX_PEERS = 1000

/** Announces over HTTP(S) (BEP 3, compact peers BEP 23) or UDP (BEP 15). */
export class TrackerClient {
  private udp?: UdpTracker

  constructor (private readonly bindHost?: string) {}

  async announce (url: string, p: AnnounceParams, signal?: AbortSignal): Promise<AnnounceResult> {
    let u: URL
    try {
      u = new URL(url)
    } catch {
      throw new SeedingError('TRACKER_URL', `not a URL: ${url}`)
    }
    if (u.protocol === 'http:' || u.protocol === 'https:') return await httpAnnounce(u, p, signal)
    if (u.protocol === 'udp:') {
      this.udp ??= new UdpTracker(this.bindHost)
      return await this.udp.announce(u, p, signal)
    }
    throw new SeedingError('TRACKER_URL', `unsupported tracker scheme ${u.protocol}`)
  }

  close (): void {
    this.udp?.close()
    this.udp = undefined
  }
}

function escapeBytes (b: Uint8Array): string {
  let s = ''
  for (const x of b) {
    const c = String.fromCharCode(x)
    s += /[A-Za-z0-9.\-_~]/.test(c) ? c : '%' + x.toString(16).padStart(2, '0')
  }
  return s
}

async function httpAnnounce (u: URL, p: AnnounceParams, signal?: AbortSignal): Promise<AnnounceResult> {
  const q = [
    `info_hash=${escapeBytes(p.infoHash)}`,
    `peer_id=${escapeBytes(p.peerId)}`,
    `port=${p.port}`,
    `uploaded=${p.uploaded}`,
    `downloaded=${p.downloaded}`,
    `left=${p.left}`,
    'compact=1',
    `numwant=${p.numwant}`,
    `key=${p.key.toString(16)}`,
    ...(p.event !== undefined ? [`event=${p.event}`] : []),
    ...(p.btt !== undefined ? [`btt_pk=${p.btt.pk}`, ...(p.btt.bid !== undefined && p.btt.bid > 0n ? [`btt_bid=${p.btt.bid.toString()}`] : [])] : [])
  ].join('&')
  const url = u.href + (u.search === '' ? '?' : '&') + q
  const { request } = await import('undici')
  const res = await request(url, {
    method: 'GET',
    headersTimeout: TIMEOUT_MS,
    bodyTimeout: TIMEOUT_MS,
    maxRedirections: 0,
    signal: signal ?? AbortSignal.timeout(TIMEOUT_MS)
  } as Parameters<typeof import('undici').request>[1]).catch((err: unknown) => {
    throw new SeedingError('TRACKER_UNREACHABLE', `${u.host}: ${(err as Error).message}`)
  })
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of res.body) {
    size += (chunk as Buffer).length
    if (size > MAX_HTTP_BODY) {
      res.body.destroy()
      throw new SeedingError('TRACKER_RESPONSE', `response larger than ${MAX_HTTP_BODY} bytes`)
    }
    chunks.push(chunk as Buffer)
  }
  if (res.statusCode !== 200) throw new SeedingError('TRACKER_RESPONSE', `HTTP ${res.statusCode}`)
  let d: BDict
  try {
    const v = decode(Buffer.concat(chunks, size), { maxDepth: 8, maxItems: 20_000 })
    if (!(v instanceof Map)) throw new Error('not a dictionary')
    d = v
  } catch (err) {
    throw new SeedingError('TRACKER_RESPONSE', `malformed response: ${(err as Error).message}`)
  }
  const failure = d.get('failure reason')
  if (failure instanceof Uint8Array) throw new SeedingError('TRACKER_FAILURE', Buffer.from(failure).toString('utf8').slice(0, 200))
  const interval = d.get('interval')
  const peers: PeerAddr[] = []
  const p4 = d.get('peers')
  const compact4 = p4 instanceof Uint8Array ? decodeCompactPeers(p4.subarray(0, p4.length - (p4.length % 6)), 4) : []
  peers.push(...compact4)
  if (Array.isArray(p4)) {
    for (const e of p4) {
      if (!(e instanceof Map)) continue
      const ip = e.get('ip')
      const port = e.get('port')
      if (ip instanceof Uint8Array && typeof port === 'number' && port > 0 && port < 65536) peers.push({ host: Buffer.from(ip).toString('latin1'), port })
    }
  }
  const p6 = d.get('peers6')
  const compact6 = p6 instanceof Uint8Array ? decodeCompactPeers(p6.subarray(0, p6.length - (p6.length % 18)), 6) : []
  peers.push(...compact6)
  const bids = announcedBids(d, compact4, compact6)
  const warning = d.get('warning message')
  const seeders = d.get('complete')
  const leechers = d.get('incomplete')
  return {
    interval: typeof interval === 'number' && interval > 0 ? interval : 1800,
    peers: peers.slice(0, MAX_PEERS),
    ...(typeof seeders === 'number' ? { seeders } : {}),
    ...(typeof leechers === 'number' ? { leechers } : {}),
    ...(warning instanceof Uint8Array ? { warning: Buffer.from(warning).toString('utf8').slice(0, 200) } : {}),
    ...(bids !== undefined ? { bids } : {})
  }
}

const PK_HEX = /^[0-9a-f]{64}$/
const AMOUNT = /^(0|[1-9][0-9]{0,38})$/

/**
 * The bids a bid-announce tracker reports (docs/protocol/bid-scrape.md): `btt_bids`/`btt_pks`
 * lists parallel to compact peers, or `btt_bid`/`btt_pk` in peer dicts; each with the address of
 * the peer that announced it. Malformed entries are skipped: they are hints, not worth failing an
 * announce over. Undefined when the response carries no bid fields at all (not a bid tracker).
 */
function announcedBids (d: BDict, compact4: PeerAddr[], compact6: PeerAddr[]): Array<{ pk: string, bid: bigint, host: string }> | undefined {
  const out: Array<{ pk: string, bid: bigint, host: string }> = []
  let seen = false
  const add = (pk: unknown, bid: unknown, host: string | undefined): void => {
    if (host === undefined || !(pk instanceof Uint8Array) || !(bid instanceof Uint8Array) || out.length >= MAX_PEERS) return
    const k = Buffer.from(pk).toString('latin1')
    const b = Buffer.from(bid).toString('latin1')
    if (PK_HEX.test(k) && AMOUNT.test(b) && BigInt(b) < 2n ** 128n) out.push({ pk: k, bid: BigInt(b), host })
  }
  // the lists run parallel to the compact peers already decoded (a length mismatch: not trusted)
  for (const [bk, pl, addrs] of [['btt_bids', 'btt_pks', compact4], ['btt_bids6', 'btt_pks6', compact6]] as const) {
    const bl = d.get(bk)
    const kl = d.get(pl)
    if (bl !== undefined) seen = true
    if (!Array.isArray(bl) || !Array.isArray(kl) || bl.length !== kl.length || addrs.length !== bl.length) continue
    for (let i = 0; i < bl.length; i++) add(kl[i], bl[i], addrs[i]?.host)
  }
  const list = d.get('peers')
  if (Array.isArray(list)) {
    for (const e of list) {
      if (!(e instanceof Map)) continue
      if (e.has('btt_bid') || e.has('btt_pk')) seen = true
      const ip = e.get('ip')
      add(e.get('btt_pk'), e.get('btt_bid'), ip instanceof Uint8Array ? Buffer.from(ip).toString('latin1') : undefined)
    }
  }
  return seen || out.length > 0 ? out : undefined
}

const PROTOCOL_ID = 0x41727101980n
const ACTION = { connect: 0, announce: 1, error: 3 }
const EVENT = { completed: 1, started: 2, stopped: 3 }

interface Pending { resolve: (b: Buffer) => void, reject: (e: Error) => void }

/** BEP 15 over one dgram socket shared by every torrent. */
class UdpTracker {
  private readonly socket: dgram.Socket
  private readonly pending = new Map<number, Pending>()
  private readonly connections = new Map<string, { id: Buffer, at: number }>()
  private bound: Promise<void>

  constructor (bindHost?: string) {
    this.socket = dgram.createSocket(bindHost?.includes(':') === true ? 'udp6' : 'udp4')
    this.socket.on('message', msg => { this.onMessage(msg) })
    this.socket.on('error', () => {})
    this.bound = new Promise(resolve => { this.socket.bind(0, bindHost, () => { resolve() }) })
    this.socket.unref()
  }

  private onMessage (msg: Buffer): void {
    if (msg.length < 8) return
    const tx = msg.readUInt32BE(4)
    const p = this.pending.get(tx)
    if (p === undefined) return
    this.pending.delete(tx)
    p.resolve(msg)
  }

  private async exchange (u: URL, packet: Buffer, signal?: AbortSignal): Promise<Buffer> {
    await this.bound
    const port = Number(u.port)
    if (!(port > 0 && port < 65536)) throw new SeedingError('TRACKER_URL', `udp tracker without a port: ${u.href}`)
    const host = u.hostname.replace(/^\[|\]$/g, '')
    // BEP 15 retransmits after 15 · 2^n s; we try twice, quickly, and let the next interval retry
    for (let attempt = 0; attempt < 2; attempt++) {
      const tx = randomBytes(4).readUInt32BE(0)
      packet.writeUInt32BE(tx, 12)
      try {
        return await new Promise<Buffer>((resolve, reject) => {
          const timer = setTimeout(() => { this.pending.delete(tx); reject(new SeedingError('TRACKER_UNREACHABLE', `${u.host}: no answer`)) }, 5000 * (attempt + 1))
          const abort = (): void => { clearTimeout(timer); this.pending.delete(tx); reject(new SeedingError('TRACKER_UNREACHABLE', 'aborted')) }
          signal?.addEventListener('abort', abort, { once: true })
          this.pending.set(tx, {
            resolve: b => { clearTimeout(timer); signal?.removeEventListener('abort', abort); resolve(b) },
            reject
          })
          this.socket.send(packet, port, host, err => { if (err !== null) { clearTimeout(timer); this.pending.delete(tx); reject(new SeedingError('TRACKER_UNREACHABLE', err.message)) } })
        })
      } catch (err) {
        if (attempt === 1 || signal?.aborted === true) throw err
      }
    }
    throw new SeedingError('TRACKER_UNREACHABLE', `${u.host}: no answer`)
  }

  private async connectionId (u: URL, signal?: AbortSignal): Promise<Buffer> {
    const key = u.host
    const c = this.connections.get(key)
    if (c !== undefined && Date.now() - c.at < 60_000) return c.id
    const pkt = Buffer.alloc(16)
    pkt.writeBigUInt64BE(PROTOCOL_ID, 0)
    pkt.writeUInt32BE(ACTION.connect, 8)
    const res = await this.exchange(u, pkt, signal)
    checkAction(res, ACTION.connect, 16)
    const id = Buffer.from(res.subarray(8, 16))
    this.connections.set(key, { id, at: Date.now() })
    return id
  }

  async announce (u: URL, p: AnnounceParams, signal?: AbortSignal): Promise<AnnounceResult> {
    const conn = await this.connectionId(u, signal)
    const pkt = Buffer.alloc(98)
    conn.copy(pkt, 0)
    pkt.writeUInt32BE(ACTION.announce, 8)
    pkt.set(p.infoHash, 16)
    pkt.set(p.peerId, 36)
    pkt.writeBigUInt64BE(BigInt(p.downloaded), 56)
    pkt.writeBigUInt64BE(BigInt(p.left), 64)
    pkt.writeBigUInt64BE(BigInt(p.uploaded), 72)
    pkt.writeUInt32BE(p.event !== undefined ? EVENT[p.event] : 0, 80)
    pkt.writeUInt32BE(0, 84) // ip: the sender's
    pkt.writeUInt32BE(p.key >>> 0, 88)
    pkt.writeInt32BE(p.numwant, 92)
    pkt.writeUInt16BE(p.port, 96)
    const res = await this.exchange(u, pkt, signal)
    checkAction(res, ACTION.announce, 20)
    const family = this.socket.address().family === 'IPv6' ? 6 : 4
    const unit = family === 6 ? 18 : 6
    const body = res.subarray(20)
    return {
      interval: res.readUInt32BE(8) || 1800,
      leechers: res.readUInt32BE(12),
      seeders: res.readUInt32BE(16),
      peers: decodeCompactPeers(body.subarray(0, body.length - (body.length % unit)), family).slice(0, MAX_PEERS)
    }
  }

  close (): void {
    for (const p of this.pending.values()) p.reject(new SeedingError('TRACKER_UNREACHABLE', 'closed'))
    this.pending.clear()
    this.socket.close()
  }
}

function checkAction (res: Buffer, action: number, min: number): void {
  const got = res.readUInt32BE(0)
  if (got === ACTION.error) throw new SeedingError('TRACKER_FAILURE', res.subarray(8, 208).toString('utf8'))
  if (got !== action || res.length < min) throw new SeedingError('TRACKER_RESPONSE', `unexpected UDP tracker answer (action ${got}, ${res.length} bytes)`)
}
