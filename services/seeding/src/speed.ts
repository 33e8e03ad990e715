import { createHash, randomBytes } from 'node:crypto'
import type { Debit, MeterSession } from '@btt/channel'
import { autoBid, BidScheduler, reservePrice, selectChallenge, UploadBitmap, type ReserveSchedule } from '@btt/market'
import type { ServicePayments } from '@btt/node'
import {
  BTT_PROTOCOL_VERSION, decodeBttHandshakeEntry, decodeBttMessage, encodeBttHandshakeEntry, encodeBttMessage,
  type BDict, type BttMessage, type EncodableObject
} from '@btt/wire'
import type { Logger } from 'pino'
import { SeedingError } from './errors.js'
import type { Peer } from './peer.js'
import { encode } from './wire.js'

/**
 * BitTorrent Speed (paid seeding): the `btt` extension on both sides of a connection.
 *
 * Provider: every rechoke, the auction choker picks paid winners and their uniform price; before a
 * paid unchoke the peer gets `bid_response`, names the channel it pays on (`bid` with `channel`),
 * and we open a Meter session on it. Every block to a paid peer is prepared on the session first
 * (waits while a piece's worth is delivered and unpaid) and applied once written. Reserve prices and
 * possession challenges are per torrent.
 *
 * Requester: bids (auto-bid over the budget), opens or reuses a channel when a seeder answers with
 * `bid_response`, charges itself each block at the rate in force when it arrived, and pays a seeder
 * for its blocks of a piece once the piece verified.
 */

export const BLOCK = 16 * 1024

export interface BiddingOptions {
  /** Total the requester may spend on this engine's downloads, base units. */
  budget: bigint
  /** 0..1,000,000 (parts per million of the budget the auto-bid spends). */
  spendingRatePpm: bigint
  /** Never bid more than this per KiB (undefined: no cap). */
  maxRate?: bigint
}

export interface SpeedOptions {
  payments: ServicePayments
  logger: Logger
  /** Provider: auction slots per torrent. 0 = we do not sell. */
  paidSlots: number
  /** Provider: slots by upload rate for peers that do not bid (legacy clients). */
  freeSlots: number
  /** Provider: optimistic unchokes (free), rotated round-robin. */
  optimisticSlots: number
  /** Provider: bids are collected this long before the first auction of an idle torrent. */
  bidWindowMs?: number
  reserve: ReserveSchedule
  /** Provider: a channel must hold at least this many pieces at the agreed price. */
  minDepositPieces: number
  /** Provider: a channel must stay open at least this long (seconds). */
  minExpirySeconds: number
  /** Requester side; undefined: we never bid or pay. */
  bidding?: BiddingOptions
  /** How long a requester's channel stays open (ms). */
  channelLifetimeMs?: number
  now?: () => number
  /** The challenge secret (random per process by default). */
  secret?: Uint8Array
}

/** What the speed layer needs of a torrent. Kept narrow so it can be driven by tests. */
export interface SpeedTorrent {
  readonly infoHash: string
  readonly infoHashBytes: Uint8Array
  readonly complete: boolean
  readonly completedAt: number
  /** Bytes still missing. */
  readonly left: number
  readonly pieceLengthNominal: number | undefined
  readonly pieceCount: number | undefined
  readonly totalLength: number | undefined
  readonly peers: ReadonlyMap<string, Peer>
  pieceLength(i: number): number
  hasPiece(i: number): boolean
  readChunk(piece: number, chunk: number): Promise<Uint8Array>
}

/** Per-connection state of the `btt` extension. */
export class BttPeer {
  /** Their message id for `btt`. */
  id = 0
  /** Their wallet key and ledger (hex); equal ledgers are required for money. */
  pk = ''
  ledger = ''
  // --- they download from us ---
  /** Their current bid per KiB (0: none). */
  bid = 0n
  /** The channel they said they pay on. */
  channel?: string
  /** What we charge per KiB for blocks sent now (0: free). */
  price = 0n
  session?: MeterSession
  opening = false
  /** The price we promised in the last bid_response, waiting for their channel to unchoke. */
  pendingUnchoke = false
  /** Payment failures on this connection (the Meter counts them per payer and bans). */
  failures = 0
  earned = 0n
  paidBytes = 0
  private accepting: Promise<void> = Promise.resolve()
  // --- we download from them ---
  theirReserve = 0n
  challenge?: { piece: number, chunk: number }
  /** We sent a source_proof for `challenge`. */
  proved = false
  /** Their price for blocks they send now (0: free). */
  theirPrice = 0n
  /** The highest rate we offered them. */
  ourBid = 0n
  ourChannel?: string
  channelSent = false
  /** Cost of blocks received per piece, not yet paid. */
  readonly owed = new Map<number, bigint>()
  spent = 0n
  acked = 0n

