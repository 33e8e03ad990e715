/** One peer asking for a paid slot: its bid in base units per KiB and how fast it takes data. */
export interface Bidder {
  id: string
  /** Base units (10^-18 BTT) per KiB. */
  bid: bigint
  /** Transfer rate in bytes/s (the tie-break between equal bids). */
  rate: number
}

export interface AuctionResult {
  /** Winners in rank order (at most `slots`). */
  winners: string[]
  /** What every winner pays per KiB; undefined when nobody won. */
  price?: bigint
  /** Eligible bidders that did not win, in rank order. */
  losers: string[]
}

/**
 * The uniform-price multi-unit auction of BitTorrent Speed (DESIGN.md "Choking"): bidders with
 * bid ≥ reserve are eligible; they are ranked by bid, then by transfer rate (then by id, so the
 * result never depends on input order); the top `slots` win and all pay the same price, the
 * highest losing eligible bid or the reserve, whichever is higher. A lone bidder pays the reserve.
 * No winner ever pays more than its own bid.
 */
export function runAuction (bidders: readonly Bidder[], slots: number, reserve: bigint): AuctionResult {
  if (!Number.isInteger(slots) || slots < 0) throw new RangeError('slots must be a non-negative integer')
  if (reserve < 0n) throw new RangeError('reserve must not be negative')
  const eligible = bidders.filter(b => b.bid >= reserve && b.bid >= 0n)
  const ranked = [...eligible].sort((a, b) =>
    a.bid !== b.bid ? (a.bid > b.bid ? -1 : 1) : a.rate !== b.rate ? b.rate - a.rate : a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
  const winners = ranked.slice(0, slots)
  const losers = ranked.slice(slots)
  if (winners.length === 0) return { winners: [], losers: losers.map(b => b.id) }
  const highestLosing = losers[0]?.bid
  const price = highestLosing !== undefined && highestLosing > reserve ? highestLosing : reserve
  return { winners: winners.map(b => b.id), price, losers: losers.map(b => b.id) }
}
