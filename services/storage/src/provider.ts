import { randomBytes } from 'node:crypto'
import { DatabaseSync } from 'node:sqlite'
import { decodeVoucher, toHex } from '@btt/channel'
import type { ServicePayments } from '@btt/node'
import type { Connection, Stream } from '@libp2p/interface'
import type { Logger } from 'pino'
import type { BlobWriter, FsBlobStore } from './blobs.js'
import { StorageError } from './errors.js'
import { ParallelTreeBuilder } from './hasher.js'
import { CHUNK_BYTES, SEGMENT_BYTES, SECTOR_SEGMENTS, Tree } from './merkle.js'
import { challengeIndices, chunkPath, encodeProof, generateProof } from './proof.js'
import {
  CHALLENGE_SEGMENTS, FRAME_DATA, FRAME_PROOF, Framed, MAX_DATA_FRAME, chunkAmount, parseMessage, periodAmount, periodsOf,
  zClientMessage, type ClientMessage, type ContractJson, type Terms
} from './protocol.js'

const SECTOR_BYTES = SEGMENT_BYTES * SECTOR_SEGMENTS
/** Upload bytes are written to disk in batches of this size (one writev each). */
const WRITE_BATCH_BYTES = 8 * 1024 * 1024

export interface ProviderConfig {
  /** base units per GiB per 30 days */
  price: bigint
  /** base units per GiB retrieved */
  retrieval: bigint
  period: number
  allowedMisses: number
  minDuration: number
  maxDuration: number
  quotaBytes: number
  maxFileBytes: number
  maxUploads: number
  idleTimeoutMs: number
  /** A channel must stay open this long past the contract's last payment (the claim margin). */
  channelMarginMs: number
}

export type ContractStatus = 'active' | 'expired' | 'cancelled' | 'unpaid' | 'lost'

export interface ProviderContract extends ContractJson {
  owner: string
  status: ContractStatus
  proofs: number
  earned: bigint
  created: number
  ended?: number
}

export interface ProviderInit {
  dbPath: string
  blobs: FsBlobStore
  payments: ServicePayments
  config: ProviderConfig
  logger: Logger
  now?: () => number
  onEvent?: (event: 'upload' | 'proof' | 'period-paid' | 'chunk' | 'refused', detail: { bytes?: number, amount?: bigint, reason?: string }) => void
}

interface ContractRow {
  id: string
  owner: string
  channel: string
  root: string
  size: number
  start: number
  period: number
  periods: number
  price: string
  retrieval: string
  allowed_misses: number
  paid_periods: number
  proofs: number
  earned: string
  status: ContractStatus
  created: number
  ended: number | null
}

/**
 * The provider side of storage: accepts contracts at or above its price and inside its quota,
 * stores ciphertext (fsynced before the upload is acknowledged), answers proof challenges, takes
 * one period's payment per proven period and one chunk's payment per retrieved chunk, and deletes
 * data at expiry, on cancel, or after too many unpaid periods.
 */
export class StorageProvider {
  private readonly db: DatabaseSync
  private readonly now: () => number
  private readonly uploading = new Map<string, number>()
  /** upload id → channel, so two uploads cannot be backed by one channel */
  private readonly channelsUploading = new Map<string, string>()
  /** contract id → its payment in progress: period payments of one contract run one at a time */
  private readonly paying = new Map<string, Promise<unknown>>()
  private timer: NodeJS.Timeout | undefined

  constructor (private readonly init: ProviderInit) {
    this.now = init.now ?? Date.now
    this.db = new DatabaseSync(init.dbPath)
    this.db.exec(`
      PRAGMA journal_mode = WAL;
      PRAGMA synchronous = FULL;
      PRAGMA busy_timeout = 10000;
      CREATE TABLE IF NOT EXISTS contracts (
        id TEXT PRIMARY KEY, owner TEXT NOT NULL, channel TEXT NOT NULL, root TEXT NOT NULL, size INTEGER NOT NULL,
        start INTEGER NOT NULL, period INTEGER NOT NULL, periods INTEGER NOT NULL, price TEXT NOT NULL, retrieval TEXT NOT NULL,
        allowed_misses INTEGER NOT NULL, paid_periods INTEGER NOT NULL DEFAULT 0, proofs INTEGER NOT NULL DEFAULT 0,
        earned TEXT NOT NULL DEFAULT '0', status TEXT NOT NULL, created INTEGER NOT NULL, ended INTEGER
      );
      CREATE INDEX IF NOT EXISTS contracts_status ON contracts(status);
      CREATE TABLE IF NOT EXISTS intents (
        channel TEXT NOT NULL, amount TEXT NOT NULL, contract TEXT NOT NULL, period INTEGER NOT NULL,
        PRIMARY KEY (channel, amount)
      );
    `)
  }