  /** Runs `fn` after the previous accept on this connection (vouchers in stream order). */
  serial (fn: () => Promise<void>): Promise<void> {
    this.accepting = this.accepting.then(fn, fn)
    return this.accepting
  }
}

interface TorrentSpeed {
  bitmap?: UploadBitmap
  draw: number
  challenge?: { piece: number, chunk: number }
  /** Reserve grows from here (completion, start of seeding, or the last valid proof). */
  from: number
  lastProofAt?: number
  lastReserve?: bigint
  bids: BidScheduler
  currentBid: bigint
  /** Earnings per payer key, base units and bytes. */
  earnings: Map<string, { amount: bigint, bytes: number }>
  /** Spending per payee key (requester side). */
  spending: Map<string, bigint>
  /**
   * What trackers said peers bid (provider side): per tracker, from its last announce response,
   * the highest claim per (wallet key, announcing address).
   */
  announced: Map<string, Map<string, bigint>>
}

export interface SpeedEvents {
  /** A payment was credited: `amount` more from `payer`, for `bytes` more served. */
  onEarn?(infoHash: string, payer: string, amount: bigint, bytes: number): void
  onSpend?(infoHash: string, payee: string, amount: bigint): void
  /** A payment was refused; `reason` is the error's code. */
  onRefuse?(reason: string): void
}

/** Cost of `length` bytes at `rate` per KiB: a started KiB counts whole. */
export function blockCost (rate: bigint, length: number): bigint {
  return rate * BigInt(Math.ceil(length / 1024))
}

/** An IPv4 peer seen through a dual-stack socket as ::ffff:a.b.c.d is a.b.c.d. */
function normalizeHost (host: string | undefined): string {
  const h = (host ?? '').toLowerCase()
  return h.startsWith('::ffff:') && h.includes('.') ? h.slice(7) : h
}

/** A real bid this many times below the one announced on a tracker is a lie, not a re-bid. */
export const BID_MISMATCH_FACTOR = 2n

export class Speed {
  readonly secret: Uint8Array
  private readonly torrents = new Map<string, TorrentSpeed>()
  /** Base units payers still owe from sessions that ended unpaid, by payer key. */
  private readonly debts = new Map<string, bigint>()
  /** Per payer: the settlement of its last ended session (its debt is known once this resolves). */
  private readonly settling = new Map<string, Promise<void>>()
  private readonly now: () => number
  /** Requester: what we paid so far (deposits locked in channels are not spent). */
  spentTotal = 0n
  /** Payer keys seen on connections (to report bans). */
  private readonly payers = new Set<string>()
  private readonly inUse = new Set<string>()
  /** Requester: payments being made (voucher durable, then sent). */
  private readonly paying = new Set<Promise<void>>()
  /** Requester: connected seeders we paid, until they acknowledged all of it or left. */
  private readonly unacked = new Set<BttPeer>()
  readonly events: SpeedEvents = {}

  constructor (readonly opts: SpeedOptions) {
    this.secret = opts.secret ?? randomBytes(32)
    this.now = opts.now ?? Date.now
  }

  get selling (): boolean { return this.opts.paidSlots > 0 }
  get buying (): boolean { return this.opts.bidding !== undefined }
  get budgetLeft (): bigint {
    const b = this.opts.bidding
    return b === undefined ? 0n : (b.budget > this.spentTotal ? b.budget - this.spentTotal : 0n)
  }

  /** Change the requester's budget: bids are re-sent at once. */
  setBudget (budget: bigint): void {
    if (this.opts.bidding === undefined) throw new SeedingError('SEEDING_NOT_BIDDING', 'this engine does not bid')
    this.opts.bidding.budget = budget
    for (const ts of this.torrents.values()) ts.bids = new BidScheduler()
  }

  // --- handshake -------------------------------------------------------------------------------

