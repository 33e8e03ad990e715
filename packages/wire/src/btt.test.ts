import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { decode, encode, type BDict, type Encodable } from './bencode.js'
import {
  BTT_EXTENSION_NAME, BTT_MAX_AMOUNT, BTT_MAX_MESSAGE_BYTES, BTT_PROTOCOL_VERSION, BTT_VOUCHER_BYTES,
  decodeBttHandshakeEntry, decodeBttMessage, encodeBttHandshakeEntry, encodeBttMessage, formatAmount, parseAmount,
  type BttMessage, type BttMessageType
} from './btt.js'
import { CodedError } from './errors.js'
import { errorCode } from './test-support/errors.js'

const code = errorCode
const b = (s: string): Buffer => Buffer.from(s, 'latin1')
const latin1 = (u: Uint8Array): string => Buffer.from(u).toString('latin1')
/** A payload built by the bencode encoder: JS strings become byte strings, so amounts can be written as text. */
const raw = (v: Encodable): Buffer => encode(v)
/** Plain Uint8Arrays: decoded byte fields are plain copies, and toEqual tells a Buffer from a Uint8Array. */
const bytes = (n: number, fill: number): Uint8Array => new Uint8Array(n).fill(fill)

const MAX_INDEX = 2 ** 31 - 1
const ID_A = bytes(32, 0xa1)
const ID_B = bytes(32, 0xb2)
const VOUCHER = bytes(BTT_VOUCHER_BYTES, 0x01)

/** One valid message of each type in wire form (keys as on the wire), to damage one field at a time. */
const WIRE: Record<BttMessageType, Record<string, Encodable>> = {
  reserve: { t: 'reserve', price: '5', piece: 1, chunk: 2 },
  bid: { t: 'bid', rate: '12', channel: ID_A },
  bid_response: { t: 'bid_response', rate: '10', payee: ID_A, ledger: ID_B, min_deposit: '1000', min_expiry: 86_400, piece_length: 262_144 },
  source_proof: { t: 'source_proof', piece: 1, chunk: 2, hash: ID_A },
  payment: { t: 'payment', voucher: VOUCHER, piece: 3 },
  payment_ack: { t: 'payment_ack', amount: '2560', piece: 3 }
}

type Kind =
  | { kind: 'amount' }
  | { kind: 'int', min: number, max: number }
  | { kind: 'bytes', length: number }

const AMOUNT: Kind = { kind: 'amount' }
const INDEX: Kind = { kind: 'int', min: 0, max: MAX_INDEX }
const ID: Kind = { kind: 'bytes', length: 32 }

/** Every field of every message: [type, wire key, kind, optional]. */
const FIELDS: Array<[BttMessageType, string, Kind, boolean]> = [
  ['reserve', 'price', AMOUNT, false],
  ['reserve', 'piece', INDEX, false],
  ['reserve', 'chunk', INDEX, false],
  ['bid', 'rate', AMOUNT, false],
  ['bid', 'channel', ID, true],
  ['bid_response', 'rate', AMOUNT, false],
  ['bid_response', 'payee', ID, false],
  ['bid_response', 'ledger', ID, false],
  ['bid_response', 'min_deposit', AMOUNT, false],
  ['bid_response', 'min_expiry', { kind: 'int', min: 0, max: 315_360_000 }, false],
  ['bid_response', 'piece_length', { kind: 'int', min: 16_384, max: 2 ** 28 }, false],
  ['source_proof', 'piece', INDEX, false],
  ['source_proof', 'chunk', INDEX, false],
  ['source_proof', 'hash', ID, false],
  ['payment', 'voucher', { kind: 'bytes', length: BTT_VOUCHER_BYTES }, false],
  ['payment', 'piece', INDEX, false],
  ['payment_ack', 'amount', AMOUNT, false],
  ['payment_ack', 'piece', INDEX, false]
]

/** WIRE[type] with `key` replaced (or removed when value is undefined). */
function withField (type: BttMessageType, key: string, value: Encodable | undefined): Buffer {
  const obj: Record<string, Encodable | undefined> = { ...WIRE[type] }
  obj[key] = value
  return raw(obj)
}

