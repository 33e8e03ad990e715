import { generateKeyPair, randomBytes, toHex, type KeyPair } from '../crypto.js'
import type { LedgerChannel } from '../ledger-api.js'
import { signVoucher, type Voucher } from '../voucher.js'

/** A synthetic channel as a ledger would describe it (unit tests of this package only). */
export function fixture (opts: { deposit?: bigint, expiresInMs?: number, payer?: KeyPair } = {}) {
  const payer = opts.payer ?? generateKeyPair()
  const payee = generateKeyPair()
  const ledgerId = randomBytes(32)
  const channelId = randomBytes(32)
  const channel: LedgerChannel = {
    id: toHex(channelId),
    ledgerId: toHex(ledgerId),
    payer: toHex(payer.publicKey),
    payee: toHex(payee.publicKey),
    nonce: toHex(randomBytes(32)),
    deposit: opts.deposit ?? 1000n,
    claimed: 0n,
    expiresAt: Date.now() + (opts.expiresInMs ?? 7 * 24 * 3600_000),
    status: 'open',
    challengeEndsAt: null
  }
  const voucher = (amount: bigint, overrides: Partial<{ ledgerId: Uint8Array, channelId: Uint8Array, key: KeyPair }> = {}): Voucher =>
    signVoucher({ ledgerId: overrides.ledgerId ?? ledgerId, channelId: overrides.channelId ?? channelId, amount }, (overrides.key ?? payer).secretKey)
  return { payer, payee, ledgerId, channelId, channel, voucher }
}