  handshakeEntry (): EncodableObject {
    return encodeBttHandshakeEntry({
      v: BTT_PROTOCOL_VERSION,
      pk: Buffer.from(this.opts.payments.account, 'hex'),
      ledger: Buffer.from(this.opts.payments.ledgerId, 'hex')
    })
  }

  /** After their extended handshake: a `btt` peer on our ledger gets the reserve and our bid. */
  onHandshake (t: SpeedTorrent, peer: Peer, dict: BDict, theirId: number | undefined): void {
    const entry = decodeBttHandshakeEntry(dict.get('btt'))
    if (entry === undefined || theirId === undefined || theirId === 0) { peer.btt = undefined; return }
    const pk = Buffer.from(entry.pk).toString('hex')
    const ledger = Buffer.from(entry.ledger).toString('hex')
    if (ledger !== this.opts.payments.ledgerId) { peer.btt = undefined; return }
    if (this.opts.payments.meter.isBanned(pk)) throw new SeedingError('BTT_BANNED', `payer ${pk.slice(0, 16)}… is banned`)
    this.payers.add(pk)
    const b = peer.btt ?? new BttPeer()
    b.id = theirId
    b.pk = pk
    b.ledger = ledger
    peer.btt = b
    if (this.selling && t.complete) this.sendReserve(t, peer, this.state(t))
    if (this.buying && !t.complete) this.sendBid(t, peer, false)
  }

  private state (t: SpeedTorrent): TorrentSpeed {
    let s = this.torrents.get(t.infoHash)
    if (s === undefined) {
      s = { draw: 0, from: this.now(), bids: new BidScheduler(), currentBid: 0n, earnings: new Map(), spending: new Map(), announced: new Map() }
      this.torrents.set(t.infoHash, s)
    }
    return s
  }

  forget (infoHash: string): void {
    this.torrents.delete(infoHash)
  }

  send (peer: Peer, m: BttMessage): void {
    const b = peer.btt
    if (b === undefined || b.id === 0) return
    peer.send(encode.extended(b.id, encodeBttMessage(m)))
  }

  // --- messages --------------------------------------------------------------------------------

  onMessage (t: SpeedTorrent, peer: Peer, payload: Uint8Array): void {
    const b = peer.btt
    if (b === undefined) throw new SeedingError('BTT_NO_HANDSHAKE', 'btt message before a btt handshake entry')
    const m = decodeBttMessage(payload)
    if (m === undefined) return
    switch (m.t) {
      case 'reserve': return this.onReserve(t, peer, b, m)
      case 'bid': return this.onBid(t, peer, b, m)
      case 'bid_response': return this.onBidResponse(t, peer, b, m)
      case 'source_proof': { void this.onSourceProof(t, peer, m); return }
      case 'payment': return this.onPayment(t, peer, b, m)
      case 'payment_ack': {
        const amount = m.amount
        if (amount > b.acked) b.acked = amount
        if (b.acked >= b.spent) this.unacked.delete(b)
      }
    }
  }

  // --- provider --------------------------------------------------------------------------------

  /** A peer that bids (bid ≥ 0 and on our ledger) is an auction participant. */
  /** What to tell trackers about us for `t` (bid-announce): our wallet key, and our bid while we buy it. */
  announceFields (t: SpeedTorrent): { pk: string, bid?: bigint } {
    let bid = 0n
    if (this.buying && !t.complete) {
      // the bid sent to seeders; before any seeder was met, the one we would send
      const current = this.torrents.get(t.infoHash)?.currentBid ?? 0n
      bid = current > 0n ? current : this.bidFor(t)
    }
    return { pk: this.opts.payments.account, ...(bid > 0n ? { bid } : {}) }
  }

  bidOf (peer: Peer): bigint | undefined {
    const b = peer.btt
    if (b === undefined || b.bid <= 0n) return undefined
    return b.bid
  }

  reserve (t: SpeedTorrent, now = this.now()): bigint {
    if (!t.complete) return this.opts.reserve.cap
    const s = this.state(t)
    const from = Math.max(s.from, t.completedAt)
    return reservePrice(this.opts.reserve, { completedAt: from, lastProofAt: s.lastProofAt }, now)
  }

