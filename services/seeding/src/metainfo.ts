import { createHash } from 'node:crypto'
import {
  decode, decodeWithSpans, encode, getBytes, getInt, getList, getString, isBytes, isDict, optInt, optString, utf8,
  type BDict, type BValue, type FieldContext
} from '@btt/wire'
import { SeedingError } from './errors.js'

/** A file of a torrent; `offset` is where its bytes start in the torrent's concatenated data. */
export interface TorrentFile { path: string[], length: number, offset: number }

export interface Metainfo {
  /** 40 lower-case hex digits. */
  infoHash: string
  infoHashBytes: Uint8Array
  /** The exact bencoded info dict (what ut_metadata serves; sha1(info) is the infohash). */
  info: Uint8Array
  name: string
  pieceLength: number
  pieceCount: number
  /** 20-byte sha1 of each piece, concatenated. */
  pieces: Uint8Array
  /** Total bytes. */
  length: number
  /** Multi-file paths are relative to the `name` folder; a single-file torrent has one file, path [name]. */
  files: TorrentFile[]
  multiFile: boolean
  private: boolean
  /** Tracker tiers (BEP 12); only http, https and udp URLs are kept. */
  announce: string[][]
  /** Web seeds (BEP 19); read, http(s) only. */
  urlList: string[]
  comment?: string
  createdBy?: string
  creationDate?: number
}

/** Largest .torrent accepted: 64 MiB holds 3 million piece hashes. */
export const MAX_TORRENT_BYTES = 64 * 1024 * 1024
/** Pieces are requested in 16 KiB blocks; anything else is not worth supporting. */
export const BLOCK = 16 * 1024
export const MAX_PIECE_LENGTH = 64 * 1024 * 1024
/** 1 PiB: far above any real torrent, and keeps every offset exact in a JS number. */
export const MAX_TOTAL_LENGTH = 2 ** 50
export const MAX_FILES = 100_000
/** Bencode values in one .torrent: 100,000 files with deep paths fit; a hostile file cannot make millions of objects. */
const MAX_ITEMS = 2_000_000
/** Trackers kept from one torrent; real ones list tens. */
const MAX_TRACKERS = 200
const MAX_URL_LENGTH = 2048

const TORRENT: FieldContext = { family: 'TORRENT' }
const INFO: FieldContext = { family: 'TORRENT', where: 'info' }

function sha1 (b: Uint8Array): Buffer {
  return createHash('sha1').update(b).digest()
}

/** Parses a whole .torrent file (BEP 3, with BEP 12 tiers, BEP 27 private, BEP 19 web seeds). */
export function parseTorrent (buf: Uint8Array): Metainfo {
  if (!(buf instanceof Uint8Array)) throw new SeedingError('TORRENT_INPUT', '.torrent input must be a Uint8Array')
  if (buf.length > MAX_TORRENT_BYTES) throw new SeedingError('TORRENT_TOO_LARGE', `.torrent is ${buf.length} bytes; the limit is ${MAX_TORRENT_BYTES}`)
  const { value: top, spans } = decodeWithSpans(buf, { maxItems: MAX_ITEMS })
  if (!isDict(top)) throw new SeedingError('TORRENT_NOT_DICT', '.torrent is not a bencoded dict')
  const info = top.get('info')
  const span = spans.get('info')
  if (info === undefined || span === undefined) throw new SeedingError('TORRENT_MISSING_FIELD', 'info is missing')
  if (!isDict(info)) throw new SeedingError('TORRENT_BAD_FIELD', 'info must be a dict')
  // strict decoding makes the span equal to encode(info); hashing the span avoids re-encoding
  const infoBytes = buf.subarray(span[0], span[1])
  const m = fromInfo(info, infoBytes, sha1(infoBytes))
  m.announce = readAnnounce(top)
  m.urlList = readUrlList(top)
  const comment = optString(top, 'comment', { ...TORRENT, lossy: true })
  const createdBy = optString(top, 'created by', { ...TORRENT, lossy: true })
  const creationDate = optInt(top, 'creation date', TORRENT)
  if (comment !== undefined) m.comment = comment
  if (createdBy !== undefined) m.createdBy = createdBy
  if (creationDate !== undefined) m.creationDate = creationDate
  return m
}

