import { createHash, randomInt, type Hash } from 'node:crypto'
import type { Logger } from 'pino'
import { Bitfield } from './bitfield.js'
import type { ChokePolicy } from './choker.js'
import type { Speed, SpeedTorrent } from './speed.js'
import { SeedingError, isSeedingError } from './errors.js'
import {
  decodeExtendedHandshake, decodeMetadataMessage, decodePex, encodeExtendedHandshake, encodeMetadataData,
  encodeMetadataReject, encodeMetadataRequest, encodePex, MAX_METADATA_SIZE, type PeerAddr
} from './extension.js'
import { parseInfo, type Metainfo } from './metainfo.js'
import { PEER_LIMITS, type BlockRequest, type Peer } from './peer.js'
import type { PieceCache } from './piece-cache.js'
import { RateMeter, TokenBucket } from './rate.js'
import { TorrentStorage } from './storage.js'
import { BLOCK_SIZE, encode, type Message } from './wire.js'

export type TorrentState = 'metadata' | 'checking' | 'downloading' | 'seeding' | 'queued' | 'paused' | 'error'

/** A peer address as candidates are keyed: `host:port`, `[v6]:port`. */
export function addrKey (host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
}

/** Our BEP 10 extension ids (what peers put in the id byte when they message us). */
export const LOCAL_EXT = { ut_metadata: 1, ut_pex: 2, btt: 3 } as const
/** Extension names whose peer-side ids we remember; any other name in a handshake is dropped. */
const KNOWN_EXTENSIONS = Object.keys(LOCAL_EXT)
const METADATA_PIECE = 16 * 1024
const PIPELINE = 128
const MAX_PIECES_IN_PROGRESS = 64
/** Candidate addresses kept per torrent (from trackers, DHT, PEX, magnets). */
const MAX_CANDIDATES = 2000

/**
 * Buffers of verified-and-written pieces, reused for the next pieces to download (a fresh
 * allocation per piece makes V8 run full GCs under external-memory pressure). Bounded.
 */
const piecePool = new Map<number, Buffer[]>()
const PIECE_POOL_MAX = 16

function takePieceBuffer (size: number): Buffer {
  return piecePool.get(size)?.pop() ?? Buffer.allocUnsafeSlow(size)
}

function givePieceBuffer (buf: Buffer): void {
  const list = piecePool.get(buf.length) ?? []
  if (list.length >= PIECE_POOL_MAX) return
  list.push(buf)
  piecePool.set(buf.length, list)
}
/**
 * Longest bitfield accepted before we have the metadata: an info dict of at most
 * MAX_METADATA_SIZE bytes holds at most MAX_METADATA_SIZE / 20 piece hashes.
 */
const MAX_EARLY_BITFIELD_BYTES = Math.ceil(MAX_METADATA_SIZE / 20 / 8)

/** What a torrent needs from the engine. */
export interface TorrentHost {
  readonly peerId: Uint8Array
  readonly port: number
  readonly logger: Logger
  readonly cache: PieceCache
  readonly globalUp: TokenBucket
  readonly globalDown: TokenBucket
  readonly pex: boolean
  readonly utMetadata: boolean
  readonly clientName: string
  /** Called when metadata arrived for a magnet (to persist it). */
  onMetadata (t: Torrent): void
  /** Called when a piece was verified and written, and when the torrent completes. */
  onProgress (t: Torrent, completed: boolean): void
  /** Paid seeding (BitTorrent Speed); undefined: plain BitTorrent. */
  readonly speed?: Speed
}

interface PieceProgress {
  index: number
  length: number
  buf: Buffer
  blocks: number
  received: Uint8Array
  /** How many times each block is requested right now. */
  requested: Uint8Array
  receivedCount: number
  /** Peers that contributed blocks (to blame on a hash failure). */
  from: Set<Peer>
  /** A paid seeder this piece is reserved for: it is paid per verified piece, so it gets whole ones. */
  owner?: Peer
  /** SHA-1 over the piece's leading received blocks, fed as they arrive. */
  hash: Hash
  /** How many leading blocks `hash` has consumed. */
  hashed: number
}

export interface TorrentOptions {
  savePath: string
  maxPeers: number
  uploadRate: number
  downloadRate: number
  choker: ChokePolicy
}

/** One torrent: metadata, pieces, peers, the picker and the upload path. */
export class Torrent implements SpeedTorrent {
  readonly infoHash: string
  readonly infoHashBytes: Uint8Array
  meta?: Metainfo
  storage?: TorrentStorage
  have?: Bitfield
  state: TorrentState
  error?: string
  readonly peers = new Map<string, Peer>()
  readonly candidates = new Map<string, PeerAddr>()
  readonly up = new RateMeter()
  readonly down = new RateMeter()
  readonly upBucket: TokenBucket
  readonly downBucket: TokenBucket
  /** Totals over the torrent's life (restored from resume data). */
  uploaded = 0
  downloaded = 0
  addedAt = Date.now()
  completedAt = 0
  announce: string[][] = []
  /** A magnet's `dn`: the name shown until the metadata names the torrent. */
  displayName?: string
  choker: ChokePolicy
  private availability?: Uint16Array
  private readonly inProgress = new Map<number, PieceProgress>()
  /** Peers with a fillRequests retry scheduled (download limits). */
  private readonly fillRetry = new Set<Peer>()
  /** Peers we stopped reading from until the download buckets refill. */
  private readonly throttled = new Set<Peer>()
  /** Pieces received in full, being hashed and written: not to be picked again meanwhile. */
  private readonly finishing = new Set<number>()
  private metadataBuf?: Uint8Array
  private metadataHave?: Uint8Array
  private verifying = 0
  private rechokeQueued = false
  /** Set while `check()` runs; stops it when the torrent is removed. */
  private checkAbort?: AbortController
  checkProgress = 0

