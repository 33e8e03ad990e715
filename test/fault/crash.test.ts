import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp } from 'node:fs/promises'
import { connect, type Socket } from 'node:net'
import { DatabaseSync } from 'node:sqlite'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { amountFromBytes, decodeVoucher, encodeVoucher, generateKeyPair, signVoucher, toHex } from '@btt/channel'
import { HttpLedgerClient, startLedgerServer } from '@btt/ledger'
import { afterAll, describe, expect, it } from 'vitest'

const PAYEE = fileURLToPath(new URL('../fixtures/crash-payee.ts', import.meta.url))
const KILLS = Number(process.env.CRASH_KILLS ?? 100)

const servers: Array<{ close: () => Promise<void> }> = []
afterAll(async () => { for (const s of servers) await s.close() })

async function startPayee (db: string, channelJson: string): Promise<{ child: ChildProcess, port: number }> {
  const child = spawn(process.execPath, ['--experimental-strip-types', '--no-warnings', PAYEE, db], { env: { ...process.env, CHANNEL: channelJson }, stdio: ['ignore', 'pipe', 'inherit'] })
  const port = await new Promise<number>((resolve, reject) => {
    let out = ''
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString()
      const m = /ready (\d+)/.exec(out)
      if (m !== null) resolve(Number(m[1]))
    })
    child.on('exit', code => { reject(new Error(`payee exited with ${code} before it was ready`)) })
  })
  return { child, port }
}

/** What the payee's database holds, read by this process after the payee died. */
function inspect (db: string): { integrity: string, highest: bigint, voucher: Uint8Array | null } {
  const d = new DatabaseSync(db)
  try {
    const integrity = String((d.prepare('PRAGMA integrity_check').get() as { integrity_check: string }).integrity_check)
    const row = d.prepare('SELECT highest, voucher FROM incoming').get() as { highest: Uint8Array, voucher: Uint8Array | null } | undefined
    return { integrity, highest: row === undefined ? 0n : amountFromBytes(row.highest), voucher: row?.voucher ?? null }
  } finally {
    d.close()
  }
}

describe('payee killed while vouchers stream in', () => {
  it(`loses no acknowledged voucher over ${KILLS} SIGKILLs, keeps SQLite intact, and the ledger pays what was persisted`, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'btt-crash-'))
    const ledgerServer = await startLedgerServer({ dbPath: join(dir, 'ledger.db'), dev: true })
    servers.push(ledgerServer)
    const payerKey = generateKeyPair()
    const payeeKey = generateKeyPair()
    const payer = new HttpLedgerClient({ url: ledgerServer.url, keyPair: payerKey })
    const payeeLedger = new HttpLedgerClient({ url: ledgerServer.url, keyPair: payeeKey })
    const DEPOSIT = 10n ** 9n
    await payer.faucet(DEPOSIT)
    const channel = await payer.open({ payee: toHex(payeeKey.publicKey), deposit: DEPOSIT, expiresAt: Date.now() + 24 * 3600_000 })
    const channelJson = JSON.stringify({ ...channel, deposit: channel.deposit.toString(), claimed: channel.claimed.toString() })
    const ledgerId = Buffer.from(channel.ledgerId, 'hex')
    const channelId = Buffer.from(channel.id, 'hex')
    const db = join(dir, 'payee.db')

    let sent = 0n
    let ackedMax = 0n
    let acks = 0
    for (let round = 0; round < KILLS; round++) {
      const { child, port } = await startPayee(db, channelJson)
      const exited = new Promise(resolve => child.on('exit', resolve))
      const socket: Socket = connect(port, '127.0.0.1')
      let buffered = ''
      socket.on('data', d => {
        buffered += d.toString()
        let i
        while ((i = buffered.indexOf('\n')) !== -1) {
          const msg = JSON.parse(buffered.slice(0, i)) as { ack?: string }
          buffered = buffered.slice(i + 1)
          if (msg.ack !== undefined) {
            const a = BigInt(msg.ack)
            acks++
            if (a > ackedMax) ackedMax = a
          }
        }
      })
      socket.on('error', () => {})
      await new Promise(resolve => socket.once('connect', resolve))
      // stream vouchers (several in flight) until the payee is killed at a random moment
      const killAt = Date.now() + 10 + Math.floor(Math.random() * 120)
      while (Date.now() < killAt) {
        for (let k = 0; k < 4; k++) {
          sent += 1n + BigInt(Math.floor(Math.random() * 1000))
          const v = signVoucher({ ledgerId, channelId, amount: sent }, payerKey.secretKey)
          socket.write(JSON.stringify({ v: Buffer.from(encodeVoucher(v)).toString('hex'), amount: sent.toString() }) + '\n')
        }
        await new Promise(resolve => setTimeout(resolve, 1))
      }
      child.kill('SIGKILL')
      await exited
      socket.destroy()
      const state = inspect(db)
      expect(state.integrity).toBe('ok')
      // every acknowledged voucher is in the database; nothing above what was sent
      expect(state.highest >= ackedMax, `round ${round}: stored ${state.highest} < acknowledged ${ackedMax}`).toBe(true)
      expect(state.highest <= sent).toBe(true)
    }
    expect(acks).toBeGreaterThan(KILLS) // the payee did acknowledge between kills

    const final = inspect(db)
    expect(final.voucher).not.toBeNull()
    const claim = await payeeLedger.claim(decodeVoucher(final.voucher as Uint8Array))
    expect(claim.paid).toBe(final.highest)
    expect(await payeeLedger.balance()).toBe(final.highest)
    expect(await payer.balance()).toBe(0n)
    expect((await payer.channel(channel.id)).claimed).toBe(final.highest)
  })
})
