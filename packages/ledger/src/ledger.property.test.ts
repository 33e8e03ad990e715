import { MAX_AMOUNT, channelIdOf, fromHex, generateKeyPair, toHex, type KeyPair } from '@btt/channel'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { Ledger } from './ledger.js'
import { HOUR, manualClock, snapshot, voucher } from './test-support/fixtures.js'

/**
 * Random sequences of ledger operations, valid and invalid, checked against a small reference model:
 * every operation must succeed or fail exactly as the model says (same error code), a refused
 * operation must change nothing, and after every step the conservation invariant holds:
 * sum(balances) + sum(deposit − claimed over channels not finalized) == total minted.
 * Half the runs execute the sequence through group commit (one transaction, a savepoint per op).
 */

const KEYS: KeyPair[] = Array.from({ length: 4 }, () => generateKeyPair())
const ACCOUNTS = KEYS.map(k => toHex(k.publicKey))
const NONCES = Array.from({ length: 3 }, (_, i) => String(i + 1).repeat(64))
const UNKNOWN_ID = 'ee'.repeat(32)
const WINDOW = HOUR
const TEN_YEARS = 10 * 365 * 24 * HOUR

const who = fc.nat(3)
/** Mostly the party the operation needs (-1: the payer, -2: the payee), sometimes anyone. */
const actor = fc.oneof({ arbitrary: fc.constantFrom(-1, -2), weight: 4 }, { arbitrary: fc.nat(3), weight: 1 })
const ch = fc.nat(7)
const amount = fc.oneof(
  fc.bigInt(0n, 1000n),
  fc.bigInt(0n, 1n << 90n),
  fc.bigInt(0n, 1n << 102n),
  fc.constantFrom(0n, 1n, 1n << 63n, 1n << 64n, MAX_AMOUNT)
)
const op = fc.oneof(
  { arbitrary: fc.record({ t: fc.constant('faucet' as const), who, amount }), weight: 3 },
  {
    arbitrary: fc.record({
      t: fc.constant('open' as const),
      who,
      // mostly another account; sometimes the payer itself (refused)
      to: fc.oneof({ arbitrary: fc.integer({ min: 1, max: 3 }), weight: 9 }, { arbitrary: fc.constant(0), weight: 1 }),
      deposit: amount,
      expiresIn: fc.oneof({ arbitrary: fc.integer({ min: 1, max: 2 * HOUR }), weight: 8 }, { arbitrary: fc.integer({ min: -1000, max: 0 }), weight: 1 }, { arbitrary: fc.constant(TEN_YEARS + 1), weight: 1 }),
      nonce: fc.nat(2)
    }),
    weight: 4
  },
  { arbitrary: fc.record({ t: fc.constant('topup' as const), who: actor, ch, amount }), weight: 2 },
  { arbitrary: fc.record({ t: fc.constant('extend' as const), who: actor, ch, delta: fc.integer({ min: -HOUR, max: 2 * HOUR }) }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant('claim' as const), who: actor, ch, frac: fc.nat(1100), signer: fc.nat(4), variant: fc.constantFrom('ok', 'ok', 'ok', 'wrongLedger', 'wrongChannel') }), weight: 6 },
  { arbitrary: fc.record({ t: fc.constant('refund' as const), who: actor, ch }), weight: 3 },
  { arbitrary: fc.record({ t: fc.constant('finalize' as const), who: actor, ch }), weight: 3 },
  { arbitrary: fc.record({ t: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 2 * HOUR }) }), weight: 3 }
)
type Op = typeof op extends fc.Arbitrary<infer T> ? T : never

interface MChannel { id: string, payer: string, payee: string, nonce: string, deposit: bigint, claimed: bigint, expiresAt: number, status: 'open' | 'refunding' | 'finalized', challengeEndsAt: number | null }

/** What the ledger should do: an error code, or a result (and the model moved on). */
type Expect = { code: string } | { value: unknown }

