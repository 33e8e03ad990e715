import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ChannelError, generateKeyPair, toHex, type KeyPair, type LedgerClient } from '@btt/channel'
import { afterAll, describe, expect, it } from 'vitest'
import { HttpLedgerClient, LocalLedgerClient } from './client.js'
import { LedgerError, NotPayeeError, UnknownChannelError } from './errors.js'
import { Ledger } from './ledger.js'
import { startLedgerServer, type LedgerServer } from './server.js'
import { voucher } from './test-support/fixtures.js'

const WINDOW_MS = 300
const cleanup: Array<() => Promise<void> | void> = []
afterAll(async () => { for (const c of cleanup.reverse()) await c() })

async function tempDb (): Promise<string> {
  return join(await mkdtemp(join(tmpdir(), 'btt-ledger-')), 'ledger.db')
}

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

/** The same scenario against every LedgerClient: both must behave alike. */
const kinds: Array<[string, () => Promise<(key: KeyPair) => LedgerClient>]> = [
  ['HttpLedgerClient against startLedgerServer on 127.0.0.1', async () => {
    const server = await startLedgerServer({ dbPath: await tempDb(), dev: true, challengeWindowMs: WINDOW_MS })
    cleanup.push(() => server.close())
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
    return key => new HttpLedgerClient({ url: server.url, keyPair: key })
  }],
  ['LocalLedgerClient', async () => {
    const ledger = new Ledger({ path: await tempDb(), dev: true, challengeWindowMs: WINDOW_MS })
    cleanup.push(() => { ledger.close() })
    return key => new LocalLedgerClient({ ledger, keyPair: key })
  }]
]