  constructor (readonly host: TorrentHost, infoHash: string, readonly options: TorrentOptions, meta?: Metainfo) {
    this.infoHash = infoHash
    this.infoHashBytes = Buffer.from(infoHash, 'hex')
    this.upBucket = new TokenBucket(options.uploadRate)
    this.downBucket = new TokenBucket(options.downloadRate)
    this.choker = options.choker
    this.state = meta === undefined ? 'metadata' : 'checking'
    if (meta !== undefined) this.setMeta(meta)
  }

  get name (): string { return this.meta?.name ?? this.displayName ?? this.infoHash }
  get complete (): boolean { return this.have?.complete === true }
  get pieceLengthNominal (): number | undefined { return this.meta?.pieceLength }
  get pieceCount (): number | undefined { return this.meta?.pieceCount }
  get totalLength (): number | undefined { return this.meta?.length }
  hasPiece (i: number): boolean { return this.have?.get(i) === true }

  /** One 16-KiB chunk of a piece we have (possession proofs). */
  async readChunk (piece: number, chunk: number): Promise<Uint8Array> {
    const len = Math.min(BLOCK_SIZE, this.pieceLength(piece) - chunk * BLOCK_SIZE)
    if (this.storage === undefined || !this.hasPiece(piece) || len <= 0) throw new SeedingError('SEEDING_NO_CHUNK', `no chunk ${chunk} of piece ${piece}`)
    const buf = Buffer.alloc(len)
    await this.storage.read(piece * this.meta!.pieceLength + chunk * BLOCK_SIZE, len, buf)
    return buf
  }
  get active (): boolean { return this.state === 'metadata' || this.state === 'downloading' || this.state === 'seeding' }
  get privateTorrent (): boolean { return this.meta?.private === true }
  get left (): number {
    if (this.meta === undefined || this.have === undefined) return 0
    let left = 0
    for (let i = 0; i < this.meta.pieceCount; i++) if (!this.have.get(i)) left += this.pieceLength(i)
    return left
  }

  pieceLength (i: number): number {
    const m = this.meta!
    return i === m.pieceCount - 1 ? m.length - m.pieceLength * i : m.pieceLength
  }

  private setMeta (meta: Metainfo): void {
    this.meta = meta
    this.storage = new TorrentStorage(meta, this.options.savePath)
    this.availability = new Uint16Array(meta.pieceCount)
    if (this.announce.length === 0) this.announce = meta.announce
  }

  /** Trusts a saved bitfield (fast resume). */
  restore (bits: Bitfield): void {
    this.have = bits
    this.storage!.writeMode = !bits.complete
    this.state = bits.complete ? 'seeding' : 'downloading'
    this.afterHaveKnown()
  }

  /** Hashes every piece on disk; the torrent serves nothing of its own meanwhile. */
  async check (): Promise<void> {
    const meta = this.meta!
    this.state = 'checking'
    this.checkAbort = new AbortController()
    const signal = this.checkAbort.signal
    const bits = new Bitfield(meta.pieceCount)
    const scratch = Buffer.allocUnsafe(meta.pieceLength)
    for (let i = 0; i < meta.pieceCount; i++) {
      if (signal.aborted) return
      this.checkProgress = i / meta.pieceCount
      const digest = await this.storage!.hashPiece(i, scratch)
      if (digest !== undefined && digest.equals(meta.pieces.subarray(i * 20, i * 20 + 20))) bits.set(i)
    }
    this.checkProgress = 1
    this.checkAbort = undefined
    this.storage!.close()
    this.restore(bits)
    this.host.onProgress(this, bits.complete)
  }

  private afterHaveKnown (): void {
    for (const p of this.peers.values()) {
      this.applyEarly(p)
      this.sendHaves(p)
      this.updateInterest(p)
    }
  }

  /** Stops serving and closes every peer (pause, remove, shutdown). */
  stop (state: TorrentState = 'paused'): void {
    this.checkAbort?.abort()
    for (const p of this.peers.values()) p.destroy()
    this.peers.clear()
    this.inProgress.clear()
    this.availability?.fill(0)
    this.storage?.close()
    this.state = state
  }

  // --- peers -------------------------------------------------------------------------------

  addCandidate (addr: PeerAddr): void {
    if (addr.port <= 0 || addr.port > 65535) return
    const key = addrKey(addr.host, addr.port)
    if (this.candidates.size >= MAX_CANDIDATES && !this.candidates.has(key)) return
    this.candidates.set(key, addr)
  }