  /** Clean up after a crash: partial uploads, blobs no contract holds. Then sweep on a timer. */
  async start (): Promise<void> {
    const partial = await this.init.blobs.cleanPartial()
    if (partial > 0) this.init.logger.info({ partial }, 'removed partial uploads left by a previous run')
    const live = new Set((this.db.prepare("SELECT root FROM contracts WHERE status = 'active'").all() as Array<{ root: string }>).map(r => r.root))
    for (const root of await this.init.blobs.list()) {
      if (!live.has(root)) {
        await this.init.blobs.delete(root)
        this.init.logger.info({ root }, 'removed a blob no active contract holds')
      }
    }
    await this.sweep()
    const every = Math.min(60_000, Math.max(1000, this.init.config.period * 1000 / 2))
    this.timer = setInterval(() => { this.sweep().catch(err => { this.init.logger.warn({ err }, 'storage sweep failed') }) }, every)
    this.timer.unref()
  }

  async stop (): Promise<void> {
    clearInterval(this.timer)
    this.db.close()
  }

  terms (): Terms {
    const c = this.init.config
    return {
      t: 'terms',
      account: this.init.payments.account,
      ledger: this.init.payments.ledgerId,
      price: c.price,
      retrieval: c.retrieval,
      period: c.period,
      allowed_misses: c.allowedMisses,
      min_duration: c.minDuration,
      max_duration: c.maxDuration,
      max_size: Math.min(c.maxFileBytes, c.quotaBytes),
      free: Math.max(0, c.quotaBytes - this.usedBytes())
    }
  }

  /** Bytes held by active contracts plus uploads under way. */
  usedBytes (): number {
    const row = this.db.prepare("SELECT COALESCE(SUM(size), 0) AS used FROM contracts WHERE status = 'active'").get() as { used: number }
    let used = row.used
    for (const s of this.uploading.values()) used += s
    return used
  }

  contracts (): ProviderContract[] {
    return (this.db.prepare('SELECT * FROM contracts ORDER BY created').all() as unknown as ContractRow[]).map(r => this.toContract(r))
  }

  earnings (): bigint {
    let sum = 0n
    for (const r of this.db.prepare('SELECT earned FROM contracts').all() as Array<{ earned: string }>) sum += BigInt(r.earned)
    return sum
  }

  /** One stream, one request. */
  async handle (stream: Stream, connection: Connection): Promise<void> {
    const io = new Framed(stream)
    const peer = connection.remotePeer.toString()
    try {
      const msg = parseMessage(zClientMessage, await io.readJson())
      switch (msg.t) {
        case 'quote': await io.sendJson(this.terms()); break
        case 'put': await this.put(io, peer, msg); break
        case 'challenge': await this.challenge(io, peer, msg); break
        case 'retrieve': await this.retrieve(io, peer, msg); break
        case 'cancel': await this.cancel(io, peer, msg.contract); break
        case 'speedtest': await this.speedtest(io, peer, msg); break
        default: throw new StorageError('STORAGE_PROTOCOL', `unexpected ${msg.t} at the start of a stream`)
      }
      await stream.close().catch(() => {})
    } catch (err) {
      const code = (err as { code?: string }).code ?? 'STORAGE_INTERNAL'
      this.init.logger.debug({ err, peer }, 'storage request failed')
      this.init.onEvent?.('refused', { reason: code })
      const paidPeriods = (err as { paidPeriods?: number }).paidPeriods
      await io.sendJson({ t: 'error', code: code.slice(0, 64), message: (err as Error).message.slice(0, 1024), ...(paidPeriods !== undefined ? { paid_periods: paidPeriods } : {}) }).catch(() => {})
      await stream.close().catch(() => { stream.abort(err as Error) })
    }
  }

