import { generateKeyPair, toHex, voucherToJson, type KeyPair } from '@btt/channel'
import { describe, expect, it } from 'vitest'
import { signRequest } from './auth.js'
import { createLedgerApp } from './http.js'
import { Ledger } from './ledger.js'
import { HOUR, manualClock, nonce32, party, snapshot, voucher } from './test-support/fixtures.js'

function setup (opts: { dev?: boolean } = {}) {
  const clock = manualClock()
  const ledger = new Ledger({ path: ':memory:', dev: opts.dev ?? true, now: clock.now })
  const app = createLedgerApp({ ledger, onInternalError: err => { throw err } })
  const payer = party()
  const payee = party()
  if (opts.dev !== false) ledger.faucet(payer.hex, 10n ** 24n)
  const channel = opts.dev !== false ? ledger.open(payer.hex, { payee: payee.hex, deposit: 1000n, expiresAt: clock.now() + HOUR, nonce: nonce32() }) : undefined

  /** A POST signed by `key` (by default exactly as a client would), with overrides to break it. */
  function signed (path: string, body: unknown, key: KeyPair, o: { timestamp?: number, nonce?: string, signedPath?: string, signedBody?: string, ledgerId?: string, headers?: Record<string, string> } = {}) {
    const raw = typeof body === 'string' ? body : JSON.stringify(body)
    const headers = signRequest({
      ledgerId: o.ledgerId ?? ledger.ledgerId,
      method: 'POST',
      path: o.signedPath ?? path,
      body: Buffer.from(o.signedBody ?? raw),
      keyPair: key,
      timestamp: o.timestamp ?? clock.now(),
      ...(o.nonce === undefined ? {} : { nonce: o.nonce })
    })
    const all: Record<string, string> = { ...headers, 'content-type': 'application/json', ...o.headers }
    return { method: 'POST', headers: all, body: raw }
  }
  async function post (path: string, body: unknown, key: KeyPair, o: Parameters<typeof signed>[3] = {}) {
    const res = await app.request(path, signed(path, body, key, o))
    return { status: res.status, json: await res.json() as Record<string, unknown> }
  }
  return { clock, ledger, app, payer, payee, channel: channel as NonNullable<typeof channel>, signed, post }
}

const codeOf = (r: { json: Record<string, unknown> }): unknown => (r.json.error as { code?: unknown } | undefined)?.code