  /** Attaches a peer whose handshake named this torrent. Returns false when it is refused. */
  attach (peer: Peer): boolean {
    const twin = [...this.peers.values()].find(p => p.peerId === peer.peerId)
    if (twin !== undefined) {
      // Two connections to one peer. When both sides dialled at once (PEX tells both in the same
      // round), each would keep its incoming one and drop the other, and both would die. Both
      // sides keep the one dialled by the lower peer id instead; anything else keeps the first.
      const ours = Buffer.from(this.host.peerId).toString('hex')
      const crossed = twin.incoming !== peer.incoming && twin.host === peer.host
      const preferred = (ours < peer.peerId) !== peer.incoming
      if (!crossed || !preferred) return false
      twin.destroy()
      this.detach(twin)
    } else if (this.peers.size >= this.options.maxPeers) {
      return false
    }
    this.peers.set(peer.key, peer)
    // what we have goes first (BEP 3: a bitfield only directly after the handshake)
    if (this.have !== undefined) {
      if (peer.fast && this.have.complete) peer.send(encode.haveAll())
      else if (peer.fast && this.have.count === 0) peer.send(encode.haveNone())
      else peer.send(encode.bitfield(this.have.bytes))
      peer.parser.maxBitfieldBytes = this.have.bytes.length
    } else {
      if (peer.fast) peer.send(encode.haveNone())
      peer.parser.maxBitfieldBytes = MAX_EARLY_BITFIELD_BYTES
    }
    if (peer.extensions) {
      const speed = this.host.speed
      peer.send(encode.extended(0, encodeExtendedHandshake({
        m: {
          ...(this.host.utMetadata ? { ut_metadata: LOCAL_EXT.ut_metadata } : {}),
          ...(this.host.pex && !this.privateTorrent ? { ut_pex: LOCAL_EXT.ut_pex } : {}),
          ...(speed !== undefined ? { btt: LOCAL_EXT.btt } : {})
        },
        ...(speed !== undefined ? { extra: { btt: speed.handshakeEntry() } } : {}),
        port: this.host.port,
        v: this.host.clientName,
        reqq: PEER_LIMITS.maxQueuedRequests,
        ...(this.meta !== undefined && this.host.utMetadata ? { metadataSize: this.meta.info.length } : {})
      })))
    }
    return true
  }

  detach (peer: Peer): void {
    if (this.peers.get(peer.key) !== peer) return
    this.peers.delete(peer.key)
    if (peer.have !== undefined && this.availability !== undefined) {
      for (let i = 0; i < peer.have.length; i++) if (peer.have.get(i)) this.availability[i]!--
    }
    this.releaseRequests(peer)
    this.releaseOwned(peer)
    this.host.speed?.detach(peer)
    if (!peer.amChoking) this.scheduleRechoke()
  }

  /** Handles one message; a thrown SeedingError closes the peer. */
  onMessage (peer: Peer, msg: Message): void {
    peer.lastReceived = Date.now()
    switch (msg.type) {
      case 'keepAlive': return
      case 'choke':
        peer.peerChoking = true
        // without the fast extension a choke drops every request; with it, rejects follow
        if (!peer.fast) this.releaseRequests(peer)
        this.releaseOwned(peer)
        return
      case 'unchoke':
        peer.peerChoking = false
        this.fillRequests(peer)
        return
      case 'interested':
        peer.peerInterested = true
        this.scheduleRechoke()
        return
      case 'notInterested':
        peer.peerInterested = false
        if (!peer.amChoking) this.scheduleRechoke()
        return
      case 'have': return this.onHave(peer, msg.index)
      case 'haveAll': return this.onBitfield(peer, undefined, true)
      case 'haveNone': return this.onBitfield(peer, undefined, false)
      case 'bitfield': return this.onBitfield(peer, msg.bytes, false)
      case 'request': return this.onRequest(peer, msg)
      case 'cancel': {
        const i = peer.queue.findIndex(r => r.index === msg.index && r.begin === msg.begin && r.length === msg.length)
        if (i >= 0) peer.queue.splice(i, 1)
        return
      }
      case 'reject': {
        if (!peer.fast) throw new SeedingError('WIRE_PROTOCOL', 'reject without the fast extension')
        this.releaseOne(peer, msg.index, msg.begin)
        this.fillRequests(peer)
        return
      }
      case 'piece': return this.onPiece(peer, msg.index, msg.begin, msg.data)
      case 'port': return
      case 'suggest': return
      case 'allowedFast': return
      case 'extended': return this.onExtended(peer, msg.id, msg.payload)
    }
  }

  private onHave (peer: Peer, index: number): void {
    if (this.meta === undefined) {
      peer.early ??= { all: false, haves: [] }
      if (peer.early.haves.length < 100_000) peer.early.haves.push(index)
      return
    }
    if (index >= this.meta.pieceCount) throw new SeedingError('WIRE_BAD_INDEX', `have for piece ${index} of ${this.meta.pieceCount}`)
    peer.have ??= new Bitfield(this.meta.pieceCount)
    if (peer.have.get(index)) return
    peer.have.set(index)
    this.availability![index]!++
    if (this.have !== undefined && !this.have.get(index)) {
      // a piece we lack: interesting while we download, no need to scan the bitfields
      if (this.state === 'downloading') peer.interested(true)
      else this.updateInterest(peer)
      if (!peer.peerChoking) this.fillRequests(peer)
    }
  }

