import { DatabaseSync, type StatementSync } from 'node:sqlite'
import { amountFromBytes, amountToBytes, randomBytes, type LedgerChannelStatus } from '@btt/channel'
import { LedgerBusyError, LedgerClosedError } from './errors.js'

/** One channel as stored. Keys and ids are lower-case hex; amounts bigint base units; times unix ms. */
export interface ChannelRow {
  id: string
  payer: string
  payee: string
  nonce: string
  deposit: bigint
  claimed: bigint
  expiresAt: number
  status: LedgerChannelStatus
  challengeEndsAt: number | null
  createdAt: number
}

/** What `batch` reports for each job. */
export type JobResult = { ok: true, value: unknown } | { ok: false, error: unknown }

/** A unit of work in a batch: `guard` (if any) is kept even when `op` fails; `op` is skipped when `guard` fails. */
export interface BatchJob {
  guard?: () => void
  op: () => unknown
}

const SCHEMA_VERSION = 1

/**
 * Amounts are 16-byte big-endian BLOBs (amountToBytes): SQLite's int64 would overflow at ~9.22 BTT.
 * Keys and ids are lower-case hex TEXT, the form the API uses.
 */
const SCHEMA = `
  CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL
  ) STRICT;
  CREATE TABLE IF NOT EXISTS accounts (
    pubkey TEXT PRIMARY KEY,
    balance BLOB NOT NULL CHECK (length(balance) = 16)
  ) STRICT;
  CREATE TABLE IF NOT EXISTS channels (
    id TEXT PRIMARY KEY,
    payer TEXT NOT NULL,
    payee TEXT NOT NULL,
    nonce TEXT NOT NULL,
    deposit BLOB NOT NULL CHECK (length(deposit) = 16),
    claimed BLOB NOT NULL CHECK (length(claimed) = 16 AND claimed <= deposit),
    expires_at INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('open', 'refunding', 'finalized')),
    challenge_ends_at INTEGER,
    created_at INTEGER NOT NULL
  ) STRICT;
  CREATE INDEX IF NOT EXISTS channels_payer ON channels (payer);
  CREATE INDEX IF NOT EXISTS channels_payee ON channels (payee);
  CREATE TABLE IF NOT EXISTS request_nonces (
    account TEXT NOT NULL,
    nonce TEXT NOT NULL,
    ts INTEGER NOT NULL,
    PRIMARY KEY (account, nonce)
  ) STRICT, WITHOUT ROWID;
  CREATE INDEX IF NOT EXISTS request_nonces_ts ON request_nonces (ts);
`

interface Statements {
  getMeta: StatementSync
  setMeta: StatementSync
  getBalance: StatementSync
  setBalance: StatementSync
  getChannel: StatementSync
  insertChannel: StatementSync
  updateChannel: StatementSync
  listChannels: StatementSync
  allBalances: StatementSync
  openChannels: StatementSync
  insertNonce: StatementSync
  pruneNonces: StatementSync
  begin: StatementSync
  beginRead: StatementSync
  commit: StatementSync
  rollback: StatementSync
}

interface RawChannel {
  id: string
  payer: string
  payee: string
  nonce: string
  deposit: Uint8Array
  claimed: Uint8Array
  expires_at: number
  status: string
  challenge_ends_at: number | null
  created_at: number
}

/**
 * The ledger's SQLite database (node:sqlite): WAL, synchronous=FULL (a COMMIT is on disk when it
 * returns), busy_timeout so that several processes can share one file. `write` runs a function in
 * one `BEGIN IMMEDIATE … COMMIT` transaction (a SAVEPOINT when already inside one); `batch` runs
 * many in one transaction, each in its own savepoint (group commit).
 */
export class LedgerStore {
  readonly ledgerId: Uint8Array
  private readonly db: DatabaseSync
  private readonly sql: Statements
  private readonly savepoints: Array<{ open: StatementSync, release: StatementSync, rollback: StatementSync }> = []
  private depth = 0
  private closed = false