describe('signed mutations', () => {
  it('opens, claims, tops up, extends, refunds and finalizes through signed requests, writing amounts as decimal strings', async () => {
    const { ledger, payer, payee, post, clock } = setup()
    const nonce = nonce32()
    const opened = await post('/v1/channels', { payee: payee.hex, deposit: '123456789012345678901234', expiresAt: clock.now() + HOUR, nonce }, payer.key)
    expect(opened.status).toBe(201)
    expect(opened.json).toMatchObject({ payer: payer.hex, payee: payee.hex, nonce, deposit: '123456789012345678901234', claimed: '0', status: 'open', challengeEndsAt: null, ledgerId: ledger.ledgerId })
    const id = opened.json.id as string
    const claim = await post(`/v1/channels/${id}/claim`, { voucher: voucherToJson(voucher(ledger.ledgerId, id, 10n ** 22n, payer.key)) }, payee.key)
    expect(claim).toMatchObject({ status: 200, json: { paid: '10000000000000000000000', channel: { claimed: '10000000000000000000000' } } })
    expect((await post(`/v1/channels/${id}/topup`, { amount: '1' }, payer.key)).json).toMatchObject({ deposit: '123456789012345678901235' })
    expect((await post(`/v1/channels/${id}/extend`, { expiresAt: clock.now() + 2 * HOUR }, payer.key)).json).toMatchObject({ expiresAt: clock.now() + 2 * HOUR })
    clock.advance(2 * HOUR)
    expect((await post(`/v1/channels/${id}/refund`, {}, payer.key)).json).toMatchObject({ status: 'refunding', challengeEndsAt: clock.now() + HOUR })
    clock.advance(HOUR)
    const fin = await post(`/v1/channels/${id}/finalize`, '', payee.key) // an empty body is {}
    expect(fin).toMatchObject({ status: 200, json: { refunded: (123456789012345678901235n - 10n ** 22n).toString(), channel: { status: 'finalized' } } })
    expect(ledger.balance(payee.hex)).toBe(10n ** 22n)
    const faucet = await post('/v1/faucet', { amount: '5' }, payee.key)
    expect(faucet).toEqual({ status: 200, json: { account: payee.hex, balance: (10n ** 22n + 5n).toString() } })
    expect(ledger.check().ok).toBe(true)
  })

  it('refuses a replayed request (409) without applying it twice, even when the first was refused', async () => {
    const { ledger, app, payer, channel, signed } = setup()
    const req = signed(`/v1/channels/${channel.id}/topup`, { amount: '7' }, payer.key)
    expect((await app.request(`/v1/channels/${channel.id}/topup`, req)).status).toBe(200)
    const before = snapshot(ledger, [payer.hex])
    const again = await app.request(`/v1/channels/${channel.id}/topup`, req)
    expect(again.status).toBe(409)
    expect(await again.json()).toEqual({ error: { code: 'LEDGER_REPLAY', message: expect.any(String) } })
    expect(snapshot(ledger, [payer.hex])).toBe(before)
    // a refused request's nonce is used up too: it cannot be replayed once it would succeed
    const tooMuch = signed(`/v1/channels/${channel.id}/topup`, { amount: (10n ** 25n).toString() }, payer.key)
    expect((await app.request(`/v1/channels/${channel.id}/topup`, tooMuch)).status).toBe(409)
    ledger.faucet(payer.hex, 10n ** 25n)
    const replay = await app.request(`/v1/channels/${channel.id}/topup`, tooMuch)
    expect(((await replay.json()) as { error: { code: string } }).error.code).toBe('LEDGER_REPLAY')
    // the same nonce from another account is that account's own
    expect((await app.request('/v1/faucet', signed('/v1/faucet', { amount: '1' }, generateKeyPair(), { nonce: req.headers['x-btt-nonce'] }))).status).toBe(200)
  })

  it('refuses a timestamp more than 2 minutes from the ledger clock', async () => {
    const { payer, channel, post, clock } = setup()
    const path = `/v1/channels/${channel.id}/topup`
    for (const skew of [-120_001, 120_001, -HOUR]) {
      const r = await post(path, { amount: '1' }, payer.key, { timestamp: clock.now() + skew })
      expect(r.status, String(skew)).toBe(401)
      expect(codeOf(r)).toBe('LEDGER_STALE_TIMESTAMP')
    }
    for (const skew of [-120_000, 120_000]) expect((await post(path, { amount: '1' }, payer.key, { timestamp: clock.now() + skew })).status).toBe(200)
  })

  it('refuses a tampered body, path or ledger id, and a signature by a key other than x-btt-account', async () => {
    const { ledger, payer, payee, channel, post, app, signed } = setup()
    const path = `/v1/channels/${channel.id}/topup`
    const before = snapshot(ledger, [payer.hex, payee.hex])
    const attempts = [
      await post(path, { amount: '999' }, payer.key, { signedBody: JSON.stringify({ amount: '1' }) }),
      await post(path, { amount: '1' }, payer.key, { signedBody: JSON.stringify({ amount: '1' }) + ' ' }),
      await post(path, { amount: '1' }, payer.key, { signedPath: `/v1/channels/${channel.id}/extend` }),
      await post(path, { amount: '1' }, payer.key, { ledgerId: nonce32() }),
      await post(path, { amount: '1' }, payee.key, { headers: { 'x-btt-account': payer.hex } })
    ]
    for (const r of attempts) expect({ status: r.status, code: codeOf(r) }).toEqual({ status: 401, code: 'LEDGER_UNAUTHENTICATED' })
    // a signature with one bit flipped
    const req = signed(path, { amount: '1' }, payer.key)
    const sig = req.headers['x-btt-signature'] as string
    req.headers['x-btt-signature'] = sig.slice(0, 10) + (sig[10] === '0' ? '1' : '0') + sig.slice(11)
    expect((await app.request(path, req)).status).toBe(401)
    expect(snapshot(ledger, [payer.hex, payee.hex])).toBe(before)
  })

  it('refuses an unsigned or badly signed request on every mutating route', async () => {
    const { ledger, app, payer, payee, channel, signed } = setup()
    const routes = app.routes.filter(r => r.method === 'POST').map(r => r.path)
    // the table is what the app serves: a route added later is covered automatically
    expect(routes).toEqual(expect.arrayContaining(['/v1/channels', '/v1/channels/:id/topup', '/v1/channels/:id/extend', '/v1/channels/:id/claim', '/v1/channels/:id/refund', '/v1/channels/:id/finalize', '/v1/faucet']))
    expect(routes.length).toBe(7)
    const before = snapshot(ledger, [payer.hex, payee.hex])
    for (const route of routes) {
      const path = route.replace(':id', channel.id)
      const good = signed(path, { amount: '1' }, payer.key)
      const variants: Array<Record<string, string>> = [
        {},
        { 'content-type': 'application/json' },
        { ...good.headers, 'x-btt-signature': '' },
        { ...good.headers, 'x-btt-signature': 'ab'.repeat(64).toUpperCase() },
        { ...good.headers, 'x-btt-account': payer.hex.toUpperCase() },
        { ...good.headers, 'x-btt-nonce': 'abcd' },
        { ...good.headers, 'x-btt-timestamp': `0${good.headers['x-btt-timestamp']}` },
        { ...good.headers, 'x-btt-timestamp': '1.5e12' },
        { ...good.headers, 'x-btt-signature': toHex(new Uint8Array(64)) }
      ]
      for (const headers of variants) {
        const res = await app.request(path, { method: 'POST', headers, body: good.body })
        expect(res.status, `${route} ${JSON.stringify(headers)}`).toBe(401)
        expect(await res.json()).toEqual({ error: { code: 'LEDGER_UNAUTHENTICATED', message: expect.any(String) } })
      }
    }
    expect(snapshot(ledger, [payer.hex, payee.hex])).toBe(before)
  })

  it('refuses the faucet with 404 unless the ledger is in dev mode', async () => {
    const { post, ledger } = setup({ dev: false })
    const a = party()
    const r = await post('/v1/faucet', { amount: '1000' }, a.key)
    expect(r).toEqual({ status: 404, json: { error: { code: 'LEDGER_FAUCET_DISABLED', message: expect.any(String) } } })
    expect(ledger.check()).toEqual({ ok: true, totalMinted: 0n, balances: 0n, locked: 0n })
  })

  it('answers malformed bodies with 400 and a code, changing nothing', async () => {
    const { ledger, payer, payee, channel, post, app, signed, clock } = setup()
    const id = channel.id
    const vj = voucherToJson(voucher(ledger.ledgerId, id, 5n, payer.key))
    const open = { payee: payee.hex, deposit: '10', expiresAt: clock.now() + HOUR, nonce: nonce32() }
    const bad: Array<[string, unknown, KeyPair, string]> = [
      ['/v1/channels', 'not json', payer.key, 'LEDGER_BAD_REQUEST'],
      ['/v1/channels', '[1,2]', payer.key, 'LEDGER_BAD_REQUEST'],
      ['/v1/channels', 'null', payer.key, 'LEDGER_BAD_REQUEST'],
      ['/v1/channels', { ...open, extra: 1 }, payer.key, 'LEDGER_BAD_REQUEST'],
      ['/v1/channels', { ...open, deposit: 10 }, payer.key, 'LEDGER_BAD_REQUEST'],
      ['/v1/channels', { ...open, deposit: '-10' }, payer.key, 'LEDGER_BAD_REQUEST'],
      ['/v1/channels', { ...open, deposit: '010' }, payer.key, 'LEDGER_BAD_REQUEST'],
      ['/v1/channels', { ...open, deposit: '1e3' }, payer.key, 'LEDGER_BAD_REQUEST'],
      ['/v1/channels', { ...open, deposit: (1n << 128n).toString() }, payer.key, 'LEDGER_BAD_REQUEST'],
      ['/v1/channels', { ...open, deposit: '0' }, payer.key, 'CHANNEL_INVALID_AMOUNT'],
      ['/v1/channels', { ...open, payee: payee.hex.toUpperCase() }, payer.key, 'LEDGER_BAD_REQUEST'],
      ['/v1/channels', { ...open, nonce: open.nonce.slice(1) }, payer.key, 'LEDGER_BAD_REQUEST'],
      ['/v1/channels', { ...open, expiresAt: String(open.expiresAt) }, payer.key, 'LEDGER_BAD_REQUEST'],
      ['/v1/channels', { ...open, expiresAt: open.expiresAt + 0.5 }, payer.key, 'LEDGER_BAD_REQUEST'],
      ['/v1/channels', { ...open, expiresAt: clock.now() - 1 }, payer.key, 'LEDGER_BAD_EXPIRY'],
      ['/v1/channels', '{"payee":"' + payee.hex + '","deposit":"10","expiresAt":1,"nonce":"' + open.nonce + '","__proto__":{}}', payer.key, 'LEDGER_BAD_REQUEST'],
      ['/v1/channels', { payee: payee.hex, deposit: '10', expiresAt: open.expiresAt }, payer.key, 'LEDGER_BAD_REQUEST'],
      [`/v1/channels/${id}/topup`, { amount: '1', more: '1' }, payer.key, 'LEDGER_BAD_REQUEST'],
      [`/v1/channels/${id}/topup`, {}, payer.key, 'LEDGER_BAD_REQUEST'],
      [`/v1/channels/${id.toUpperCase()}/topup`, { amount: '1' }, payer.key, 'LEDGER_BAD_REQUEST'],
      [`/v1/channels/${id}/claim`, { voucher: { ...vj, extra: 1 } }, payee.key, 'LEDGER_BAD_REQUEST'],
      [`/v1/channels/${id}/claim`, { voucher: { ...vj, v: 2 } }, payee.key, 'LEDGER_BAD_REQUEST'],
      [`/v1/channels/${id}/claim`, { voucher: { ...vj, signature: vj.signature.slice(2) } }, payee.key, 'LEDGER_BAD_REQUEST'],
      [`/v1/channels/${id}/claim`, { voucher: vj, channelId: id }, payee.key, 'LEDGER_BAD_REQUEST'],
      [`/v1/channels/${id}/refund`, { now: true }, payer.key, 'LEDGER_BAD_REQUEST'],
      ['/v1/faucet', { amount: 5 }, payer.key, 'LEDGER_BAD_REQUEST'],
      ['/v1/faucet', { amount: '' }, payer.key, 'LEDGER_BAD_REQUEST']
    ]
    const before = snapshot(ledger, [payer.hex, payee.hex])
    for (const [path, body, key, code] of bad) {
      const r = await post(path, body, key)
      expect({ status: r.status, code: codeOf(r) }, `${path} ${JSON.stringify(body)}`).toEqual({ status: 400, code })
    }
    // invalid UTF-8
    const raw = Buffer.from([0x7b, 0xff, 0x7d])
    const headers = signRequest({ ledgerId: ledger.ledgerId, method: 'POST', path: '/v1/faucet', body: raw, keyPair: payer.key, timestamp: clock.now() })
    expect((await app.request('/v1/faucet', { method: 'POST', headers, body: raw })).status).toBe(400)
    // over 64 KiB
    const big = signed('/v1/faucet', { amount: '1', pad: 'x'.repeat(70_000) }, payer.key)
    const res = await app.request('/v1/faucet', big)
    expect(res.status).toBe(413)
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('LEDGER_BODY_TOO_LARGE')
    expect(snapshot(ledger, [payer.hex, payee.hex])).toBe(before)
  })

  it('maps refusals to statuses: 403 not the payee, 404 unknown channel, 409 insufficient funds, 400 bad voucher', async () => {
    const { ledger, payer, payee, channel, post } = setup()
    const vj = voucherToJson(voucher(ledger.ledgerId, channel.id, 5n, payer.key))
    const r1 = await post(`/v1/channels/${channel.id}/claim`, { voucher: vj }, payer.key)
    expect({ status: r1.status, code: codeOf(r1) }).toEqual({ status: 403, code: 'LEDGER_NOT_PAYEE' })
    const r2 = await post(`/v1/channels/${nonce32()}/topup`, { amount: '1' }, payer.key)
    expect({ status: r2.status, code: codeOf(r2) }).toEqual({ status: 404, code: 'LEDGER_UNKNOWN_CHANNEL' })
    const r3 = await post(`/v1/channels/${channel.id}/topup`, { amount: (10n ** 25n).toString() }, payer.key)
    expect({ status: r3.status, code: codeOf(r3) }).toEqual({ status: 409, code: 'LEDGER_INSUFFICIENT_FUNDS' })
    const other = ledger.open(payer.hex, { payee: payee.hex, deposit: 1n, expiresAt: ledger.now() + HOUR, nonce: nonce32() })
    const r4 = await post(`/v1/channels/${other.id}/claim`, { voucher: vj }, payee.key)
    expect({ status: r4.status, code: codeOf(r4) }).toEqual({ status: 400, code: 'CHANNEL_VOUCHER_WRONG_CHANNEL' })
    const r5 = await post(`/v1/channels/${channel.id}/claim`, { voucher: { ...vj, amount: '6' } }, payee.key)
    expect({ status: r5.status, code: codeOf(r5) }).toEqual({ status: 400, code: 'CHANNEL_VOUCHER_BAD_SIGNATURE' })
    const r6 = await post(`/v1/channels/${channel.id}/refund`, {}, payer.key)
    expect({ status: r6.status, code: codeOf(r6) }).toEqual({ status: 409, code: 'LEDGER_NOT_EXPIRED' })
    expect(ledger.balance(payee.hex)).toBe(0n)
  })
})