  private onBitfield (peer: Peer, bytes: Uint8Array | undefined, all: boolean): void {
    if (this.meta === undefined) {
      // a later bitfield replaces an earlier one, but what `have` added since stays counted
      peer.early = { all, haves: peer.early?.haves ?? [], ...(bytes !== undefined ? { bytes: Uint8Array.from(bytes) } : {}) }
      return
    }
    const next = this.peerBitfield(bytes, all)
    // BEP 3 wants the bitfield first and once; aria2 sends it again mid-connection to resync, so a
    // later one replaces what we knew (libtorrent does the same) instead of dropping the peer
    const prev = peer.have
    for (let i = 0; i < next.length; i++) {
      const was = prev?.get(i) === true
      const now = next.get(i)
      if (was !== now) this.availability![i]! += now ? 1 : -1
    }
    peer.have = next
    this.updateInterest(peer)
    if (!peer.peerChoking) this.fillRequests(peer)
  }

  private peerBitfield (bytes: Uint8Array | undefined, all: boolean): Bitfield {
    const n = this.meta!.pieceCount
    if (bytes === undefined) return all ? Bitfield.full(n) : new Bitfield(n)
    if (!Bitfield.valid(n, bytes)) throw new SeedingError('WIRE_BAD_BITFIELD', `bitfield of ${bytes.length} bytes for ${n} pieces`)
    return new Bitfield(n, bytes)
  }

  /** Applies a bitfield/haves a peer sent before we had metadata. */
  private applyEarly (peer: Peer): void {
    const early = peer.early
    if (early === undefined || this.meta === undefined || peer.have !== undefined) return
    peer.early = undefined
    try {
      peer.have = early.bytes !== undefined || early.all ? this.peerBitfield(early.bytes, early.all) : new Bitfield(this.meta.pieceCount)
      for (const i of early.haves) if (i < this.meta.pieceCount) peer.have.set(i)
      for (let i = 0; i < peer.have.length; i++) if (peer.have.get(i)) this.availability![i]!++
    } catch {
      peer.destroy()
    }
  }

  private sendHaves (peer: Peer): void {
    // a peer that connected during the metadata phase learns what we have now
    if (this.have !== undefined && this.have.count > 0 && !peer.closed) {
      for (let i = 0; i < this.have.length; i++) if (this.have.get(i)) peer.send(encode.have(i))
    }
    if (this.have !== undefined) peer.parser.maxBitfieldBytes = this.have.bytes.length
  }

  private updateInterest (peer: Peer): void {
    if (this.have === undefined || peer.have === undefined || this.state !== 'downloading') {
      peer.interested(false)
      return
    }
    let want = false
    for (let i = 0; i < peer.have.length && !want; i++) want = peer.have.get(i) && !this.have.get(i)
    peer.interested(want)
  }

  // --- upload ------------------------------------------------------------------------------

  private onRequest (peer: Peer, r: BlockRequest): void {
    const valid = this.have !== undefined && r.index < this.meta!.pieceCount && this.have.get(r.index) &&
      r.length > 0 && r.length <= BLOCK_SIZE && r.begin + r.length <= this.pieceLength(r.index)
    if (!valid || peer.queue.length >= PEER_LIMITS.maxQueuedRequests) {
      if (peer.fast) peer.send(encode.reject(r.index, r.begin, r.length))
      if (++peer.invalid > PEER_LIMITS.maxInvalidRequests) {
        throw new SeedingError('WIRE_INVALID_REQUESTS', `${peer.invalid} invalid requests`)
      }
      return
    }
    if (peer.amChoking) {
      // a request racing our choke is normal; with the fast extension it is rejected
      if (peer.fast) peer.send(encode.reject(r.index, r.begin, r.length))
      return
    }
    peer.queue.push({ index: r.index, begin: r.begin, length: r.length })
    this.serve(peer)
  }

  /** Sends queued blocks while the socket, the rate limits and the read budget allow. */
  serve (peer: Peer): void {
    while (peer.queue.length > 0 && !peer.closed && !peer.amChoking) {
      if (peer.readsInFlight >= PEER_LIMITS.maxReadsInFlight) return
      if (peer.congested) {
        if (!peer.socket.listenerCount('drain')) peer.socket.once('drain', () => { this.serve(peer) })
        return
      }
      const r = peer.queue[0]!
      // ask both buckets before taking from either, or a block one refuses costs the other budget
      const wait = Math.max(this.upBucket.wait(r.length), this.host.globalUp.wait(r.length))
      if (wait > 0) {
        setTimeout(() => { this.serve(peer) }, Math.min(wait, 1000)).unref()
        return
      }
      this.upBucket.take(r.length)
      this.host.globalUp.take(r.length)
      peer.queue.shift()
      peer.readsInFlight++
      const gen = peer.chokeGen
      // a paid peer's block waits for its session's credit (at most one unpaid piece)
      const debit = this.host.speed?.gate(peer, r.length)
      if (debit === undefined) {
        this.host.cache.acquire(this, r.index).then(piece => { this.sendBlock(peer, r, gen, piece) }, (err: unknown) => { this.readFailed(peer, r, err) })
      } else {
        // read the piece while the payment for the previous one is on its way: once credit comes,
        // the block goes out without a disk read on the critical path
        this.host.cache.acquire(this, r.index).then(piece => { piece.release() }, () => {})
        debit.then(d => {
          this.host.cache.acquire(this, r.index).then(piece => { this.sendBlock(peer, r, gen, piece, d) }, (err: unknown) => { d.cleanup(); this.readFailed(peer, r, err) })
        }, (err: unknown) => {
          peer.readsInFlight--
          if (peer.fast && !peer.closed) peer.send(encode.reject(r.index, r.begin, r.length))
          this.host.speed?.gateFailed(peer, err)
        })
      }
    }
  }