const HOSTILE_AMOUNTS = [
  '01', '00', '', '-1', '-0', '+1', '1.5', '1.0', ' 1', '1 ', '1e3', '0x10', '1_000', '١',
  '1' + '0'.repeat(39), // 40 digits
  '0'.repeat(39),
  (2n ** 128n).toString(), // 39 digits, one past the cap
  '999999999999999999999999999999999999999' // the largest 39-digit number
]

describe('constants', () => {
  it('match the spec', () => {
    expect(BTT_EXTENSION_NAME).toBe('btt')
    expect(BTT_PROTOCOL_VERSION).toBe(1)
    expect(BTT_MAX_MESSAGE_BYTES).toBe(4096)
    expect(BTT_VOUCHER_BYTES).toBe(145)
    expect(BTT_MAX_AMOUNT).toBe(340282366920938463463374607431768211455n)
    expect(BTT_MAX_AMOUNT.toString()).toHaveLength(39)
  })
})

describe('parseAmount / formatAmount', () => {
  it('reads canonical decimals from strings and bytes, up to 2^128 - 1', () => {
    for (const s of ['0', '1', '10', '1000000000000000000', BTT_MAX_AMOUNT.toString()]) {
      expect(parseAmount(s, 'x')).toBe(BigInt(s))
      expect(parseAmount(b(s), 'x')).toBe(BigInt(s))
    }
  })

  it.each(HOSTILE_AMOUNTS)('refuses %j', s => {
    expect(code(() => parseAmount(s, 'x'))).toBe('BTT_BAD_AMOUNT')
    expect(code(() => parseAmount(Buffer.from(s, 'utf8'), 'x'))).toBe('BTT_BAD_AMOUNT')
  })

  it('names the field in the error', () => {
    expect(() => parseAmount('01', 'bid.rate')).toThrow(/bid\.rate/)
  })

  it('formats canonically and refuses what cannot be an amount', () => {
    expect(formatAmount(0n)).toBe('0')
    expect(formatAmount(BTT_MAX_AMOUNT)).toBe('340282366920938463463374607431768211455')
    expect(code(() => formatAmount(-1n))).toBe('BTT_BAD_AMOUNT')
    expect(code(() => formatAmount(BTT_MAX_AMOUNT + 1n))).toBe('BTT_BAD_AMOUNT')
    expect(code(() => formatAmount(5 as unknown as bigint))).toBe('BTT_BAD_AMOUNT')
  })

  it('round-trips every amount', () => {
    fc.assert(fc.property(fc.bigInt({ min: 0n, max: BTT_MAX_AMOUNT }), a => {
      expect(parseAmount(formatAmount(a), 'x')).toBe(a)
    }), { seed: 7, numRuns: 2000 })
  })
})

describe('handshake entry', () => {
  const entry = { v: 1, pk: new Uint8Array(ID_A), ledger: new Uint8Array(ID_B) }

  it('round-trips through a BEP 10 extended handshake dict', () => {
    const hs = encode({ m: { btt: 3, ut_metadata: 1 }, v: 'test', btt: encodeBttHandshakeEntry(entry) })
    expect(latin1(hs)).toContain(`3:bttd6:ledger32:${latin1(ID_B)}2:pk32:${latin1(ID_A)}1:vi1ee`)
    const dict = decode(hs) as BDict
    expect(decodeBttHandshakeEntry(dict.get('btt'))).toEqual(entry)
  })

  it('is undefined when absent, accepts a newer version and ignores unknown keys', () => {
    expect(decodeBttHandshakeEntry(undefined)).toBeUndefined()
    const newer = decode(raw({ v: 7, pk: ID_A, ledger: ID_B, future: [1, 2] }))
    expect(decodeBttHandshakeEntry(newer)).toEqual({ ...entry, v: 7 })
  })

  it.each<[string, Encodable]>([
    ['an integer', 1],
    ['a byte string', 'btt'],
    ['a list', [1]],
    ['v missing', { pk: ID_A, ledger: ID_B }],
    ['v 0', { v: 0, pk: ID_A, ledger: ID_B }],
    ['v -1', { v: -1, pk: ID_A, ledger: ID_B }],
    ['v a string', { v: '1', pk: ID_A, ledger: ID_B }],
    ['pk missing', { v: 1, ledger: ID_B }],
    ['pk 31 bytes', { v: 1, pk: bytes(31, 1), ledger: ID_B }],
    ['pk 33 bytes', { v: 1, pk: bytes(33, 1), ledger: ID_B }],
    ['pk an integer', { v: 1, pk: 5, ledger: ID_B }],
    ['ledger missing', { v: 1, pk: ID_A }],
    ['ledger empty', { v: 1, pk: ID_A, ledger: '' }]
  ])('refuses %s with BTT_BAD_HANDSHAKE', (_, value) => {
    expect(code(() => decodeBttHandshakeEntry(decode(raw(value))))).toBe('BTT_BAD_HANDSHAKE')
  })

  it('copies the keys out of the handshake buffer', () => {
    const buf = raw({ v: 1, pk: ID_A, ledger: ID_B })
    const e = decodeBttHandshakeEntry(decode(buf))
    buf.fill(0)
    expect(e).toEqual(entry)
  })

  it('refuses to encode an invalid entry', () => {
    for (const bad of [
      { ...entry, v: 0 }, { ...entry, v: 1.5 }, { ...entry, v: Number.NaN },
      { ...entry, pk: bytes(31, 1) }, { ...entry, ledger: bytes(33, 1) },
      { ...entry, pk: [...ID_A] as unknown as Uint8Array }
    ]) {
      expect(code(() => encodeBttHandshakeEntry(bad))).toBe('BTT_BAD_HANDSHAKE')
    }
  })
})

