/**
 * [D] BitTorrent Speed with a legacy client in the swarm, all real processes on loopback: a ledger
 * server, opentracker, a `btt-node start` provider selling ONE paid slot, a paying requester
 * (`btt-node get --budget`) and aria2 (which knows nothing of `btt`). With one free slot aria2
 * completes alongside the bidder, for nothing, while the bidder pays exactly the reserve per KiB;
 * with no free slot aria2 gets nothing while the bidder completes. In CI a missing client fails.
 *
 * Who can reach whom: aria2 learns of the provider only through the tracker (the provider
 * announces there; PEX is off everywhere). The requester gets a copy of the .torrent WITHOUT the
 * announce URL (same info dict, same infohash) and the provider's address with --peer, so it never
 * announces: aria2 and the requester never meet, and each can only have been served by the provider.
 */
import { createHash, randomBytes } from 'node:crypto'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { encodeTorrent, parseTorrent } from '@btt/service-seeding'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { CLI, cleanEnv, collect } from '../helpers/cli.js'
import { BTT, fundHome, ledgerHome, startLedgerProcess, startProvider, type LedgerProcess, type Provider } from '../helpers/paid.js'
import { aria2Download, killAll, requireClient, startTracker, type DownloadResult, type Tracker } from './clients.ts'

const haveCore = Boolean(requireClient('opentracker')) && Boolean(requireClient('aria2c'))

const KIB = 1024
const PIECE = 64 * KIB
/** reserve_fixed = "0.0001" BTT per KiB */
const RESERVE = BTT / 10_000n

interface PeerRow { address: string, client?: string, progress: number, choked: boolean, interested: boolean, incoming: boolean }
interface Detail { infoHash: string, state: string, uploaded: number, peerList: PeerRow[] }
interface Earnings { total: string, torrents: Array<{ infoHash: string, amount: string, bytes: number, payers: Array<{ payer: string, amount: string, bytes: number }> }> }
interface GetJson { state: string, paid: { total: string, seeders: Array<{ payee: string, amount: string }> } }

const stops: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const fn of stops.splice(0).reverse()) await fn()
})

async function sha (path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex')
}

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

interface GetRun { child: ChildProcess, startedAt: number, done: Promise<{ code: number | null, stdout: string, stderr: string, at: number }> }

