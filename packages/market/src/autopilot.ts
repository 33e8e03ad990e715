/**
 * The seeding autopilot's planner (pure): given what bid-scrape says about torrents and what the
 * node seeds now, decide what to fetch, keep and drop, with a reason for every decision. The
 * service runs it on a timer and carries the decisions out; this module never touches the network.
 */

/** A torrent as bid-scrape reports it (merged over the node's trackers). */
export interface ScrapedTorrent {
  infoHash: string
  /** Bytes, when known (bid-scrape does not carry it; metadata does). */
  size?: number
  /** Live bidders and what they bid, base units per KiB. */
  bidders: number
  bidMax: bigint
  clearingPrice: bigint
  seeders: number
  leechers: number
}

/** A torrent the node seeds now. */
export interface HeldTorrent {
  infoHash: string
  /** Bytes on disk (or reserved for it). */
  size: number
  /** When it was added (ms). */
  addedAt: number
  /** When a payer last paid for it (ms); undefined if never. */
  lastPaidAt?: number
  /** Added by the autopilot (the autopilot only ever drops its own torrents). */
  byAutopilot: boolean
}

export interface AutopilotPolicy {
  /** Bytes the autopilot's torrents may take together. */
  diskBudget: number
  /** Most torrents the autopilot holds at once. */
  maxTorrents: number
  /** A torrent whose clearing price is below this (base units per KiB) is not worth fetching. */
  minPrice: bigint
  /** An autopilot torrent unpaid for this long (ms; counted from when it was added) is dropped. */
  dropAfterMs: number
  /** Operator's pins (always kept, never dropped) and bans (never fetched; dropped if held). */
  pinned: ReadonlySet<string>
  banned: ReadonlySet<string>
}

export type DecisionCode =
  | 'PINNED' | 'BANNED' | 'UNPAID' | 'EARNING' | 'NOT_OURS' | 'NEW' | 'BEST_INCOME'
  | 'BELOW_MIN_PRICE' | 'NO_BIDDERS' | 'OVER_DISK_BUDGET' | 'OVER_MAX_TORRENTS'

export interface Decision {
  infoHash: string
  action: 'add' | 'keep' | 'drop' | 'skip'
  code: DecisionCode
  /** Expected income score (see `incomeScore`), for candidates. */
  score?: bigint
  /** A sentence for the operator; amounts in base units. */
  reason: string
}

/**
 * What a torrent is expected to pay, relative to others: bids × demand / supply, i.e. the clearing
 * price per KiB × number of bidders / (seeders + 1, counting us). Size is left out on purpose:
 * every bidder pays per KiB it takes, so a torrent's income per byte of disk does not grow with its
 * size, and bid-scrape does not know sizes anyway.
 */
export function incomeScore (t: Pick<ScrapedTorrent, 'clearingPrice' | 'bidders' | 'seeders'>): bigint {
  if (t.bidders <= 0 || t.clearingPrice <= 0n) return 0n
  return t.clearingPrice * BigInt(t.bidders) / BigInt(Math.max(0, t.seeders) + 1)
}

/**
 * One planning round. Held torrents come first (pins kept, bans and unpaid autopilot torrents
 * dropped), then candidates by score, highest first (ties by infohash), added while they fit the
 * disk budget and the torrent cap. Every held torrent and every scraped candidate gets exactly one
 * decision.
 */
export function planAutopilot (scraped: readonly ScrapedTorrent[], held: readonly HeldTorrent[], policy: AutopilotPolicy, now: number): Decision[] {
  if (!Number.isFinite(policy.diskBudget) || policy.diskBudget < 0) throw new RangeError('diskBudget must be a non-negative number of bytes')
  if (!Number.isInteger(policy.maxTorrents) || policy.maxTorrents < 0) throw new RangeError('maxTorrents must be a non-negative integer')
  if (policy.minPrice < 0n) throw new RangeError('minPrice must not be negative')
  const out: Decision[] = []
  const heldKeys = new Set(held.map(h => h.infoHash))
  let used = 0
  let count = 0
  for (const h of held) {
    if (policy.pinned.has(h.infoHash)) {
      out.push({ infoHash: h.infoHash, action: 'keep', code: 'PINNED', reason: 'pinned by the operator' })
      if (h.byAutopilot) { used += h.size; count++ }
      continue
    }
    if (!h.byAutopilot) {
      out.push({ infoHash: h.infoHash, action: 'keep', code: 'NOT_OURS', reason: 'added by the operator, not by the autopilot' })
      continue
    }
    if (policy.banned.has(h.infoHash)) {
      out.push({ infoHash: h.infoHash, action: 'drop', code: 'BANNED', reason: 'banned by the operator' })
      continue
    }
    const since = h.lastPaidAt ?? h.addedAt
    if (now - since >= policy.dropAfterMs) {
      const hours = ((now - since) / 3_600_000).toFixed(1)
      out.push({ infoHash: h.infoHash, action: 'drop', code: 'UNPAID', reason: h.lastPaidAt === undefined ? `no payment in the ${hours} h since it was added` : `no payment for ${hours} h` })
      continue
    }
    used += h.size
    count++
    out.push(h.lastPaidAt === undefined
      ? { infoHash: h.infoHash, action: 'keep', code: 'NEW', reason: 'added recently; waiting for its first payment' }
      : { infoHash: h.infoHash, action: 'keep', code: 'EARNING', reason: `paid ${((now - h.lastPaidAt) / 60_000).toFixed(0)} min ago` })
  }
  const candidates = scraped
    .filter(s => !heldKeys.has(s.infoHash))
    .map(s => ({ s, score: incomeScore(s) }))
    .sort((a, b) => a.score !== b.score ? (a.score > b.score ? -1 : 1) : a.s.infoHash < b.s.infoHash ? -1 : a.s.infoHash > b.s.infoHash ? 1 : 0)
  let rank = 0
  for (const { s, score } of candidates) {
    rank++
    const skip = (code: DecisionCode, reason: string): void => { out.push({ infoHash: s.infoHash, action: 'skip', code, score, reason }) }
    if (policy.banned.has(s.infoHash)) { skip('BANNED', 'banned by the operator'); continue }
    if (s.bidders <= 0) { skip('NO_BIDDERS', 'nobody bids on it'); continue }
    if (s.clearingPrice < policy.minPrice) { skip('BELOW_MIN_PRICE', `clearing price ${s.clearingPrice} is below the minimum ${policy.minPrice} base units/KiB`); continue }
    if (count >= policy.maxTorrents) { skip('OVER_MAX_TORRENTS', `already holding ${count} torrents (max_torrents ${policy.maxTorrents})`); continue }
    if (s.size !== undefined && used + s.size > policy.diskBudget) { skip('OVER_DISK_BUDGET', `needs ${s.size} bytes, ${Math.max(0, policy.diskBudget - used)} left of the disk budget`); continue }
    // size unknown until its metadata arrives (bid-scrape has none): added only while budget is left
    if (s.size === undefined && used >= policy.diskBudget) { skip('OVER_DISK_BUDGET', 'the disk budget is used up'); continue }
    used += s.size ?? 0
    count++
    out.push({
      infoHash: s.infoHash,
      action: 'add',
      code: 'BEST_INCOME',
      score,
      reason: `rank ${rank} by expected income: clearing price ${s.clearingPrice} base units/KiB × ${s.bidders} bidder(s) / (${s.seeders} seeder(s) + us) = ${score}`
    })
  }
  return out
}
