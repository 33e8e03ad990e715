import { spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { createTracker, type TrackerServer } from '@btt/tracker'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CLI, cleanEnv, collect, runCli } from './helpers/cli.js'
import { BTT, fundHome, ledgerHome, startLedgerProcess, startProvider, type LedgerProcess, type Provider } from './helpers/paid.js'

/**
 * The seeding autopilot, real processes on loopback: a tracker (ours), an unpaid origin seeding
 * torrent X slowly (`btt-node start`, paid seeding off, 64 KiB/s), a requester bidding on X
 * (`btt-node get --budget`, which finds its peers through the tracker), and a provider with the
 * autopilot on and nothing to seed. The provider finds X through bid-scrape, fetches it from the
 * origin, sells it to the requester and is paid; `seed autopilot status` says why it chose X.
 */

const KIB = 1024
const SIZE = 1024 * KIB

let ledger: LedgerProcess
let tracker: TrackerServer
const stops: Array<() => Promise<void> | void> = []

beforeAll(async () => {
  ledger = await startLedgerProcess()
  tracker = await createTracker({ host: '127.0.0.1', httpPort: 0, udpPort: false, rateLimit: false, interval: 60, minInterval: 1 })
})

afterAll(async () => {
  for (const s of stops.reverse()) await s()
  await tracker?.close()
  ledger?.stop()
})

async function provider (lines: string[]): Promise<Provider> {
  const p = await startProvider(ledger.url, ['announce_interval = 1', 'min_announce_interval = 1', ...lines])
  stops.push(async () => { if (p.node.child.exitCode === null) await p.node.signal('SIGTERM') })
  return p
}

interface Decision { infoHash: string, action: string, code: string, reason: string }

describe('seeding autopilot', () => {
  it('finds a torrent requesters bid on through bid-scrape, fetches it, seeds it, is paid, and explains why', async () => {
    const announceUrl = `http://127.0.0.1:${tracker.httpPort}/announce`
    // a slow origin: the requester must not finish from it alone before the autopilot has found X (machines under load)
    const origin = await provider(['paid_slots = 0', 'upload_limit_kib = 16'])
    const pilot = await provider([
      'paid_slots = 2', 'free_slots = 0', 'optimistic_slots = 0', 'reserve_fixed = "0.000001"', 'bid_window_seconds = 0', 'rechoke_seconds = 1',
      'autopilot = true', `autopilot_trackers = ["${announceUrl}"]`, 'autopilot_interval_seconds = 1', 'autopilot_disk_budget_mib = 64'
    ])
    // nothing for the autopilot yet: no round has found a bid
    const before = await runCli(['seed', 'autopilot', 'status', '--home', pilot.home, '--json'])
    expect(before.code, before.stderr).toBe(0)
    expect(JSON.parse(before.stdout)).toMatchObject({ enabled: true, torrents: [] })

    const src = join(dirname(origin.home), 'src', 'x.bin')
    await mkdir(dirname(src), { recursive: true })
    const data = randomBytes(SIZE)
    await writeFile(src, data)
    const added = await origin.api.serviceRequest<{ torrent: { infoHash: string, torrentFile: string } }>('seeding', 'POST', '/torrents', { path: src, piece_length: 16 * KIB, trackers: [announceUrl] })
    const x = added.torrent.infoHash

    const home = await ledgerHome(ledger.url, '', 'btt-bidder-')
    const account = await fundHome(ledger.url, home, 10n * BTT)
    const out = join(dirname(home), 'out')
    const child = spawn(process.execPath, [CLI, 'get', added.torrent.torrentFile, '--out', out, '--home', home, '--budget', '1',
      '--no-dht', '--no-pex', '--listen-host', '127.0.0.1', '--timeout', '120', '--json'], { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
    stops.push(() => { if (child.exitCode === null) child.kill('SIGKILL') })
    const r = await collect(child)
    expect(r.code, r.stderr).toBe(0)
    expect(createHash('sha256').update(await readFile(join(out, 'x.bin'))).digest('hex')).toBe(createHash('sha256').update(data).digest('hex'))

    // the requester paid the autopilot's node, and only it (the origin sells nothing)
    const paid = JSON.parse(r.stdout) as { paid: { total: string, seeders: Array<{ payee: string, amount: string }> } }
    expect(paid.paid.seeders.map(s => s.payee)).toEqual([pilot.account])
    expect(BigInt(paid.paid.total)).toBeGreaterThan(0n)
    const earnings = await pilot.api.serviceRequest<{ torrents: Array<{ infoHash: string, amount: string, payers: Array<{ payer: string }> }> }>('seeding', 'GET', '/earnings')
    const onX = earnings.torrents.find(t => t.infoHash === x)
    expect(onX?.payers.map(p => p.payer)).toEqual([account])
    // what the requester paid reached the provider exactly (vouchers accepted)
    expect(onX?.amount).toBe(paid.paid.total)

    // the provider holds X as its own and says why it took it
    const st = await runCli(['seed', 'autopilot', 'status', '--home', pilot.home, '--json'])
    expect(st.code, st.stderr).toBe(0)
    const status = JSON.parse(st.stdout) as { torrents: Array<{ infoHash: string, tracker: string, reason: string }>, decisions: Decision[] }
    expect(status.torrents).toMatchObject([{ infoHash: x, tracker: announceUrl }])
    // why: its rank by expected income, from the clearing price and the one bidder on it
    expect(status.torrents[0]!.reason).toMatch(/^rank 1 by expected income: clearing price [1-9]\d* base units\/KiB × 1 bidder\(s\) \/ \(\d+ seeder\(s\) \+ us\) = [1-9]\d*$/)
    const human = await runCli(['seed', 'autopilot', 'status', '--home', pilot.home])
    expect(human.code, human.stderr).toBe(0)
    expect(human.stdout).toContain(x)
    // the decision that fetched X was logged by the round that made it; later rounds keep it
    expect(status.decisions.find(d => d.infoHash === x)).toMatchObject({ action: 'keep' })
    expect(human.stdout).toMatch(/KEEP/)
    const list = await pilot.api.serviceRequest<{ torrents: Array<{ infoHash: string, savePath: string }> }>('seeding', 'GET', '/torrents')
    // in a folder of its own, so dropping it with its data cannot touch anything else
    expect(list.torrents.find(t => t.infoHash === x)?.savePath).toMatch(new RegExp(`[/\\\\]autopilot[/\\\\]${x}$`))
  }, 180_000)
})