/** `btt-node get --budget` as its own process, told only of the provider (see the file comment). */
function paidGet (home: string, torrent: string, out: string, port: number, budget: string): GetRun {
  const startedAt = Date.now()
  const child = spawn(process.execPath, [CLI, 'get', torrent, '--out', out, '--home', home, '--budget', budget, '--peer', `127.0.0.1:${port}`, '--no-dht', '--no-pex', '--listen-host', '127.0.0.1', '--json', '--timeout', '60'], { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
  stops.push(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  return { child, startedAt, done: collect(child).then(r => ({ ...r, at: Date.now() })) }
}

describe.skipIf(!haveCore)('paid seeding in a swarm with a legacy client (aria2)', () => {
  let ledger: LedgerProcess
  let tracker: Tracker

  beforeAll(async () => {
    ledger = await startLedgerProcess()
    tracker = await startTracker()
  })

  afterAll(async () => {
    await tracker?.stop()
    ledger?.stop()
    killAll()
  })

  /**
   * A provider selling one paid slot with `freeSlots` free ones, seeding a fresh random file
   * announced at the tracker; the tracker lists the provider before this resolves.
   */
  async function seedingProvider (freeSlots: number, size: number): Promise<{ provider: Provider, infoHash: string, src: string, torrentForAria2: string, torrentForRequester: string, work: string }> {
    const provider = await startProvider(ledger.url, [
      'paid_slots = 1', `free_slots = ${freeSlots}`, 'optimistic_slots = 0', 'reserve_fixed = "0.0001"',
      'rechoke_seconds = 0.5', 'bid_window_seconds = 0', 'announce_interval = 1'
    ])
    stops.push(async () => { if (provider.node.child.exitCode === null) await provider.node.signal('SIGTERM') })
    const work = dirname(provider.home)
    stops.push(async () => { await rm(work, { recursive: true, force: true }) })
    const src = join(work, 'src', 'film.bin')
    await mkdir(dirname(src), { recursive: true })
    await writeFile(src, randomBytes(size))
    const added = await provider.api.serviceRequest<{ torrent: { infoHash: string, torrentFile: string } }>('seeding', 'POST', '/torrents', { path: src, piece_length: PIECE, trackers: [tracker.httpUrl] })
    const infoHash = added.torrent.infoHash
    await tracker.allow(infoHash)
    await tracker.waitForPeer(infoHash, provider.port, 15_000)
    // the requester's copy: the same info dict (so the same infohash), no tracker
    const meta = parseTorrent(await readFile(added.torrent.torrentFile))
    expect(meta.announce.flat()).toEqual([tracker.httpUrl])
    const torrentForRequester = join(work, 'no-tracker.torrent')
    await writeFile(torrentForRequester, encodeTorrent({ info: meta.info, announce: [] }))
    expect(parseTorrent(await readFile(torrentForRequester)).infoHash).toBe(infoHash)
    return { provider, infoHash, src, torrentForAria2: added.torrent.torrentFile, torrentForRequester, work }
  }

  async function fundedRequester (): Promise<{ home: string, account: string, out: string }> {
    const home = await ledgerHome(ledger.url, '', 'btt-requester-')
    stops.push(async () => { await rm(dirname(home), { recursive: true, force: true }) })
    const account = await fundHome(ledger.url, home, 10n * BTT)
    return { home, account, out: join(dirname(home), 'out') }
  }

  const isAria2 = (p: PeerRow): boolean => /aria2/i.test(p.client ?? '')

  it('a legacy client (aria2) in the same swarm completes through a free slot; only the bidder pays, exactly reserve × KiB', async () => {
    const size = 8 * 1024 * KIB
    const kib = BigInt(size / KIB)
    const { provider, infoHash, src, torrentForAria2, torrentForRequester, work } = await seedingProvider(1, size)
    const requester = await fundedRequester()

    // the provider's view, sampled every 50 ms while both download
    interface Sample { at: number, aria2?: PeerRow, bidder?: PeerRow }
    const samples: Sample[] = []
    let watching = true
    const watch = (async () => {
      while (watching) {
        const res = await provider.api.serviceRequest<{ torrent: Detail }>('seeding', 'GET', `/torrents/${infoHash}`).catch(() => undefined)
        if (res !== undefined) {
          const aria = res.torrent.peerList.find(isAria2)
          const bidder = res.torrent.peerList.find(p => !isAria2(p))
          samples.push({ at: Date.now(), ...(aria !== undefined ? { aria2: aria } : {}), ...(bidder !== undefined ? { bidder } : {}) })
        }
        await sleep(50)
      }
    })()

    // aria2 (capped at 1 MiB/s on its side, so its 8 MiB take ~8 s; unthrottled on loopback it
    // would finish in well under a second) first; the bidder joins while aria2 is receiving
    const aria2Dir = join(work, 'aria2-dl')
    const aria2 = aria2Download({ torrentPath: torrentForAria2, dir: aria2Dir, timeoutMs: 45_000, extraArgs: ['--max-download-limit=1M'] })
    let get: GetRun | undefined
    let a: DownloadResult
    let r: Awaited<GetRun['done']>
    try {
      const receivingBy = Date.now() + 10_000
      while (!samples.some(s => s.aria2 !== undefined && !s.aria2.choked && s.aria2.progress > 0)) {
        if (Date.now() > receivingBy) throw new Error('aria2 never received data from the provider')
        await sleep(50)
      }
      get = paidGet(requester.home, torrentForRequester, requester.out, provider.port, '2')
      ;[a, r] = await Promise.all([aria2, get.done])
    } finally {
      watching = false
      await watch
    }
    expect(r.code, r.stderr).toBe(0)
    const want = await sha(src)
    expect(await sha(join(requester.out, 'film.bin'))).toBe(want)
    expect(await sha(join(aria2Dir, 'film.bin'))).toBe(want)

    // at the same time: aria2 was still downloading when the bidder finished, and received pieces
    // while the bidder was connected; the provider had the bidder (the paid slot) and aria2
    // unchoked together, with optimistic_slots = 0: aria2's slot was the free one
    expect(a.startedAt + a.ms).toBeGreaterThan(r.at)
    const during = samples.filter(s => s.bidder !== undefined && s.aria2 !== undefined)
    expect(during.length).toBeGreaterThan(0)
    const both = during.filter(s => !s.bidder!.choked && !s.aria2!.choked)
    expect(both.length, 'the bidder and aria2 were never unchoked at the same time').toBeGreaterThan(0)
    // aria2 kept its free slot the whole time the bidder was there
    expect(during.filter(s => s.aria2!.choked), 'aria2 was choked while the bidder was connected').toEqual([])
    // aria2 reports what it has coarsely (seen here: HAVEs in 1 MiB batches, a second apart at its
    // 1 MiB/s cap) and the paid download can be over in half a second: measure from the last
    // sample before the bidder showed up to the first one 1.5 s after it left
    const firstDuring = samples.indexOf(during[0]!)
    const lastDuring = samples.indexOf(during.at(-1)!)
    const before = samples.slice(0, firstDuring).reverse().find(s => s.aria2 !== undefined) ?? during[0]!
    const after = samples.slice(lastDuring + 1).find(s => s.aria2 !== undefined && s.at >= during.at(-1)!.at + 1500) ?? samples.slice(lastDuring + 1).reverse().find(s => s.aria2 !== undefined) ?? during.at(-1)!
    const aria2Gained = after.aria2!.progress - before.aria2!.progress
    expect(aria2Gained, 'aria2 received nothing while the bidder was connected').toBeGreaterThan(0)
    expect(during[0]!.aria2!.progress).toBeLessThan(1)

    // the lone bidder pays the reserve for every KiB, to the provider only
    const paid = JSON.parse(r.stdout) as GetJson
    expect(BigInt(paid.paid.total)).toBe(RESERVE * kib)
    expect(paid.paid.seeders).toEqual([{ payee: provider.account, amount: (RESERVE * kib).toString() }])

    // the provider earned exactly that, from the requester's key alone: aria2 paid nothing
    let earnings: Earnings
    const deadline = Date.now() + 5000
    for (;;) {
      earnings = await provider.api.serviceRequest<Earnings>('seeding', 'GET', '/earnings')
      if (BigInt(earnings.total) >= RESERVE * kib || Date.now() > deadline) break
      await sleep(100)
    }
    expect(earnings.total).toBe((RESERVE * kib).toString())
    expect(earnings.torrents).toHaveLength(1)
    const [te] = earnings.torrents
    expect(te!.infoHash).toBe(infoHash)
    expect(te!.payers.map(p => p.payer)).toEqual([requester.account])
    expect(te!.payers[0]!.amount).toBe((RESERVE * kib).toString())
    expect(te!.payers[0]!.bytes).toBe(size)
    // and it uploaded a whole second copy besides the paid one: aria2's, served free
    const { torrent: d } = await provider.api.serviceRequest<{ torrent: Detail }>('seeding', 'GET', `/torrents/${infoHash}`)
    expect(d.uploaded - te!.payers[0]!.bytes).toBeGreaterThanOrEqual(size)
    console.log(`paid swarm: ${size / KIB / KIB} MiB; bidder ${r.at - get!.startedAt} ms, paid ${paid.paid.total} base units; aria2 ${a.ms} ms, free, gained ${(aria2Gained * 100).toFixed(0)}% while the bidder was connected; provider uploaded ${d.uploaded} B; bidder and aria2 both unchoked in ${both.length}/${during.length} samples`)
  }, 60_000)

  it('with free_slots = 0 aria2 gets no data while the bidder completes', async () => {
    const size = 4 * 1024 * KIB
    const kib = BigInt(size / KIB)
    const { provider, infoHash, src, torrentForAria2, torrentForRequester, work } = await seedingProvider(0, size)
    const requester = await fundedRequester()
    const aria2Dir = join(work, 'aria2-dl')
    // aria2 first, so it is connected and interested the whole time the bidder downloads
    const aria2 = aria2Download({ torrentPath: torrentForAria2, dir: aria2Dir, timeoutMs: 14_000 }).then(() => 'completed' as const, (err: Error) => err)
    const peers = async (): Promise<PeerRow[]> => (await provider.api.serviceRequest<{ torrent: Detail }>('seeding', 'GET', `/torrents/${infoHash}`)).torrent.peerList
    const joinedBy = Date.now() + 8000
    while (!(await peers()).some(p => isAria2(p) && p.interested)) {
      if (Date.now() > joinedBy) throw new Error('aria2 never connected to the provider as an interested peer')
      await sleep(100)
    }
    const get = paidGet(requester.home, torrentForRequester, requester.out, provider.port, '2')
    const r = await get.done
    expect(r.code, r.stderr).toBe(0)
    expect(await sha(join(requester.out, 'film.bin'))).toBe(await sha(src))
    const paid = JSON.parse(r.stdout) as GetJson
    expect(BigInt(paid.paid.total)).toBe(RESERVE * kib)
    // a few seconds more: aria2 is still there, interested, choked, and has nothing
    await sleep(3000)
    const aria = (await peers()).filter(isAria2)
    expect(aria.length).toBeGreaterThan(0)
    for (const p of aria) {
      expect(p.interested).toBe(true)
      expect(p.choked).toBe(true)
      expect(p.progress).toBe(0)
    }
    // everything the provider uploaded was paid for: not one byte went to aria2
    const { torrent: d } = await provider.api.serviceRequest<{ torrent: Detail }>('seeding', 'GET', `/torrents/${infoHash}`)
    const earnings = await provider.api.serviceRequest<Earnings>('seeding', 'GET', '/earnings')
    expect(earnings.torrents[0]!.payers.map(p => p.payer)).toEqual([requester.account])
    expect(d.uploaded).toBe(earnings.torrents[0]!.payers[0]!.bytes)
    expect(d.uploaded).toBe(size)
    const outcome = await aria2
    expect(outcome).toBeInstanceOf(Error)
    expect((outcome as Error).message).toMatch(/timed out/)
    // and aria2 wrote nothing: its file (if it created one) holds no byte of the data
    const onDisk = await readFile(join(aria2Dir, 'film.bin')).catch(() => Buffer.alloc(0))
    expect(onDisk.some(b => b !== 0)).toBe(false)
    console.log(`no free slot: bidder ${r.at - get.startedAt} ms, paid ${paid.paid.total} base units; aria2 connected and interested, choked, 0 pieces, ${onDisk.length} B on disk, gave up at its ${14} s timeout; provider uploaded ${d.uploaded} B = the paid bytes`)
  }, 60_000)
})
