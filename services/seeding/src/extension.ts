import { isIP } from 'node:net'
import { decode, decodePrefix, encode, getInt, isDict, optBytes, optDict, optInt, utf8, type BDict, type BValue, type EncodableObject, type FieldContext } from '@btt/wire'
import { SeedingError } from './errors.js'

/**
 * Payload codecs for BEP 10 (extension protocol), BEP 9 (ut_metadata), BEP 11 (ut_pex) and
 * BEP 23 (compact peers). A payload is the bytes after the extended message id byte. Every size a
 * peer controls is capped; malformed bencode surfaces as BENCODE_* errors, everything else as EXT_*.
 */

export interface PeerAddr { host: string, port: number, flags?: number }

export interface ExtendedHandshake {
  /**
   * Extension name (raw bytes as latin1) → the id the peer wants for it. Entries with id 0 are kept:
   * BEP 10 uses 0 to switch an extension off that an earlier handshake turned on.
   */
  m: Map<string, number>
  port?: number
  /** Client name and version (lossy UTF-8). */
  v?: string
  /** Requests the peer queues; values above MAX_REQQ are clamped to it. */
  reqq?: number
  metadataSize?: number
  /** Our address as the peer sees it: 4 or 16 bytes. */
  yourip?: Uint8Array
  /** The whole dict, for keys this codec does not interpret. */
  dict: BDict
}

/** A handshake is a few hundred bytes; 64 KiB leaves room for any real one. */
export const MAX_EXT_HANDSHAKE = 64 * 1024
/** Largest info dict fetched over ut_metadata (BEP 9 suggests clients cap it; libtorrent uses 4 MiB). */
export const MAX_METADATA_SIZE = 16 * 1024 * 1024
export const METADATA_PIECE_SIZE = 16 * 1024
/** Queue depth above which a peer's reqq means nothing more to us. */
export const MAX_REQQ = 10_000
/** BEP 11 asks for at most 50 added and 50 dropped per message; 200 tolerates generous clients. */
export const MAX_PEX_PEERS = 200

const EXT: FieldContext = { family: 'EXT' }
const MAX_METADATA_MESSAGE = METADATA_PIECE_SIZE + 1024
const MAX_PEX_MESSAGE = 16 * 1024

function checkPayload (payload: unknown, max: number, what: string): Uint8Array {
  if (!(payload instanceof Uint8Array)) throw new SeedingError('EXT_INPUT', `${what} payload must be a Uint8Array`)
  if (payload.length > max) throw new SeedingError('EXT_TOO_LARGE', `${what} of ${payload.length} bytes exceeds ${max}`)
  return payload
}

// --- BEP 10 handshake ----------------------------------------------------------------------------

export function decodeExtendedHandshake (payload: Uint8Array): ExtendedHandshake {
  checkPayload(payload, MAX_EXT_HANDSHAKE, 'extended handshake')
  // real handshakes list ~10 extensions; 1,000 values bound the garbage one message can make
  const dict = decode(payload, { maxDepth: 16, maxItems: 1000 })
  if (!isDict(dict)) throw new SeedingError('EXT_NOT_DICT', 'extended handshake is not a dict')
  const m = new Map<string, number>()
  const rawM = optDict(dict, 'm', EXT)
  if (rawM !== undefined) {
    for (const [name, id] of rawM) {
      if (typeof id !== 'number' || id < 0 || id > 255) throw new SeedingError('EXT_BAD_EXT_ID', `extension ${JSON.stringify(name.slice(0, 64))} has id ${typeof id === 'number' ? id : 'of a non-integer type'}; ids are 0..255`)
      m.set(name, id)
    }
  }
  const hs: ExtendedHandshake = { m, dict }
  const port = optInt(dict, 'p', EXT)
  if (port !== undefined) {
    if (port < 1 || port > 65535) throw new SeedingError('EXT_BAD_PORT', `extended handshake port ${port} is not 1..65535`)
    hs.port = port
  }
  const v = optBytes(dict, 'v', EXT)
  if (v !== undefined) hs.v = utf8(v, 'v', { lossy: true })
  const reqq = optInt(dict, 'reqq', EXT)
  if (reqq !== undefined) {
    if (reqq < 1) throw new SeedingError('EXT_BAD_REQQ', `reqq ${reqq} must be at least 1`)
    hs.reqq = Math.min(reqq, MAX_REQQ)
  }
  const size = optInt(dict, 'metadata_size', EXT)
  if (size !== undefined) hs.metadataSize = checkMetadataSize(size)
  const yourip = optBytes(dict, 'yourip', EXT)
  if (yourip !== undefined) {
    if (yourip.length !== 4 && yourip.length !== 16) throw new SeedingError('EXT_BAD_FIELD', `yourip is ${yourip.length} bytes, not 4 or 16`)
    hs.yourip = yourip
  }
  return hs
}

