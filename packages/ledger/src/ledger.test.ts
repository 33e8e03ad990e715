import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { MAX_AMOUNT, generateKeyPair } from '@btt/channel'
import { describe, expect, it } from 'vitest'
import { Ledger } from './ledger.js'
import { HOUR, manualClock, nonce32, party, setup, snapshot, voucher } from './test-support/fixtures.js'

describe('time locks', () => {
  it('pays a claim before expiry and refuses a refund before expiry', () => {
    const { ledger, payer, payee, channel, v, clock } = setup({ deposit: 1000n })
    clock.advance(HOUR - 1)
    expect(ledger.claim(payee.hex, v(100n)).paid).toBe(100n)
    expect(() => ledger.refund(payer.hex, { channelId: channel.id })).toThrow(expect.objectContaining({ code: 'LEDGER_NOT_EXPIRED' }))
    expect(ledger.channel(channel.id).status).toBe('open')
    clock.advance(1)
    expect(ledger.refund(payer.hex, { channelId: channel.id }).status).toBe('refunding')
  })

  it('keeps claims open after expiry until a refund, and during the challenge window a later voucher wins', () => {
    const { ledger, payer, payee, channel, v, clock } = setup({ deposit: 1000n })
    clock.advance(HOUR + 10)
    expect(ledger.claim(payee.hex, v(100n)).paid).toBe(100n) // open but expired: still claimable
    const refunding = ledger.refund(payer.hex, { channelId: channel.id })
    expect(refunding.challengeEndsAt).toBe(clock.now() + HOUR)
    clock.advance(HOUR - 1) // last millisecond of the window
    const r = ledger.claim(payee.hex, v(700n))
    expect(r.paid).toBe(600n)
    expect(r.channel).toMatchObject({ status: 'refunding', claimed: 700n })
    expect(ledger.balance(payee.hex)).toBe(700n)
  })

  it('refuses finalize before the window ends, then returns exactly deposit − claimed and closes claims', () => {
    const deposit = 10n ** 20n + 7n // more than int64 can hold: amounts are 16-byte blobs
    const { ledger, payer, payee, channel, v, clock } = setup({ funds: 10n ** 21n, deposit })
    const before = ledger.balance(payer.hex)
    ledger.claim(payee.hex, v(3n * 10n ** 18n + 1n))
    clock.advance(HOUR)
    ledger.refund(payer.hex, { channelId: channel.id })
    clock.advance(HOUR - 1)
    expect(() => ledger.finalize(payer.hex, { channelId: channel.id })).toThrow(expect.objectContaining({ code: 'LEDGER_CHALLENGE_OPEN' }))
    expect(() => ledger.finalize(payee.hex, { channelId: channel.id })).toThrow(expect.objectContaining({ code: 'LEDGER_CHALLENGE_OPEN' }))
    clock.advance(1)
    const outsider = party()
    expect(() => ledger.finalize(outsider.hex, { channelId: channel.id })).toThrow(expect.objectContaining({ code: 'LEDGER_NOT_PARTY' }))
    const f = ledger.finalize(payee.hex, { channelId: channel.id })
    expect(f.refunded).toBe(deposit - (3n * 10n ** 18n + 1n))
    expect(ledger.balance(payer.hex)).toBe(before + deposit - (3n * 10n ** 18n + 1n))
    expect(f.channel.status).toBe('finalized')
    const frozen = snapshot(ledger, [payer.hex, payee.hex])
    expect(() => ledger.claim(payee.hex, v(deposit))).toThrow(expect.objectContaining({ code: 'LEDGER_CHANNEL_FINALIZED' }))
    expect(() => ledger.topup(payer.hex, { channelId: channel.id, amount: 1n })).toThrow(expect.objectContaining({ code: 'LEDGER_CHANNEL_FINALIZED' }))
    expect(() => ledger.extend(payer.hex, { channelId: channel.id, expiresAt: clock.now() + HOUR })).toThrow(expect.objectContaining({ code: 'LEDGER_CHANNEL_FINALIZED' }))
    expect(() => ledger.refund(payer.hex, { channelId: channel.id })).toThrow(expect.objectContaining({ code: 'LEDGER_CHANNEL_FINALIZED' }))
    expect(() => ledger.finalize(payer.hex, { channelId: channel.id })).toThrow(expect.objectContaining({ code: 'LEDGER_CHANNEL_FINALIZED' }))
    expect(snapshot(ledger, [payer.hex, payee.hex])).toBe(frozen)
    expect(ledger.check().ok).toBe(true)
  })

  it('refuses a second refund, and top-up and extend while refunding; only the payer may refund', () => {
    const { ledger, payer, payee, channel, clock } = setup()
    clock.advance(HOUR)
    expect(() => ledger.refund(payee.hex, { channelId: channel.id })).toThrow(expect.objectContaining({ code: 'LEDGER_NOT_PAYER' }))
    const first = ledger.refund(payer.hex, { channelId: channel.id })
    clock.advance(1000)
    expect(() => ledger.refund(payer.hex, { channelId: channel.id })).toThrow(expect.objectContaining({ code: 'LEDGER_ALREADY_REFUNDING' }))
    expect(ledger.channel(channel.id).challengeEndsAt).toBe(first.challengeEndsAt) // the window was not restarted
    expect(() => ledger.topup(payer.hex, { channelId: channel.id, amount: 1n })).toThrow(expect.objectContaining({ code: 'LEDGER_ALREADY_REFUNDING' }))
    expect(() => ledger.extend(payer.hex, { channelId: channel.id, expiresAt: clock.now() + HOUR })).toThrow(expect.objectContaining({ code: 'LEDGER_ALREADY_REFUNDING' }))
  })

  it('refuses finalize of an open channel', () => {
    const { ledger, payer, channel, clock } = setup()
    clock.advance(2 * HOUR)
    expect(() => ledger.finalize(payer.hex, { channelId: channel.id })).toThrow(expect.objectContaining({ code: 'LEDGER_NOT_REFUNDING' }))
  })

  it('uses the configured challenge window', () => {
    const { ledger, payer, channel, clock } = setup({ init: { challengeWindowMs: 5000 } })
    clock.advance(HOUR)
    expect(ledger.refund(payer.hex, { channelId: channel.id }).challengeEndsAt).toBe(clock.now() + 5000)
    expect(ledger.info().challengeWindowMs).toBe(5000)
    clock.advance(5000)
    expect(ledger.finalize(payer.hex, { channelId: channel.id }).refunded).toBe(10n ** 20n)
  })

  it('extends only later, only by the payer, only into the future', () => {
    const { ledger, payer, payee, channel, clock } = setup()
    expect(() => ledger.extend(payer.hex, { channelId: channel.id, expiresAt: channel.expiresAt - 1 })).toThrow(expect.objectContaining({ code: 'LEDGER_BAD_EXPIRY' }))
    expect(() => ledger.extend(payee.hex, { channelId: channel.id, expiresAt: channel.expiresAt + 1 })).toThrow(expect.objectContaining({ code: 'LEDGER_NOT_PAYER' }))
    expect(ledger.extend(payer.hex, { channelId: channel.id, expiresAt: channel.expiresAt + HOUR }).expiresAt).toBe(channel.expiresAt + HOUR)
    clock.advance(3 * HOUR)
    // expired and still open: extending to a time already past is refused, to a future time works
    expect(() => ledger.extend(payer.hex, { channelId: channel.id, expiresAt: clock.now() - 1 })).toThrow(expect.objectContaining({ code: 'LEDGER_BAD_EXPIRY' }))
    expect(ledger.extend(payer.hex, { channelId: channel.id, expiresAt: clock.now() + 1 }).status).toBe('open')
    expect(() => ledger.refund(payer.hex, { channelId: channel.id })).toThrow(expect.objectContaining({ code: 'LEDGER_NOT_EXPIRED' }))
  })
})

