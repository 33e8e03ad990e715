import { request } from 'node:http'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { toHex, voucherToJson } from '@btt/channel'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { signRequest } from './auth.js'
import { startLedgerServer, type LedgerServer } from './server.js'
import { HOUR, nonce32, party, voucher } from './test-support/fixtures.js'

/**
 * The same checks as http.test.ts, over a real socket: on a Node server the body is read from the
 * IncomingMessage (a different code path from app.request's web Request).
 */
let server: LedgerServer
beforeAll(async () => {
  server = await startLedgerServer({ dbPath: join(await mkdtemp(join(tmpdir(), 'btt-ledger-')), 'ledger.db'), dev: true })
})
afterAll(async () => { await server.close() })

/** A raw request; `chunks` are written one by one (chunked encoding unless content-length is given). */
async function raw (method: string, path: string, headers: Record<string, string>, chunks: Buffer[] = []): Promise<{ status: number, json: { error?: { code: string } } & Record<string, unknown> }> {
  const url = new URL(path, server.url)
  return await new Promise((resolve, reject) => {
    const req = request(url, { method, headers }, res => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', d => { text += d })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, json: JSON.parse(text) as never }) })
    })
    req.on('error', reject)
    for (const c of chunks) req.write(c)
    req.end()
  })
}

function signedHeaders (path: string, body: Buffer, key = payer.key, o: { timestamp?: number } = {}): Record<string, string> {
  return signRequest({ ledgerId: server.ledger.ledgerId, method: 'POST', path, body, keyPair: key, ...(o.timestamp === undefined ? {} : { timestamp: o.timestamp }) })
}

const payer = party()
const payee = party()

describe('ledger server over a socket', () => {
  it('accepts a signed request with content-length or in chunks, and refuses replays, tampering, staleness and unsigned requests', async () => {
    const body = Buffer.from(JSON.stringify({ amount: '1000' }))
    const headers = signedHeaders('/v1/faucet', body)
    expect((await raw('POST', '/v1/faucet', { ...headers, 'content-length': String(body.length) }, [body])).status).toBe(200)
    const replay = await raw('POST', '/v1/faucet', { ...headers, 'content-length': String(body.length) }, [body])
    expect({ status: replay.status, code: replay.json.error?.code }).toEqual({ status: 409, code: 'LEDGER_REPLAY' })

    const open = Buffer.from(JSON.stringify({ payee: payee.hex, deposit: '600', expiresAt: Date.now() + HOUR, nonce: nonce32() }))
    const opened = await raw('POST', '/v1/channels', signedHeaders('/v1/channels', open), [open.subarray(0, 10), open.subarray(10, 50), open.subarray(50)])
    expect(opened.status).toBe(201)
    const id = opened.json.id as string

    const claimBody = Buffer.from(JSON.stringify({ voucher: voucherToJson(voucher(server.ledger.ledgerId, id, 250n, payer.key)) }))
    const claimPath = `/v1/channels/${id}/claim`
    const tampered = Buffer.from(claimBody.toString().replace('"250"', '"260"'))
    const cases: Array<[Record<string, string>, Buffer, number, string]> = [
      [signedHeaders(claimPath, claimBody, payee.key), tampered, 401, 'LEDGER_UNAUTHENTICATED'],
      [{}, claimBody, 401, 'LEDGER_UNAUTHENTICATED'],
      [signedHeaders(claimPath, claimBody, payee.key, { timestamp: Date.now() - 121_000 }), claimBody, 401, 'LEDGER_STALE_TIMESTAMP'],
      [signedHeaders(`/v1/channels/${id}/topup`, claimBody, payee.key), claimBody, 401, 'LEDGER_UNAUTHENTICATED']
    ]
    for (const [h, b, status, code] of cases) {
      const r = await raw('POST', claimPath, { ...h, 'content-length': String(b.length) }, [b])
      expect({ status: r.status, code: r.json.error?.code }).toEqual({ status, code })
    }
    const claimed = await raw('POST', claimPath, signedHeaders(claimPath, claimBody, payee.key), [claimBody])
    expect(claimed).toMatchObject({ status: 200, json: { paid: '250' } })
    expect(server.ledger.balance(payee.hex)).toBe(250n)
    expect(server.ledger.check().ok).toBe(true)
  })

  it('refuses a body over 64 KiB, declared or streamed, with 413', async () => {
    const big = Buffer.alloc(70_000, 0x20)
    const declared = await raw('POST', '/v1/faucet', { ...signedHeaders('/v1/faucet', big), 'content-length': String(big.length) }, [big])
    expect({ status: declared.status, code: declared.json.error?.code }).toEqual({ status: 413, code: 'LEDGER_BODY_TOO_LARGE' })
    const chunks = Array.from({ length: 9 }, () => Buffer.alloc(8192, 0x20))
    const streamed = await raw('POST', '/v1/faucet', signedHeaders('/v1/faucet', Buffer.concat(chunks)), chunks)
    expect({ status: streamed.status, code: streamed.json.error?.code }).toEqual({ status: 413, code: 'LEDGER_BODY_TOO_LARGE' })
  })

  it('serves the public reads', async () => {
    const info = await raw('GET', '/v1/info', {})
    expect(info).toEqual({ status: 200, json: { ledgerId: server.ledger.ledgerId, challengeWindowMs: HOUR, dev: true, version: '0.1.0' } })
    const bal = await raw('GET', `/v1/accounts/${toHex(payer.key.publicKey)}`, {})
    expect(bal.json.account).toBe(payer.hex)
    expect((await raw('GET', '/v1/check', {})).json.ok).toBe(true)
  })
})