  private sendBlock (peer: Peer, r: BlockRequest, gen: number, piece: { buf: Buffer, release: () => void }, debit?: { apply(): void, cleanup(): void }): void {
    peer.readsInFlight--
    if (peer.closed || peer.amChoking || peer.chokeGen !== gen) {
      // choked meanwhile: the block is dropped, and with the fast extension rejected
      piece.release()
      debit?.cleanup()
      if (peer.fast && !peer.closed) peer.send(encode.reject(r.index, r.begin, r.length))
      return
    }
    peer.sendPiece(r.index, r.begin, piece.buf.subarray(r.begin, r.begin + r.length), piece.release)
    debit?.apply()
    if (this.host.speed !== undefined) {
      this.host.speed.uploaded(this, r.index, r.begin)
      if (debit !== undefined) this.host.speed.served(peer, r.length)
    }
    this.up.add(r.length)
    this.uploaded += r.length
    this.serve(peer)
  }

  private readFailed (peer: Peer, r: BlockRequest, err: unknown): void {
    peer.readsInFlight--
    this.host.logger.warn({ infoHash: this.infoHash, piece: r.index, err }, 'could not read a piece to upload')
    if (peer.fast) peer.send(encode.reject(r.index, r.begin, r.length))
  }

  // --- download ----------------------------------------------------------------------------

  private releaseRequests (peer: Peer): void {
    for (const key of peer.outstanding.keys()) {
      const [index, begin] = key.split(':').map(Number) as [number, number]
      this.unrequest(index, begin)
    }
    peer.outstanding.clear()
  }

  private releaseOne (peer: Peer, index: number, begin: number): void {
    if (peer.outstanding.delete(`${index}:${begin}`)) this.unrequest(index, begin)
  }

  private unrequest (index: number, begin: number): void {
    const pp = this.inProgress.get(index)
    const b = begin / BLOCK_SIZE
    if (pp !== undefined && pp.requested[b]! > 0) pp.requested[b]!--
  }

  fillRequests (peer: Peer): void {
    if (this.state !== 'downloading' || peer.peerChoking || peer.have === undefined || peer.closed) return
    const downWait = Math.max(this.downBucket.take(0), this.host.globalDown.take(0))
    if (downWait > 0) {
      // over a download limit: try again when the bucket has refilled (nothing else may call us)
      if (!this.fillRetry.has(peer)) {
        this.fillRetry.add(peer)
        setTimeout(() => { this.fillRetry.delete(peer); this.fillRequests(peer) }, Math.min(downWait, 1000)).unref()
      }
      return
    }
    // under a limit, keep about a second's worth in flight, not the whole pipeline
    const rate = Math.min(...[this.downBucket.rate, this.host.globalDown.rate].filter(r => r > 0))
    const pipeline = Number.isFinite(rate) ? Math.max(4, Math.min(PIPELINE, Math.ceil(rate / BLOCK_SIZE))) : PIPELINE
    while (peer.outstanding.size < pipeline) {
      const next = this.pickBlock(peer)
      if (next === undefined) break
      const { pp, block } = next
      const begin = block * BLOCK_SIZE
      const length = Math.min(BLOCK_SIZE, pp.length - begin)
      pp.requested[block]!++
      peer.outstanding.set(`${pp.index}:${begin}`, Date.now())
      peer.send(encode.request(pp.index, begin, length))
    }
  }

  private pickBlock (peer: Peer): { pp: PieceProgress, block: number } | undefined {
    const have = peer.have!
    const paid = this.host.speed?.isPaid(peer) === true
    // finish pieces already started first (a paid seeder's pieces are its own)
    let owned = 0
    for (const pp of this.inProgress.values()) {
      if (pp.owner === peer) owned++
      if (!have.get(pp.index) || (pp.owner !== undefined && pp.owner !== peer) || (paid && pp.owner !== peer)) continue
      for (let b = 0; b < pp.blocks; b++) {
        if (pp.received[b] === 0 && pp.requested[b] === 0 && !peer.outstanding.has(`${pp.index}:${b * BLOCK_SIZE}`)) return { pp, block: b }
      }
    }
    // a paid seeder serves one piece and holds the next until the first is paid: two is enough
    if (paid && owned >= 2) return undefined
    if (this.inProgress.size < MAX_PIECES_IN_PROGRESS) {
      const index = this.pickPiece(peer)
      if (index !== undefined) {
        const pp = this.startPiece(index)
        if (paid) pp.owner = peer
        return { pp, block: 0 }
      }
    }
    // endgame: every missing block is requested somewhere; ask this peer too
    for (const pp of this.inProgress.values()) {
      if (!have.get(pp.index)) continue
      for (let b = 0; b < pp.blocks; b++) {
        if (pp.received[b] === 0 && pp.requested[b]! < 2 && !peer.outstanding.has(`${pp.index}:${b * BLOCK_SIZE}`)) return { pp, block: b }
      }
    }
    return undefined
  }