class Model {
  balances = new Map<string, bigint>(ACCOUNTS.map(a => [a, 0n]))
  channels: MChannel[] = []
  minted = 0n
  constructor (public now: number, readonly ledgerId: string) {}

  bal (a: string): bigint { return this.balances.get(a) as bigint }
  pick (i: number): MChannel | undefined { return this.channels.length === 0 ? undefined : this.channels[i % this.channels.length] }
  /** The account acting: -1 the channel's payer, -2 its payee (`role` decides for both when given), else ACCOUNTS[i]. */
  actor (i: number, c: MChannel | undefined, role?: 'payer' | 'payee'): string {
    if (i >= 0) return ACCOUNTS[i] as string
    const r = role ?? (i === -1 ? 'payer' : 'payee')
    return (r === 'payer' ? c?.payer : c?.payee) ?? ACCOUNTS[0] as string
  }
  view (c: MChannel): MChannel { return { ...c } }

  /** Turn a random op into a concrete call on `ledger` and the outcome the model expects. */
  step (o: Op, ledger: Ledger, advance: (ms: number) => void): { run: () => unknown, expect: Expect } {
    const err = (code: string): Expect => ({ code })
    switch (o.t) {
      case 'advance': {
        this.now += o.ms
        return { run: () => { advance(o.ms) }, expect: { value: undefined } }
      }
      case 'faucet': {
        const a = ACCOUNTS[o.who] as string
        const run = (): unknown => ledger.faucet(a, o.amount)
        if (o.amount <= 0n || o.amount > MAX_AMOUNT - this.minted) return { run, expect: err('CHANNEL_INVALID_AMOUNT') }
        this.minted += o.amount
        this.balances.set(a, this.bal(a) + o.amount)
        return { run, expect: { value: this.bal(a) } }
      }
      case 'open': {
        const payer = ACCOUNTS[o.who] as string
        const payee = ACCOUNTS[(o.who + o.to) % ACCOUNTS.length] as string
        const nonce = NONCES[o.nonce] as string
        const expiresAt = this.now + o.expiresIn
        const run = (): unknown => ledger.open(payer, { payee, deposit: o.deposit, expiresAt, nonce })
        if (payer === payee) return { run, expect: err('LEDGER_BAD_REQUEST') }
        if (o.deposit <= 0n) return { run, expect: err('CHANNEL_INVALID_AMOUNT') }
        if (expiresAt <= this.now || expiresAt > this.now + TEN_YEARS) return { run, expect: err('LEDGER_BAD_EXPIRY') }
        if (o.deposit > this.bal(payer)) return { run, expect: err('LEDGER_INSUFFICIENT_FUNDS') }
        const id = toHex(channelIdOf(fromHex(this.ledgerId, 32, 'l'), fromHex(payer, 32, 'p'), fromHex(payee, 32, 'p'), fromHex(nonce, 32, 'n')))
        if (this.channels.some(c => c.id === id)) return { run, expect: err('LEDGER_CHANNEL_EXISTS') }
        const c: MChannel = { id, payer, payee, nonce, deposit: o.deposit, claimed: 0n, expiresAt, status: 'open', challengeEndsAt: null }
        this.channels.push(c)
        this.balances.set(payer, this.bal(payer) - o.deposit)
        return { run, expect: { value: { ...this.view(c), ledgerId: this.ledgerId } } }
      }
      case 'topup': {
        const c = this.pick(o.ch)
        const a = this.actor(o.who, c, 'payer')
        const run = (): unknown => ledger.topup(a, { channelId: c?.id ?? UNKNOWN_ID, amount: o.amount })
        if (o.amount <= 0n) return { run, expect: err('CHANNEL_INVALID_AMOUNT') }
        const refused = this.payersOpen(c, a)
        if (refused !== undefined) return { run, expect: err(refused) }
        const ch = c as MChannel
        if (o.amount > this.bal(a)) return { run, expect: err('LEDGER_INSUFFICIENT_FUNDS') }
        ch.deposit += o.amount
        this.balances.set(a, this.bal(a) - o.amount)
        return { run, expect: { value: { ...this.view(ch), ledgerId: this.ledgerId } } }
      }
      case 'extend': {
        const c = this.pick(o.ch)
        const a = this.actor(o.who, c, 'payer')
        const expiresAt = (c?.expiresAt ?? this.now) + o.delta
        const run = (): unknown => ledger.extend(a, { channelId: c?.id ?? UNKNOWN_ID, expiresAt })
        const refused = this.payersOpen(c, a)
        if (refused !== undefined) return { run, expect: err(refused) }
        const ch = c as MChannel
        if (expiresAt <= this.now || expiresAt > this.now + TEN_YEARS || expiresAt < ch.expiresAt) return { run, expect: err('LEDGER_BAD_EXPIRY') }
        ch.expiresAt = expiresAt
        return { run, expect: { value: { ...this.view(ch), ledgerId: this.ledgerId } } }
      }
      case 'claim': {
        const c = this.pick(o.ch)
        const a = this.actor(o.who, c, 'payee')
        const id = c?.id ?? UNKNOWN_ID
        const deposit = c?.deposit ?? 1000n
        const value = deposit * BigInt(o.frac) / 1000n
        const signer = o.signer === 4 ? KEYS[ACCOUNTS.indexOf(c?.payer ?? (ACCOUNTS[0] as string))] as KeyPair : KEYS[o.signer] as KeyPair
        const v = voucher(o.variant === 'wrongLedger' ? 'dd'.repeat(32) : this.ledgerId, o.variant === 'wrongChannel' ? 'cc'.repeat(32) : id, value, signer)
        const run = (): unknown => ledger.claim(a, v, id)
        if (c === undefined) return { run, expect: err('LEDGER_UNKNOWN_CHANNEL') }
        if (c.payee !== a) return { run, expect: err('LEDGER_NOT_PAYEE') }
        if (c.status === 'finalized') return { run, expect: err('LEDGER_CHANNEL_FINALIZED') }
        if (o.variant === 'wrongLedger') return { run, expect: err('CHANNEL_VOUCHER_WRONG_LEDGER') }
        if (o.variant === 'wrongChannel') return { run, expect: err('CHANNEL_VOUCHER_WRONG_CHANNEL') }
        if (value > c.deposit) return { run, expect: err('CHANNEL_VOUCHER_OVER_DEPOSIT') }
        if (signer !== KEYS[ACCOUNTS.indexOf(c.payer)]) return { run, expect: err('CHANNEL_VOUCHER_BAD_SIGNATURE') }
        const paid = value > c.claimed ? value - c.claimed : 0n
        if (paid > 0n) {
          c.claimed = value
          this.balances.set(a, this.bal(a) + paid)
        }
        return { run, expect: { value: { channel: { ...this.view(c), ledgerId: this.ledgerId }, paid } } }
      }
      case 'refund': {
        const c = this.pick(o.ch)
        const a = this.actor(o.who, c, 'payer')
        const run = (): unknown => ledger.refund(a, { channelId: c?.id ?? UNKNOWN_ID })
        const refused = this.payersOpen(c, a)
        if (refused !== undefined) return { run, expect: err(refused) }
        const ch = c as MChannel
        if (this.now < ch.expiresAt) return { run, expect: err('LEDGER_NOT_EXPIRED') }
        ch.status = 'refunding'
        ch.challengeEndsAt = this.now + WINDOW
        return { run, expect: { value: { ...this.view(ch), ledgerId: this.ledgerId } } }
      }
      case 'finalize': {
        const c = this.pick(o.ch)
        const a = this.actor(o.who, c)
        const run = (): unknown => ledger.finalize(a, { channelId: c?.id ?? UNKNOWN_ID })
        if (c === undefined) return { run, expect: err('LEDGER_UNKNOWN_CHANNEL') }
        if (a !== c.payer && a !== c.payee) return { run, expect: err('LEDGER_NOT_PARTY') }
        if (c.status === 'finalized') return { run, expect: err('LEDGER_CHANNEL_FINALIZED') }
        if (c.status === 'open') return { run, expect: err('LEDGER_NOT_REFUNDING') }
        if (this.now < (c.challengeEndsAt as number)) return { run, expect: err('LEDGER_CHALLENGE_OPEN') }
        const refunded = c.deposit - c.claimed
        c.status = 'finalized'
        this.balances.set(c.payer, this.bal(c.payer) + refunded)
        return { run, expect: { value: { channel: { ...this.view(c), ledgerId: this.ledgerId }, refunded } } }
      }
    }
  }