describe('claims', () => {
  it('is idempotent: the same voucher twice pays nothing more; a lower one after a higher pays 0', () => {
    const { ledger, payee, channel, v } = setup({ deposit: 1000n })
    const high = v(500n)
    expect(ledger.claim(payee.hex, high).paid).toBe(500n)
    expect(ledger.claim(payee.hex, high).paid).toBe(0n)
    expect(ledger.claim(payee.hex, v(499n)).paid).toBe(0n)
    expect(ledger.claim(payee.hex, v(0n)).paid).toBe(0n)
    expect(ledger.balance(payee.hex)).toBe(500n)
    expect(ledger.channel(channel.id).claimed).toBe(500n)
    expect(ledger.claim(payee.hex, v(1000n)).paid).toBe(500n)
    expect(ledger.balance(payee.hex)).toBe(1000n)
  })

  it('refuses bad vouchers and wrong callers, leaving balances and the channel byte-identical', () => {
    const { ledger, payer, payee, channel, v } = setup({ deposit: 1000n })
    ledger.claim(payee.hex, v(100n))
    const other = ledger.open(payer.hex, { payee: payee.hex, deposit: 10n, expiresAt: ledger.now() + HOUR, nonce: nonce32() })
    const stranger = party()
    const accounts = [payer.hex, payee.hex, stranger.hex]
    const before = snapshot(ledger, accounts)
    const otherLedger = new Ledger({ path: ':memory:' }).ledgerId
    const cases: Array<[string, () => unknown, string]> = [
      ['wrong ledger id', () => ledger.claim(payee.hex, v(200n, payer.key, channel.id, otherLedger)), 'CHANNEL_VOUCHER_WRONG_LEDGER'],
      ['voucher of another channel, presented for this one', () => ledger.claim(payee.hex, v(5n, payer.key, other.id), channel.id), 'CHANNEL_VOUCHER_WRONG_CHANNEL'],
      ['unknown channel', () => ledger.claim(payee.hex, v(5n, payer.key, nonce32())), 'LEDGER_UNKNOWN_CHANNEL'],
      ['signed by another key', () => ledger.claim(payee.hex, v(200n, generateKeyPair())), 'CHANNEL_VOUCHER_BAD_SIGNATURE'],
      ['signed by the payee', () => ledger.claim(payee.hex, v(200n, payee.key)), 'CHANNEL_VOUCHER_BAD_SIGNATURE'],
      ['amount changed after signing', () => ledger.claim(payee.hex, { ...v(200n), amount: 201n }), 'CHANNEL_VOUCHER_BAD_SIGNATURE'],
      ['amount above the deposit', () => ledger.claim(payee.hex, v(1001n)), 'CHANNEL_VOUCHER_OVER_DEPOSIT'],
      ['claimed by the payer', () => ledger.claim(payer.hex, v(200n)), 'LEDGER_NOT_PAYEE'],
      ['claimed by a stranger', () => ledger.claim(stranger.hex, v(200n)), 'LEDGER_NOT_PAYEE'],
      ['truncated signature', () => ledger.claim(payee.hex, { ...v(200n), signature: new Uint8Array(63) }), 'CHANNEL_VOUCHER_MALFORMED'],
      ['amount past 2^128', () => ledger.claim(payee.hex, { ...v(200n), amount: MAX_AMOUNT + 1n }), 'CHANNEL_VOUCHER_MALFORMED']
    ]
    for (const [what, run, code] of cases) {
      expect(run, what).toThrow(expect.objectContaining({ code }))
      expect(snapshot(ledger, accounts), what).toBe(before)
    }
  })
})

