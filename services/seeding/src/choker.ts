import { runAuction } from '@btt/market'

/**
 * Choking as a replaceable policy. The engine calls `rechoke` for each torrent every rechoke
 * interval (and soon after a peer becomes interested) and unchokes exactly the peers returned.
 * Paid seeding ([D]) replaces the default with its auction.
 */
export interface ChokerPeer {
  readonly key: string
  readonly interested: boolean
  /** True while we choke this peer. */
  readonly choked: boolean
  /** Bytes/s we send to the peer and receive from it. */
  readonly uploadRate: number
  readonly downloadRate: number
  /** The peer has every piece. */
  readonly seed: boolean
  /** When we last unchoked it (ms since epoch), 0 if never. */
  readonly lastUnchokedAt: number
  /** Its `btt` bid per KiB, when it bids (paid seeding). */
  readonly bid?: bigint
}

export interface ChokeContext {
  /** Our side of this torrent has every piece. */
  readonly seeding: boolean
  readonly now: number
  /** The torrent's reserve price per KiB (paid seeding). */
  readonly reserve?: bigint
}

/** A choker's answer with paid slots: `paid` maps each paid winner to its price per KiB. */
export interface ChokeDecision {
  unchoke: Set<string>
  paid: Map<string, bigint>
  /** Ask again in this many ms (bids are still being collected). */
  retryInMs?: number
}

export interface ChokePolicy {
  /** The keys of the peers to keep or make unchoked (every other peer is choked), and the paid ones. */
  rechoke (peers: readonly ChokerPeer[], ctx: ChokeContext): Set<string> | ChokeDecision
}

export interface SlotsChokerOptions {
  /** Regular upload slots per torrent. */
  slots: number
  /** Optimistic slots, rotated round-robin. */
  optimistic: number
  /** How long an optimistic unchoke lasts before rotating. */
  optimisticMs: number
}

/**
 * The classic choker: `slots` interested peers with the best rate (what they send us while we
 * download, what we send them while we seed), plus `optimistic` slots given round-robin to the
 * interested peer that has waited longest.
 */
export class SlotsChokePolicy implements ChokePolicy {
  private optimisticSince = 0
  private optimisticKeys = new Set<string>()

  constructor (private readonly opts: SlotsChokerOptions) {}

  rechoke (peers: readonly ChokerPeer[], ctx: ChokeContext): Set<string> {
    const candidates = peers.filter(p => p.interested && !(ctx.seeding && p.seed))
    const rate = (p: ChokerPeer): number => ctx.seeding ? p.uploadRate : p.downloadRate
    const ranked = [...candidates].sort((a, b) => rate(b) - rate(a) || a.lastUnchokedAt - b.lastUnchokedAt)
    const out = new Set(ranked.slice(0, this.opts.slots).map(p => p.key))
    const rest = ranked.filter(p => !out.has(p.key))
    const rotate = ctx.now - this.optimisticSince >= this.opts.optimisticMs
    const kept = [...this.optimisticKeys].filter(k => rest.some(p => p.key === k))
    if (rotate || kept.length < Math.min(this.opts.optimistic, rest.length)) {
      // the longest-waiting peers first: never unchoked, then unchoked longest ago
      const waiting = [...rest].sort((a, b) => a.lastUnchokedAt - b.lastUnchokedAt)
      this.optimisticKeys = new Set(waiting.slice(0, this.opts.optimistic).map(p => p.key))
      this.optimisticSince = ctx.now
    } else {
      this.optimisticKeys = new Set(kept)
    }
    for (const k of this.optimisticKeys) out.add(k)
    return out
  }
}

export interface AuctionChokerOptions {
  /** Slots sold by auction. */
  paidSlots: number
  /** Slots by rate for peers that do not bid (legacy clients keep working). */
  freeSlots: number
  optimistic: number
  optimisticMs: number
  /**
   * While no paid slot is taken, bids are collected this long after the first bidder appears
   * before the first auction, so simultaneous bidders compete (a sealed-bid round).
   */
  bidWindowMs: number
}

/**
 * The BitTorrent Speed choker (DESIGN.md "Choking"): paid slots by a uniform-price auction among
 * bidders whose bid ≥ the reserve, free slots by rate among peers that do not bid, and an
 * optimistic unchoke round-robin over everyone else that is interested, where the longest wait
 * goes first and equal waits go to the higher bid.
 */
export class AuctionChokePolicy implements ChokePolicy {
  private optimisticSince = 0
  private optimisticKeys = new Set<string>()
  private readonly firstSeen = new Map<string, number>()
  private winners = new Set<string>()

  constructor (private readonly opts: AuctionChokerOptions) {}

  rechoke (peers: readonly ChokerPeer[], ctx: ChokeContext): ChokeDecision {
    const candidates = peers.filter(p => p.interested && !(ctx.seeding && p.seed))
    const bidders = candidates.filter(p => p.bid !== undefined && p.bid > 0n)
    for (const k of this.firstSeen.keys()) if (!bidders.some(p => p.key === k)) this.firstSeen.delete(k)
    for (const p of bidders) if (!this.firstSeen.has(p.key)) this.firstSeen.set(p.key, ctx.now)
    const paid = new Map<string, bigint>()
    let retryInMs: number | undefined
    const selling = bidders.some(p => this.winners.has(p.key))
    const oldest = Math.min(...bidders.map(p => this.firstSeen.get(p.key)!))
    if (bidders.length > 0 && !selling && ctx.now - oldest < this.opts.bidWindowMs) {
      retryInMs = oldest + this.opts.bidWindowMs - ctx.now
    } else {
      const auction = runAuction(bidders.map(p => ({ id: p.key, bid: p.bid!, rate: p.downloadRate })), this.opts.paidSlots, ctx.reserve ?? 0n)
      for (const k of auction.winners) paid.set(k, auction.price!)
    }
    this.winners = new Set(paid.keys())
    const out = new Set(paid.keys())
    const rate = (p: ChokerPeer): number => ctx.seeding ? p.uploadRate : p.downloadRate
    const free = candidates.filter(p => p.bid === undefined || p.bid <= 0n)
      .sort((a, b) => rate(b) - rate(a) || a.lastUnchokedAt - b.lastUnchokedAt)
      .slice(0, this.opts.freeSlots)
    for (const p of free) out.add(p.key)
    const rest = candidates.filter(p => !out.has(p.key))
    const rotate = ctx.now - this.optimisticSince >= this.opts.optimisticMs
    const kept = [...this.optimisticKeys].filter(k => rest.some(p => p.key === k))
    if (rotate || kept.length < Math.min(this.opts.optimistic, rest.length)) {
      const bidOf = (p: ChokerPeer): bigint => p.bid ?? 0n
      const waiting = [...rest].sort((a, b) => a.lastUnchokedAt - b.lastUnchokedAt || (bidOf(b) > bidOf(a) ? 1 : bidOf(b) < bidOf(a) ? -1 : 0))
      this.optimisticKeys = new Set(waiting.slice(0, this.opts.optimistic).map(p => p.key))
      this.optimisticSince = ctx.now
    } else {
      this.optimisticKeys = new Set(kept)
    }
    for (const k of this.optimisticKeys) out.add(k)
    return { unchoke: out, paid, ...(retryInMs !== undefined ? { retryInMs } : {}) }
  }
}