  private async put (io: Framed, peer: string, msg: Extract<ClientMessage, { t: 'put' }>): Promise<void> {
    const c = this.init.config
    if (msg.price < c.price) throw new StorageError('STORAGE_PRICE_TOO_LOW', `this provider stores at ${c.price} base units per GiB·month; offered ${msg.price}`)
    if (msg.retrieval < c.retrieval) throw new StorageError('STORAGE_PRICE_TOO_LOW', `this provider retrieves at ${c.retrieval} base units per GiB; offered ${msg.retrieval}`)
    if (msg.period !== c.period) throw new StorageError('STORAGE_BAD_TERMS', `the proof period here is ${c.period} s, not ${msg.period}`)
    if (msg.allowed_misses !== c.allowedMisses) throw new StorageError('STORAGE_BAD_TERMS', `allowed missed proofs here are ${c.allowedMisses}, not ${msg.allowed_misses}`)
    if (msg.duration < c.minDuration || msg.duration > c.maxDuration) throw new StorageError('STORAGE_BAD_TERMS', `duration must be ${c.minDuration}–${c.maxDuration} s`)
    if (msg.size > c.maxFileBytes) throw new StorageError('STORAGE_TOO_LARGE', `this provider takes files up to ${c.maxFileBytes} bytes; this one is ${msg.size}`)
    const free = c.quotaBytes - this.usedBytes()
    if (msg.size > free) throw new StorageError('STORAGE_OVER_QUOTA', `over quota: this provider has ${Math.max(0, free)} bytes free of ${c.quotaBytes}; the upload needs ${msg.size}`)
    if (this.uploading.size >= c.maxUploads) throw new StorageError('STORAGE_BUSY', `${c.maxUploads} uploads are under way; try again later`)

    // reserve the space and the upload slot now: the checks below wait on the ledger and the disk
    const uploadId = randomBytes(16).toString('hex')
    this.uploading.set(uploadId, msg.size)
    let writer: BlobWriter | undefined
    let committed = false
    try {
      // the channel must pay us, back this contract only, cover every period and stay open past the last one
      const periods = periodsOf(msg.duration, msg.period)
      const perPeriod = periodAmount(msg.price, msg.size, msg.period)
      const inUse = this.db.prepare("SELECT COUNT(*) AS n FROM contracts WHERE channel = ? AND status = 'active'").get(msg.channel) as { n: number }
      if (inUse.n > 0) throw new StorageError('STORAGE_CHANNEL_IN_USE', `channel ${msg.channel} already backs a contract; open one channel per contract`)
      for (const [id, reserved] of this.channelsUploading) if (reserved === msg.channel && id !== uploadId) throw new StorageError('STORAGE_CHANNEL_IN_USE', `channel ${msg.channel} backs an upload under way`)
      this.channelsUploading.set(uploadId, msg.channel)
      await this.init.payments.meter.open({ peer, channelId: msg.channel, price: perPeriod })
      const ch = this.init.payments.meter.channel(msg.channel)
      const need = perPeriod * BigInt(periods)
      if (ch.deposit - ch.highest < need) throw new StorageError('STORAGE_CHANNEL_SHORT', `channel ${msg.channel} has ${ch.deposit - ch.highest} base units left; ${periods} periods cost ${need}`)
      const lastPayment = this.now() + (periods + 1) * msg.period * 1000
      if (ch.expiresAt < lastPayment + c.channelMarginMs) throw new StorageError('STORAGE_CHANNEL_SHORT', `channel ${msg.channel} expires at ${new Date(ch.expiresAt).toISOString()}, before the contract's last payment (${new Date(lastPayment + c.channelMarginMs).toISOString()})`)
      writer = await this.init.blobs.create(uploadId)
      await io.sendJson({ t: 'ready', upload: uploadId })
      const builder = new ParallelTreeBuilder(msg.size)
      const t0 = performance.now()
      let hashMs = 0
      let writeWaitMs = 0
      let received = 0
      let pending: Promise<void> = Promise.resolve()
      // frames are written in batches of up to 8 MiB (one writev), one batch in flight while the next fills
      let batch: Uint8Array[] = []
      let batchBytes = 0
      while (received < msg.size) {
        const f = await withTimeout(io.read(), c.idleTimeoutMs, 'STORAGE_UPLOAD_IDLE', `no upload data for ${c.idleTimeoutMs / 1000} s`)
        if (f === undefined) throw new StorageError('STORAGE_UPLOAD_TRUNCATED', `upload ended after ${received} of ${msg.size} bytes`)
        if (f.type !== FRAME_DATA) throw new StorageError('STORAGE_PROTOCOL', 'expected upload data')
        if (received + f.payload.byteLength > msg.size) throw new StorageError('STORAGE_SIZE_MISMATCH', `upload is longer than the ${msg.size} bytes agreed`)
        received += f.payload.byteLength
        const th = performance.now()
        await builder.push(f.payload)
        hashMs += performance.now() - th
        batch.push(f.payload)
        batchBytes += f.payload.byteLength
        if (batchBytes >= WRITE_BATCH_BYTES || received === msg.size) {
          const tw = performance.now()
          await pending
          writeWaitMs += performance.now() - tw
          pending = writer.writev(batch)
          batch = []
          batchBytes = 0
        }
      }
      await pending
      const commit = parseMessage(zClientMessage, await withTimeout(io.readJson(), c.idleTimeoutMs, 'STORAGE_UPLOAD_IDLE', 'no commit'))
      if (commit.t !== 'commit') throw new StorageError('STORAGE_PROTOCOL', `expected commit, got ${commit.t}`)
      const tree = await builder.finish()
      const root = toHex(tree.root)
      if (root !== commit.root) throw new StorageError('STORAGE_ROOT_MISMATCH', `the data's Merkle root is ${root}, the client claims ${commit.root}`)
      const tc = performance.now()
      await writer.commit(root, tree.serialize())
      committed = true
      this.init.logger.info({ size: msg.size, receiveMs: Math.round(tc - t0), hashMs: Math.round(hashMs), writeWaitMs: Math.round(writeWaitMs), commitMs: Math.round(performance.now() - tc) }, 'upload received and committed')
      const id = randomBytes(16).toString('hex')
      const start = Math.floor(this.now() / 1000)
      this.db.prepare(`INSERT INTO contracts (id, owner, channel, root, size, start, period, periods, price, retrieval, allowed_misses, status, created)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'active', ?)`).run(
        id, peer, msg.channel, root, msg.size, start, msg.period, periods, msg.price.toString(), msg.retrieval.toString(), msg.allowed_misses, this.now())
      this.init.onEvent?.('upload', { bytes: msg.size })
      this.init.logger.info({ contract: id, size: msg.size, periods, peer }, 'storage contract stored')
      const contract: ContractJson = { id, root, size: msg.size, start, period: msg.period, periods, price: msg.price, retrieval: msg.retrieval, allowed_misses: msg.allowed_misses, channel: msg.channel, paid_periods: 0 }
      await io.sendJson({ t: 'stored', contract })
    } finally {
      this.uploading.delete(uploadId)
      this.channelsUploading.delete(uploadId)
      if (!committed) await writer?.abort()
    }
  }

