import { createHash, randomBytes } from 'node:crypto'
import { constants as fsConstants, createReadStream, createWriteStream } from 'node:fs'
import { chmod, copyFile, link, lstat, mkdir, mkdtemp, open, readdir, rename, rm, rmdir, stat } from 'node:fs/promises'
import { basename, dirname, join, relative, resolve, sep } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { backup as sqliteBackup, DatabaseSync } from 'node:sqlite'
import { create as tarCreate, Parser as TarParser, type ReadEntry } from 'tar'
import { NodeError } from './errors.js'
import { homePaths, isAlive, peerIdOf, readRuntimeInfo, assertInitialised } from './home.js'
import { readKeyFile } from './keys.js'
import { VERSION } from './version.js'

/**
 * Backup and restore of a node home: one tar file with the keys, config.toml, api.token and every
 * database and data file under data/, plus `manifest.json` (first entry) naming each file with its
 * size and sha256. SQLite databases are copied with SQLite's online backup API from a second,
 * read-only connection, in one step: one read transaction, so the copy is a consistent snapshot
 * even while the node writes (WAL included). Other files are copied as they are.
 */

/** `format` of the manifest: tells a btt-node backup from any other tar file. */
export const BACKUP_FORMAT = 'btt-node-backup'
/** Bumped when the layout changes incompatibly; restore refuses versions it does not know. */
export const BACKUP_FORMAT_VERSION = 1
const MANIFEST = 'manifest.json'
/** A manifest is a few hundred bytes per file; 64 MiB is ~200 000 files, far past any real home. */
const MAX_MANIFEST_BYTES = 64 * 1024 * 1024
const MAX_FILES = 200_000
/**
 * Paths under the home never backed up: the proxy's cache (refetched on demand) and partial storage
 * uploads (the storage service deletes them on start; the requester retries). node.json is not
 * under data/ and is never included (it only says which process runs the home).
 */
const EXCLUDED = new Set(['data/proxy/cache', 'data/storage/partial'])
/** Top-level entries of a home that a backup holds; nothing else of the home is read. */
const TOP_FILES = ['config.toml', 'api.token']
const TOP_DIRS = ['keys', 'data']
/** The first 16 bytes of every SQLite 3 database file. */
const SQLITE_MAGIC = Buffer.from('SQLite format 3\0', 'latin1')
/** Pages per backup step: all of them, so one step is one read transaction (a consistent snapshot). */
const ALL_PAGES = 2 ** 31 - 1
/** How long the backup connection waits for a lock (a checkpoint or recovery of the node). */
const BUSY_TIMEOUT_MS = 10_000

export class BackupFileExistsError extends NodeError {
  static readonly code = 'BACKUP_FILE_EXISTS'
  override readonly name = 'BackupFileExistsError'
  constructor (file: string) {
    super(BackupFileExistsError.code, `${file} already exists; choose another file or pass --force to replace it`)
  }
}

export class BackupPathError extends NodeError {
  static readonly code = 'BACKUP_PATH_INVALID'
  override readonly name = 'BackupPathError'
  constructor (file: string, problem: string) {
    super(BackupPathError.code, `${file}: ${problem}`)
  }
}

/** The archive is not a btt-node backup, is corrupt or truncated, or a file does not match its sha256. */
export class BackupInvalidError extends NodeError {
  static readonly code = 'BACKUP_INVALID'
  override readonly name = 'BackupInvalidError'
  constructor (file: string, problem: string, options?: { cause?: unknown }) {
    super(BackupInvalidError.code, `${file} is not a usable btt-node backup: ${problem}; nothing was restored`, options)
  }
}

export class BackupFailedError extends NodeError {
  static readonly code = 'BACKUP_FAILED'
  override readonly name = 'BackupFailedError'
  constructor (what: string, options: { cause: unknown }) {
    super(BackupFailedError.code, `${what}: ${(options.cause as Error)?.message ?? String(options.cause)}`, options)
  }
}

export class RestoreHomeNotEmptyError extends NodeError {
  static readonly code = 'BACKUP_HOME_NOT_EMPTY'
  override readonly name = 'RestoreHomeNotEmptyError'
  constructor (home: string, initialised: boolean) {
    super(RestoreHomeNotEmptyError.code, initialised
      ? `${home} is an initialised node home (config.toml exists); restoring would replace its keys. Pass --force to move its current contents aside into ${home}/.pre-restore-<time>/ and restore`
      : `${home} is not empty; restore into an empty or new directory, or pass --force to move its contents aside into ${home}/.pre-restore-<time>/`)
  }
}

