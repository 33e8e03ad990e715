import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Ledger } from '@btt/ledger'
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { Engine, type EngineOptions } from './engine.js'
import { Speed, type SpeedOptions } from './speed.js'
import { loopbackEngineOptions } from './test-support/engine.js'
import { testWallet, type TestWallet } from './test-support/payments.js'

const logger = pino({ level: process.env.SPEED_LOG ?? 'silent' })
const BTT = 10n ** 18n
const cleanup: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn().catch(() => {})
})

async function tempDir (): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'btt-speed-'))
  cleanup.push(async () => { await rm(d, { recursive: true, force: true }) })
  return d
}

async function until (fn: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms
  while (!fn()) {
    if (Date.now() > end) throw new Error('timed out waiting')
    await new Promise(resolve => setTimeout(resolve, 25))
  }
}

async function sha (path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex')
}

interface Node { engine: Engine, wallet: TestWallet, speed: Speed }

async function node (ledger: Ledger, speed: Partial<SpeedOptions>, over: Partial<EngineOptions> = {}, funds?: bigint): Promise<Node> {
  const dir = await tempDir()
  const wallet = await testWallet(ledger, dir, { ...(funds !== undefined ? { funds } : {}), paymentTimeoutMs: 1500, banAfterFailures: 2 })
  cleanup.push(wallet.close)
  const s = new Speed({
    payments: wallet.payments,
    logger,
    paidSlots: 1,
    freeSlots: 0,
    optimisticSlots: 0,
    bidWindowMs: 300,
    reserve: { perHour: 0n, cap: 0n },
    minDepositPieces: 1,
    minExpirySeconds: 600,
    ...speed
  })
  const engine = new Engine(loopbackEngineOptions(dir, logger, { speed: s, rechokeIntervalMs: 200, ...over }))
  await engine.start()
  cleanup.push(async () => { await engine.stop() })
  return { engine, wallet, speed: s }
}

