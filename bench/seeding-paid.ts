/**
 * seeding.paid         — MB/s of `btt-node get --budget` downloading a torrent from a `btt-node start`
 *                        provider whose only slot is paid (per-piece payment over a channel on a
 *                        ledger server: bid, bid_response, channel open, a voucher per verified
 *                        piece), against `btt-node get` without a budget from a second `btt-node
 *                        start` provider of the same file whose only slot is free. The time is the
 *                        get's own, from before its engine starts to the last piece on disk
 *                        (`--json` seconds; the paid one includes opening its channel); the round
 *                        with the median ratio of BENCH_RUNS rounds, which one goes first
 *                        alternating (ratio = paid / unpaid; target ≥ 0.9). The
 *                        spawn-to-exit figures (process boot included) are printed beside it.
 * seeding.pay_overhead — µs of provider CPU per piece for payment: the Meter session's prepare/apply
 *                        for each 16 KiB block of a piece plus accepting (verifying and durably
 *                        storing) the piece's voucher, on a real SQLite channel store.
 * Loopback only.
 */
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Meter, Payer, SqliteChannelStore, encodeVoucher, generateKeyPair, toHex } from '@btt/channel'
import { Ledger, LocalLedgerClient } from '@btt/ledger'
import { collect } from '../test/helpers/cli.ts'
import { fundHome, ledgerHome, startLedgerProcess, startProvider } from '../test/helpers/paid.ts'
import { median, note, report } from './lib.ts'

const MIB = 1 << 20
const RUNS = Number(process.env.BENCH_RUNS ?? 3)
const SIZE_MIB = Number(process.env.BENCH_PAID_MIB ?? 256)
const PIECE = Number(process.env.BENCH_PAID_PIECE_KIB ?? 1024) * 1024

interface Timed { seconds: number, wall: number, paid?: { total: string } }

async function timedGet (args: string[]): Promise<Timed> {
  const t0 = process.hrtime.bigint()
  const child = spawn(process.execPath, [...args, '--json'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, BTT_NODE_HOME: undefined } })
  const r = await collect(child)
  if (r.code !== 0) throw new Error(`get failed (${r.code}): ${r.stderr}`)
  if (process.env.BENCH_DEBUG !== undefined) note(r.stdout.slice(-400) + r.stderr.slice(-2000))
  const out = JSON.parse(r.stdout) as { seconds: number, paid?: { total: string } }
  return { seconds: out.seconds, wall: Number(process.hrtime.bigint() - t0) / 1e9, ...(out.paid !== undefined ? { paid: out.paid } : {}) }
}

