import { randomBytes } from 'node:crypto'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { decode, encode, type BDict } from '@btt/wire'
import {
  MAX_REQQ, decodeCompactPeers, decodeExtendedHandshake, decodeMetadataMessage, decodePex, encodeCompactPeer,
  encodeExtendedHandshake, encodeMetadataData, encodeMetadataReject, encodeMetadataRequest, encodePex
} from './extension.js'
import { errorCode } from './test-support/errors.js'

const code = errorCode

describe('extended handshake', () => {
  it('decodes what libtorrent-style clients send', () => {
    const payload = encode({
      e: 0,
      ipv4: Buffer.from([127, 0, 0, 1]),
      m: { lt_donthave: 7, upload_only: 3, ut_holepunch: 4, ut_metadata: 2, ut_pex: 1, old: 0 },
      metadata_size: 31_235,
      p: 6881,
      reqq: 500,
      v: 'qBittorrent/4.5.2',
      yourip: Buffer.from([10, 0, 0, 2])
    })
    const hs = decodeExtendedHandshake(payload)
    expect(hs.m.get('ut_metadata')).toBe(2)
    expect(hs.m.get('ut_pex')).toBe(1)
    // id 0 is kept: it turns an extension off
    expect(hs.m.get('old')).toBe(0)
    expect(hs.port).toBe(6881)
    expect(hs.reqq).toBe(500)
    expect(hs.metadataSize).toBe(31_235)
    expect(hs.v).toBe('qBittorrent/4.5.2')
    expect([...hs.yourip!]).toEqual([10, 0, 0, 2])
    expect(hs.dict.get('e')).toBe(0)
  })

  it('accepts a minimal handshake and clamps a huge reqq', () => {
    const hs = decodeExtendedHandshake(encode({}))
    expect(hs.m.size).toBe(0)
    expect(hs.port).toBeUndefined()
    expect(decodeExtendedHandshake(encode({ reqq: 1_000_000 })).reqq).toBe(MAX_REQQ)
    expect(decodeExtendedHandshake(encode({ v: Buffer.from([0xff]) })).v).toBe('\ufffd')
  })

  it.each([
    [{ m: { ut_pex: 256 } }, 'EXT_BAD_EXT_ID'],
    [{ m: { ut_pex: -1 } }, 'EXT_BAD_EXT_ID'],
    [{ m: { ut_pex: 'x' } }, 'EXT_BAD_EXT_ID'],
    [{ m: 'x' }, 'EXT_BAD_FIELD'],
    [{ p: 0 }, 'EXT_BAD_PORT'],
    [{ p: 65536 }, 'EXT_BAD_PORT'],
    [{ p: 'x' }, 'EXT_BAD_FIELD'],
    [{ reqq: 0 }, 'EXT_BAD_REQQ'],
    [{ metadata_size: 0 }, 'EXT_METADATA_SIZE'],
    [{ metadata_size: 16 * 1024 * 1024 + 1 }, 'EXT_METADATA_SIZE'],
    [{ metadata_size: -5 }, 'EXT_METADATA_SIZE'],
    [{ yourip: Buffer.alloc(5) }, 'EXT_BAD_FIELD'],
    [{ v: 5 }, 'EXT_BAD_FIELD']
  ])('refuses %j', (dict, expected) => {
    expect(code(() => decodeExtendedHandshake(encode(dict)))).toBe(expected)
  })

  it('refuses oversized and non-dict payloads', () => {
    expect(code(() => decodeExtendedHandshake(encode({ pad: randomBytes(64 * 1024) })))).toBe('EXT_TOO_LARGE')
    expect(code(() => decodeExtendedHandshake(encode([1])))).toBe('EXT_NOT_DICT')
    expect(code(() => decodeExtendedHandshake(Buffer.from('d1:pi1e')))).toBe('BENCODE_TRUNCATED')
    expect(code(() => decodeExtendedHandshake(Buffer.from('d1:pi01ee')))).toBe('BENCODE_LEADING_ZERO')
  })

  it('round-trips through the encoder', () => {
    const payload = encodeExtendedHandshake({
      m: { ut_metadata: 1, ut_pex: 2 }, port: 51413, v: 'btt 0.1', reqq: 250, metadataSize: 1234,
      yourip: new Uint8Array(16), extra: { upload_only: 1, m: 'overridden' }
    })
    const hs = decodeExtendedHandshake(payload)
    expect([...hs.m]).toEqual([['ut_metadata', 1], ['ut_pex', 2]])
    expect(hs.port).toBe(51413)
    expect(hs.v).toBe('btt 0.1')
    expect(hs.reqq).toBe(250)
    expect(hs.metadataSize).toBe(1234)
    expect(hs.yourip).toHaveLength(16)
    expect(hs.dict.get('upload_only')).toBe(1)
    for (const bad of [{ m: { x: 300 } }, { m: {}, port: 0 }, { m: {}, reqq: 0 }, { m: {}, metadataSize: 0 }, { m: {}, yourip: new Uint8Array(3) }]) {
      expect(code(() => encodeExtendedHandshake(bad))).toMatch(/^EXT_/)
    }
  })
})

