import { createHash, randomBytes } from 'node:crypto'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { Claimer, Meter, Payer, SqliteChannelStore, generateKeyPair, toHex } from '@btt/channel'
import { HttpLedgerClient } from '@btt/ledger'
import { servicePaymentsOf } from '@btt/node'
import { Engine, Speed } from '@btt/service-seeding'
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { CLI, cleanEnv, collect, tempHome } from './helpers/cli.js'
import { BTT, fundHome, ledgerHome, startLedgerProcess, startProvider, type LedgerProcess, type Provider } from './helpers/paid.js'

/**
 * [D] acceptance with real processes on loopback: a ledger server, a provider node selling one
 * paid slot, and requesters that are `btt-node get --budget` processes (or, for the requester
 * that stops paying, an engine in this process against the real provider).
 */

const KIB = 1024
const stops: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const fn of stops.splice(0).reverse()) await fn()
})

async function sha (path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex')
}

async function setup (size: number, seeding: string[]): Promise<{ ledger: LedgerProcess, provider: Provider, torrent: string, src: string, infoHash: string, dir: string }> {
  const ledger = await startLedgerProcess()
  stops.push(() => { ledger.stop() })
  const provider = await startProvider(ledger.url, seeding)
  stops.push(async () => { await provider.node.signal('SIGTERM') })
  const dir = dirname(provider.home)
  const src = join(dir, 'src', 'film.bin')
  await mkdir(dirname(src), { recursive: true })
  await writeFile(src, randomBytes(size))
  const added = await provider.api.serviceRequest<{ torrent: { infoHash: string, torrentFile: string } }>('seeding', 'POST', '/torrents', { path: src, piece_length: 64 * KIB })
  return { ledger, provider, torrent: added.torrent.torrentFile, src, infoHash: added.torrent.infoHash, dir }
}

interface GetRun { child: ChildProcess, done: Promise<{ code: number | null, stdout: string, stderr: string, at: number }> }

