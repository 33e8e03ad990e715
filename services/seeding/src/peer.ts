import type { Socket } from 'node:net'
import type { BttPeer } from './speed.js'
import { Bitfield } from './bitfield.js'
import { encode, MessageParser, type Handshake, type Message } from './wire.js'
import { RateMeter } from './rate.js'
import type { ExtendedHandshake } from './extension.js'

export interface BlockRequest { index: number, begin: number, length: number }

/** Limits on what one peer may make us hold. */
export const PEER_LIMITS = {
  /** Requests queued from one peer; advertised as `reqq`. */
  maxQueuedRequests: 500,
  /** Invalid requests (not ours, out of range, bad length, over the queue) before we disconnect. */
  maxInvalidRequests: 20,
  /** Bytes queued on the socket before we stop serving this peer until it drains. */
  maxWriteBuffer: 1024 * 1024,
  /** Piece reads in flight for one peer. */
  maxReadsInFlight: 16,
  /** A peer that sends nothing for this long is dropped (keep-alives are every 2 minutes). */
  idleTimeoutMs: 4 * 60 * 1000
}

/**
 * One connected peer after the handshake: the socket, the wire parser and the per-peer state.
 * The owning torrent interprets messages; this class keeps the bookkeeping and the caps that do
 * not need the torrent.
 */
export class Peer {
  readonly key: string
  readonly peerId: string
  readonly fast: boolean
  readonly extensions: boolean
  readonly parser: MessageParser

  amChoking = true
  amInterested = false
  peerChoking = true
  peerInterested = false
  lastUnchokedAt = 0
  /** The peer's pieces; undefined until we know the piece count (magnet) or it told us. */
  have?: Bitfield
  /** A bitfield/have_all that arrived before we had metadata. */
  early?: { all: boolean, bytes?: Uint8Array, haves: number[] }
  ext?: ExtendedHandshake
  /** Extension message ids the peer asked us to use, by name. */
  extIds = new Map<string, number>()
  /** Requests from the peer waiting to be served, oldest first. */
  readonly queue: BlockRequest[] = []
  readsInFlight = 0
  /** Our requests to the peer, by `index:begin`. */
  readonly outstanding = new Map<string, number>()
  invalid = 0
  hashFails = 0
  readonly up = new RateMeter()
  readonly down = new RateMeter()
  lastReceived = Date.now()
  lastSent = Date.now()
  closed = false
  /** Peers we learned through PEX are reported to others only once they connected. */
  listenPort?: number
  /** Pending ut_metadata requests we made, by piece. */
  metadataRequests = new Set<number>()
  /** Pieces we sent in the last PEX round, and what this peer last heard from us. */
  pexSent = new Set<string>()
  pexLastAt = 0
  /** The `btt` extension's state, for a peer that speaks it on our ledger. */
  btt?: BttPeer
  /** Bumped on every choke: a block read before a choke is not sent after it. */
  chokeGen = 0

  constructor (readonly socket: Socket, hs: Handshake, readonly incoming: boolean, onMessage: (msg: Message) => void) {
    this.key = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0}`
    this.peerId = Buffer.from(hs.peerId).toString('hex')
    this.fast = hs.fast
    this.extensions = hs.extensions
    this.parser = new MessageParser(onMessage)
  }

  get host (): string { return this.socket.remoteAddress ?? '' }
  get seed (): boolean { return this.have?.complete === true || this.early?.all === true }

  send (buf: Uint8Array): void {
    if (this.closed) return
    this.lastSent = Date.now()
    this.socket.write(buf)
  }

  /** A piece message without copying the block: header and block go out in one writev. */
  sendPiece (index: number, begin: number, block: Uint8Array, done: () => void): void {
    if (this.closed) { done(); return }
    this.lastSent = Date.now()
    const s = this.socket
    s.cork()
    s.write(encode.pieceHeader(index, begin, block.length))
    // `done` runs once the socket no longer holds the block (flushed or destroyed)
    s.write(block, done)
    s.uncork()
    this.up.add(block.length)
  }

  /** True while the socket holds more than we allow to queue. */
  get congested (): boolean {
    return this.socket.writableLength > PEER_LIMITS.maxWriteBuffer
  }

  choke (): void {
    if (this.amChoking) return
    this.amChoking = true
    this.chokeGen++
    this.send(encode.choke())
    // BEP 6: with the fast extension each dropped request is rejected explicitly
    if (this.fast) for (const r of this.queue) this.send(encode.reject(r.index, r.begin, r.length))
    this.queue.length = 0
  }

  unchoke (now: number): void {
    this.lastUnchokedAt = now
    if (!this.amChoking) return
    this.amChoking = false
    this.send(encode.unchoke())
  }

  interested (yes: boolean): void {
    if (this.amInterested === yes) return
    this.amInterested = yes
    this.send(yes ? encode.interested() : encode.notInterested())
  }

  destroy (): void {
    if (this.closed) return
    this.closed = true
    this.socket.destroy()
  }
}