  private contractOf (peer: string, id: string, active = true): ContractRow {
    const row = this.db.prepare('SELECT * FROM contracts WHERE id = ?').get(id) as ContractRow | undefined
    // another peer's contract is as unknown as a missing one
    if (row === undefined || row.owner !== peer) throw new StorageError('STORAGE_UNKNOWN_CONTRACT', `no contract ${id} for this peer`)
    if (active && row.status !== 'active') throw new StorageError('STORAGE_CONTRACT_ENDED', `contract ${id} has ended (${row.status})`)
    return row
  }

  private async challenge (io: Framed, peer: string, msg: Extract<ClientMessage, { t: 'challenge' }>): Promise<void> {
    const row = this.contractOf(peer, msg.contract)
    const tree = Tree.parse(await this.init.blobs.readTree(row.root), row.size)
    const n = Math.ceil(row.size / SEGMENT_BYTES)
    const indices = challengeIndices(Buffer.from(msg.nonce, 'hex'), tree.root, n, CHALLENGE_SEGMENTS)
    const fh = await this.init.blobs.openBlob(row.root)
    let proof: Uint8Array
    try {
      proof = encodeProof(await generateProof(tree, indices, async sector => {
        const offset = sector * SECTOR_BYTES
        const length = Math.min(SECTOR_BYTES, row.size - offset)
        const buf = Buffer.allocUnsafe(length)
        let got = 0
        while (got < length) {
          const { bytesRead } = await fh.read(buf, got, length - got, offset + got)
          if (bytesRead === 0) throw new StorageError('STORAGE_BLOB_SHORT', 'blob is shorter than its contract')
          got += bytesRead
        }
        return buf
      }))
    } finally {
      await fh.close()
    }
    this.db.prepare('UPDATE contracts SET proofs = proofs + 1 WHERE id = ?').run(row.id)
    this.init.onEvent?.('proof', {})
    await io.sendJson({ t: 'proof', paid_periods: row.paid_periods, periods: row.periods })
    await io.send(FRAME_PROOF, proof)
    // then the client pays for a due period, or says done
    const next = await withTimeout(io.read(), this.init.config.idleTimeoutMs, 'STORAGE_IDLE', 'no payment or done after a proof')
    if (next === undefined) return
    const m = parseMessage(zClientMessage, JSON.parse(Buffer.from(next.payload).toString('utf8')))
    if (m.t === 'done') return
    if (m.t !== 'pay' || m.contract !== row.id) throw new StorageError('STORAGE_PROTOCOL', 'expected pay or done after a proof')
    const paid = await this.payPeriod(peer, row.id, m.period, Buffer.from(m.voucher, 'hex'))
    await io.sendJson({ t: 'paid', period: m.period, paid_periods: paid })
  }

