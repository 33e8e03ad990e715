import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { amountFromBytes, encodeVoucher, generateKeyPair, MemoryChannelStore, Payer, randomBytes, toHex, type Debit } from '@btt/channel'
import { Ledger, LocalLedgerClient } from '@btt/ledger'
import { decodeBttMessage, encodeBttMessage, type BDict } from '@btt/wire'
import fc from 'fast-check'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import type { Peer } from './peer.js'
import { BLOCK, blockCost, Speed, type SpeedTorrent } from './speed.js'
import { testWallet, type TestWallet } from './test-support/payments.js'

/**
 * [D] acceptance: "bytes served ≤ bytes paid + one piece per peer", as a property over random
 * interleavings of what peers, the auction and the clock can do to ONE provider-side Speed.
 *
 * Real: the Speed instance, the seeder's Meter on a real SQLite channel store (testWallet), an
 * in-process Ledger (':memory:'), channels opened and funded at that ledger by real Payers, vouchers
 * signed by those Payers and delivered as encoded `btt` wire messages (Speed.onMessage).
 * Fake: the torrent; the peers (peer.ts: `chokeGen++` on every choke, `destroy()` detaches later);
 * the serve loop, which mirrors Torrent.serve/sendBlock: gate → (debit) → disk read → the block goes
 * out only if the peer is open, unchoked and was not choked since the gate (same chokeGen), then
 * `apply()` + `served()`, else `cleanup()`; a gate that rejects → `gateFailed()`.
 * Time: vitest's fake setTimeout, so the Meter's payment timeout (30 ms) fires exactly when a `wait`
 * step (or the end of the interleaving) moves the clock.
 *
 * Each fast-check run is one interleaving: 1–3 payers (fresh wallet keys, two channels each), a
 * torrent with 16–64 KiB pieces, and up to 40 steps. After every step a step either lets all I/O
 * settle (voucher commits, channel look-ups) or only runs microtasks, so the next step races the
 * commits that are still in flight.
 *
 * Knobs for whoever fixes a failure (none are needed to run the test):
 *   SPEED_PROP_RUNS=n             fewer/more random interleavings
 *   SPEED_PROP_PATH=…             replay one fast-check path (from a failure report) with the same seed
 *   SPEED_PROP_TRACE=1            print every step, block and btt message
 *   SPEED_PROP_TOLERATE=a,b       count these violation kinds instead of failing (to look for others)
 */

const RUNS = Number(process.env.SPEED_PROP_RUNS ?? 10_000)
const SEED = 0x5eed_d00d
const TIMEOUT_MS = 30
const MAX_READS_IN_FLIGHT = 16 // PEER_LIMITS.maxReadsInFlight
const PRICES = [1n, 2n, 7n, 40n] as const
const MAX_PRICE = 40n
const TRACE = process.env.SPEED_PROP_TRACE !== undefined
const logger = pino({ level: process.env.SPEED_LOG ?? 'silent' })
const show = (x: unknown): string => JSON.stringify(x, (_k, v: unknown) => typeof v === 'bigint' ? `${v}n` : v)

// --- generated interleavings ---------------------------------------------------------------------

type Channel = 0 | 1 | 'bogus' | 'none'
type Step =
  | { k: 'connect', p: number }
  /** the connection closes (the payer's wallet key stays: its debt must be carried) */
  | { k: 'disconnect', p: number }
  /** `bid`, optionally naming a channel: one of the payer's two, a random id, or none */
  | { k: 'bid', p: number, rate: bigint, ch: Channel }
  /** the auction's decision for this peer: `unchoke(t, peer, price)`, 0 = a free slot */
  | { k: 'auction', p: number, price: bigint }
  /** the auction took the slot away: `peer.choke()` + `choked(peer)` */
  | { k: 'choke', p: number }
  /** n block requests start (gate), the reads stay in flight */
  | { k: 'request', p: number, n: number }
  /** the n oldest reads that passed their gate complete (sendBlock) */
  | { k: 'deliver', p: number, n: number }
  /** request n, let the gates resolve, deliver every read that is ready (a fast disk) */
  | { k: 'serve', p: number, n: number }
  /**
   * the requester pays: what it owes by its own count (each block at the price it was last told),
   * or pct % of that, or replays an old voucher, or pays on its other channel
   */
  | { k: 'pay', p: number, how: 'full' | 'partial' | 'replay' | 'other-channel', pct: number, idx: number }
  | { k: 'wait', ms: number }