describe('ut_metadata', () => {
  const SIZE = 40_000 // three pieces: 16384, 16384, 7232

  it('decodes requests, data and rejects', () => {
    expect(decodeMetadataMessage(encodeMetadataRequest(2), SIZE)).toEqual({ msgType: 0, piece: 2 })
    expect(decodeMetadataMessage(encodeMetadataReject(1), SIZE)).toEqual({ msgType: 2, piece: 1 })
    const data = randomBytes(7232)
    const msg = decodeMetadataMessage(encodeMetadataData(2, SIZE, data), SIZE)
    expect(msg.msgType).toBe(1)
    expect(msg.piece).toBe(2)
    expect(msg.totalSize).toBe(SIZE)
    expect(Buffer.compare(msg.data!, data)).toBe(0)
    // without a known size the message's own total_size is the reference
    expect(decodeMetadataMessage(encodeMetadataData(0, SIZE, randomBytes(16384))).data).toHaveLength(16384)
  })

  it('takes a dict followed by raw bytes, as BEP 9 lays it out', () => {
    const payload = Buffer.concat([Buffer.from('d8:msg_typei1e5:piecei0e10:total_sizei3ee'), Buffer.from('abc')])
    expect(Buffer.from(decodeMetadataMessage(payload).data!).toString()).toBe('abc')
  })

  it.each([
    ['msg_type 3', encode({ msg_type: 3, piece: 0 }), 'EXT_METADATA_MSG_TYPE'],
    ['no msg_type', encode({ piece: 0 }), 'EXT_MISSING_FIELD'],
    ['no piece', encode({ msg_type: 0 }), 'EXT_MISSING_FIELD'],
    ['negative piece', encode({ msg_type: 0, piece: -1 }), 'EXT_METADATA_PIECE'],
    ['piece past the end', encode({ msg_type: 0, piece: 3 }), 'EXT_METADATA_PIECE'],
    ['request with trailing bytes', Buffer.concat([encode({ msg_type: 0, piece: 0 }), Buffer.from('x')]), 'EXT_METADATA_TRAILING'],
    ['data without total_size', Buffer.concat([encode({ msg_type: 1, piece: 0 }), randomBytes(16384)]), 'EXT_MISSING_FIELD'],
    ['data with another total_size', Buffer.concat([encode({ msg_type: 1, piece: 0, total_size: SIZE + 1 }), randomBytes(16384)]), 'EXT_METADATA_SIZE'],
    ['short data', Buffer.concat([encode({ msg_type: 1, piece: 0, total_size: SIZE }), randomBytes(16383)]), 'EXT_METADATA_DATA'],
    ['long last piece', Buffer.concat([encode({ msg_type: 1, piece: 2, total_size: SIZE }), randomBytes(7233)]), 'EXT_METADATA_DATA'],
    ['oversized', Buffer.concat([encode({ msg_type: 1, piece: 0, total_size: SIZE }), randomBytes(20_000)]), 'EXT_TOO_LARGE'],
    ['list', encode([1]), 'EXT_NOT_DICT'],
    ['garbage', Buffer.from('x'), 'BENCODE_SYNTAX']
  ])('refuses %s', (_, payload, expected) => {
    expect(code(() => decodeMetadataMessage(payload, SIZE))).toBe(expected)
  })

  it('bounds the piece index even when the size is unknown', () => {
    expect(code(() => decodeMetadataMessage(encode({ msg_type: 0, piece: 1024 })))).toBe('EXT_METADATA_PIECE')
    expect(decodeMetadataMessage(encode({ msg_type: 0, piece: 1023 })).piece).toBe(1023)
    expect(code(() => decodeMetadataMessage(Buffer.concat([encode({ msg_type: 1, piece: 1, total_size: 100 }), Buffer.alloc(1)])))).toBe('EXT_METADATA_PIECE')
    expect(code(() => decodeMetadataMessage(Buffer.concat([encode({ msg_type: 1, piece: 0, total_size: 17 * 1024 * 1024 }), Buffer.alloc(16384)])))).toBe('EXT_METADATA_SIZE')
  })

  it('refuses to encode what it would refuse to decode', () => {
    expect(code(() => encodeMetadataData(0, SIZE, randomBytes(100)))).toBe('EXT_METADATA_DATA')
    expect(code(() => encodeMetadataRequest(-1))).toBe('EXT_METADATA_PIECE')
    expect(code(() => encodeMetadataReject(1.5))).toBe('EXT_METADATA_PIECE')
    expect(code(() => encodeMetadataData(0, 0, new Uint8Array(0)))).toBe('EXT_METADATA_SIZE')
  })
})