  /**
   * Take one period's payment. Exactly the period's amount on top of the channel's last voucher,
   * for the next unpaid period only. An intent row (unique per channel and amount) is written
   * before the voucher is accepted, so a voucher accepted just before a crash is recognised when
   * the client re-sends it, and one voucher can never pay two periods.
   */
  private async payPeriod (peer: string, contractId: string, period: number, voucherBytes: Uint8Array): Promise<number> {
    const prev = this.paying.get(contractId) ?? Promise.resolve()
    const run = prev.then(async () => await this.payPeriodNow(peer, contractId, period, voucherBytes), async () => await this.payPeriodNow(peer, contractId, period, voucherBytes))
    const tail = run.catch(() => {})
    this.paying.set(contractId, tail)
    try {
      return await run
    } finally {
      if (this.paying.get(contractId) === tail) this.paying.delete(contractId)
    }
  }

  private async payPeriodNow (peer: string, contractId: string, period: number, voucherBytes: Uint8Array): Promise<number> {
    const row = this.contractOf(peer, contractId)
    if (period < row.paid_periods) throw Object.assign(new StorageError('STORAGE_ALREADY_PAID', `period ${period} is already paid (${row.paid_periods} of ${row.periods})`), { paidPeriods: row.paid_periods })
    if (period !== row.paid_periods || period >= row.periods) throw new StorageError('STORAGE_BAD_PERIOD', `the next period to pay is ${row.paid_periods} of ${row.periods}`)
    let voucher
    try {
      voucher = decodeVoucher(voucherBytes)
    } catch (err) {
      throw new StorageError('STORAGE_BAD_PAYMENT', `not a voucher: ${(err as Error).message}`)
    }
    if (toHex(voucher.channelId) !== row.channel) throw new StorageError('STORAGE_BAD_PAYMENT', `the voucher is for channel ${toHex(voucher.channelId)}, this contract pays on ${row.channel}`)
    const amount = periodAmount(BigInt(row.price), row.size, row.period)
    const meter = this.init.payments.meter
    const intent = this.db.prepare('SELECT contract, period FROM intents WHERE channel = ? AND amount = ?').get(row.channel, voucher.amount.toString()) as { contract: string, period: number } | undefined
    if (intent !== undefined) {
      // a voucher we were taking when the node stopped: the channel store has it if it was accepted
      if (intent.contract !== row.id || intent.period !== period) throw new StorageError('STORAGE_BAD_PAYMENT', 'this voucher already paid for something else')
      if (meter.channel(row.channel).highest < voucher.amount) {
        await this.acceptVoucher(peer, row.channel, amount, voucherBytes)
      }
    } else {
      const highest = meter.channel(row.channel).highest
      if (voucher.amount !== highest + amount) throw new StorageError('STORAGE_BAD_PAYMENT', `period ${period} costs ${amount}: the voucher must be for ${highest + amount}, not ${voucher.amount}`)
      this.db.prepare('INSERT INTO intents (channel, amount, contract, period) VALUES (?, ?, ?, ?)').run(row.channel, voucher.amount.toString(), row.id, period)
      try {
        await this.acceptVoucher(peer, row.channel, amount, voucherBytes)
      } catch (err) {
        this.db.prepare('DELETE FROM intents WHERE channel = ? AND amount = ?').run(row.channel, voucher.amount.toString())
        throw err
      }
    }
    // only if nothing else paid this period meanwhile (payments of a contract are serialised; this is the guard)
    const changed = this.db.prepare('UPDATE contracts SET paid_periods = paid_periods + 1, earned = ? WHERE id = ? AND paid_periods = ? AND earned = ?')
      .run((BigInt(row.earned) + amount).toString(), row.id, period, row.earned)
    if (Number(changed.changes) !== 1) throw new StorageError('STORAGE_ALREADY_PAID', `period ${period} was paid meanwhile`)
    this.init.onEvent?.('period-paid', { amount })
    this.init.logger.info({ contract: row.id, period, amount: amount.toString() }, 'storage period paid')
    return row.paid_periods + 1
  }