  private challengeOf (t: SpeedTorrent, s: TorrentSpeed): { piece: number, chunk: number } | undefined {
    if (s.challenge !== undefined) return s.challenge
    const bitmap = this.bitmap(t, s)
    if (bitmap === undefined) return undefined
    const c = selectChallenge(this.secret, t.infoHashBytes, bitmap, s.draw++)
    const perPiece = Math.ceil(t.pieceLengthNominal! / BLOCK)
    s.challenge = { piece: Math.floor(c / perPiece), chunk: c % perPiece }
    // the chunk index space is nominal: the last piece has fewer chunks
    if (s.challenge.piece >= t.pieceCount! || s.challenge.chunk * BLOCK >= t.pieceLength(s.challenge.piece)) {
      s.challenge = { piece: t.pieceCount! - 1, chunk: 0 }
    }
    return s.challenge
  }

  private bitmap (t: SpeedTorrent, s: TorrentSpeed): UploadBitmap | undefined {
    if (s.bitmap !== undefined) return s.bitmap
    if (t.pieceCount === undefined || t.pieceLengthNominal === undefined) return undefined
    s.bitmap = new UploadBitmap(t.pieceCount * Math.ceil(t.pieceLengthNominal / BLOCK))
    return s.bitmap
  }

  /** Marks a chunk we uploaded (the challenge never names a recently uploaded chunk). */
  uploaded (t: SpeedTorrent, index: number, begin: number): void {
    if (!this.selling) return
    const s = this.state(t)
    const bitmap = this.bitmap(t, s)
    if (bitmap === undefined) return
    bitmap.mark(index * Math.ceil(t.pieceLengthNominal! / BLOCK) + Math.floor(begin / BLOCK))
  }

  private sendReserve (t: SpeedTorrent, peer: Peer, s: TorrentSpeed, now = this.now()): void {
    const c = this.challengeOf(t, s)
    if (c === undefined) return
    this.send(peer, { t: 'reserve', price: this.reserve(t, now), piece: c.piece, chunk: c.chunk })
  }

  /** Once a second: a changed reserve (or challenge) goes to every btt peer. */
  tick (t: SpeedTorrent, now = this.now()): void {
    if (this.selling && t.complete) {
      const s = this.state(t)
      const r = this.reserve(t, now)
      if (r !== s.lastReserve) {
        s.lastReserve = r
        for (const p of t.peers.values()) if (p.btt !== undefined) this.sendReserve(t, p, s, now)
      }
    }
    if (this.buying && !t.complete) {
      for (const p of t.peers.values()) if (p.btt !== undefined) this.sendBid(t, p, false)
    }
  }

  /**
   * A tracker's announce response named these bids (bid-announce): kept, per tracker and replaced
   * by its next response, to check bidders on connect. A claim counts only against a peer
   * connecting from the address that announced it: trackers do not authenticate `btt_pk`, so
   * anyone could announce a huge bid under someone else's key to get them disconnected.
   */
  announcedBids (t: SpeedTorrent, tracker: string, bids: ReadonlyArray<{ pk: string, bid: bigint, host: string }>): void {
    if (!this.selling) return
    const s = this.state(t)
    const claims = new Map<string, bigint>()
    for (const x of bids) {
      const key = `${x.pk}@${normalizeHost(x.host)}`
      if (x.bid > (claims.get(key) ?? -1n)) claims.set(key, x.bid)
    }
    if (claims.size === 0) s.announced.delete(tracker)
    else s.announced.set(tracker, claims)
  }

  /** The highest bid any tracker says `pk` announced from `host`. */
  private announcedBid (t: SpeedTorrent, pk: string, host: string | undefined): bigint | undefined {
    const s = this.torrents.get(t.infoHash)
    if (s === undefined || s.announced.size === 0) return undefined
    const key = `${pk}@${normalizeHost(host)}`
    let best: bigint | undefined
    for (const claims of s.announced.values()) {
      const v = claims.get(key)
      if (v !== undefined && (best === undefined || v > best)) best = v
    }
    return best
  }

