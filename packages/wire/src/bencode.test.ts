import { randomBytes } from 'node:crypto'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  decode, decodePrefix, decodeWithSpans, encode, getBytes, getDict, getInt, getList, getString, optInt, optString,
  type BDict, type BValue, type Encodable
} from './bencode.js'
import { errorCode } from './test-support/errors.js'

const b = (s: string): Buffer => Buffer.from(s, 'latin1')
const dec = (s: string): BValue => decode(b(s))
const enc = (v: Parameters<typeof encode>[0]): string => Buffer.from(encode(v)).toString('latin1')

const code = errorCode

describe('decode', () => {
  it('decodes every type', () => {
    expect(dec('i42e')).toBe(42)
    expect(dec('i-42e')).toBe(-42)
    expect(dec('i0e')).toBe(0)
    expect(Buffer.from(dec('4:spam') as Uint8Array).toString()).toBe('spam')
    expect((dec('0:') as Uint8Array).length).toBe(0)
    expect(dec('le')).toEqual([])
    const v = dec('d3:bar4:spam3:fooi42e1:lli1ei2eee') as BDict
    expect([...v.keys()]).toEqual(['bar', 'foo', 'l'])
    expect(v.get('foo')).toBe(42)
    expect(v.get('l')).toEqual([1, 2])
  })

  it('accepts the safe integer bounds and refuses one past them', () => {
    expect(dec(`i${Number.MAX_SAFE_INTEGER}e`)).toBe(Number.MAX_SAFE_INTEGER)
    expect(dec(`i${Number.MIN_SAFE_INTEGER}e`)).toBe(Number.MIN_SAFE_INTEGER)
    expect(code(() => dec('i9007199254740992e'))).toBe('BENCODE_INT_RANGE')
    expect(code(() => dec('i-9007199254740992e'))).toBe('BENCODE_INT_RANGE')
    expect(code(() => dec('i9999999999999999e'))).toBe('BENCODE_INT_RANGE')
    expect(code(() => dec(`i${'9'.repeat(400)}e`))).toBe('BENCODE_INT_RANGE')
  })

  it.each([
    ['i03e', 'BENCODE_LEADING_ZERO'],
    ['i-03e', 'BENCODE_LEADING_ZERO'],
    ['i00e', 'BENCODE_LEADING_ZERO'],
    ['03:abc', 'BENCODE_LEADING_ZERO'],
    ['00:', 'BENCODE_LEADING_ZERO'],
    ['i-0e', 'BENCODE_NEGATIVE_ZERO'],
    ['ie', 'BENCODE_SYNTAX'],
    ['i-e', 'BENCODE_SYNTAX'],
    ['i1x2e', 'BENCODE_SYNTAX'],
    ['i+1e', 'BENCODE_SYNTAX'],
    ['i--1e', 'BENCODE_SYNTAX'],
    ['i 1e', 'BENCODE_SYNTAX'],
    ['i1.5e', 'BENCODE_SYNTAX'],
    ['3x:abc', 'BENCODE_SYNTAX'],
    ['-1:a', 'BENCODE_SYNTAX'],
    ['x', 'BENCODE_SYNTAX'],
    ['e', 'BENCODE_SYNTAX'],
    ['i1', 'BENCODE_TRUNCATED'],
    ['i', 'BENCODE_TRUNCATED'],
    ['i-', 'BENCODE_TRUNCATED'],
    ['5:abc', 'BENCODE_TRUNCATED'],
    ['12', 'BENCODE_TRUNCATED'],
    ['99999999999999999999:a', 'BENCODE_TRUNCATED'],
    ['l', 'BENCODE_TRUNCATED'],
    ['li1e', 'BENCODE_TRUNCATED'],
    ['d', 'BENCODE_TRUNCATED'],
    ['d1:a', 'BENCODE_TRUNCATED'],
    ['d1:ai1e', 'BENCODE_TRUNCATED'],
    ['i1ei2e', 'BENCODE_TRAILING'],
    ['lee', 'BENCODE_TRAILING'],
    ['4:spam ', 'BENCODE_TRAILING'],
    ['d1:bi1e1:ai2ee', 'BENCODE_UNSORTED_KEYS'],
    ['d2:aai1e1:ai2ee', 'BENCODE_UNSORTED_KEYS'],
    ['d1:ai1e1:ai2ee', 'BENCODE_DUPLICATE_KEY'],
    ['di1ei2ee', 'BENCODE_KEY_NOT_STRING'],
    ['dli1eei2ee', 'BENCODE_KEY_NOT_STRING'],
    ['', 'BENCODE_EMPTY']
  ])('refuses %j with %s', (input, expected) => {
    expect(code(() => dec(input))).toBe(expected)
  })

  it('says the byte offset in messages', () => {
    expect(() => dec('li1ei03ee')).toThrow(/at byte offset 4/)
    expect(() => dec('d1:bi1e1:ai2ee')).toThrow(/offset 7/)
  })

  it('orders keys by raw bytes, not by UTF-16 or locale', () => {
    // 0xC3 sorts after 'z' as a byte; a locale-aware compare would put "é" before "z"
    const v = decode(Buffer.concat([b('d1:zi1e2:'), Buffer.from('é'), b('i2ee')])) as BDict
    expect(v.size).toBe(2)
    expect(code(() => decode(Buffer.concat([b('d2:'), Buffer.from('é'), b('i2e1:zi1ee')])))).toBe('BENCODE_UNSORTED_KEYS')
    // upper case sorts before lower case
    expect(code(() => dec('d1:ai1e1:Bi2ee'))).toBe('BENCODE_UNSORTED_KEYS')
    expect((dec('d1:Bi2e1:ai1ee') as BDict).size).toBe(2)
  })

  it('keeps keys as raw latin1 strings and treats __proto__ as an ordinary key', () => {
    const v = decode(Buffer.concat([b('d9:__proto__i1e2:'), Buffer.from([0xff, 0x00]), b('i2ee')])) as BDict
    expect(v.get('__proto__')).toBe(1)
    expect(v.get('\xff\x00')).toBe(2)
    expect(Object.getPrototypeOf(v)).toBe(Map.prototype)
  })

  it('returns byte strings as views into the input', () => {
    const input = b('l3:abce')
    const [s] = decode(input) as [Uint8Array]
    expect(s.buffer).toBe(input.buffer)
    expect(s.byteOffset).toBe(input.byteOffset + 3)
  })

  it('works on a Uint8Array that is a slice of a larger buffer', () => {
    const outer = b('xxxxd1:ai7eexxx')
    const inner = new Uint8Array(outer.buffer, outer.byteOffset + 4, 8)
    expect((decode(inner) as BDict).get('a')).toBe(7)
  })

  it('limits nesting depth', () => {
    expect(dec('l'.repeat(64) + 'e'.repeat(64))).toBeDefined()
    expect(code(() => dec('l'.repeat(65) + 'e'.repeat(65)))).toBe('BENCODE_DEPTH')
    expect(code(() => decode(b('lllleeee'), { maxDepth: 3 }))).toBe('BENCODE_DEPTH')
    expect(code(() => decode(b('d1:ad1:ad1:adeeee'), { maxDepth: 3 }))).toBe('BENCODE_DEPTH')
    // a deep hostile input fails cleanly instead of overflowing the stack
    expect(code(() => dec('l'.repeat(1_000_000)))).toBe('BENCODE_DEPTH')
  })

  it('limits the number of items', () => {
    expect(dec('l' + 'i1e'.repeat(9) + 'e')).toHaveLength(9)
    expect(code(() => decode(b('l' + 'i1e'.repeat(9) + 'e'), { maxItems: 9 }))).toBe('BENCODE_TOO_MANY_ITEMS')
    expect(decode(b('l' + 'i1e'.repeat(9) + 'e'), { maxItems: 10 })).toHaveLength(9)
    // keys count too
    expect(code(() => decode(b('d1:ai1e1:bi1ee'), { maxItems: 4 }))).toBe('BENCODE_TOO_MANY_ITEMS')
    expect(code(() => decode(b('l' + '0:'.repeat(1_000_001) + 'e')))).toBe('BENCODE_TOO_MANY_ITEMS')
  })

  it('refuses bad options and non-byte input with coded errors', () => {
    expect(code(() => decode(b('i1e'), { maxDepth: 0 }))).toBe('BENCODE_OPTIONS')
    expect(code(() => decode(b('i1e'), { maxDepth: 1e9 }))).toBe('BENCODE_OPTIONS')
    expect(code(() => decode('i1e' as unknown as Uint8Array))).toBe('BENCODE_INPUT')
    expect(code(() => decodePrefix(b('i1e'), 4))).toBe('BENCODE_OPTIONS')
    expect(code(() => decodePrefix(b('i1e'), 3))).toBe('BENCODE_EMPTY')
  })
})