  private async acceptVoucher (peer: string, channel: string, amount: bigint, voucherBytes: Uint8Array): Promise<void> {
    const session = await this.init.payments.meter.open({ peer, channelId: channel, price: amount, maxUnpaidUnits: 1 })
    try {
      const debit = await session.prepare(1)
      debit.apply()
      const { credited } = await session.accept(voucherBytes)
      if (credited !== amount) throw new StorageError('STORAGE_BAD_PAYMENT', `credited ${credited}, expected ${amount}`)
    } finally {
      session.close()
    }
  }

  private async retrieve (io: Framed, peer: string, msg: Extract<ClientMessage, { t: 'retrieve' }>): Promise<void> {
    const row = this.contractOf(peer, msg.contract)
    const chunks = Math.ceil(row.size / CHUNK_BYTES)
    if (msg.from >= chunks) throw new StorageError('STORAGE_BAD_RANGE', `the file has ${chunks} chunks`)
    const tree = Tree.parse(await this.init.blobs.readTree(row.root), row.size)
    const retrieval = BigInt(row.retrieval)
    const fullPrice = chunkAmount(retrieval, CHUNK_BYTES)
    const session = await this.init.payments.meter.open({ peer, channelId: row.channel, price: fullPrice, maxUnpaidUnits: 1 })
    const fh = await this.init.blobs.openBlob(row.root)
    const readChunk = async (i: number): Promise<Buffer> => {
      const offset = i * CHUNK_BYTES
      const length = Math.min(CHUNK_BYTES, row.size - offset)
      const buf = Buffer.allocUnsafe(length)
      let got = 0
      while (got < length) {
        const { bytesRead } = await fh.read(buf, got, length - got, offset + got)
        if (bytesRead === 0) throw new StorageError('STORAGE_BLOB_SHORT', 'blob is shorter than its contract')
        got += bytesRead
      }
      return buf
    }
    // read-ahead: the next chunk comes off the disk while this one's payment travels
    let next: Promise<Buffer> | undefined = readChunk(msg.from)
    next.catch(() => {})
    try {
      for (let i = msg.from; i < chunks; i++) {
        const offset = i * CHUNK_BYTES
        const length = Math.min(CHUNK_BYTES, row.size - offset)
        const data = await (next as Promise<Buffer>)
        next = i + 1 < chunks ? readChunk(i + 1) : undefined
        next?.catch(() => {})
        const price = chunkAmount(retrieval, length)
        if (price !== session.price) session.reprice(price)
        // at most one chunk delivered and unpaid: this waits for the last chunk's voucher
        const debit = await session.prepare(1)
        try {
          const path = chunkPath(tree, i).map(h => toHex(h))
          const first = i * (CHUNK_BYTES / SECTOR_BYTES)
          const sectors = Array.from({ length: Math.ceil(length / SECTOR_BYTES) }, (_, s) => toHex(tree.node(tree.sectorLevel, first + s)))
          await io.sendJson({ t: 'chunk', index: i, length, price, path, sectors })
          for (let off = 0; off < length; off += MAX_DATA_FRAME) {
            await io.send(FRAME_DATA, data.subarray(off, Math.min(length, off + MAX_DATA_FRAME)))
          }
          debit.apply()
        } finally {
          debit.cleanup()
        }
        this.init.onEvent?.('chunk', { bytes: length })
        const pay = parseMessage(zClientMessage, await withTimeout(io.readJson(), this.init.config.idleTimeoutMs, 'STORAGE_IDLE', 'no payment for a chunk'))
        if (pay.t === 'done') return
        if (pay.t !== 'pay' || pay.contract !== row.id || pay.period !== i) throw new StorageError('STORAGE_PROTOCOL', `expected the payment for chunk ${i}`)
        const voucher = Buffer.from(pay.voucher, 'hex')
        const { credited } = await session.accept(voucher)
        if (credited > 0n) {
          const cur = this.db.prepare('SELECT earned FROM contracts WHERE id = ?').get(row.id) as { earned: string }
          this.db.prepare('UPDATE contracts SET earned = ? WHERE id = ?').run((BigInt(cur.earned) + credited).toString(), row.id)
          this.init.onEvent?.('period-paid', { amount: credited })
        }
        if (credited !== price) throw new StorageError('STORAGE_BAD_PAYMENT', `chunk ${i} costs ${price}; the voucher paid ${credited}`)
      }
      await io.sendJson({ t: 'end' })
    } finally {
      session.close()
      await next?.catch(() => {})
      await fh.close()
    }
  }