  /** Rarest first among pieces the peer has and we lack, from a random start to spread load. */
  private pickPiece (peer: Peer): number | undefined {
    const n = this.meta!.pieceCount
    const have = this.have!
    const avail = this.availability!
    const start = randomInt(n)
    let best: number | undefined
    let bestAvail = Infinity
    for (let k = 0; k < n; k++) {
      const i = (start + k) % n
      if (have.get(i) || this.inProgress.has(i) || this.finishing.has(i) || !peer.have!.get(i)) continue
      const a = avail[i]!
      if (a < bestAvail) {
        best = i
        bestAvail = a
        if (a <= 1) break
      }
    }
    return best
  }

  /** A paid seeder that choked us or left gives its pieces back to everyone. */
  private releaseOwned (peer: Peer): void {
    for (const pp of this.inProgress.values()) if (pp.owner === peer) pp.owner = undefined
  }

  private startPiece (index: number): PieceProgress {
    const length = this.pieceLength(index)
    const blocks = Math.ceil(length / BLOCK_SIZE)
    const pp: PieceProgress = {
      index, length, buf: takePieceBuffer(length), blocks,
      received: new Uint8Array(blocks), requested: new Uint8Array(blocks), receivedCount: 0, from: new Set(),
      hash: createHash('sha1'), hashed: 0
    }
    this.inProgress.set(index, pp)
    return pp
  }

  private onPiece (peer: Peer, index: number, begin: number, data: Uint8Array): void {
    peer.down.add(data.length)
    this.down.add(data.length)
    this.host.globalDown.spend(data.length)
    const wait = Math.max(this.downBucket.spend(data.length), this.host.globalDown.spend(0))
    const key = `${index}:${begin}`
    const wasRequested = peer.outstanding.delete(key)
    const speed = this.host.speed
    if (speed !== undefined && wasRequested) {
      // a paid seeder charged us for this block at the price in force when it was sent
      speed.received(peer, index, data.length)
      if (this.have?.get(index) === true) speed.verified(this, index)
    }
    const pp = this.inProgress.get(index)
    if (pp === undefined || begin % BLOCK_SIZE !== 0 || begin >= pp.length ||
      data.length !== Math.min(BLOCK_SIZE, pp.length - begin)) {
      // late duplicates in endgame are normal; data nobody asked for is not
      if (!wasRequested && ++peer.invalid > PEER_LIMITS.maxInvalidRequests) throw new SeedingError('WIRE_UNSOLICITED', 'unrequested blocks')
      this.refill(peer, wait)
      return
    }
    const b = begin / BLOCK_SIZE
    if (wasRequested && pp.requested[b]! > 0) pp.requested[b]!--
    if (pp.received[b] === 0) {
      pp.buf.set(data, begin)
      pp.received[b] = 1
      pp.receivedCount++
      pp.from.add(peer)
      this.downloaded += data.length
      // hash in arrival order as far as the blocks are contiguous: the piece is verified moments
      // after its last block instead of a whole piece's SHA-1 later (a paid seeder waits for it)
      while (pp.hashed < pp.blocks && pp.received[pp.hashed] === 1) {
        const from = pp.hashed * BLOCK_SIZE
        pp.hash.update(pp.buf.subarray(from, Math.min(from + BLOCK_SIZE, pp.length)))
        pp.hashed++
      }
      if (pp.receivedCount === pp.blocks) {
        this.inProgress.delete(index)
        // cancel duplicates still outstanding elsewhere (endgame)
        for (const p of this.peers.values()) {
          for (const k of p.outstanding.keys()) {
            if (k.startsWith(`${index}:`)) {
              p.outstanding.delete(k)
              const [, bg] = k.split(':').map(Number) as [number, number]
              p.send(encode.cancel(index, bg, Math.min(BLOCK_SIZE, pp.length - bg)))
            }
          }
        }
        void this.finishPiece(pp)
      }
    }
    this.refill(peer, wait)
  }

  private refill (peer: Peer, wait: number): void {
    if (wait > 0) {
      // over the download limit: stop reading from this peer until the buckets are out of debt.
      // One timer per peer for the whole debt: a timer per block resumed reading at the first
      // block's (small) wait, and the peer ran ~35% over the limit.
      peer.socket.pause()
      if (this.throttled.has(peer)) return
      this.throttled.add(peer)
      const resume = (): void => {
        const left = Math.max(this.downBucket.take(0), this.host.globalDown.take(0))
        if (left > 0 && !peer.closed) { setTimeout(resume, Math.min(left, 1000)).unref(); return }
        this.throttled.delete(peer)
        peer.socket.resume()
        this.fillRequests(peer)
      }
      setTimeout(resume, Math.min(wait, 1000)).unref()
      return
    }
    if (peer.outstanding.size < PIPELINE / 2) this.fillRequests(peer)
  }