describe('encodeBttMessage', () => {
  /** Expected bytes from latin1 text and binary parts. */
  const bin = (...parts: Array<string | Uint8Array>): string => parts.map(p => typeof p === 'string' ? p : latin1(p)).join('')

  it.each<[BttMessage, string]>([
    [{ t: 'reserve', price: 5n, piece: 1, chunk: 2 }, 'd5:chunki2e5:piecei1e5:price1:51:t7:reservee'],
    [{ t: 'bid', rate: 0n }, 'd4:rate1:01:t3:bide'],
    [{ t: 'bid', rate: 12n, channel: ID_A }, bin('d7:channel32:', ID_A, '4:rate2:121:t3:bide')],
    [
      { t: 'bid_response', rate: 10n, payee: ID_A, ledger: ID_B, minDeposit: 1000n, minExpiry: 86_400, pieceLength: 262_144 },
      bin('d6:ledger32:', ID_B, '11:min_deposit4:100010:min_expiryi86400e5:payee32:', ID_A, '12:piece_lengthi262144e4:rate2:101:t12:bid_responsee')
    ],
    [{ t: 'source_proof', piece: 1, chunk: 2, hash: ID_A }, bin('d5:chunki2e4:hash32:', ID_A, '5:piecei1e1:t12:source_proofe')],
    [{ t: 'payment', voucher: VOUCHER, piece: 3 }, bin('d5:piecei3e1:t7:payment7:voucher145:', VOUCHER, 'e')],
    [{ t: 'payment_ack', amount: BTT_MAX_AMOUNT, piece: 3 }, 'd6:amount39:3402823669209384634633746074317682114555:piecei3e1:t11:payment_acke']
  ])('encodes %o exactly', (m, expected) => {
    const payload = encodeBttMessage(m)
    expect(latin1(payload)).toBe(expected)
    expect(decodeBttMessage(payload)).toEqual(m)
  })

  it.each<[string, unknown, string]>([
    ['a negative price', { t: 'reserve', price: -1n, piece: 0, chunk: 0 }, 'BTT_BAD_AMOUNT'],
    ['a price of 2^128', { t: 'reserve', price: 2n ** 128n, piece: 0, chunk: 0 }, 'BTT_BAD_AMOUNT'],
    ['a rate as a number', { t: 'bid', rate: 5 }, 'BTT_BAD_AMOUNT'],
    ['a rate as a string', { t: 'bid', rate: '5' }, 'BTT_BAD_AMOUNT'],
    ['a missing amount', { t: 'payment_ack', piece: 0 }, 'BTT_BAD_AMOUNT'],
    ['a negative min_deposit', { ...decodedResponse(), minDeposit: -5n }, 'BTT_BAD_AMOUNT'],
    ['a negative piece', { t: 'reserve', price: 1n, piece: -1, chunk: 0 }, 'BTT_BAD_FIELD'],
    ['a piece of 2^31', { t: 'payment', voucher: VOUCHER, piece: 2 ** 31 }, 'BTT_BAD_FIELD'],
    ['a fractional chunk', { t: 'source_proof', piece: 0, chunk: 1.5, hash: ID_A }, 'BTT_BAD_FIELD'],
    ['a NaN piece', { t: 'payment_ack', amount: 1n, piece: Number.NaN }, 'BTT_BAD_FIELD'],
    ['a missing piece', { t: 'payment_ack', amount: 1n }, 'BTT_BAD_FIELD'],
    ['a min_expiry over ten years', { ...decodedResponse(), minExpiry: 315_360_001 }, 'BTT_BAD_FIELD'],
    ['a piece_length under 16 KiB', { ...decodedResponse(), pieceLength: 16_383 }, 'BTT_BAD_FIELD'],
    ['a piece_length over 256 MiB', { ...decodedResponse(), pieceLength: 2 ** 28 + 1 }, 'BTT_BAD_FIELD'],
    ['a 31-byte payee', { ...decodedResponse(), payee: bytes(31, 1) }, 'BTT_BAD_FIELD'],
    ['a 33-byte ledger', { ...decodedResponse(), ledger: bytes(33, 1) }, 'BTT_BAD_FIELD'],
    ['a 31-byte channel', { t: 'bid', rate: 1n, channel: bytes(31, 1) }, 'BTT_BAD_FIELD'],
    ['a hash as an array', { t: 'source_proof', piece: 0, chunk: 0, hash: [...ID_A] }, 'BTT_BAD_FIELD'],
    ['a 144-byte voucher', { t: 'payment', voucher: bytes(144, 1), piece: 0 }, 'BTT_BAD_FIELD'],
    ['a 146-byte voucher', { t: 'payment', voucher: bytes(146, 1), piece: 0 }, 'BTT_BAD_FIELD'],
    ['an unknown type', { t: 'tip', amount: 1n }, 'BTT_BAD_FIELD'],
    ['a prototype key as type', { t: 'toString' }, 'BTT_BAD_FIELD'],
    ['null', null, 'BTT_BAD_FIELD']
  ])('refuses %s', (_, m, expected) => {
    expect(code(() => encodeBttMessage(m as BttMessage))).toBe(expected)
  })

  it('accepts the bounds of every range', () => {
    const edge: BttMessage[] = [
      { t: 'reserve', price: BTT_MAX_AMOUNT, piece: MAX_INDEX, chunk: MAX_INDEX },
      { ...decodedResponse(), minExpiry: 0, pieceLength: 16_384 },
      { ...decodedResponse(), minExpiry: 315_360_000, pieceLength: 2 ** 28 },
      { ...decodedResponse(), pieceLength: 3 * 16_384 } // BEP 3 does not require a power of two
    ]
    for (const m of edge) expect(decodeBttMessage(encodeBttMessage(m))).toEqual(m)
  })
})