describe('decodePrefix and decodeWithSpans', () => {
  it('decodes one value and says where it ended', () => {
    const buf = b('d8:msg_typei1e5:piecei0eeRAWBYTES')
    const { value, end } = decodePrefix(buf)
    expect((value as BDict).get('msg_type')).toBe(1)
    expect(buf.subarray(end).toString()).toBe('RAWBYTES')
    expect(decodePrefix(buf, end - 4)).toEqual({ value: 0, end: end - 1 })
    expect(decodePrefix(b('xxi5eyy'), 2)).toEqual({ value: 5, end: 5 })
  })

  it('still refuses malformed values', () => {
    expect(code(() => decodePrefix(b('i03eabc')))).toBe('BENCODE_LEADING_ZERO')
  })

  it('records the spans of top-level dict values', () => {
    const buf = b('d1:ai1e4:infod1:xi2ee1:zl1:qee')
    const { spans } = decodeWithSpans(buf)
    expect(spans.get('info')).toEqual([13, 21])
    expect(buf.subarray(13, 21).toString()).toBe('d1:xi2ee')
    expect(spans.get('z')).toEqual([24, 29])
    expect(spans.has('x')).toBe(false)
    expect(code(() => decodeWithSpans(b('dei1e')))).toBe('BENCODE_TRAILING')
  })
})

