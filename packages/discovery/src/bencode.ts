// A small strict bencode codec for offer values. bencode@4 accepts malformed input (leading zeros,
// unsorted or duplicate keys, trailing bytes, `__proto__`) and loses integers past 2^53, so offers
// are decoded here instead: canonical input only, integers as bigint, bounded depth.
import { InvalidOfferError } from './errors.js'

export type BValue = bigint | Buffer | BValue[] | BDict
export type BDict = Map<string, BValue>

/** Offers nest at most dict → dict/list → string. */
const MAX_DEPTH = 4

export function encode (value: BValue): Buffer {
  const parts: Buffer[] = []
  write(value, parts)
  return Buffer.concat(parts)
}

function write (value: BValue, out: Buffer[]): void {
  if (typeof value === 'bigint') {
    out.push(Buffer.from(`i${value.toString()}e`))
  } else if (Buffer.isBuffer(value)) {
    out.push(Buffer.from(`${value.length}:`), value)
  } else if (Array.isArray(value)) {
    out.push(Buffer.from('l'))
    for (const v of value) write(v, out)
    out.push(Buffer.from('e'))
  } else {
    out.push(Buffer.from('d'))
    const keys = [...value.keys()].map(k => Buffer.from(k, 'latin1')).sort(Buffer.compare)
    for (const k of keys) {
      out.push(Buffer.from(`${k.length}:`), k)
      write(value.get(k.toString('latin1')) as BValue, out)
    }
    out.push(Buffer.from('e'))
  }
}

/** Decode exactly one canonical bencoded value that spans all of `buf`. */
export function decode (buf: Uint8Array): BValue {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength)
  const state = { pos: 0 }
  const v = read(b, state, 0)
  if (state.pos !== b.length) throw malformed('trailing bytes')
  return v
}

function malformed (why: string): InvalidOfferError {
  return new InvalidOfferError('OFFER_MALFORMED', `offer value is not canonical bencode: ${why}`)
}

const DIGIT_0 = 0x30
const DIGIT_9 = 0x39

function read (b: Buffer, s: { pos: number }, depth: number): BValue {
  if (depth > MAX_DEPTH) throw malformed('nested too deep')
  const c = b[s.pos]
  if (c === undefined) throw malformed('truncated')
  if (c === 0x69) { // i
    const end = b.indexOf(0x65, s.pos + 1)
    if (end < 0) throw malformed('unterminated integer')
    const text = b.toString('latin1', s.pos + 1, end)
    if (!/^(0|-?[1-9][0-9]*)$/.test(text)) throw malformed('non-canonical integer')
    s.pos = end + 1
    return BigInt(text)
  }
  if (c >= DIGIT_0 && c <= DIGIT_9) return readBytes(b, s)
  if (c === 0x6c) { // l
    s.pos++
    const list: BValue[] = []
    while (b[s.pos] !== 0x65) {
      if (s.pos >= b.length) throw malformed('unterminated list')
      list.push(read(b, s, depth + 1))
    }
    s.pos++
    return list
  }
  if (c === 0x64) { // d
    s.pos++
    const dict: BDict = new Map()
    let prev: Buffer | null = null
    while (b[s.pos] !== 0x65) {
      if (s.pos >= b.length) throw malformed('unterminated dict')
      const first = b[s.pos]
      if (first === undefined || first < DIGIT_0 || first > DIGIT_9) throw malformed('dict key is not a string')
      const key = readBytes(b, s)
      if (prev !== null && Buffer.compare(prev, key) >= 0) throw malformed('dict keys unsorted or duplicated')
      prev = key
      dict.set(key.toString('latin1'), read(b, s, depth + 1))
    }
    s.pos++
    return dict
  }
  throw malformed(`unexpected byte 0x${c.toString(16)}`)
}

function readBytes (b: Buffer, s: { pos: number }): Buffer {
  const colon = b.indexOf(0x3a, s.pos)
  if (colon < 0 || colon - s.pos > 6) throw malformed('bad string length')
  const text = b.toString('latin1', s.pos, colon)
  if (!/^(0|[1-9][0-9]*)$/.test(text)) throw malformed('non-canonical string length')
  const len = Number(text)
  const start = colon + 1
  if (start + len > b.length) throw malformed('truncated string')
  s.pos = start + len
  return b.subarray(start, start + len)
}
