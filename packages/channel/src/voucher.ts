import { MAX_AMOUNT, checkAmount, parseBaseUnits } from './amount.js'
import { blake2b256, fromHex, HASH_BYTES, sign, SIGNATURE_BYTES, toHex, verify } from './crypto.js'
import { InvalidAmountError, InvalidKeyError, MalformedVoucherError } from './errors.js'

/**
 * A voucher: the payer's signed promise that the payee may claim `amount` (cumulative, base units)
 * from the channel. Layouts (docs/payments.md):
 *
 *   signed message (94 bytes)  "btt-voucher-v1" ‖ ledgerId[32] ‖ channelId[32] ‖ amount u128 BE[16]
 *   binary form   (145 bytes)  0x01 ‖ ledgerId[32] ‖ channelId[32] ‖ amount u128 BE[16] ‖ signature[64]
 *   bencode form               the binary form as one byte string: "145:" ‖ binary
 *   JSON form                  {"v":1,"ledgerId":hex,"channelId":hex,"amount":"<decimal>","signature":hex}
 */
export interface Voucher {
  ledgerId: Uint8Array
  channelId: Uint8Array
  amount: bigint
  signature: Uint8Array
}

export interface VoucherJson {
  v: 1
  ledgerId: string
  channelId: string
  amount: string
  signature: string
}

export const VOUCHER_DOMAIN = 'btt-voucher-v1'
export const VOUCHER_VERSION = 1
const DOMAIN_BYTES = Buffer.from(VOUCHER_DOMAIN, 'ascii')
const AMOUNT_BYTES = 16
export const VOUCHER_MESSAGE_BYTES = DOMAIN_BYTES.length + HASH_BYTES * 2 + AMOUNT_BYTES
export const VOUCHER_BYTES = 1 + HASH_BYTES * 2 + AMOUNT_BYTES + SIGNATURE_BYTES
const BENCODE_PREFIX = Buffer.from(`${VOUCHER_BYTES}:`, 'ascii')

/** The bytes the payer signs. */
export function voucherMessage (ledgerId: Uint8Array, channelId: Uint8Array, amount: bigint): Uint8Array {
  checkId(ledgerId, 'ledgerId')
  checkId(channelId, 'channelId')
  const out = Buffer.alloc(VOUCHER_MESSAGE_BYTES)
  DOMAIN_BYTES.copy(out, 0)
  out.set(ledgerId, DOMAIN_BYTES.length)
  out.set(channelId, DOMAIN_BYTES.length + HASH_BYTES)
  writeU128(out, DOMAIN_BYTES.length + HASH_BYTES * 2, amount)
  return out
}

export function signVoucher (fields: { ledgerId: Uint8Array, channelId: Uint8Array, amount: bigint }, secretKey: Uint8Array): Voucher {
  const signature = sign(voucherMessage(fields.ledgerId, fields.channelId, fields.amount), secretKey)
  return { ledgerId: fields.ledgerId, channelId: fields.channelId, amount: fields.amount, signature }
}

/** Whether `payer` signed this voucher (strict ed25519: see crypto.verify). */
export function verifyVoucher (voucher: Voucher, payer: Uint8Array): boolean {
  return verify(voucher.signature, voucherMessage(voucher.ledgerId, voucher.channelId, voucher.amount), payer)
}

export function encodeVoucher (v: Voucher): Uint8Array {
  if (v.signature.length !== SIGNATURE_BYTES) throw new MalformedVoucherError('signature must be 64 bytes')
  const out = Buffer.alloc(VOUCHER_BYTES)
  out[0] = VOUCHER_VERSION
  checkId(v.ledgerId, 'ledgerId')
  checkId(v.channelId, 'channelId')
  out.set(v.ledgerId, 1)
  out.set(v.channelId, 1 + HASH_BYTES)
  writeU128(out, 1 + HASH_BYTES * 2, v.amount)
  out.set(v.signature, 1 + HASH_BYTES * 2 + AMOUNT_BYTES)
  return out
}

/** Decode the binary form: exactly 145 bytes, version 1. Does not verify the signature. */
export function decodeVoucher (bytes: Uint8Array): Voucher {
  if (!(bytes instanceof Uint8Array)) throw new MalformedVoucherError('voucher must be bytes')
  if (bytes.length !== VOUCHER_BYTES) throw new MalformedVoucherError(`voucher must be ${VOUCHER_BYTES} bytes, got ${bytes.length}`)
  if (bytes[0] !== VOUCHER_VERSION) throw new MalformedVoucherError(`unknown voucher version ${bytes[0]}`)
  const b = Buffer.from(bytes) // a copy: later changes to the input cannot change the voucher
  return {
    ledgerId: b.subarray(1, 1 + HASH_BYTES),
    channelId: b.subarray(1 + HASH_BYTES, 1 + HASH_BYTES * 2),
    amount: readU128(b, 1 + HASH_BYTES * 2),
    signature: b.subarray(1 + HASH_BYTES * 2 + AMOUNT_BYTES)
  }
}