/** Parses a bare info dict (from ut_metadata or a resume store); checks its sha1 when one is expected. */
export function parseInfo (info: Uint8Array, expectedInfoHash?: string): Metainfo {
  if (!(info instanceof Uint8Array)) throw new SeedingError('TORRENT_INPUT', 'info input must be a Uint8Array')
  if (info.length > MAX_TORRENT_BYTES) throw new SeedingError('TORRENT_TOO_LARGE', `info dict is ${info.length} bytes; the limit is ${MAX_TORRENT_BYTES}`)
  let expected: string | undefined
  if (expectedInfoHash !== undefined) {
    if (typeof expectedInfoHash !== 'string' || !/^[0-9a-fA-F]{40}$/.test(expectedInfoHash)) {
      throw new SeedingError('TORRENT_BAD_INFOHASH', 'expected infohash must be 40 hex digits')
    }
    expected = expectedInfoHash.toLowerCase()
  }
  const value = decode(info, { maxItems: MAX_ITEMS })
  if (!isDict(value)) throw new SeedingError('TORRENT_BAD_FIELD', 'info must be a dict')
  const hash = sha1(info)
  // check the hash before the fields: bytes from a peer that do not match are not worth reading
  if (expected !== undefined && hash.toString('hex') !== expected) {
    throw new SeedingError('TORRENT_INFOHASH_MISMATCH', `info dict hashes to ${hash.toString('hex')}, not ${expected}`)
  }
  return fromInfo(value, info, hash)
}

function fromInfo (info: BDict, infoBytes: Uint8Array, hash: Buffer): Metainfo {
  const pieces = info.get('pieces')
  if (pieces === undefined && info.get('meta version') === 2) {
    throw new SeedingError('TORRENT_V2_UNSUPPORTED', 'this is a BitTorrent v2-only torrent (no v1 piece hashes); only v1 and hybrid torrents are supported')
  }
  const name = getString(info, 'name', INFO)
  checkPathComponent(name, 'info.name')
  const pieceLength = getInt(info, 'piece length', INFO)
  if (pieceLength <= 0 || pieceLength % BLOCK !== 0 || pieceLength > MAX_PIECE_LENGTH) {
    throw new SeedingError('TORRENT_PIECE_LENGTH', `info.piece length ${pieceLength} must be a positive multiple of ${BLOCK} up to ${MAX_PIECE_LENGTH}`)
  }
  const pieceHashes = getBytes(info, 'pieces', INFO)
  const privateFlag = optInt(info, 'private', INFO)

  const filesList = info.get('files')
  const single = info.get('length')
  let files: TorrentFile[]
  let multiFile: boolean
  if (filesList !== undefined) {
    // hybrid v1/v2 single-file torrents carry `length`; only `files` with `length` is ambiguous
    if (single !== undefined) throw new SeedingError('TORRENT_BAD_LAYOUT', 'info has both length and files')
    if (!Array.isArray(filesList)) throw new SeedingError('TORRENT_BAD_FIELD', 'info.files must be a list')
    files = readFiles(filesList)
    multiFile = true
  } else {
    if (single === undefined) throw new SeedingError('TORRENT_MISSING_FIELD', 'info has neither length nor files')
    if (typeof single !== 'number') throw new SeedingError('TORRENT_BAD_FIELD', 'info.length must be an integer')
    if (single < 0) throw new SeedingError('TORRENT_BAD_LENGTH', `info.length ${single} is negative`)
    files = [{ path: [name], length: single, offset: 0 }]
    multiFile = false
  }
  const length = files.length === 0 ? 0 : files[files.length - 1]!.offset + files[files.length - 1]!.length
  if (length <= 0) throw new SeedingError('TORRENT_EMPTY', 'torrent has no data (total length 0)')
  if (length > MAX_TOTAL_LENGTH) throw new SeedingError('TORRENT_TOO_LARGE', `torrent data of ${length} bytes exceeds ${MAX_TOTAL_LENGTH}`)
  const pieceCount = Math.ceil(length / pieceLength)
  if (pieceHashes.length !== pieceCount * 20) {
    throw new SeedingError('TORRENT_PIECES', `info.pieces is ${pieceHashes.length} bytes; ${pieceCount} pieces need ${pieceCount * 20}`)
  }
  return {
    infoHash: hash.toString('hex'),
    infoHashBytes: new Uint8Array(hash),
    info: infoBytes,
    name,
    pieceLength,
    pieceCount,
    pieces: pieceHashes,
    length,
    files,
    multiFile,
    private: privateFlag === 1,
    announce: [],
    urlList: []
  }
}