function paidGet (home: string, torrent: string, out: string, port: number, budget: string): GetRun {
  const child = spawn(process.execPath, [CLI, 'get', torrent, '--out', out, '--home', home, '--budget', budget, '--peer', `127.0.0.1:${port}`, '--no-dht', '--no-pex', '--listen-host', '127.0.0.1', '--json', '--timeout', '120'], { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
  stops.push(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  return { child, done: collect(child).then(r => ({ ...r, at: Date.now() })) }
}

describe('paid seeding between real processes', () => {
  it('one paid slot: A (high bid) goes first and pays B\'s bid per KiB; then B pays the reserve; ledger balances match to the base unit', async () => {
    const size = 4 * 1024 * KIB
    const kib = BigInt(size / KIB)
    const reserve = BTT / 10_000n // 0.0001 BTT per KiB
    const { ledger, provider, torrent, src } = await setup(size, [
      'paid_slots = 1', 'free_slots = 0', 'optimistic_slots = 0', 'reserve_fixed = "0.0001"', 'rechoke_seconds = 0.5', 'bid_window_seconds = 3'
    ])
    const homeA = await ledgerHome(ledger.url)
    const homeB = await ledgerHome(ledger.url)
    const accountA = await fundHome(ledger.url, homeA, 10n * BTT)
    const accountB = await fundHome(ledger.url, homeB, 10n * BTT)
    // auto-bid = budget / KiB left: A bids 4 BTT / 4096 KiB, B bids 1 BTT / 4096 KiB
    const bidB = BTT / kib
    const a = paidGet(homeA, torrent, join(dirname(homeA), 'out'), provider.port, '4')
    const b = paidGet(homeB, torrent, join(dirname(homeB), 'out'), provider.port, '1')
    const [ra, rb] = await Promise.all([a.done, b.done])
    expect(ra.code, ra.stderr).toBe(0)
    expect(rb.code, rb.stderr).toBe(0)
    expect(ra.at).toBeLessThan(rb.at)
    for (const home of [homeA, homeB]) expect(await sha(join(dirname(home), 'out', 'film.bin'))).toBe(await sha(src))
    const paidA = JSON.parse(ra.stdout) as { paid: { total: string, seeders: Array<{ payee: string, amount: string }> } }
    const paidB = JSON.parse(rb.stdout) as { paid: { total: string, seeders: Array<{ payee: string, amount: string }> } }
    expect(BigInt(paidA.paid.total)).toBe(bidB * kib)
    expect(BigInt(paidB.paid.total)).toBe(reserve * kib)
    expect(paidA.paid.seeders.map(s => s.payee)).toEqual([provider.account])

    // the provider (whose wallet started empty; its claimer may already have claimed one) claims
    // every channel: the ledger then shows exactly price × bytes moved
    const { incoming } = await provider.api.channels()
    expect(incoming).toHaveLength(2)
    for (const c of incoming) await provider.api.claimChannel(c.id)
    const client = new HttpLedgerClient({ url: ledger.url, keyPair: generateKeyPair() })
    expect(await client.balance(provider.account)).toBe(bidB * kib + reserve * kib)
    const byPayer = new Map(incoming.map(c => [c.payer, c.id]))
    expect((await client.channel(byPayer.get(accountA)!)).claimed).toBe(bidB * kib)
    expect((await client.channel(byPayer.get(accountB)!)).claimed).toBe(reserve * kib)
  })

  it('a requester that stops paying gets at most one piece beyond what it paid, is choked, and is banned after the configured failures', async () => {
    const pieceLength = 64 * KIB
    const size = 2 * 1024 * KIB
    const { ledger, provider, torrent } = await setup(size, [
      'paid_slots = 1', 'free_slots = 0', 'optimistic_slots = 0', 'reserve_fixed = "0.0001"', 'rechoke_seconds = 0.5', 'bid_window_seconds = 0'
    ])
    // the provider's payment rules are in [payments]: 2 s to pay, banned at the 2nd failure
    await provider.node.signal('SIGTERM')
    await writeFile(join(provider.home, 'config.toml'), (await readFile(join(provider.home, 'config.toml'), 'utf8')) + '[payments]\npayment_timeout_seconds = 2\nban_after_failures = 2\n')
    const restarted = await startProvider(ledger.url, [], provider.home)
    stops.push(async () => { await restarted.node.signal('SIGTERM') })

    // a requester in this process: real engine, real channel on the real ledger, pays 3 pieces only
    const dir = await tempHome('btt-cheat-')
    await mkdir(dir, { recursive: true })
    const keyPair = generateKeyPair()
    const client = new HttpLedgerClient({ url: ledger.url, keyPair })
    await client.faucet(10n * BTT)
    const store = new SqliteChannelStore(join(dir, 'channels.db'))
    const policy = { threshold: BTT, safetyMarginMs: 60_000 }
    const all = {
      account: toHex(keyPair.publicKey), ledger: client, ledgerId: ledger.ledgerId, ledgerLocation: ledger.url,
      meter: new Meter({ store, ledger: client, payee: toHex(keyPair.publicKey), ledgerId: ledger.ledgerId }),
      payer: new Payer({ store, ledger: client, keyPair }),
      claimer: new Claimer({ store, ledger: client, policy }),
      store,
      async stop () { await store.close() }
    }
    stops.push(async () => { await all.stop() })
    class StopsPaying extends Speed {
      pieces = 0
      override verified (t: Parameters<Speed['verified']>[0], index: number): void {
        if (++this.pieces <= 3) super.verified(t, index)
      }
    }
    const logger = pino({ level: 'silent' })
    const cheat = new StopsPaying({ payments: servicePaymentsOf(all), logger, paidSlots: 0, freeSlots: 0, optimisticSlots: 0, reserve: { perHour: 0n, cap: 0n }, minDepositPieces: 1, minExpirySeconds: 0, bidding: { budget: BTT, spendingRatePpm: 1_000_000n } })
    const engine = new Engine({
      dataDir: join(dir, 'state'), downloadDir: join(dir, 'dl'), listenHost: '127.0.0.1', port: 0, dht: false, dhtBootstrap: [], trackers: false, pex: false,
      uploadRate: 0, downloadRate: 0, torrentUploadRate: 0, torrentDownloadRate: 0, maxPeers: 10, maxPeersPerTorrent: 10, maxActiveTorrents: 10,
      uploadSlots: 1, cacheBytes: 1 << 20, minAnnounceInterval: 5, logger, speed: cheat
    })
    await engine.start()
    stops.push(async () => { await engine.stop(); await rm(dirname(dir), { recursive: true, force: true }) })
    const got = await engine.add({ torrent: await readFile(torrent) })
    engine.addPeer(got.infoHash, { host: '127.0.0.1', port: restarted.port })
    const deadline = Date.now() + 20_000
    const banned = async (): Promise<boolean> => (await restarted.api.serviceRequest<{ bans: string[] }>('seeding', 'GET', '/bans')).bans.includes(all.account)
    while (!(await banned())) {
      if (Date.now() > deadline) throw new Error('the payer was not banned')
      await new Promise(resolve => setTimeout(resolve, 100))
    }
    const reserve = BTT / 10_000n
    const paidBytes = Number(cheat.spentTotal / reserve) * KIB
    expect(paidBytes).toBe(3 * pieceLength)
    await new Promise(resolve => setTimeout(resolve, 500))
    const received = engine.detail(got.infoHash).downloaded
    expect(received).toBeGreaterThan(paidBytes)
    expect(received).toBeLessThanOrEqual(paidBytes + pieceLength)
    expect(engine.detail(got.infoHash).peers).toBe(0)
    // coming back while banned: dropped at the handshake, nothing more arrives
    engine.addPeer(got.infoHash, { host: '127.0.0.1', port: restarted.port })
    await new Promise(resolve => setTimeout(resolve, 1500))
    expect(engine.detail(got.infoHash).downloaded).toBe(received)
  })
})