describe.each(kinds)('%s', (_name, make) => {
  it('runs a channel through its life: faucet, open, top-up, extend, claims, refund, challenge, finalize', async () => {
    const client = await make()
    const payerKey = generateKeyPair()
    const payeeKey = generateKeyPair()
    const payer = client(payerKey)
    const payee = client(payeeKey)
    expect(payer.account).toBe(toHex(payerKey.publicKey))
    const info = await payer.info()
    expect(info).toEqual({ ledgerId: expect.stringMatching(/^[0-9a-f]{64}$/), challengeWindowMs: WINDOW_MS, dev: true, version: '0.1.0' })

    const big = 5n * 10n ** 24n + 3n
    expect(await payer.faucet(big)).toBe(big)
    const opened = await payer.open({ payee: payee.account, deposit: 10n ** 24n, expiresAt: Date.now() + 400 })
    expect(opened).toMatchObject({ ledgerId: info.ledgerId, payer: payer.account, payee: payee.account, deposit: 10n ** 24n, claimed: 0n, status: 'open', challengeEndsAt: null })
    expect(opened.nonce).toMatch(/^[0-9a-f]{64}$/)
    const second = await payer.open({ payee: payee.account, deposit: 1n, expiresAt: Date.now() + 60_000 })
    expect(second.id).not.toBe(opened.id) // a fresh nonce each time
    expect((await payer.topup({ channelId: opened.id, amount: 2n })).deposit).toBe(10n ** 24n + 2n)
    const extended = await payer.extend({ channelId: opened.id, expiresAt: opened.expiresAt + 100 })
    expect(extended.expiresAt).toBe(opened.expiresAt + 100)
    expect(await payer.balance()).toBe(big - 10n ** 24n - 3n)
    expect(await payee.balance(payer.account)).toBe(big - 10n ** 24n - 3n)
    expect((await payee.channels()).map(c => c.id).sort()).toEqual([opened.id, second.id].sort())
    expect(await payer.channel(opened.id)).toEqual(extended)

    const v1 = voucher(info.ledgerId, opened.id, 10n ** 23n, payerKey)
    expect((await payee.claim(v1)).paid).toBe(10n ** 23n)
    expect((await payee.claim(v1)).paid).toBe(0n) // idempotent
    const refused = await payer.claim(v1).catch((e: unknown) => e)
    expect(refused).toBeInstanceOf(NotPayeeError)
    expect(refused).toMatchObject({ code: 'LEDGER_NOT_PAYEE' })
    const badSig = await payee.claim(voucher(info.ledgerId, opened.id, 10n ** 23n + 1n, payeeKey)).catch((e: unknown) => e)
    expect(badSig).toBeInstanceOf(ChannelError)
    expect(badSig).toMatchObject({ code: 'CHANNEL_VOUCHER_BAD_SIGNATURE' })
    await expect(payer.refund({ channelId: opened.id })).rejects.toMatchObject({ code: 'LEDGER_NOT_EXPIRED' })
    const unknown = await payer.channel('00'.repeat(32)).catch((e: unknown) => e)
    expect(unknown).toBeInstanceOf(UnknownChannelError)

    await sleep(Math.max(0, extended.expiresAt - Date.now()) + 5)
    const refunding = await payer.refund({ channelId: opened.id })
    expect(refunding.status).toBe('refunding')
    await expect(payer.refund({ channelId: opened.id })).rejects.toMatchObject({ code: 'LEDGER_ALREADY_REFUNDING' })
    await expect(payer.finalize({ channelId: opened.id })).rejects.toMatchObject({ code: 'LEDGER_CHALLENGE_OPEN' })
    // the payee's later voucher, inside the challenge window, wins
    expect((await payee.claim(voucher(info.ledgerId, opened.id, 3n * 10n ** 23n, payerKey))).paid).toBe(2n * 10n ** 23n)
    await sleep(Math.max(0, (refunding.challengeEndsAt as number) - Date.now()) + 5)
    const fin = await payer.finalize({ channelId: opened.id })
    expect(fin.refunded).toBe(10n ** 24n + 2n - 3n * 10n ** 23n)
    expect(fin.channel.status).toBe('finalized')
    await expect(payee.claim(voucher(info.ledgerId, opened.id, 4n * 10n ** 23n, payerKey))).rejects.toMatchObject({ code: 'LEDGER_CHANNEL_FINALIZED' })
    expect(await payee.balance()).toBe(3n * 10n ** 23n)
    expect(await payer.balance()).toBe(big - 1n - 3n * 10n ** 23n)
  })

  it('refuses a key pair whose secret key does not belong to its public key', async () => {
    const client = await make()
    const a = generateKeyPair()
    const b = generateKeyPair()
    expect(() => client({ publicKey: a.publicKey, secretKey: b.secretKey })).toThrow(expect.objectContaining({ code: 'LEDGER_BAD_REQUEST' }))
  })
})

describe('HttpLedgerClient failures', () => {
  it('reports an unreachable ledger with LEDGER_UNREACHABLE', async () => {
    const server: LedgerServer = await startLedgerServer({ dbPath: await tempDb(), dev: true })
    const client = new HttpLedgerClient({ url: server.url, keyPair: generateKeyPair(), timeoutMs: 2000 })
    await client.info()
    await server.close()
    const err = await client.faucet(1n).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(LedgerError)
    expect(err).toMatchObject({ code: 'LEDGER_UNREACHABLE' })
  })

  it('refuses answers that are not the ledger API', async () => {
    const { createServer } = await import('node:http')
    const srv = createServer((_req, res) => { res.setHeader('content-type', 'application/json'); res.end('{"ledgerId":"nope"}') })
    await new Promise<void>(resolve => srv.listen(0, '127.0.0.1', resolve))
    cleanup.push(() => new Promise<void>(resolve => srv.close(() => { resolve() })))
    const port = (srv.address() as { port: number }).port
    const client = new HttpLedgerClient({ url: `http://127.0.0.1:${port}`, keyPair: generateKeyPair() })
    await expect(client.info()).rejects.toMatchObject({ code: 'LEDGER_BAD_RESPONSE' })
    await expect(client.faucet(1n)).rejects.toMatchObject({ code: 'LEDGER_BAD_RESPONSE' })
  })
})
