import { DatabaseSync } from 'node:sqlite'
import type { FileState } from './storage.js'

/** What is kept per torrent so a restart needs no re-hash. */
export interface ResumeRecord {
  infoHash: string
  /** The info dict (absent while a magnet still waits for metadata). */
  info?: Uint8Array
  announce: string[][]
  savePath: string
  /** Verified pieces, valid only while `files` still match the disk. */
  bitfield?: Uint8Array
  files?: Array<FileState | undefined>
  uploaded: number
  downloaded: number
  addedAt: number
  completedAt: number
  paused: boolean
  /** Name from the magnet while metadata is unknown. */
  name?: string
  /** Peers from the magnet's x.pe, kept until metadata arrives. */
  peers?: string[]
}

/** Fast-resume records in SQLite (`<dataDir>/seeding.db`). Not money: synchronous=NORMAL is enough. */
export class ResumeStore {
  private readonly db: DatabaseSync

  constructor (path: string) {
    this.db = new DatabaseSync(path)
    this.db.exec(`
      PRAGMA journal_mode = WAL;
      PRAGMA synchronous = NORMAL;
      CREATE TABLE IF NOT EXISTS torrents (
        info_hash TEXT PRIMARY KEY,
        info BLOB,
        announce TEXT NOT NULL,
        save_path TEXT NOT NULL,
        bitfield BLOB,
        files TEXT,
        uploaded INTEGER NOT NULL DEFAULT 0,
        downloaded INTEGER NOT NULL DEFAULT 0,
        added_at INTEGER NOT NULL,
        completed_at INTEGER NOT NULL DEFAULT 0,
        paused INTEGER NOT NULL DEFAULT 0,
        name TEXT,
        peers TEXT
      );
      -- paid-seeding earnings, a report: the vouchers themselves are durable in channels.db
      CREATE TABLE IF NOT EXISTS earnings (
        info_hash TEXT NOT NULL,
        payer TEXT NOT NULL,
        amount TEXT NOT NULL,
        bytes INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (info_hash, payer)
      );
    `)
  }

  /** Adds `amount` base units (and `bytes`) earned on a torrent from a payer. */
  addEarning (infoHash: string, payer: string, amount: bigint, bytes: number, now = Date.now()): void {
    const row = this.db.prepare('SELECT amount, bytes FROM earnings WHERE info_hash = ? AND payer = ?').get(infoHash, payer) as { amount: string, bytes: number } | undefined
    const total = (row === undefined ? 0n : BigInt(row.amount)) + amount
    this.db.prepare(`INSERT INTO earnings (info_hash, payer, amount, bytes, updated_at) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT (info_hash, payer) DO UPDATE SET amount = excluded.amount, bytes = excluded.bytes, updated_at = excluded.updated_at`)
      .run(infoHash, payer, total.toString(), (row?.bytes ?? 0) + bytes, now)
  }

  earnings (): Array<{ infoHash: string, payer: string, amount: bigint, bytes: number, updatedAt: number }> {
    const rows = this.db.prepare('SELECT * FROM earnings ORDER BY info_hash, payer').all() as Array<{ info_hash: string, payer: string, amount: string, bytes: number, updated_at: number }>
    return rows.map(r => ({ infoHash: r.info_hash, payer: r.payer, amount: BigInt(r.amount), bytes: r.bytes, updatedAt: r.updated_at }))
  }

  all (): ResumeRecord[] {
    const rows = this.db.prepare('SELECT * FROM torrents ORDER BY added_at, info_hash').all() as Array<Record<string, unknown>>
    return rows.map(r => ({
      infoHash: r.info_hash as string,
      ...(r.info != null ? { info: r.info as Uint8Array } : {}),
      announce: JSON.parse(r.announce as string) as string[][],
      savePath: r.save_path as string,
      ...(r.bitfield != null ? { bitfield: r.bitfield as Uint8Array } : {}),
      ...(r.files != null ? { files: JSON.parse(r.files as string) as Array<FileState | undefined> } : {}),
      uploaded: Number(r.uploaded),
      downloaded: Number(r.downloaded),
      addedAt: Number(r.added_at),
      completedAt: Number(r.completed_at),
      paused: r.paused === 1,
      ...(r.name != null ? { name: r.name as string } : {}),
      ...(r.peers != null ? { peers: JSON.parse(r.peers as string) as string[] } : {})
    }))
  }

  put (r: ResumeRecord): void {
    this.db.prepare(`INSERT INTO torrents (info_hash, info, announce, save_path, bitfield, files, uploaded, downloaded, added_at, completed_at, paused, name, peers)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT (info_hash) DO UPDATE SET info = excluded.info, announce = excluded.announce, save_path = excluded.save_path,
        bitfield = excluded.bitfield, files = excluded.files, uploaded = excluded.uploaded, downloaded = excluded.downloaded,
        completed_at = excluded.completed_at, paused = excluded.paused, name = excluded.name, peers = excluded.peers`).run(
      r.infoHash, r.info ?? null, JSON.stringify(r.announce), r.savePath, r.bitfield ?? null,
      r.files !== undefined ? JSON.stringify(r.files) : null, r.uploaded, r.downloaded, r.addedAt, r.completedAt,
      r.paused ? 1 : 0, r.name ?? null, r.peers !== undefined ? JSON.stringify(r.peers) : null)
  }

  /** Saves many records in one transaction. */
  putMany (records: ResumeRecord[]): void {
    if (records.length === 0) return
    this.db.exec('BEGIN')
    try {
      for (const r of records) this.put(r)
      this.db.exec('COMMIT')
    } catch (err) {
      this.db.exec('ROLLBACK')
      throw err
    }
  }

  delete (infoHash: string): void {
    this.db.prepare('DELETE FROM torrents WHERE info_hash = ?').run(infoHash)
  }

  close (): void {
    this.db.close()
  }
}
