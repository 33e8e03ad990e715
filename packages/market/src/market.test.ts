import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { autoBid, BidScheduler, parseSpendingRate, PPM } from './autobid.js'
import { runAuction, type Bidder } from './auction.js'
import { selectChallenge, UploadBitmap } from './challenge.js'
import { reservePrice } from './reserve.js'

const bidder = fc.record({
  id: fc.string({ minLength: 1, maxLength: 4 }),
  bid: fc.bigInt({ min: 0n, max: 10n ** 20n }),
  rate: fc.integer({ min: 0, max: 1e9 })
})
const bidders = fc.uniqueArray(bidder, { selector: b => b.id, maxLength: 12 })

describe('uniform-price auction', () => {
  it('examples: winners by bid, all pay the highest losing bid or the reserve; a lone bidder pays the reserve', () => {
    const bs: Bidder[] = [{ id: 'a', bid: 100n, rate: 1 }, { id: 'b', bid: 40n, rate: 1 }, { id: 'c', bid: 5n, rate: 9 }]
    expect(runAuction(bs, 1, 10n)).toEqual({ winners: ['a'], price: 40n, losers: ['b'] })
    expect(runAuction(bs, 1, 50n)).toEqual({ winners: ['a'], price: 50n, losers: [] })
    expect(runAuction(bs, 2, 10n)).toEqual({ winners: ['a', 'b'], price: 10n, losers: [] })
    expect(runAuction([{ id: 'x', bid: 7n, rate: 0 }], 3, 3n)).toEqual({ winners: ['x'], price: 3n, losers: [] })
    expect(runAuction(bs, 1, 101n)).toEqual({ winners: [], losers: [] })
    // equal bids: the faster peer wins
    expect(runAuction([{ id: 'slow', bid: 9n, rate: 1 }, { id: 'fast', bid: 9n, rate: 2 }], 1, 0n).winners).toEqual(['fast'])
  })

  it('properties over random bidders: eligibility, slot count, uniform price, individual rationality, order independence', () => {
    fc.assert(fc.property(bidders, fc.integer({ min: 0, max: 5 }), fc.bigInt({ min: 0n, max: 10n ** 20n }), fc.integer(), (bs, slots, reserve, seed) => {
      const r = runAuction(bs, slots, reserve)
      const byId = new Map(bs.map(b => [b.id, b]))
      const eligible = bs.filter(b => b.bid >= reserve)
      expect(r.winners.length).toBe(Math.min(slots, eligible.length))
      for (const id of [...r.winners, ...r.losers]) expect(byId.get(id)!.bid >= reserve).toBe(true)
      if (r.winners.length === 0) {
        expect(r.price).toBeUndefined()
        return
      }
      const price = r.price!
      expect(price >= reserve).toBe(true)
      // nobody pays more than it bid; every loser bid at most the price; no loser outbid a winner
      for (const id of r.winners) expect(byId.get(id)!.bid >= price).toBe(true)
      for (const id of r.losers) expect(byId.get(id)!.bid <= price).toBe(true)
      const minWin = r.winners.map(id => byId.get(id)!.bid).reduce((a, b) => a < b ? a : b)
      for (const id of r.losers) expect(byId.get(id)!.bid <= minWin).toBe(true)
      const highestLoser = r.losers.length > 0 ? byId.get(r.losers[0]!)!.bid : undefined
      expect(price).toBe(highestLoser !== undefined && highestLoser > reserve ? highestLoser : reserve)
      // the input order does not matter
      const shuffled = [...bs].sort((a, b) => ((a.id.charCodeAt(0) * 31 + seed) % 7) - ((b.id.charCodeAt(0) * 31 + seed) % 7))
      expect(runAuction(shuffled, slots, reserve)).toEqual(r)
    }), { numRuns: 5000, seed: 42 })
  })
})