  private onBid (t: SpeedTorrent, peer: Peer, b: BttPeer, m: Extract<BttMessage, { t: 'bid' }>): void {
    const announced = this.selling ? this.announcedBid(t, b.pk, peer.host) : undefined
    if (announced !== undefined && m.rate * BID_MISMATCH_FACTOR < announced) {
      // DESIGN: clients never trust tracker bids; a peer whose real bid is far below the one it
      // announced is disconnected (it inflates a torrent's demand to attract seeders)
      throw new SeedingError('BTT_BID_BELOW_ANNOUNCED', `bid ${m.rate} per KiB is less than 1/${BID_MISMATCH_FACTOR} of the ${announced} this wallet announced to a tracker`)
    }
    b.bid = m.rate
    if (m.channel !== undefined) {
      const channel = Buffer.from(m.channel).toString('hex')
      if (b.session !== undefined && b.session.init.channelId !== channel) {
        // blocks prepared on the old session must not go out after it ended: choke first (reads
        // in flight see the choke generation change and are cleaned up, not applied)
        peer.choke()
        this.endSession(b)
        if (b.price > 0n) b.pendingUnchoke = true
      }
      b.channel = channel
      if (b.pendingUnchoke) void this.openSession(t, peer, b)
    }
  }

  /**
   * The choker decided: `price` > 0 is a paid slot at that price, 0 a free one. Sends
   * bid_response first when the price changes (choking a peer that is unchoked at another price),
   * and unchokes a paid peer only once its session is open.
   */
  unchoke (t: SpeedTorrent, peer: Peer, price: bigint, now: number): void {
    const b = peer.btt
    if (b === undefined) { peer.unchoke(now); return }
    if (price === b.price && (price === 0n || (b.session !== undefined && !b.session.signal.aborted))) {
      if (price > 0n) b.session!.reprice(price)
      peer.unchoke(now)
      return
    }
    if (price !== b.price) {
      peer.choke()
      b.price = price
      this.send(peer, {
        t: 'bid_response',
        rate: price,
        payee: Buffer.from(this.opts.payments.account, 'hex'),
        ledger: Buffer.from(this.opts.payments.ledgerId, 'hex'),
        minDeposit: price * BigInt(Math.ceil((t.pieceLengthNominal ?? BLOCK) / 1024)) * BigInt(this.opts.minDepositPieces),
        minExpiry: this.opts.minExpirySeconds,
        pieceLength: t.pieceLengthNominal ?? BLOCK
      })
    }
    if (price === 0n) { peer.unchoke(now); return }
    if (b.session !== undefined && !b.session.signal.aborted) {
      b.session.reprice(price)
      peer.unchoke(now)
      return
    }
    b.pendingUnchoke = true
    if (b.channel !== undefined) void this.openSession(t, peer, b)
  }

  /** The choker took the slot away. */
  choked (peer: Peer): void {
    if (peer.btt !== undefined) peer.btt.pendingUnchoke = false
  }

  private async openSession (t: SpeedTorrent, peer: Peer, b: BttPeer): Promise<void> {
    if (b.opening || b.channel === undefined) return
    b.opening = true
    const channelId = b.channel
    try {
      if (b.session === undefined || b.session.signal.aborted) {
        if (b.session !== undefined) this.endSession(b)
        // what an ended session of this payer still owes is settled (pending vouchers counted) first
        await this.settling.get(b.pk)
        const session = await this.opts.payments.meter.open({
          peer: b.pk,
          channelId,
          price: b.price > 0n ? b.price : 1n,
          maxUnpaidUnits: Math.ceil((t.pieceLengthNominal ?? BLOCK) / 1024),
          owed: this.debts.get(b.pk) ?? 0n
        })
        // the debt moves into the new session only now that it exists
        this.debts.delete(b.pk)
        b.session = session
        if (peer.closed || b.channel !== channelId) {
          this.endSession(b)
          return
        }
      }
      if (peer.closed || !b.pendingUnchoke || b.price === 0n) return
      b.pendingUnchoke = false
      b.session.reprice(b.price)
      peer.unchoke(this.now())
    } catch (err) {
      this.opts.logger.info({ peer: peer.key, channel: channelId, err }, 'cannot open a paid session on this channel')
      b.channel = undefined
    } finally {
      b.opening = false
    }
  }

  /**
   * Ends a peer's session. Its unpaid value becomes the payer's debt, carried into its next
   * session — counted after the vouchers already received on this connection are accepted.
   */
  private endSession (b: BttPeer): void {
    const s = b.session
    if (s === undefined) return
    b.session = undefined
    const pk = b.pk
    const prev = this.settling.get(pk) ?? Promise.resolve()
    const done = Promise.all([prev, b.serial(async () => {})]).then(() => {
      const unpaid = s.unpaid
      if (unpaid > 0n) this.debts.set(pk, (this.debts.get(pk) ?? 0n) + unpaid)
      s.close()
      if (this.settling.get(pk) === done) this.settling.delete(pk)
    })
    this.settling.set(pk, done)
  }

