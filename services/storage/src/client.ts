import { randomBytes } from 'node:crypto'
import { DatabaseSync } from 'node:sqlite'
import { toHex } from '@btt/channel'
import type { ServicePayments } from '@btt/node'
import type { Libp2p, Stream } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import type { Logger } from 'pino'
import { Decryptor, Encryptor, ciphertextSize, fileKey, newFileId } from './crypto.js'
import { StorageError } from './errors.js'
import { ParallelTreeBuilder } from './hasher.js'
import { CHUNK_BYTES, SECTOR_BYTES, SEGMENT_BYTES } from './merkle.js'
import { challengeIndices, decodeProof, sectorNode, verifyChunkSectors, verifyProof } from './proof.js'
import {
  CHALLENGE_SEGMENTS, FRAME_DATA, FRAME_PROOF, Framed, MAX_DATA_FRAME, STORAGE_PROTOCOL, chunkAmount, parseMessage, periodAmount,
  periodsOf, raiseIfError, zProviderMessage, type ContractJson, type ProviderMessage, type Terms
} from './protocol.js'

/** How long a dial or a silent provider is waited for. */
const DIAL_TIMEOUT_MS = 15_000
const READ_TIMEOUT_MS = 60_000
/** Channels outlive the contract's last payment by this much (the provider's claim margin is 1 h by default). */
const CHANNEL_MARGIN_MS = 3 * 3600_000
/** The channel also holds this many full retrievals of the file. */
const RETRIEVALS_IN_DEPOSIT = 2

export type FileStatus = 'active' | 'complete' | 'failed' | 'cancelled' | 'lost'

export interface StoredFile {
  id: string
  name: string
  /** plaintext bytes */
  plainSize: number
  /** ciphertext bytes the provider holds */
  size: number
  root: string
  provider: string
  addrs: string[]
  account: string
  channel: string
  start: number
  period: number
  periods: number
  price: bigint
  retrieval: bigint
  allowedMisses: number
  paidPeriods: number
  proofs: number
  misses: number
  /** what this file's channel has paid: periods and retrievals */
  spent: bigint
  status: FileStatus
  lastProof?: number
  lastError?: string
  created: number
}

export interface PutOptions {
  source: AsyncIterable<Uint8Array>
  name: string
  /** plaintext bytes the source yields */
  size: number
  /** provider multiaddrs, each ending in /p2p/<peer id> (tried in order) */
  addrs: string[]
  /** seconds */
  duration: number
  /** highest price accepted, base units per GiB per 30 days */
  maxPrice: bigint
  onProgress?: (plainBytes: number) => void
  signal?: AbortSignal
}

export interface ProveResult {
  ok: boolean
  /** the period paid after this proof, if one was due */
  paidPeriod?: number
  amount?: bigint
  error?: string
}

export interface ClientInit {
  dbPath: string
  masterKey: Uint8Array
  p2p: Pick<Libp2p, 'dialProtocol'>
  payments: ServicePayments
  logger: Logger
  now?: () => number
}

interface FileRow {
  id: string
  file_id: Uint8Array
  name: string
  plain_size: number
  size: number
  root: string
  provider: string
  addrs: string
  account: string
  channel: string
  start: number
  period: number
  periods: number
  price: string
  retrieval: string
  allowed_misses: number
  paid_periods: number
  proofs: number
  misses: number
  spent: string
  status: FileStatus
  pending_period: number | null
  pending_before: string | null
  last_proof: number | null
  last_error: string | null
  last_miss_period: number | null
  created: number
}

const PEER_OF = /\/p2p\/([1-9A-HJ-NP-Za-km-z]+)$/

/**
 * The requester side of storage: encrypts and uploads (keeping only root, key and contract),
 * challenges contracts and pays one period per valid proof, retrieves chunk by chunk paying for
 * each verified chunk, and cancels. Every payment on a file's channel is serialised, and a period
 * payment is recorded as pending before its voucher is made, so a crash or a lost answer re-sends
 * the same voucher and never pays a period twice.
 */