describe('BitTorrent Speed between engines (in-process ledger, real TCP)', () => {
  it('a bidder is unchoked through bid_response, pays per verified piece, and the seeder earns exactly rate × KiB', async () => {
    const dir = await tempDir()
    const ledger = new Ledger({ path: join(dir, 'ledger.db'), dev: true })
    cleanup.push(async () => { ledger.close() })
    const size = 40 * 32 * 1024 // 40 pieces of 32 KiB
    await mkdir(join(dir, 'src'))
    await writeFile(join(dir, 'src', 'file.bin'), randomBytes(size))
    const reserve = 1000n
    const seeder = await node(ledger, { reserve: { perHour: 0n, cap: 0n, override: reserve } })
    const added = await seeder.engine.add({ path: join(dir, 'src', 'file.bin'), pieceLength: 32 * 1024 })
    const leech = await node(ledger, { paidSlots: 0, bidding: { budget: BTT, spendingRatePpm: 1_000_000n } }, {}, 10n * BTT)
    const got = await leech.engine.add({ torrent: await readFile(added.torrentFile!) })
    leech.engine.addPeer(got.infoHash, { host: '127.0.0.1', port: seeder.engine.port })
    await until(() => leech.engine.detail(got.infoHash).state === 'seeding')
    expect(await sha(join(got.savePath, 'file.bin'))).toBe(await sha(join(dir, 'src', 'file.bin')))
    // a lone bidder pays the reserve
    const kib = BigInt(size / 1024)
    await until(() => seeder.speed.earnings(added.infoHash).reduce((a, e) => a + e.amount, 0n) === reserve * kib)
    expect(leech.speed.spentTotal).toBe(reserve * kib)
    const [earned] = seeder.speed.earnings(added.infoHash)
    expect(earned!.payer).toBe(leech.wallet.account)
    // the voucher the seeder holds is durable in its channel store, worth exactly what was paid
    const incoming = seeder.wallet.all.store.listIncoming()
    expect(incoming).toHaveLength(1)
    expect(incoming[0]!.highest).toBe(reserve * kib)
  })

  it('two bidders, one paid slot: the high bidder goes first at the low bid, then the low bidder at the reserve', async () => {
    const dir = await tempDir()
    const ledger = new Ledger({ path: join(dir, 'ledger.db'), dev: true })
    cleanup.push(async () => { ledger.close() })
    const size = 64 * 32 * 1024
    await mkdir(join(dir, 'src'))
    await writeFile(join(dir, 'src', 'file.bin'), randomBytes(size))
    const reserve = 1000n
    const seeder = await node(ledger, { reserve: { perHour: 0n, cap: 0n, override: reserve }, bidWindowMs: 1000 })
    const added = await seeder.engine.add({ path: join(dir, 'src', 'file.bin'), pieceLength: 32 * 1024 })
    const torrent = await readFile(added.torrentFile!)
    const kib = BigInt(size / 1024)
    // budgets → auto-bids: budget / KiB left
    const a = await node(ledger, { paidSlots: 0, bidding: { budget: 10n ** 9n * kib, spendingRatePpm: 1_000_000n } }, {}, 10n * BTT)
    const b = await node(ledger, { paidSlots: 0, bidding: { budget: 10n ** 6n * kib, spendingRatePpm: 1_000_000n } }, {}, 10n * BTT)
    const ga = await a.engine.add({ torrent })
    const gb = await b.engine.add({ torrent })
    a.engine.addPeer(ga.infoHash, { host: '127.0.0.1', port: seeder.engine.port })
    b.engine.addPeer(gb.infoHash, { host: '127.0.0.1', port: seeder.engine.port })
    // B has nothing while A holds the only slot: sampled until A is complete (once A is, B may
    // start at once, so a single look afterwards would race B's first pieces)
    let bWhileA = 0
    await until(() => {
      const done = a.engine.detail(ga.infoHash).state === 'seeding'
      if (!done) bWhileA = Math.max(bWhileA, b.engine.detail(gb.infoHash).downloaded)
      return done
    })
    expect(bWhileA).toBe(0)
    await until(() => b.engine.detail(gb.infoHash).state === 'seeding')
    expect(await sha(join(gb.savePath, 'file.bin'))).toBe(await sha(join(dir, 'src', 'file.bin')))
    const bBid = 10n ** 6n
    expect(a.speed.spentTotal).toBe(bBid * kib)
    expect(b.speed.spentTotal).toBe(reserve * kib)
    await until(() => seeder.speed.earnings(added.infoHash).reduce((s, e) => s + e.amount, 0n) === (bBid + reserve) * kib)
  })

  it('a requester that stops paying gets at most one piece beyond what it paid, is choked, then banned', async () => {
    const dir = await tempDir()
    const ledger = new Ledger({ path: join(dir, 'ledger.db'), dev: true })
    cleanup.push(async () => { ledger.close() })
    const pieceLength = 32 * 1024
    const size = 64 * pieceLength
    await mkdir(join(dir, 'src'))
    await writeFile(join(dir, 'src', 'file.bin'), randomBytes(size))
    const reserve = 1000n
    const seeder = await node(ledger, { reserve: { perHour: 0n, cap: 0n, override: reserve } })
    const added = await seeder.engine.add({ path: join(dir, 'src', 'file.bin'), pieceLength })
    // a requester that pays for its first 3 pieces and then never again
    class StopsPaying extends Speed {
      pieces = 0
      override verified (t: Parameters<Speed['verified']>[0], index: number): void {
        if (++this.pieces <= 3) super.verified(t, index)
      }
    }
    const lw = await testWallet(ledger, dir, { funds: 10n * BTT })
    cleanup.push(lw.close)
    const cheat = new StopsPaying({ payments: lw.payments, logger, paidSlots: 0, freeSlots: 0, optimisticSlots: 0, reserve: { perHour: 0n, cap: 0n }, minDepositPieces: 1, minExpirySeconds: 600, bidding: { budget: BTT, spendingRatePpm: 1_000_000n } })
    const ldir = await tempDir()
    const leech = new Engine(loopbackEngineOptions(ldir, logger, { speed: cheat }))
    await leech.start()
    cleanup.push(async () => { await leech.stop() })
    const got = await leech.add({ torrent: await readFile(added.torrentFile!) })
    leech.addPeer(got.infoHash, { host: '127.0.0.1', port: seeder.engine.port })
    // two payment timeouts (1.5 s each): the Meter bans the payer and the seeder drops it
    await until(() => seeder.wallet.payments.meter.isBanned(lw.account), 15_000)
    await until(() => leech.detail(got.infoHash).peers === 0, 5000)
    const paidBytes = Number(cheat.spentTotal / reserve) * 1024
    expect(paidBytes).toBe(3 * pieceLength)
    const received = leech.detail(got.infoHash).downloaded
    expect(received).toBeGreaterThan(paidBytes)
    expect(received).toBeLessThanOrEqual(paidBytes + pieceLength)
    // the seeder holds exactly the 3 paid pieces in vouchers
    expect(seeder.wallet.all.store.listIncoming()[0]!.highest).toBe(3n * BigInt(pieceLength / 1024) * reserve)
    // a banned payer that comes back is dropped at its handshake
    leech.addPeer(got.infoHash, { host: '127.0.0.1', port: seeder.engine.port })
    await new Promise(resolve => setTimeout(resolve, 1000))
    expect(leech.detail(got.infoHash).downloaded).toBe(received)
  })
})