export class RestoreNodeRunningError extends NodeError {
  static readonly code = 'BACKUP_NODE_RUNNING'
  override readonly name = 'RestoreNodeRunningError'
  constructor (home: string, pid: number) {
    super(RestoreNodeRunningError.code, `a node is running on ${home} (pid ${pid}); stop it before restoring (restore replaces its keys and databases)`)
  }
}

export interface BackupFileEntry {
  /** Relative to the home, `/`-separated: `keys/wallet.key`, `data/storage/provider.db`. */
  path: string
  size: number
  sha256: string
  /** Copied with the SQLite online backup API. */
  sqlite: boolean
}

export interface BackupManifest {
  format: typeof BACKUP_FORMAT
  version: number
  /** btt-node version that wrote it. */
  nodeVersion: string
  peerId: string
  /** Hex ed25519 public key: the wallet account. */
  walletPublicKey: string
  /** ISO time the copy was taken. */
  created: string
  files: BackupFileEntry[]
}

export interface BackupProgress {
  /** copy: snapshotting the home; archive: writing the tar; verify: reading and checking an archive (and, restoring, extracting it). */
  phase: 'copy' | 'archive' | 'verify'
  /** Bytes done and total of this phase (total is an estimate for copy: databases are sized as on disk). */
  done: number
  total: number
}

export interface BackupInit {
  home: string
  /** The archive to write. Refused if it exists, unless `force`. */
  file: string
  force?: boolean
  onProgress?: (p: BackupProgress) => void
}

export interface BackupResult {
  file: string
  /** Size of the archive in bytes. */
  size: number
  manifest: BackupManifest
  /** A node was running on the home while the backup was taken. */
  nodeRunning: boolean
  /** Entries that were not regular files (symlinks, sockets) and so were left out. */
  skipped: string[]
}

export interface RestoreInit {
  home: string
  file: string
  /** Restore into an initialised or non-empty home, moving what is there aside first. */
  force?: boolean
  onProgress?: (p: BackupProgress) => void
}

export interface RestoreResult {
  home: string
  manifest: BackupManifest
  /** Where the home's previous contents were moved (with `force` on a non-empty home). */
  previous?: string
}

/**
 * Write a backup of `home` to `file`: snapshot every file into a private staging directory beside
 * `file` (databases through the online backup API), hash them, then write the tar to a temp file,
 * fsync it and rename it into place (mode 0600: it holds the private keys). Works with the node
 * running or stopped.
 */
