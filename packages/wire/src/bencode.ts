import { WireError } from './errors.js'

/**
 * A strict bencode codec (BEP 3). Decoding accepts only the canonical encoding of a value: no
 * leading zeros, no `i-0e`, dict keys sorted by raw bytes and unique, nothing after the value.
 * Strict decoding makes `encode(decode(x))` equal `x` byte for byte, which is what lets an infohash
 * be computed from either the original bytes or the decoded dict.
 *
 * Byte strings are returned as views into the input (no copy): keep the input alive and unmodified
 * while the decoded value is in use. Integers are JS numbers; anything outside the safe integer
 * range is refused rather than rounded.
 */

export type BValue = number | Uint8Array | BValue[] | BDict
/** Keys are the raw key bytes as a 'latin1' string (one char per byte), so round-trips are exact. */
export type BDict = Map<string, BValue>

export interface DecodeOptions {
  /** Deepest nesting of lists and dicts. Default 64: real metadata nests at most 5 deep. */
  maxDepth?: number
  /** Most values (including dict keys) in one input. Default 1,000,000. */
  maxItems?: number
}

export const DEFAULT_MAX_DEPTH = 64
export const DEFAULT_MAX_ITEMS = 1_000_000
/** The decoder recurses once per level; beyond this a caller-given maxDepth could exhaust the stack. */
const MAX_DEPTH_LIMIT = 1000
/** Safe integers have at most 16 decimal digits. */
const MAX_INT_DIGITS = 16

const C_0 = 0x30
const C_9 = 0x39
const C_COLON = 0x3a
const C_MINUS = 0x2d
const C_D = 0x64
const C_E = 0x65
const C_I = 0x69
const C_L = 0x6c

function fail (code: string, message: string, offset: number): never {
  throw new WireError(code, `${message} at byte offset ${offset}`)
}

class Decoder {
  pos: number
  items = 0
  /** Byte spans of the values of a top-level dict, recorded only when asked for. */
  spans: Map<string, [number, number]> | undefined

  constructor (readonly buf: Buffer, offset: number, readonly maxDepth: number, readonly maxItems: number) {
    this.pos = offset
  }

  value (depth: number): BValue {
    const buf = this.buf
    const pos = this.pos
    if (pos >= buf.length) fail('BENCODE_TRUNCATED', 'input ends where a value was expected', pos)
    if (++this.items > this.maxItems) fail('BENCODE_TOO_MANY_ITEMS', `more than ${this.maxItems} values`, pos)
    const c = buf[pos] as number
    if (c >= C_0 && c <= C_9) {
      const start = this.stringStart()
      return buf.subarray(start, this.pos)
    }
    if (c === C_I) return this.int()
    if (c === C_L) {
      if (depth >= this.maxDepth) fail('BENCODE_DEPTH', `nesting deeper than ${this.maxDepth}`, pos)
      this.pos++
      const list: BValue[] = []
      for (;;) {
        if (this.pos >= buf.length) fail('BENCODE_TRUNCATED', `list opened at offset ${pos} is not terminated`, this.pos)
        if (buf[this.pos] === C_E) {
          this.pos++
          return list
        }
        list.push(this.value(depth + 1))
      }
    }
    if (c === C_D) {
      if (depth >= this.maxDepth) fail('BENCODE_DEPTH', `nesting deeper than ${this.maxDepth}`, pos)
      return this.dict(depth)
    }
    return fail('BENCODE_SYNTAX', `unexpected byte 0x${c.toString(16).padStart(2, '0')}`, pos)
  }