  private readonly speedtests = new Set<string>()

  /** Raw libp2p throughput for a contract holder (operators compare it with uploads and retrievals). */
  private async speedtest (io: Framed, peer: string, msg: Extract<ClientMessage, { t: 'speedtest' }>): Promise<void> {
    const held = this.db.prepare("SELECT COUNT(*) AS n FROM contracts WHERE owner = ? AND status = 'active'").get(peer) as { n: number }
    if (held.n === 0) throw new StorageError('STORAGE_UNKNOWN_CONTRACT', 'speed tests are for peers holding an active contract')
    if (this.speedtests.has(peer)) throw new StorageError('STORAGE_BUSY', 'one speed test at a time')
    this.speedtests.add(peer)
    try {
      const t0 = performance.now()
      if (msg.direction === 'up') {
        await withTimeout(io.discardRaw(msg.bytes), 300_000, 'STORAGE_IDLE', 'speed test too slow')
      } else {
        await io.sendRaw(msg.bytes)
      }
      await io.sendJson({ t: 'speed', bytes: msg.bytes, ms: performance.now() - t0 })
    } finally {
      this.speedtests.delete(peer)
    }
  }

  private async cancel (io: Framed, peer: string, id: string): Promise<void> {
    const row = this.contractOf(peer, id)
    await this.end(row, 'cancelled')
    await io.sendJson({ t: 'cancelled' })
  }

  /** End a contract and delete its blob unless another active contract holds the same root. */
  private async end (row: ContractRow, status: ContractStatus): Promise<void> {
    this.db.prepare('UPDATE contracts SET status = ?, ended = ? WHERE id = ?').run(status, this.now(), row.id)
    const others = this.db.prepare("SELECT COUNT(*) AS n FROM contracts WHERE root = ? AND status = 'active'").get(row.root) as { n: number }
    if (others.n === 0) await this.init.blobs.delete(row.root)
    this.init.logger.info({ contract: row.id, status }, 'storage contract ended; data deleted')
  }

  /** Expire finished contracts and end those with more unpaid periods than allowed. */
  async sweep (): Promise<void> {
    const nowS = this.now() / 1000
    for (const row of this.db.prepare("SELECT * FROM contracts WHERE status = 'active'").all() as unknown as ContractRow[]) {
      const elapsed = Math.min(row.periods, Math.floor((nowS - row.start) / row.period))
      // a period is missed once the next one has also ended without its payment
      const missed = Math.max(0, elapsed - 1 - row.paid_periods)
      if (row.paid_periods >= row.periods && nowS >= row.start + row.periods * row.period) {
        await this.end(row, 'expired')
      } else if (nowS >= row.start + (row.periods + 1) * row.period) {
        await this.end(row, 'expired')
      } else if (missed > row.allowed_misses) {
        await this.end(row, 'unpaid')
      }
    }
  }

  private toContract (r: ContractRow): ProviderContract {
    return {
      id: r.id,
      owner: r.owner,
      root: r.root,
      size: r.size,
      start: r.start,
      period: r.period,
      periods: r.periods,
      price: BigInt(r.price),
      retrieval: BigInt(r.retrieval),
      allowed_misses: r.allowed_misses,
      channel: r.channel,
      paid_periods: r.paid_periods,
      status: r.status,
      proofs: r.proofs,
      earned: BigInt(r.earned),
      created: r.created,
      ...(r.ended !== null ? { ended: r.ended } : {})
    }
  }
}

async function withTimeout<T> (p: Promise<T>, ms: number, code: string, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([p, new Promise<never>((_resolve, reject) => { timer = setTimeout(() => { reject(new StorageError(code, message)) }, ms) })])
  } finally {
    clearTimeout(timer)
  }
}