export async function backupHome (init: BackupInit): Promise<BackupResult> {
  const home = resolve(init.home)
  const file = resolve(init.file)
  const paths = await assertInitialised(home)
  for (const inside of [paths.keysDir, paths.dataDir]) {
    if (file === inside || file.startsWith(inside + sep)) throw new BackupPathError(file, `is inside ${inside}, which the backup reads; write it elsewhere`)
  }
  const outDir = dirname(file)
  const dirStat = await stat(outDir).catch(() => undefined)
  if (dirStat?.isDirectory() !== true) throw new BackupPathError(file, `the directory ${outDir} does not exist`)
  if (init.force !== true && await exists(file)) throw new BackupFileExistsError(file)

  const runtime = await readRuntimeInfo(paths)
  const nodeRunning = runtime !== undefined && isAlive(runtime.pid)
  const { files: found, skipped } = await listHome(home)
  const stage = await mkdtemp(join(outDir, `.${basename(file)}.staging-`))
  const tmp = join(outDir, `.${basename(file)}.${randomBytes(6).toString('hex')}.tmp`)
  try {
    // 1. snapshot into the staging directory
    const total = found.reduce((a, f) => a + f.size, 0)
    let done = 0
    const copied: Array<{ path: string, sqlite: boolean }> = []
    const created = new Date().toISOString()
    for (const f of found) {
      const src = join(home, ...f.path.split('/'))
      const dst = join(stage, ...f.path.split('/'))
      await mkdir(dirname(dst), { recursive: true, mode: 0o700 })
      try {
        if (f.sqlite) await snapshotDatabase(src, dst)
        else await copyFile(src, dst, fsConstants.COPYFILE_FICLONE)
        await chmod(dst, 0o600)
      } catch (err) {
        // deleted since it was listed (a service removed it): not part of the snapshot
        if ((err as NodeJS.ErrnoException).code === 'ENOENT' && !(await exists(src))) continue
        throw new BackupFailedError(`cannot copy ${src}`, { cause: err })
      }
      copied.push(f)
      done += f.size
      init.onProgress?.({ phase: 'copy', done, total })
    }

    // 2. the manifest: who this is, and every file's size and sha256
    const entries: BackupFileEntry[] = []
    for (const f of copied) {
      const dst = join(stage, ...f.path.split('/'))
      entries.push({ path: f.path, size: (await stat(dst)).size, sha256: await sha256File(dst), sqlite: f.sqlite })
    }
    const identity = await readKeyFile(join(stage, 'keys', 'identity.key'), 'identity')
    const wallet = await readKeyFile(join(stage, 'keys', 'wallet.key'), 'wallet')
    const manifest: BackupManifest = {
      format: BACKUP_FORMAT,
      version: BACKUP_FORMAT_VERSION,
      nodeVersion: VERSION,
      peerId: peerIdOf(identity),
      walletPublicKey: Buffer.from(wallet.publicKey).toString('hex'),
      created,
      files: entries
    }
    const manifestFile = join(stage, MANIFEST)
    const fh = await open(manifestFile, 'wx', 0o600)
    await fh.writeFile(JSON.stringify(manifest, null, 2) + '\n')
    await fh.close()

    // 3. the archive: temp file, fsync, rename (or link, which refuses to replace a file that appeared meanwhile)
    const archiveTotal = entries.reduce((a, e) => a + e.size + 1024, 0)
    let written = 0
    const pack = tarCreate({ cwd: stage, portable: true, strict: true }, [MANIFEST, ...entries.map(e => e.path)])
    const ws = createWriteStream(tmp, { flags: 'wx', mode: 0o600 })
    await pipeline(pack as unknown as AsyncIterable<Buffer>, async function * (source) {
      for await (const chunk of source) {
        written += chunk.length
        init.onProgress?.({ phase: 'archive', done: Math.min(written, archiveTotal), total: archiveTotal })
        yield chunk
      }
    }, ws)
    const out = await open(tmp, 'r+')
    try {
      await out.chmod(0o600)
      await out.sync()
    } finally {
      await out.close()
    }
    if (init.force === true) {
      await rename(tmp, file)
    } else {
      try {
        await link(tmp, file)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new BackupFileExistsError(file)
        // a filesystem without hard links: check, then rename
        if (await exists(file)) throw new BackupFileExistsError(file)
        await rename(tmp, file)
      }
    }
    await fsyncDir(outDir)
    return { file, size: (await stat(file)).size, manifest, nodeRunning, skipped }
  } finally {
    await rm(stage, { recursive: true, force: true })
    await rm(tmp, { force: true })
  }
}

/**
 * Read a backup and check it completely (format, manifest, every file's size and sha256, the keys
 * against the manifest) without writing anything.
 */
export async function verifyBackup (file: string, onProgress?: (p: BackupProgress) => void): Promise<BackupManifest> {
  return await readArchive(resolve(file), undefined, onProgress)
}

/**
 * Restore a backup into `home`. Refuses while a node runs on it, and refuses an initialised or
 * non-empty home unless `force` (which moves its contents aside into `.pre-restore-<time>/`).
 * Everything is extracted into a staging directory inside the home and verified first; only then
 * is anything moved into place (config.toml last: it marks the home as initialised). Files are
 * written 0600, directories 0700.
 */
export async function restoreHome (init: RestoreInit): Promise<RestoreResult> {
  const home = resolve(init.home)
  const file = resolve(init.file)
  const paths = homePaths(home)
  const runtime = await readRuntimeInfo(paths)
  if (runtime !== undefined && isAlive(runtime.pid)) throw new RestoreNodeRunningError(home, runtime.pid)
  const before = await readdir(home).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined
    throw err
  })
  if (before !== undefined && before.length > 0 && init.force !== true) throw new RestoreHomeNotEmptyError(home, before.includes('config.toml'))
  const st = await stat(file).catch(() => undefined)
  if (st?.isFile() !== true) throw new BackupPathError(file, 'no such file')

  const createdHome = before === undefined
  await mkdir(home, { recursive: true, mode: 0o700 })
  const stage = await mkdtemp(join(home, '.restore-'))
  let manifest: BackupManifest
  try {
    manifest = await readArchive(file, stage, init.onProgress)
  } catch (err) {
    await rm(stage, { recursive: true, force: true })
    if (createdHome) await rmdir(home).catch(() => {})
    throw err
  }
  // verified: move what is there aside, then the restored files in (config.toml last)
  let previous: string | undefined
  try {
    const existing = (await readdir(home)).filter(n => join(home, n) !== stage)
    if (existing.length > 0) {
      previous = join(home, `.pre-restore-${new Date().toISOString().replace(/[:.]/g, '-')}`)
      await mkdir(previous, { mode: 0o700 })
      for (const name of existing) await rename(join(home, name), join(previous, name))
    }
    await mkdirPrivate(stage, join(stage, 'data'))
    for (const name of [...TOP_DIRS, 'api.token', 'config.toml']) {
      if (await exists(join(stage, name))) await rename(join(stage, name), join(home, name))
    }
    await chmod(home, 0o700)
    await fsyncDir(home)
  } catch (err) {
    throw new BackupFailedError(`restore into ${home} stopped half-way; the verified files are in ${stage}${previous !== undefined ? `, the previous contents in ${previous}` : ''}`, { cause: err })
  }
  await rm(stage, { recursive: true, force: true })
  return { home, manifest, previous }
}

