import { createHash, randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { decode, encode, type BDict, type EncodableObject } from '@btt/wire'
import { encodeTorrent, parseInfo, parseTorrent, pieceSize, MAX_TORRENT_BYTES } from './metainfo.js'
import { errorCode } from './test-support/errors.js'

const KiB = 1024
const sha1hex = (b: Uint8Array): string => createHash('sha1').update(b).digest('hex')

function info (over: EncodableObject = {}, total = 40 * KiB, pieceLength = 16 * KiB): EncodableObject {
  return { name: 'file.bin', 'piece length': pieceLength, pieces: randomBytes(20 * Math.ceil(total / pieceLength)), length: total, ...over }
}

function multi (files: Array<{ path: string[], length: number }>, over: EncodableObject = {}): EncodableObject {
  const total = files.reduce((n, f) => n + (typeof f?.length === 'number' && f.length > 0 ? f.length : 0), 0)
  return { name: 'folder', 'piece length': 16 * KiB, pieces: randomBytes(20 * Math.ceil(total / (16 * KiB))), files, ...over }
}

function torrent (i: EncodableObject, outer: EncodableObject = {}): Uint8Array {
  return encode({ announce: 'http://tracker.example/announce', ...outer, info: i })
}

const code = errorCode

describe('parseTorrent', () => {
  it('parses a single-file torrent', () => {
    const i = info({}, 40 * KiB)
    const buf = torrent(i, { comment: 'hello', 'created by': 'test 1.0', 'creation date': 1_700_000_000 })
    const m = parseTorrent(buf)
    const infoBytes = encode(i)
    expect(m.infoHash).toBe(sha1hex(infoBytes))
    expect(Buffer.from(m.infoHashBytes).toString('hex')).toBe(m.infoHash)
    expect(Buffer.compare(m.info, infoBytes)).toBe(0)
    expect(m.name).toBe('file.bin')
    expect(m.pieceLength).toBe(16 * KiB)
    expect(m.pieceCount).toBe(3)
    expect(m.pieces.length).toBe(60)
    expect(m.length).toBe(40 * KiB)
    expect(m.files).toEqual([{ path: ['file.bin'], length: 40 * KiB, offset: 0 }])
    expect(m.multiFile).toBe(false)
    expect(m.private).toBe(false)
    expect(m.announce).toEqual([['http://tracker.example/announce']])
    expect(m.urlList).toEqual([])
    expect(m.comment).toBe('hello')
    expect(m.createdBy).toBe('test 1.0')
    expect(m.creationDate).toBe(1_700_000_000)
  })

  it('parses a multi-file torrent with offsets, empty files and nested paths', () => {
    const m = parseTorrent(torrent(multi([
      { path: ['a.txt'], length: 10 },
      { path: ['empty'], length: 0 },
      { path: ['sub', 'déjà vu', 'b.bin'], length: 20 * KiB },
      { path: ['z'], length: 5 }
    ]), { 'announce-list': [['udp://t1.example:80/announce', 'http://t2.example/a'], ['https://t3.example/a']] }))
    expect(m.multiFile).toBe(true)
    expect(m.name).toBe('folder')
    expect(m.files).toEqual([
      { path: ['a.txt'], length: 10, offset: 0 },
      { path: ['empty'], length: 0, offset: 10 },
      { path: ['sub', 'déjà vu', 'b.bin'], length: 20 * KiB, offset: 10 },
      { path: ['z'], length: 5, offset: 10 + 20 * KiB }
    ])
    expect(m.length).toBe(15 + 20 * KiB)
    expect(m.pieceCount).toBe(2)
    expect(m.announce).toEqual([['udp://t1.example:80/announce', 'http://t2.example/a'], ['https://t3.example/a']])
  })

  it('hashes the info bytes exactly as they appear in the file', () => {
    // unknown info keys (here with nested values and raw bytes) are part of the hash
    const i = info({ 'x-custom': { z: [1, 2, Buffer.from([0, 255])], a: 'b' }, source: 'TRACKER' })
    const buf = torrent(i, { zzz: 'after info', aaa: 1 })
    const m = parseTorrent(buf)
    const start = Buffer.from(buf).indexOf('4:infod') + 6
    const span = buf.subarray(start, start + m.info.length)
    expect(Buffer.compare(span, m.info)).toBe(0)
    // strict decoding makes the span equal to the re-encoded dict
    expect(Buffer.compare(encode((decode(buf) as BDict).get('info')!), m.info)).toBe(0)
    expect(m.infoHash).toBe(sha1hex(span))
    expect(m.info.buffer).toBe(buf.buffer)
    expect(m.info.byteOffset).toBe(buf.byteOffset + start)
  })

  it('reads private, url-list and BEP 12 tiers', () => {
    expect(parseTorrent(torrent(info({ private: 1 }))).private).toBe(true)
    expect(parseTorrent(torrent(info({ private: 0 }))).private).toBe(false)
    expect(parseTorrent(torrent(info(), { 'url-list': 'https://web.example/f' })).urlList).toEqual(['https://web.example/f'])
    expect(parseTorrent(torrent(info(), { 'url-list': ['https://a.example/', 'ftp://b.example/', 'https://a.example/', 7] })).urlList).toEqual(['https://a.example/'])
    const tiers = parseTorrent(torrent(info(), {
      announce: 'http://ignored.example/a',
      'announce-list': [['wss://tracker.example', 'http://a.example/a', 'not a url'], [], 'junk', ['http://a.example/a'], ['udp://b.example:6969']]
    })).announce
    // announce is ignored when the list has something usable; duplicates and other schemes dropped
    expect(tiers).toEqual([['http://a.example/a'], ['udp://b.example:6969']])
    // an announce-list with nothing usable falls back to announce
    expect(parseTorrent(torrent(info(), { 'announce-list': [['wss://x.example']] })).announce).toEqual([['http://tracker.example/announce']])
    expect(parseTorrent(encode({ info: info() })).announce).toEqual([])
    expect(parseTorrent(torrent(info(), { announce: 'magnet:?x' })).announce).toEqual([])
  })

  it('accepts hybrid v1/v2 torrents as v1 and refuses v2-only ones', () => {
    const hybrid = info({ 'meta version': 2, 'file tree': { 'file.bin': { '': { length: 40 * KiB, 'pieces root': randomBytes(32) } } } })
    const m = parseTorrent(torrent(hybrid, { 'piece layers': {} }))
    expect(m.length).toBe(40 * KiB)
    expect(m.infoHash).toBe(sha1hex(encode(hybrid)))
    const v2 = { name: 'x', 'piece length': 16 * KiB, 'meta version': 2, 'file tree': { x: { '': { length: 1 } } } }
    expect(() => parseTorrent(torrent(v2))).toThrow(expect.objectContaining({ code: 'TORRENT_V2_UNSUPPORTED', message: expect.stringMatching(/v2-only/) }))
  })

  it('refuses path traversal in names and paths', () => {
    for (const bad of ['..', '.', '', 'a/b', 'a\\b', 'a\0b', '/etc']) {
      expect(code(() => parseTorrent(torrent(info({ name: bad })))), `name ${JSON.stringify(bad)}`).toBe('TORRENT_BAD_PATH')
      expect(code(() => parseTorrent(torrent(multi([{ path: ['ok', bad], length: 1 }])))), `path ${JSON.stringify(bad)}`).toBe('TORRENT_BAD_PATH')
    }
    expect(code(() => parseTorrent(torrent(multi([{ path: [], length: 1 }]))))).toBe('TORRENT_BAD_PATH')
    expect(code(() => parseTorrent(torrent(multi([{ path: ['a', 5] as never, length: 1 }]))))).toBe('TORRENT_BAD_PATH')
  })

  it('refuses duplicate paths and files that are also folders', () => {
    expect(code(() => parseTorrent(torrent(multi([{ path: ['a'], length: 1 }, { path: ['a'], length: 2 }]))))).toBe('TORRENT_DUPLICATE_PATH')
    expect(code(() => parseTorrent(torrent(multi([{ path: ['a'], length: 1 }, { path: ['a', 'b'], length: 2 }]))))).toBe('TORRENT_DUPLICATE_PATH')
    expect(code(() => parseTorrent(torrent(multi([{ path: ['a', 'b', 'c'], length: 1 }, { path: ['a', 'b'], length: 2 }]))))).toBe('TORRENT_DUPLICATE_PATH')
    // a common folder is fine, and so is a name that only shares a prefix string
    expect(parseTorrent(torrent(multi([{ path: ['a', 'b'], length: 1 }, { path: ['a', 'c'], length: 1 }, { path: ['ab'], length: 1 }]))).files).toHaveLength(3)
  })

  it.each([
    ['piece length 0', { 'piece length': 0 }, 'TORRENT_PIECE_LENGTH'],
    ['piece length not a multiple of 16 KiB', { 'piece length': 16 * KiB + 1 }, 'TORRENT_PIECE_LENGTH'],
    ['piece length over 64 MiB', { 'piece length': 128 * 1024 * KiB }, 'TORRENT_PIECE_LENGTH'],
    ['negative piece length', { 'piece length': -16 * KiB }, 'TORRENT_PIECE_LENGTH'],
    ['piece length as a string', { 'piece length': '16384' }, 'TORRENT_BAD_FIELD'],
    ['pieces one hash short', { pieces: randomBytes(40) }, 'TORRENT_PIECES'],
    ['pieces one byte long', { pieces: randomBytes(61) }, 'TORRENT_PIECES'],
    ['pieces missing', { pieces: undefined }, 'TORRENT_MISSING_FIELD'],
    ['pieces as an int', { pieces: 5 }, 'TORRENT_BAD_FIELD'],
    ['name missing', { name: undefined }, 'TORRENT_MISSING_FIELD'],
    ['name not UTF-8', { name: Buffer.from([0xc3, 0x28]) }, 'TORRENT_BAD_UTF8'],
    ['negative length', { length: -1 }, 'TORRENT_BAD_LENGTH'],
    ['zero length', { length: 0, pieces: Buffer.alloc(0) }, 'TORRENT_EMPTY'],
    ['length as a string', { length: '40960' }, 'TORRENT_BAD_FIELD'],
    ['no length nor files', { length: undefined }, 'TORRENT_MISSING_FIELD'],
    ['both length and files', { files: [{ path: ['a'], length: 40 * KiB }] }, 'TORRENT_BAD_LAYOUT'],
    ['files not a list', { length: undefined, files: 'x' }, 'TORRENT_BAD_FIELD'],
    ['private as a string', { private: '1' }, 'TORRENT_BAD_FIELD']
  ])('refuses %s', (_, over, expected) => {
    expect(code(() => parseTorrent(torrent(info(over as EncodableObject))))).toBe(expected)
  })

  it('refuses malformed file entries and totals', () => {
    expect(code(() => parseTorrent(torrent(multi([]))))).toBe('TORRENT_EMPTY')
    expect(code(() => parseTorrent(torrent(multi([{ path: ['a'], length: 0 }]))))).toBe('TORRENT_EMPTY')
    expect(code(() => parseTorrent(torrent(multi([{ path: ['a'], length: -5 }]))))).toBe('TORRENT_BAD_LENGTH')
    expect(code(() => parseTorrent(torrent(multi(['x' as never]))))).toBe('TORRENT_BAD_FIELD')
    expect(code(() => parseTorrent(torrent(multi([{ path: ['a'] } as never]))))).toBe('TORRENT_MISSING_FIELD')
    expect(code(() => parseTorrent(torrent(multi([{ path: 'a', length: 1 } as never]))))).toBe('TORRENT_BAD_FIELD')
    const huge = { ...multi([{ path: ['a'], length: 1 }]), files: [{ path: ['a'], length: 2 ** 49 }, { path: ['b'], length: 2 ** 49 }, { path: ['c'], length: 1 }] }
    expect(code(() => parseTorrent(torrent(huge)))).toBe('TORRENT_TOO_LARGE')
    expect(code(() => parseTorrent(torrent({ ...info({}, 16 * KiB), length: 2 ** 50 + 1 })))).toBe('TORRENT_TOO_LARGE')
  })

  it('caps the number of files', () => {
    const files = Array.from({ length: 100_001 }, (_, i) => ({ path: [String(i)], length: 1 }))
    expect(code(() => parseTorrent(torrent(multi(files))))).toBe('TORRENT_TOO_MANY_FILES')
    expect(parseTorrent(torrent(multi(files.slice(0, 100_000)))).files).toHaveLength(100_000)
  })

  it('refuses inputs that are not torrents', () => {
    expect(code(() => parseTorrent(encode([1, 2])))).toBe('TORRENT_NOT_DICT')
    expect(code(() => parseTorrent(encode({ announce: 'x' })))).toBe('TORRENT_MISSING_FIELD')
    expect(code(() => parseTorrent(encode({ info: 'x' })))).toBe('TORRENT_BAD_FIELD')
    expect(code(() => parseTorrent(Buffer.concat([torrent(info()), Buffer.from('x')])))).toBe('BENCODE_TRAILING')
    expect(code(() => parseTorrent(Buffer.alloc(0)))).toBe('BENCODE_EMPTY')
    expect(code(() => parseTorrent('d4:infoe' as never))).toBe('TORRENT_INPUT')
    expect(code(() => parseTorrent(Buffer.alloc(MAX_TORRENT_BYTES + 1)))).toBe('TORRENT_TOO_LARGE')
    expect(code(() => parseTorrent(torrent(info(), { comment: 5 })))).toBe('TORRENT_BAD_FIELD')
  })

  it('reads a non-UTF-8 comment lossily instead of refusing the torrent', () => {
    expect(parseTorrent(torrent(info(), { comment: Buffer.from([0x63, 0xe9]) })).comment).toBe('c\ufffd')
  })
})

describe('parseInfo', () => {
  it('parses an info dict and checks its hash', () => {
    const bytes = encode(info())
    const h = sha1hex(bytes)
    expect(parseInfo(bytes).infoHash).toBe(h)
    expect(parseInfo(bytes, h).infoHash).toBe(h)
    expect(parseInfo(bytes, h.toUpperCase()).infoHash).toBe(h)
    expect(parseInfo(bytes).announce).toEqual([])
    const other = '0'.repeat(40)
    expect(() => parseInfo(bytes, other)).toThrow(expect.objectContaining({ code: 'TORRENT_INFOHASH_MISMATCH' }))
    expect(code(() => parseInfo(bytes, 'abc'))).toBe('TORRENT_BAD_INFOHASH')
    expect(code(() => parseInfo(encode([1])))).toBe('TORRENT_BAD_FIELD')
  })

  it('checks the hash before the fields', () => {
    const bad = encode(info({ name: '..' }))
    expect(code(() => parseInfo(bad, '0'.repeat(40)))).toBe('TORRENT_INFOHASH_MISMATCH')
    expect(code(() => parseInfo(bad, sha1hex(bad)))).toBe('TORRENT_BAD_PATH')
  })
})

describe('encodeTorrent', () => {
  it('wraps the info bytes unchanged and round-trips the outer fields', () => {
    const i = encode(info({ 'x-unknown': 'kept' }))
    const out = encodeTorrent({
      info: i,
      announce: [['http://a.example/a', 'udp://b.example:1'], ['https://c.example/c']],
      comment: 'c',
      createdBy: 'me',
      creationDate: 123,
      urlList: ['https://w.example/']
    })
    const m = parseTorrent(out)
    expect(m.infoHash).toBe(sha1hex(i))
    expect(m.announce).toEqual([['http://a.example/a', 'udp://b.example:1'], ['https://c.example/c']])
    expect(m.comment).toBe('c')
    expect(m.createdBy).toBe('me')
    expect(m.creationDate).toBe(123)
    expect(m.urlList).toEqual(['https://w.example/'])
    // canonical: decoding strictly and re-encoding gives the same bytes
    expect(Buffer.compare(encode(decode(out)), out)).toBe(0)
    const top = decode(out) as BDict
    expect(Buffer.from(top.get('announce') as Uint8Array).toString()).toBe('http://a.example/a')
  })

  it('writes announce-list only for more than one tracker, and nothing without trackers', () => {
    const i = encode(info())
    const one = decode(encodeTorrent({ info: i, announce: [['http://a.example/a']] })) as BDict
    expect([...one.keys()]).toEqual(['announce', 'info'])
    const none = decode(encodeTorrent({ info: i, announce: [] })) as BDict
    expect([...none.keys()]).toEqual(['info'])
  })

  it('refuses bad trackers, dates and info dicts', () => {
    const i = encode(info())
    expect(code(() => encodeTorrent({ info: i, announce: [['ws://x.example']] }))).toBe('TORRENT_BAD_ANNOUNCE')
    expect(code(() => encodeTorrent({ info: i, announce: [], creationDate: 1.5 }))).toBe('TORRENT_BAD_FIELD')
    expect(code(() => encodeTorrent({ info: encode(info({ name: '..' })), announce: [] }))).toBe('TORRENT_BAD_PATH')
    expect(code(() => encodeTorrent({ info: Buffer.from('d1:ai1e'), announce: [] }))).toBe('BENCODE_TRUNCATED')
  })
})

describe('pieceSize', () => {
  it('gives the last piece its remainder', () => {
    const m = parseTorrent(torrent(info({}, 40 * KiB)))
    expect([0, 1, 2].map(i => pieceSize(m, i))).toEqual([16 * KiB, 16 * KiB, 8 * KiB])
    const exact = parseTorrent(torrent(info({}, 32 * KiB)))
    expect(pieceSize(exact, 1)).toBe(16 * KiB)
    for (const bad of [-1, 3, 1.5, Number.NaN]) expect(code(() => pieceSize(m, bad))).toBe('TORRENT_PIECE_INDEX')
  })
})
