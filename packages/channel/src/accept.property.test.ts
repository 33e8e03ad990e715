import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import { describe, it } from 'vitest'
import { generateKeyPair } from './crypto.js'
import { Meter } from './meter.js'
import { fromLedger } from './state.js'
import { SqliteChannelStore } from './store.js'
import { fixture } from './test-support/fixtures.js'
import type { Voucher } from './voucher.js'

const DEPOSIT = 1000n
const forger = generateKeyPair()

type Step =
  | { kind: 'valid', amount: bigint }
  | { kind: 'replay', index: number }
  | { kind: 'forged', amount: bigint }
  | { kind: 'burst', amounts: bigint[] }

const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('valid' as const), amount: fc.bigInt(0n, DEPOSIT + 50n) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('replay' as const), index: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('forged' as const), amount: fc.bigInt(0n, DEPOSIT) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('burst' as const), amounts: fc.array(fc.bigInt(0n, DEPOSIT + 50n), { minLength: 2, maxLength: 8 }) }) }
)

describe('accepting vouchers (property)', () => {
  it('stored = highest valid cumulative amount, credited total = stored, never decreasing', async () => {
    // one database for all runs, a fresh channel in each: the real store, committing through its writer thread
    const store = new SqliteChannelStore(join(await mkdtemp(join(tmpdir(), 'btt-prop-')), 'channels.db'))
    await fc.assert(fc.asyncProperty(fc.array(step, { maxLength: 25 }), async steps => {
      {
        const fx = fixture({ deposit: DEPOSIT })
        await store.updateIncoming(fx.channel.id, () => ({ state: fromLedger(fx.channel), result: undefined }))
        const meter = new Meter({ store, ledger: { channel: async () => fx.channel }, payee: fx.channel.payee, ledgerId: fx.channel.ledgerId, banAfterFailures: 1e9 })
        const session = await meter.open({ peer: 'p', channelId: fx.channel.id, price: 1n })
        const sent: Voucher[] = []
        let expected = 0n
        let credited = 0n
        let last = 0n
        const offer = (v: Voucher, valid: boolean): Promise<void> => {
          if (valid && v.amount <= DEPOSIT && v.amount > expected) expected = v.amount
          return session.accept(v).then(r => { credited += r.credited }, () => {})
        }
        for (const s of steps) {
          if (s.kind === 'valid') {
            const v = fx.voucher(s.amount)
            sent.push(v)
            await offer(v, true)
          } else if (s.kind === 'replay') {
            if (sent.length > 0) await offer(sent[s.index % sent.length] as Voucher, true)
          } else if (s.kind === 'forged') {
            await offer(fx.voucher(s.amount, { key: forger }), false)
          } else {
            // out of order and concurrent: all in flight at once, committed in one group
            const vs = s.amounts.map(a => fx.voucher(a))
            sent.push(...vs)
            await Promise.all(vs.map(v => offer(v, true)))
          }
          const stored = store.getIncoming(fx.channel.id)?.highest ?? -1n
          if (stored < last) return false
          last = stored
          if (stored !== expected || credited !== stored || session.credited !== stored) return false
        }
        return true
      }
    }), { numRuns: 1000 })
    await store.close()
  })
})