  private payersOpen (c: MChannel | undefined, a: string): string | undefined {
    if (c === undefined) return 'LEDGER_UNKNOWN_CHANNEL'
    if (c.payer !== a) return 'LEDGER_NOT_PAYER'
    if (c.status === 'finalized') return 'LEDGER_CHANNEL_FINALIZED'
    if (c.status === 'refunding') return 'LEDGER_ALREADY_REFUNDING'
    return undefined
  }

  /** The ledger must hold exactly the model's balances and channels, and the invariant. */
  verify (ledger: Ledger): void {
    for (const a of ACCOUNTS) expect(ledger.balance(a)).toBe(this.bal(a))
    for (const c of this.channels) expect(ledger.channel(c.id)).toEqual({ ...c, ledgerId: this.ledgerId })
    const check = ledger.check()
    expect(check.ok).toBe(true)
    expect(check.totalMinted).toBe(this.minted)
  }
}

function outcome (run: () => unknown): Expect {
  try {
    return { value: run() }
  } catch (e) {
    return { code: (e as { code?: string }).code ?? String(e) }
  }
}

describe('ledger operations against a reference model', () => {
  it('keep the conservation invariant and refuse invalid operations without changing state, over 1,000 random sequences', async () => {
    await fc.assert(fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 40, size: 'max' }), fc.boolean(), async (randomOps, batched) => {
      // every account starts with funds, so that most opens and top-ups can succeed
      // every account starts with funds and two channels are open, so that most operations can succeed
      const ops: Op[] = [
        ...ACCOUNTS.map((_, i) => ({ t: 'faucet' as const, who: i, amount: 10n ** 30n })),
        { t: 'open', who: 0, to: 1, deposit: 10n ** 24n, expiresIn: HOUR / 2, nonce: 0 },
        { t: 'open', who: 2, to: 1, deposit: 1000n, expiresIn: HOUR, nonce: 0 },
        ...randomOps
      ]
      const clock = manualClock()
      const ledger = new Ledger({ path: ':memory:', dev: true, now: clock.now, challengeWindowMs: WINDOW })
      try {
        const model = new Model(clock.now(), ledger.ledgerId)
        if (!batched) {
          for (const o of ops) {
            const before = snapshot(ledger, ACCOUNTS)
            const { run, expect: want } = model.step(o, ledger, clock.advance)
            const got = outcome(run)
            expect(got).toEqual(want)
            if ('code' in want) expect(snapshot(ledger, ACCOUNTS)).toBe(before)
            model.verify(ledger)
          }
        } else {
          // one group-commit batch: each op in its own savepoint, in order
          const steps = ops.map(o => model.step(o, ledger, clock.advance))
          const settled = await Promise.allSettled(steps.map(async s => await ledger.enqueue(s.run)))
          settled.forEach((r, i) => {
            const got: Expect = r.status === 'fulfilled' ? { value: r.value } : { code: (r.reason as { code?: string }).code ?? String(r.reason) }
            expect(got).toEqual(steps[i]?.expect)
          })
          model.verify(ledger)
        }
      } finally {
        ledger.close()
      }
    }), { numRuns: 1000 })
  }, 60_000)
})