interface Scenario {
  payers: number
  pieceLength: number
  /** Deposit of each payer's two channels, in pieces at the highest price. */
  deposits: Array<[number, number]>
  /** settle false: only microtasks run before the next step (commits and look-ups still in flight). */
  steps: Array<{ step: Step, settle: boolean }>
}

const peerIdx = fc.nat({ max: 2 })
const stepArb: fc.Arbitrary<Step> = fc.oneof(
  { weight: 1, arbitrary: fc.record({ k: fc.constant('connect' as const), p: peerIdx }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('disconnect' as const), p: peerIdx }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('bid' as const), p: peerIdx, rate: fc.bigInt(0n, 100n), ch: fc.constantFrom<Channel>(0, 1, 'bogus', 'none') }) },
  { weight: 4, arbitrary: fc.record({ k: fc.constant('auction' as const), p: peerIdx, price: fc.constantFrom(0n, ...PRICES, ...PRICES) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('choke' as const), p: peerIdx }) },
  { weight: 4, arbitrary: fc.record({ k: fc.constant('request' as const), p: peerIdx, n: fc.integer({ min: 1, max: 4 }) }) },
  { weight: 4, arbitrary: fc.record({ k: fc.constant('deliver' as const), p: peerIdx, n: fc.integer({ min: 1, max: 4 }) }) },
  { weight: 6, arbitrary: fc.record({ k: fc.constant('serve' as const), p: peerIdx, n: fc.integer({ min: 1, max: 4 }) }) },
  { weight: 6, arbitrary: fc.record({ k: fc.constant('pay' as const), p: peerIdx, how: fc.constantFrom('full', 'full', 'full', 'partial', 'partial', 'partial', 'replay', 'other-channel'), pct: fc.integer({ min: 1, max: 99 }), idx: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('wait' as const), ms: fc.constantFrom(1, TIMEOUT_MS / 2, TIMEOUT_MS + 1, 3 * TIMEOUT_MS) }) }
)

const scenarioArb: fc.Arbitrary<Scenario> = fc.record({
  payers: fc.integer({ min: 1, max: 3 }),
  pieceLength: fc.constantFrom(16_384, 32_768, 49_152, 65_536),
  deposits: fc.array(fc.tuple(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 6 })), { minLength: 3, maxLength: 3 }),
  steps: fc.array(fc.record({ step: stepArb, settle: fc.boolean() }), { minLength: 1, maxLength: 40, size: 'max' })
})

// --- fakes ---------------------------------------------------------------------------------------

/** A read the serve loop started: `debit` is undefined for a free block (the gate returned undefined). */
interface Read {
  gen: number
  debit?: Debit
  /** What the debit reserved: 16 units × the session's price when the gate was called. */
  cost: bigint
}

/** peer.ts as far as Speed and Torrent.serve/sendBlock use it. */
class FakePeer {
  amChoking = true
  chokeGen = 0
  closed = false
  lastUnchokedAt = 0
  btt: Peer['btt']
  /** The requester's side: the price it was told last (bid_response), what it charges itself per KiB. */
  view = 0n
  /** The last of the payer's channels this connection named in a bid. */
  named?: 0 | 1
  inflight = 0
  readonly ready: Read[] = []
  onDestroy?: () => void

  constructor (readonly key: string) {}

  send (buf: Uint8Array): void {
    if (this.closed || buf[4] !== 20) return
    const m = decodeBttMessage(buf.subarray(6))
    if (TRACE) console.log('  →', this.key, show(m))
    if (m?.t === 'bid_response') this.view = m.rate
  }

  choke (): void {
    if (this.amChoking) return
    this.amChoking = true
    this.chokeGen++
  }

  unchoke (now: number): void {
    this.lastUnchokedAt = now
    this.amChoking = false
  }

  destroy (): void {
    if (this.closed) return
    this.closed = true
    // the socket's 'close' comes later: the torrent detaches the peer then
    queueMicrotask(() => { this.onDestroy?.() })
  }
}