function readFiles (list: BValue[]): TorrentFile[] {
  if (list.length === 0) throw new SeedingError('TORRENT_EMPTY', 'info.files is empty')
  if (list.length > MAX_FILES) throw new SeedingError('TORRENT_TOO_MANY_FILES', `info.files has ${list.length} files; the limit is ${MAX_FILES}`)
  const files: TorrentFile[] = []
  const filePaths = new Set<string>()
  const dirPaths = new Set<string>()
  let offset = 0
  for (let i = 0; i < list.length; i++) {
    const entry = list[i]
    const where = `info.files[${i}]`
    if (!isDict(entry)) throw new SeedingError('TORRENT_BAD_FIELD', `${where} must be a dict`)
    const ctx = { family: 'TORRENT', where }
    const length = getInt(entry, 'length', ctx)
    if (length < 0) throw new SeedingError('TORRENT_BAD_LENGTH', `${where}.length ${length} is negative`)
    const rawPath = getList(entry, 'path', ctx)
    if (rawPath.length === 0) throw new SeedingError('TORRENT_BAD_PATH', `${where}.path is empty`)
    const path: string[] = []
    for (const c of rawPath) {
      if (!isBytes(c)) throw new SeedingError('TORRENT_BAD_PATH', `${where}.path has a component that is not a string`)
      const s = utf8(c, `${where}.path`, { family: 'TORRENT' })
      checkPathComponent(s, `${where}.path`)
      path.push(s)
    }
    // components hold no '/', so joining with it is unambiguous
    const key = path.join('/')
    if (filePaths.has(key)) throw new SeedingError('TORRENT_DUPLICATE_PATH', `${where}.path ${key} appears twice`)
    if (dirPaths.has(key)) throw new SeedingError('TORRENT_DUPLICATE_PATH', `${where}.path ${key} is also a folder of another file`)
    let prefix = ''
    for (let j = 0; j < path.length - 1; j++) {
      prefix = j === 0 ? path[0]! : `${prefix}/${path[j]!}`
      if (filePaths.has(prefix)) throw new SeedingError('TORRENT_DUPLICATE_PATH', `${where}.path ${key} is inside ${prefix}, which is a file`)
      dirPaths.add(prefix)
    }
    filePaths.add(key)
    files.push({ path, length, offset })
    offset += length
    if (offset > MAX_TOTAL_LENGTH) throw new SeedingError('TORRENT_TOO_LARGE', `torrent data exceeds ${MAX_TOTAL_LENGTH} bytes`)
  }
  return files
}

/**
 * A name or path component that cannot climb out of or aside from the download folder on any
 * platform we run on: not empty, not `.`/`..`, no separators, no NUL.
 */
export function checkPathComponent (s: string, where: string): void {
  if (s.length === 0) throw new SeedingError('TORRENT_BAD_PATH', `${where} has an empty component`)
  if (s === '.' || s === '..') throw new SeedingError('TORRENT_BAD_PATH', `${where} has a "${s}" component`)
  if (/[/\\\0]/.test(s)) throw new SeedingError('TORRENT_BAD_PATH', `${where} component ${JSON.stringify(s.slice(0, 100))} contains "/", "\\" or NUL`)
}

/** A tracker URL worth keeping: parses, and is http, https or udp with a host. */
export function isTrackerUrl (url: string): boolean {
  if (url.length === 0 || url.length > MAX_URL_LENGTH) return false
  try {
    const u = new URL(url)
    return (u.protocol === 'http:' || u.protocol === 'https:' || u.protocol === 'udp:') && u.hostname.length > 0
  } catch {
    return false
  }
}