export class StorageClient {
  private readonly db: DatabaseSync
  private readonly now: () => number
  private readonly locks = new Map<string, Promise<unknown>>()
  private timer: NodeJS.Timeout | undefined

  constructor (private readonly init: ClientInit) {
    this.now = init.now ?? Date.now
    this.db = new DatabaseSync(init.dbPath)
    this.db.exec(`
      PRAGMA journal_mode = WAL;
      PRAGMA synchronous = FULL;
      PRAGMA busy_timeout = 10000;
      CREATE TABLE IF NOT EXISTS files (
        id TEXT PRIMARY KEY, file_id BLOB NOT NULL, name TEXT NOT NULL, plain_size INTEGER NOT NULL, size INTEGER NOT NULL,
        root TEXT NOT NULL, provider TEXT NOT NULL, addrs TEXT NOT NULL, account TEXT NOT NULL, channel TEXT NOT NULL,
        start INTEGER NOT NULL, period INTEGER NOT NULL, periods INTEGER NOT NULL, price TEXT NOT NULL, retrieval TEXT NOT NULL,
        allowed_misses INTEGER NOT NULL, paid_periods INTEGER NOT NULL DEFAULT 0, proofs INTEGER NOT NULL DEFAULT 0,
        misses INTEGER NOT NULL DEFAULT 0, spent TEXT NOT NULL DEFAULT '0', status TEXT NOT NULL,
        pending_period INTEGER, pending_before TEXT, last_proof INTEGER, last_error TEXT, last_miss_period INTEGER,
        created INTEGER NOT NULL
      );
    `)
  }

  close (): void {
    this.stopSchedule()
    this.db.close()
  }

  /**
   * Challenge every active contract when its next period falls due: sleeps until the earliest due
   * time (at least `minMs`, at most a minute, so new contracts and retries are picked up).
   */
  startSchedule (minMs = 250): void {
    let stopped = false
    let running = false
    const loop = (): void => {
      if (stopped || running) return
      running = true
      clearTimeout(this.timer)
      this.tick().catch(err => { this.init.logger.warn({ err }, 'storage proof round failed') }).finally(() => {
        running = false
        if (stopped) return
        clearTimeout(this.timer)
        this.timer = setTimeout(loop, Math.min(60_000, Math.max(minMs, this.nextDue() - this.now())))
        this.timer.unref()
      })
    }
    this.stopSchedule = () => { stopped = true; clearTimeout(this.timer) }
    // a new contract may fall due before the current sleep ends
    this.reschedule = () => {
      if (stopped || running) return
      clearTimeout(this.timer)
      this.timer = setTimeout(loop, Math.min(60_000, Math.max(minMs, this.nextDue() - this.now())))
      this.timer.unref()
    }
    loop()
  }

  private stopSchedule: () => void = () => {}
  private reschedule: () => void = () => {}

  /** When the earliest active contract's next period falls due (ms), or a minute from now. */
  private nextDue (): number {
    let next = this.now() + 60_000
    for (const f of this.list()) {
      if (f.status !== 'active' || f.paidPeriods >= f.periods) continue
      // a contract that missed stays due: retry it after a few seconds, not in a tight loop
      const due = (f.start + (f.paidPeriods + 1) * f.period) * 1000
      next = Math.min(next, due <= this.now() ? this.now() + Math.min(5000, f.period * 1000) : due)
    }
    return next
  }

  /** One round of scheduled proofs: each active contract with a period due is challenged once. */
  async tick (): Promise<void> {
    const nowS = this.now() / 1000
    for (const f of this.list()) {
      if (f.status !== 'active') continue
      if (f.paidPeriods >= f.periods) continue
      if (nowS < f.start + (f.paidPeriods + 1) * f.period) continue
      const r = await this.prove(f.id).catch((err: unknown) => ({ ok: false, error: (err as Error).message }))
      if (!r.ok) this.init.logger.warn({ file: f.id, error: r.error }, 'storage proof failed')
    }
  }

