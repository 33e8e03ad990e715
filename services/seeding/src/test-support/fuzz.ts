/**
 * Input generators for fuzzing the bencode, .torrent and extension-message decoders: valid seed
 * encodings of each kind, and mutations of them that keep enough structure to reach the deep
 * validation paths (tree edits: unsorted or duplicate keys, wrong types, bad lengths, hostile path
 * components; byte edits: flips, inserts, deletes, splices, rewritten numbers).
 *
 * Shared by src/fuzz.test.ts (vitest) and bench/fuzz.ts (node --experimental-strip-types), so this
 * file imports nothing relative and uses only erasable TypeScript.
 */

export interface Rng {
  /** A uniform integer in [0, n). */
  int: (n: number) => number
  /** True with probability p. */
  chance: (p: number) => boolean
}

/** mulberry32: tiny, fast, and good enough to pick mutations. */
export function makeRng (seed: number): Rng {
  let s = seed >>> 0
  const next = (): number => {
    s = (s + 0x6d2b79f5) >>> 0
    let t = s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  return {
    int: (n) => Math.floor(next() * n),
    chance: (p) => next() < p
  }
}

function pick<T> (r: Rng, items: readonly T[]): T {
  return items[r.int(items.length)] as T
}

function randomBytes (r: Rng, n: number): Uint8Array {
  const out = new Uint8Array(n)
  for (let i = 0; i < n; i++) out[i] = r.int(256)
  return out
}

// --- a bencode tree that may be malformed on purpose ---------------------------------------------

/** `text` is written verbatim, so an integer may be "-0" or "01"; `len` overrides a string's length prefix. */
export type Loose =
  | { t: 'i', text: string }
  | { t: 's', bytes: Uint8Array, len?: string }
  | { t: 'l', items: Loose[], open?: boolean }
  | { t: 'd', entries: Array<[Loose, Loose]>, open?: boolean }
  /** Bytes written as they are (a pre-encoded subtree). */
  | { t: 'raw', bytes: Uint8Array }

export type Plain = number | string | Uint8Array | Plain[] | { [key: string]: Plain | undefined }

const utf8 = new TextEncoder()

function compareBytes (a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return (a[i] as number) - (b[i] as number)
  return a.length - b.length
}

/** The canonical tree of a plain value (keys sorted by their UTF-8 bytes). */
export function loose (v: Plain): Loose {
  if (typeof v === 'number') return { t: 'i', text: String(v) }
  if (typeof v === 'string') return { t: 's', bytes: utf8.encode(v) }
  if (v instanceof Uint8Array) return { t: 's', bytes: v }
  if (Array.isArray(v)) return { t: 'l', items: v.map(loose) }
  const entries: Array<[Loose, Loose]> = []
  const keys = Object.keys(v).filter(k => v[k] !== undefined).map(k => ({ k, b: utf8.encode(k) })).sort((x, y) => compareBytes(x.b, y.b))
  for (const { k, b } of keys) entries.push([{ t: 's', bytes: b }, loose(v[k] as Plain)])
  return { t: 'd', entries }
}

/** A reusable output buffer: fuzzing encodes hundreds of thousands of small trees. */
let scratch = new Uint8Array(64 * 1024)
let at = 0

function room (n: number): void {
  if (at + n <= scratch.length) return
  const next = new Uint8Array(Math.max(scratch.length * 2, at + n))
  next.set(scratch.subarray(0, at))
  scratch = next
}

function putAscii (s: string): void {
  room(s.length)
  for (let i = 0; i < s.length; i++) scratch[at++] = s.charCodeAt(i) & 0xff
}

function putBytes (b: Uint8Array): void {
  room(b.length)
  scratch.set(b, at)
  at += b.length
}

/** Encodes a tree as written (no sorting, no checks); `edits` replace nodes by others while writing. */
export function encodeLoose (l: Loose, edits?: Map<Loose, Loose>): Uint8Array {
  at = 0
  const walk = (orig: Loose): void => {
    const n = edits?.get(orig) ?? orig
    switch (n.t) {
      case 'i': putAscii(`i${n.text}e`); break
      case 's': putAscii(`${n.len ?? n.bytes.length}:`); putBytes(n.bytes); break
      case 'raw': putBytes(n.bytes); break
      case 'l':
        putAscii('l')
        for (const item of n.items) walk(item)
        if (n.open !== true) putAscii('e')
        break
      case 'd':
        putAscii('d')
        for (const [k, v] of n.entries) { walk(k); walk(v) }
        if (n.open !== true) putAscii('e')
        break
    }
  }
  walk(l)
  return scratch.slice(0, at)
}

const encodings = new WeakMap<Loose, Uint8Array>()

/** The encoding of an unedited tree, computed once. */
function encoded (l: Loose): Uint8Array {
  let b = encodings.get(l)
  if (b === undefined) {
    b = encodeLoose(l)
    encodings.set(l, b)
  }
  return b
}

function concat (parts: Uint8Array[]): Uint8Array {
  let n = 0
  for (const p of parts) n += p.length
  const out = new Uint8Array(n)
  let o = 0
  for (const p of parts) { out.set(p, o); o += p.length }
  return out
}

/** A copy of one node whose child arrays may be changed without touching the original. */
function shallow (l: Loose): Loose {
  switch (l.t) {
    case 'l': return { t: 'l', items: l.items.slice(), ...(l.open === true ? { open: true } : {}) }
    case 'd': return { t: 'd', entries: l.entries.map(([k, v]) => [k, v]), ...(l.open === true ? { open: true } : {}) }
    default: return { ...l }
  }
}

const nodeLists = new WeakMap<Loose, Loose[]>()

function nodes (root: Loose): Loose[] {
  let out = nodeLists.get(root)
  if (out !== undefined) return out
  out = []
  const visit = (l: Loose): void => {
    out!.push(l)
    if (l.t === 'l') for (const item of l.items) visit(item)
    else if (l.t === 'd') for (const [k, v] of l.entries) { visit(k); visit(v) }
  }
  visit(root)
  nodeLists.set(root, out)
  return out
}

// --- seeds ---------------------------------------------------------------------------------------

/** A valid input: a bencoded tree, raw bytes after it (ut_metadata data), and the size to decode with. */
export interface Seed { tree: Loose, tail?: Uint8Array, size?: number }

const NAMES = ['a', 'b', 'Sub', 'é', 'x.txt', 'data.bin', '__proto__', 'constructor', 'Ω', 'file name', 'a-b', 'a.b']

export function bencodeSeeds (r: Rng, n: number): Seed[] {
  const value = (depth: number): Plain => {
    const k = r.int(depth > 3 ? 2 : 5)
    if (k === 0) return pick(r, [0, 1, -1, 42, 2 ** 53 - 1, -(2 ** 53 - 1), r.int(1e9) - 5e8])
    if (k === 1) return r.chance(0.5) ? pick(r, NAMES) : randomBytes(r, r.int(24))
    if (k === 2 || k === 3) return Array.from({ length: r.int(5) }, () => value(depth + 1))
    // no prototype, so a '__proto__' name is an ordinary key
    const o: Record<string, Plain> = Object.create(null)
    for (let i = r.int(5); i > 0; i--) o[pick(r, NAMES) + (r.chance(0.3) ? String(r.int(10)) : '')] = value(depth + 1)
    return o
  }
  return Array.from({ length: n }, () => ({ tree: loose(value(0)) }))
}

const TRACKERS = ['http://tracker.example/announce', 'udp://tracker.example:6969', 'https://t2.example/a', 'wss://ws.example', 'not a url']

export function torrentPlain (r: Rng): Plain {
  const pieceLength = 16384 << r.int(3)
  const multi = r.chance(0.6)
  const files: Array<{ length: number, path: string[] }> = []
  let total = 0
  const count = multi ? 1 + r.int(6) : 1
  for (let i = 0; i < count; i++) {
    const length = r.chance(0.15) ? 0 : r.int(100_000)
    total += length
    // a distinct last component per file keeps paths free of duplicates and file/folder clashes
    const path = [...Array.from({ length: r.int(3) }, () => pick(r, NAMES)), `f${i}`]
    files.push({ length, path })
  }
  if (total === 0) { files[0]!.length = 1; total = 1 }
  const info: Record<string, Plain | undefined> = {
    name: pick(r, NAMES),
    'piece length': pieceLength,
    pieces: randomBytes(r, 20 * Math.ceil(total / pieceLength)),
    private: r.chance(0.2) ? 1 : undefined,
    source: r.chance(0.1) ? 'SRC' : undefined
  }
  if (multi) info.files = files
  else info.length = total
  if (r.chance(0.1)) {
    info['meta version'] = 2
    info['file tree'] = { [pick(r, NAMES)]: { '': { length: total, 'pieces root': randomBytes(r, 32) } } }
    // v2-only: no v1 hashes
    if (r.chance(0.3)) info.pieces = undefined
  }
  return {
    announce: r.chance(0.8) ? pick(r, TRACKERS) : undefined,
    'announce-list': r.chance(0.4) ? [[pick(r, TRACKERS), pick(r, TRACKERS)], [pick(r, TRACKERS)]] : undefined,
    comment: r.chance(0.3) ? 'a comment' : undefined,
    'created by': r.chance(0.3) ? 'fuzz 1.0' : undefined,
    'creation date': r.chance(0.3) ? 1_700_000_000 : undefined,
    info,
    'url-list': r.chance(0.2) ? ['https://web.example/'] : undefined
  }
}

export function torrentSeeds (r: Rng, n: number): Seed[] {
  return Array.from({ length: n }, () => ({ tree: loose(torrentPlain(r)) }))
}

/** Just past the 64 KiB handshake cap; zeros, so it costs nothing to generate. */
const PAD = new Uint8Array(64 * 1024)

export function handshakeSeeds (r: Rng, n: number): Seed[] {
  const ext = ['ut_metadata', 'ut_pex', 'lt_donthave', 'upload_only', 'ut_holepunch', '__proto__']
  return Array.from({ length: n }, (_, i) => {
    const m: Record<string, Plain> = Object.create(null)
    for (let i = r.int(5); i > 0; i--) m[pick(r, ext)] = r.int(8)
    return {
      tree: loose({
        e: r.chance(0.3) ? r.int(2) : undefined,
        ipv4: r.chance(0.2) ? randomBytes(r, 4) : undefined,
        m,
        // one seed in 50 sits right at the size cap
        ...(i % 50 === 49 ? { pad: PAD } : {}),
        metadata_size: r.chance(0.5) ? 1 + r.int(100_000) : undefined,
        p: r.chance(0.7) ? 1 + r.int(65535) : undefined,
        reqq: r.chance(0.5) ? 1 + r.int(2000) : undefined,
        upload_only: r.chance(0.2) ? 1 : undefined,
        v: r.chance(0.7) ? pick(r, ['qBittorrent/4.5.2', 'Transmission 3.00', 'btt-node 0.1.0', 'µTorrent']) : undefined,
        yourip: r.chance(0.4) ? randomBytes(r, r.chance(0.5) ? 4 : 16) : undefined
      })
    }
  })
}

export function pexSeeds (r: Rng, n: number): Seed[] {
  return Array.from({ length: n }, () => {
    // some lists sit around the 200-peer cap
    const big = r.chance(0.2)
    const a4 = big ? 150 + r.int(60) : r.int(20)
    const a6 = big ? r.int(60) : r.int(6)
    return {
      tree: loose({
        added: randomBytes(r, 6 * a4),
        'added.f': r.chance(0.8) ? randomBytes(r, a4) : undefined,
        added6: r.chance(0.5) ? randomBytes(r, 18 * a6) : undefined,
        'added6.f': r.chance(0.4) ? randomBytes(r, a6) : undefined,
        dropped: randomBytes(r, 6 * r.int(10)),
        dropped6: r.chance(0.3) ? randomBytes(r, 18 * r.int(4)) : undefined
      })
    }
  })
}

export function metadataSeeds (r: Rng, n: number): Seed[] {
  return Array.from({ length: n }, () => {
    const size = 1 + r.int(60_000)
    const pieces = Math.ceil(size / 16384)
    const piece = r.int(pieces)
    const msgType = r.int(3)
    const known = r.chance(0.6) ? size : undefined
    if (msgType !== 1) return { tree: loose({ msg_type: msgType, piece }), ...(known !== undefined ? { size: known } : {}) }
    const tail = randomBytes(r, Math.min(16384, size - piece * 16384))
    return { tree: loose({ msg_type: 1, piece, total_size: size }), tail, ...(known !== undefined ? { size: known } : {}) }
  })
}

// --- mutations -----------------------------------------------------------------------------------

const INT_TEXTS = ['0', '-0', '00', '01', '-01', '', '-', '+1', ' 1', '1.5', '1e3', '9007199254740991', '9007199254740992', '-9007199254740992', '99999999999999999999', '-1', '16384', '65536', '256', '255']
const HOSTILE_STRINGS = ['', '.', '..', 'a/b', 'a\\b', 'a\0b', '__proto__', 'http://t.example/a', 'udp://x:1', 'ut_metadata', 'pieces', 'files', 'length', 'path', 'name']

/**
 * Edits 1–3 nodes of a seed tree. The seed is shared, so edits are recorded as replacements applied
 * while encoding; a subtree inserted elsewhere goes in pre-encoded, so no edit can make a cycle.
 */
function mutateTree (tree: Loose, r: Rng): Map<Loose, Loose> {
  const edits = new Map<Loose, Loose>()
  const all = nodes(tree)
  const raw = (l: Loose): Loose => ({ t: 'raw', bytes: encoded(l) })
  for (let round = 1 + r.int(3); round > 0; round--) {
    const orig = pick(r, all)
    const n = shallow(edits.get(orig) ?? orig)
    edits.set(orig, n)
    switch (n.t) {
      case 'i':
        n.text = r.chance(0.7) ? pick(r, INT_TEXTS) : String(r.int(2 ** 31) - 2 ** 30)
        break
      case 's': {
        const k = r.int(4)
        if (k === 0) n.len = pick(r, ['0', '00', '01', '-1', String(n.bytes.length + 1), String(Math.max(0, n.bytes.length - 1)), '99999999999', ''])
        else if (k === 1) n.bytes = utf8.encode(pick(r, HOSTILE_STRINGS))
        else if (k === 2) n.bytes = new Uint8Array([0xff, 0xfe, 0xc3, 0x28].slice(0, 1 + r.int(4)))
        else n.bytes = randomBytes(r, r.chance(0.5) ? 20 * r.int(4) : r.int(40))
        break
      }
      case 'l': {
        const k = r.int(6)
        if (k === 0 && n.items.length > 0) n.items.splice(r.int(n.items.length), 1)
        else if (k === 1 && n.items.length > 0) n.items.push(pick(r, n.items))
        else if (k === 2) n.open = true
        else if (k === 3) n.items.push(deep(r))
        else if (k === 4) n.items.push(raw(pick(r, all)))
        else n.items.reverse()
        break
      }
      case 'd': {
        const k = r.int(8)
        const e = n.entries
        if (k === 0 && e.length > 1) {
          const i = r.int(e.length - 1)
          const tmp = e[i] as [Loose, Loose]
          e[i] = e[i + 1] as [Loose, Loose]
          e[i + 1] = tmp
        } else if (k === 1 && e.length > 0) {
          const i = r.int(e.length)
          e.splice(i, 0, e[i] as [Loose, Loose])
        } else if (k === 2 && e.length > 0) {
          e.splice(r.int(e.length), 1)
        } else if (k === 3 && e.length > 0) {
          const i = r.int(e.length)
          e[i] = [{ t: 'i', text: '1' }, (e[i] as [Loose, Loose])[1]]
        } else if (k === 4 && e.length > 0) {
          // same key, a value of another kind
          const i = r.int(e.length)
          e[i] = [(e[i] as [Loose, Loose])[0], raw(pick(r, all))]
        } else if (k === 5) {
          n.open = true
        } else if (k === 6 && e.length > 0) {
          const i = r.int(e.length)
          e[i] = [(e[i] as [Loose, Loose])[0], deep(r)]
        } else {
          e.push([{ t: 's', bytes: utf8.encode(pick(r, HOSTILE_STRINGS)) }, { t: 'i', text: pick(r, INT_TEXTS) }])
        }
        break
      }
      case 'raw':
        break
    }
  }
  return edits
}

/** Nesting around the depth limits (64 by default, less for extension messages). */
function deep (r: Rng): Loose {
  let l: Loose = { t: 'i', text: '1' }
  for (let i = pick(r, [3, 5, 17, 63, 64, 65, 200]); i > 0; i--) l = r.chance(0.5) ? { t: 'l', items: [l] } : { t: 'd', entries: [[{ t: 's', bytes: utf8.encode('a') }, l]] }
  return l
}

const TOKENS = ['i', 'e', 'l', 'd', ':', '-', '0', '1', '9', '1:a', '2:ab', 'i0e', 'i-1e', 'le', 'de', 'd1:ai1ee', '4:spam', '00', '20:', '4:info', '4:name', '5:files', '6:pieces']

function mutateBytes (input: Uint8Array, r: Rng, donor: Uint8Array): Uint8Array {
  let b = input
  for (let round = 1 + r.int(4); round > 0; round--) {
    const pos = r.int(b.length + 1)
    switch (r.int(7)) {
      case 0: if (b.length > 0) { b = b.slice(); const p = Math.min(pos, b.length - 1); b[p] = (b[p] as number) ^ (1 << r.int(8)) } break
      case 1: if (b.length > 0) { b = b.slice(); b[Math.min(pos, b.length - 1)] = utf8.encode(pick(r, TOKENS))[0] as number } break
      case 2: b = concat([b.subarray(0, pos), utf8.encode(pick(r, TOKENS)), b.subarray(pos)]); break
      case 3: b = concat([b.subarray(0, pos), b.subarray(Math.min(b.length, pos + 1 + r.int(16)))]); break
      case 4: {
        const from = r.int(donor.length + 1)
        const chunk = donor.subarray(from, from + r.int(64))
        b = r.chance(0.5) ? concat([b.subarray(0, pos), chunk, b.subarray(pos)]) : concat([b.subarray(0, pos), chunk, b.subarray(Math.min(b.length, pos + chunk.length))])
        break
      }
      case 5: {
        // rewrite the next number (a string length or an integer)
        let s = pos
        while (s < b.length && !((b[s] as number) >= 0x30 && (b[s] as number) <= 0x39)) s++
        let e = s
        while (e < b.length && (b[e] as number) >= 0x30 && (b[e] as number) <= 0x39) e++
        if (s < b.length) b = concat([b.subarray(0, s), utf8.encode(pick(r, INT_TEXTS)), b.subarray(e)])
        break
      }
      default: b = b.subarray(0, pos)
    }
  }
  return b
}

/** One fuzz input built from the seeds; `size` is the metadata size to decode ut_metadata with. */
export function fuzzInput (seeds: Seed[], r: Rng): { bytes: Uint8Array, size?: number } {
  const seed = pick(r, seeds)
  const strategy = r.int(20)
  if (strategy === 0) return { bytes: randomBytes(r, r.int(64)) }
  if (strategy <= 2) {
    const parts: Uint8Array[] = []
    for (let i = r.int(16); i > 0; i--) parts.push(utf8.encode(pick(r, TOKENS)))
    return { bytes: concat(parts) }
  }
  const size = seed.size !== undefined && r.chance(0.9) ? seed.size : undefined
  const withTail = (head: Uint8Array): Uint8Array => {
    if (seed.tail === undefined) return head
    const tail = r.chance(0.8) ? seed.tail : seed.tail.subarray(0, r.int(seed.tail.length + 2))
    return concat([head, tail])
  }
  let bytes: Uint8Array
  if (strategy === 3) bytes = withTail(encoded(seed.tree))
  else if (strategy < 12) bytes = withTail(encodeLoose(seed.tree, mutateTree(seed.tree, r)))
  else bytes = mutateBytes(withTail(encoded(seed.tree)), r, encoded(pick(r, seeds).tree))
  return size !== undefined ? { bytes, size } : { bytes }
}