  private dict (depth: number): BDict {
    const buf = this.buf
    const open = this.pos++
    const spans = depth === 0 ? this.spans : undefined
    const map: BDict = new Map()
    let prev: string | undefined
    for (;;) {
      const at = this.pos
      if (at >= buf.length) fail('BENCODE_TRUNCATED', `dict opened at offset ${open} is not terminated`, at)
      const c = buf[at] as number
      if (c === C_E) {
        this.pos++
        return map
      }
      if (c < C_0 || c > C_9) fail('BENCODE_KEY_NOT_STRING', 'dict key is not a byte string', at)
      if (++this.items > this.maxItems) fail('BENCODE_TOO_MANY_ITEMS', `more than ${this.maxItems} values`, at)
      const start = this.stringStart()
      const key = latin1(buf, start, this.pos)
      if (prev !== undefined) {
        // latin1 strings compare by char code, which is the raw byte order BEP 3 asks for
        if (key === prev) fail('BENCODE_DUPLICATE_KEY', `duplicate dict key "${printable(key)}"`, at)
        if (key < prev) fail('BENCODE_UNSORTED_KEYS', `dict key "${printable(key)}" is out of order after "${printable(prev)}"`, at)
      }
      prev = key
      const valueAt = this.pos
      map.set(key, this.value(depth + 1))
      spans?.set(key, [valueAt, this.pos])
    }
  }

  /** Reads `<length>:` and skips the bytes; returns where they start (this.pos is where they end). */
  private stringStart (): number {
    const buf = this.buf
    const at = this.pos
    let p = at
    if (buf[p] === C_0 && p + 1 < buf.length && isDigit(buf[p + 1] as number)) fail('BENCODE_LEADING_ZERO', 'string length has a leading zero', at)
    let n = 0
    while (p < buf.length) {
      const c = buf[p] as number
      if (c < C_0 || c > C_9) break
      n = n * 10 + (c - C_0)
      p++
    }
    if (p >= buf.length) fail('BENCODE_TRUNCATED', 'input ends inside a string length', at)
    if (buf[p] !== C_COLON) fail('BENCODE_SYNTAX', 'string length is not followed by ":"', p)
    p++
    // n may have lost precision if it has many digits, but then it is far beyond any input size
    if (n > buf.length - p) fail('BENCODE_TRUNCATED', `string of ${n} bytes runs past the end of input`, at)
    this.pos = p + n
    return p
  }

  private int (): number {
    const buf = this.buf
    const at = this.pos
    let p = at + 1
    let negative = false
    if (buf[p] === C_MINUS) {
      negative = true
      p++
    }
    const first = p
    let n = 0
    while (p < buf.length) {
      const c = buf[p] as number
      if (c < C_0 || c > C_9) break
      if (p - first < MAX_INT_DIGITS) n = n * 10 + (c - C_0)
      p++
    }
    if (p >= buf.length) fail('BENCODE_TRUNCATED', 'input ends inside an integer', at)
    if (buf[p] !== C_E) fail('BENCODE_SYNTAX', 'integer has a non-digit', p)
    const digits = p - first
    if (digits === 0) fail('BENCODE_SYNTAX', 'integer has no digits', at)
    if (buf[first] === C_0) {
      if (digits > 1) fail('BENCODE_LEADING_ZERO', 'integer has a leading zero', at)
      if (negative) fail('BENCODE_NEGATIVE_ZERO', 'integer is -0', at)
    }
    // rounding is monotonic, so a 16-digit value past 2^53 - 1 still compares above it
    if (digits > MAX_INT_DIGITS || n > Number.MAX_SAFE_INTEGER) fail('BENCODE_INT_RANGE', 'integer is outside the safe integer range', at)
    this.pos = p + 1
    return negative ? -n : n
  }
}

function isDigit (c: number): boolean {
  return c >= C_0 && c <= C_9
}

function latin1 (buf: Buffer, start: number, end: number): string {
  // short keys are the common case; building them by hand beats the native call's overhead
  if (end - start <= 12) {
    let s = ''
    for (let i = start; i < end; i++) s += String.fromCharCode(buf[i] as number)
    return s
  }
  return buf.toString('latin1', start, end)
}

/** A key for an error message: printable ASCII kept, anything else escaped, long keys cut. */
function printable (key: string): string {
  const cut = key.length > 64 ? key.slice(0, 64) + '…' : key
  return cut.replace(/[^\x20-\x7e]/g, ch => `\\x${ch.charCodeAt(0).toString(16).padStart(2, '0')}`)
}

function asBuffer (buf: unknown): Buffer {
  if (!(buf instanceof Uint8Array)) throw new WireError('BENCODE_INPUT', 'bencode input must be a Uint8Array')
  return Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength)
}