  list (): StoredFile[] {
    return (this.db.prepare('SELECT * FROM files ORDER BY created').all() as unknown as FileRow[]).map(r => toFile(r))
  }

  get (id: string): StoredFile {
    return toFile(this.row(id))
  }

  private row (id: string): FileRow {
    const row = this.db.prepare('SELECT * FROM files WHERE id = ?').get(id) as FileRow | undefined
    if (row === undefined) throw new StorageError('STORAGE_UNKNOWN_FILE', `no stored file ${id} (see \`btt-node storage list\`)`)
    return row
  }

  /** Ask a provider for its terms. */
  async quote (addr: string, signal?: AbortSignal): Promise<Terms> {
    const io = await this.dial(addr, signal)
    try {
      await io.sendJson({ t: 'quote' })
      const terms = await this.expect(io, 'terms')
      return terms
    } finally {
      await io.stream.close().catch(() => {})
    }
  }

  async put (opts: PutOptions): Promise<StoredFile> {
    const size = ciphertextSize(opts.size)
    let terms: Terms | undefined
    let addr: string | undefined
    let lastErr: unknown
    for (const a of opts.addrs) {
      try {
        terms = await this.quote(a, opts.signal)
        addr = a
        break
      } catch (err) {
        if (err instanceof StorageError && err.code !== 'STORAGE_TIMEOUT') throw err
        lastErr = err
      }
    }
    if (terms === undefined || addr === undefined) throw new StorageError('STORAGE_UNREACHABLE', `cannot reach the provider: ${(lastErr as Error | undefined)?.message ?? 'no address'}`)
    const provider = (PEER_OF.exec(addr) as RegExpExecArray)[1] as string
    let io: Framed | undefined
    try {
      const payments = this.init.payments
      if (terms.ledger !== payments.ledgerId) throw new StorageError('STORAGE_WRONG_LEDGER', `the provider settles on ledger ${terms.ledger}, this node on ${payments.ledgerId}`)
      if (terms.price > opts.maxPrice) throw new StorageError('STORAGE_PRICE_TOO_HIGH', `the provider asks ${terms.price} base units per GiB·month, above --max-price ${opts.maxPrice}`)
      if (size > terms.max_size) throw new StorageError('STORAGE_TOO_LARGE', `the provider takes files up to ${terms.max_size} bytes; this one is ${size} encrypted`)
      if (size > terms.free) throw new StorageError('STORAGE_OVER_QUOTA', `over quota: the provider has ${terms.free} bytes free; this file needs ${size} encrypted`)
      if (opts.duration < terms.min_duration || opts.duration > terms.max_duration) throw new StorageError('STORAGE_BAD_TERMS', `the provider stores for ${terms.min_duration}–${terms.max_duration} s; asked for ${opts.duration}`)
      const periods = periodsOf(opts.duration, terms.period)
      const perPeriod = periodAmount(terms.price, size, terms.period)
      const deposit = perPeriod * BigInt(periods) + BigInt(RETRIEVALS_IN_DEPOSIT) * retrievalCost(terms.retrieval, size)
      const expiresAt = this.now() + (periods + 2) * terms.period * 1000 + CHANNEL_MARGIN_MS
      const balance = await payments.balance()
      if (balance < deposit) throw new StorageError('STORAGE_FUNDS', `the contract needs a channel of ${deposit} base units (${periods} periods + ${RETRIEVALS_IN_DEPOSIT} retrievals); the wallet holds ${balance}`)
      const channel = await payments.openChannel(terms.account, deposit, expiresAt)

      io = await this.dial(addr, opts.signal)
      await io.sendJson({ t: 'put', size, duration: opts.duration, period: terms.period, price: terms.price, retrieval: terms.retrieval, allowed_misses: terms.allowed_misses, channel: channel.id })
      await this.expect(io, 'ready')
      const fileId = newFileId()
      const enc = new Encryptor(fileKey(this.init.masterKey, fileId), { name: opts.name, size: opts.size })
      const builder = new ParallelTreeBuilder(size)
      const out = io
      const timing = { source: 0, encrypt: 0, hash: 0, send: 0 }
      const send = async (pieces: Uint8Array[]): Promise<void> => {
        for (const p of pieces) {
          let t = performance.now()
          await builder.push(p)
          timing.hash += performance.now() - t
          t = performance.now()
          await out.send(FRAME_DATA, p)
          timing.send += performance.now() - t
        }
      }
      let plain = 0
      const tStart = performance.now()
      let tSrc = performance.now()
      for await (const chunk of opts.source) {
        timing.source += performance.now() - tSrc
        opts.signal?.throwIfAborted()
        plain += chunk.byteLength
        const t = performance.now()
        const pieces = enc.push(chunk)
        timing.encrypt += performance.now() - t
        await send(pieces)
        opts.onProgress?.(plain)
        tSrc = performance.now()
      }
      await send(enc.final())
      this.init.logger.debug({ totalMs: Math.round(performance.now() - tStart), sourceMs: Math.round(timing.source), encryptMs: Math.round(timing.encrypt), hashMs: Math.round(timing.hash), sendMs: Math.round(timing.send) }, 'put timing')
      const tree = await builder.finish()
      const root = toHex(tree.root)
      await io.sendJson({ t: 'commit', root })
      const { contract } = await this.expect(io, 'stored', 600_000)
      checkContract(contract, { root, size, period: terms.period, periods, price: terms.price, retrieval: terms.retrieval, channel: channel.id })
      this.db.prepare(`INSERT INTO files (id, file_id, name, plain_size, size, root, provider, addrs, account, channel, start, period, periods, price, retrieval, allowed_misses, status, created)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'active', ?)`).run(
        contract.id, fileId, opts.name, opts.size, size, root, provider, JSON.stringify(opts.addrs), terms.account, channel.id,
        contract.start, contract.period, contract.periods, contract.price.toString(), contract.retrieval.toString(), contract.allowed_misses, this.now())
      this.init.logger.info({ file: contract.id, name: opts.name, size: opts.size, provider }, 'file stored')
      this.reschedule()
      return this.get(contract.id)
    } finally {
      await io?.stream.close().catch(() => {})
    }
  }