function decodedResponse (): Extract<BttMessage, { t: 'bid_response' }> {
  return { t: 'bid_response', rate: 10n, payee: ID_A, ledger: ID_B, minDeposit: 1000n, minExpiry: 86_400, pieceLength: 262_144 }
}

// --- round trip --------------------------------------------------------------------------------------------

const amountArb = fc.oneof(fc.constantFrom(0n, 1n, BTT_MAX_AMOUNT), fc.bigInt({ min: 0n, max: BTT_MAX_AMOUNT }))
const indexArb = fc.oneof(fc.constantFrom(0, MAX_INDEX), fc.integer({ min: 0, max: MAX_INDEX }))
const idArb = fc.uint8Array({ minLength: 32, maxLength: 32 })

const ARBS: Record<BttMessageType, fc.Arbitrary<BttMessage>> = {
  reserve: fc.record({ t: fc.constant('reserve' as const), price: amountArb, piece: indexArb, chunk: indexArb }),
  bid: fc.tuple(amountArb, fc.option(idArb, { nil: undefined }))
    .map(([rate, channel]): BttMessage => channel === undefined ? { t: 'bid', rate } : { t: 'bid', rate, channel }),
  bid_response: fc.record({
    t: fc.constant('bid_response' as const),
    rate: amountArb,
    payee: idArb,
    ledger: idArb,
    minDeposit: amountArb,
    minExpiry: fc.integer({ min: 0, max: 315_360_000 }),
    pieceLength: fc.integer({ min: 16_384, max: 2 ** 28 })
  }),
  source_proof: fc.record({ t: fc.constant('source_proof' as const), piece: indexArb, chunk: indexArb, hash: idArb }),
  payment: fc.record({ t: fc.constant('payment' as const), voucher: fc.uint8Array({ minLength: 145, maxLength: 145 }), piece: indexArb }),
  payment_ack: fc.record({ t: fc.constant('payment_ack' as const), amount: amountArb, piece: indexArb })
}

