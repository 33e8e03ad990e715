import { randomBytes } from 'node:crypto'
import { chmod, mkdir, mkdtemp, readdir, readFile, stat, truncate, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { create as tarCreate } from 'tar'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { backupHome, restoreHome, verifyBackup } from './backup.js'
import { initHome, type InitResult } from './home.js'

let dir: string
let home: string
let init: InitResult
/** Connections left open on purpose (the node's own, holding a WAL): closed after each test. */
let open: DatabaseSync[] = []

const MIB = 1024 * 1024

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'btt-backup-'))
  home = join(dir, 'home')
  init = await initHome(home)
})
afterEach(() => {
  for (const db of open) db.close()
  open = []
})

/** A database in WAL mode whose writes stay in the -wal file (no checkpoint), held open like a running node's. */
function walDatabase (path: string): DatabaseSync {
  const db = new DatabaseSync(path)
  db.exec('PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0; CREATE TABLE IF NOT EXISTS v (id INTEGER PRIMARY KEY, amount INTEGER NOT NULL)')
  open.push(db)
  return db
}

/** A home with what a node writes: databases, blobs, a storage key, JSON state, a cache and node.json. */
async function populate (): Promise<{ blob: Buffer }> {
  await mkdir(join(home, 'data', 'storage', 'blobs'), { recursive: true })
  await mkdir(join(home, 'data', 'proxy', 'cache'), { recursive: true })
  const channels = walDatabase(join(home, 'data', 'channels.db'))
  const insert = channels.prepare('INSERT INTO v (amount) VALUES (?)')
  for (let i = 1; i <= 100; i++) insert.run(i)
  const provider = walDatabase(join(home, 'data', 'storage', 'provider.db'))
  provider.exec("CREATE TABLE IF NOT EXISTS contracts (id TEXT PRIMARY KEY); INSERT INTO contracts VALUES ('c1'), ('c2')")
  const blob = randomBytes(MIB + 17)
  await writeFile(join(home, 'data', 'storage', 'blobs', 'root1'), blob, { mode: 0o600 })
  await writeFile(join(home, 'data', 'storage', 'storage.key'), '{"type":"btt-storage-key"}\n', { mode: 0o600 })
  await writeFile(join(home, 'data', 'proxy', 'held-channels.json'), '{"channels":[]}\n', { mode: 0o600 })
  await writeFile(join(home, 'data', 'proxy', 'cache', 'entry'), 'cached bytes')
  await writeFile(join(home, 'node.json'), JSON.stringify({ pid: 999_999_999, apiUrl: 'http://127.0.0.1:1' }))
  return { blob }
}

async function sqliteRows (path: string, sql: string): Promise<unknown[]> {
  const db = new DatabaseSync(path)
  try {
    expect(db.prepare('PRAGMA integrity_check').all()).toEqual([{ integrity_check: 'ok' }])
    return db.prepare(sql).all().map(r => ({ ...r }))
  } finally {
    db.close()
  }
}

/** The tar's bytes with one byte of `needle`'s first occurrence flipped. */
async function flipIn (file: string, needle: Buffer): Promise<void> {
  const buf = await readFile(file)
  const at = buf.indexOf(needle)
  expect(at).toBeGreaterThan(0)
  buf[at] = (buf[at] as number) ^ 0x01
  await writeFile(file, buf)
}