  private async finishPiece (pp: PieceProgress): Promise<void> {
    const meta = this.meta!
    this.verifying++
    this.finishing.add(pp.index)
    try {
      const digest = pp.hashed === pp.blocks ? pp.hash.digest() : createHash('sha1').update(pp.buf.subarray(0, pp.length)).digest()
      if (!digest.equals(meta.pieces.subarray(pp.index * 20, pp.index * 20 + 20))) {
        this.host.speed?.corrupt(this, pp.index)
        for (const p of pp.from) {
          if (++p.hashFails >= 3) {
            this.host.logger.info({ infoHash: this.infoHash, peer: p.key }, 'peer sent 3 corrupt pieces; disconnecting')
            p.destroy()
          }
        }
        return
      }
      // verified: paid seeders get paid for their blocks of it
      this.host.speed?.verified(this, pp.index)
      // stopped meanwhile (paused, removed, failed): the piece is dropped, not written
      if (this.state !== 'downloading') return
      await this.storage!.write(pp.index * meta.pieceLength, pp.buf)
      // the state may have changed during the write
      if (this.have === undefined || (this.state as TorrentState) !== 'downloading') return
      this.have.set(pp.index)
      for (const p of this.peers.values()) {
        p.send(encode.have(pp.index))
        if (this.have.complete) p.interested(false)
      }
      const done = this.have.complete
      if (done) {
        this.state = 'seeding'
        this.completedAt = Date.now()
        this.inProgress.clear()
      }
      this.host.onProgress(this, done)
    } catch (err) {
      this.fail(err)
    } finally {
      givePieceBuffer(pp.buf)
      this.finishing.delete(pp.index)
      this.verifying--
      for (const p of this.peers.values()) this.fillRequests(p)
    }
  }

  fail (err: unknown): void {
    this.error = (err as Error).message
    this.host.logger.error({ infoHash: this.infoHash, err }, 'torrent stopped on a disk error')
    this.stop('error')
  }

  // --- choking -----------------------------------------------------------------------------

  scheduleRechoke (): void {
    if (this.rechokeQueued) return
    this.rechokeQueued = true
    setImmediate(() => { this.rechokeQueued = false; this.rechoke() })
  }

  rechoke (): void {
    if (!this.active || this.have === undefined) return
    const now = Date.now()
    const peers = [...this.peers.values()].filter(p => !p.closed)
    const speed = this.host.speed
    const decision = this.choker.rechoke(peers.map(p => {
      const bid = speed?.bidOf(p)
      return {
        key: p.key,
        interested: p.peerInterested,
        choked: p.amChoking,
        uploadRate: p.up.rate,
        downloadRate: p.down.rate,
        seed: p.seed,
        lastUnchokedAt: p.lastUnchokedAt,
        ...(bid !== undefined ? { bid } : {})
      }
    }), { seeding: this.complete, now, ...(speed !== undefined ? { reserve: speed.reserve(this) } : {}) })
    const unchoke = decision instanceof Set ? decision : decision.unchoke
    const paid = decision instanceof Set ? undefined : decision.paid
    if (!(decision instanceof Set) && decision.retryInMs !== undefined) {
      setTimeout(() => { this.rechoke() }, decision.retryInMs + 1).unref()
    }
    for (const p of peers) {
      if (!unchoke.has(p.key)) {
        p.choke()
        speed?.choked(p)
      } else if (speed !== undefined) {
        speed.unchoke(this, p, paid?.get(p.key) ?? 0n, now)
      } else {
        p.unchoke(now)
      }
    }
  }

  // --- extensions --------------------------------------------------------------------------

  private onExtended (peer: Peer, id: number, payload: Uint8Array): void {
    if (!peer.extensions) throw new SeedingError('WIRE_PROTOCOL', 'extended message without the extension bit')
    if (id === 0) {
      const hs = decodeExtendedHandshake(payload)
      // keep only what we use: a handshake at the decoder's caps is ~0.8 MB of maps per peer
      peer.ext = {
        m: new Map(),
        dict: new Map(),
        ...(hs.port !== undefined ? { port: hs.port } : {}),
        ...(hs.v !== undefined ? { v: hs.v.slice(0, 64) } : {}),
        ...(hs.reqq !== undefined ? { reqq: hs.reqq } : {}),
        ...(hs.metadataSize !== undefined ? { metadataSize: hs.metadataSize } : {})
      }
      for (const name of KNOWN_EXTENSIONS) {
        const n = hs.m.get(name)
        if (n === undefined) continue
        if (n === 0) peer.extIds.delete(name)
        else peer.extIds.set(name, n)
      }
      if (hs.port !== undefined) peer.listenPort = hs.port
      this.host.speed?.onHandshake(this, peer, hs.dict, peer.extIds.get('btt'))
      if (this.meta === undefined) this.requestMetadata()
      return
    }
    if (id === LOCAL_EXT.btt) {
      if (this.host.speed === undefined) return
      return this.host.speed.onMessage(this, peer, payload)
    }
    if (id === LOCAL_EXT.ut_metadata) {
      if (!this.host.utMetadata) return
      return this.onMetadataMessage(peer, payload)
    }
    if (id === LOCAL_EXT.ut_pex) {
      if (!this.host.pex || this.privateTorrent) return
      const { added } = decodePex(payload)
      for (const a of added) this.addCandidate(a)
      return
    }
    // unknown extension ids are ignored, as BEP 10 asks
  }

