import { describe, expect, it } from 'vitest'
import { Meter } from './meter.js'
import { fromLedger } from './state.js'
import { MemoryChannelStore } from './store.js'
import { fixture } from './test-support/fixtures.js'

async function setup (opts: { deposit?: bigint, timeoutMs?: number, banAfter?: number, banMs?: number, maxUnpaid?: number, expiresInMs?: number } = {}) {
  const fx = fixture({ deposit: opts.deposit ?? 1000n, expiresInMs: opts.expiresInMs })
  const store = new MemoryChannelStore()
  const claims: string[] = []
  const meter = new Meter({
    store,
    ledger: { channel: async () => fx.channel },
    payee: fx.channel.payee,
    ledgerId: fx.channel.ledgerId,
    paymentTimeoutMs: opts.timeoutMs ?? 200,
    banAfterFailures: opts.banAfter ?? 3,
    banMs: opts.banMs ?? 60_000,
    maxUnpaidUnits: opts.maxUnpaid,
    policy: { threshold: 100n, safetyMarginMs: 1000 },
    onClaim: (id, reason) => { claims.push(`${id}:${reason}`) }
  })
  return { fx, store, meter, claims }
}

describe('Meter sessions', () => {
  it('learns the channel from the ledger and refuses channels that do not pay this node', async () => {
    const { fx, meter, store } = await setup()
    await meter.open({ peer: 'p', channelId: fx.channel.id, price: 10n })
    expect(store.getIncoming(fx.channel.id)).toEqual(fromLedger(fx.channel))
    const other = fixture()
    const m2 = new Meter({ store: new MemoryChannelStore(), ledger: { channel: async () => other.channel }, payee: fx.channel.payee, ledgerId: other.channel.ledgerId })
    await expect(m2.open({ peer: 'p', channelId: other.channel.id, price: 1n })).rejects.toMatchObject({ code: 'CHANNEL_VOUCHER_WRONG_CHANNEL' })
    const m3 = new Meter({ store: new MemoryChannelStore(), ledger: { channel: async () => fx.channel }, payee: fx.channel.payee, ledgerId: other.channel.ledgerId })
    await expect(m3.open({ peer: 'p', channelId: fx.channel.id, price: 1n })).rejects.toMatchObject({ code: 'CHANNEL_VOUCHER_WRONG_LEDGER' })
    await expect(meter.open({ peer: 'p', channelId: fx.channel.id, price: 0n })).rejects.toMatchObject({ code: 'CHANNEL_BAD_PRICE' })
  })

  it('a per-session cap in units, and a re-price that keeps old debt in base units', async () => {
    const { fx, meter } = await setup({ timeoutMs: 5000, deposit: 100_000n })
    // price per KiB 3, cap 16 KiB: two 8-KiB blocks fit, a third waits
    const s = await meter.open({ peer: 'p', channelId: fx.channel.id, price: 3n, maxUnpaidUnits: 16 })
    ;(await s.prepare(8)).apply()
    ;(await s.prepare(8)).apply()
    let third = false
    const p3 = s.prepare(8).then(d => { third = true; return d })
    await new Promise(resolve => setTimeout(resolve, 30))
    expect(third).toBe(false)
    await s.accept(fx.voucher(48n))
    ;(await p3).apply()
    expect(s.owed).toBe(72n)
    // the price rises: 24 base units are owed at the old price; the cap is now 16 × 5 = 80
    s.reprice(5n)
    expect(s.price).toBe(5n)
    ;(await s.prepare(8)).apply() // exposure 24 + 40 = 64 ≤ 80
    let next = false
    const p5 = s.prepare(8).then(d => { next = true; return d }) // 64 + 40 > 80: waits
    await new Promise(resolve => setTimeout(resolve, 30))
    expect(next).toBe(false)
    await s.accept(fx.voucher(48n + 24n + 40n))
    ;(await p5).apply()
    expect(s.owed).toBe(72n + 40n + 40n)
    expect(s.credited).toBe(112n)
    expect(() => { s.reprice(0n) }).toThrow(/positive/)
    expect(s.unpaid).toBe(40n)
    // a later session that inherits 40 owed: 40 + 48 > 80, so its first 16-KiB block waits
    const s2 = await meter.open({ peer: 'p', channelId: fx.channel.id, price: 3n, maxUnpaidUnits: 16, owed: 40n })
    expect(s2.unpaid).toBe(40n)
    let first = false
    const p6 = s2.prepare(16).then(d => { first = true; return d })
    await new Promise(resolve => setTimeout(resolve, 30))
    expect(first).toBe(false)
    await s2.accept(fx.voucher(152n)) // pays the inherited 40
    ;(await p6).apply()
    expect(s2.unpaid).toBe(48n)
    await expect(meter.open({ peer: 'p', channelId: fx.channel.id, price: 1n, maxUnpaidUnits: 0 })).rejects.toThrow(RangeError)
  })

  it('refuses a channel about to expire', async () => {
    const { fx, meter } = await setup({ expiresInMs: 500 })
    await expect(meter.open({ peer: 'p', channelId: fx.channel.id, price: 1n })).rejects.toMatchObject({ code: 'CHANNEL_CLOSED' })
  })

  it('allows one unpaid unit, then waits for payment before the next', async () => {
    const { fx, meter } = await setup({ timeoutMs: 5000 })
    const s = await meter.open({ peer: 'p', channelId: fx.channel.id, price: 10n })
    const d1 = await s.prepare(1)
    d1.apply()
    let second = false
    const p2 = s.prepare(1).then(d => { second = true; return d })
    await new Promise(resolve => setTimeout(resolve, 50))
    expect(second).toBe(false) // unit 1 is unpaid: the exposure cap holds unit 2 back
    await s.accept(fx.voucher(10n))
    const d2 = await p2
    expect(second).toBe(true)
    d2.apply()
    expect(s.owed).toBe(20n)
    expect(s.credited).toBe(10n)
  })

  it('cleanup without apply releases the reservation', async () => {
    const { fx, meter } = await setup()
    const s = await meter.open({ peer: 'p', channelId: fx.channel.id, price: 10n })
    const d = await s.prepare(1)
    d.cleanup()
    d.apply() // after cleanup, apply is a no-op
    expect(s.owed).toBe(0n)
    const again = await s.prepare(1)
    again.apply()
    expect(s.owed).toBe(10n)
  })

  it('a larger cap allows more units in flight, prepaid credit carries over', async () => {
    const { fx, meter } = await setup({ maxUnpaid: 3 })
    const s = await meter.open({ peer: 'p', channelId: fx.channel.id, price: 10n })
    for (let i = 0; i < 3; i++) (await s.prepare(1)).apply()
    await s.accept(fx.voucher(100n)) // pays 3 units and 7 in advance
    for (let i = 0; i < 10; i++) (await s.prepare(1)).apply()
    expect(s.owed).toBe(130n)
  })

  it('payment timeout aborts the session and tells the service to stop', async () => {
    const { fx, meter } = await setup({ timeoutMs: 100 })
    const s = await meter.open({ peer: 'p', channelId: fx.channel.id, price: 10n })
    ;(await s.prepare(1)).apply()
    await expect(s.prepare(1)).rejects.toMatchObject({ code: 'CHANNEL_PAYMENT_TIMEOUT' })
    expect(s.signal.aborted).toBe(true)
    await expect(s.prepare(1)).rejects.toMatchObject({ code: 'CHANNEL_PAYMENT_TIMEOUT' })
    await expect(s.accept(fx.voucher(10n))).rejects.toMatchObject({ code: 'CHANNEL_PAYMENT_TIMEOUT' })
  })

  it('bans a peer after repeated failures, for the configured time', async () => {
    const { fx, meter } = await setup({ timeoutMs: 30, banAfter: 2, banMs: 300 })
    for (let i = 0; i < 2; i++) {
      const s = await meter.open({ peer: 'bad', channelId: fx.channel.id, price: 10n })
      ;(await s.prepare(1)).apply()
      await expect(s.prepare(1)).rejects.toMatchObject({ code: 'CHANNEL_PAYMENT_TIMEOUT' })
    }
    expect(meter.isBanned('bad')).toBe(true)
    await expect(meter.open({ peer: 'bad', channelId: fx.channel.id, price: 10n })).rejects.toMatchObject({ code: 'CHANNEL_PEER_BANNED' })
    expect(meter.isBanned('good')).toBe(false)
    await new Promise(resolve => setTimeout(resolve, 320))
    expect(meter.isBanned('bad')).toBe(false)
  })

  it('invalid vouchers count as failures; a good payment resets the count', async () => {
    const { fx, meter } = await setup({ banAfter: 2 })
    const s = await meter.open({ peer: 'x', channelId: fx.channel.id, price: 10n })
    await expect(s.accept(fx.voucher(5000n))).rejects.toMatchObject({ code: 'CHANNEL_VOUCHER_OVER_DEPOSIT' })
    await s.accept(fx.voucher(10n))
    await expect(s.accept(fx.voucher(10n))).rejects.toMatchObject({ code: 'CHANNEL_VOUCHER_STALE' })
    expect(meter.isBanned('x')).toBe(false)
    await expect(s.accept(fx.voucher(9n))).rejects.toMatchObject({ code: 'CHANNEL_VOUCHER_STALE' })
    expect(meter.isBanned('x')).toBe(true)
  })

  it('refuses to deliver what the deposit cannot cover', async () => {
    const { fx, meter } = await setup({ deposit: 25n })
    const s = await meter.open({ peer: 'p', channelId: fx.channel.id, price: 10n })
    ;(await s.prepare(1)).apply()
    await s.accept(fx.voucher(10n))
    ;(await s.prepare(1)).apply()
    await s.accept(fx.voucher(20n))
    await expect(s.prepare(1)).rejects.toMatchObject({ code: 'CHANNEL_DEPOSIT_EXHAUSTED' })
  })

  it('asks for a claim past the threshold', async () => {
    const { fx, meter, claims } = await setup()
    const s = await meter.open({ peer: 'p', channelId: fx.channel.id, price: 10n })
    await s.accept(fx.voucher(99n))
    expect(claims).toEqual([])
    await s.accept(fx.voucher(100n))
    expect(claims).toEqual([`${fx.channel.id}:threshold`])
  })

  it('close aborts waiting deliveries', async () => {
    const { fx, meter } = await setup({ timeoutMs: 5000 })
    const s = await meter.open({ peer: 'p', channelId: fx.channel.id, price: 10n })
    ;(await s.prepare(1)).apply()
    const waiting = s.prepare(1)
    s.close()
    await expect(waiting).rejects.toMatchObject({ code: 'CHANNEL_SESSION_CLOSED' })
  })
})
