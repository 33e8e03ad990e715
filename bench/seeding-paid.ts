/**
 * seeding.paid         — MB/s `btt-node get --budget` downloads a torrent from a `btt-node start`
 *                        provider through a paid slot (per-piece payment over a channel on a ledger
 *                        server), against `btt-node get` without a budget from the same provider
 *                        through a free slot, spawn to exit, median of BENCH_RUNS alternating
 *                        rounds (ratio = paid / unpaid; target ≥ 0.9).
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

async function timedGet (args: string[]): Promise<number> {
  const t0 = process.hrtime.bigint()
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, BTT_NODE_HOME: undefined } })
  const r = await collect(child)
  if (r.code !== 0) throw new Error(`get failed (${r.code}): ${r.stderr}`)
  if (process.env.BENCH_DEBUG !== undefined) note(r.stdout.slice(-400) + r.stderr.slice(-2000))
  return Number(process.hrtime.bigint() - t0) / 1e9
}

async function benchPaidThroughput (): Promise<void> {
  const { CLI } = await import('../test/helpers/cli.ts')
  const ledger = await startLedgerProcess()
  const provider = await startProvider(ledger.url, [
    'paid_slots = 1', 'free_slots = 1', 'optimistic_slots = 0', 'reserve_fixed = "0.000001"', 'bid_window_seconds = 0', 'rechoke_seconds = 1'
  ])
  const work = await mkdtemp(join(tmpdir(), 'btt-bench-paid-'))
  try {
    const src = join(work, 'src', 'data.bin')
    await mkdir(join(work, 'src'))
    await writeFile(src, randomBytes(SIZE_MIB * MIB))
    const added = await provider.api.serviceRequest<{ torrent: { torrentFile: string } }>('seeding', 'POST', '/torrents', { path: src, piece_length: PIECE })
    const torrent = added.torrent.torrentFile
    const home = await ledgerHome(ledger.url)
    await fundHome(ledger.url, home, 1000n * 10n ** 18n)
    const common = [CLI, 'get', torrent, '--peer', `127.0.0.1:${provider.port}`, '--no-dht', '--no-pex', '--listen-host', '127.0.0.1']
    const paid: number[] = []
    const free: number[] = []
    for (let i = 0; i < RUNS; i++) {
      const outFree = join(work, `free-${i}`)
      const outPaid = join(work, `paid-${i}`)
      const f = await timedGet([...common, '--out', outFree])
      const p = await timedGet([...common, '--out', outPaid, '--home', home, '--budget', '100'])
      for (const out of [outFree, outPaid]) {
        if ((await stat(join(out, 'data.bin'))).size !== SIZE_MIB * MIB) throw new Error('incomplete download')
        await rm(out, { recursive: true, force: true })
      }
      free.push(SIZE_MIB * MIB / 1e6 / f)
      paid.push(SIZE_MIB * MIB / 1e6 / p)
      note(`round ${i + 1}: paid ${paid.at(-1)!.toFixed(1)} MB/s, unpaid ${free.at(-1)!.toFixed(1)} MB/s`)
    }
    const earnings = await provider.api.serviceRequest<{ total: string }>('seeding', 'GET', '/earnings')
    note(`provider earned ${earnings.total} base units over ${RUNS} paid downloads of ${SIZE_MIB} MiB in ${PIECE / 1024} KiB pieces`)
    report({ bench: 'seeding.paid', value: median(paid), unit: 'MB/s', anchor: 'btt-node get through a free slot of the same provider', anchor_value: median(free) })
  } finally {
    await provider.node.signal('SIGTERM')
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
