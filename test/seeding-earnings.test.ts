import { randomBytes } from 'node:crypto'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { formatBtt } from '@btt/channel'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runCli, type CliResult } from './helpers/cli.js'
import { BTT, fundHome, ledgerHome, startLedgerProcess, startProvider, type LedgerProcess, type Provider } from './helpers/paid.js'

/**
 * Paid-seeding earnings as an operator sees them, with real processes on loopback: a ledger, a
 * provider selling one paid slot at a fixed reserve, and one `btt-node get --budget` requester.
 * `btt-node earnings`, `seed list` and `/metrics` must agree with what the requester paid, to the
 * base unit, and the earnings must survive a restart of the provider.
 */

const KIB = 1024
const SIZE = 1024 * KIB
/** reserve_fixed = "0.0001" BTT per KiB; the only bidder pays the reserve. */
const RESERVE = BTT / 10_000n
const EXPECTED = RESERVE * BigInt(SIZE / KIB)

let ledger: LedgerProcess | undefined
let provider: Provider | undefined
let requesterHome = ''
let payer = ''
let infoHash = ''
const dirs: string[] = []

interface Report { total: string, torrents: Array<{ infoHash: string, name: string, amount: string, bytes: number, payers: Array<{ payer: string, amount: string, bytes: number, updatedAt: number }> }> }

async function cli (home: string, ...args: string[]): Promise<CliResult> {
  return await runCli([...args, '--home', home])
}

async function json<T> (home: string, ...args: string[]): Promise<{ code: number | null, out: T, stderr: string }> {
  const res = await cli(home, ...args, '--json')
  try {
    return { code: res.code, out: JSON.parse(res.stdout) as T, stderr: res.stderr }
  } catch {
    throw new Error(`not JSON (exit ${res.code}): ${res.stdout}\n${res.stderr}`)
  }
}

function metric (text: string, name: string): number {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text)
  if (m === null) throw new Error(`${name} is not in /metrics`)
  return Number(m[1])
}

