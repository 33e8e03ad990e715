import { describe, expect, it } from 'vitest'
import { Bitfield } from './bitfield.js'
import { SeedingError } from './errors.js'
import { BLOCK_SIZE, decodeHandshake, encode, encodeHandshake, MAX_MESSAGE_LENGTH, MessageParser, type Message } from './wire.js'

function parse (chunks: Buffer[], setup?: (p: MessageParser) => void): Message[] {
  const out: Message[] = []
  const p = new MessageParser(m => {
    // payloads are only valid during the callback: copy what the test keeps
    if (m.type === 'piece') out.push({ ...m, data: Buffer.from(m.data) })
    else if (m.type === 'bitfield') out.push({ ...m, bytes: Buffer.from(m.bytes) })
    else if (m.type === 'extended') out.push({ ...m, payload: Buffer.from(m.payload) })
    else out.push(m)
  })
  setup?.(p)
  for (const c of chunks) p.push(c)
  return out
}

function frame (id: number, body: Buffer): Buffer {
  const b = Buffer.alloc(5 + body.length)
  b.writeUInt32BE(1 + body.length, 0)
  b[4] = id
  body.copy(b, 5)
  return b
}

describe('handshake', () => {
  it('round-trips and reads the reserved bits', () => {
    const ih = Buffer.alloc(20, 7)
    const id = Buffer.alloc(20, 9)
    const hs = decodeHandshake(encodeHandshake(ih, id, { dht: true }))
    expect(hs).toMatchObject({ extensions: true, fast: true, dht: true })
    expect(Buffer.from(hs.infoHash)).toEqual(ih)
    expect(Buffer.from(hs.peerId)).toEqual(id)
  })

  it('refuses what is not BitTorrent', () => {
    const bad = encodeHandshake(Buffer.alloc(20), Buffer.alloc(20), { dht: false })
    bad[3] = 0x41
    expect(() => decodeHandshake(bad)).toThrow(SeedingError)
    expect(() => decodeHandshake(Buffer.alloc(10))).toThrow(expect.objectContaining({ code: 'WIRE_HANDSHAKE' }))
  })
})

describe('MessageParser', () => {
  const stream = Buffer.concat([
    encode.keepAlive(), encode.choke(), encode.unchoke(), encode.interested(), encode.notInterested(),
    encode.have(7), encode.bitfield(Buffer.from([0xf0])), encode.request(1, 16384, 16384), encode.cancel(1, 0, 5),
    encode.reject(2, 0, 16384), encode.haveAll(), encode.haveNone(), encode.port(6881),
    Buffer.concat([encode.pieceHeader(3, 32768, 5), Buffer.from('hello')]), encode.extended(1, Buffer.from('d1:ai1ee'))
  ])
  const expected: Message[] = [
    { type: 'keepAlive' }, { type: 'choke' }, { type: 'unchoke' }, { type: 'interested' }, { type: 'notInterested' },
    { type: 'have', index: 7 }, { type: 'bitfield', bytes: Buffer.from([0xf0]) }, { type: 'request', index: 1, begin: 16384, length: 16384 },
    { type: 'cancel', index: 1, begin: 0, length: 5 }, { type: 'reject', index: 2, begin: 0, length: 16384 }, { type: 'haveAll' },
    { type: 'haveNone' }, { type: 'port', port: 6881 }, { type: 'piece', index: 3, begin: 32768, data: Buffer.from('hello') },
    { type: 'extended', id: 1, payload: Buffer.from('d1:ai1ee') }
  ]

  it('parses every message whole, and the same when cut at every byte', () => {
    expect(parse([stream])).toEqual(expected)
    const bytes = [...stream].map(b => Buffer.from([b]))
    expect(parse(bytes)).toEqual(expected)
    for (let cut = 1; cut < stream.length; cut += 7) {
      expect(parse([stream.subarray(0, cut), stream.subarray(cut)])).toEqual(expected)
    }
  })

  it('refuses a length prefix over the cap before the body arrives', () => {
    const header = Buffer.alloc(4)
    header.writeUInt32BE(MAX_MESSAGE_LENGTH + 1)
    expect(() => parse([header])).toThrow(expect.objectContaining({ code: 'WIRE_MESSAGE_TOO_LARGE' }))
    header.writeUInt32BE(0xffffffff)
    expect(() => parse([header])).toThrow(expect.objectContaining({ code: 'WIRE_MESSAGE_TOO_LARGE' }))
  })

  it.each([
    ['choke with a body', frame(0, Buffer.alloc(1)), 'WIRE_BAD_LENGTH'],
    ['have too short', frame(4, Buffer.alloc(3)), 'WIRE_BAD_LENGTH'],
    ['request too long', frame(6, Buffer.alloc(13)), 'WIRE_BAD_LENGTH'],
    ['piece without data', frame(7, Buffer.alloc(8)), 'WIRE_BAD_LENGTH'],
    ['piece with more than a block', frame(7, Buffer.alloc(8 + BLOCK_SIZE + 1)), 'WIRE_BAD_LENGTH'],
    ['unknown id', frame(99, Buffer.alloc(0)), 'WIRE_UNKNOWN_MESSAGE'],
    ['extended without an id byte', frame(20, Buffer.alloc(0)), 'WIRE_BAD_LENGTH']
  ])('refuses %s', (_name, bytes, code) => {
    // the header alone is enough to refuse: nothing past it needs to arrive
    expect(() => parse([bytes.subarray(0, 5)])).toThrow(expect.objectContaining({ code }))
  })

  it('refuses a bitfield longer than the torrent needs once the piece count is known', () => {
    const bf = encode.bitfield(Buffer.alloc(100))
    expect(() => parse([bf.subarray(0, 5)], p => { p.maxBitfieldBytes = 2 })).toThrow(expect.objectContaining({ code: 'WIRE_BAD_LENGTH' }))
    expect(parse([bf], p => { p.maxBitfieldBytes = 100 })).toHaveLength(1)
  })

  it('holds at most one message of buffered bytes', () => {
    const p = new MessageParser(() => {})
    const big = Buffer.concat([encode.pieceHeader(0, 0, BLOCK_SIZE), Buffer.alloc(BLOCK_SIZE)])
    p.push(big.subarray(0, 1000))
    expect(p.buffered).toBe(1000)
    p.push(big.subarray(1000))
    expect(p.buffered).toBe(0)
  })
})

describe('Bitfield', () => {
  it('counts, sets and validates spare bits', () => {
    const b = new Bitfield(10)
    b.set(0); b.set(9); b.set(9)
    expect(b.count).toBe(2)
    expect(Buffer.from(b.bytes)).toEqual(Buffer.from([0x80, 0x40]))
    expect(Bitfield.valid(10, Buffer.from([0xff, 0xc0]))).toBe(true)
    expect(Bitfield.valid(10, Buffer.from([0xff, 0xe0]))).toBe(false)
    expect(Bitfield.valid(10, Buffer.from([0xff]))).toBe(false)
    expect(Bitfield.full(10).complete).toBe(true)
    expect(new Bitfield(10, Buffer.from([0xff, 0xff])).count).toBe(10)
  })
})