describe('open, top-up, faucet', () => {
  it('opens a channel with the id BLAKE2b(ledgerId ‖ payer ‖ payee ‖ nonce), refusing duplicates and bad requests', () => {
    const { ledger, payer, payee } = setup({ funds: 1000n, deposit: 100n })
    const nonce = nonce32()
    const now = ledger.now()
    const c = ledger.open(payer.hex, { payee: payee.hex, deposit: 50n, expiresAt: now + 1, nonce })
    expect(c).toMatchObject({ payer: payer.hex, payee: payee.hex, nonce, deposit: 50n, claimed: 0n, status: 'open', challengeEndsAt: null, ledgerId: ledger.ledgerId })
    expect(ledger.balance(payer.hex)).toBe(850n)
    const before = snapshot(ledger, [payer.hex, payee.hex])
    const bad: Array<[unknown, string]> = [
      [{ payee: payee.hex, deposit: 1n, expiresAt: now + 1, nonce }, 'LEDGER_CHANNEL_EXISTS'],
      [{ payee: payee.hex, deposit: 851n, expiresAt: now + 1, nonce: nonce32() }, 'LEDGER_INSUFFICIENT_FUNDS'],
      [{ payee: payee.hex, deposit: 0n, expiresAt: now + 1, nonce: nonce32() }, 'CHANNEL_INVALID_AMOUNT'],
      [{ payee: payee.hex, deposit: -1n, expiresAt: now + 1, nonce: nonce32() }, 'CHANNEL_INVALID_AMOUNT'],
      [{ payee: payee.hex, deposit: 1n, expiresAt: now, nonce: nonce32() }, 'LEDGER_BAD_EXPIRY'],
      [{ payee: payee.hex, deposit: 1n, expiresAt: now + 0.5, nonce: nonce32() }, 'LEDGER_BAD_EXPIRY'],
      [{ payee: payee.hex, deposit: 1n, expiresAt: now + 11 * 365 * 24 * HOUR, nonce: nonce32() }, 'LEDGER_BAD_EXPIRY'],
      [{ payee: payer.hex, deposit: 1n, expiresAt: now + 1, nonce: nonce32() }, 'LEDGER_BAD_REQUEST'],
      [{ payee: payee.hex.toUpperCase(), deposit: 1n, expiresAt: now + 1, nonce: nonce32() }, 'LEDGER_BAD_REQUEST'],
      [{ payee: payee.hex.slice(2), deposit: 1n, expiresAt: now + 1, nonce: nonce32() }, 'LEDGER_BAD_REQUEST'],
      [{ payee: payee.hex, deposit: 1n, expiresAt: now + 1, nonce: 'ab' }, 'LEDGER_BAD_REQUEST']
    ]
    for (const [req, code] of bad) {
      expect(() => ledger.open(payer.hex, req as never), JSON.stringify(req, (_k, v: unknown) => typeof v === 'bigint' ? `${v}n` : v)).toThrow(expect.objectContaining({ code }))
      expect(snapshot(ledger, [payer.hex, payee.hex])).toBe(before)
    }
  })

  it('tops up from the balance, only by the payer, never past the balance', () => {
    const { ledger, payer, payee, channel } = setup({ funds: 1000n, deposit: 100n })
    expect(ledger.topup(payer.hex, { channelId: channel.id, amount: 900n }).deposit).toBe(1000n)
    expect(ledger.balance(payer.hex)).toBe(0n)
    expect(() => ledger.topup(payer.hex, { channelId: channel.id, amount: 1n })).toThrow(expect.objectContaining({ code: 'LEDGER_INSUFFICIENT_FUNDS' }))
    ledger.faucet(payee.hex, 10n)
    expect(() => ledger.topup(payee.hex, { channelId: channel.id, amount: 1n })).toThrow(expect.objectContaining({ code: 'LEDGER_NOT_PAYER' }))
    expect(() => ledger.topup(payer.hex, { channelId: nonce32(), amount: 1n })).toThrow(expect.objectContaining({ code: 'LEDGER_UNKNOWN_CHANNEL' }))
    expect(ledger.check()).toEqual({ ok: true, totalMinted: 1010n, balances: 10n, locked: 1000n })
  })

  it('mints only on a dev ledger, never past 2^128 − 1 in total', () => {
    const prod = new Ledger({ path: ':memory:' })
    const a = party()
    expect(() => prod.faucet(a.hex, 1n)).toThrow(expect.objectContaining({ code: 'LEDGER_FAUCET_DISABLED' }))
    expect(prod.info()).toMatchObject({ dev: false, challengeWindowMs: HOUR })
    expect(prod.check()).toEqual({ ok: true, totalMinted: 0n, balances: 0n, locked: 0n })
    const dev = new Ledger({ path: ':memory:', dev: true })
    expect(dev.faucet(a.hex, MAX_AMOUNT - 1n)).toBe(MAX_AMOUNT - 1n)
    expect(() => dev.faucet(a.hex, 2n)).toThrow(expect.objectContaining({ code: 'CHANNEL_INVALID_AMOUNT' }))
    expect(dev.faucet(party().hex, 1n)).toBe(1n)
    expect(dev.check()).toMatchObject({ ok: true, totalMinted: MAX_AMOUNT })
  })

  it('lists an account\'s channels as payer and as payee', () => {
    const { ledger, payer, payee, channel } = setup()
    ledger.faucet(payee.hex, 5n)
    const back = ledger.open(payee.hex, { payee: payer.hex, deposit: 5n, expiresAt: ledger.now() + 1, nonce: nonce32() })
    expect(ledger.channels(payer.hex).map(c => c.id).sort()).toEqual([channel.id, back.id].sort())
    expect(ledger.channels(party().hex)).toEqual([])
    expect(() => ledger.channel(nonce32())).toThrow(expect.objectContaining({ code: 'LEDGER_UNKNOWN_CHANNEL' }))
  })
})

