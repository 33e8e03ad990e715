import { SeedingError } from './errors.js'

/**
 * The BitTorrent peer wire protocol (BEP 3) with the fast extension (BEP 6) and the extension
 * protocol (BEP 10): a handshake codec, message encoders and a streaming parser that enforces the
 * caps libtorrent enforces. The parser never allocates for a piece block that arrived in one
 * socket chunk; it hands out subarrays that are valid only during the callback.
 */

export const PROTOCOL = 'BitTorrent protocol'
export const HANDSHAKE_LENGTH = 68
export const BLOCK_SIZE = 16 * 1024
/** Largest message body accepted from a peer: 1 MiB plus one block, as libtorrent. */
export const MAX_MESSAGE_LENGTH = 1024 * 1024 + BLOCK_SIZE
/** Largest extended (BEP 10) message body. */
export const MAX_EXTENDED_LENGTH = 128 * 1024
/**
 * Socket chunks of one partial message kept apart before they are copied into one buffer (a 16 KiB
 * block in MSS-sized segments stays under it; a trickle is assembled while its chunks are young).
 */
const MAX_PENDING_CHUNKS = 16

export const MSG = {
  choke: 0,
  unchoke: 1,
  interested: 2,
  notInterested: 3,
  have: 4,
  bitfield: 5,
  request: 6,
  piece: 7,
  cancel: 8,
  port: 9,
  suggest: 0x0d,
  haveAll: 0x0e,
  haveNone: 0x0f,
  reject: 0x10,
  allowedFast: 0x11,
  extended: 20
} as const

export interface Handshake {
  infoHash: Uint8Array
  peerId: Uint8Array
  extensions: boolean
  fast: boolean
  dht: boolean
}

export function encodeHandshake (infoHash: Uint8Array, peerId: Uint8Array, opts: { dht: boolean }): Buffer {
  const buf = Buffer.alloc(HANDSHAKE_LENGTH)
  buf[0] = 19
  buf.write(PROTOCOL, 1, 'latin1')
  buf[25] = 0x10 // BEP 10 extension protocol
  buf[27] = 0x04 | (opts.dht ? 0x01 : 0) // BEP 6 fast extension, BEP 5 DHT
  buf.set(infoHash, 28)
  buf.set(peerId, 48)
  return buf
}

/** Parses the 68-byte handshake; throws WIRE_HANDSHAKE when it is not BitTorrent. */
export function decodeHandshake (buf: Uint8Array): Handshake {
  if (buf.length < HANDSHAKE_LENGTH) throw new SeedingError('WIRE_HANDSHAKE', 'handshake too short')
  if (buf[0] !== 19 || Buffer.from(buf.subarray(1, 20)).toString('latin1') !== PROTOCOL) {
    throw new SeedingError('WIRE_HANDSHAKE', 'not a BitTorrent handshake')
  }
  return {
    infoHash: buf.slice(28, 48),
    peerId: buf.slice(48, 68),
    extensions: (buf[25]! & 0x10) !== 0,
    fast: (buf[27]! & 0x04) !== 0,
    dht: (buf[27]! & 0x01) !== 0
  }
}

const KEEPALIVE = Buffer.alloc(4)
const simple = (id: number): Buffer => Buffer.from([0, 0, 0, 1, id])
const CHOKE = simple(MSG.choke)
const UNCHOKE = simple(MSG.unchoke)
const INTERESTED = simple(MSG.interested)
const NOT_INTERESTED = simple(MSG.notInterested)
const HAVE_ALL = simple(MSG.haveAll)
const HAVE_NONE = simple(MSG.haveNone)

export const encode = {
  keepAlive: (): Buffer => KEEPALIVE,
  choke: (): Buffer => CHOKE,
  unchoke: (): Buffer => UNCHOKE,
  interested: (): Buffer => INTERESTED,
  notInterested: (): Buffer => NOT_INTERESTED,
  haveAll: (): Buffer => HAVE_ALL,
  haveNone: (): Buffer => HAVE_NONE,
  have (index: number): Buffer {
    const b = Buffer.allocUnsafe(9)
    b.writeUInt32BE(5, 0); b[4] = MSG.have; b.writeUInt32BE(index, 5)
    return b
  },
  bitfield (bytes: Uint8Array): Buffer {
    const b = Buffer.allocUnsafe(5 + bytes.length)
    b.writeUInt32BE(1 + bytes.length, 0); b[4] = MSG.bitfield; b.set(bytes, 5)
    return b
  },
  request: (index: number, begin: number, length: number): Buffer => triple(MSG.request, index, begin, length),
  cancel: (index: number, begin: number, length: number): Buffer => triple(MSG.cancel, index, begin, length),
  reject: (index: number, begin: number, length: number): Buffer => triple(MSG.reject, index, begin, length),
  /** The 13-byte header of a piece message; the block follows it on the socket. */
  pieceHeader (index: number, begin: number, length: number): Buffer {
    const b = Buffer.allocUnsafe(13)
    b.writeUInt32BE(9 + length, 0); b[4] = MSG.piece; b.writeUInt32BE(index, 5); b.writeUInt32BE(begin, 9)
    return b
  },
  port (port: number): Buffer {
    const b = Buffer.allocUnsafe(7)
    b.writeUInt32BE(3, 0); b[4] = MSG.port; b.writeUInt16BE(port, 5)
    return b
  },
  extended (id: number, payload: Uint8Array): Buffer {
    const b = Buffer.allocUnsafe(6 + payload.length)
    b.writeUInt32BE(2 + payload.length, 0); b[4] = MSG.extended; b[5] = id; b.set(payload, 6)
    return b
  }
}

