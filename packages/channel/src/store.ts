import { DatabaseSync, type SQLInputValue } from 'node:sqlite'
import type { LedgerChannelStatus } from './ledger-api.js'
import type { IncomingChannel } from './state.js'
import { amountFromBytes, amountToBytes } from './voucher.js'

/** The payer's record of one outgoing channel. `spent` is the highest amount it has signed. */
export interface OutgoingChannel {
  id: string
  ledgerId: string
  payer: string
  payee: string
  deposit: bigint
  expiresAt: number
  status: LedgerChannelStatus
  spent: bigint
}

/**
 * Durable channel state. `update*` runs `fn` on the durable current record (undefined when new)
 * inside a transaction; `fn` returns the next record and a result, or throws to change nothing.
 * The promise resolves only after the new record is durable: a voucher is persisted before the
 * service it pays for is acknowledged.
 */
export interface ChannelStore {
  getIncoming(id: string): IncomingChannel | undefined
  listIncoming(): IncomingChannel[]
  updateIncoming<T>(id: string, fn: (current: IncomingChannel | undefined) => { state: IncomingChannel, result: T }): Promise<T>
  getOutgoing(id: string): OutgoingChannel | undefined
  listOutgoing(): OutgoingChannel[]
  updateOutgoing<T>(id: string, fn: (current: OutgoingChannel | undefined) => { state: OutgoingChannel, result: T }): Promise<T>
  close(): void
}

interface Op {
  run: () => unknown
  resolve: (v: unknown) => void
  reject: (e: unknown) => void
}

/**
 * ChannelStore on node:sqlite: WAL, synchronous=FULL (a commit is on disk when it returns).
 * Updates made in the same event-loop turn share one transaction and one fsync (group commit);
 * each caller is answered after that COMMIT. `BEGIN IMMEDIATE` serialises writers across processes.
 */
export class SqliteChannelStore implements ChannelStore {
  private readonly db: DatabaseSync
  private queue: Op[] = []
  private scheduled = false

  constructor (path: string) {
    this.db = new DatabaseSync(path)
    this.db.exec(`
      PRAGMA journal_mode = WAL;
      PRAGMA synchronous = FULL;
      PRAGMA busy_timeout = 10000;
      CREATE TABLE IF NOT EXISTS incoming (
        id TEXT PRIMARY KEY, ledger_id TEXT NOT NULL, payer TEXT NOT NULL, payee TEXT NOT NULL,
        deposit BLOB NOT NULL, claimed BLOB NOT NULL, expires_at INTEGER NOT NULL, status TEXT NOT NULL,
        challenge_ends_at INTEGER, highest BLOB NOT NULL, voucher BLOB
      ) STRICT;
      CREATE TABLE IF NOT EXISTS outgoing (
        id TEXT PRIMARY KEY, ledger_id TEXT NOT NULL, payer TEXT NOT NULL, payee TEXT NOT NULL,
        deposit BLOB NOT NULL, expires_at INTEGER NOT NULL, status TEXT NOT NULL, spent BLOB NOT NULL
      ) STRICT;
    `)
  }

  getIncoming (id: string): IncomingChannel | undefined {
    const row = this.db.prepare('SELECT * FROM incoming WHERE id = ?').get(id)
    return row === undefined ? undefined : incomingFromRow(row)
  }

  listIncoming (): IncomingChannel[] {
    return this.db.prepare('SELECT * FROM incoming ORDER BY id').all().map(incomingFromRow)
  }

  async updateIncoming<T> (id: string, fn: (current: IncomingChannel | undefined) => { state: IncomingChannel, result: T }): Promise<T> {
    return await this.enqueue(() => {
      const { state, result } = fn(this.getIncoming(id))
      if (state.id !== id) throw new Error('a channel record cannot change its id')
      this.db.prepare(`INSERT OR REPLACE INTO incoming (id, ledger_id, payer, payee, deposit, claimed, expires_at, status, challenge_ends_at, highest, voucher)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`).run(...incomingToRow(state))
      return result
    })
  }

  getOutgoing (id: string): OutgoingChannel | undefined {
    const row = this.db.prepare('SELECT * FROM outgoing WHERE id = ?').get(id)
    return row === undefined ? undefined : outgoingFromRow(row)
  }

  listOutgoing (): OutgoingChannel[] {
    return this.db.prepare('SELECT * FROM outgoing ORDER BY id').all().map(outgoingFromRow)
  }

  async updateOutgoing<T> (id: string, fn: (current: OutgoingChannel | undefined) => { state: OutgoingChannel, result: T }): Promise<T> {
    return await this.enqueue(() => {
      const { state, result } = fn(this.getOutgoing(id))
      if (state.id !== id) throw new Error('a channel record cannot change its id')
      this.db.prepare(`INSERT OR REPLACE INTO outgoing (id, ledger_id, payer, payee, deposit, expires_at, status, spent)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?)`).run(state.id, state.ledgerId, state.payer, state.payee, amountToBytes(state.deposit), state.expiresAt, state.status, amountToBytes(state.spent))
      return result
    })
  }