function readAnnounce (top: BDict): string[][] {
  const tiers: string[][] = []
  const seen = new Set<string>()
  let kept = 0
  const take = (v: BValue, tier: string[]): void => {
    if (!isBytes(v) || kept >= MAX_TRACKERS) return
    const url = Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('utf8').trim()
    if (!isTrackerUrl(url) || seen.has(url)) return
    seen.add(url)
    tier.push(url)
    kept++
  }
  // a malformed tracker list costs the trackers, not the torrent: the infohash is still good
  const list = top.get('announce-list')
  if (Array.isArray(list)) {
    for (const t of list) {
      if (!Array.isArray(t)) continue
      const tier: string[] = []
      for (const url of t) take(url, tier)
      if (tier.length > 0) tiers.push(tier)
    }
  }
  // BEP 12: announce is ignored when announce-list is given, unless that list holds nothing usable
  if (tiers.length === 0) {
    const announce = top.get('announce')
    const tier: string[] = []
    if (announce !== undefined) take(announce, tier)
    if (tier.length > 0) tiers.push(tier)
  }
  return tiers
}

function readUrlList (top: BDict): string[] {
  const v = top.get('url-list')
  const items = Array.isArray(v) ? v : v !== undefined ? [v] : []
  const out: string[] = []
  for (const item of items) {
    if (!isBytes(item) || out.length >= MAX_TRACKERS) continue
    const url = Buffer.from(item.buffer, item.byteOffset, item.byteLength).toString('utf8')
    if (url.length > MAX_URL_LENGTH) continue
    try {
      const u = new URL(url)
      if ((u.protocol === 'http:' || u.protocol === 'https:') && !out.includes(url)) out.push(url)
    } catch {}
  }
  return out
}

export interface TorrentFileInput {
  info: Uint8Array
  announce: string[][]
  comment?: string
  createdBy?: string
  creationDate?: number
  urlList?: string[]
}

/**
 * Builds a .torrent around an existing info dict, whose bytes are kept exactly (so the infohash is
 * unchanged). `announce` is the first URL; `announce-list` is written when there is more than one.
 */
export function encodeTorrent (m: TorrentFileInput): Uint8Array {
  // refuse to wrap something that would not parse back
  const value = decode(m.info, { maxItems: MAX_ITEMS })
  if (!isDict(value)) throw new SeedingError('TORRENT_BAD_FIELD', 'info must be a dict')
  fromInfo(value, m.info, Buffer.alloc(20))
  const tiers = m.announce.map(t => t.filter(u => {
    if (!isTrackerUrl(u)) throw new SeedingError('TORRENT_BAD_ANNOUNCE', `tracker URL ${JSON.stringify(u.slice(0, 200))} must be http, https or udp`)
    return true
  })).filter(t => t.length > 0)
  const before: Record<string, BValue | string | string[][] | undefined> = {}
  if (tiers.length > 0) before.announce = tiers[0]![0]!
  if (tiers.flat().length > 1) before['announce-list'] = tiers
  before.comment = m.comment
  before['created by'] = m.createdBy
  if (m.creationDate !== undefined) {
    if (!Number.isSafeInteger(m.creationDate) || m.creationDate < 0) throw new SeedingError('TORRENT_BAD_FIELD', 'creation date must be a non-negative integer')
    before['creation date'] = m.creationDate
  }
  const after: Record<string, string[] | undefined> = {}
  if (m.urlList !== undefined && m.urlList.length > 0) after['url-list'] = m.urlList
  // every key before 'info' sorts before it and 'url-list' after, so the dict stays canonical
  const head = encode(before)
  const tail = encode(after)
  return Buffer.concat([head.subarray(0, head.length - 1), Buffer.from('4:info'), m.info, tail.subarray(1)])
}

/** Bytes in piece `index`: pieceLength, except for a shorter last piece. */
export function pieceSize (m: Metainfo, index: number): number {
  if (!Number.isInteger(index) || index < 0 || index >= m.pieceCount) {
    throw new SeedingError('TORRENT_PIECE_INDEX', `piece ${index} is outside 0..${m.pieceCount - 1}`)
  }
  return index === m.pieceCount - 1 ? m.length - m.pieceLength * index : m.pieceLength
}