describe('ut_pex', () => {
  it('decodes IPv4 and IPv6 added/dropped with flags, skipping port 0', () => {
    const payload = encode({
      added: Buffer.from([1, 2, 3, 4, 0x1a, 0xe1, 5, 6, 7, 8, 0, 0, 9, 9, 9, 9, 0, 80]),
      'added.f': Buffer.from([0x01, 0x02, 0x10]),
      added6: Buffer.concat([Buffer.from('20010db8000000000000000000000001', 'hex'), Buffer.from([0xc8, 0xd5])]),
      dropped: Buffer.from([10, 0, 0, 1, 0x1f, 0x90]),
      dropped6: Buffer.concat([Buffer.from('00000000000000000000ffff0a000002', 'hex'), Buffer.from([0, 1])])
    })
    expect(decodePex(payload)).toEqual({
      added: [{ host: '1.2.3.4', port: 6881, flags: 1 }, { host: '9.9.9.9', port: 80, flags: 0x10 }, { host: '2001:db8::1', port: 51413 }],
      dropped: [{ host: '10.0.0.1', port: 8080 }, { host: '::ffff:10.0.0.2', port: 1 }]
    })
    expect(decodePex(encode({}))).toEqual({ added: [], dropped: [] })
  })

  it.each([
    [{ added: Buffer.alloc(7) }, 'EXT_PEX_BAD_LENGTH'],
    [{ added6: Buffer.alloc(17) }, 'EXT_PEX_BAD_LENGTH'],
    [{ dropped: Buffer.alloc(5) }, 'EXT_PEX_BAD_LENGTH'],
    [{ added: Buffer.alloc(12, 1), 'added.f': Buffer.alloc(1) }, 'EXT_PEX_BAD_FLAGS'],
    [{ added: Buffer.alloc(6, 1), 'added.f': Buffer.alloc(2) }, 'EXT_PEX_BAD_FLAGS'],
    [{ added: 5 }, 'EXT_BAD_FIELD'],
    [{ added: Buffer.alloc(6 * 150, 1), added6: Buffer.alloc(18 * 51, 1) }, 'EXT_PEX_TOO_LARGE'],
    [{ dropped: Buffer.alloc(6 * 201, 1) }, 'EXT_PEX_TOO_LARGE']
  ])('refuses %#', (dict, expected) => {
    expect(code(() => decodePex(encode(dict)))).toBe(expected)
  })

  it('accepts exactly the cap', () => {
    expect(decodePex(encode({ added: Buffer.alloc(6 * 150, 1), added6: Buffer.alloc(18 * 50, 1), dropped: Buffer.alloc(6 * 200, 1) })).added).toHaveLength(200)
    expect(code(() => decodePex(encode({ pad: Buffer.alloc(20_000) })))).toBe('EXT_TOO_LARGE')
  })

  it('round-trips through the encoder', () => {
    const added = [{ host: '1.2.3.4', port: 1, flags: 3 }, { host: 'fe80::1:2', port: 65535, flags: 0 }, { host: '::ffff:1.2.3.4', port: 9 }]
    const dropped = [{ host: '255.255.255.255', port: 2 }, { host: '2001:db8:0:0:1:0:0:1', port: 3 }]
    const back = decodePex(encodePex({ added, dropped }))
    expect(back.added).toEqual([{ host: '1.2.3.4', port: 1, flags: 3 }, { host: 'fe80::1:2', port: 65535, flags: 0 }, { host: '::ffff:1.2.3.4', port: 9, flags: 0 }])
    // RFC 5952: the first of two equal zero runs is compressed
    expect(back.dropped).toEqual([{ host: '255.255.255.255', port: 2 }, { host: '2001:db8::1:0:0:1', port: 3 }])
    const v4only = decode(encodePex({ added: [{ host: '1.1.1.1', port: 1 }], dropped: [] })) as BDict
    expect([...v4only.keys()]).toEqual(['added', 'added.f', 'dropped'])
    expect(code(() => encodePex({ added: [{ host: 'example.com', port: 1 }], dropped: [] }))).toBe('EXT_BAD_ADDR')
    expect(code(() => encodePex({ added: Array.from({ length: 201 }, () => ({ host: '1.1.1.1', port: 1 })), dropped: [] }))).toBe('EXT_PEX_TOO_LARGE')
    expect(code(() => encodePex({ added: [{ host: '1.1.1.1', port: 1, flags: 256 }], dropped: [] }))).toBe('EXT_BAD_FIELD')
  })
})

