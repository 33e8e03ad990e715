import { fromHex, generateKeyPair, signVoucher, toHex, type KeyPair, type Voucher } from '@btt/channel'
import { Ledger, type LedgerInit } from '../ledger.js'

/** A clock the test moves by hand. */
export function manualClock (start = 1_700_000_000_000): { now: () => number, advance: (ms: number) => void } {
  let t = start
  return { now: () => t, advance: (ms: number) => { t += ms } }
}

export interface Party { key: KeyPair, hex: string }

export function party (): Party {
  const key = generateKeyPair()
  return { key, hex: toHex(key.publicKey) }
}

export function nonce32 (): string {
  return toHex(crypto.getRandomValues(new Uint8Array(32)))
}

/** A voucher for `amount` on `channelId` (hex) of `ledgerId` (hex), signed by `signer`. */
export function voucher (ledgerId: string, channelId: string, amount: bigint, signer: KeyPair): Voucher {
  return signVoucher({ ledgerId: fromHex(ledgerId, 32, 'ledgerId'), channelId: fromHex(channelId, 32, 'channelId'), amount }, signer.secretKey)
}

export const HOUR = 3600_000

/** A dev ledger in memory with a payer holding `funds`, and one open channel of `deposit` to a payee. */
export function setup (opts: { funds?: bigint, deposit?: bigint, expiresInMs?: number, init?: Partial<LedgerInit> } = {}) {
  const clock = manualClock()
  const ledger = new Ledger({ path: ':memory:', dev: true, now: clock.now, ...opts.init })
  const payer = party()
  const payee = party()
  const funds = opts.funds ?? 10n ** 21n
  ledger.faucet(payer.hex, funds)
  const channel = ledger.open(payer.hex, { payee: payee.hex, deposit: opts.deposit ?? 10n ** 20n, expiresAt: clock.now() + (opts.expiresInMs ?? HOUR), nonce: nonce32() })
  const v = (amount: bigint, signer: KeyPair = payer.key, channelId = channel.id, ledgerId = ledger.ledgerId): Voucher => voucher(ledgerId, channelId, amount, signer)
  return { clock, ledger, payer, payee, channel, v }
}

/** Everything observable about these accounts and their channels, as a string (bigints in decimal). */
export function snapshot (ledger: Ledger, accounts: string[]): string {
  const channels = new Map<string, unknown>()
  for (const a of accounts) for (const c of ledger.channels(a)) channels.set(c.id, c)
  return JSON.stringify({
    balances: accounts.map(a => ledger.balance(a)),
    channels: [...channels.values()],
    check: ledger.check()
  }, (_k, v: unknown) => typeof v === 'bigint' ? v.toString() : v)
}
