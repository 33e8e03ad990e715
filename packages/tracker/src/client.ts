/** Client helpers: HTTP announce with bid fields, and bid-scrape. Responses are decoded strictly and capped. */
import { decode, isBytes, isDict, parseAmount, type BDict, type BValue } from '@btt/wire'
import { MAX_RESPONSE_BYTES } from './constants.js'
import { TrackerError } from './errors.js'

export interface AnnounceParams {
  infoHash: Uint8Array
  peerId: Uint8Array
  port: number
  uploaded?: number
  downloaded?: number
  left?: number
  event?: 'started' | 'stopped' | 'completed'
  numwant?: number
  compact?: boolean
  /** Current bid, base units per KiB. */
  bid?: bigint
  /** Wallet public key, 64 hex chars. */
  pk?: string
  /** Ask for peers ordered by bid (highest first). */
  orderByBid?: boolean
  /** Ask for bid fields in the response even without bidding (`btt=1`). */
  btt?: boolean
}

export interface AnnouncedPeer {
  ip: string
  port: number
  peerId?: Uint8Array
  /** Announced bid: unverified, a hint only. */
  bid?: bigint
  pk?: string
}

export interface AnnounceResponse {
  interval: number
  minInterval?: number
  complete: number
  incomplete: number
  peers: AnnouncedPeer[]
}

export interface BidScrapeFile {
  infoHash: Uint8Array
  complete: number
  incomplete: number
  downloaded: number
  bidders: number
  bidMax: bigint
  bidMedian: bigint
  clearingPrice: bigint
}

export interface BidScrapeResponse {
  files: BidScrapeFile[]
  next?: string
}

export interface RequestOptions {
  signal?: AbortSignal
}

