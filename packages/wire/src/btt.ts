import { decode, encode, getBytes, getInt, isDict, type BDict, type BValue, type EncodableObject, type FieldContext } from './bencode.js'
import { WireError } from './errors.js'

/**
 * The strict codec of the BEP 10 extension `btt` (BitTorrent Speed): the extended-handshake entry
 * and the six messages of docs/protocol/btt-speed.md. Every message is one bencoded dict whose key
 * `t` names it. Amounts travel as byte strings of canonical decimal ASCII, never as bencode
 * integers, so money never passes through a JS number.
 *
 * Decoded byte fields (keys, ids, hashes, vouchers) are copies, not views into the payload, so a
 * message may outlive the connection's receive buffer.
 */

export const BTT_EXTENSION_NAME = 'btt'
export const BTT_PROTOCOL_VERSION = 1
/** Largest btt message payload accepted. The biggest valid message (bid_response) is under 300 bytes. */
export const BTT_MAX_MESSAGE_BYTES = 4096
/** The binary voucher: 0x01 ‖ ledgerId[32] ‖ channelId[32] ‖ amount[16] ‖ signature[64] (docs/payments.md, "Voucher layout"). */
export const BTT_VOUCHER_BYTES = 145
/** Largest amount: < 2^128 (39 digits). */
export const BTT_MAX_AMOUNT: bigint = 2n ** 128n - 1n

/** Ed25519 public keys, ledger ids, channel ids and SHA-256 hashes are all 32 bytes. */
const ID_BYTES = 32
/** 2^128 − 1 has 39 decimal digits. */
const MAX_AMOUNT_DIGITS = 39
/** BEP 3 piece and block indices are 32-bit; we keep them non-negative signed 32-bit. */
const MAX_INDEX = 2 ** 31 - 1
/** Ten years in seconds: a longer channel expiry is not a plausible demand. */
const MAX_MIN_EXPIRY = 315_360_000
/** One 16 KiB block is the smallest piece BEP 3 clients use; 256 MiB is far beyond any real torrent. */
const MIN_PIECE_LENGTH = 16_384
const MAX_PIECE_LENGTH = 2 ** 28
/** A valid message nests one level (the top dict); these caps only leave room for unknown keys. */
const DECODE_CAPS = { maxDepth: 4, maxItems: 64 }

export interface BttHandshakeEntry {
  /** Protocol version the peer speaks; we speak BTT_PROTOCOL_VERSION to any v ≥ 1. */
  v: number
  /** The peer's 32-byte ed25519 wallet public key. */
  pk: Uint8Array
  /** The 32-byte id of the ledger the peer pays and is paid on. */
  ledger: Uint8Array
}

export type BttMessage =
  | { t: 'reserve', price: bigint, piece: number, chunk: number }
  | { t: 'bid', rate: bigint, channel?: Uint8Array /* 32-byte channel id the bidder will pay on */ }
  | { t: 'bid_response', rate: bigint, payee: Uint8Array, ledger: Uint8Array, minDeposit: bigint, minExpiry: number, pieceLength: number }
  | { t: 'source_proof', piece: number, chunk: number, hash: Uint8Array /* 32 */ }
  | { t: 'payment', voucher: Uint8Array /* 145 */, piece: number }
  | { t: 'payment_ack', amount: bigint, piece: number }

export type BttMessageType = BttMessage['t']

// --- amounts -----------------------------------------------------------------------------------------

const C_0 = 0x30
const C_9 = 0x39

function badAmount (field: string): never {
  throw new WireError('BTT_BAD_AMOUNT', `${field} must be a decimal amount without sign or leading zeros, below 2^128`)
}

/** Reads a canonical decimal amount: /^(0|[1-9][0-9]*)$/, at most 39 digits, ≤ BTT_MAX_AMOUNT. `field` names it in the error. */
export function parseAmount (s: Uint8Array | string, field: string): bigint {
  let text: string
  if (s instanceof Uint8Array) {
    if (s.length === 0 || s.length > MAX_AMOUNT_DIGITS) badAmount(field)
    text = ''
    for (let i = 0; i < s.length; i++) {
      const c = s[i] as number
      if (c < C_0 || c > C_9) badAmount(field)
      text += String.fromCharCode(c)
    }
  } else if (typeof s === 'string') {
    if (s.length === 0 || s.length > MAX_AMOUNT_DIGITS || !/^[0-9]+$/.test(s)) badAmount(field)
    text = s
  } else {
    return badAmount(field)
  }
  if (text.length > 1 && text.charCodeAt(0) === C_0) badAmount(field)
  const a = BigInt(text)
  if (a > BTT_MAX_AMOUNT) badAmount(field)
  return a
}