describe('encode', () => {
  it('encodes every type canonically', () => {
    expect(enc(42)).toBe('i42e')
    expect(enc(-7)).toBe('i-7e')
    expect(enc(0)).toBe('i0e')
    expect(enc(-0)).toBe('i0e')
    expect(enc('spam')).toBe('4:spam')
    expect(enc('é')).toBe('2:\xc3\xa9')
    expect(enc(new Uint8Array([0, 255]))).toBe('2:\x00\xff')
    expect(enc([1, 'a', []])).toBe('li1e1:alee')
    expect(enc(true)).toBe('i1e')
    expect(enc(false)).toBe('i0e')
    expect(enc(new Map([['b', 1], ['a', 2]]))).toBe('d1:ai2e1:bi1ee')
    expect(enc({ zeta: 1, alpha: 'x', skipped: undefined })).toBe('d5:alpha1:x4:zetai1ee')
  })

  it('sorts keys by raw bytes', () => {
    // UTF-16 order puts U+FF61 (EF BD A1) after U+10000 (F0 90 80 80 as UTF-8, D800 as UTF-16); bytes do not
    const out = encode({ '\u{10000}': 1, '\uff61': 2, B: 3, a: 4 })
    const keys = [...(decode(out) as BDict).keys()].map(k => Buffer.from(k, 'latin1').toString('utf8'))
    expect(keys).toEqual(['B', 'a', '\uff61', '\u{10000}'])
    // Map keys are raw bytes: 0xff after 'z'
    expect(enc(new Map([['\xff', 1], ['z', 2]]))).toBe('d1:zi2e1:\xffi1ee')
  })

  it('refuses what bencode cannot carry', () => {
    expect(code(() => encode(1.5))).toBe('BENCODE_NOT_INTEGER')
    expect(code(() => encode(Number.NaN))).toBe('BENCODE_NOT_INTEGER')
    expect(code(() => encode(Infinity))).toBe('BENCODE_NOT_INTEGER')
    expect(code(() => encode(2 ** 53))).toBe('BENCODE_INT_RANGE')
    expect(code(() => encode(null as never))).toBe('BENCODE_UNENCODABLE')
    expect(code(() => encode(10n as never))).toBe('BENCODE_UNENCODABLE')
    expect(code(() => encode(new Date() as never))).toBe('BENCODE_UNENCODABLE')
    expect(code(() => encode(new Map([['\u0100', 1]])))).toBe('BENCODE_BAD_KEY')
    const cyclic: BValue[] = []
    cyclic.push(cyclic)
    expect(code(() => encode(cyclic))).toBe('BENCODE_DEPTH')
  })

  it('grows its buffer for large values', () => {
    const big = randomBytes(300_000)
    const out = encode({ a: big, b: [big, big] })
    const v = decode(out) as BDict
    expect(Buffer.compare(v.get('a') as Uint8Array, big)).toBe(0)
    expect(out.length).toBe(1 + 3 + 300_007 + 3 + 1 + 2 * 300_007 + 1 + 1)
    expect(Buffer.compare(encode(v), out)).toBe(0)
  })

  it('round-trips any value: decode(encode(v)) is v and encode(decode(x)) is x', () => {
    const value: fc.Arbitrary<BValue> = fc.letrec<{ v: BValue }>(tie => ({
      v: fc.oneof(
        { depthSize: 'small', withCrossShrink: true },
        fc.maxSafeInteger(),
        fc.uint8Array({ maxLength: 20 }),
        fc.array(tie('v'), { maxLength: 4 }),
        fc.array(fc.tuple(fc.string({ unit: 'binary', maxLength: 6 }).map(s => Buffer.from(s).toString('latin1')), tie('v')), { maxLength: 4 })
          .map(entries => new Map(entries))
      )
    })).v
    fc.assert(fc.property(value, v => {
      const bytes = encode(v)
      const back = decode(bytes)
      expect(normalize(back)).toEqual(normalize(v))
      expect(Buffer.compare(encode(back), bytes)).toBe(0)
    }), { seed: 42, numRuns: 2000 })
  })

  it('decodes a 100 KB .torrent (500 files) back to what was encoded (its speed is bench/wire.ts)', () => {
    const files = Array.from({ length: 500 }, (_, i) => ({ length: i * 1000 + 1, path: ['some folder', `file number ${i}.bin`] }))
    const torrent = encode({ announce: 'http://tracker.example/announce', info: { files, name: 'x', 'piece length': 16384, pieces: randomBytes(20 * 3000) } })
    expect(torrent.length).toBeGreaterThan(90_000)
    expect(Buffer.from(encode(decode(torrent) as Encodable)).equals(torrent)).toBe(true)
  })
})

