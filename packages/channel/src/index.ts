/**
 * @btt/channel — the payment-channel core. Amounts are bigint base units (10^18 per BTT),
 * written as decimal strings on the wire and in JSON.
 */
export { BTT_DECIMALS, BASE_UNITS_PER_BTT, MAX_AMOUNT, parseBtt, parseBaseUnits, formatBtt, checkAmount } from './amount.js'
export * from './errors.js'
export { generateKeyPair, keyPairFromSeed, sign, verify, isValidPublicKey, blake2b256, randomBytes, toHex, fromHex, PUBLIC_KEY_BYTES, SIGNATURE_BYTES, type KeyPair } from './crypto.js'
export {
  VOUCHER_BYTES,
  VOUCHER_DOMAIN,
  channelIdOf,
  decodeVoucher,
  decodeVoucherBencode,
  encodeVoucher,
  encodeVoucherBencode,
  signVoucher,
  verifyVoucher,
  voucherFromJson,
  voucherMessage,
  voucherToJson,
  amountToBytes,
  amountFromBytes,
  type Voucher,
  type VoucherJson
} from './voucher.js'
export type { LedgerChannel, LedgerChannelStatus, LedgerClient, LedgerInfo } from './ledger-api.js'
export { fromLedger, reduce, claimReason, type IncomingChannel, type ChannelEvent, type ChannelEffect, type ClaimPolicy, type ClaimReason, type Transition } from './state.js'
export { SqliteChannelStore, MemoryChannelStore, type ChannelStore, type OutgoingChannel } from './store.js'
export { Meter, MeterSession, type MeterInit, type SessionInit, type Debit } from './meter.js'
export { Payer, type PayerInit } from './payer.js'
export { Claimer, type ClaimerInit } from './claimer.js'
export * from './constants.js'