function limit (value: number | undefined, fallback: number, max: number, name: string): number {
  if (value === undefined) return fallback
  if (!Number.isInteger(value) || value < 1 || value > max) throw new WireError('BENCODE_OPTIONS', `${name} must be an integer 1..${max}`)
  return value
}

function decoder (buf: unknown, offset: number, opts: DecodeOptions | undefined): Decoder {
  const b = asBuffer(buf)
  if (!Number.isInteger(offset) || offset < 0 || offset > b.length) throw new WireError('BENCODE_OPTIONS', `offset ${offset} is outside the input`)
  if (offset === b.length) throw new WireError('BENCODE_EMPTY', offset === 0 ? 'input is empty' : `no value at byte offset ${offset}`)
  return new Decoder(
    b, offset,
    limit(opts?.maxDepth, DEFAULT_MAX_DEPTH, MAX_DEPTH_LIMIT, 'maxDepth'),
    limit(opts?.maxItems, DEFAULT_MAX_ITEMS, Number.MAX_SAFE_INTEGER, 'maxItems')
  )
}

/** Decodes exactly one value filling the whole buffer. */
export function decode (buf: Uint8Array, opts?: DecodeOptions): BValue {
  const d = decoder(buf, 0, opts)
  const value = d.value(0)
  if (d.pos !== d.buf.length) fail('BENCODE_TRAILING', `${d.buf.length - d.pos} bytes after the value`, d.pos)
  return value
}

/** Decodes one value starting at `offset` and says where it ended (anything may follow it). */
export function decodePrefix (buf: Uint8Array, offset = 0, opts?: DecodeOptions): { value: BValue, end: number } {
  const d = decoder(buf, offset, opts)
  const value = d.value(0)
  return { value, end: d.pos }
}

/**
 * Like `decode`, and also returns the byte span [start, end) of each value of the top-level dict
 * (empty when the value is not a dict): a .torrent's infohash is the sha1 of its `info` span.
 */
export function decodeWithSpans (buf: Uint8Array, opts?: DecodeOptions): { value: BValue, spans: Map<string, [number, number]> } {
  const d = decoder(buf, 0, opts)
  const spans = new Map<string, [number, number]>()
  d.spans = spans
  const value = d.value(0)
  if (d.pos !== d.buf.length) fail('BENCODE_TRAILING', `${d.buf.length - d.pos} bytes after the value`, d.pos)
  return { value, spans }
}

// --- encoding ------------------------------------------------------------------------------------

/**
 * What `encode` accepts: bencode values, plus for convenience JS strings (written as UTF-8),
 * booleans (1 / 0) and plain objects as dicts (keys written as UTF-8; undefined values skipped).
 * Map keys are raw bytes as latin1 strings, as `decode` returns them.
 */
export type Encodable = BValue | string | boolean | Encodable[] | Map<string, Encodable> | EncodableObject
export interface EncodableObject { [key: string]: Encodable | undefined }

/** Cyclic or absurdly deep inputs stop here instead of overflowing the stack. */
const MAX_ENCODE_DEPTH = 1000
const NON_LATIN1 = /[^\x00-\xff]/
const NON_ASCII = /[^\x00-\x7f]/

class Writer {
  buf = Buffer.allocUnsafe(256)
  pos = 0

