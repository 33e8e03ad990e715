import { spawn } from 'node:child_process'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { toHex } from '@btt/channel'
import { describe, expect, it } from 'vitest'
import { Ledger } from './ledger.js'
import { HOUR, nonce32, party } from './test-support/fixtures.js'

const HOOKS = fileURLToPath(new URL('./test-support/ts-hooks.mjs', import.meta.url))
const WORKER = fileURLToPath(new URL('./test-support/ledger-process.ts', import.meta.url))

async function runProcess (job: unknown): Promise<{ paid: string[], topups: number }> {
  const child = spawn(process.execPath, ['--no-warnings', '--import', HOOKS, WORKER], { env: { ...process.env, LEDGER_JOB: JSON.stringify(job) }, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr.on('data', (d: Buffer) => { err += d.toString() })
  const code = await new Promise(resolve => child.on('exit', resolve))
  if (code !== 0) throw new Error(`ledger process exited ${String(code)}: ${err}`)
  return JSON.parse(out) as { paid: string[], topups: number }
}

describe('two processes on one ledger database', () => {
  it('pay every claim exactly once and lose no top-up while both write at the same time', async () => {
    const path = join(await mkdtemp(join(tmpdir(), 'btt-ledger-')), 'ledger.db')
    const setup = new Ledger({ path, dev: true })
    const payer = party()
    const payees = Array.from({ length: 5 }, () => party())
    setup.faucet(payer.hex, 10n ** 30n)
    const deposit = 10n ** 27n
    const channels = payees.map(p => setup.open(payer.hex, { payee: p.hex, deposit, expiresAt: Date.now() + HOUR, nonce: nonce32() }))
    setup.close()
    const rounds = 150
    const step = 10n ** 20n // amounts past 2^64: 16-byte blobs
    const job = { path, payer: payer.hex, payerSecret: toHex(payer.key.secretKey), channels: channels.map((c, i) => ({ id: c.id, payee: (payees[i] as { hex: string }).hex })), rounds, step: step.toString() }
    // both processes present the same vouchers, racing each other
    const [a, b] = await Promise.all([runProcess(job), runProcess(job)])
    const ledger = new Ledger({ path })
    channels.forEach((c, i) => {
      const final = BigInt(rounds) * step + BigInt(i)
      expect(BigInt(a.paid[i] as string) + BigInt(b.paid[i] as string), `channel ${i}`).toBe(final)
      expect(ledger.balance((payees[i] as { hex: string }).hex)).toBe(final)
      expect(ledger.channel(c.id).claimed).toBe(final)
    })
    expect(a.topups + b.topups).toBe(2 * rounds)
    expect(ledger.channel((channels[0] as { id: string }).id).deposit).toBe(deposit + BigInt(2 * rounds))
    expect(ledger.check()).toMatchObject({ ok: true, totalMinted: 10n ** 30n })
    ledger.close()
  }, 60_000)
})