/** Maps compare by entries in key order; byte strings as plain arrays. */
function normalize (v: BValue): unknown {
  if (v instanceof Uint8Array) return [...v]
  if (Array.isArray(v)) return v.map(normalize)
  if (v instanceof Map) return [...v.entries()].sort(([a], [b]) => a < b ? -1 : 1).map(([k, x]) => [k, normalize(x)])
  return v
}

describe('typed access', () => {
  const d = decode(encode({ n: 5, s: 'héllo', bad: Buffer.from([0xff, 0xfe]), l: [1], d: { x: 1 } })) as BDict

  it('reads typed fields', () => {
    expect(getInt(d, 'n')).toBe(5)
    expect(getString(d, 's')).toBe('héllo')
    expect([...getBytes(d, 'bad')]).toEqual([0xff, 0xfe])
    expect(getList(d, 'l')).toEqual([1])
    expect(getDict(d, 'd').get('x')).toBe(1)
    expect(optInt(d, 'missing')).toBeUndefined()
    expect(optString(d, 'bad', { lossy: true })).toBe('\ufffd\ufffd')
  })

  it('names the field and uses the caller family in errors', () => {
    expect(() => getInt(d, 'missing', { family: 'TORRENT', where: 'info' })).toThrow(expect.objectContaining({ code: 'TORRENT_MISSING_FIELD', message: 'info.missing is missing' }))
    expect(() => getInt(d, 's', { family: 'EXT' })).toThrow(expect.objectContaining({ code: 'EXT_BAD_FIELD', message: 's must be an integer' }))
    expect(code(() => getString(d, 'n'))).toBe('BENCODE_BAD_FIELD')
    expect(code(() => getString(d, 'bad', { family: 'TORRENT' }))).toBe('TORRENT_BAD_UTF8')
    expect(code(() => getDict(d, 'l'))).toBe('BENCODE_BAD_FIELD')
    expect(code(() => getList(d, 'd'))).toBe('BENCODE_BAD_FIELD')
    expect(code(() => getBytes(d, 'l'))).toBe('BENCODE_BAD_FIELD')
  })
})