  /** Challenge the provider now; if the proof is valid and a period is due, pay it. */
  async prove (id: string): Promise<ProveResult> {
    return await this.locked(id, async () => {
      const f = this.row(id)
      if (f.status !== 'active') throw new StorageError('STORAGE_CONTRACT_ENDED', `file ${id} is ${f.status}`)
      let io: Framed
      try {
        io = await this.dialFile(f)
      } catch (err) {
        return this.miss(f, `provider unreachable: ${(err as Error).message}`)
      }
      try {
        const nonce = randomBytes(32)
        await io.sendJson({ t: 'challenge', contract: f.id, nonce: nonce.toString('hex') })
        let head: ProviderMessage
        try {
          head = await this.readMessage(io)
        } catch (err) {
          return this.miss(f, (err as Error).message)
        }
        if (head.t === 'error') {
          if (head.code === 'STORAGE_UNKNOWN_CONTRACT' || head.code === 'STORAGE_CONTRACT_ENDED') {
            this.db.prepare("UPDATE files SET status = 'lost', last_error = ? WHERE id = ?").run(`${head.code}: ${head.message}`, f.id)
          }
          return this.miss(f, `${head.code}: ${head.message}`)
        }
        if (head.t !== 'proof') return this.miss(f, `expected a proof, got ${head.t}`)
        const frame = await io.read()
        if (frame?.type !== FRAME_PROOF) return this.miss(f, 'no proof frame')
        const n = Math.ceil(f.size / SEGMENT_BYTES)
        const rootBytes = Buffer.from(f.root, 'hex')
        const indices = challengeIndices(nonce, rootBytes, n, CHALLENGE_SEGMENTS)
        let ok = false
        try {
          ok = verifyProof(rootBytes, f.size, indices, decodeProof(frame.payload, { n, k: CHALLENGE_SEGMENTS }))
        } catch (err) {
          return this.miss(f, `malformed proof: ${(err as Error).message}`)
        }
        if (!ok) {
          await io.sendJson({ t: 'done' }).catch(() => {})
          // evidence, not a network hiccup: every failed proof counts, retries included
          return this.miss(f, 'the proof does not match the root: the provider does not hold the data', true)
        }
        this.db.prepare('UPDATE files SET proofs = proofs + 1, last_proof = ?, last_error = NULL WHERE id = ?').run(this.now(), f.id)
        const nowS = this.now() / 1000
        const due = f.paid_periods < f.periods && nowS >= f.start + (f.paid_periods + 1) * f.period
        if (!due) {
          await io.sendJson({ t: 'done' })
          return { ok: true }
        }
        return await this.payPeriod(f, io)
      } finally {
        await io.stream.close().catch(() => {})
      }
    })
  }