describe('check', () => {
  it('detects a broken invariant written behind the ledger\'s back', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'btt-ledger-'))
    const path = join(dir, 'ledger.db')
    const ledger = new Ledger({ path, dev: true })
    const a = party()
    ledger.faucet(a.hex, 100n)
    expect(ledger.check().ok).toBe(true)
    const raw = new DatabaseSync(path)
    raw.prepare('UPDATE accounts SET balance = ? WHERE pubkey = ?').run(Buffer.concat([Buffer.alloc(15), Buffer.from([101])]), a.hex)
    raw.close()
    expect(ledger.check()).toEqual({ ok: false, totalMinted: 100n, balances: 101n, locked: 0n })
    ledger.close()
  })
})

describe('group commit', () => {
  it('runs queued operations in one transaction, a failing one rolling back only itself, and keeps a guard when its op fails', async () => {
    const { ledger, payer, payee, channel, v } = setup({ deposit: 1000n })
    const results = await Promise.allSettled([
      ledger.enqueue(() => ledger.claim(payee.hex, v(10n))),
      ledger.enqueue(() => ledger.claim(payee.hex, v(20n, payee.key))), // bad signature
      ledger.enqueue(() => ledger.topup(payer.hex, { channelId: channel.id, amount: 5n })),
      ledger.enqueue(() => { ledger.faucet(payee.hex, 1n); throw new Error('after a write') }), // its write is rolled back
      ledger.enqueue(() => ledger.claim(payee.hex, v(30n)), () => { ledger.useRequestNonce(payee.hex, 'aa'.repeat(16), ledger.now()) }),
      ledger.enqueue(() => ledger.claim(payee.hex, v(40n)), () => { ledger.useRequestNonce(payee.hex, 'aa'.repeat(16), ledger.now()) }), // replay: op skipped
      ledger.enqueue(() => ledger.claim(payee.hex, v(5000n)), () => { ledger.useRequestNonce(payee.hex, 'bb'.repeat(16), ledger.now()) }) // refused, nonce kept
    ])
    expect(results.map(r => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'rejected', 'fulfilled', 'rejected', 'rejected'])
    expect((results[1] as PromiseRejectedResult).reason).toMatchObject({ code: 'CHANNEL_VOUCHER_BAD_SIGNATURE' })
    expect((results[5] as PromiseRejectedResult).reason).toMatchObject({ code: 'LEDGER_REPLAY' })
    expect((results[6] as PromiseRejectedResult).reason).toMatchObject({ code: 'CHANNEL_VOUCHER_OVER_DEPOSIT' })
    expect(ledger.balance(payee.hex)).toBe(30n)
    expect(ledger.channel(channel.id)).toMatchObject({ claimed: 30n, deposit: 1005n })
    expect(() => { ledger.useRequestNonce(payee.hex, 'bb'.repeat(16), ledger.now()) }).toThrow(expect.objectContaining({ code: 'LEDGER_REPLAY' }))
    expect(ledger.check().ok).toBe(true)
  })

  it('forgets request nonces only after the retention time', () => {
    const { ledger, payee, clock } = setup()
    const nonce = 'cc'.repeat(16)
    ledger.useRequestNonce(payee.hex, nonce, clock.now())
    clock.advance(4 * 60_000) // = retention: still kept
    expect(() => { ledger.useRequestNonce(payee.hex, nonce, clock.now()) }).toThrow(expect.objectContaining({ code: 'LEDGER_REPLAY' }))
    clock.advance(60_000)
    ledger.useRequestNonce(payee.hex, 'dd'.repeat(16), clock.now()) // prunes
    expect(() => { ledger.useRequestNonce(payee.hex, nonce, clock.now()) }).not.toThrow()
  })

  it('prunes old nonces a bounded batch at a time until the backlog is gone', async () => {
    const path = join(await mkdtemp(join(tmpdir(), 'btt-ledger-')), 'ledger.db')
    const clock = manualClock()
    const ledger = new Ledger({ path, now: clock.now })
    const a = party()
    for (let i = 0; i < 1300; i++) ledger.useRequestNonce(a.hex, i.toString(16).padStart(32, '0'), clock.now())
    const count = (): number => {
      const raw = new DatabaseSync(path)
      try { return Number((raw.prepare('SELECT count(*) AS n FROM request_nonces').get() as { n: number }).n) } finally { raw.close() }
    }
    expect(count()).toBe(1300)
    clock.advance(4 * 60_000 + 1)
    ledger.useRequestNonce(a.hex, 'f1'.repeat(16), clock.now())
    expect(count()).toBe(1300 - 512 + 1)
    ledger.useRequestNonce(a.hex, 'f2'.repeat(16), clock.now()) // still behind: prunes again at once
    expect(count()).toBe(1300 - 1024 + 2)
    ledger.useRequestNonce(a.hex, 'f3'.repeat(16), clock.now())
    expect(count()).toBe(3)
    ledger.close()
  })

  it('reports LEDGER_BUSY when another process holds the write lock past the busy timeout', async () => {
    const path = join(await mkdtemp(join(tmpdir(), 'btt-ledger-')), 'ledger.db')
    const ledger = new Ledger({ path, dev: true, busyTimeoutMs: 50 })
    const other = new DatabaseSync(path)
    other.exec('BEGIN IMMEDIATE')
    expect(() => ledger.faucet(party().hex, 1n)).toThrow(expect.objectContaining({ code: 'LEDGER_BUSY' }))
    await expect(ledger.enqueue(() => ledger.faucet(party().hex, 1n))).rejects.toMatchObject({ code: 'LEDGER_BUSY' })
    other.exec('ROLLBACK')
    other.close()
    expect(ledger.faucet(party().hex, 1n)).toBe(1n)
    ledger.close()
  })

  it('answers queued operations that were pending at close, then refuses new ones', async () => {
    const { ledger, payee, v } = setup()
    const pending = ledger.enqueue(() => ledger.claim(payee.hex, v(1n)))
    ledger.close()
    expect((await pending).paid).toBe(1n)
    await expect(ledger.enqueue(() => 1)).rejects.toMatchObject({ code: 'LEDGER_CLOSED' })
    expect(() => ledger.balance(payee.hex)).toThrow(expect.objectContaining({ code: 'LEDGER_CLOSED' }))
  })
})