export interface ExtendedHandshakeInit {
  m: Record<string, number>
  port?: number
  v?: string
  reqq?: number
  metadataSize?: number
  yourip?: Uint8Array
  /** More keys; the fields above win over these. */
  extra?: EncodableObject
}

export function encodeExtendedHandshake (h: ExtendedHandshakeInit): Uint8Array {
  const m: EncodableObject = {}
  for (const [name, id] of Object.entries(h.m)) {
    if (!Number.isInteger(id) || id < 0 || id > 255) throw new SeedingError('EXT_BAD_EXT_ID', `extension ${name} id ${id} is not 0..255`)
    m[name] = id
  }
  const out: EncodableObject = { ...h.extra, m }
  if (h.port !== undefined) {
    if (!Number.isInteger(h.port) || h.port < 1 || h.port > 65535) throw new SeedingError('EXT_BAD_PORT', `port ${h.port} is not 1..65535`)
    out.p = h.port
  }
  if (h.v !== undefined) out.v = h.v
  if (h.reqq !== undefined) {
    if (!Number.isInteger(h.reqq) || h.reqq < 1 || h.reqq > MAX_REQQ) throw new SeedingError('EXT_BAD_REQQ', `reqq ${h.reqq} is not 1..${MAX_REQQ}`)
    out.reqq = h.reqq
  }
  if (h.metadataSize !== undefined) out.metadata_size = checkMetadataSize(h.metadataSize)
  if (h.yourip !== undefined) {
    if (h.yourip.length !== 4 && h.yourip.length !== 16) throw new SeedingError('EXT_BAD_FIELD', 'yourip must be 4 or 16 bytes')
    out.yourip = h.yourip
  }
  return encode(out)
}

function checkMetadataSize (size: number): number {
  if (!Number.isInteger(size) || size < 1 || size > MAX_METADATA_SIZE) {
    throw new SeedingError('EXT_METADATA_SIZE', `metadata size ${size} is not 1..${MAX_METADATA_SIZE}`)
  }
  return size
}

// --- BEP 9 ut_metadata ---------------------------------------------------------------------------

export interface MetadataMessage {
  /** 0 request, 1 data, 2 reject. */
  msgType: 0 | 1 | 2
  piece: number
  /** Data messages only. */
  totalSize?: number
  /** Data messages only: a view into the payload. */
  data?: Uint8Array
}

/**
 * Decodes a ut_metadata message. With `metadataSize` (ours, or the size the peer announced) the
 * piece index and a data message's total_size and length are checked against it; without it, a
 * data message is checked against its own total_size.
 */
export function decodeMetadataMessage (payload: Uint8Array, metadataSize?: number): MetadataMessage {
  checkPayload(payload, MAX_METADATA_MESSAGE, 'ut_metadata message')
  if (metadataSize !== undefined) checkMetadataSize(metadataSize)
  const { value, end } = decodePrefix(payload, 0, { maxDepth: 4, maxItems: 256 })
  if (!isDict(value)) throw new SeedingError('EXT_NOT_DICT', 'ut_metadata message is not a dict')
  const msgType = getInt(value, 'msg_type', EXT)
  if (msgType !== 0 && msgType !== 1 && msgType !== 2) throw new SeedingError('EXT_METADATA_MSG_TYPE', `ut_metadata msg_type ${msgType} is not 0, 1 or 2`)
  const piece = getInt(value, 'piece', EXT)
  const maxPieces = Math.ceil((metadataSize ?? MAX_METADATA_SIZE) / METADATA_PIECE_SIZE)
  if (piece < 0 || piece >= maxPieces) throw new SeedingError('EXT_METADATA_PIECE', `ut_metadata piece ${piece} is not 0..${maxPieces - 1}`)
  if (msgType !== 1) {
    if (end !== payload.length) throw new SeedingError('EXT_METADATA_TRAILING', `ut_metadata ${msgType === 0 ? 'request' : 'reject'} has ${payload.length - end} bytes after its dict`)
    return { msgType, piece }
  }
  const totalSize = checkMetadataSize(getInt(value, 'total_size', EXT))
  if (metadataSize !== undefined && totalSize !== metadataSize) {
    throw new SeedingError('EXT_METADATA_SIZE', `ut_metadata total_size ${totalSize} differs from the metadata size ${metadataSize}`)
  }
  const pieces = Math.ceil(totalSize / METADATA_PIECE_SIZE)
  if (piece >= pieces) throw new SeedingError('EXT_METADATA_PIECE', `ut_metadata piece ${piece} is not 0..${pieces - 1}`)
  const data = payload.subarray(end)
  const expected = Math.min(METADATA_PIECE_SIZE, totalSize - piece * METADATA_PIECE_SIZE)
  if (data.length !== expected) throw new SeedingError('EXT_METADATA_DATA', `ut_metadata piece ${piece} has ${data.length} bytes, expected ${expected}`)
  return { msgType, piece, totalSize, data }
}