beforeAll(async () => {
  ledger = await startLedgerProcess()
  dirs.push(dirname(dirname(ledger.db)))
  provider = await startProvider(ledger.url, [
    'paid_slots = 1', 'free_slots = 0', 'optimistic_slots = 0', 'reserve_fixed = "0.0001"', 'bid_window_seconds = 0', 'rechoke_seconds = 0.5'
  ])
  dirs.push(dirname(provider.home))
  const src = join(dirname(provider.home), 'src', 'film.bin')
  await mkdir(dirname(src), { recursive: true })
  await writeFile(src, randomBytes(SIZE))
  const added = await provider.api.serviceRequest<{ torrent: { infoHash: string, torrentFile: string } }>('seeding', 'POST', '/torrents', { path: src, piece_length: 64 * KIB })
  infoHash = added.torrent.infoHash

  requesterHome = await ledgerHome(ledger.url)
  dirs.push(dirname(requesterHome))
  payer = await fundHome(ledger.url, requesterHome, 2n * BTT)
  const got = await runCli(['get', added.torrent.torrentFile, '--out', join(dirname(requesterHome), 'out'), '--home', requesterHome, '--budget', '1',
    '--peer', `127.0.0.1:${provider.port}`, '--no-dht', '--no-pex', '--listen-host', '127.0.0.1', '--json', '--timeout', '30'])
  expect(got.code, got.stderr).toBe(0)
  expect(BigInt((JSON.parse(got.stdout) as { paid: { total: string } }).paid.total)).toBe(EXPECTED)

  // `get` exits once its vouchers are sent: wait until the provider credited the last one
  const deadline = Date.now() + 10_000
  while (BigInt((await provider.api.serviceRequest<Report>('seeding', 'GET', '/earnings')).total) < EXPECTED) {
    if (Date.now() > deadline) throw new Error('the provider did not credit every payment')
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}, 60_000)

afterAll(async () => {
  if (provider !== undefined && provider.node.child.exitCode === null) await provider.node.signal('SIGKILL')
  ledger?.stop()
  for (const d of dirs) await rm(d, { recursive: true, force: true })
})

describe('btt-node earnings, seed list and metrics after a paid download', () => {
  let before: Report

  it('earnings --json: total = reserve × KiB exactly, one torrent, the requester\'s wallet key as the payer', async () => {
    const res = await json<Report>(provider!.home, 'earnings')
    expect(res.code, res.stderr).toBe(0)
    before = res.out
    expect(res.out.total).toBe(EXPECTED.toString())
    expect(res.out.torrents).toHaveLength(1)
    const t = res.out.torrents[0]!
    expect(t).toEqual(expect.objectContaining({ infoHash, name: 'film.bin', amount: EXPECTED.toString(), bytes: SIZE }))
    expect(t.payers).toEqual([expect.objectContaining({ payer, amount: EXPECTED.toString(), bytes: SIZE })])
    expect(t.payers[0]!.updatedAt).toBeGreaterThan(Date.now() - 60_000)
  })

  it('earnings (human): the total and the torrent\'s row in BTT; --torrent lists the payer', async () => {
    const amount = `${formatBtt(EXPECTED)} BTT`
    const res = await cli(provider!.home, 'earnings')
    expect(res.code, res.stderr).toBe(0)
    expect(res.stdout).toContain(`earned ${amount} in total`)
    expect(res.stdout).toMatch(/NAME\s+INFOHASH\s+EARNED\s+SERVED\s+PAYERS/)
    expect(res.stdout).toMatch(new RegExp(`film\\.bin\\s+${infoHash.slice(0, 12)}…\\s+${amount.replace('.', '\\.')}\\s+1\\.00 MiB\\s+1`))

    const one = await cli(provider!.home, 'earnings', '--torrent', infoHash.toUpperCase())
    expect(one.code, one.stderr).toBe(0)
    expect(one.stdout).toContain(payer)
    expect(one.stdout).toContain(amount)
    const oneJson = await json<Report['torrents'][number]>(provider!.home, 'earnings', '--torrent', infoHash)
    expect(oneJson.out).toEqual(before.torrents[0])

    const bad = await cli(provider!.home, 'earnings', '--torrent', 'nope')
    expect(bad.code).toBe(2)
    expect(bad.stderr).toMatch(/not an infohash/)
    const unknown = await json<{ error: { code: string } }>(provider!.home, 'earnings', '--torrent', '0'.repeat(40))
    expect(unknown.code).toBe(1)
    expect(unknown.out.error.code).toBe('SEEDING_NOT_FOUND')
  })

  it('seed list: the same earned amount (JSON base units, table BTT)', async () => {
    const list = await json<{ torrents: Array<{ infoHash: string, earned?: string }> }>(provider!.home, 'seed', 'list')
    expect(list.code, list.stderr).toBe(0)
    expect(list.out.torrents.find(t => t.infoHash === infoHash)?.earned).toBe(EXPECTED.toString())
    const table = await cli(provider!.home, 'seed', 'list')
    expect(table.stdout).toMatch(/RATIO\s+EARNED/)
    expect(table.stdout).toContain(`${formatBtt(EXPECTED)} BTT`)
  })

  it('/metrics: earned in BTT (float) and base units, no bans', async () => {
    const text = await provider!.api.metrics()
    const earnedBtt = metric(text, 'btt_seeding_earned_btt')
    expect(earnedBtt).toBeGreaterThan(0)
    expect(earnedBtt).toBeCloseTo(Number(formatBtt(EXPECTED)), 12)
    expect(metric(text, 'btt_seeding_earned_base_units')).toBe(Number(EXPECTED))
    expect(metric(text, 'btt_seeding_paid_bans')).toBe(0)
    // 16 pieces of 64 KiB, each paid; every byte of them paid for; nothing refused
    expect(metric(text, 'btt_seeding_paid_payments')).toBeGreaterThanOrEqual(SIZE / (64 * KIB))
    expect(metric(text, 'btt_seeding_paid_bytes')).toBe(SIZE)
    expect(text).not.toMatch(/^btt_seeding_payment_refusals\{/m)
  })

  it('earnings survive a restart of the provider; the metrics count from the new start', async () => {
    expect((await provider!.node.signal('SIGTERM')).code).toBe(0)
    provider = await startProvider(ledger!.url, [], provider!.home)
    const after = await json<Report>(provider.home, 'earnings')
    expect(after.code, after.stderr).toBe(0)
    expect(after.out).toEqual(before)
    expect(metric(await provider.api.metrics(), 'btt_seeding_earned_btt')).toBe(0)
  })

  it('clear errors: seeding stopped (exit 1, SERVICE_NOT_RUNNING), node not running (exit 3)', async () => {
    expect((await cli(provider!.home, 'services', 'disable', 'seeding')).code).toBe(0)
    const off = await json<{ error: { code: string, message: string } }>(provider!.home, 'earnings')
    expect(off.code).toBe(1)
    expect(off.out.error.code).toBe('SERVICE_NOT_RUNNING')
    expect(off.out.error.message).toMatch(/services enable seeding/)
    expect((await provider!.node.signal('SIGTERM')).code).toBe(0)
    const down = await cli(provider!.home, 'earnings')
    expect(down.code).toBe(3)
    expect(down.stderr).toMatch(/no node answers/)
    expect(down.stderr).not.toMatch(/\n\s+at /)
  })
})
