import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { autoBid } from '@btt/market'
import { announce, bidScrape, createTracker, type TrackerServer } from '@btt/tracker'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CLI, cleanEnv, collect } from './helpers/cli.js'
import { BTT, fundHome, ledgerHome, startLedgerProcess, startProvider, type LedgerProcess, type Provider } from './helpers/paid.js'

/**
 * bid-announce end to end: a provider (`btt-node start`) and a paying requester (`btt-node get
 * --budget`, which finds the provider through the tracker only) announce to our tracker. While
 * the requester bids, bid-scrape lists its torrent with its exact auto-bid, and a non-compact
 * announce names the requester's wallet key beside its bid and the provider's key without one;
 * once the requester stops, its bid is gone.
 */

const KIB = 1024
const SIZE = 1024 * KIB

let ledger: LedgerProcess
let tracker: TrackerServer
let provider: Provider
const stops: Array<() => Promise<void> | void> = []

beforeAll(async () => {
  ledger = await startLedgerProcess()
  tracker = await createTracker({ host: '127.0.0.1', httpPort: 0, udpPort: false, rateLimit: false, interval: 60, minInterval: 1 })
  // the reserve (0.01 BTT/KiB) is far above the requester's bid: it stays a bidder all along
  provider = await startProvider(ledger.url, [
    'paid_slots = 1', 'free_slots = 0', 'optimistic_slots = 0', 'reserve_fixed = "0.01"', 'bid_window_seconds = 0', 'rechoke_seconds = 1'
  ])
  stops.push(async () => { if (provider.node.child.exitCode === null) await provider.node.signal('SIGTERM') })
})

afterAll(async () => {
  for (const s of stops.reverse()) await s()
  await tracker?.close()
  ledger?.stop()
})