function fakeTorrent (pieceLength: number): SpeedTorrent & { peers: Map<string, Peer> } {
  const infoHashBytes = randomBytes(20)
  return {
    infoHash: toHex(infoHashBytes),
    infoHashBytes,
    complete: true,
    completedAt: 0,
    left: 0,
    pieceLengthNominal: pieceLength,
    pieceCount: 64,
    totalLength: 64 * pieceLength,
    peers: new Map<string, Peer>(),
    pieceLength: () => pieceLength,
    hasPiece: () => true,
    readChunk: async () => new Uint8Array(BLOCK)
  }
}

// --- the world: one seeder and its Speed for the whole file, fresh payers per interleaving ---------

let dir: string
let ledger: Ledger
let seeder: TestWallet
let speed: Speed
/** The payers' own bookkeeping (what they signed) is not under test: in memory. */
const payerStore = new MemoryChannelStore()
/** Credited by accepted vouchers, per payer key (Speed's onEarn). */
const credited = new Map<string, bigint>()
let ports = 1

beforeAll(async () => {
  // a real SQLite channel store; on tmpfs when there is one, so fsync does not dominate the runtime
  dir = await mkdtemp(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'btt-speed-prop-'))
  ledger = new Ledger({ path: ':memory:', dev: true })
  seeder = await testWallet(ledger, dir, { paymentTimeoutMs: TIMEOUT_MS, banAfterFailures: 3 })
  speed = new Speed({
    payments: seeder.payments,
    logger,
    paidSlots: 1,
    freeSlots: 1,
    optimisticSlots: 0,
    reserve: { perHour: 0n, cap: 0n },
    minDepositPieces: 1,
    minExpirySeconds: 600
  })
  speed.events.onEarn = (_infoHash, payer, amount) => { credited.set(payer, (credited.get(payer) ?? 0n) + amount) }
})

afterAll(async () => {
  await seeder?.close()
  ledger?.close()
  if (dir !== undefined) await rm(dir, { recursive: true, force: true })
})

/** Waits until no commit, ledger batch, session opening or voucher acceptance is in flight. */
async function settle (busy: () => boolean): Promise<void> {
  const store = seeder.all.store as unknown as { inflight: Map<number, unknown>, current: unknown }
  const led = ledger as unknown as { pending: unknown[], scheduled: boolean }
  const deadline = Date.now() + 10_000
  for (;;) {
    await new Promise(resolve => setImmediate(resolve))
    if (store.inflight.size === 0 && store.current === undefined && led.pending.length === 0 && !led.scheduled && !busy()) return
    if (Date.now() > deadline) throw new Error('settle: still busy after 10 s')
  }
}

/** Only microtasks: a commit (a worker-thread round trip) cannot complete, so this is deterministic. */
async function microtasks (): Promise<void> {
  for (let i = 0; i < 50; i++) await Promise.resolve()
}

const tolerate = new Set((process.env.SPEED_PROP_TOLERATE ?? '').split(',').filter(x => x !== ''))
const tolerated = new Map<string, number>()
/** A broken property. Kinds: bound, unchoke-throws, unmetered, free-but-priced, metered-but-free, price-mismatch, overbilled. */
function violation (kind: string, err: Error): void {
  if (!tolerate.has(kind)) throw Object.assign(err, { message: `[${kind}] ${err.message}` })
  tolerated.set(kind, (tolerated.get(kind) ?? 0) + 1)
}

interface PayerModel {
  key: string
  payer: Payer
  channels: [string, string]
  /** Cumulative amounts this payer signed, per channel. */
  signed: [bigint, bigint]
  vouchers: Uint8Array[]
  /** What the requester owes by its own count: each block at the price it was last told. */
  owes: bigint
  peer?: FakePeer
  /** Value of the blocks delivered to it at a price > 0 (across its connections). */
  charged: bigint
  /** The highest price the auction gave it. */
  maxPrice: bigint
}

const outcome = { interleavings: 0, steps: 0, blocks: 0, metered: 0, free: 0, dropped: 0, vouchers: 0, credited: 0n, timeouts: 0, gateFailures: 0, bannedPayers: 0 }