  private onMetadataMessage (peer: Peer, payload: Uint8Array): void {
    const msg = decodeMetadataMessage(payload, this.meta?.info.length ?? peer.ext?.metadataSize)
    const theirId = peer.extIds.get('ut_metadata')
    if (msg.msgType === 0) {
      if (theirId === undefined) return
      if (this.meta === undefined) { peer.send(encode.extended(theirId, encodeMetadataReject(msg.piece))); return }
      const info = this.meta.info
      const start = msg.piece * METADATA_PIECE
      if (start >= info.length) { peer.send(encode.extended(theirId, encodeMetadataReject(msg.piece))); return }
      peer.send(encode.extended(theirId, encodeMetadataData(msg.piece, info.length, info.subarray(start, start + METADATA_PIECE))))
      return
    }
    if (this.meta !== undefined) return
    peer.metadataRequests.delete(msg.piece)
    if (msg.msgType === 2) { this.requestMetadata(); return }
    const size = peer.ext?.metadataSize
    if (size === undefined || msg.data === undefined || (msg.totalSize !== undefined && msg.totalSize !== size)) {
      throw new SeedingError('EXT_METADATA', 'metadata piece that does not match the announced size')
    }
    if (this.metadataBuf === undefined || this.metadataBuf.length !== size) {
      this.metadataBuf = new Uint8Array(size)
      this.metadataHave = new Uint8Array(Math.ceil(size / METADATA_PIECE))
    }
    this.metadataBuf.set(msg.data, msg.piece * METADATA_PIECE)
    this.metadataHave![msg.piece] = 1
    if (this.metadataHave!.every(x => x === 1)) {
      const buf = this.metadataBuf
      this.metadataBuf = undefined
      this.metadataHave = undefined
      // bytes that do not hash to the infohash are the sender's fault whatever they contain
      // (parseInfo decodes before it hashes, so garbage would surface as a BENCODE_* error)
      if (createHash('sha1').update(buf).digest('hex') !== this.infoHash) {
        this.host.logger.info({ infoHash: this.infoHash, peer: peer.key }, 'metadata does not hash to the infohash; dropping the peer')
        peer.destroy()
        this.requestMetadata()
        return
      }
      let meta: Metainfo
      try {
        meta = parseInfo(buf, this.infoHash)
      } catch (err) {
        this.host.logger.info({ infoHash: this.infoHash, peer: peer.key, err }, 'metadata failed verification; trying again')
        if (isSeedingError(err, 'TORRENT_INFOHASH_MISMATCH')) peer.destroy()
        this.requestMetadata()
        return
      }
      meta.announce = this.announce
      this.setMeta(meta)
      this.state = 'checking'
      this.host.onMetadata(this)
      return
    }
    this.requestMetadata()
  }

  /** Asks peers that have metadata for the pieces nobody is sending us yet. */
  private requestMetadata (): void {
    if (this.meta !== undefined) return
    const asked = new Set<number>()
    for (const p of this.peers.values()) for (const i of p.metadataRequests) asked.add(i)
    for (const p of this.peers.values()) {
      const id = p.extIds.get('ut_metadata')
      const size = p.ext?.metadataSize
      if (id === undefined || size === undefined || p.metadataRequests.size > 0) continue
      const pieces = Math.ceil(size / METADATA_PIECE)
      for (let i = 0; i < pieces; i++) {
        if (asked.has(i) || this.metadataHave?.[i] === 1) continue
        asked.add(i)
        p.metadataRequests.add(i)
        p.send(encode.extended(id, encodeMetadataRequest(i)))
        if (p.metadataRequests.size >= 4) break
      }
    }
  }

  /** Tells every PEX-capable peer about the peers connected now (at most 50 per message). */
  sendPex (): void {
    if (!this.host.pex || this.privateTorrent) return
    const connected: PeerAddr[] = []
    for (const p of this.peers.values()) {
      if (p.listenPort === undefined && p.incoming) continue
      connected.push({ host: p.host, port: p.incoming ? p.listenPort! : p.socket.remotePort! })
    }
    for (const p of this.peers.values()) {
      const id = p.extIds.get('ut_pex')
      if (id === undefined) continue
      const now = new Set(connected.filter(a => !(a.host === p.host && a.port === (p.listenPort ?? p.socket.remotePort))).map(a => `${a.host}|${a.port}`))
      const added = [...now].filter(k => !p.pexSent.has(k)).slice(0, 50)
      const dropped = [...p.pexSent].filter(k => !now.has(k)).slice(0, 50)
      if (added.length === 0 && dropped.length === 0) continue
      const toAddr = (k: string): PeerAddr => { const i = k.lastIndexOf('|'); return { host: k.slice(0, i), port: Number(k.slice(i + 1)) } }
      p.send(encode.extended(id, encodePex({ added: added.map(toAddr), dropped: dropped.map(toAddr) })))
      for (const k of added) p.pexSent.add(k)
      for (const k of dropped) p.pexSent.delete(k)
    }
  }

  /** Once a second: timeouts, stalled requests, idle peers. */
  tick (now: number): void {
    for (const p of this.peers.values()) {
      if (now - p.lastReceived > PEER_LIMITS.idleTimeoutMs) { p.destroy(); continue }
      if (now - p.lastSent > 100_000) p.send(encode.keepAlive())
      // requests unanswered for 30 s go back to the pool
      for (const [k, at] of p.outstanding) {
        if (now - at > 30_000) {
          const [index, begin] = k.split(':').map(Number) as [number, number]
          this.releaseOne(p, index, begin)
        }
      }
      if (this.meta === undefined && p.metadataRequests.size > 0 && now - p.lastReceived > 10_000) p.metadataRequests.clear()
    }
    if (this.meta === undefined) this.requestMetadata()
    if (this.active) this.host.speed?.tick(this)
  }
}