function triple (id: number, a: number, b: number, c: number): Buffer {
  const buf = Buffer.allocUnsafe(17)
  buf.writeUInt32BE(13, 0); buf[4] = id; buf.writeUInt32BE(a, 5); buf.writeUInt32BE(b, 9); buf.writeUInt32BE(c, 13)
  return buf
}

/** What the parser hands to its owner. `data`/`payload`/`bytes` are only valid during the call. */
export type Message =
  | { type: 'keepAlive' }
  | { type: 'choke' | 'unchoke' | 'interested' | 'notInterested' | 'haveAll' | 'haveNone' }
  | { type: 'have' | 'suggest' | 'allowedFast', index: number }
  | { type: 'bitfield', bytes: Uint8Array }
  | { type: 'request' | 'cancel' | 'reject', index: number, begin: number, length: number }
  | { type: 'piece', index: number, begin: number, data: Uint8Array }
  | { type: 'port', port: number }
  | { type: 'extended', id: number, payload: Uint8Array }

const FIXED_LENGTH: Record<number, number> = {
  [MSG.choke]: 1,
  [MSG.unchoke]: 1,
  [MSG.interested]: 1,
  [MSG.notInterested]: 1,
  [MSG.have]: 5,
  [MSG.request]: 13,
  [MSG.cancel]: 13,
  [MSG.port]: 3,
  [MSG.suggest]: 5,
  [MSG.haveAll]: 1,
  [MSG.haveNone]: 1,
  [MSG.reject]: 13,
  [MSG.allowedFast]: 5
}

/**
 * Splits a byte stream into messages. Refuses (throws a WIRE_* SeedingError, after which the
 * connection must be closed) a length prefix over MAX_MESSAGE_LENGTH, an unknown message id, a
 * fixed-size message of the wrong size, a piece with no or more than one block of data, an
 * oversized extended message and a bitfield longer than `maxBitfieldBytes`.
 */
export class MessageParser {
  private pending: Buffer[] = []
  private pendingBytes = 0
  /** The buffer a trickling message is assembled in (see assemble). */
  private assembly?: Buffer
  /** Buffered bytes needed before parsing can make progress. */
  private need = 4
  /** Set once the torrent's piece count is known: a longer bitfield is refused before it arrives. */
  maxBitfieldBytes = MAX_MESSAGE_LENGTH

  constructor (private readonly onMessage: (msg: Message) => void) {}

  /** Bytes buffered but not yet parsed (bounded by MAX_MESSAGE_LENGTH + 4). */
  get buffered (): number { return this.pendingBytes }

  push (chunk: Buffer): void {
    let buf: Buffer
    if (this.pendingBytes === 0) {
      buf = chunk
    } else {
      this.pending.push(chunk)
      this.pendingBytes += chunk.length
      // a message trickling in a byte at a time is joined once, not once per byte; but every
      // chunk costs a few hundred bytes of heap beside its data (a 1-byte trickle of a 128 KiB
      // message held 33 MB), so once they pile up they are copied into one buffer
      if (this.pendingBytes < this.need) {
        if (this.pending.length > MAX_PENDING_CHUNKS) this.assemble()
        return
      }
      buf = Buffer.concat(this.pending, this.pendingBytes)
      this.pending = []
      this.pendingBytes = 0
      this.assembly = undefined
    }
    let off = 0
    while (buf.length - off >= 4) {
      const len = buf.readUInt32BE(off)
      if (len > MAX_MESSAGE_LENGTH) throw new SeedingError('WIRE_MESSAGE_TOO_LARGE', `message length ${len} exceeds ${MAX_MESSAGE_LENGTH}`)
      if (len > 0) this.checkHeader(buf, off, len)
      if (buf.length - off - 4 < len) {
        this.need = buf.length - off >= 5 ? 4 + len : 5
        break
      }
      const body = buf.subarray(off + 4, off + 4 + len)
      off += 4 + len
      this.dispatch(body)
    }
    if (buf.length - off < 4) this.need = 4
    if (off < buf.length) {
      // keep only the unparsed tail (a copy when it is a small slice of a large chunk, so the
      // chunk itself can be freed)
      const rest = buf.subarray(off)
      this.pending.push(rest.length < 4096 && buf.length > 65536 ? Buffer.from(rest) : rest)
      this.pendingBytes = rest.length
    }
  }