  ensure (n: number): void {
    if (this.pos + n <= this.buf.length) return
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n))
    this.buf.copy(next, 0, 0, this.pos)
    this.buf = next
  }

  byte (c: number): void {
    if (this.pos >= this.buf.length) this.ensure(1)
    this.buf[this.pos++] = c
  }

  /** Writes a string of chars 0..255 as one byte each; by hand when short, where Buffer#write's overhead dominates. */
  ascii (s: string): void {
    const n = s.length
    this.ensure(n)
    if (n > 32) {
      this.pos += this.buf.write(s, this.pos, 'latin1')
      return
    }
    const buf = this.buf
    let p = this.pos
    for (let i = 0; i < n; i++) {
      const c = s.charCodeAt(i)
      // only keys can reach here with wider chars (lengths and integers are ASCII)
      if (c > 0xff) throw new WireError('BENCODE_BAD_KEY', 'Map keys must be latin1 strings (one char per byte)')
      buf[p++] = c
    }
    this.pos = p
  }

  int (v: number): void {
    this.byte(C_I)
    this.ascii(String(v))
    this.byte(C_E)
  }

  bytes (b: Uint8Array): void {
    this.ascii(`${b.length}:`)
    this.ensure(b.length)
    this.buf.set(b, this.pos)
    this.pos += b.length
  }

  text (s: string): void {
    if (s.length <= 32 && !NON_ASCII.test(s)) {
      this.ascii(`${s.length}:`)
      this.ascii(s)
      return
    }
    const n = Buffer.byteLength(s, 'utf8')
    this.ascii(`${n}:`)
    this.ensure(n)
    this.pos += this.buf.write(s, this.pos, n, 'utf8')
  }

  value (v: unknown, depth: number): void {
    if (depth > MAX_ENCODE_DEPTH) throw new WireError('BENCODE_DEPTH', `cannot encode values nested deeper than ${MAX_ENCODE_DEPTH} (a cycle?)`)
    if (typeof v === 'number') {
      if (!Number.isInteger(v)) throw new WireError('BENCODE_NOT_INTEGER', `cannot encode ${v}: bencode has only integers`)
      if (!Number.isSafeInteger(v)) throw new WireError('BENCODE_INT_RANGE', `cannot encode ${v}: outside the safe integer range`)
      this.int(v)
    } else if (v instanceof Uint8Array) {
      this.bytes(v)
    } else if (typeof v === 'string') {
      this.text(v)
    } else if (typeof v === 'boolean') {
      this.ascii(v ? 'i1e' : 'i0e')
    } else if (Array.isArray(v)) {
      this.byte(C_L)
      for (const item of v) this.value(item, depth + 1)
      this.byte(C_E)
    } else if (v instanceof Map) {
      const keys: string[] = []
      for (const k of v.keys()) {
        if (typeof k !== 'string') throw new WireError('BENCODE_BAD_KEY', 'Map keys must be latin1 strings (one char per byte)')
        keys.push(k)
      }
      keys.sort()
      this.byte(C_D)
      for (const k of keys) {
        this.key(k)
        this.value(v.get(k), depth + 1)
      }
      this.byte(C_E)
    } else if (typeof v === 'object' && v !== null && (Object.getPrototypeOf(v) === Object.prototype || Object.getPrototypeOf(v) === null)) {
      const obj = v as EncodableObject
      const raw: string[] = []
      const names: string[] = []
      for (const k of Object.keys(obj)) {
        if (obj[k] === undefined) continue
        raw.push(NON_ASCII.test(k) ? Buffer.from(k, 'utf8').toString('latin1') : k)
        names.push(k)
      }
      const order = raw.map((_, i) => i).sort((a, b) => (raw[a] as string) < (raw[b] as string) ? -1 : 1)
      this.byte(C_D)
      for (const i of order) {
        this.key(raw[i] as string)
        this.value(obj[names[i] as string], depth + 1)
      }
      this.byte(C_E)
    } else {
      throw new WireError('BENCODE_UNENCODABLE', `cannot encode a value of type ${v === null ? 'null' : typeof v}`)
    }
  }

  private key (k: string): void {
    if (k.length > 32 && NON_LATIN1.test(k)) throw new WireError('BENCODE_BAD_KEY', 'Map keys must be latin1 strings (one char per byte)')
    this.ascii(`${k.length}:`)
    this.ascii(k)
  }
}

/** Encodes a value canonically (dict keys sorted by raw bytes). */
export function encode (value: Encodable): Buffer {
  const w = new Writer()
  w.value(value, 0)
  // growing doubles the buffer; do not keep up to half of it unused when the output is large
  return w.buf.length - w.pos > 64 * 1024 ? Buffer.from(w.buf.subarray(0, w.pos)) : w.buf.subarray(0, w.pos)
}

// --- typed access ----------------------------------------------------------------------------------

