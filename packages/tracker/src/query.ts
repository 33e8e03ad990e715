/** Strict parsing of tracker query strings (percent-decoded to raw bytes). */
import { TrackerError } from './errors.js'

export type Query = Map<string, Buffer[]>

function hexVal (c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30
  if (c >= 0x41 && c <= 0x46) return c - 0x37
  if (c >= 0x61 && c <= 0x66) return c - 0x57
  return -1
}

/** Percent-decodes `s[from, to)`; '+' is a space (form encoding). Throws on a bad escape. */
function unescape (s: string, from: number, to: number): Buffer {
  const out = Buffer.allocUnsafe(to - from)
  let n = 0
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i)
    if (c === 0x25) {
      const h = i + 2 < to ? hexVal(s.charCodeAt(i + 1)) : -1
      const l = i + 2 < to ? hexVal(s.charCodeAt(i + 2)) : -1
      if (h < 0 || l < 0) throw new TrackerError('TRACKER_BAD_ENCODING', 'bad percent-encoding')
      out[n++] = (h << 4) | l
      i += 2
    } else if (c === 0x2b) {
      out[n++] = 0x20
    } else if (c > 0x7e || c < 0x21) {
      throw new TrackerError('TRACKER_BAD_ENCODING', 'bad percent-encoding')
    } else {
      out[n++] = c
    }
  }
  return out.subarray(0, n)
}

/** Parses `a=b&c=d`; every parameter may appear once except those in `repeatable`. */
export function parseQuery (qs: string, repeatable?: string): Query {
  const q: Query = new Map()
  let i = 0
  while (i <= qs.length) {
    let amp = qs.indexOf('&', i)
    if (amp < 0) amp = qs.length
    if (amp > i) {
      let eq = qs.indexOf('=', i)
      if (eq < 0 || eq > amp) eq = amp
      const key = unescape(qs, i, eq).toString('latin1')
      const value = eq < amp ? unescape(qs, eq + 1, amp) : Buffer.alloc(0)
      const prev = q.get(key)
      if (prev === undefined) q.set(key, [value])
      else if (key === repeatable) prev.push(value)
      else throw new TrackerError('TRACKER_DUPLICATE_PARAM', `duplicate parameter: ${key}`)
    }
    i = amp + 1
  }
  return q
}

export function one (q: Query, key: string): Buffer | undefined {
  return q.get(key)?.[0]
}

/** A non-negative decimal integer ≤ 2^53 (at most 16 digits). */
export function intParam (q: Query, key: string): number | undefined {
  const b = one(q, key)
  if (b === undefined) return undefined
  if (b.length === 0 || b.length > 16) throw new TrackerError('TRACKER_BAD_PARAM', `invalid ${key}`)
  let v = 0
  for (const c of b) {
    if (c < 0x30 || c > 0x39) throw new TrackerError('TRACKER_BAD_PARAM', `invalid ${key}`)
    v = v * 10 + (c - 0x30)
  }
  if (v > 2 ** 53) throw new TrackerError('TRACKER_BAD_PARAM', `invalid ${key}`)
  return v
}