function checkPiece (piece: number): number {
  if (!Number.isInteger(piece) || piece < 0 || piece >= MAX_METADATA_SIZE / METADATA_PIECE_SIZE) {
    throw new SeedingError('EXT_METADATA_PIECE', `ut_metadata piece ${piece} is out of range`)
  }
  return piece
}

export function encodeMetadataRequest (piece: number): Uint8Array {
  return encode({ msg_type: 0, piece: checkPiece(piece) })
}

export function encodeMetadataData (piece: number, totalSize: number, data: Uint8Array): Uint8Array {
  checkMetadataSize(totalSize)
  const expected = Math.min(METADATA_PIECE_SIZE, totalSize - checkPiece(piece) * METADATA_PIECE_SIZE)
  if (data.length !== expected) throw new SeedingError('EXT_METADATA_DATA', `piece ${piece} of ${totalSize} bytes of metadata must carry ${expected} bytes, not ${data.length}`)
  return Buffer.concat([encode({ msg_type: 1, piece, total_size: totalSize }), data])
}

export function encodeMetadataReject (piece: number): Uint8Array {
  return encode({ msg_type: 2, piece: checkPiece(piece) })
}

// --- BEP 11 ut_pex -------------------------------------------------------------------------------

/** Decodes a PEX message; entries with port 0 are skipped. More than MAX_PEX_PEERS added (or dropped) is an error. */
export function decodePex (payload: Uint8Array): { added: PeerAddr[], dropped: PeerAddr[] } {
  checkPayload(payload, MAX_PEX_MESSAGE, 'ut_pex message')
  const dict = decode(payload, { maxDepth: 4, maxItems: 1024 })
  if (!isDict(dict)) throw new SeedingError('EXT_NOT_DICT', 'ut_pex message is not a dict')
  const added4 = pexList(dict, 'added', 6)
  const added6 = pexList(dict, 'added6', 18)
  const dropped4 = pexList(dict, 'dropped', 6)
  const dropped6 = pexList(dict, 'dropped6', 18)
  const addedCount = added4.length / 6 + added6.length / 18
  const droppedCount = dropped4.length / 6 + dropped6.length / 18
  if (addedCount > MAX_PEX_PEERS || droppedCount > MAX_PEX_PEERS) {
    throw new SeedingError('EXT_PEX_TOO_LARGE', `ut_pex message lists ${addedCount} added and ${droppedCount} dropped peers; the limit is ${MAX_PEX_PEERS} each`)
  }
  const flags4 = pexFlags(dict, 'added.f', added4.length / 6)
  const flags6 = pexFlags(dict, 'added6.f', added6.length / 18)
  return {
    added: [...compact(added4, 4, flags4), ...compact(added6, 6, flags6)],
    dropped: [...compact(dropped4, 4), ...compact(dropped6, 6)]
  }
}

function pexList (dict: BDict, key: string, unit: number): Uint8Array {
  const b = optBytes(dict, key, EXT) ?? new Uint8Array(0)
  if (b.length % unit !== 0) throw new SeedingError('EXT_PEX_BAD_LENGTH', `ut_pex ${key} is ${b.length} bytes, not a multiple of ${unit}`)
  return b
}

function pexFlags (dict: BDict, key: string, count: number): Uint8Array | undefined {
  const f = optBytes(dict, key, EXT)
  if (f !== undefined && f.length !== count) throw new SeedingError('EXT_PEX_BAD_FLAGS', `ut_pex ${key} has ${f.length} flags for ${count} peers`)
  return f
}

export function encodePex (p: { added: PeerAddr[], dropped: PeerAddr[] }): Uint8Array {
  if (p.added.length > MAX_PEX_PEERS || p.dropped.length > MAX_PEX_PEERS) {
    throw new SeedingError('EXT_PEX_TOO_LARGE', `a ut_pex message carries at most ${MAX_PEX_PEERS} added and ${MAX_PEX_PEERS} dropped peers`)
  }
  const split = (list: PeerAddr[]): [PeerAddr[], PeerAddr[]] => [list.filter(a => isIP(a.host) === 4), list.filter(a => isIP(a.host) !== 4)]
  const [added4, added6] = split(p.added)
  const [dropped4, dropped6] = split(p.dropped)
  const flags = (list: PeerAddr[]): Uint8Array => Uint8Array.from(list, a => {
    const f = a.flags ?? 0
    if (!Number.isInteger(f) || f < 0 || f > 255) throw new SeedingError('EXT_BAD_FIELD', `PEX flags ${f} are not 0..255`)
    return f
  })
  const out: EncodableObject = {
    added: compactAll(added4),
    'added.f': flags(added4),
    dropped: compactAll(dropped4)
  }
  if (added6.length > 0 || dropped6.length > 0) {
    out.added6 = compactAll(added6)
    out['added6.f'] = flags(added6)
    out.dropped6 = compactAll(dropped6)
  }
  return encode(out)
}

