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
}

export interface ChokeContext {
  /** Our side of this torrent has every piece. */
  readonly seeding: boolean
  readonly now: number
}

export interface ChokePolicy {
  /** Returns the keys of the peers to keep or make unchoked; every other peer is choked. */
  rechoke (peers: readonly ChokerPeer[], ctx: ChokeContext): Set<string>
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