async function until<T> (fn: () => Promise<T | undefined>, ms: number, what: string): Promise<T> {
  const end = Date.now() + ms
  for (;;) {
    const v = await fn()
    if (v !== undefined) return v
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

describe('bid-announce: requesters announce their bids, bid-scrape shows them', () => {
  it('a paying get announces its wallet key and exact auto-bid; bid-scrape lists it; stopping withdraws it', async () => {
    const announceUrl = `http://127.0.0.1:${tracker.httpPort}/announce`
    const scrapeUrl = `http://127.0.0.1:${tracker.httpPort}/bid-scrape`
    const src = join(dirname(provider.home), 'src', 'film.bin')
    await mkdir(dirname(src), { recursive: true })
    await writeFile(src, randomBytes(SIZE))
    const added = await provider.api.serviceRequest<{ torrent: { infoHash: string, torrentFile: string } }>('seeding', 'POST', '/torrents', { path: src, piece_length: 64 * KIB, trackers: [announceUrl] })
    const infoHash = added.torrent.infoHash

    const home = await ledgerHome(ledger.url, '', 'btt-bidder-')
    const account = await fundHome(ledger.url, home, 10n * BTT)
    const budget = 1n * BTT
    const child = spawn(process.execPath, [CLI, 'get', added.torrent.torrentFile, '--out', join(dirname(home), 'out'), '--home', home, '--budget', '1',
      '--no-dht', '--no-pex', '--listen-host', '127.0.0.1', '--timeout', '60'], { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
    const done = collect(child)
    stops.push(() => { if (child.exitCode === null) child.kill('SIGKILL') })

    // the auto-bid for the whole file: the whole budget over its KiB
    const expected = autoBid({ spendingRatePpm: 1_000_000n, balance: budget, remainingBytes: BigInt(SIZE) })
    expect(expected).toBe(BTT / 1024n)
    const file = await until(async () => (await bidScrape(scrapeUrl)).files.find(f => Buffer.from(f.infoHash).toString('hex') === infoHash), 20_000, 'the bid in bid-scrape')
    expect(file).toMatchObject({ bidders: 1, bidMax: expected, bidMedian: expected, clearingPrice: expected })

    // a non-compact announce ordered by bid: the requester (key + bid) first, the provider (key, no bid)
    const res = await announce(announceUrl, { infoHash: Buffer.from(infoHash, 'hex'), peerId: randomBytes(20), port: 1, left: SIZE, compact: false, orderByBid: true, btt: true })
    const keyed = res.peers.filter(p => p.pk !== undefined)
    expect(keyed.map(p => [p.pk, p.bid])).toEqual([[account, expected], [provider.account, undefined]])

    // the requester never got a slot (its bid is below the reserve); stopping it withdraws the bid
    expect(child.exitCode).toBe(null)
    child.kill('SIGINT')
    const r = await done
    expect(r.code, r.stderr).not.toBe(0) // interrupted
    await until(async () => (await bidScrape(scrapeUrl)).files.length === 0 ? true : undefined, 10_000, 'the bid to be withdrawn')
  })

  it('a wallet that announced a bid far above the one it sends is disconnected; an honest one is served', async () => {
    // a provider that sells cheaply and re-announces every second (so it hears of bids quickly)
    const cheap = await startProvider(ledger.url, [
      'paid_slots = 1', 'free_slots = 0', 'optimistic_slots = 0', 'reserve_fixed = "0.000001"', 'bid_window_seconds = 0', 'rechoke_seconds = 1', 'announce_interval = 1', 'min_announce_interval = 1'
    ])
    stops.push(async () => { if (cheap.node.child.exitCode === null) await cheap.node.signal('SIGTERM') })
    const announceUrl = `http://127.0.0.1:${tracker.httpPort}/announce`
    const src = join(dirname(cheap.home), 'src', 'show.bin')
    await mkdir(dirname(src), { recursive: true })
    await writeFile(src, randomBytes(SIZE))
    const added = await cheap.api.serviceRequest<{ torrent: { infoHash: string, torrentFile: string } }>('seeding', 'POST', '/torrents', { path: src, piece_length: 64 * KIB, trackers: [announceUrl] })
    const ih = Buffer.from(added.torrent.infoHash, 'hex')

    const liarHome = await ledgerHome(ledger.url, '', 'btt-liar-')
    const liar = await fundHome(ledger.url, liarHome, 10n * BTT)
    const honestHome = await ledgerHome(ledger.url, '', 'btt-honest-')
    await fundHome(ledger.url, honestHome, 10n * BTT)
    const real = autoBid({ spendingRatePpm: 1_000_000n, balance: BTT, remainingBytes: BigInt(SIZE) })
    // the liar's wallet tells the tracker it bids 100 × what its client will send
    const lie = { infoHash: ih, peerId: randomBytes(20), port: 9, left: SIZE, bid: real * 100n, pk: liar }
    await announce(announceUrl, lie)
    // the provider learns it at its next announce
    await until(async () => {
      const r = await announce(announceUrl, { ...lie, peerId: lie.peerId })
      return r.peers.some(p => p.port === cheap.port) ? true : undefined
    }, 10_000, 'the provider in the swarm')
    await new Promise(resolve => setTimeout(resolve, 2500))

    const get = async (home: string, out: string): Promise<Awaited<ReturnType<typeof collect>>> => {
      const child = spawn(process.execPath, [CLI, 'get', added.torrent.torrentFile, '--out', out, '--home', home, '--budget', '1', '--peer', `127.0.0.1:${cheap.port}`,
        '--no-dht', '--no-pex', '--listen-host', '127.0.0.1', '--timeout', '8', '--json'], { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
      stops.push(() => { if (child.exitCode === null) child.kill('SIGKILL') })
      return await collect(child)
    }
    const [lied, honest] = await Promise.all([get(liarHome, join(dirname(liarHome), 'out')), get(honestHome, join(dirname(honestHome), 'out'))])
    // the honest wallet (nothing announced for it) downloads and pays; the liar gets nothing
    expect(honest.code, honest.stderr).toBe(0)
    expect(lied.code).not.toBe(0)
    expect(lied.stdout + lied.stderr).toMatch(/timed out/)
    const earnings = await cheap.api.serviceRequest<{ torrents: Array<{ payers: Array<{ payer: string }> }> }>('seeding', 'GET', '/earnings')
    const payers = earnings.torrents.flatMap(t => t.payers.map(p => p.payer))
    expect(payers).not.toContain(liar)
    expect(payers).toHaveLength(1)
  }, 60_000)
})