  private async payPeriod (f: FileRow, io: Framed): Promise<ProveResult> {
    const payments = this.init.payments
    const period = f.paid_periods
    const amount = periodAmount(BigInt(f.price), f.size, f.period)
    const ch = payments.outgoing(f.channel)
    if (ch === undefined) throw new StorageError('STORAGE_NO_CHANNEL', `channel ${f.channel} of file ${f.id} is not in this wallet`)
    let voucher: Uint8Array
    if (f.pending_period === period && f.pending_before !== null) {
      // an earlier attempt: re-send its voucher if it was made, never make a second one
      const before = BigInt(f.pending_before)
      if (ch.spent === before) voucher = await payments.pay(f.channel, amount)
      else if (ch.spent === before + amount) voucher = await payments.latestVoucher(f.channel)
      else throw new StorageError('STORAGE_CHANNEL_STATE', `channel ${f.channel} spent ${ch.spent}, expected ${before} or ${before + amount}`)
    } else {
      this.db.prepare('UPDATE files SET pending_period = ?, pending_before = ? WHERE id = ?').run(period, ch.spent.toString(), f.id)
      voucher = await payments.pay(f.channel, amount)
    }
    await io.sendJson({ t: 'pay', contract: f.id, period, voucher: Buffer.from(voucher).toString('hex') })
    const res = await this.readMessage(io)
    if (res.t === 'paid' || (res.t === 'error' && res.code === 'STORAGE_ALREADY_PAID' && (res.paid_periods ?? 0) > period)) {
      const paidPeriods = res.t === 'paid' ? res.paid_periods : res.paid_periods as number
      const status: FileStatus = paidPeriods >= f.periods ? 'complete' : 'active'
      // misses are never forgiven: a provider that failed a proof stays counted even if a retry passes
      this.db.prepare('UPDATE files SET paid_periods = ?, spent = ?, pending_period = NULL, pending_before = NULL, status = ? WHERE id = ?')
        .run(paidPeriods, (BigInt(f.spent) + amount).toString(), status, f.id)
      return { ok: true, paidPeriod: period, amount }
    }
    raiseIfError(res)
    throw new StorageError('STORAGE_PROTOCOL', `expected paid, got ${res.t}`)
  }

  /**
   * Record a missed or failed proof, at most one per period (retries within a period do not add
   * up); the contract fails after more than its allowed misses.
   */
  private miss (f: FileRow, error: string, failedProof = false): ProveResult {
    const period = Math.floor((this.now() / 1000 - f.start) / f.period)
    const cur = this.row(f.id)
    if (cur.last_miss_period === period && !failedProof) {
      this.db.prepare('UPDATE files SET last_error = ? WHERE id = ?').run(error, f.id)
      return { ok: false, error }
    }
    const misses = cur.misses + 1
    const status = cur.status === 'active' && misses > cur.allowed_misses ? 'failed' : cur.status
    this.db.prepare('UPDATE files SET misses = ?, last_error = ?, status = ?, last_miss_period = ? WHERE id = ?').run(misses, error, status, period, f.id)
    return { ok: false, error }
  }