describe('round trip', () => {
  it.each(Object.keys(ARBS) as BttMessageType[])('%s: decode(encode(m)) is m and encode(decode(x)) is x', type => {
    fc.assert(fc.property(ARBS[type], m => {
      const payload = encodeBttMessage(m)
      expect(payload.length).toBeLessThanOrEqual(BTT_MAX_MESSAGE_BYTES)
      const back = decodeBttMessage(payload)
      expect(back).toEqual(m)
      expect(Buffer.from(encodeBttMessage(back as BttMessage)).equals(Buffer.from(payload))).toBe(true)
    }), { seed: 11, numRuns: 500 })
  })

  it('returns plain copies of byte fields, not views into the payload', () => {
    const payload = Buffer.from(encodeBttMessage({ t: 'payment', voucher: VOUCHER, piece: 3 }))
    const m = decodeBttMessage(payload)
    payload.fill(0)
    expect(m).toEqual({ t: 'payment', voucher: VOUCHER, piece: 3 })
    expect(Object.getPrototypeOf((m as { voucher: Uint8Array }).voucher)).toBe(Uint8Array.prototype)
  })
})

// --- hostile input ------------------------------------------------------------------------------------------

describe('decodeBttMessage refuses hostile input', () => {
  it('refuses payloads over 4096 bytes before decoding, and accepts exactly 4096', () => {
    const at = (n: number): Buffer => {
      // the pad's length prefix grows with it: shrink the pad until the whole payload is n bytes
      for (let pad = n; pad >= 0; pad--) {
        const x = raw({ ...WIRE.reserve, pad: 'x'.repeat(pad) })
        if (x.length === n) return x
      }
      throw new Error(`no padding gives ${n} bytes`)
    }
    expect(at(4096)).toHaveLength(4096)
    expect(decodeBttMessage(at(4096))).toEqual({ t: 'reserve', price: 5n, piece: 1, chunk: 2 })
    expect(code(() => decodeBttMessage(at(4097)))).toBe('BTT_TOO_LARGE')
    expect(code(() => decodeBttMessage(bytes(5000, 0x78)))).toBe('BTT_TOO_LARGE') // garbage, not BENCODE_SYNTAX
  })

  it('caps nesting at depth 4 and items at 64', () => {
    expect(decodeBttMessage(raw({ ...WIRE.reserve, x: [[[]]] }))).toBeDefined()
    expect(code(() => decodeBttMessage(raw({ ...WIRE.reserve, x: [[[[]]]] })))).toBe('BENCODE_DEPTH')
    expect(decodeBttMessage(raw({ ...WIRE.reserve, x: Array(40).fill(0) }))).toBeDefined()
    expect(code(() => decodeBttMessage(raw({ ...WIRE.reserve, x: Array(64).fill(0) })))).toBe('BENCODE_TOO_MANY_ITEMS')
  })

  it.each([
    ['an integer', 'i1e'],
    ['a list', 'le'],
    ['a byte string', '7:reserve']
  ])('refuses %s at top level with BTT_NOT_DICT', (_, input) => {
    expect(code(() => decodeBttMessage(b(input)))).toBe('BTT_NOT_DICT')
  })

  it.each([
    ['no t', 'de'],
    ['no t but other keys', 'd5:piecei1e5:price1:5e'],
    ['t an integer', 'd1:ti1ee'],
    ['t a list', 'd1:tl7:reserveee'],
    ['t a dict', 'd1:tdee']
  ])('refuses %s with BTT_BAD_FIELD', (_, input) => {
    expect(code(() => decodeBttMessage(b(input)))).toBe('BTT_BAD_FIELD')
  })

  it.each([
    ['d1:t3:tipe'],
    ['d1:t0:e'],
    ['d1:t7:Reservee'],
    ['d1:t8:reserve e'],
    ['d1:t9:__proto__e'],
    ['d1:t8:toStringe'],
    ['d1:t11:constructore'],
    ['d5:price2:011:t4:tipse'] // fields of an unknown message are not validated
  ])('ignores an unknown t: %j is undefined', input => {
    expect(decodeBttMessage(b(input))).toBeUndefined()
  })

  it.each([
    ['', 'BENCODE_EMPTY'],
    ['d1:t7:reserve', 'BENCODE_TRUNCATED'],
    ['d1:t7:reservee ', 'BENCODE_TRAILING'],
    ['d5:piecei1e1:t7:reserve5:chunki2e5:price1:5e', 'BENCODE_UNSORTED_KEYS'],
    ['d5:chunki02e5:piecei1e5:price1:51:t7:reservee', 'BENCODE_LEADING_ZERO']
  ])('passes malformed bencode %j through as %s', (input, expected) => {
    expect(code(() => decodeBttMessage(b(input)))).toBe(expected)
  })

  it('ignores unknown keys in every message', () => {
    for (const type of Object.keys(WIRE) as BttMessageType[]) {
      const plain = decodeBttMessage(raw(WIRE[type]))
      expect(plain?.t).toBe(type)
      const extra = decodeBttMessage(raw({ ...WIRE[type], a: 1, zz: ['x', { y: 2 }], price_v2: 'whatever' }))
      expect(extra).toEqual(plain)
    }
  })

  it.each(FIELDS.filter(([, , , optional]) => !optional))('%s without %s is BTT_MISSING_FIELD', (type, key) => {
    expect(code(() => decodeBttMessage(withField(type, key, undefined)))).toBe('BTT_MISSING_FIELD')
  })

  it('accepts a bid without channel', () => {
    expect(decodeBttMessage(withField('bid', 'channel', undefined))).toEqual({ t: 'bid', rate: 12n })
  })

  it.each(FIELDS)('%s.%s of the wrong bencode type is BTT_BAD_FIELD', (type, key, kind) => {
    const wrong: Encodable[] = kind.kind === 'int' ? ['1', [1], { a: 1 }] : [1, [b('1')], { a: 1 }]
    for (const w of wrong) expect(code(() => decodeBttMessage(withField(type, key, w)))).toBe('BTT_BAD_FIELD')
  })

  it.each(FIELDS.filter(([, , kind]) => kind.kind === 'int'))('%s.%s is range-checked', (type, key, kind) => {
    if (kind.kind !== 'int') throw new Error('unreachable')
    for (const ok of [kind.min, kind.max]) {
      const m = decodeBttMessage(withField(type, key, ok)) as Record<string, unknown>
      expect(Object.values(m)).toContain(ok)
    }
    for (const bad of [kind.min - 1, kind.max + 1, -(2 ** 40), Number.MAX_SAFE_INTEGER]) {
      expect(code(() => decodeBttMessage(withField(type, key, bad)))).toBe('BTT_BAD_FIELD')
    }
  })

  it.each(FIELDS.filter(([, , kind]) => kind.kind === 'bytes'))('%s.%s must have its exact length', (type, key, kind) => {
    if (kind.kind !== 'bytes') throw new Error('unreachable')
    const exact = bytes(kind.length, 0x5c)
    const m = decodeBttMessage(withField(type, key, exact)) as Record<string, unknown>
    expect(Object.values(m)).toContainEqual(new Uint8Array(exact))
    for (const n of [0, 1, kind.length - 1, kind.length + 1, 2 * kind.length]) {
      expect(code(() => decodeBttMessage(withField(type, key, bytes(n, 0x5c))))).toBe('BTT_BAD_FIELD')
    }
  })

  it.each(FIELDS.filter(([, , kind]) => kind.kind === 'amount'))('%s.%s must be a canonical amount', (type, key) => {
    for (const ok of ['0', '1', BTT_MAX_AMOUNT.toString()]) {
      const m = decodeBttMessage(withField(type, key, ok)) as Record<string, unknown>
      expect(Object.values(m)).toContain(BigInt(ok))
    }
    for (const bad of HOSTILE_AMOUNTS) {
      expect(code(() => decodeBttMessage(withField(type, key, bad)))).toBe('BTT_BAD_AMOUNT')
    }
  })

  it('allows rate "0" in bid (withdrawal) and bid_response (free unchoke)', () => {
    expect(decodeBttMessage(raw({ t: 'bid', rate: '0' }))).toEqual({ t: 'bid', rate: 0n })
    expect(decodeBttMessage(withField('bid_response', 'rate', '0'))).toMatchObject({ t: 'bid_response', rate: 0n })
  })

  it('refuses a payload that is not bytes with a coded error', () => {
    expect(code(() => decodeBttMessage('d1:t3:bide' as unknown as Uint8Array))).toBe('BENCODE_INPUT')
  })
})