  /**
   * Before a block goes to `peer`: undefined when it is free, else a Debit that waits (up to the
   * payment timeout) while a piece's worth is delivered and unpaid.
   */
  gate (peer: Peer, length: number): Promise<Debit> | undefined {
    const b = peer.btt
    if (b === undefined || b.price === 0n) return undefined
    const s = b.session
    if (s === undefined) return Promise.reject(new SeedingError('BTT_NO_SESSION', 'a paid peer without a session'))
    return s.prepare(Math.ceil(length / 1024))
  }

  /** A block went out to a paid peer: earnings are counted when it is paid, bytes now. */
  served (peer: Peer, length: number): void {
    const b = peer.btt
    if (b !== undefined && b.price > 0n) b.paidBytes += length
  }

  /** The gate failed: no payment in time, deposit exhausted, or banned. */
  gateFailed (peer: Peer, err: unknown): void {
    const b = peer.btt
    if (b === undefined) return
    this.opts.logger.info({ peer: peer.key, payer: b.pk.slice(0, 16), err: (err as Error).message }, 'payment failed: choking the peer')
    b.failures++
    b.pendingUnchoke = false
    // the price stays what the requester was told: a later free unchoke sends bid_response(0)
    peer.choke()
    this.endSession(b)
    if (this.opts.payments.meter.isBanned(b.pk)) peer.destroy()
  }

  private onPayment (t: SpeedTorrent, peer: Peer, b: BttPeer, m: Extract<BttMessage, { t: 'payment' }>): void {
    const session = b.session
    if (session === undefined) return
    void b.serial(async () => {
      try {
        const { credited } = await session.accept(m.voucher)
        if (credited > 0n) {
          b.earned += credited
          const s = this.state(t)
          const e = s.earnings.get(b.pk) ?? { amount: 0n, bytes: 0 }
          const bytes = b.paidBytes
          e.amount += credited
          e.bytes += bytes
          b.paidBytes = 0
          s.earnings.set(b.pk, e)
          this.events.onEarn?.(t.infoHash, b.pk, credited, bytes)
        }
        this.send(peer, { t: 'payment_ack', amount: b.earned, piece: m.piece })
      } catch (err) {
        this.opts.logger.info({ peer: peer.key, err: (err as Error).message }, 'refused a payment')
        this.events.onRefuse?.((err as { code?: string }).code ?? 'UNKNOWN')
        if (this.opts.payments.meter.isBanned(b.pk)) peer.destroy()
      }
    })
  }

  private async onSourceProof (t: SpeedTorrent, peer: Peer, m: Extract<BttMessage, { t: 'source_proof' }>): Promise<void> {
    if (!this.selling || !t.complete) return
    const s = this.state(t)
    const c = s.challenge
    if (c === undefined || m.piece !== c.piece || m.chunk !== c.chunk) return
    const data = await t.readChunk(c.piece, c.chunk)
    const want = createHash('sha256').update(data).digest()
    if (!want.equals(m.hash)) {
      this.opts.logger.info({ peer: peer.key, piece: c.piece, chunk: c.chunk }, 'invalid source proof: ignored')
      return
    }
    const now = this.now()
    s.lastProofAt = now
    s.challenge = undefined
    s.lastReserve = undefined
    this.opts.logger.info({ infoHash: t.infoHash, peer: peer.key }, 'valid source proof: reserve back to 0')
    // one clock reading for the proof and the announcement: the reserve sent is exactly 0
    this.tick(t, now)
  }

  /** Payer keys the Meter bans now (of those that connected). */
  bans (): string[] {
    return [...this.payers].filter(pk => this.opts.payments.meter.isBanned(pk))
  }

  /** Earnings per payer for one torrent (provider side). */
  earnings (infoHash: string): Array<{ payer: string, amount: bigint, bytes: number }> {
    const s = this.torrents.get(infoHash)
    if (s === undefined) return []
    return [...s.earnings].map(([payer, e]) => ({ payer, amount: e.amount, bytes: e.bytes }))
  }

  spending (infoHash: string): Array<{ payee: string, amount: bigint }> {
    const s = this.torrents.get(infoHash)
    if (s === undefined) return []
    return [...s.spending].map(([payee, amount]) => ({ payee, amount }))
  }