  /**
   * Retrieve and decrypt a file: chunk by chunk, each verified against the root before it is paid
   * for and before its plaintext is written. A chunk that does not match is refused (not paid) and
   * the retrieval stops with STORAGE_TAMPERED.
   */
  async retrieve (id: string, write: (plain: Uint8Array) => Promise<void>, opts: { onProgress?: (cipherBytes: number) => void, signal?: AbortSignal } = {}): Promise<{ name: string, size: number, paid: bigint }> {
    return await this.locked(id, async () => {
      const f = this.row(id)
      if (f.status !== 'active' && f.status !== 'complete') throw new StorageError('STORAGE_CONTRACT_ENDED', `file ${id} is ${f.status}`)
      const io = await this.dialFile(f)
      const dec = new Decryptor(fileKey(this.init.masterKey, f.file_id))
      const rootBytes = Buffer.from(f.root, 'hex')
      const chunks = Math.ceil(f.size / CHUNK_BYTES)
      const retrieval = BigInt(f.retrieval)
      let paid = 0n
      let received = 0
      try {
        await io.sendJson({ t: 'retrieve', contract: f.id, from: 0 })
        const tm = { read: 0, hash: 0, verify: 0, pay: 0, decrypt: 0, write: 0 }
        const t0 = performance.now()
        for (let i = 0; i < chunks; i++) {
          opts.signal?.throwIfAborted()
          const head = await this.readMessage(io)
          raiseIfError(head)
          if (head.t !== 'chunk' || head.index !== i) throw new StorageError('STORAGE_PROTOCOL', `expected chunk ${i}`)
          const length = Math.min(CHUNK_BYTES, f.size - i * CHUNK_BYTES)
          const price = chunkAmount(retrieval, length)
          if (head.length !== length) throw new StorageError('STORAGE_PROTOCOL', `chunk ${i} should be ${length} bytes, not ${head.length}`)
          if (head.price !== price) throw new StorageError('STORAGE_BAD_PRICE', `chunk ${i} costs ${price} under the contract, the provider asks ${head.price}`)
          const buf = Buffer.allocUnsafe(length)
          const sectorNodes = head.sectors.map(h => Buffer.from(h, 'hex'))
          const tampered = async (why: string): Promise<never> => {
            const msg = `chunk ${i} does not match the file's Merkle root: refused and not paid (the provider sent tampered data: ${why})`
            this.db.prepare('UPDATE files SET last_error = ? WHERE id = ?').run(msg, f.id)
            await io.sendJson({ t: 'done' }).catch(() => {})
            throw new StorageError('STORAGE_TAMPERED', msg)
          }
          // the chunk's sector nodes must lead to the root before any byte is trusted
          if (!verifyChunkSectors(rootBytes, f.size, i, sectorNodes, head.path.map(h => Buffer.from(h, 'hex')))) await tampered('its sector hashes do not lead to the root')
          // the bytes: decrypting authenticates every complete secretstream message (Poly1305); the
          // tail of a message that goes on in the next chunk is checked against its sectors' hashes
          const plains: Uint8Array[] = []
          let got = 0
          while (got < length) {
            let t = performance.now()
            const frame = await withTimeout(io.read(), READ_TIMEOUT_MS)
            tm.read += performance.now() - t
            t = performance.now()
            if (frame === undefined || frame.type !== FRAME_DATA) throw new StorageError('STORAGE_PROTOCOL', `chunk ${i} ended early`)
            if (got + frame.payload.byteLength > length || frame.payload.byteLength > MAX_DATA_FRAME) throw new StorageError('STORAGE_PROTOCOL', `chunk ${i} is longer than ${length} bytes`)
            buf.set(frame.payload, got)
            got += frame.payload.byteLength
            try {
              for (const p of dec.push(frame.payload)) plains.push(p)
            } catch (err) {
              await tampered((err as Error).message)
            }
            tm.decrypt += performance.now() - t
          }
          const tv0 = performance.now()
          const unauthenticated = dec.pending
          for (let s = Math.floor((length - unauthenticated) / SECTOR_BYTES); s * SECTOR_BYTES < length && unauthenticated > 0; s++) {
            const node = sectorNode(buf.subarray(s * SECTOR_BYTES, Math.min(length, (s + 1) * SECTOR_BYTES)), f.size)
            if (!node.every((b, j) => b === (sectorNodes[s] as Uint8Array)[j])) await tampered(`sector ${s} does not match its hash`)
          }
          tm.verify += performance.now() - tv0
          let tv = performance.now()
          const voucher = await this.init.payments.pay(f.channel, price)
          paid += price
          this.db.prepare('UPDATE files SET spent = ? WHERE id = ?').run((BigInt(this.row(id).spent) + price).toString(), f.id)
          await io.sendJson({ t: 'pay', contract: f.id, period: i, voucher: Buffer.from(voucher).toString('hex') })
          tm.pay += performance.now() - tv
          tv = performance.now()
          for (const p of plains) await write(p)
          tm.write += performance.now() - tv
          received += length
          opts.onProgress?.(received)
        }
        const end = await this.readMessage(io)
        raiseIfError(end)
        this.init.logger.debug({ totalMs: Math.round(performance.now() - t0), ...Object.fromEntries(Object.entries(tm).map(([k, v]) => [k, Math.round(v)])) }, 'retrieve timing')
        dec.final()
        const meta = dec.meta
        return { name: meta?.name ?? f.name, size: meta?.size ?? f.plain_size, paid }
      } finally {
        await io.stream.close().catch(() => {})
      }
    })
  }