// --- fuzz ------------------------------------------------------------------------------------------------

/** mulberry32: a tiny seeded PRNG so the fuzz corpus is the same on every run. */
function prng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

describe('fuzz', () => {
  it('50,000 mutated encodings each give a valid message, undefined or a CodedError', () => {
    const rand = prng(0xb77)
    const int = (n: number): number => Math.floor(rand() * n)
    const INTERESTING = b('0123456789:deil-t')
    const corpus: Buffer[] = [
      ...Object.values(WIRE).map(w => raw(w)),
      ...fc.sample(fc.oneof(...Object.values(ARBS)), { seed: 3, numRuns: 30 }).map(m => Buffer.from(encodeBttMessage(m)))
    ]
    const outcomes = new Map<string, number>()
    const count = (k: string): void => { outcomes.set(k, (outcomes.get(k) ?? 0) + 1) }
    const failures: string[] = []

    for (let i = 0; i < 50_000; i++) {
      let x = Buffer.from(corpus[int(corpus.length)] as Buffer)
      for (let k = 1 + int(3); k > 0; k--) {
        const at = int(x.length + 1)
        switch (int(7)) {
          case 0: if (x.length > 0) x[Math.min(at, x.length - 1)] = int(256); break
          case 1: if (x.length > 0) x[Math.min(at, x.length - 1)] = INTERESTING[int(INTERESTING.length)] as number; break
          case 2: x = Buffer.concat([x.subarray(0, at), x.subarray(Math.min(x.length, at + 1 + int(8)))]); break
          case 3: x = Buffer.concat([x.subarray(0, at), Buffer.from([INTERESTING[int(INTERESTING.length)] as number]), x.subarray(at)]); break
          case 4: x = x.subarray(0, at); break
          case 5: { const s = int(x.length + 1); x = Buffer.concat([x.subarray(0, at), x.subarray(s, s + int(40)), x.subarray(at)]); break }
          default: { // nudge a digit, the cheapest way to move a length prefix or an integer
            const digits = [...x.keys()].filter(j => (x[j] as number) >= 0x30 && (x[j] as number) <= 0x39)
            const j = digits[int(digits.length)]
            if (j !== undefined) x[j] = 0x30 + int(10)
          }
        }
      }
      try {
        const m = decodeBttMessage(x)
        if (m === undefined) {
          count('undefined')
          continue
        }
        // a returned message must be valid: it re-encodes, and decodes back to itself
        const again = decodeBttMessage(encodeBttMessage(m))
        if (!(again !== undefined && JSON.stringify(again, replacer) === JSON.stringify(m, replacer))) failures.push(x.toString('hex'))
        count(`ok:${m.t}`)
      } catch (err) {
        if (!(err instanceof CodedError)) failures.push(`${x.toString('hex')}: ${String(err)}`)
        else count((err as CodedError).code)
      }
    }

    expect(failures).toEqual([])
    // the corpus must actually reach every outcome, or the fuzz proves little
    const seen = [...outcomes.keys()]
    for (const k of ['undefined', 'BTT_NOT_DICT', 'BTT_BAD_FIELD', 'BTT_MISSING_FIELD', 'BTT_BAD_AMOUNT', 'BENCODE_SYNTAX', 'BENCODE_TRUNCATED']) {
      expect(seen).toContain(k)
    }
    for (const t of Object.keys(WIRE)) expect(seen).toContain(`ok:${t}`)
  })
})

function replacer (_: string, v: unknown): unknown {
  if (typeof v === 'bigint') return `${v}n`
  if (v instanceof Uint8Array) return Buffer.from(v).toString('hex')
  return v
}