describe('two Ledger instances on one database file', () => {
  it('agree on the ledger id and keep the invariant while their claims, top-ups and refunds interleave', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'btt-ledger-'))
    const path = join(dir, 'ledger.db')
    const clock = manualClock()
    const a = new Ledger({ path, dev: true, now: clock.now })
    const b = new Ledger({ path, dev: true, now: clock.now })
    expect(b.ledgerId).toBe(a.ledgerId)
    const payer = party()
    const payees = [party(), party(), party(), party()]
    a.faucet(payer.hex, 10n ** 24n)
    const channels = payees.map((p, i) => (i % 2 === 0 ? a : b).open(payer.hex, { payee: p.hex, deposit: 10n ** 22n, expiresAt: clock.now() + HOUR, nonce: nonce32() }))
    const expected = payees.map(() => 0n)
    const ops: Array<Promise<unknown>> = []
    for (let round = 1; round <= 50; round++) {
      for (let i = 0; i < payees.length; i++) {
        const amount = BigInt(round) * 10n ** 18n + BigInt(i)
        const vch = voucher(a.ledgerId, (channels[i] as { id: string }).id, amount, payer.key)
        // the same voucher through both instances, in the same batch window: paid once
        ops.push(a.enqueue(() => a.claim((payees[i] as { hex: string }).hex, vch)))
        ops.push(b.enqueue(() => b.claim((payees[i] as { hex: string }).hex, vch)))
        expected[i] = amount
      }
      const x = round % 20 === 0 ? a : b
      if (round % 10 === 0) ops.push(x.enqueue(() => x.topup(payer.hex, { channelId: (channels[0] as { id: string }).id, amount: 1n })))
      await new Promise(resolve => setImmediate(resolve))
    }
    await Promise.all(ops)
    for (let i = 0; i < payees.length; i++) {
      expect(a.balance((payees[i] as { hex: string }).hex)).toBe(expected[i])
      expect(b.channel((channels[i] as { id: string }).id).claimed).toBe(expected[i])
    }
    clock.advance(HOUR)
    b.refund(payer.hex, { channelId: (channels[1] as { id: string }).id })
    expect(() => a.refund(payer.hex, { channelId: (channels[1] as { id: string }).id })).toThrow(expect.objectContaining({ code: 'LEDGER_ALREADY_REFUNDING' }))
    expect(a.check()).toMatchObject({ ok: true, totalMinted: 10n ** 24n })
    expect(b.check()).toEqual(a.check())
    a.close()
    b.close()
  })
})

describe('open refuses payee keys that could never claim', () => {
  it.each([
    ['all-zero', '00'.repeat(32)],
    ['identity point', '01' + '00'.repeat(31)],
    ['not on the curve', '02' + '00'.repeat(31)]
  ])('%s', (_what, payee) => {
    const { ledger, payer, clock } = setup()
    const before = snapshot(ledger, [payer.hex])
    expect(() => ledger.open(payer.hex, { payee, deposit: 10n, expiresAt: clock.now() + HOUR, nonce: nonce32() }))
      .toThrow(expect.objectContaining({ code: 'LEDGER_BAD_REQUEST', message: expect.stringContaining('valid ed25519') }))
    expect(snapshot(ledger, [payer.hex])).toBe(before)
  })
})