interface Listed { path: string, size: number, sqlite: boolean }

/** config.toml, api.token, keys/ and data/ of a home, minus EXCLUDED, temp files and SQLite's own -wal/-shm/-journal. */
async function listHome (home: string): Promise<{ files: Listed[], skipped: string[] }> {
  const files: Listed[] = []
  const skipped: string[] = []
  const walk = async (rel: string): Promise<void> => {
    const dirents = await readdir(join(home, ...rel.split('/')), { withFileTypes: true }).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return []
      throw err
    })
    const names = new Set(dirents.map(d => d.name))
    for (const d of dirents.sort((a, b) => a.name < b.name ? -1 : 1)) {
      const path = `${rel}/${d.name}`
      if (EXCLUDED.has(path)) continue
      if (d.isDirectory()) {
        await walk(path)
        continue
      }
      if (!d.isFile()) {
        skipped.push(path)
        continue
      }
      // writeFileAtomic's temp files (`.name.<hex>.tmp`): the rename will land in the real name
      if (/^\..*\.[0-9a-f]{12}\.tmp$/.test(d.name)) continue
      // SQLite's companions: read through the database's own connection, never copied
      const companion = /^(.*)-(wal|shm|journal)$/.exec(d.name)
      if (companion !== null && names.has(companion[1] as string)) continue
      const info = await probe(join(home, ...path.split('/')))
      if (info !== undefined) files.push({ path, ...info })
    }
  }
  for (const name of TOP_FILES) {
    const info = await probe(join(home, name))
    if (info !== undefined) files.push({ path: name, ...info })
  }
  for (const dir of TOP_DIRS) await walk(dir)
  return { files, skipped }
}

/** Size and whether it is a SQLite database; undefined when it vanished. */
async function probe (path: string): Promise<{ size: number, sqlite: boolean } | undefined> {
  let fh
  try {
    fh = await open(path, 'r')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new BackupFailedError(`cannot read ${path}`, { cause: err })
  }
  try {
    const size = (await fh.stat()).size
    const head = Buffer.alloc(SQLITE_MAGIC.length)
    const { bytesRead } = await fh.read(head, 0, head.length, 0)
    return { size, sqlite: bytesRead === head.length && head.equals(SQLITE_MAGIC) }
  } finally {
    await fh.close()
  }
}

/**
 * Copy a live database: a read-only second connection and the online backup API, all pages in
 * one step (one read transaction: what the node commits meanwhile is simply not in the copy).
 */
async function snapshotDatabase (src: string, dst: string): Promise<void> {
  const db = new DatabaseSync(src, { readOnly: true, timeout: BUSY_TIMEOUT_MS })
  try {
    await sqliteBackup(db, dst, { rate: ALL_PAGES })
  } finally {
    db.close()
  }
  // the copy keeps the source's journal mode (WAL); its own -wal/-shm, if any, are not needed
  await rm(`${dst}-wal`, { force: true })
  await rm(`${dst}-shm`, { force: true })
}

/**
 * Parse and check an archive. With `stage`, every file is written below it (0600, dirs 0700);
 * without, only hashed. Throws BackupInvalidError for anything that is not a complete, untampered
 * btt-node backup.
 */
