import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import type { LedgerChannel } from './ledger-api.js'
import { Meter } from './meter.js'
import { fromLedger } from './state.js'
import { MemoryChannelStore, SqliteChannelStore } from './store.js'
import { fixture } from './test-support/fixtures.js'

/** Regressions for defects found in review: each of these once passed when it must not. */
function setup (opts: { deposit?: bigint, expiresInMs?: number } = {}) {
  const fx = fixture({ deposit: opts.deposit ?? 1000n, expiresInMs: opts.expiresInMs })
  const remote: LedgerChannel = { ...fx.channel }
  const clock = { t: Date.now() }
  const store = new MemoryChannelStore()
  const meter = new Meter({
    store,
    ledger: { channel: async () => ({ ...remote }) },
    payee: fx.channel.payee,
    ledgerId: fx.channel.ledgerId,
    paymentTimeoutMs: 2000,
    policy: { threshold: 10n ** 30n, safetyMarginMs: 1000 },
    now: () => clock.t
  })
  return { fx, remote, clock, store, meter }
}

describe('Meter review regressions', () => {
  it('concurrent prepares cannot both pass the exposure cap on one payment', async () => {
    const { fx, meter } = setup()
    const s = await meter.open({ peer: 'p', channelId: fx.channel.id, price: 10n })
    ;(await s.prepare(1)).apply()
    const passed: number[] = []
    const a = s.prepare(1).then(d => { passed.push(1); d.apply() })
    const b = s.prepare(1).then(d => { passed.push(2); d.apply() })
    await s.accept(fx.voucher(10n))
    await new Promise(resolve => setTimeout(resolve, 50))
    expect(passed).toHaveLength(1) // one payment releases one unit
    expect(s.owed - s.credited).toBe(10n)
    await s.accept(fx.voucher(20n))
    await Promise.all([a, b])
    expect(passed).toHaveLength(2)
    expect(s.owed).toBe(30n)
  })

  it('an open session stops delivering when the channel nears expiry', async () => {
    const { fx, clock, meter } = setup({ expiresInMs: 60_000 })
    const s = await meter.open({ peer: 'p', channelId: fx.channel.id, price: 10n })
    ;(await s.prepare(1)).apply()
    await s.accept(fx.voucher(10n))
    clock.t = fx.channel.expiresAt - 999 // inside the safety margin
    await expect(s.prepare(1)).rejects.toMatchObject({ code: 'CHANNEL_CLOSED' })
    expect(s.signal.aborted).toBe(true)
  })

  it('sees a top-up: a voucher above the old deposit is accepted after asking the ledger, and is no failure', async () => {
    const { fx, remote, meter } = setup({ deposit: 20n })
    const s = await meter.open({ peer: 'p', channelId: fx.channel.id, price: 10n })
    ;(await s.prepare(1)).apply()
    await s.accept(fx.voucher(10n))
    ;(await s.prepare(1)).apply()
    await s.accept(fx.voucher(20n))
    remote.deposit = 100n // the payer topped up on the ledger
    const d = await s.prepare(1) // would be DepositExhausted without a refresh
    d.apply()
    expect(await s.accept(fx.voucher(30n))).toEqual({ credited: 10n })
    expect(meter.isBanned('p')).toBe(false)
  })

  it('does not store a channel that does not pay this node', async () => {
    const { fx, store } = setup()
    const other = fixture()
    const m = new Meter({ store, ledger: { channel: async () => other.channel }, payee: fx.channel.payee, ledgerId: other.channel.ledgerId })
    await expect(m.open({ peer: 'p', channelId: other.channel.id, price: 1n })).rejects.toMatchObject({ code: 'CHANNEL_VOUCHER_WRONG_CHANNEL' })
    expect(store.getIncoming(other.channel.id)).toBeUndefined()
  })
})

describe('SqliteChannelStore after a failed commit', () => {
  it('rejects the failed update and every later one, writes nothing more, and closes', async () => {
    const store = new SqliteChannelStore(join(await mkdtemp(join(tmpdir(), 'btt-fail-')), 'c.db'))
    const fx = fixture()
    const good = fromLedger(fx.channel)
    await store.updateIncoming(good.id, () => ({ state: good, result: undefined }))
    // NaN binds as NULL: the NOT NULL constraint fails inside the writer's transaction
    const bad = store.updateIncoming(good.id, cur => ({ state: { ...cur!, expiresAt: Number.NaN }, result: undefined }))
    const queuedAfter = store.updateIncoming(good.id, cur => ({ state: { ...cur!, highest: 5n }, result: undefined }))
    await expect(bad).rejects.toThrow()
    await expect(queuedAfter).rejects.toThrow()
    await expect(store.updateIncoming(good.id, cur => ({ state: cur!, result: undefined }))).rejects.toMatchObject({ code: 'CHANNEL_STORE_FAILED' })
    await store.close()
    const reopened = new SqliteChannelStore(store['path'] as string)
    expect(reopened.getIncoming(good.id)).toEqual(good) // only the committed state is on disk
    await reopened.close()
  })
})