describe('compact peers (BEP 23)', () => {
  it('decodes and encodes both families', () => {
    expect(decodeCompactPeers(Buffer.from([127, 0, 0, 1, 0x1a, 0xe1, 1, 1, 1, 1, 0, 0]), 4)).toEqual([{ host: '127.0.0.1', port: 6881 }])
    expect([...encodeCompactPeer('127.0.0.1', 6881)]).toEqual([127, 0, 0, 1, 0x1a, 0xe1])
    expect(Buffer.from(encodeCompactPeer('::1', 80)).toString('hex')).toBe('00000000000000000000000000000001' + '0050')
    expect(Buffer.from(encodeCompactPeer('2001:db8::', 80)).toString('hex')).toBe('20010db8000000000000000000000000' + '0050')
    expect(decodeCompactPeers(encodeCompactPeer('::', 5), 6)).toEqual([{ host: '::', port: 5 }])
    expect(decodeCompactPeers(encodeCompactPeer('1:0:0:2:0:0:0:3', 5), 6)).toEqual([{ host: '1:0:0:2::3', port: 5 }])
    expect(decodeCompactPeers(encodeCompactPeer('1:2:3:4:5:6:7:8', 5), 6)).toEqual([{ host: '1:2:3:4:5:6:7:8', port: 5 }])
    expect(decodeCompactPeers(encodeCompactPeer('1:2:3:4:5:6:7:0', 5), 6)).toEqual([{ host: '1:2:3:4:5:6:7:0', port: 5 }])
    expect(decodeCompactPeers(new Uint8Array(0), 6)).toEqual([])
  })

  it('round-trips any address', () => {
    fc.assert(fc.property(fc.oneof(fc.ipV4(), fc.ipV6()), fc.integer({ min: 1, max: 65535 }), (host, port) => {
      const bytes = encodeCompactPeer(host, port)
      const [peer] = decodeCompactPeers(bytes, bytes.length === 6 ? 4 : 6)
      expect(peer!.port).toBe(port)
      expect(Buffer.compare(encodeCompactPeer(peer!.host, peer!.port), bytes)).toBe(0)
    }), { seed: 3, numRuns: 3000 })
  })

  it('refuses bad lengths, hosts and ports', () => {
    expect(code(() => decodeCompactPeers(new Uint8Array(7), 4))).toBe('EXT_COMPACT_LENGTH')
    expect(code(() => decodeCompactPeers(new Uint8Array(18), 5 as never))).toBe('EXT_INPUT')
    for (const host of ['example.com', '1.2.3', 'fe80::1%eth0', '']) expect(code(() => encodeCompactPeer(host, 1))).toBe('EXT_BAD_ADDR')
    for (const port of [0, 65536, 1.5]) expect(code(() => encodeCompactPeer('1.2.3.4', port))).toBe('EXT_BAD_PORT')
  })
})
