import { describe, expect, it } from 'vitest'
import { Claimer } from './claimer.js'
import type { LedgerChannel } from './ledger-api.js'
import { Meter } from './meter.js'
import { MemoryChannelStore } from './store.js'
import { fixture } from './test-support/fixtures.js'
import { toHex } from './crypto.js'
import type { Voucher } from './voucher.js'

/** A ledger that pays claims the way @btt/ledger does, for this unit test only. */
function fakeLedger (channel: LedgerChannel) {
  const state = { ...channel }
  const claims: bigint[] = []
  return {
    state,
    claims,
    channel: async () => ({ ...state }),
    claim: async (v: Voucher) => {
      if (toHex(v.channelId) !== state.id) throw new Error('wrong channel')
      claims.push(v.amount)
      const paid = v.amount > state.claimed ? v.amount - state.claimed : 0n
      state.claimed += paid
      return { channel: { ...state }, paid }
    }
  }
}

async function setup (opts: { expiresInMs?: number } = {}) {
  const fx = fixture({ deposit: 1000n, expiresInMs: opts.expiresInMs })
  const ledger = fakeLedger(fx.channel)
  const store = new MemoryChannelStore()
  const policy = { threshold: 500n, safetyMarginMs: 60_000 }
  const claimer = new Claimer({ store, ledger, policy })
  const meter = new Meter({ store, ledger, payee: fx.channel.payee, ledgerId: fx.channel.ledgerId, policy: { threshold: 500n, safetyMarginMs: 1000 }, onClaim: id => { claimer.request(id) } })
  const session = await meter.open({ peer: 'p', channelId: fx.channel.id, price: 1n })
  return { fx, ledger, store, claimer, session }
}

describe('Claimer', () => {
  it('claims when the unclaimed value passes the threshold, and records what was paid', async () => {
    const { fx, ledger, store, session } = await setup()
    await session.accept(fx.voucher(499n))
    await new Promise(resolve => setTimeout(resolve, 10))
    expect(ledger.claims).toEqual([])
    await session.accept(fx.voucher(600n))
    await new Promise(resolve => setTimeout(resolve, 10))
    expect(ledger.claims).toEqual([600n])
    expect(store.getIncoming(fx.channel.id)?.claimed).toBe(600n)
  })

  it('claims at once when the ledger shows a refund started', async () => {
    const { fx, ledger, claimer, session, store } = await setup()
    await session.accept(fx.voucher(100n))
    await claimer.poll()
    expect(ledger.claims).toEqual([])
    ledger.state.status = 'refunding'
    ledger.state.challengeEndsAt = Date.now() + 3600_000
    await claimer.poll()
    expect(ledger.claims).toEqual([100n])
    expect(store.getIncoming(fx.channel.id)).toMatchObject({ status: 'refunding', claimed: 100n })
  })

  it('claims before expiry minus the safety margin', async () => {
    const { fx, ledger, claimer, session } = await setup({ expiresInMs: 30_000 + 2000 })
    await session.accept(fx.voucher(50n))
    await claimer.poll()
    expect(ledger.claims).toEqual([50n])
  })

  it('does not call the ledger when nothing is unclaimed, and dedupes concurrent claims', async () => {
    const { fx, ledger, claimer, session } = await setup()
    expect(await claimer.claim(fx.channel.id)).toBe(0n)
    await session.accept(fx.voucher(10n))
    const [a, b] = await Promise.all([claimer.claim(fx.channel.id), claimer.claim(fx.channel.id)])
    expect([a, b]).toEqual([10n, 10n])
    expect(ledger.claims).toEqual([10n])
    expect(await claimer.claim(fx.channel.id)).toBe(0n)
  })
})