/** The canonical decimal form of an amount; throws BTT_BAD_AMOUNT unless it is a bigint 0..BTT_MAX_AMOUNT. */
export function formatAmount (a: bigint): string {
  if (typeof a !== 'bigint' || a < 0n || a > BTT_MAX_AMOUNT) badAmount('amount')
  return a.toString(10)
}

// --- field checks shared by both directions ------------------------------------------------------------

function badField (field: string, want: string): never {
  throw new WireError('BTT_BAD_FIELD', `${field} must be ${want}`)
}

function checkInt (v: unknown, field: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) badField(field, `an integer ${min}..${max}`)
  return v
}

function checkBytes (v: unknown, field: string, length: number): Uint8Array {
  if (!(v instanceof Uint8Array) || v.length !== length) badField(field, `${length} bytes`)
  return v
}

function encodeAmount (a: unknown, field: string): string {
  if (typeof a !== 'bigint' || a < 0n || a > BTT_MAX_AMOUNT) badAmount(field)
  return a.toString(10)
}

// --- handshake entry --------------------------------------------------------------------------------

function badHandshake (what: string): never {
  throw new WireError('BTT_BAD_HANDSHAKE', `extended handshake entry "btt": ${what}`)
}

/** The value to put under key 'btt' in the BEP 10 extended handshake dict (an object the bencode encoder accepts). */
export function encodeBttHandshakeEntry (e: BttHandshakeEntry): EncodableObject {
  if (typeof e !== 'object' || e === null) badHandshake('must be an object')
  if (!Number.isSafeInteger(e.v) || e.v < 1) badHandshake('v must be a positive integer')
  if (!(e.pk instanceof Uint8Array) || e.pk.length !== ID_BYTES) badHandshake(`pk must be ${ID_BYTES} bytes`)
  if (!(e.ledger instanceof Uint8Array) || e.ledger.length !== ID_BYTES) badHandshake(`ledger must be ${ID_BYTES} bytes`)
  return { v: e.v, pk: e.pk, ledger: e.ledger }
}

/**
 * From the decoded extended-handshake dict's 'btt' value: undefined when absent; throws WireError
 * BTT_BAD_HANDSHAKE when present but malformed (not a dict, v not a positive int, pk/ledger not 32
 * bytes). Unknown keys ignored. A v greater than ours is accepted (we speak v1 to it).
 */
export function decodeBttHandshakeEntry (value: BValue | undefined): BttHandshakeEntry | undefined {
  if (value === undefined) return undefined
  if (!isDict(value)) return badHandshake('must be a dict')
  const v = value.get('v')
  if (typeof v !== 'number' || v < 1) badHandshake('v must be a positive integer')
  const pk = value.get('pk')
  if (!(pk instanceof Uint8Array) || pk.length !== ID_BYTES) badHandshake(`pk must be ${ID_BYTES} bytes`)
  const ledger = value.get('ledger')
  if (!(ledger instanceof Uint8Array) || ledger.length !== ID_BYTES) badHandshake(`ledger must be ${ID_BYTES} bytes`)
  return { v, pk: new Uint8Array(pk), ledger: new Uint8Array(ledger) }
}

// --- messages ----------------------------------------------------------------------------------------

/** Validates a message and encodes it as the payload of a BEP 10 extended message. */
export function encodeBttMessage (m: BttMessage): Uint8Array {
  if (typeof m !== 'object' || m === null) badField('message', 'an object')
  const t = m.t
  let dict: EncodableObject
  switch (t) {
    case 'reserve':
      dict = {
        t,
        price: encodeAmount(m.price, 'reserve.price'),
        piece: checkInt(m.piece, 'reserve.piece', 0, MAX_INDEX),
        chunk: checkInt(m.chunk, 'reserve.chunk', 0, MAX_INDEX)
      }
      break
    case 'bid':
      dict = {
        t,
        rate: encodeAmount(m.rate, 'bid.rate'),
        channel: m.channel === undefined ? undefined : checkBytes(m.channel, 'bid.channel', ID_BYTES)
      }
      break
    case 'bid_response':
      dict = {
        t,
        rate: encodeAmount(m.rate, 'bid_response.rate'),
        payee: checkBytes(m.payee, 'bid_response.payee', ID_BYTES),
        ledger: checkBytes(m.ledger, 'bid_response.ledger', ID_BYTES),
        min_deposit: encodeAmount(m.minDeposit, 'bid_response.min_deposit'),
        min_expiry: checkInt(m.minExpiry, 'bid_response.min_expiry', 0, MAX_MIN_EXPIRY),
        piece_length: checkInt(m.pieceLength, 'bid_response.piece_length', MIN_PIECE_LENGTH, MAX_PIECE_LENGTH)
      }
      break
    case 'source_proof':
      dict = {
        t,
        piece: checkInt(m.piece, 'source_proof.piece', 0, MAX_INDEX),
        chunk: checkInt(m.chunk, 'source_proof.chunk', 0, MAX_INDEX),
        hash: checkBytes(m.hash, 'source_proof.hash', ID_BYTES)
      }
      break
    case 'payment':
      dict = {
        t,
        voucher: checkBytes(m.voucher, 'payment.voucher', BTT_VOUCHER_BYTES),
        piece: checkInt(m.piece, 'payment.piece', 0, MAX_INDEX)
      }
      break
    case 'payment_ack':
      dict = {
        t,
        amount: encodeAmount(m.amount, 'payment_ack.amount'),
        piece: checkInt(m.piece, 'payment_ack.piece', 0, MAX_INDEX)
      }
      break
    default:
      return badField('t', `one of reserve, bid, bid_response, source_proof, payment, payment_ack (got ${JSON.stringify(String(t)).slice(0, 40)})`)
  }
  return encode(dict)
}