export function encodeVoucherBencode (v: Voucher): Uint8Array {
  return Buffer.concat([BENCODE_PREFIX, encodeVoucher(v)])
}

/** Decode the bencode form: exactly "145:" followed by the 145-byte binary form, nothing else. */
export function decodeVoucherBencode (bytes: Uint8Array): Voucher {
  if (bytes.length !== BENCODE_PREFIX.length + VOUCHER_BYTES || !Buffer.from(bytes.subarray(0, BENCODE_PREFIX.length)).equals(BENCODE_PREFIX)) {
    throw new MalformedVoucherError(`bencoded voucher must be the byte string "${VOUCHER_BYTES}:<voucher>"`)
  }
  return decodeVoucher(bytes.subarray(BENCODE_PREFIX.length))
}

export function voucherToJson (v: Voucher): VoucherJson {
  checkAmount(v.amount)
  return { v: 1, ledgerId: toHex(v.ledgerId), channelId: toHex(v.channelId), amount: v.amount.toString(), signature: toHex(v.signature) }
}

const JSON_KEYS = ['amount', 'channelId', 'ledgerId', 'signature', 'v']

/** Decode the JSON form strictly: exactly these keys, lower-case hex of exact lengths, a decimal amount < 2^128. */
export function voucherFromJson (json: unknown): Voucher {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new MalformedVoucherError('voucher must be a JSON object')
  const keys = Object.keys(json).sort()
  if (keys.length !== JSON_KEYS.length || keys.some((k, i) => k !== JSON_KEYS[i])) {
    throw new MalformedVoucherError(`voucher must have exactly the keys ${JSON_KEYS.join(', ')}`)
  }
  const o = json as Record<string, unknown>
  if (o.v !== 1) throw new MalformedVoucherError('voucher version must be 1')
  try {
    return {
      ledgerId: fromHex(o.ledgerId, HASH_BYTES, 'ledgerId'),
      channelId: fromHex(o.channelId, HASH_BYTES, 'channelId'),
      amount: parseBaseUnits(o.amount as string),
      signature: fromHex(o.signature, SIGNATURE_BYTES, 'signature')
    }
  } catch (err) {
    if (err instanceof InvalidKeyError || err instanceof InvalidAmountError) throw new MalformedVoucherError(err.message)
    throw err
  }
}

/** Channel id = BLAKE2b-256(ledgerId ‖ payer ‖ payee ‖ nonce). */
export function channelIdOf (ledgerId: Uint8Array, payer: Uint8Array, payee: Uint8Array, nonce: Uint8Array): Uint8Array {
  checkId(ledgerId, 'ledgerId')
  if (payer.length !== 32 || payee.length !== 32) throw new InvalidKeyError('payer and payee must be 32-byte public keys')
  if (nonce.length !== 32) throw new InvalidKeyError('nonce must be 32 bytes')
  return blake2b256(ledgerId, payer, payee, nonce)
}

function checkId (id: Uint8Array, what: string): void {
  if (!(id instanceof Uint8Array) || id.length !== HASH_BYTES) throw new MalformedVoucherError(`${what} must be 32 bytes`)
}

function writeU128 (buf: Buffer, offset: number, amount: bigint): void {
  if (typeof amount !== 'bigint' || amount < 0n || amount > MAX_AMOUNT) throw new InvalidAmountError(`amount must be 0 ≤ amount < 2^128, got ${String(amount)}`)
  buf.writeBigUInt64BE(amount >> 64n, offset)
  buf.writeBigUInt64BE(amount & 0xffff_ffff_ffff_ffffn, offset + 8)
}

function readU128 (buf: Uint8Array, offset: number): bigint {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength)
  return (b.readBigUInt64BE(offset) << 64n) | b.readBigUInt64BE(offset + 8)
}

/** Fixed-width 16-byte big-endian amount: stored in SQLite as a BLOB whose byte order is numeric order. */
export function amountToBytes (amount: bigint): Uint8Array {
  const out = Buffer.alloc(AMOUNT_BYTES)
  writeU128(out, 0, amount)
  return out
}

export function amountFromBytes (bytes: Uint8Array): bigint {
  if (bytes.length !== AMOUNT_BYTES) throw new InvalidAmountError('stored amount must be 16 bytes')
  return readU128(bytes, 0)
}