async function readArchive (file: string, stage: string | undefined, onProgress?: (p: BackupProgress) => void): Promise<BackupManifest> {
  const size = (await stat(file).catch(() => { throw new BackupPathError(file, 'no such file') })).size
  const invalid = (problem: string, cause?: unknown): BackupInvalidError => new BackupInvalidError(file, problem, { cause })
  let manifest: BackupManifest | undefined
  let byPath: Map<string, BackupFileEntry> | undefined
  const seen = new Set<string>()
  const jobs: Array<Promise<void>> = []
  let failure: unknown
  let first = true

  const parser = new TarParser({ strict: true })
  const fail = (err: unknown): void => {
    if (failure === undefined) failure = err
    parser.abort(err instanceof Error ? err : new Error(String(err)))
  }

  parser.on('entry', (entry: ReadEntry) => {
    if (failure !== undefined) {
      entry.resume()
      return
    }
    const isFirst = first
    first = false
    if (isFirst) {
      if (entry.path !== MANIFEST || entry.type !== 'File') {
        entry.resume()
        fail(invalid(`its first entry is ${JSON.stringify(entry.path)}, not ${MANIFEST} (not a btt-node backup)`))
        return
      }
      if ((entry.size ?? 0) > MAX_MANIFEST_BYTES) {
        entry.resume()
        fail(invalid(`${MANIFEST} is ${entry.size} bytes, more than ${MAX_MANIFEST_BYTES}`))
        return
      }
      const chunks: Buffer[] = []
      entry.on('data', (c: Buffer) => { chunks.push(c) })
      entry.on('end', () => {
        try {
          manifest = parseManifest(Buffer.concat(chunks), invalid)
          byPath = new Map(manifest.files.map(f => [f.path, f]))
        } catch (err) {
          fail(err)
        }
      })
      return
    }
    const expected = byPath?.get(entry.path)
    if (expected === undefined || entry.type !== 'File' || seen.has(entry.path)) {
      entry.resume()
      fail(invalid(expected === undefined
        ? `it holds ${JSON.stringify(entry.path)}, which its manifest does not list`
        : entry.type !== 'File' ? `${entry.path} is a ${entry.type}, not a file` : `${entry.path} appears twice`))
      return
    }
    seen.add(entry.path)
    jobs.push(consumeEntry(entry, expected, stage, invalid).catch(err => { fail(err) }))
  })

  const rs = createReadStream(file)
  let read = 0
  rs.on('data', (c) => {
    read += c.length
    onProgress?.({ phase: 'verify', done: read, total: size })
  })
  try {
    await new Promise<void>((resolveDone, reject) => {
      parser.on('error', reject)
      parser.on('abort', reject)
      parser.on('end', resolveDone)
      rs.on('error', reject)
      rs.pipe(parser as unknown as NodeJS.WritableStream)
    })
  } catch (err) {
    rs.destroy()
    await Promise.allSettled(jobs)
    if (failure instanceof NodeError) throw failure
    throw invalid(`the archive is corrupt or truncated (${(failure as Error | undefined)?.message ?? (err as Error).message})`, err)
  }
  await Promise.allSettled(jobs)
  if (failure !== undefined) {
    if (failure instanceof NodeError) throw failure
    throw invalid((failure as Error).message, failure)
  }
  if (manifest === undefined) throw invalid(`it holds no ${MANIFEST} (not a btt-node backup)`)
  const missing = manifest.files.filter(f => !seen.has(f.path)).map(f => f.path)
  if (missing.length > 0) throw invalid(`files listed in its manifest are missing: ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', …' : ''}`)
  if (stage !== undefined) {
    // the keys must be the ones the manifest names
    const identity = await readKeyFile(join(stage, 'keys', 'identity.key'), 'identity').catch(err => { throw invalid(`keys/identity.key: ${(err as Error).message}`, err) })
    const wallet = await readKeyFile(join(stage, 'keys', 'wallet.key'), 'wallet').catch(err => { throw invalid(`keys/wallet.key: ${(err as Error).message}`, err) })
    if (peerIdOf(identity) !== manifest.peerId) throw invalid(`keys/identity.key is peer ${peerIdOf(identity)}, the manifest says ${manifest.peerId}`)
    if (Buffer.from(wallet.publicKey).toString('hex') !== manifest.walletPublicKey) throw invalid('keys/wallet.key is not the wallet the manifest names')
  }
  return manifest
}