  // --- requester -------------------------------------------------------------------------------

  private onReserve (t: SpeedTorrent, peer: Peer, b: BttPeer, m: Extract<BttMessage, { t: 'reserve' }>): void {
    b.theirReserve = m.price
    const same = b.challenge !== undefined && b.challenge.piece === m.piece && b.challenge.chunk === m.chunk
    b.challenge = { piece: m.piece, chunk: m.chunk }
    // we prove possession when we have the chunk, once per challenge and only while the reserve
    // is above 0 (a reserve already at 0 needs no proof; answering it would ping-pong with a
    // seeder that re-announces 0 after every proof)
    if (m.price > 0n && !(same && b.proved) && t.pieceCount !== undefined && m.piece < t.pieceCount && t.hasPiece(m.piece) && m.chunk * BLOCK < t.pieceLength(m.piece)) {
      b.proved = true
      void t.readChunk(m.piece, m.chunk).then(data => {
        this.send(peer, { t: 'source_proof', piece: m.piece, chunk: m.chunk, hash: createHash('sha256').update(data).digest() })
      }, () => {})
    }
    if (this.buying && !t.complete) this.sendBid(t, peer, false)
  }

  /** The auto-bid for a torrent now. */
  bidFor (t: SpeedTorrent): bigint {
    const bidding = this.opts.bidding
    if (bidding === undefined || t.complete || t.left <= 0) return 0n
    let bid = autoBid({ spendingRatePpm: bidding.spendingRatePpm, balance: this.budgetLeft, remainingBytes: BigInt(t.left) })
    if (bidding.maxRate !== undefined && bid > bidding.maxRate) bid = bidding.maxRate
    return bid
  }

  private sendBid (t: SpeedTorrent, peer: Peer, withChannel: boolean): void {
    const b = peer.btt
    if (b === undefined) return
    const s = this.state(t)
    const next = s.bids.next(this.bidFor(t), this.now())
    if (next !== undefined) {
      s.currentBid = next
      // a new bid goes to everyone
      for (const p of t.peers.values()) {
        if (p.btt === undefined || p === peer) continue
        p.btt.ourBid = next
        this.send(p, { t: 'bid', rate: next, ...(p.btt.ourChannel !== undefined ? { channel: Buffer.from(p.btt.ourChannel, 'hex') } : {}) })
      }
    }
    if (next === undefined && b.ourBid === s.currentBid && !withChannel) return
    b.ourBid = s.currentBid
    this.send(peer, { t: 'bid', rate: s.currentBid, ...(b.ourChannel !== undefined ? { channel: Buffer.from(b.ourChannel, 'hex') } : {}) })
  }

  private onBidResponse (t: SpeedTorrent, peer: Peer, b: BttPeer, m: Extract<BttMessage, { t: 'bid_response' }>): void {
    if (m.rate === 0n) { b.theirPrice = 0n; return }
    if (!this.buying) { b.theirPrice = m.rate; return } // we never asked: we will not pay, and they will choke us
    if (m.rate > b.ourBid) {
      throw new SeedingError('BTT_PRICE_ABOVE_BID', `seeder asks ${m.rate} per KiB, above our bid ${b.ourBid}`)
    }
    if (Buffer.from(m.ledger).toString('hex') !== this.opts.payments.ledgerId) {
      throw new SeedingError('BTT_WRONG_LEDGER', 'bid_response names another ledger')
    }
    b.theirPrice = m.rate
    void this.ensureChannel(t, peer, b, m)
  }