function compactAll (list: PeerAddr[]): Uint8Array {
  return Buffer.concat(list.map(a => encodeCompactPeer(a.host, a.port)))
}

// --- BEP 23 compact peers ------------------------------------------------------------------------

/** Peers from a compact list: 6 bytes each for IPv4, 18 for IPv6. Port 0 entries are skipped. */
export function decodeCompactPeers (buf: Uint8Array, family: 4 | 6): PeerAddr[] {
  if (!(buf instanceof Uint8Array)) throw new SeedingError('EXT_INPUT', 'compact peers must be a Uint8Array')
  if (family !== 4 && family !== 6) throw new SeedingError('EXT_INPUT', 'family must be 4 or 6')
  const unit = family === 4 ? 6 : 18
  if (buf.length % unit !== 0) throw new SeedingError('EXT_COMPACT_LENGTH', `compact IPv${family} peers are ${buf.length} bytes, not a multiple of ${unit}`)
  return compact(buf, family)
}

function compact (buf: Uint8Array, family: 4 | 6, flags?: Uint8Array): PeerAddr[] {
  const unit = family === 4 ? 6 : 18
  const out: PeerAddr[] = []
  for (let i = 0, n = 0; i < buf.length; i += unit, n++) {
    const port = ((buf[i + unit - 2] as number) << 8) | (buf[i + unit - 1] as number)
    if (port === 0) continue
    const host = family === 4 ? `${buf[i]}.${buf[i + 1]}.${buf[i + 2]}.${buf[i + 3]}` : formatIPv6(buf, i)
    out.push(flags !== undefined ? { host, port, flags: flags[n] as number } : { host, port })
  }
  return out
}

/** The 6 (IPv4) or 18 (IPv6) byte compact form of an address. */
export function encodeCompactPeer (host: string, port: number): Uint8Array {
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new SeedingError('EXT_BAD_PORT', `port ${port} is not 1..65535`)
  const kind = typeof host === 'string' ? isIP(host) : 0
  let out: Buffer
  if (kind === 4) {
    out = Buffer.alloc(6)
    host.split('.').forEach((part, i) => { out[i] = Number(part) })
  } else if (kind === 6 && !host.includes('%')) {
    out = Buffer.alloc(18)
    ipv6Bytes(host).copy(out)
  } else {
    throw new SeedingError('EXT_BAD_ADDR', `${JSON.stringify(String(host).slice(0, 100))} is not an IPv4 or IPv6 address`)
  }
  out.writeUInt16BE(port, out.length - 2)
  return out
}

/** Parses an address that net.isIP already accepted as IPv6 (no zone id). */
function ipv6Bytes (host: string): Buffer {
  let s = host
  const lastColon = s.lastIndexOf(':')
  const tail = s.slice(lastColon + 1)
  if (tail.includes('.')) {
    const [a, b, c, d] = tail.split('.').map(Number) as [number, number, number, number]
    s = `${s.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const halves = s.split('::')
  const parse = (part: string | undefined): number[] => part === undefined || part === '' ? [] : part.split(':').map(g => parseInt(g, 16))
  const head = parse(halves[0])
  const rest = parse(halves[1])
  const groups = halves.length === 2 ? [...head, ...new Array<number>(8 - head.length - rest.length).fill(0), ...rest] : head
  const out = Buffer.alloc(16)
  groups.forEach((g, i) => out.writeUInt16BE(g, i * 2))
  return out
}

/** RFC 5952 text: lower case, the longest run of two or more zero groups as "::", IPv4-mapped as dotted quad. */
function formatIPv6 (b: Uint8Array, at: number): string {
  const g: number[] = []
  for (let i = 0; i < 8; i++) g.push(((b[at + i * 2] as number) << 8) | (b[at + i * 2 + 1] as number))
  if (g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0xffff) {
    return `::ffff:${b[at + 12]}.${b[at + 13]}.${b[at + 14]}.${b[at + 15]}`
  }
  let bestStart = -1
  let bestLen = 1
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) { i++; continue }
    let j = i
    while (j < 8 && g[j] === 0) j++
    if (j - i > bestLen) { bestStart = i; bestLen = j - i }
    i = j
  }
  const hex = g.map(x => x.toString(16))
  if (bestStart === -1) return hex.join(':')
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`
}
