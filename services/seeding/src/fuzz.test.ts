import { createHash } from 'node:crypto'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { decode, encode, isDict } from '@btt/wire'
import { isSeedingError } from './errors.js'
import { decodeExtendedHandshake, decodeMetadataMessage, decodePex, MAX_PEX_PEERS } from './extension.js'
import { parseInfo, parseTorrent } from './metainfo.js'
import {
  bencodeSeeds, fuzzInput, handshakeSeeds, makeRng, metadataSeeds, pexSeeds, torrentSeeds, type Seed
} from './test-support/fuzz.js'

/**
 * Each decoder gets 100,000 inputs (90,000 mutated from valid seeds, 10,000 random byte strings)
 * with fixed seeds: every call must return a well-formed result or throw a SeedingError of its
 * families. bench/fuzz.ts runs the same generators 1,000,000 times per decoder.
 */
const MUTATED_RUNS = 90_000
const RANDOM_RUNS = 10_000

interface Target {
  name: string
  seeds: Seed[]
  codes: RegExp
  /** Codes that only deep paths raise: each must turn up, or the generators have stopped reaching them. */
  mustSee: string[]
  /** Decodes and checks a successful result; throws an Error (not a SeedingError) on a broken invariant. */
  run: (bytes: Uint8Array, size?: number) => void
}

function fail (what: string): never {
  throw new Error(what)
}

const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => Buffer.compare(a, b) === 0
const r = makeRng(20_251_123)
const torrents = torrentSeeds(r, 60)

const targets: Target[] = [
  {
    name: 'bencode decode',
    seeds: [...bencodeSeeds(r, 120), ...torrents.slice(0, 20), ...handshakeSeeds(r, 20), ...pexSeeds(r, 20)],
    codes: /^BENCODE_/,
    mustSee: ['BENCODE_LEADING_ZERO', 'BENCODE_NEGATIVE_ZERO', 'BENCODE_INT_RANGE', 'BENCODE_TRUNCATED', 'BENCODE_TRAILING', 'BENCODE_UNSORTED_KEYS', 'BENCODE_DUPLICATE_KEY', 'BENCODE_KEY_NOT_STRING', 'BENCODE_DEPTH', 'BENCODE_SYNTAX', 'BENCODE_EMPTY'],
    run: (bytes) => {
      const v = decode(bytes)
      // strict means canonical: the only accepted encoding of a value is the one encode writes
      if (!sameBytes(encode(v), bytes)) fail('encode(decode(x)) differs from x')
    }
  },
  {
    name: 'parseTorrent',
    seeds: torrents,
    codes: /^(BENCODE|TORRENT)_/,
    mustSee: ['TORRENT_BAD_PATH', 'TORRENT_PIECES', 'TORRENT_DUPLICATE_PATH', 'TORRENT_V2_UNSUPPORTED', 'TORRENT_PIECE_LENGTH', 'TORRENT_BAD_UTF8', 'TORRENT_BAD_LENGTH', 'TORRENT_EMPTY', 'TORRENT_MISSING_FIELD'],
    run: (bytes) => {
      const m = parseTorrent(bytes)
      if (m.infoHash !== createHash('sha1').update(m.info).digest('hex')) fail('infoHash is not sha1(info)')
      const top = decode(bytes)
      if (!isDict(top) || !sameBytes(encode(top.get('info')!), m.info)) fail('info span differs from the re-encoded info dict')
      if (parseInfo(m.info, m.infoHash).infoHash !== m.infoHash) fail('parseInfo disagrees')
      if (m.files.reduce((n, f) => n + f.length, 0) !== m.length) fail('file lengths do not add up')
      if (m.pieces.length !== 20 * m.pieceCount || m.pieceCount !== Math.ceil(m.length / m.pieceLength)) fail('piece count')
      for (const f of m.files) for (const c of [m.name, ...f.path]) if (c === '' || c === '.' || c === '..' || /[/\\\0]/.test(c)) fail(`unsafe path ${c}`)
    }
  },
  {
    name: 'decodeExtendedHandshake',
    seeds: handshakeSeeds(r, 60),
    codes: /^(BENCODE|EXT)_/,
    mustSee: ['EXT_BAD_EXT_ID', 'EXT_BAD_PORT', 'EXT_METADATA_SIZE', 'EXT_BAD_REQQ', 'EXT_BAD_FIELD', 'EXT_TOO_LARGE'],
    run: (bytes) => {
      const hs = decodeExtendedHandshake(bytes)
      for (const id of hs.m.values()) if (!Number.isInteger(id) || id < 0 || id > 255) fail(`ext id ${id}`)
      if (hs.port !== undefined && !(hs.port >= 1 && hs.port <= 65535)) fail(`port ${hs.port}`)
      if (hs.metadataSize !== undefined && !(hs.metadataSize >= 1 && hs.metadataSize <= 16 * 1024 * 1024)) fail('metadata size')
    }
  },
  {
    name: 'decodePex',
    seeds: pexSeeds(r, 60),
    codes: /^(BENCODE|EXT)_/,
    mustSee: ['EXT_PEX_BAD_LENGTH', 'EXT_PEX_BAD_FLAGS', 'EXT_PEX_TOO_LARGE'],
    run: (bytes) => {
      const { added, dropped } = decodePex(bytes)
      if (added.length > MAX_PEX_PEERS || dropped.length > MAX_PEX_PEERS) fail('PEX cap')
      for (const a of [...added, ...dropped]) if (!(a.port >= 1 && a.port <= 65535)) fail(`port ${a.port}`)
    }
  },
  {
    name: 'decodeMetadataMessage',
    seeds: metadataSeeds(r, 60),
    codes: /^(BENCODE|EXT)_/,
    mustSee: ['EXT_METADATA_DATA', 'EXT_METADATA_MSG_TYPE', 'EXT_METADATA_PIECE', 'EXT_METADATA_SIZE', 'EXT_METADATA_TRAILING'],
    run: (bytes, size) => {
      const msg = decodeMetadataMessage(bytes, size)
      if (msg.msgType === 1 && (msg.data === undefined || msg.data.length > 16384 || msg.data.length === 0)) fail('data length')
      if (size !== undefined && msg.piece >= Math.ceil(size / 16384)) fail('piece index')
    }
  }
]

describe('fuzzing: only coded errors, and canonical results', () => {
  it.each(targets)('$name: 100,000 inputs', (target) => {
    const seen = new Map<string, number>()
    let ok = 0
    const once = (bytes: Uint8Array, size?: number): void => {
      try {
        target.run(bytes, size)
        ok++
      } catch (err) {
        if (!isSeedingError(err) || !target.codes.test(err.code)) throw err
        seen.set(err.code, (seen.get(err.code) ?? 0) + 1)
      }
    }
    fc.assert(fc.property(fc.integer(), seed => {
      const input = fuzzInput(target.seeds, makeRng(seed))
      once(input.bytes, input.size)
    }), { seed: 1, numRuns: MUTATED_RUNS })
    fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), bytes => { once(bytes) }), { seed: 2, numRuns: RANDOM_RUNS })
    // the generators must reach past the first byte: successes, and the errors of deep checks
    expect(ok).toBeGreaterThan(1000)
    expect(target.mustSee.filter(c => !seen.has(c))).toEqual([])
  }, 60_000)
})