/** Percent-encodes raw bytes (every byte outside the unreserved set). */
export function escapeBytes (b: Uint8Array): string {
  let s = ''
  for (const c of b) {
    if ((c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x2d || c === 0x2e || c === 0x5f || c === 0x7e) s += String.fromCharCode(c)
    else s += '%' + (c < 16 ? '0' : '') + c.toString(16).toUpperCase()
  }
  return s
}

function bad (what: string): never {
  throw new TrackerError('TRACKER_BAD_RESPONSE', `bad tracker response: ${what}`)
}

async function getBencoded (url: string, opts: RequestOptions): Promise<BDict> {
  const res = await fetch(url, { signal: opts.signal })
  const len = Number(res.headers.get('content-length') ?? '0')
  if (len > MAX_RESPONSE_BYTES) bad('too large')
  const chunks: Uint8Array[] = []
  let total = 0
  if (res.body !== null) {
    for await (const c of res.body as AsyncIterable<Uint8Array>) {
      total += c.length
      if (total > MAX_RESPONSE_BYTES) bad('too large')
      chunks.push(c)
    }
  }
  let v: BValue
  try {
    v = decode(Buffer.concat(chunks))
  } catch (err) {
    throw new TrackerError('TRACKER_BAD_RESPONSE', 'bad tracker response: not bencode', { cause: err })
  }
  if (!isDict(v)) bad('not a dict')
  const fr = v.get('failure reason')
  if (fr !== undefined) {
    throw new TrackerError('TRACKER_FAILURE', isBytes(fr) ? Buffer.from(fr).toString('utf8') : 'failure')
  }
  return v
}

function int (d: BDict, k: string, optional = false): number {
  const v = d.get(k)
  if (v === undefined && optional) return -1
  if (typeof v !== 'number' || v < 0) bad(k)
  return v
}

function amount (v: BValue | undefined, k: string): bigint {
  if (!isBytes(v)) bad(k)
  try { return parseAmount(v, k) } catch { return bad(k) }
}

function ipFromBytes (b: Uint8Array): string {
  if (b.length === 4) return b.join('.')
  const parts: string[] = []
  for (let i = 0; i < 16; i += 2) parts.push((((b[i] as number) << 8) | (b[i + 1] as number)).toString(16))
  return parts.join(':')
}

function compactPeers (b: BValue | undefined, width: 6 | 18, bids: BValue | undefined, pks: BValue | undefined, out: AnnouncedPeer[]): void {
  if (b === undefined) return
  if (!isBytes(b) || b.length % width !== 0) bad('peers')
  const n = b.length / width
  if (bids !== undefined && (!Array.isArray(bids) || bids.length !== n)) bad('btt_bids')
  if (pks !== undefined && (!Array.isArray(pks) || pks.length !== n)) bad('btt_pks')
  for (let i = 0; i < n; i++) {
    const e = b.subarray(i * width, (i + 1) * width)
    const p: AnnouncedPeer = { ip: ipFromBytes(e.subarray(0, width - 2)), port: ((e[width - 2] as number) << 8) | (e[width - 1] as number) }
    const bid = Array.isArray(bids) ? bids[i] : undefined
    if (bid !== undefined && !(isBytes(bid) && bid.length === 0)) p.bid = amount(bid, 'btt_bids')
    const pk = Array.isArray(pks) ? pks[i] : undefined
    if (pk !== undefined && !(isBytes(pk) && pk.length === 0)) {
      if (!isBytes(pk) || !/^[0-9a-f]{64}$/.test(Buffer.from(pk).toString('latin1'))) bad('btt_pks')
      p.pk = Buffer.from(pk).toString('latin1')
    }
    out.push(p)
  }
}

/** HTTP announce (BEP 3) with optional bid-announce fields. `url` is the tracker's announce URL. */
export async function announce (url: string, params: AnnounceParams, opts: RequestOptions = {}): Promise<AnnounceResponse> {
  const q = [
    `info_hash=${escapeBytes(params.infoHash)}`,
    `peer_id=${escapeBytes(params.peerId)}`,
    `port=${params.port}`,
    `uploaded=${params.uploaded ?? 0}`,
    `downloaded=${params.downloaded ?? 0}`,
    `left=${params.left ?? 0}`,
    `compact=${params.compact === false ? 0 : 1}`
  ]
  if (params.event !== undefined) q.push(`event=${params.event}`)
  if (params.numwant !== undefined) q.push(`numwant=${params.numwant}`)
  if (params.bid !== undefined) q.push(`btt_bid=${params.bid.toString()}`)
  if (params.pk !== undefined) q.push(`btt_pk=${params.pk}`)
  if (params.orderByBid === true) q.push('btt_order=bid')
  if (params.btt === true) q.push('btt=1')
  const d = await getBencoded(`${url}${url.includes('?') ? '&' : '?'}${q.join('&')}`, opts)
  const res: AnnounceResponse = { interval: int(d, 'interval'), complete: int(d, 'complete'), incomplete: int(d, 'incomplete'), peers: [] }
  const mi = int(d, 'min interval', true)
  if (mi >= 0) res.minInterval = mi
  const peers = d.get('peers')
  if (Array.isArray(peers)) {
    for (const e of peers) {
      if (!isDict(e)) bad('peers')
      const ip = e.get('ip')
      if (!isBytes(ip)) bad('peers.ip')
      const port = int(e, 'port')
      if (port > 65535) bad('peers.port')
      const p: AnnouncedPeer = { ip: Buffer.from(ip).toString('utf8'), port }
      const id = e.get('peer id')
      if (id !== undefined) { if (!isBytes(id)) bad('peer id'); p.peerId = id }
      if (e.has('btt_bid')) p.bid = amount(e.get('btt_bid'), 'btt_bid')
      const pk = e.get('btt_pk')
      if (pk !== undefined) {
        if (!isBytes(pk) || !/^[0-9a-f]{64}$/.test(Buffer.from(pk).toString('latin1'))) bad('btt_pk')
        p.pk = Buffer.from(pk).toString('latin1')
      }
      res.peers.push(p)
    }
  } else {
    compactPeers(peers, 6, d.get('btt_bids'), d.get('btt_pks'), res.peers)
    compactPeers(d.get('peers6'), 18, d.get('btt_bids6'), d.get('btt_pks6'), res.peers)
  }
  return res
}

/**
 * GET <url>?min_bid=&limit=&cursor= . `url` is the tracker's bid-scrape URL
 * (e.g. http://host:port/bid-scrape).
 */
export async function bidScrape (url: string, q: { minBid?: bigint, limit?: number, cursor?: string } = {}, opts: RequestOptions = {}): Promise<BidScrapeResponse> {
  const parts: string[] = []
  if (q.minBid !== undefined) parts.push(`min_bid=${q.minBid.toString()}`)
  if (q.limit !== undefined) parts.push(`limit=${q.limit}`)
  if (q.cursor !== undefined) parts.push(`cursor=${encodeURIComponent(q.cursor)}`)
  const d = await getBencoded(parts.length === 0 ? url : `${url}?${parts.join('&')}`, opts)
  const files = d.get('files')
  if (!Array.isArray(files)) bad('files')
  const out: BidScrapeResponse = { files: [] }
  for (const f of files) {
    if (!isDict(f)) bad('files')
    const ih = f.get('info_hash')
    if (!isBytes(ih) || ih.length !== 20) bad('info_hash')
    out.files.push({
      infoHash: ih,
      complete: int(f, 'complete'),
      incomplete: int(f, 'incomplete'),
      downloaded: int(f, 'downloaded'),
      bidders: int(f, 'bidders'),
      bidMax: amount(f.get('bid_max'), 'bid_max'),
      bidMedian: amount(f.get('bid_median'), 'bid_median'),
      clearingPrice: amount(f.get('clearing_price'), 'clearing_price')
    })
  }
  const next = d.get('next')
  if (next !== undefined) {
    if (!isBytes(next) || next.length > 256) bad('next')
    out.next = Buffer.from(next).toString('latin1')
  }
  return out
}

/**
 * The bid-scrape URL of a tracker: as BEP 48 derives the scrape URL, the last path segment
 * `announce…` becomes `bid-scrape…`; a URL already ending in /bid-scrape, or with no path, works too.
 */
export function bidScrapeUrl (text: string): string {
  let u: URL
  try {
    u = new URL(text)
  } catch {
    throw new Error(`"${text}" is not a tracker URL (e.g. http://tracker.example:6969/announce)`)
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`"${text}": bid-scrape needs an http(s) tracker URL (bids are not carried over UDP)`)
  if (u.search !== '' || u.hash !== '') throw new Error(`"${text}": tracker URLs with a query string or fragment are not supported`)
  const i = u.pathname.lastIndexOf('/')
  const last = u.pathname.slice(i + 1)
  if (last.startsWith('announce')) u.pathname = u.pathname.slice(0, i + 1) + 'bid-scrape' + last.slice('announce'.length)
  else if (u.pathname === '/' || u.pathname === '') u.pathname = '/bid-scrape'
  else if (!last.startsWith('bid-scrape')) throw new Error(`"${text}": cannot derive the bid-scrape URL (the path must end in /announce or /bid-scrape)`)
  return u.toString()
}