async function runInterleaving (sc: Scenario): Promise<void> {
  const t = fakeTorrent(sc.pieceLength)
  const pieceKiB = BigInt(Math.ceil(sc.pieceLength / 1024))
  const pieceAtMax = pieceKiB * MAX_PRICE
  const ledgerId = Buffer.from(seeder.payments.ledgerId, 'hex')
  const expiresAt = Date.now() + 24 * 3_600_000
  const payers: PayerModel[] = await Promise.all(Array.from({ length: sc.payers }, async (_, i) => {
    const keyPair = generateKeyPair()
    const client = new LocalLedgerClient({ ledger, keyPair })
    const [d0, d1] = sc.deposits[i]!
    await client.faucet(BigInt(d0 + d1) * pieceAtMax)
    const payer = new Payer({ store: payerStore, ledger: client, keyPair })
    const [c0, c1] = await Promise.all([
      payer.open({ payee: seeder.account, deposit: BigInt(d0) * pieceAtMax, expiresAt }),
      payer.open({ payee: seeder.account, deposit: BigInt(d1) * pieceAtMax, expiresAt })
    ])
    return { key: payer.account, payer, channels: [c0.id, c1.id], signed: [0n, 0n], vouchers: [], owes: 0n, charged: 0n, maxPrice: 0n } satisfies PayerModel
  }))
  const accepting = new Set<Promise<void>>()
  const allPeers = new Map<FakePeer, PayerModel>()
  const busy = (): boolean => accepting.size > 0 || [...allPeers.keys()].some(p => p.btt?.opening === true)
  const asPeer = (p: FakePeer): Peer => p as unknown as Peer
  const debts = (speed as unknown as { debts: Map<string, bigint> }).debts

  /** Torrent.detach → Speed.detach */
  const detach = (m: PayerModel, p: FakePeer): void => {
    if (t.peers.get(p.key) !== asPeer(p)) return
    t.peers.delete(p.key)
    speed.detach(asPeer(p))
    if (m.peer === p) m.peer = undefined
  }
  /** A new connection of this payer's wallet, through the extended handshake. */
  const connect = (m: PayerModel): void => {
    if (m.peer !== undefined) return
    const p = new FakePeer(`10.0.0.1:${ports++}`)
    p.onDestroy = () => { detach(m, p) }
    allPeers.set(p, m)
    m.peer = p
    t.peers.set(p.key, asPeer(p))
    const dict: BDict = new Map([['btt', new Map<string, Uint8Array | number>([['v', 1], ['pk', Buffer.from(m.key, 'hex')], ['ledger', ledgerId]])]])
    try {
      speed.onHandshake(t, asPeer(p), dict, 7)
    } catch {
      p.destroy() // a SeedingError from a handler closes the connection (a banned payer)
    }
  }
  /** Torrent.sendBlock */
  const deliver = (m: PayerModel, p: FakePeer, r: Read): void => {
    p.inflight--
    if (TRACE) console.log('  read done', p.key, { gen: r.gen, chokeGen: p.chokeGen, choking: p.amChoking, closed: p.closed, metered: r.debit !== undefined, cost: r.cost, told: p.view, price: p.btt?.price })
    if (p.closed || p.amChoking || p.chokeGen !== r.gen) { r.debit?.cleanup(); outcome.dropped++; return }
    const price = p.btt?.price ?? 0n
    r.debit?.apply()
    if (r.debit !== undefined) speed.served(asPeer(p), BLOCK)
    outcome.blocks++
    m.owes += blockCost(p.view, BLOCK)
    // served at a price > 0: metered, or sent while the seeder's price in force is > 0
    const atPrice = blockCost(price, BLOCK)
    m.charged += r.cost > atPrice ? r.cost : atPrice
    if (r.debit === undefined) {
      outcome.free++
      if (price !== 0n) violation('unmetered', new Error(`a block went out without a debit while the seeder's price is ${price} per KiB`))
      // a block the seeder serves free must be one the requester was told is free (else it pays for it)
      if (p.view !== 0n) violation('free-but-priced', new Error(`a block was served free (no debit, seeder price 0) while the requester was last told ${p.view} per KiB (bid_response)`))
    } else {
      outcome.metered++
      if (p.view === 0n) violation('metered-but-free', new Error('a metered block while the requester was last told it is free'))
      else if (r.cost !== blockCost(p.view, BLOCK)) violation('price-mismatch', new Error(`a metered block cost ${r.cost} while the requester was told ${p.view} per KiB`))
    }
  }
  /** Torrent.serve for one queued request. */
  const request = (p: FakePeer): void => {
    if (p.closed || p.amChoking || p.inflight >= MAX_READS_IN_FLIGHT) return
    p.inflight++
    const gen = p.chokeGen
    const cost = BigInt(BLOCK / 1024) * (p.btt?.session?.price ?? 0n)
    const debit = speed.gate(asPeer(p), BLOCK)
    if (debit === undefined) {
      if (TRACE) console.log('  gate: free', p.key)
      p.ready.push({ gen, cost: 0n })
      return
    }
    debit.then(d => {
      if (TRACE) console.log('  gate: debit', p.key, cost)
      p.ready.push({ gen, debit: d, cost })
    }, (err: unknown) => {
      if (TRACE) console.log('  gate failed', p.key, (err as Error).message)
      p.inflight--
      outcome.gateFailures++
      if ((err as { code?: string }).code === 'CHANNEL_PAYMENT_TIMEOUT') outcome.timeouts++
      speed.gateFailed(asPeer(p), err)
    })
  }
  const pay = async (m: PayerModel, how: Extract<Step, { k: 'pay' }>['how'], pct: number, idx: number): Promise<void> => {
    const p = m.peer
    if (p === undefined || p.named === undefined || p.btt === undefined) return
    let voucher: Uint8Array | undefined
    if (how === 'replay') {
      voucher = m.vouchers.length === 0 ? undefined : m.vouchers[idx % m.vouchers.length]
    } else {
      const due = m.owes - m.signed[0] - m.signed[1]
      if (due <= 0n) return
      const amount = how === 'partial' ? (due * BigInt(pct) + 99n) / 100n : due
      const c = how === 'other-channel' ? (1 - p.named) as 0 | 1 : p.named
      try {
        const v = await m.payer.pay(m.channels[c], amount)
        m.signed[c] = v.amount
        voucher = encodeVoucher(v)
        m.vouchers.push(voucher)
      } catch {
        return // above the deposit: the Payer refuses to sign
      }
    }
    if (voucher === undefined) return
    outcome.vouchers++
    speed.onMessage(t, asPeer(p), encodeBttMessage({ t: 'payment', voucher, piece: 0 }))
    // Speed accepts a connection's vouchers one after another; this resolves after this one
    const done = p.btt.serial(async () => {})
    accepting.add(done)
    void done.finally(() => { accepting.delete(done) })
  }

  /** The acceptance line, per payer (across its connections): paid blocks served ≤ credited + one piece at the highest price. */
  const checkBound = (where: string): void => {
    for (const m of payers) {
      const paid = credited.get(m.key) ?? 0n
      const slack = pieceKiB * m.maxPrice
      if (m.charged > paid + slack) {
        violation('bound', new Error(`${where}: payer ${m.key.slice(0, 8)} was served ${m.charged} base units of blocks at a price > 0 but is credited only ${paid}; the bound is ${paid} + one piece (${pieceKiB} KiB × ${m.maxPrice}) = ${paid + slack}`))
      }
    }
  }
  /**
   * Fairness, checked when nothing is in flight: what the seeder holds against a payer (its carried
   * debt plus its live session's unpaid value) is never more than it delivered and was not paid for.
   */
  const checkBilling = (where: string): void => {
    for (const m of payers) {
      let held = debts.get(m.key) ?? 0n
      const s = m.peer?.btt?.session
      if (s !== undefined && !s.signal.aborted) held += s.unpaid
      const paid = credited.get(m.key) ?? 0n
      const owed = m.charged > paid ? m.charged - paid : 0n
      if (held > owed) violation('overbilled', new Error(`${where}: the seeder holds ${held} against payer ${m.key.slice(0, 8)}, which was served ${m.charged} and is credited ${paid}`))
    }
  }

  // what a requester does first: handshake, then a bid naming the channel it pays on
  for (const m of payers) {
    connect(m)
    const p = m.peer
    if (p?.btt === undefined) continue
    p.named = 0
    speed.onMessage(t, asPeer(p), encodeBttMessage({ t: 'bid', rate: 10n, channel: Buffer.from(m.channels[0], 'hex') }))
  }
  try {
    for (const { step: s, settle: full } of sc.steps) {
      outcome.steps++
      if (TRACE) console.log('step', show(s), full ? '(settle)' : '(microtasks)')
      const m = s.k === 'wait' ? undefined : payers[s.p % payers.length]!
      const p = m?.peer
      switch (s.k) {
        case 'connect': connect(m!); break
        case 'disconnect': if (p !== undefined) { p.destroy(); detach(m!, p) } break
        case 'bid': {
          if (p === undefined || p.btt === undefined) break
          let channel: Uint8Array | undefined
          if (s.ch === 'bogus') channel = randomBytes(32)
          else if (s.ch !== 'none') { channel = Buffer.from(m!.channels[s.ch], 'hex'); p.named = s.ch }
          speed.onMessage(t, asPeer(p), encodeBttMessage({ t: 'bid', rate: s.rate, ...(channel !== undefined ? { channel } : {}) }))
          break
        }
        case 'auction':
          if (p === undefined || p.closed) break
          if (s.price > m!.maxPrice) m!.maxPrice = s.price
          try {
            speed.unchoke(t, asPeer(p), s.price, Date.now())
          } catch (err) {
            violation('unchoke-throws', err as Error) // Torrent.rechoke runs from a timer: this would be an uncaught exception
          }
          break
        case 'choke':
          if (p === undefined || p.closed) break
          p.choke()
          speed.choked(asPeer(p))
          break
        case 'request': for (let i = 0; i < s.n && p !== undefined; i++) request(p); break
        case 'deliver': for (let i = 0; i < s.n && p !== undefined && p.ready.length > 0; i++) deliver(m!, p, p.ready.shift()!); break
        case 'serve':
          if (p === undefined) break
          for (let i = 0; i < s.n; i++) request(p)
          await microtasks()
          while (p.ready.length > 0) deliver(m!, p, p.ready.shift()!)
          break
        case 'pay': await pay(m!, s.how, s.pct, s.idx); break
        case 'wait': vi.advanceTimersByTime(s.ms); break
      }
      if (full) await settle(busy)
      else await microtasks()
      checkBound(`after ${show(s)}`)
      if (full) checkBilling(`after ${show(s)}`)
    }
    // the end: every read in flight completes, then every wait times out, and everything commits
    await settle(busy)
    for (const [p, m] of allPeers) while (p.ready.length > 0) deliver(m, p, p.ready.shift()!)
    checkBound('after the last reads')
    vi.advanceTimersByTime(10 * TIMEOUT_MS)
    await settle(busy)
    for (const [p, m] of allPeers) while (p.ready.length > 0) deliver(m, p, p.ready.shift()!)
    checkBound('after the payment timeouts')
  } finally {
    for (const m of payers) if (m.peer !== undefined) { const p = m.peer; p.destroy(); detach(m, p) }
    await settle(busy)
    for (const p of allPeers.keys()) while (p.ready.length > 0) p.ready.shift()!.debit?.cleanup()
    vi.clearAllTimers()
  }

  // the money: what the seeder persisted is exactly what it credited, and never more than was signed
  const db = new DatabaseSync(join(dir, `channels-${seeder.account.slice(0, 8)}.db`), { readOnly: true })
  try {
    const row = db.prepare('SELECT highest FROM incoming WHERE id = ?')
    for (const m of payers) {
      let persisted = 0n
      for (const [i, c] of m.channels.entries()) {
        const r = row.get(c) as { highest: Uint8Array } | undefined
        const highest = r === undefined ? 0n : amountFromBytes(r.highest)
        expect(highest, 'persisted highest voucher above what the payer signed').toBeLessThanOrEqual(m.signed[i as 0 | 1])
        expect(seeder.all.store.getIncoming(c)?.highest ?? 0n, 'the store cache differs from the database').toBe(highest)
        persisted += highest
      }
      expect(credited.get(m.key) ?? 0n, 'credited by accepted vouchers ≠ persisted highest vouchers').toBe(persisted)
      outcome.credited += persisted
      if (seeder.payments.meter.isBanned(m.key)) outcome.bannedPayers++
    }
  } finally {
    db.close()
  }
  outcome.interleavings++
}