  private async ensureChannel (t: SpeedTorrent, peer: Peer, b: BttPeer, m: Extract<BttMessage, { t: 'bid_response' }>): Promise<void> {
    const payee = Buffer.from(m.payee).toString('hex')
    const pieceKiB = BigInt(Math.ceil(m.pieceLength / 1024))
    const need = m.minDeposit > m.rate * pieceKiB ? m.minDeposit : m.rate * pieceKiB
    try {
      if (b.ourChannel !== undefined) {
        const c = this.opts.payments.findChannel(payee, m.rate * pieceKiB)
        if (c !== undefined && c.id === b.ourChannel) { this.sendChannel(t, peer, b); return }
        this.inUse.delete(b.ourChannel)
        b.ourChannel = undefined
      }
      // enough for the rest of the download at this price, within the budget: a channel reused
      // from an earlier download must hold that much too, or it runs dry halfway
      const remaining = m.rate * BigInt(Math.ceil(t.left / 1024)) + m.rate * pieceKiB
      const wanted = remaining < this.budgetLeft ? remaining : this.budgetLeft
      let channel = this.opts.payments.findChannel(payee, wanted > need ? wanted : need)
      if (channel !== undefined && this.inUse.has(channel.id)) channel = undefined
      if (channel === undefined) {
        let deposit = wanted
        if (deposit < need) deposit = need
        if (deposit > this.budgetLeft) {
          this.opts.logger.info({ peer: peer.key, need: need.toString(), left: this.budgetLeft.toString() }, 'budget too small for this seeder\'s terms')
          return
        }
        const lifetime = Math.max(this.opts.channelLifetimeMs ?? 24 * 3_600_000, (m.minExpiry + 600) * 1000)
        channel = await this.opts.payments.openChannel(payee, deposit, this.now() + lifetime)
      }
      this.inUse.add(channel.id)
      b.ourChannel = channel.id
      this.sendChannel(t, peer, b)
    } catch (err) {
      this.opts.logger.warn({ peer: peer.key, err: (err as Error).message }, 'could not open a channel to a seeder')
    }
  }

  private sendChannel (t: SpeedTorrent, peer: Peer, b: BttPeer): void {
    this.send(peer, { t: 'bid', rate: b.ourBid, channel: Buffer.from(b.ourChannel!, 'hex') })
  }

  /** True while `peer` charges us: the picker then gives it whole pieces only. */
  isPaid (peer: Peer): boolean {
    return peer.btt !== undefined && peer.btt.theirPrice > 0n
  }

  /** A block arrived from `peer`: what it costs at the price in force now. */
  received (peer: Peer, index: number, length: number): void {
    const b = peer.btt
    if (b === undefined || b.theirPrice === 0n) return
    b.owed.set(index, (b.owed.get(index) ?? 0n) + blockCost(b.theirPrice, length))
  }

  /** A piece verified: pay every seeder for its blocks of it. */
  verified (t: SpeedTorrent, index: number): void {
    for (const p of t.peers.values()) {
      const b = p.btt
      const amount = b?.owed.get(index)
      if (b === undefined || amount === undefined) continue
      b.owed.delete(index)
      const paid = this.pay(t, p, b, index, amount)
      this.paying.add(paid)
      void paid.finally(() => { this.paying.delete(paid) })
    }
  }

  /** A piece failed its hash: nobody is paid for it. */
  corrupt (t: SpeedTorrent, index: number): void {
    for (const p of t.peers.values()) p.btt?.owed.delete(index)
  }

  private async pay (t: SpeedTorrent, peer: Peer, b: BttPeer, index: number, amount: bigint): Promise<void> {
    const channel = b.ourChannel
    if (channel === undefined) {
      this.opts.logger.warn({ peer: peer.key, piece: index }, 'owe a seeder without a channel; dropping it')
      peer.destroy()
      return
    }
    try {
      const voucher = await this.opts.payments.pay(channel, amount)
      b.spent += amount
      this.unacked.add(b)
      this.spentTotal += amount
      const s = this.state(t)
      s.spending.set(b.pk, (s.spending.get(b.pk) ?? 0n) + amount)
      this.events.onSpend?.(t.infoHash, b.pk, amount)
      this.send(peer, { t: 'payment', voucher, piece: index })
    } catch (err) {
      this.opts.logger.warn({ peer: peer.key, piece: index, err: (err as Error).message }, 'payment failed; dropping the seeder')
      peer.destroy()
    }
  }

  /**
   * Requester, before it stops: wait until every payment under way was sent and every connected
   * seeder acknowledged what it was paid (or left), at most `timeoutMs`. True when all settled.
   */
  async settle (timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs
    while (this.paying.size > 0 || this.unacked.size > 0) {
      if (Date.now() >= deadline) return false
      await new Promise(resolve => setTimeout(resolve, 5))
    }
    return true
  }

  /** The connection closed. */
  detach (peer: Peer): void {
    const b = peer.btt
    if (b === undefined) return
    this.unacked.delete(b)
    this.endSession(b)
    if (b.ourChannel !== undefined) this.inUse.delete(b.ourChannel)
  }
}
