import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { incomeScore, planAutopilot, type AutopilotPolicy, type HeldTorrent, type ScrapedTorrent } from './autopilot.js'

const H = 3_600_000
const ih = (n: number): string => n.toString(16).padStart(40, '0')
const policy = (over: Partial<AutopilotPolicy> = {}): AutopilotPolicy => ({
  diskBudget: 10_000, maxTorrents: 10, minPrice: 0n, dropAfterMs: 6 * H, pinned: new Set(), banned: new Set(), ...over
})
const scraped = (n: number, over: Partial<ScrapedTorrent> = {}): ScrapedTorrent => ({
  infoHash: ih(n), size: 1000, bidders: 1, bidMax: 10n, clearingPrice: 10n, seeders: 0, leechers: 1, ...over
})
const byHash = (ds: ReturnType<typeof planAutopilot>): Map<string, (typeof ds)[number]> => new Map(ds.map(d => [d.infoHash, d]))

describe('incomeScore', () => {
  it('is clearing price × bidders / (seeders + 1), 0 without bidders or price', () => {
    expect(incomeScore({ clearingPrice: 30n, bidders: 4, seeders: 2 })).toBe(40n)
    expect(incomeScore({ clearingPrice: 30n, bidders: 0, seeders: 0 })).toBe(0n)
    expect(incomeScore({ clearingPrice: 0n, bidders: 9, seeders: 0 })).toBe(0n)
  })
})