/** Hash (and with `stage`, write) one file entry; checks its size and sha256 against the manifest. */
async function consumeEntry (entry: ReadEntry, expected: BackupFileEntry, stage: string | undefined, invalid: (p: string) => BackupInvalidError): Promise<void> {
  const hash = createHash('sha256')
  let n = 0
  let fh
  if (stage !== undefined) {
    const dst = join(stage, ...expected.path.split('/'))
    await mkdirPrivate(stage, dirname(dst))
    fh = await open(dst, 'wx', 0o600)
  }
  try {
    for await (const chunk of entry as unknown as AsyncIterable<Buffer>) {
      hash.update(chunk)
      n += chunk.length
      if (fh !== undefined) await fh.write(chunk)
    }
    if (fh !== undefined) await fh.sync()
  } finally {
    await fh?.close()
  }
  if (n !== expected.size) throw invalid(`${expected.path} is ${n} bytes, its manifest says ${expected.size} (the archive is truncated or corrupt)`)
  if (hash.digest('hex') !== expected.sha256) throw invalid(`${expected.path} does not match its sha256 in the manifest (corrupt or tampered with)`)
}

/** mkdir -p below `root` with every created directory 0700 (whatever the umask). */
async function mkdirPrivate (root: string, dir: string): Promise<void> {
  const parts = relative(root, dir).split(sep).filter(p => p !== '')
  let cur = root
  for (const p of parts) {
    cur = join(cur, p)
    try {
      await mkdir(cur, { mode: 0o700 })
      await chmod(cur, 0o700)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    }
  }
}

/** A safe path of a home: config.toml, api.token, keys/<name> or data/<…>, no empty, `.` or `..` part. */
function isSafePath (p: string): boolean {
  if (p.length === 0 || p.length > 4096 || p.includes('\\') || p.includes('\0')) return false
  const parts = p.split('/')
  if (parts.some(x => x === '' || x === '.' || x === '..')) return false
  if (parts.length === 1) return TOP_FILES.includes(p)
  if (parts[0] === 'keys') return parts.length === 2
  return parts[0] === 'data'
}

function parseManifest (raw: Buffer, invalid: (p: string) => BackupInvalidError): BackupManifest {
  let m: Record<string, unknown>
  try {
    m = JSON.parse(raw.toString('utf8')) as Record<string, unknown>
  } catch {
    throw invalid(`${MANIFEST} is not JSON`)
  }
  if (typeof m !== 'object' || m === null || m.format !== BACKUP_FORMAT) throw invalid(`${MANIFEST} is not a btt-node backup manifest`)
  if (m.version !== BACKUP_FORMAT_VERSION) throw invalid(`format version ${String(m.version)} is not supported (this btt-node reads version ${BACKUP_FORMAT_VERSION}; use a newer btt-node)`)
  for (const k of ['nodeVersion', 'peerId', 'walletPublicKey', 'created'] as const) {
    if (typeof m[k] !== 'string') throw invalid(`${MANIFEST}: ${k} is missing`)
  }
  if (!Array.isArray(m.files) || m.files.length > MAX_FILES) throw invalid(`${MANIFEST}: files is not a list of at most ${MAX_FILES}`)
  const files: BackupFileEntry[] = []
  const paths = new Set<string>()
  for (const f of m.files as Array<Record<string, unknown>>) {
    if (typeof f !== 'object' || f === null || typeof f.path !== 'string' || !isSafePath(f.path) || paths.has(f.path) ||
      typeof f.size !== 'number' || !Number.isSafeInteger(f.size) || f.size < 0 ||
      typeof f.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(f.sha256) || typeof f.sqlite !== 'boolean') {
      throw invalid(`${MANIFEST}: bad file entry ${JSON.stringify(f).slice(0, 200)}`)
    }
    paths.add(f.path)
    files.push({ path: f.path, size: f.size, sha256: f.sha256, sqlite: f.sqlite })
  }
  for (const required of ['config.toml', 'api.token', 'keys/identity.key', 'keys/wallet.key']) {
    if (!paths.has(required)) throw invalid(`it has no ${required}`)
  }
  return { format: BACKUP_FORMAT, version: BACKUP_FORMAT_VERSION, nodeVersion: m.nodeVersion as string, peerId: m.peerId as string, walletPublicKey: m.walletPublicKey as string, created: m.created as string, files }
}

async function sha256File (path: string): Promise<string> {
  const h = createHash('sha256')
  for await (const c of createReadStream(path)) h.update(c as Buffer)
  return h.digest('hex')
}

async function fsyncDir (dir: string): Promise<void> {
  const fh = await open(dir, 'r')
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}

async function exists (path: string): Promise<boolean> {
  try {
    await lstat(path)
    return true
  } catch {
    return false
  }
}