/**
 * Decodes one payload (the bytes after the extended-message id byte). Returns undefined for a
 * well-formed dict whose `t` is unknown (forward compatibility: receivers ignore it). Throws
 * WireError BTT_* (or BENCODE_*) otherwise.
 */
export function decodeBttMessage (payload: Uint8Array): BttMessage | undefined {
  if (payload instanceof Uint8Array && payload.length > BTT_MAX_MESSAGE_BYTES) {
    throw new WireError('BTT_TOO_LARGE', `btt message of ${payload.length} bytes exceeds ${BTT_MAX_MESSAGE_BYTES}`)
  }
  const dict = decode(payload, DECODE_CAPS)
  if (!isDict(dict)) throw new WireError('BTT_NOT_DICT', 'btt message is not a bencoded dict')
  const tv = dict.get('t')
  if (!(tv instanceof Uint8Array)) return badField('t', 'a byte string naming the message')
  // latin1: one char per byte, so a binary `t` can never alias a known name
  const t = Buffer.from(tv.buffer, tv.byteOffset, tv.byteLength).toString('latin1')
  const ctx: FieldContext = { family: 'BTT', where: t }
  switch (t) {
    case 'reserve':
      return {
        t,
        price: amount(dict, 'price', ctx),
        piece: int(dict, 'piece', ctx, 0, MAX_INDEX),
        chunk: int(dict, 'chunk', ctx, 0, MAX_INDEX)
      }
    case 'bid': {
      const rate = amount(dict, 'rate', ctx)
      if (!dict.has('channel')) return { t, rate }
      return { t, rate, channel: bytes(dict, 'channel', ctx, ID_BYTES) }
    }
    case 'bid_response':
      return {
        t,
        rate: amount(dict, 'rate', ctx),
        payee: bytes(dict, 'payee', ctx, ID_BYTES),
        ledger: bytes(dict, 'ledger', ctx, ID_BYTES),
        minDeposit: amount(dict, 'min_deposit', ctx),
        minExpiry: int(dict, 'min_expiry', ctx, 0, MAX_MIN_EXPIRY),
        pieceLength: int(dict, 'piece_length', ctx, MIN_PIECE_LENGTH, MAX_PIECE_LENGTH)
      }
    case 'source_proof':
      return {
        t,
        piece: int(dict, 'piece', ctx, 0, MAX_INDEX),
        chunk: int(dict, 'chunk', ctx, 0, MAX_INDEX),
        hash: bytes(dict, 'hash', ctx, ID_BYTES)
      }
    case 'payment':
      return {
        t,
        voucher: bytes(dict, 'voucher', ctx, BTT_VOUCHER_BYTES),
        piece: int(dict, 'piece', ctx, 0, MAX_INDEX)
      }
    case 'payment_ack':
      return {
        t,
        amount: amount(dict, 'amount', ctx),
        piece: int(dict, 'piece', ctx, 0, MAX_INDEX)
      }
    default:
      return undefined
  }
}

function amount (dict: BDict, key: string, ctx: FieldContext): bigint {
  return parseAmount(getBytes(dict, key, ctx), `${ctx.where ?? ''}.${key}`)
}

function int (dict: BDict, key: string, ctx: FieldContext, min: number, max: number): number {
  return checkInt(getInt(dict, key, ctx), `${ctx.where ?? ''}.${key}`, min, max)
}

function bytes (dict: BDict, key: string, ctx: FieldContext, length: number): Uint8Array {
  return new Uint8Array(checkBytes(getBytes(dict, key, ctx), `${ctx.where ?? ''}.${key}`, length))
}