describe('planAutopilot', () => {
  it('adds the best-paying torrents first and says why (rank, price, bidders, seeders)', () => {
    const ds = planAutopilot([
      scraped(1, { clearingPrice: 10n, bidders: 1 }),
      scraped(2, { clearingPrice: 10n, bidders: 5, seeders: 1 }),
      scraped(3, { clearingPrice: 100n, bidders: 2, seeders: 0 })
    ], [], policy({ maxTorrents: 2 }), 0)
    expect(ds.map(d => [d.infoHash, d.action, d.code])).toEqual([
      [ih(3), 'add', 'BEST_INCOME'], [ih(2), 'add', 'BEST_INCOME'], [ih(1), 'skip', 'OVER_MAX_TORRENTS']
    ])
    expect(ds[0]!.reason).toBe('rank 1 by expected income: clearing price 100 base units/KiB × 2 bidder(s) / (0 seeder(s) + us) = 200')
    expect(ds[1]!.score).toBe(25n)
  })

  it('equal scores are ordered by infohash, whatever the input order', () => {
    const a = planAutopilot([scraped(9), scraped(4), scraped(7)], [], policy(), 0)
    const b = planAutopilot([scraped(7), scraped(9), scraped(4)], [], policy(), 0)
    expect(a).toEqual(b)
    expect(a.map(d => d.infoHash)).toEqual([ih(4), ih(7), ih(9)])
  })

  it('skips what does not fit the disk budget but still adds a smaller, lower-ranked one that does', () => {
    const ds = byHash(planAutopilot([
      scraped(1, { clearingPrice: 50n, size: 6000 }),
      scraped(2, { clearingPrice: 40n, size: 6000 }),
      scraped(3, { clearingPrice: 30n, size: 4000 })
    ], [], policy({ diskBudget: 10_000 }), 0))
    expect(ds.get(ih(1))!.action).toBe('add')
    expect(ds.get(ih(2))).toMatchObject({ action: 'skip', code: 'OVER_DISK_BUDGET', reason: 'needs 6000 bytes, 4000 left of the disk budget' })
    expect(ds.get(ih(3))!.action).toBe('add')
  })

  it('skips banned torrents, torrents nobody bids on, and prices below the minimum', () => {
    const ds = byHash(planAutopilot([
      scraped(1), scraped(2, { bidders: 0 }), scraped(3, { clearingPrice: 4n })
    ], [], policy({ banned: new Set([ih(1)]), minPrice: 5n }), 0))
    expect(ds.get(ih(1))).toMatchObject({ action: 'skip', code: 'BANNED' })
    expect(ds.get(ih(2))).toMatchObject({ action: 'skip', code: 'NO_BIDDERS' })
    expect(ds.get(ih(3))).toMatchObject({ action: 'skip', code: 'BELOW_MIN_PRICE', reason: 'clearing price 4 is below the minimum 5 base units/KiB' })
  })

  it('held torrents: pins kept, operator torrents left alone, banned and unpaid autopilot torrents dropped, paying ones kept', () => {
    const now = 100 * H
    const held: HeldTorrent[] = [
      { infoHash: ih(1), size: 100, addedAt: 0, byAutopilot: true },
      { infoHash: ih(2), size: 100, addedAt: 0, byAutopilot: false },
      { infoHash: ih(3), size: 100, addedAt: now - H, byAutopilot: true },
      { infoHash: ih(4), size: 100, addedAt: 0, lastPaidAt: now - 7 * H, byAutopilot: true },
      { infoHash: ih(5), size: 100, addedAt: 0, lastPaidAt: now - 30 * 60_000, byAutopilot: true },
      { infoHash: ih(6), size: 100, addedAt: 0, lastPaidAt: now - 30 * 60_000, byAutopilot: true }
    ]
    const ds = byHash(planAutopilot([], held, policy({ pinned: new Set([ih(1)]), banned: new Set([ih(6)]) }), now))
    expect(ds.get(ih(1))).toMatchObject({ action: 'keep', code: 'PINNED' })
    expect(ds.get(ih(2))).toMatchObject({ action: 'keep', code: 'NOT_OURS' })
    expect(ds.get(ih(3))).toMatchObject({ action: 'keep', code: 'NEW' })
    expect(ds.get(ih(4))).toMatchObject({ action: 'drop', code: 'UNPAID', reason: 'no payment for 7.0 h' })
    expect(ds.get(ih(5))).toMatchObject({ action: 'keep', code: 'EARNING', reason: 'paid 30 min ago' })
    expect(ds.get(ih(6))).toMatchObject({ action: 'drop', code: 'BANNED' })
  })

  it('a torrent held already is not added again; held autopilot torrents count against the budget and the cap', () => {
    const held: HeldTorrent[] = [{ infoHash: ih(1), size: 9000, addedAt: 0, lastPaidAt: 0, byAutopilot: true }]
    const ds = planAutopilot([scraped(1), scraped(2, { size: 2000 }), scraped(3, { size: 500 })], held, policy({ diskBudget: 10_000, maxTorrents: 2 }), 1)
    expect(ds.filter(d => d.infoHash === ih(1))).toHaveLength(1)
    expect(byHash(ds).get(ih(2))).toMatchObject({ action: 'skip', code: 'OVER_DISK_BUDGET' })
    expect(byHash(ds).get(ih(3))).toMatchObject({ action: 'add' })
  })

  it('property: one decision per torrent; what is added fits the budget and the cap left by what is kept', () => {
    const arbScraped = fc.record({
      infoHash: fc.integer({ min: 0, max: 60 }).map(ih),
      size: fc.option(fc.integer({ min: 0, max: 5000 }), { nil: undefined }),
      bidders: fc.integer({ min: 0, max: 20 }),
      bidMax: fc.bigInt({ min: 0n, max: 1000n }),
      clearingPrice: fc.bigInt({ min: 0n, max: 1000n }),
      seeders: fc.integer({ min: 0, max: 20 }),
      leechers: fc.integer({ min: 0, max: 20 })
    })
    const arbHeld = fc.record({
      infoHash: fc.integer({ min: 0, max: 60 }).map(ih),
      size: fc.integer({ min: 0, max: 5000 }),
      addedAt: fc.integer({ min: 0, max: 100 * H }),
      lastPaidAt: fc.option(fc.integer({ min: 0, max: 100 * H }), { nil: undefined }),
      byAutopilot: fc.boolean()
    })
    fc.assert(fc.property(
      fc.uniqueArray(arbScraped, { selector: s => s.infoHash, maxLength: 30 }),
      fc.uniqueArray(arbHeld, { selector: h => h.infoHash, maxLength: 10 }),
      fc.integer({ min: 0, max: 20_000 }), fc.integer({ min: 0, max: 8 }), fc.bigInt({ min: 0n, max: 500n }),
      (s, held, diskBudget, maxTorrents, minPrice) => {
        const p = policy({ diskBudget, maxTorrents, minPrice, pinned: new Set([ih(1), ih(2)]), banned: new Set([ih(3), ih(4)]) })
        const now = 100 * H
        const ds = planAutopilot(s, held, p, now)
        const keys = new Set([...held.map(h => h.infoHash), ...s.map(x => x.infoHash)])
        expect(ds.map(d => d.infoHash).sort()).toEqual([...keys].sort())
        const d = byHash(ds)
        const keptOurs = held.filter(h => h.byAutopilot && d.get(h.infoHash)!.action === 'keep')
        const added = s.filter(x => d.get(x.infoHash)!.action === 'add')
        const keptBytes = keptOurs.reduce((a, h) => a + h.size, 0)
        const addedBytes = added.reduce((a, x) => a + (x.size ?? 0), 0)
        if (added.length > 0) {
          expect(keptBytes + addedBytes).toBeLessThanOrEqual(diskBudget)
          expect(keptOurs.length + added.length).toBeLessThanOrEqual(maxTorrents)
        }
        for (const x of added) {
          expect(x.clearingPrice >= minPrice && x.bidders > 0 && !p.banned.has(x.infoHash)).toBe(true)
          expect(held.some(h => h.infoHash === x.infoHash)).toBe(false)
        }
        // nothing the operator pinned or added is dropped
        for (const h of held) if (p.pinned.has(h.infoHash) || !h.byAutopilot) expect(d.get(h.infoHash)!.action).toBe('keep')
      }
    ), { numRuns: 2000 })
  })
})