  constructor (path: string, busyTimeoutMs: number) {
    this.db = new DatabaseSync(path, { timeout: busyTimeoutMs })
    this.db.exec(`PRAGMA busy_timeout = ${Math.trunc(busyTimeoutMs)}`)
    this.db.exec('PRAGMA journal_mode = WAL')
    this.db.exec('PRAGMA synchronous = FULL')
    // created once, in one transaction: two processes opening a new file agree on one ledger id
    this.txn(() => {
      this.db.exec(SCHEMA)
      const insert = this.db.prepare('INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)')
      insert.run('schema_version', Buffer.from([SCHEMA_VERSION]))
      insert.run('ledger_id', randomBytes(32))
      insert.run('total_minted', amountToBytes(0n))
    })
    const getMeta = this.db.prepare('SELECT value FROM meta WHERE key = ?')
    const meta = (key: string): Uint8Array | undefined => (getMeta.get(key) as { value: Uint8Array } | undefined)?.value
    const version = meta('schema_version')
    if (version?.length !== 1 || version[0] !== SCHEMA_VERSION) throw new Error(`${path}: unknown ledger schema version`)
    const id = meta('ledger_id')
    if (id?.length !== 32) throw new Error(`${path}: ledger id is missing or damaged`)
    this.ledgerId = Buffer.from(id)
    this.sql = {
      getMeta,
      setMeta: this.db.prepare('UPDATE meta SET value = ? WHERE key = ?'),
      getBalance: this.db.prepare('SELECT balance FROM accounts WHERE pubkey = ?'),
      setBalance: this.db.prepare('INSERT INTO accounts (pubkey, balance) VALUES (?, ?) ON CONFLICT (pubkey) DO UPDATE SET balance = excluded.balance'),
      getChannel: this.db.prepare('SELECT * FROM channels WHERE id = ?'),
      insertChannel: this.db.prepare(`INSERT INTO channels (id, payer, payee, nonce, deposit, claimed, expires_at, status, challenge_ends_at, created_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
      updateChannel: this.db.prepare('UPDATE channels SET deposit = ?, claimed = ?, expires_at = ?, status = ?, challenge_ends_at = ? WHERE id = ?'),
      listChannels: this.db.prepare('SELECT * FROM channels WHERE payer = ? UNION SELECT * FROM channels WHERE payee = ? ORDER BY created_at, id'),
      allBalances: this.db.prepare('SELECT balance FROM accounts'),
      openChannels: this.db.prepare("SELECT deposit, claimed FROM channels WHERE status != 'finalized'"),
      insertNonce: this.db.prepare('INSERT OR IGNORE INTO request_nonces (account, nonce, ts) VALUES (?, ?, ?)'),
      pruneNonces: this.db.prepare('DELETE FROM request_nonces WHERE (account, nonce) IN (SELECT account, nonce FROM request_nonces WHERE ts < ? ORDER BY ts LIMIT ?)'),
      begin: this.db.prepare('BEGIN IMMEDIATE'),
      beginRead: this.db.prepare('BEGIN DEFERRED'),
      commit: this.db.prepare('COMMIT'),
      rollback: this.db.prepare('ROLLBACK')
    }
  }

  // --- transactions ---

  /**
   * Run `fn` in a write transaction: `BEGIN IMMEDIATE` (the write lock is taken first, so the reads
   * inside see the latest state and no other process can change it before COMMIT). Inside a
   * transaction already, `fn` runs in a SAVEPOINT that is rolled back alone if `fn` throws.
   */
  write<T> (fn: () => T): T {
    this.checkOpen()
    if (this.db.isTransaction) return this.savepoint(fn)
    try {
      this.sql.begin.run()
    } catch (err) {
      throw busyOr(err)
    }
    try {
      const result = fn()
      this.sql.commit.run()
      return result
    } catch (err) {
      if (this.db.isTransaction) this.sql.rollback.run()
      throw busyOr(err)
    }
  }

  /** Run `fn` on one consistent snapshot (a read transaction). */
  read<T> (fn: () => T): T {
    this.checkOpen()
    if (this.db.isTransaction) return fn()
    this.sql.beginRead.run()
    try {
      return fn()
    } finally {
      if (this.db.isTransaction) this.sql.commit.run()
    }
  }

  /**
   * Group commit: all jobs in one transaction, each `guard` and each `op` in its own savepoint, so a
   * failing op rolls back only itself. Nothing is durable before the one COMMIT; if the transaction
   * itself fails (BEGIN, COMMIT, or an error after which SQLite rolled everything back) every job
   * reports that error.
   */
  batch (jobs: readonly BatchJob[]): JobResult[] {
    const results: JobResult[] = []
    try {
      this.write(() => {
        for (const job of jobs) {
          try {
            if (job.guard !== undefined) this.savepoint(job.guard)
            results.push({ ok: true, value: this.savepoint(job.op) })
          } catch (error) {
            if (!this.db.isTransaction) throw error // SQLite abandoned the whole transaction
            results.push({ ok: false, error })
          }
        }
      })
    } catch (error) {
      return jobs.map(() => ({ ok: false, error }))
    }
    return results
  }

  private savepoint<T> (fn: () => T): T {
    const sp = this.savepointAt(this.depth++)
    try {
      sp.open.run()
      try {
        const result = fn()
        sp.release.run()
        return result
      } catch (err) {
        if (this.db.isTransaction) {
          sp.rollback.run()
          sp.release.run()
        }
        throw err
      }
    } finally {
      this.depth--
    }
  }

  private savepointAt (depth: number): { open: StatementSync, release: StatementSync, rollback: StatementSync } {
    let sp = this.savepoints[depth]
    if (sp === undefined) {
      const name = `sp${depth}`
      sp = { open: this.db.prepare(`SAVEPOINT ${name}`), release: this.db.prepare(`RELEASE ${name}`), rollback: this.db.prepare(`ROLLBACK TO ${name}`) }
      this.savepoints[depth] = sp
    }
    return sp
  }

  /** Used by the constructor before the statements exist. */
  private txn (fn: () => void): void {
    this.db.exec('BEGIN IMMEDIATE')
    try {
      fn()
      this.db.exec('COMMIT')
    } catch (err) {
      if (this.db.isTransaction) this.db.exec('ROLLBACK')
      throw err
    }
  }

  // --- rows ---

  totalMinted (): bigint {
    return amountFromBytes(this.getMeta('total_minted') as Uint8Array)
  }

  setTotalMinted (value: bigint): void {
    this.sql.setMeta.run(amountToBytes(value), 'total_minted')
  }

  balance (account: string): bigint {
    const row = this.sql.getBalance.get(account) as { balance: Uint8Array } | undefined
    return row === undefined ? 0n : amountFromBytes(row.balance)
  }

  setBalance (account: string, value: bigint): void {
    this.sql.setBalance.run(account, amountToBytes(value))
  }

  channel (id: string): ChannelRow | undefined {
    const row = this.sql.getChannel.get(id) as RawChannel | undefined
    return row === undefined ? undefined : channelFromRow(row)
  }

  /** Channels where `account` is payer or payee, oldest first. */
  channels (account: string): ChannelRow[] {
    return (this.sql.listChannels.all(account, account) as unknown as RawChannel[]).map(channelFromRow)
  }

  insertChannel (c: ChannelRow): void {
    this.sql.insertChannel.run(c.id, c.payer, c.payee, c.nonce, amountToBytes(c.deposit), amountToBytes(c.claimed), c.expiresAt, c.status, c.challengeEndsAt, c.createdAt)
  }

  updateChannel (c: ChannelRow): void {
    this.sql.updateChannel.run(amountToBytes(c.deposit), amountToBytes(c.claimed), c.expiresAt, c.status, c.challengeEndsAt, c.id)
  }

  /** Record a request nonce; false when this account used it already. */
  useNonce (account: string, nonce: string, ts: number): boolean {
    return Number(this.sql.insertNonce.run(account, nonce, ts).changes) === 1
  }

  /** Delete up to `limit` request nonces older than `before`; returns how many. */
  pruneNonces (before: number, limit: number): number {
    return Number(this.sql.pruneNonces.run(before, limit).changes)
  }

  /** Sum of all balances, and of deposit − claimed over channels not finalized. Call inside `read`. */
  sums (): { balances: bigint, locked: bigint, claimedOverDeposit: number } {
    let balances = 0n
    for (const row of this.sql.allBalances.iterate()) balances += amountFromBytes((row as { balance: Uint8Array }).balance)
    let locked = 0n
    let claimedOverDeposit = 0
    for (const row of this.sql.openChannels.iterate()) {
      const r = row as { deposit: Uint8Array, claimed: Uint8Array }
      const deposit = amountFromBytes(r.deposit)
      const claimed = amountFromBytes(r.claimed)
      if (claimed > deposit) claimedOverDeposit++
      locked += deposit - claimed
    }
    return { balances, locked, claimedOverDeposit }
  }

  close (): void {
    if (this.closed) return
    this.closed = true
    this.db.close()
  }

  private getMeta (key: string): Uint8Array | undefined {
    return (this.sql.getMeta.get(key) as { value: Uint8Array } | undefined)?.value
  }

  private checkOpen (): void {
    if (this.closed) throw new LedgerClosedError()
  }
}

function channelFromRow (r: RawChannel): ChannelRow {
  return {
    id: r.id,
    payer: r.payer,
    payee: r.payee,
    nonce: r.nonce,
    deposit: amountFromBytes(r.deposit),
    claimed: amountFromBytes(r.claimed),
    expiresAt: Number(r.expires_at),
    status: r.status as LedgerChannelStatus,
    challengeEndsAt: r.challenge_ends_at === null ? null : Number(r.challenge_ends_at),
    createdAt: Number(r.created_at)
  }
}

/** SQLITE_BUSY (another process held the write lock past busy_timeout) becomes a LedgerBusyError. */
function busyOr (err: unknown): unknown {
  const e = err as { errcode?: unknown, code?: unknown } | null
  if (typeof e === 'object' && e !== null && e.code === 'ERR_SQLITE_ERROR' && typeof e.errcode === 'number' && (e.errcode & 0xff) === 5) {
    return new LedgerBusyError(undefined, { cause: err })
  }
  return err
}