  /**
   * Copies the pending chunks of a partial message into one buffer of the message's final size
   * (`need`, bounded by the caps checkHeader enforced): each byte is copied once, however small the
   * chunks it arrived in.
   */
  private assemble (): void {
    const first = this.pending[0]!
    let acc = this.assembly
    let at = 0
    let from = 0
    if (acc !== undefined && first.buffer === acc.buffer && first.byteOffset === acc.byteOffset) {
      at = first.length
      from = 1
    } else {
      acc = Buffer.allocUnsafe(this.need)
      this.assembly = acc
    }
    for (let i = from; i < this.pending.length; i++) {
      const c = this.pending[i]!
      c.copy(acc, at)
      at += c.length
    }
    this.pending = [acc.subarray(0, at)]
  }

  /** Validates what can be known from the length and id before the body has arrived. */
  private checkHeader (buf: Buffer, off: number, len: number): void {
    if (buf.length - off < 5) return
    const id = buf[off + 4]!
    const fixed = FIXED_LENGTH[id]
    if (fixed !== undefined) {
      if (len !== fixed) throw new SeedingError('WIRE_BAD_LENGTH', `message ${id} has length ${len}, expected ${fixed}`)
      return
    }
    switch (id) {
      case MSG.piece:
        if (len <= 9 || len > 9 + BLOCK_SIZE) throw new SeedingError('WIRE_BAD_LENGTH', `piece message carries ${len - 9} bytes (1..${BLOCK_SIZE} allowed)`)
        return
      case MSG.bitfield:
        if (len - 1 > this.maxBitfieldBytes) throw new SeedingError('WIRE_BAD_LENGTH', `bitfield of ${len - 1} bytes is longer than ${this.maxBitfieldBytes}`)
        return
      case MSG.extended:
        if (len < 2 || len > MAX_EXTENDED_LENGTH + 2) throw new SeedingError('WIRE_BAD_LENGTH', `extended message of ${len} bytes`)
        return
      default:
        throw new SeedingError('WIRE_UNKNOWN_MESSAGE', `unknown message id ${id}`)
    }
  }

  private dispatch (b: Buffer): void {
    if (b.length === 0) { this.onMessage({ type: 'keepAlive' }); return }
    const id = b[0]!
    switch (id) {
      case MSG.choke: this.onMessage({ type: 'choke' }); return
      case MSG.unchoke: this.onMessage({ type: 'unchoke' }); return
      case MSG.interested: this.onMessage({ type: 'interested' }); return
      case MSG.notInterested: this.onMessage({ type: 'notInterested' }); return
      case MSG.haveAll: this.onMessage({ type: 'haveAll' }); return
      case MSG.haveNone: this.onMessage({ type: 'haveNone' }); return
      case MSG.have: this.onMessage({ type: 'have', index: b.readUInt32BE(1) }); return
      case MSG.suggest: this.onMessage({ type: 'suggest', index: b.readUInt32BE(1) }); return
      case MSG.allowedFast: this.onMessage({ type: 'allowedFast', index: b.readUInt32BE(1) }); return
      case MSG.bitfield: this.onMessage({ type: 'bitfield', bytes: b.subarray(1) }); return
      case MSG.request:
      case MSG.cancel:
      case MSG.reject:
        this.onMessage({
          type: id === MSG.request ? 'request' : id === MSG.cancel ? 'cancel' : 'reject',
          index: b.readUInt32BE(1),
          begin: b.readUInt32BE(5),
          length: b.readUInt32BE(9)
        })
        return
      case MSG.piece: this.onMessage({ type: 'piece', index: b.readUInt32BE(1), begin: b.readUInt32BE(5), data: b.subarray(9) }); return
      case MSG.port: this.onMessage({ type: 'port', port: b.readUInt16BE(1) }); return
      case MSG.extended: this.onMessage({ type: 'extended', id: b[1]!, payload: b.subarray(2) }); return
      default: throw new SeedingError('WIRE_UNKNOWN_MESSAGE', `unknown message id ${id}`)
    }
  }
}