async function withFakeTime (fn: () => Promise<void>): Promise<void> {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
  try {
    await fn()
  } finally {
    vi.useRealTimers()
  }
}

const at = (st: Step, settle = true): { step: Step, settle: boolean } => ({ step: st, settle })
const onePayer = (pieceLength: number, steps: Scenario['steps']): Scenario => ({ payers: 1, pieceLength, deposits: [[4, 4], [1, 1], [1, 1]], steps })

describe('BitTorrent Speed, provider side (property)', () => {
  it(`${RUNS} random interleavings: blocks served at a price ≤ credited + one piece per payer, free blocks never metered nor billed, persisted vouchers = credited, no payer held for more than it owes`, async () => {
    await withFakeTime(async () => {
      await fc.assert(fc.asyncProperty(scenarioArb, async sc => { await runInterleaving(sc) }), {
        numRuns: RUNS,
        seed: SEED,
        ...(process.env.SPEED_PROP_PATH !== undefined ? { path: process.env.SPEED_PROP_PATH } : {})
      })
    })
    if (tolerated.size > 0) console.log('tolerated violations', tolerated)
    console.log(`speed property: ${show(outcome)}`)
    if (process.env.SPEED_PROP_PATH === undefined) expect(outcome.interleavings).toBeGreaterThanOrEqual(RUNS)
  }, 180_000)

  // The shrunk counterexamples the property found, kept as named cases (the prelude of every
  // interleaving is: handshake, then `bid` naming channel 0).
  describe('counterexamples', () => {
    it('a peer moved from a paid slot to a free one twice in a row: unchoke must not throw', async () => {
      await withFakeTime(async () => {
        await runInterleaving(onePayer(16_384, [
          at({ k: 'auction', p: 0, price: 40n }),
          at({ k: 'auction', p: 0, price: 0n }),
          at({ k: 'auction', p: 0, price: 0n })
        ]))
      })
    })

    it('after a payment timeout, a free unchoke tells the requester the price is now 0', async () => {
      await withFakeTime(async () => {
        await runInterleaving(onePayer(16_384, [
          at({ k: 'auction', p: 0, price: 40n }),
          at({ k: 'serve', p: 0, n: 2 }),
          at({ k: 'wait', ms: TIMEOUT_MS + 1 }),
          at({ k: 'auction', p: 0, price: 0n }),
          at({ k: 'serve', p: 0, n: 1 })
        ]))
      })
    })

    it('blocks already debited when the payer names another channel are not lost from its debt', async () => {
      await withFakeTime(async () => {
        await runInterleaving(onePayer(32_768, [
          at({ k: 'auction', p: 0, price: 40n }),
          at({ k: 'request', p: 0, n: 2 }),
          at({ k: 'bid', p: 0, rate: 50n, ch: 1 }),
          at({ k: 'deliver', p: 0, n: 2 }),
          at({ k: 'auction', p: 0, price: 40n }),
          at({ k: 'serve', p: 0, n: 2 })
        ]))
      })
    })

    it('a debt survives a session that cannot be opened (the payer names an unknown channel)', async () => {
      await withFakeTime(async () => {
        await runInterleaving(onePayer(16_384, [
          at({ k: 'auction', p: 0, price: 40n }),
          at({ k: 'serve', p: 0, n: 1 }),
          at({ k: 'bid', p: 0, rate: 50n, ch: 'bogus' }),
          at({ k: 'auction', p: 0, price: 40n }),
          at({ k: 'bid', p: 0, rate: 50n, ch: 0 }),
          at({ k: 'serve', p: 0, n: 1 })
        ]))
      })
    })

    it('a debt survives a disconnect while the session on a new channel is being opened', async () => {
      await withFakeTime(async () => {
        await runInterleaving(onePayer(16_384, [
          at({ k: 'auction', p: 0, price: 40n }),
          at({ k: 'serve', p: 0, n: 1 }),
          at({ k: 'bid', p: 0, rate: 50n, ch: 1 }),
          at({ k: 'auction', p: 0, price: 40n }, false), // channel 1's first look-up and commit are in flight…
          at({ k: 'disconnect', p: 0 }), // …when the connection closes
          at({ k: 'connect', p: 0 }),
          at({ k: 'bid', p: 0, rate: 50n, ch: 0 }),
          at({ k: 'auction', p: 0, price: 40n }),
          at({ k: 'serve', p: 0, n: 1 })
        ]))
      })
    })

    it('a voucher committed while the connection closes still pays off the debt carried to the next one', async () => {
      await withFakeTime(async () => {
        await runInterleaving(onePayer(16_384, [
          at({ k: 'auction', p: 0, price: 40n }),
          at({ k: 'serve', p: 0, n: 1 }),
          at({ k: 'pay', p: 0, how: 'full', pct: 100, idx: 0 }, false), // the voucher's commit is in flight…
          at({ k: 'disconnect', p: 0 }) // …when the connection closes
        ]))
      })
    })
  })
})
