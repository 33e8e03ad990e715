/**
 * In-memory swarms. Each swarm keeps its peers in a Map ordered by last announce (so expiry pops from
 * the front), an array for O(1) random sampling, and its bidders sorted by bid (highest first) so
 * bid_max, median and clearing price are O(1) and the bid-scrape index never recomputes them.
 */
import { BTT_MAX_AMOUNT } from '@btt/wire'

export interface Peer {
  /** peer_id as a latin1 string (20 chars). */
  id: string
  ip: string
  port: number
  v6: boolean
  /** 6 (IPv4) or 18 (IPv6) bytes: address + port. */
  compact: Buffer
  seeder: boolean
  expires: number
  bid: bigint | undefined
  pk: string | undefined
  /** position in Swarm.list */
  idx: number
}

/**
 * What a source address counts as: an IPv4 address, or the /64 of an IPv6 one (one host usually
 * holds a whole /64, so per-address limits on full IPv6 addresses limit nothing).
 */
export function addressKey (ip: string): string {
  if (!ip.includes(':')) return ip
  const lower = ip.toLowerCase()
  if (lower.startsWith('::ffff:') && lower.includes('.')) return lower.slice(7)
  const [head = '', tail] = lower.split('::') as [string, string | undefined]
  const h = head === '' ? [] : head.split(':')
  const t = tail === undefined || tail === '' ? [] : tail.split(':')
  const groups = tail === undefined ? h : [...h, ...Array<string>(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t]
  return groups.slice(0, 4).map(g => g.replace(/^0+(?=.)/, '')).join(':') + '::/64'
}

export class Swarm {
  readonly peers = new Map<string, Peer>()
  /** Peers per source address (see addressKey). */
  readonly perAddress = new Map<string, number>()
  readonly list: Peer[] = []
  /** bidders, highest bid first; ties in insertion order */
  readonly bidders: Peer[] = []
  seeders = 0
  downloaded = 0
  /** bid-scrape index key, valid while the swarm has bidders and !keyDirty */
  key = ''
  keyDirty = true

  /** `totals` is shared by every swarm of one tracker: peers in all of them (its global cap). */
  constructor (readonly infoHash: Buffer, readonly hex: string, private readonly totals: { peers: number } = { peers: 0 }) {}

  get leechers (): number { return this.peers.size - this.seeders }

  /** Drops peers whose TTL passed; returns true when the set of bidders changed. */
  expire (now: number): boolean {
    let bidsChanged = false
    for (const p of this.peers.values()) {
      if (p.expires > now) break
      if (this.remove(p)) bidsChanged = true
    }
    return bidsChanged
  }

  add (p: Peer): void {
    this.peers.set(p.id, p)
    const a = addressKey(p.ip)
    this.perAddress.set(a, (this.perAddress.get(a) ?? 0) + 1)
    this.totals.peers++
    p.idx = this.list.length
    this.list.push(p)
    if (p.seeder) this.seeders++
    if (p.bid !== undefined) this.insertBidder(p)
  }

  /** Moves `p` to the back of the expiry order. */
  touch (p: Peer): void {
    this.peers.delete(p.id)
    this.peers.set(p.id, p)
  }

  /** Returns true when `p` was a bidder. */
  remove (p: Peer): boolean {
    if (!this.peers.delete(p.id)) return false
    this.totals.peers--
    const a = addressKey(p.ip)
    const n = (this.perAddress.get(a) ?? 1) - 1
    if (n <= 0) this.perAddress.delete(a)
    else this.perAddress.set(a, n)
    const last = this.list.pop() as Peer
    if (last !== p) {
      this.list[p.idx] = last
      last.idx = p.idx
    }
    if (p.seeder) this.seeders--
    if (p.bid !== undefined) {
      this.removeBidder(p)
      return true
    }
    return false
  }

  setSeeder (p: Peer, seeder: boolean): void {
    if (p.seeder === seeder) return
    this.seeders += seeder ? 1 : -1
    p.seeder = seeder
  }

  /** Returns true when the bid changed. */
  setBid (p: Peer, bid: bigint | undefined, pk: string | undefined): boolean {
    p.pk = pk
    if (p.bid === bid) return false
    if (p.bid !== undefined) this.removeBidder(p)
    p.bid = bid
    if (bid !== undefined) this.insertBidder(p)
    return true
  }

  private insertBidder (p: Peer): void {
    const bid = p.bid as bigint
    const a = this.bidders
    let lo = 0
    let hi = a.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if ((a[mid] as Peer).bid as bigint >= bid) lo = mid + 1
      else hi = mid
    }
    a.splice(lo, 0, p)
    if (lo === 0) this.keyDirty = true
  }

  private removeBidder (p: Peer): void {
    const i = this.bidders.indexOf(p)
    if (i >= 0) this.bidders.splice(i, 1)
    if (i === 0) this.keyDirty = true
  }

  get bidMax (): bigint { return (this.bidders[0] as Peer).bid as bigint }

  /** Median bid (lower median for an even count). */
  get bidMedian (): bigint {
    const n = this.bidders.length
    return (this.bidders[Math.floor(n / 2)] as Peer).bid as bigint
  }

  /**
   * Clearing-price estimate with `slots` paid slots: the (slots+1)-th highest bid (the highest losing
   * bid of a uniform-price auction) when more bidders than slots compete, else the lowest bid.
   */
  clearingPrice (slots: number): bigint {
    const n = this.bidders.length
    return (this.bidders[n > slots ? slots : n - 1] as Peer).bid as bigint
  }

  /** Sort key of the bid-scrape index: ascending key = bid_max descending, then info hash ascending. */
  computeKey (): string {
    if (!this.keyDirty) return this.key
    this.keyDirty = false
    return (BTT_MAX_AMOUNT - this.bidMax).toString(16).padStart(32, '0') + this.hex
  }
}