async function benchPaidThroughput (): Promise<void> {
  const { CLI } = await import('../test/helpers/cli.ts')
  const ledger = await startLedgerProcess()
  // two providers of the same file: one sells its only slot, one gives its only slot away (a
  // bidder on a provider with a free slot would take it before its bid is in, and be half free)
  const reserve = '0.000001'
  const paidProvider = await startProvider(ledger.url, [
    'paid_slots = 1', 'free_slots = 0', 'optimistic_slots = 0', `reserve_fixed = "${reserve}"`, 'bid_window_seconds = 0', 'rechoke_seconds = 1'
  ])
  const freeProvider = await startProvider(ledger.url, ['paid_slots = 0', 'upload_slots = 1'])
  const work = await mkdtemp(join(tmpdir(), 'btt-bench-paid-'))
  try {
    const src = join(work, 'src', 'data.bin')
    await mkdir(join(work, 'src'))
    await writeFile(src, randomBytes(SIZE_MIB * MIB))
    let torrent = ''
    for (const provider of [paidProvider, freeProvider]) {
      const added = await provider.api.serviceRequest<{ torrent: { torrentFile: string } }>('seeding', 'POST', '/torrents', { path: src, piece_length: PIECE })
      torrent = added.torrent.torrentFile
    }
    const home = await ledgerHome(ledger.url)
    await fundHome(ledger.url, home, 1000n * 10n ** 18n)
    const common = [CLI, 'get', torrent, '--timeout', '300', '--no-dht', '--no-pex', '--listen-host', '127.0.0.1']
    const paid: number[] = []
    const free: number[] = []
    const paidWall: number[] = []
    const freeWall: number[] = []
    const bytes = SIZE_MIB * MIB
    for (let i = 0; i < RUNS; i++) {
      const outFree = join(work, `free-${i}`)
      const outPaid = join(work, `paid-${i}`)
      const getFree = async (): Promise<Timed> => await timedGet([...common, '--peer', `127.0.0.1:${freeProvider.port}`, '--out', outFree])
      const getPaid = async (): Promise<Timed> => await timedGet([...common, '--peer', `127.0.0.1:${paidProvider.port}`, '--out', outPaid, '--home', home, '--budget', '100'])
      // alternate which goes first, so neither always meets a cold or a warm page cache
      let f: Timed, p: Timed
      if (i % 2 === 0) { f = await getFree(); p = await getPaid() } else { p = await getPaid(); f = await getFree() }
      for (const out of [outFree, outPaid]) {
        if ((await stat(join(out, 'data.bin'))).size !== bytes) throw new Error('incomplete download')
        await rm(out, { recursive: true, force: true })
      }
      // every KiB went through the paid slot: the payer paid the reserve for all of them
      const expected = BigInt(bytes / 1024) * 10n ** 12n
      if (p.paid === undefined || BigInt(p.paid.total) !== expected) throw new Error(`the paid get paid ${p.paid?.total ?? 'nothing'}, expected ${expected}: not all of it went through the paid slot`)
      free.push(bytes / 1e6 / f.seconds)
      paid.push(bytes / 1e6 / p.seconds)
      freeWall.push(bytes / 1e6 / f.wall)
      paidWall.push(bytes / 1e6 / p.wall)
      note(`round ${i + 1}: paid ${paid.at(-1)!.toFixed(1)} MB/s, unpaid ${free.at(-1)!.toFixed(1)} MB/s, ratio ${(paid.at(-1)! / free.at(-1)!).toFixed(3)} (spawn to exit: ${paidWall.at(-1)!.toFixed(1)} / ${freeWall.at(-1)!.toFixed(1)})`)
    }
    const earnings = await paidProvider.api.serviceRequest<{ total: string }>('seeding', 'GET', '/earnings')
    note(`provider earned ${earnings.total} base units over ${RUNS} paid downloads of ${SIZE_MIB} MiB in ${PIECE / 1024} KiB pieces; spawn to exit, medians: paid ${median(paidWall).toFixed(1)}, unpaid ${median(freeWall).toFixed(1)} MB/s (ratio ${(median(paidWall) / median(freeWall)).toFixed(3)})`)
    // median by ratio: the two gets of a round ran back to back, under the same machine noise
    const ratios = paid.map((v, i) => v / free[i]!)
    const mid = ratios.indexOf([...ratios].sort((a, b) => a - b)[Math.floor(ratios.length / 2)]!)
    report({ bench: 'seeding.paid', value: paid[mid]!, unit: 'MB/s', anchor: 'btt-node get from a btt-node provider with a free slot (same round)', anchor_value: free[mid]! })
  } finally {
    await paidProvider.node.signal('SIGTERM')
    await freeProvider.node.signal('SIGTERM')
    ledger.stop()
    await rm(work, { recursive: true, force: true })
  }
}

async function benchPayOverhead (): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'btt-bench-pay-'))
  try {
    const ledger = new Ledger({ path: join(dir, 'ledger.db'), dev: true })
    const payerKeys = generateKeyPair()
    const payeeKeys = generateKeyPair()
    const payerClient = new LocalLedgerClient({ ledger, keyPair: payerKeys })
    const payeeClient = new LocalLedgerClient({ ledger, keyPair: payeeKeys })
    await payerClient.faucet(10n ** 30n)
    const info = await payerClient.info()
    const payer = new Payer({ store: new SqliteChannelStore(join(dir, 'payer.db')), ledger: payerClient, keyPair: payerKeys })
    const store = new SqliteChannelStore(join(dir, 'payee.db'))
    const meter = new Meter({ store, ledger: payeeClient, payee: toHex(payeeKeys.publicKey), ledgerId: info.ledgerId, policy: { threshold: 10n ** 40n, safetyMarginMs: 60_000 } })
    const channel = await payer.open({ payee: toHex(payeeKeys.publicKey), deposit: 10n ** 29n, expiresAt: Date.now() + 3_600_000 })
    const pieceKiB = 1024 // 1 MiB pieces: 64 blocks of 16 KiB
    const rate = 1000n
    const session = await meter.open({ peer: 'bench', channelId: channel.id, price: rate, maxUnpaidUnits: pieceKiB })
    const pieces = Number(process.env.BENCH_PAY_PIECES ?? 5000)
    const vouchers: Uint8Array[] = []
    for (let i = 0; i < pieces; i++) vouchers.push(encodeVoucher(await payer.pay(channel.id, rate * BigInt(pieceKiB))))
    const t0 = process.hrtime.bigint()
    for (let i = 0; i < pieces; i++) {
      for (let b = 0; b < 64; b++) (await session.prepare(16)).apply()
      await session.accept(vouchers[i]!)
    }
    const us = Number(process.hrtime.bigint() - t0) / 1000 / pieces
    note(`${pieces} pieces of 1 MiB paid; credited ${session.credited}`)
    report({ bench: 'seeding.pay_overhead', value: us, unit: 'µs/piece' })
    await store.close()
    ledger.close()
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

export async function benchSeedingPaid (): Promise<void> {
  await benchPayOverhead()
  await benchPaidThroughput()
}