  /**
   * Raw stream throughput to a file's provider, both ways, without encryption, hashing or payment:
   * the ceiling that uploads and retrievals are measured against.
   */
  async speedtest (id: string, bytes: number): Promise<{ upMBps: number, downMBps: number }> {
    const f = this.row(id)
    const up = await this.dialFile(f)
    let upMs: number
    try {
      const t0 = performance.now()
      await up.sendJson({ t: 'speedtest', direction: 'up', bytes })
      await up.sendRaw(bytes)
      const r = await this.readMessage(up, 300_000)
      raiseIfError(r)
      upMs = performance.now() - t0
    } finally {
      await up.stream.close().catch(() => {})
    }
    const down = await this.dialFile(f)
    let downMs: number
    try {
      const t0 = performance.now()
      await down.sendJson({ t: 'speedtest', direction: 'down', bytes })
      await down.discardRaw(bytes)
      const r = await this.readMessage(down, 300_000)
      raiseIfError(r)
      downMs = performance.now() - t0
    } finally {
      await down.stream.close().catch(() => {})
    }
    return { upMBps: bytes / 1e6 / (upMs / 1000), downMBps: bytes / 1e6 / (downMs / 1000) }
  }

  /** Tell the provider to delete the data; no further periods are paid. */
  async cancel (id: string): Promise<StoredFile> {
    return await this.locked(id, async () => {
      const f = this.row(id)
      if (f.status === 'cancelled') return toFile(f)
      const io = await this.dialFile(f)
      try {
        await io.sendJson({ t: 'cancel', contract: f.id })
        const res = await this.readMessage(io)
        if (res.t === 'error' && res.code !== 'STORAGE_CONTRACT_ENDED' && res.code !== 'STORAGE_UNKNOWN_CONTRACT') raiseIfError(res)
        this.db.prepare("UPDATE files SET status = 'cancelled' WHERE id = ?").run(f.id)
        return this.get(f.id)
      } finally {
        await io.stream.close().catch(() => {})
      }
    })
  }

  private async locked<T> (id: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(id) ?? Promise.resolve()
    const run = prev.then(fn, fn)
    const tail = run.catch(() => {})
    this.locks.set(id, tail)
    try {
      return await run
    } finally {
      if (this.locks.get(id) === tail) this.locks.delete(id)
    }
  }