describe('backup and restore of a node home', () => {
  it('round-trips identity, wallet, databases (reading through the WAL), blobs and keys; skips caches and node.json; 0600/0700', async () => {
    const { blob } = await populate()
    // the last rows are only in channels.db-wal: a plain copy of channels.db would miss them
    const walBytes = (await stat(join(home, 'data', 'channels.db-wal'))).size
    expect(walBytes).toBeGreaterThan(0)
    const out = join(dir, 'node.backup')
    const progress: string[] = []
    const result = await backupHome({ home, file: out, onProgress: p => { progress.push(p.phase) } })
    expect((await stat(out)).mode & 0o777).toBe(0o600)
    expect(result).toMatchObject({ file: out, nodeRunning: false, manifest: { format: 'btt-node-backup', version: 1, peerId: init.peerId, walletPublicKey: init.walletPublicKey } })
    expect(progress).toContain('copy')
    expect(progress).toContain('archive')
    const paths = result.manifest.files.map(f => f.path).sort()
    expect(paths).toEqual(['api.token', 'config.toml', 'data/channels.db', 'data/proxy/held-channels.json', 'data/storage/blobs/root1', 'data/storage/provider.db', 'data/storage/storage.key', 'keys/identity.key', 'keys/wallet.key'])
    expect(result.manifest.files.filter(f => f.sqlite).map(f => f.path).sort()).toEqual(['data/channels.db', 'data/storage/provider.db'])
    // no temp or staging files are left beside the archive
    expect(await readdir(dir)).toEqual(expect.arrayContaining(['home', 'node.backup']))
    expect((await readdir(dir)).length).toBe(2)

    const target = join(dir, 'restored')
    const restored = await restoreHome({ home: target, file: out })
    expect(restored.manifest).toEqual(result.manifest)
    expect(restored.previous).toBeUndefined()
    for (const f of ['config.toml', 'api.token', 'keys/identity.key', 'keys/wallet.key', 'data/storage/storage.key', 'data/proxy/held-channels.json']) {
      expect(await readFile(join(target, f), 'utf8'), f).toBe(await readFile(join(home, f), 'utf8'))
      expect((await stat(join(target, f))).mode & 0o777, f).toBe(0o600)
    }
    expect((await readFile(join(target, 'data', 'storage', 'blobs', 'root1'))).equals(blob)).toBe(true)
    for (const d of ['', 'keys', 'data', 'data/storage', 'data/storage/blobs']) expect((await stat(join(target, d))).mode & 0o777, d).toBe(0o700)
    expect(await sqliteRows(join(target, 'data', 'channels.db'), 'SELECT count(*) AS n, sum(amount) AS s FROM v')).toEqual([{ n: 100, s: 5050 }])
    expect(await sqliteRows(join(target, 'data', 'storage', 'provider.db'), 'SELECT id FROM contracts ORDER BY id')).toEqual([{ id: 'c1' }, { id: 'c2' }])
    await expect(stat(join(target, 'node.json'))).rejects.toThrow()
    await expect(stat(join(target, 'data', 'proxy', 'cache'))).rejects.toThrow()
    expect((await readdir(target)).sort()).toEqual(['api.token', 'config.toml', 'data', 'keys'])
  })

  it('takes a consistent snapshot of a database that is written to during the backup', async () => {
    await populate()
    const db = open[0] as DatabaseSync
    // ~8 MiB of rows so the backup takes a while; every transaction adds +x and -x: the sum stays 0
    db.exec('DELETE FROM v')
    const ins = db.prepare('INSERT INTO v (amount) VALUES (?)')
    db.exec('BEGIN')
    for (let i = 0; i < 40_000; i++) { ins.run(i); ins.run(-i) }
    db.exec('COMMIT')
    let writes = 0
    let writing = true
    const writer = (async () => {
      while (writing) {
        db.exec('BEGIN')
        const x = writes + 1_000_000
        ins.run(x)
        ins.run(-x)
        db.exec('COMMIT')
        writes++
        await new Promise(resolve => setImmediate(resolve))
      }
    })()
    const out = join(dir, 'live.backup')
    const before = writes
    await backupHome({ home, file: out })
    const during = writes - before
    writing = false
    await writer
    // the writer really ran while the backup was taken
    expect(during).toBeGreaterThan(0)
    const target = join(dir, 'restored')
    await restoreHome({ home: target, file: out })
    const [row] = await sqliteRows(join(target, 'data', 'channels.db'), 'SELECT count(*) AS n, sum(amount) AS s FROM v') as Array<{ n: number, s: number }>
    expect(row?.s).toBe(0)
    expect((row?.n ?? 0) % 2).toBe(0)
    expect(row?.n).toBeGreaterThanOrEqual(80_000 + 2 * before)
  })

  it('refuses to overwrite an archive unless forced', async () => {
    const out = join(dir, 'b.tar')
    await writeFile(out, 'precious')
    await expect(backupHome({ home, file: out })).rejects.toMatchObject({ code: 'BACKUP_FILE_EXISTS' })
    expect(await readFile(out, 'utf8')).toBe('precious')
    await backupHome({ home, file: out, force: true })
    expect((await verifyBackup(out)).peerId).toBe(init.peerId)
    await expect(backupHome({ home, file: join(home, 'data', 'x.tar') })).rejects.toMatchObject({ code: 'BACKUP_PATH_INVALID' })
    await expect(backupHome({ home, file: join(dir, 'no', 'such', 'dir.tar') })).rejects.toMatchObject({ code: 'BACKUP_PATH_INVALID' })
    await expect(backupHome({ home: join(dir, 'nothing'), file: join(dir, 'n.tar') })).rejects.toMatchObject({ code: 'HOME_NOT_INITIALISED' })
  })

  it('refuses a corrupt, truncated or foreign archive and writes nothing', async () => {
    await populate()
    const out = join(dir, 'b.tar')
    await backupHome({ home, file: out })
    const size = (await stat(out)).size

    const cases: Array<[string, () => Promise<string>, RegExp]> = [
      ['truncated', async () => { const f = join(dir, 'trunc.tar'); await writeFile(f, await readFile(out)); await truncate(f, Math.floor(size / 2)); return f }, /truncated/],
      ['random bytes', async () => { const f = join(dir, 'random.tar'); await writeFile(f, randomBytes(64 * 1024)); return f }, /corrupt or truncated|not a btt-node backup/],
      ['empty', async () => { const f = join(dir, 'empty.tar'); await writeFile(f, ''); return f }, /no manifest\.json|corrupt/],
      ['a tar of something else', async () => {
        const f = join(dir, 'other.tar')
        await tarCreate({ cwd: home, file: f, portable: true }, ['config.toml', 'api.token'])
        return f
      }, /first entry is "config\.toml"/],
      ['a manifest of another format', async () => {
        const d = await mkdtemp(join(tmpdir(), 'btt-foreign-'))
        await writeFile(join(d, 'manifest.json'), JSON.stringify({ format: 'something-else', version: 1 }))
        const f = join(dir, 'foreign.tar')
        await tarCreate({ cwd: d, file: f, portable: true }, ['manifest.json'])
        return f
      }, /not a btt-node backup manifest/],
      ['a newer format version', async () => {
        const d = await mkdtemp(join(tmpdir(), 'btt-foreign-'))
        await writeFile(join(d, 'manifest.json'), JSON.stringify({ format: 'btt-node-backup', version: 99 }))
        const f = join(dir, 'v99.tar')
        await tarCreate({ cwd: d, file: f, portable: true }, ['manifest.json'])
        return f
      }, /format version 99 is not supported/]
    ]
    for (const [what, make, message] of cases) {
      const file = await make()
      const target = join(dir, `into-${what.replace(/\W/g, '-')}`)
      const err = await restoreHome({ home: target, file }).then(() => undefined, (e: unknown) => e as { code: string, message: string })
      expect(err, what).toMatchObject({ code: 'BACKUP_INVALID' })
      expect(err?.message, what).toMatch(message)
      // nothing written: the target does not even exist
      await expect(stat(target), what).rejects.toThrow()
      await expect(verifyBackup(file), what).rejects.toMatchObject({ code: 'BACKUP_INVALID' })
    }
    // and an existing empty target stays empty
    const empty = join(dir, 'empty-home')
    await mkdir(empty)
    await expect(restoreHome({ home: empty, file: join(dir, 'trunc.tar') })).rejects.toMatchObject({ code: 'BACKUP_INVALID' })
    expect(await readdir(empty)).toEqual([])
  })

  it('checks every sha256 before writing anything: one flipped byte in a file refuses the whole restore', async () => {
    const { blob } = await populate()
    const out = join(dir, 'b.tar')
    await backupHome({ home, file: out })
    // tar checksums cover headers only: a flipped data byte parses fine, only the manifest's sha256 catches it
    const token = (await readFile(join(home, 'api.token'), 'utf8')).trim()
    for (const [needle, path] of [[Buffer.from(token), 'api.token'], [blob.subarray(MIB, MIB + 17), 'data/storage/blobs/root1']] as const) {
      const bad = join(dir, `bad-${path.replace(/\W/g, '-')}.tar`)
      await writeFile(bad, await readFile(out))
      await flipIn(bad, needle)
      const target = join(dir, `target-${path.replace(/\W/g, '-')}`)
      const err = await restoreHome({ home: target, file: bad }).then(() => undefined, (e: unknown) => e as { code: string, message: string })
      expect(err).toMatchObject({ code: 'BACKUP_INVALID', message: expect.stringContaining(`${path} does not match its sha256`) })
      await expect(stat(target)).rejects.toThrow()
    }
  })

  it('refuses an initialised or non-empty home unless forced, then moves the old contents aside; refuses while a node runs', async () => {
    await populate()
    const out = join(dir, 'b.tar')
    await backupHome({ home, file: out })
    const other = join(dir, 'other')
    const otherInit = await initHome(other)
    const otherWallet = await readFile(join(other, 'keys', 'wallet.key'), 'utf8')
    await expect(restoreHome({ home: other, file: out })).rejects.toMatchObject({ code: 'BACKUP_HOME_NOT_EMPTY', message: expect.stringContaining('--force') })
    expect(await readFile(join(other, 'keys', 'wallet.key'), 'utf8')).toBe(otherWallet)

    const stray = join(dir, 'stray')
    await mkdir(stray)
    await writeFile(join(stray, 'notes.txt'), 'mine')
    await expect(restoreHome({ home: stray, file: out })).rejects.toMatchObject({ code: 'BACKUP_HOME_NOT_EMPTY' })
    expect(await readdir(stray)).toEqual(['notes.txt'])

    // a live process on the target: refused even with --force
    await writeFile(join(other, 'node.json'), JSON.stringify({ pid: process.pid, apiUrl: 'http://127.0.0.1:1' }))
    await expect(restoreHome({ home: other, file: out, force: true })).rejects.toMatchObject({ code: 'BACKUP_NODE_RUNNING' })
    await writeFile(join(other, 'node.json'), JSON.stringify({ pid: 999_999_999, apiUrl: 'http://127.0.0.1:1' }))

    const forced = await restoreHome({ home: other, file: out, force: true })
    expect(forced.manifest.peerId).toBe(init.peerId)
    expect(forced.manifest.peerId).not.toBe(otherInit.peerId)
    expect(await readFile(join(other, 'keys', 'wallet.key'), 'utf8')).toBe(await readFile(join(home, 'keys', 'wallet.key'), 'utf8'))
    // the previous wallet is kept, not deleted
    expect(forced.previous).toMatch(/\.pre-restore-/)
    expect(await readFile(join(forced.previous as string, 'keys', 'wallet.key'), 'utf8')).toBe(otherWallet)
    expect((await stat(forced.previous as string)).mode & 0o777).toBe(0o700)
  })

  it('refuses a backup whose keys are not the ones its manifest names', async () => {
    const out = join(dir, 'b.tar')
    const result = await backupHome({ home, file: out })
    // rebuild the archive with another node's identity key but this manifest (fresh sha256s, so only the key check can catch it)
    const other = join(dir, 'other')
    await initHome(other)
    const d = await mkdtemp(join(tmpdir(), 'btt-swap-'))
    await mkdir(join(d, 'keys'))
    const { createHash } = await import('node:crypto')
    const files = []
    for (const f of result.manifest.files) {
      const src = f.path === 'keys/identity.key' ? join(other, f.path) : join(home, f.path)
      const data = await readFile(src)
      await writeFile(join(d, f.path), data)
      await chmod(join(d, f.path), 0o600)
      files.push({ ...f, size: data.length, sha256: createHash('sha256').update(data).digest('hex') })
    }
    await writeFile(join(d, 'manifest.json'), JSON.stringify({ ...result.manifest, files }))
    const swapped = join(dir, 'swapped.tar')
    await tarCreate({ cwd: d, file: swapped, portable: true }, ['manifest.json', ...files.map(f => f.path)])
    const target = join(dir, 't')
    await expect(restoreHome({ home: target, file: swapped })).rejects.toMatchObject({ code: 'BACKUP_INVALID', message: expect.stringContaining('keys/identity.key is peer') })
    await expect(stat(target)).rejects.toThrow()
  })
})