  /** `PRAGMA integrity_check`: 'ok' when the database is sound. */
  integrityCheck (): string {
    return String((this.db.prepare('PRAGMA integrity_check').get() as { integrity_check: string }).integrity_check)
  }

  close (): void {
    if (this.queue.length > 0) this.flush()
    this.db.close()
  }

  private async enqueue<T> (run: () => T): Promise<T> {
    return await new Promise<T>((resolve, reject) => {
      this.queue.push({ run, resolve: resolve as (v: unknown) => void, reject })
      if (!this.scheduled) {
        this.scheduled = true
        setImmediate(() => { this.flush() })
      }
    })
  }

  private flush (): void {
    this.scheduled = false
    const ops = this.queue
    this.queue = []
    if (ops.length === 0) return
    const outcomes: Array<{ ok: true, value: unknown } | { ok: false, error: unknown }> = []
    try {
      this.db.exec('BEGIN IMMEDIATE')
      for (const op of ops) {
        // each op in a savepoint: one that throws leaves no trace, the others still commit
        this.db.exec('SAVEPOINT op')
        try {
          outcomes.push({ ok: true, value: op.run() })
          this.db.exec('RELEASE op')
        } catch (error) {
          this.db.exec('ROLLBACK TO op')
          this.db.exec('RELEASE op')
          outcomes.push({ ok: false, error })
        }
      }
      this.db.exec('COMMIT')
    } catch (error) {
      if (this.db.isTransaction) this.db.exec('ROLLBACK')
      for (const op of ops) op.reject(error)
      return
    }
    ops.forEach((op, i) => {
      const o = outcomes[i] as { ok: boolean, value?: unknown, error?: unknown }
      if (o.ok) op.resolve(o.value)
      else op.reject(o.error)
    })
  }
}

/** ChannelStore in memory, for unit tests of one module. Same contract, no durability. */
export class MemoryChannelStore implements ChannelStore {
  private readonly incoming = new Map<string, IncomingChannel>()
  private readonly outgoing = new Map<string, OutgoingChannel>()

  getIncoming (id: string): IncomingChannel | undefined {
    const c = this.incoming.get(id)
    return c === undefined ? undefined : { ...c }
  }

  listIncoming (): IncomingChannel[] {
    return [...this.incoming.keys()].sort().map(id => this.getIncoming(id) as IncomingChannel)
  }

  async updateIncoming<T> (id: string, fn: (current: IncomingChannel | undefined) => { state: IncomingChannel, result: T }): Promise<T> {
    await Promise.resolve()
    const { state, result } = fn(this.getIncoming(id))
    this.incoming.set(id, { ...state })
    return result
  }

  getOutgoing (id: string): OutgoingChannel | undefined {
    const c = this.outgoing.get(id)
    return c === undefined ? undefined : { ...c }
  }

  listOutgoing (): OutgoingChannel[] {
    return [...this.outgoing.keys()].sort().map(id => this.getOutgoing(id) as OutgoingChannel)
  }

  async updateOutgoing<T> (id: string, fn: (current: OutgoingChannel | undefined) => { state: OutgoingChannel, result: T }): Promise<T> {
    await Promise.resolve()
    const { state, result } = fn(this.getOutgoing(id))
    this.outgoing.set(id, { ...state })
    return result
  }

  close (): void {}
}

type Row = Record<string, unknown>

function incomingToRow (s: IncomingChannel): SQLInputValue[] {
  return [s.id, s.ledgerId, s.payer, s.payee, amountToBytes(s.deposit), amountToBytes(s.claimed), s.expiresAt, s.status, s.challengeEndsAt, amountToBytes(s.highest), s.voucher]
}

function incomingFromRow (r: Row): IncomingChannel {
  return {
    id: r.id as string,
    ledgerId: r.ledger_id as string,
    payer: r.payer as string,
    payee: r.payee as string,
    deposit: amountFromBytes(r.deposit as Uint8Array),
    claimed: amountFromBytes(r.claimed as Uint8Array),
    expiresAt: Number(r.expires_at),
    status: r.status as LedgerChannelStatus,
    challengeEndsAt: r.challenge_ends_at === null ? null : Number(r.challenge_ends_at),
    highest: amountFromBytes(r.highest as Uint8Array),
    voucher: r.voucher === null ? null : Buffer.from(r.voucher as Uint8Array)
  }
}

function outgoingFromRow (r: Row): OutgoingChannel {
  return {
    id: r.id as string,
    ledgerId: r.ledger_id as string,
    payer: r.payer as string,
    payee: r.payee as string,
    deposit: amountFromBytes(r.deposit as Uint8Array),
    expiresAt: Number(r.expires_at),
    status: r.status as LedgerChannelStatus,
    spent: amountFromBytes(r.spent as Uint8Array)
  }
}