  private async dialFile (f: FileRow): Promise<Framed> {
    let lastErr: unknown
    for (const a of JSON.parse(f.addrs) as string[]) {
      try {
        return await this.dial(a)
      } catch (err) {
        lastErr = err
      }
    }
    throw new StorageError('STORAGE_UNREACHABLE', `cannot reach provider ${f.provider}: ${(lastErr as Error | undefined)?.message ?? 'no address'}`)
  }

  private async dial (addr: string, signal?: AbortSignal): Promise<Framed> {
    if (!PEER_OF.test(addr)) throw new StorageError('STORAGE_BAD_PROVIDER', `provider address ${addr} must end in /p2p/<peer id>`)
    let ma
    try {
      ma = multiaddr(addr)
    } catch (err) {
      throw new StorageError('STORAGE_BAD_PROVIDER', `provider address ${addr}: ${(err as Error).message}`)
    }
    const timeout = AbortSignal.timeout(DIAL_TIMEOUT_MS)
    const stream: Stream = await this.init.p2p.dialProtocol(ma, STORAGE_PROTOCOL, { signal: signal !== undefined ? AbortSignal.any([signal, timeout]) : timeout })
    return new Framed(stream)
  }

  private async readMessage (io: Framed, timeoutMs = READ_TIMEOUT_MS): Promise<ProviderMessage> {
    return parseMessage(zProviderMessage, await withTimeout(io.readJson(), timeoutMs))
  }

  private async expect<K extends ProviderMessage['t']> (io: Framed, t: K, timeoutMs = READ_TIMEOUT_MS): Promise<Extract<ProviderMessage, { t: K }>> {
    const msg = await this.readMessage(io, timeoutMs)
    raiseIfError(msg)
    if (msg.t !== t) throw new StorageError('STORAGE_PROTOCOL', `expected ${t}, got ${msg.t}`)
    return msg as Extract<ProviderMessage, { t: K }>
  }
}

/** What retrieving the whole file once costs, chunk by chunk. */
export function retrievalCost (retrieval: bigint, size: number): bigint {
  const full = Math.floor(size / CHUNK_BYTES)
  const rest = size - full * CHUNK_BYTES
  return BigInt(full) * chunkAmount(retrieval, CHUNK_BYTES) + (rest > 0 ? chunkAmount(retrieval, rest) : 0n)
}

function checkContract (c: ContractJson, want: { root: string, size: number, period: number, periods: number, price: bigint, retrieval: bigint, channel: string }): void {
  for (const k of ['root', 'size', 'period', 'periods', 'price', 'retrieval', 'channel'] as const) {
    if (c[k] !== want[k]) throw new StorageError('STORAGE_BAD_CONTRACT', `the provider's contract has ${k} = ${String(c[k])}, expected ${String(want[k])}`)
  }
}

function toFile (r: FileRow): StoredFile {
  return {
    id: r.id,
    name: r.name,
    plainSize: r.plain_size,
    size: r.size,
    root: r.root,
    provider: r.provider,
    addrs: JSON.parse(r.addrs) as string[],
    account: r.account,
    channel: r.channel,
    start: r.start,
    period: r.period,
    periods: r.periods,
    price: BigInt(r.price),
    retrieval: BigInt(r.retrieval),
    allowedMisses: r.allowed_misses,
    paidPeriods: r.paid_periods,
    proofs: r.proofs,
    misses: r.misses,
    spent: BigInt(r.spent),
    status: r.status,
    ...(r.last_proof !== null ? { lastProof: r.last_proof } : {}),
    ...(r.last_error !== null ? { lastError: r.last_error } : {}),
    created: r.created
  }
}

async function withTimeout<T> (p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([p, new Promise<never>((_resolve, reject) => { timer = setTimeout(() => { reject(new StorageError('STORAGE_TIMEOUT', `the provider did not answer within ${ms / 1000} s`)) }, ms) })])
  } finally {
    clearTimeout(timer)
  }
}