/**
 * How a typed getter reports a missing or malformed field: codes are `<family>_MISSING_FIELD`,
 * `<family>_BAD_FIELD` and `<family>_BAD_UTF8`, and messages name `where.key`.
 */
export interface FieldContext {
  /** Error code family, e.g. 'TORRENT'. Default 'BENCODE'. */
  family?: string
  /** Where the dict sits, for messages, e.g. 'info'. */
  where?: string
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

function fieldName (key: string, ctx: FieldContext | undefined): string {
  return ctx?.where !== undefined ? `${ctx.where}.${printable(key)}` : printable(key)
}

function missing (key: string, ctx: FieldContext | undefined): never {
  throw new WireError(`${ctx?.family ?? 'BENCODE'}_MISSING_FIELD`, `${fieldName(key, ctx)} is missing`)
}

function badType (key: string, want: string, ctx: FieldContext | undefined): never {
  throw new WireError(`${ctx?.family ?? 'BENCODE'}_BAD_FIELD`, `${fieldName(key, ctx)} must be ${want}`)
}

export function isDict (v: BValue | undefined): v is BDict {
  return v instanceof Map
}

export function isBytes (v: BValue | undefined): v is Uint8Array {
  return v instanceof Uint8Array
}

export function optInt (dict: BDict, key: string, ctx?: FieldContext): number | undefined {
  const v = dict.get(key)
  if (v === undefined) return undefined
  if (typeof v !== 'number') return badType(key, 'an integer', ctx)
  return v
}

export function getInt (dict: BDict, key: string, ctx?: FieldContext): number {
  return optInt(dict, key, ctx) ?? missing(key, ctx)
}

export function optBytes (dict: BDict, key: string, ctx?: FieldContext): Uint8Array | undefined {
  const v = dict.get(key)
  if (v === undefined) return undefined
  if (!(v instanceof Uint8Array)) return badType(key, 'a byte string', ctx)
  return v
}

export function getBytes (dict: BDict, key: string, ctx?: FieldContext): Uint8Array {
  return optBytes(dict, key, ctx) ?? missing(key, ctx)
}

/**
 * A byte string read as UTF-8. Invalid UTF-8 is refused (`<family>_BAD_UTF8`) unless `lossy`, for
 * cosmetic fields such as comments that old clients wrote in other encodings.
 */
export function optString (dict: BDict, key: string, ctx?: FieldContext & { lossy?: boolean }): string | undefined {
  const v = optBytes(dict, key, ctx)
  if (v === undefined) return undefined
  return utf8(v, fieldName(key, ctx), ctx)
}

export function getString (dict: BDict, key: string, ctx?: FieldContext & { lossy?: boolean }): string {
  return optString(dict, key, ctx) ?? missing(key, ctx)
}

/** Bytes to a string, strictly unless `lossy`; `what` names the field in the error. */
export function utf8 (bytes: Uint8Array, what: string, ctx?: FieldContext & { lossy?: boolean }): string {
  const b = asBuffer(bytes)
  if (ctx?.lossy === true) return b.toString('utf8')
  try {
    return strictUtf8.decode(b)
  } catch {
    throw new WireError(`${ctx?.family ?? 'BENCODE'}_BAD_UTF8`, `${what} is not valid UTF-8`)
  }
}

export function optDict (dict: BDict, key: string, ctx?: FieldContext): BDict | undefined {
  const v = dict.get(key)
  if (v === undefined) return undefined
  if (!(v instanceof Map)) return badType(key, 'a dict', ctx)
  return v
}

export function getDict (dict: BDict, key: string, ctx?: FieldContext): BDict {
  return optDict(dict, key, ctx) ?? missing(key, ctx)
}

export function optList (dict: BDict, key: string, ctx?: FieldContext): BValue[] | undefined {
  const v = dict.get(key)
  if (v === undefined) return undefined
  if (!Array.isArray(v)) return badType(key, 'a list', ctx)
  return v
}

export function getList (dict: BDict, key: string, ctx?: FieldContext): BValue[] {
  return optList(dict, key, ctx) ?? missing(key, ctx)
}