describe('public reads', () => {
  it('serves info, balances, channels, an account\'s channels and the invariant check', async () => {
    const { ledger, app, payer, payee, channel } = setup()
    const get = async (path: string) => { const r = await app.request(path); return { status: r.status, json: await r.json() as unknown } }
    expect(await get('/v1/info')).toEqual({ status: 200, json: { ledgerId: ledger.ledgerId, challengeWindowMs: HOUR, dev: true, version: '0.1.0' } })
    expect(await get(`/v1/accounts/${payer.hex}`)).toEqual({ status: 200, json: { account: payer.hex, balance: (10n ** 24n - 1000n).toString() } })
    expect(await get(`/v1/accounts/${party().hex}`)).toEqual({ status: 200, json: { account: expect.any(String), balance: '0' } })
    expect(await get(`/v1/channels/${channel.id}`)).toMatchObject({ status: 200, json: { id: channel.id, deposit: '1000', claimed: '0' } })
    expect(await get(`/v1/channels?account=${payee.hex}`)).toMatchObject({ status: 200, json: { channels: [{ id: channel.id }] } })
    expect(await get('/v1/check')).toEqual({ status: 200, json: { ok: true, totalMinted: (10n ** 24n).toString(), balances: (10n ** 24n - 1000n).toString(), locked: '1000' } })
    expect(await get(`/v1/channels/${nonce32()}`)).toMatchObject({ status: 404, json: { error: { code: 'LEDGER_UNKNOWN_CHANNEL' } } })
    expect(await get('/v1/channels/xyz')).toMatchObject({ status: 400, json: { error: { code: 'LEDGER_BAD_REQUEST' } } })
    expect(await get('/v1/channels')).toMatchObject({ status: 400, json: { error: { code: 'LEDGER_BAD_REQUEST' } } })
    expect(await get('/v1/accounts/abc')).toMatchObject({ status: 400, json: { error: { code: 'LEDGER_BAD_REQUEST' } } })
    expect(await get('/v2/nothing')).toMatchObject({ status: 404, json: { error: { code: 'LEDGER_NOT_FOUND' } } })
  })

  it('hides the detail of unexpected errors', async () => {
    const ledger = new Ledger({ path: ':memory:' })
    const seen: unknown[] = []
    const app = createLedgerApp({ ledger, onInternalError: err => { seen.push(err) } })
    ledger.check = () => { throw new Error('secret internals') }
    const res = await app.request('/v1/check')
    expect(res.status).toBe(500)
    expect(await res.json()).toEqual({ error: { code: 'LEDGER_INTERNAL', message: 'internal ledger error' } })
    expect(seen).toHaveLength(1)
  })
})