describe('reserve price', () => {
  const schedule = { perHour: 3600n, cap: 5000n }
  it('is 0 at completion, grows linearly with the time since the last proof, stops at the cap; a proof resets it', () => {
    expect(reservePrice(schedule, { completedAt: 1000 }, 1000)).toBe(0n)
    expect(reservePrice(schedule, { completedAt: 0 }, 1000)).toBe(1n)
    expect(reservePrice(schedule, { completedAt: 0 }, 3_600_000)).toBe(3600n)
    expect(reservePrice(schedule, { completedAt: 0 }, 10 * 3_600_000)).toBe(5000n)
    expect(reservePrice(schedule, { completedAt: 0, lastProofAt: 7_200_000 }, 7_200_000)).toBe(0n)
    expect(reservePrice({ ...schedule, override: 77n }, { completedAt: 0 }, 9e9)).toBe(77n)
  })
  it('never decreases as time passes without a proof', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 1e10 }), fc.integer({ min: 0, max: 1e10 }), (a, b) => {
      const [t1, t2] = a < b ? [a, b] : [b, a]
      expect(reservePrice(schedule, { completedAt: 0 }, t1) <= reservePrice(schedule, { completedAt: 0 }, t2)).toBe(true)
    }), { numRuns: 2000, seed: 7 })
  })
})

describe('possession challenge', () => {
  const secret = Buffer.alloc(32, 1)
  const ih = Buffer.alloc(20, 2)
  it('is reproducible from (secret, infohash), differs for another infohash, and never names an uploaded chunk', () => {
    const bm = new UploadBitmap(1000)
    const c = selectChallenge(secret, ih, bm)
    expect(selectChallenge(secret, ih, bm)).toBe(c)
    const others = new Set(Array.from({ length: 20 }, (_, i) => selectChallenge(secret, Buffer.alloc(20, 3 + i), bm)))
    expect(others.size).toBeGreaterThan(10)
    for (let i = 0; i < 999; i++) if (i !== 500) bm.mark(i)
    expect(selectChallenge(secret, ih, bm)).toBe(500)
  })
  it('the bitmap clears when every chunk has been uploaded', () => {
    const bm = new UploadBitmap(10)
    for (let i = 0; i < 9; i++) bm.mark(i)
    expect(bm.count).toBe(9)
    bm.mark(9)
    expect(bm.count).toBe(0)
    expect(bm.has(3)).toBe(false)
  })
  it('draws roughly uniformly', () => {
    const bm = new UploadBitmap(10)
    const counts = new Array(10).fill(0) as number[]
    for (let d = 0; d < 5000; d++) counts[selectChallenge(secret, ih, bm, d)]!++
    for (const n of counts) expect(n).toBeGreaterThan(400)
  })
})

describe('auto-bid', () => {
  it('bids spendingRate × balance / (remaining / 1024), exactly, in base units per KiB', () => {
    expect(autoBid({ spendingRatePpm: PPM, balance: 10n ** 18n, remainingBytes: 1024n * 1000n })).toBe(10n ** 15n)
    expect(autoBid({ spendingRatePpm: parseSpendingRate('0.5'), balance: 10n ** 18n, remainingBytes: 1024n * 1000n })).toBe(5n * 10n ** 14n)
    expect(autoBid({ spendingRatePpm: PPM, balance: 10n ** 18n, remainingBytes: 0n })).toBe(0n)
    expect(() => parseSpendingRate('1.5')).toThrow()
    expect(() => parseSpendingRate('0.1234567')).toThrow()
    expect(parseSpendingRate('1.0')).toBe(PPM)
  })
  it('never spends more than spendingRate × balance on the remaining bytes', () => {
    fc.assert(fc.property(fc.bigInt({ min: 0n, max: PPM }), fc.bigInt({ min: 0n, max: 10n ** 24n }), fc.bigInt({ min: 1n, max: 2n ** 50n }), (r, balance, rem) => {
      const bid = autoBid({ spendingRatePpm: r, balance, remainingBytes: rem })
      expect(bid * rem <= r * balance * 1024n / PPM).toBe(true)
    }), { numRuns: 5000, seed: 3 })
  })
  it('re-bids at once on a budget change, else only after a minute and a change over 10 %', () => {
    const s = new BidScheduler()
    expect(s.next(100n, 0)).toBe(100n)
    expect(s.next(200n, 30_000)).toBeUndefined()
    expect(s.next(109n, 61_000)).toBeUndefined()
    expect(s.next(111n, 61_000)).toBe(111n)
    expect(s.next(50n, 62_000, true)).toBe(50n)
  })
})
