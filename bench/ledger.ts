import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { readFile } from 'node:fs/promises'
import { fromHex, generateKeyPair, signVoucher, toHex } from '@btt/channel'
import { HttpLedgerClient } from '@btt/ledger'
import { note, report } from './lib.ts'

/** Concurrent clients, each a payee claiming on its own channel. */
const CLIENTS = Number(process.env.BENCH_LEDGER_CLIENTS ?? 50)
/** Measured time, after WARMUP_MS of the same load. */
const DURATION_MS = Number(process.env.BENCH_LEDGER_MS ?? 5000)
const WARMUP_MS = 1000

/** The ledger server, in its own process so that it does not share an event loop with the clients. */
const SERVER_SCRIPT = `
import { startLedgerServer } from '@btt/ledger'
const server = await startLedgerServer({ dbPath: process.env.BENCH_LEDGER_DB, dev: true })
process.stdout.write('ready ' + server.url + '\\n')
process.once('SIGTERM', () => { server.close().then(() => process.exit(0), () => process.exit(1)) })
`

/**
 * ledger.claims     — signed claims per second over HTTP (each verifies the request signature and
 *                     the voucher signature, and commits with synchronous=FULL), CLIENTS concurrent.
 * ledger.claims_p99 — 99th percentile latency of one claim, ms.
 * Server (dev ledger on a fresh file) in a child process on 127.0.0.1; clients use HttpLedgerClient.
 */
export async function benchLedger (): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'btt-bench-ledger-'))
  const child = spawn(process.execPath, ['--input-type=module', '--no-warnings', '-e', SERVER_SCRIPT], {
    cwd: fileURLToPath(new URL('.', import.meta.url)),
    env: { ...process.env, BENCH_LEDGER_DB: join(dir, 'ledger.db') },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  try {
    const url = await new Promise<string>((resolve, reject) => {
      let out = ''
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString()
        const m = /ready (\S+)/.exec(out)
        if (m !== null) resolve(m[1] as string)
      })
      child.once('exit', code => { reject(new Error(`ledger server exited with ${String(code)} before it was ready`)) })
    })

    const payerKey = generateKeyPair()
    const payer = new HttpLedgerClient({ url, keyPair: payerKey })
    const { ledgerId } = await payer.info()
    const deposit = 10n ** 30n
    await payer.faucet(deposit * BigInt(CLIENTS))
    const clients = await Promise.all(Array.from({ length: CLIENTS }, async () => {
      const key = generateKeyPair()
      const payee = new HttpLedgerClient({ url, keyPair: key })
      const channel = await payer.open({ payee: toHex(key.publicKey), deposit, expiresAt: Date.now() + 3600_000 })
      return { payee, channelId: fromHex(channel.id, 32, 'channel id'), amount: 0n }
    }))
    const ledgerIdBytes = fromHex(ledgerId, 32, 'ledger id')

    const serverCpu0 = await cpuSeconds(child.pid as number)
    const selfCpu0 = process.cpuUsage()
    const latencies: number[] = []
    let errors = 0
    let measuring = false
    const t0 = performance.now()
    const measureFrom = t0 + WARMUP_MS
    const end = measureFrom + DURATION_MS
    await Promise.all(clients.map(async c => {
      while (performance.now() < end) {
        c.amount += 1n
        const voucher = signVoucher({ ledgerId: ledgerIdBytes, channelId: c.channelId, amount: c.amount }, payerKey.secretKey)
        const start = performance.now()
        try {
          const { paid } = await c.payee.claim(voucher)
          if (paid !== 1n) throw new Error(`claim paid ${paid}, expected 1`)
          if (start >= measureFrom) {
            measuring = true
            latencies.push(performance.now() - start)
          }
        } catch (err) {
          errors++
          if (errors <= 3) note(`ledger claim failed: ${(err as Error).message}`)
        }
      }
    }))
    const serverCpu = await cpuSeconds(child.pid as number) - serverCpu0
    const self = process.cpuUsage(selfCpu0)
    const wall = (performance.now() - t0) / 1000
    note(`ledger: cpu over ${wall.toFixed(1)} s: server ${(serverCpu / wall * 100).toFixed(0)} %, clients ${((self.user + self.system) / 1e6 / wall * 100).toFixed(0)} %`)
    if (!measuring || latencies.length === 0) throw new Error('no claim completed in the measured window')
    if (errors > 0) throw new Error(`${errors} claims failed`)
    const check = await (await fetch(new URL('/v1/check', url))).json() as { ok: boolean }
    if (!check.ok) throw new Error('the ledger invariant does not hold after the run')

    latencies.sort((a, b) => a - b)
    const p99 = latencies[Math.min(latencies.length - 1, Math.ceil(latencies.length * 0.99) - 1)] as number
    const rate = latencies.length / (DURATION_MS / 1000)
    note(`ledger: ${latencies.length} claims in ${DURATION_MS} ms by ${CLIENTS} clients; p50 ${(latencies[Math.floor(latencies.length / 2)] as number).toFixed(1)} ms, p99 ${p99.toFixed(1)} ms`)
    report({ bench: 'ledger.claims', value: rate, unit: 'claims/s' })
    report({ bench: 'ledger.claims_p99', value: p99, unit: 'ms' })
  } finally {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise(resolve => child.once('exit', resolve))
      child.kill('SIGTERM')
      await exited
    }
    await rm(dir, { recursive: true, force: true })
  }
}

/** CPU seconds (user + system) a process has used so far, from /proc. */
async function cpuSeconds (pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100
}
