/**
 * Drives real BitTorrent clients from Debian (aria2 1.36, transmission-cli 3.00, opentracker,
 * mktorrent) on 127.0.0.1, for interop tests and benchmarks of our engine.
 *
 * Self-contained on purpose: it imports only `node:*` and uses only erasable TypeScript, so vitest
 * and `node --experimental-strip-types` (the benchmarks) can both load it.
 *
 * Nothing here may reach past loopback: every client is bound to 127.0.0.1 and has DHT bootstrap,
 * LPD multicast, PEX and UPnP/NAT-PMP off (see the flag notes on each function). Every child process
 * is tracked and killed by its handle's `stop()`, by `killAll()`, on process exit, and, through
 * `setpriv --pdeathsig KILL`, when the process that spawned it dies without running exit handlers.
 *
 * Things about these clients that are easy to get wrong (all seen on this machine):
 * - Debian's opentracker is built in whitelist mode (WANT_ACCESSLIST_WHITE): it refuses every info
 *   hash not listed in the file given with -w; `tracker.allow()` rewrites it and sends SIGHUP.
 *   Started as root it chroots to -d and setuid()s to -u, and panics ("Still running with root
 *   privileges?!") if -u is root; as any other user it only chdir()s to -d. So as root (CI) we start
 *   it as nobody through setpriv.
 * - transmission 3.00 drops every peer a tracker hands it whose address is 127.x ("martian"), so on
 *   loopback it never dials out: the seeder must connect to it (aria2 does on its next announce).
 *   It accepts incoming plaintext handshakes with encryption 0 or 1 (not 2).
 * - aria2 1.36 speaks UDP trackers only through its DHT socket: with --enable-dht=false a udp://
 *   announce fails with "udp is not supported yet". DHT is therefore switched on, bound to loopback,
 *   with no entry point and an empty routing table, only when a torrent has a udp:// tracker.
 * - aria2 prints everything, errors included, on stdout; transmission-cli's log goes to stderr and
 *   its progress line to a block-buffered stdout.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { createCipheriv, createHash, randomBytes } from 'node:crypto'
import { createSocket } from 'node:dgram'
import { accessSync, constants as fsConstants, createReadStream, rmSync } from 'node:fs'
import { chmod, mkdir, mkdtemp, open, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { get as httpGet } from 'node:http'
import { createServer, type AddressInfo } from 'node:net'
import { tmpdir, userInfo } from 'node:os'
import { delimiter, join, relative, sep } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

export type ClientBin = 'aria2c' | 'transmission-cli' | 'opentracker' | 'mktorrent'

/** The Debian package that provides each binary (the same names are in .ci/run APT_PACKAGES). */
export const DEBIAN_PACKAGES: Record<ClientBin, string> = {
  aria2c: 'aria2',
  'transmission-cli': 'transmission-cli',
  opentracker: 'opentracker',
  mktorrent: 'mktorrent'
}

const LOOPBACK = '127.0.0.1'

// ---------------------------------------------------------------------------------------------
// Binaries

function which (bin: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue
    const candidate = join(dir, bin)
    try {
      accessSync(candidate, fsConstants.X_OK)
      return candidate
    } catch {}
  }
  return undefined
}

/**
 * The path of `bin`, or undefined when it is not installed so a test can `it.skipIf(!requireClient(…))`.
 * In CI (`CI=true`) a missing client THROWS instead: interop tests must fail there, never skip.
 */
export function requireClient (bin: ClientBin): string | undefined {
  const path = which(bin)
  if (path !== undefined) return path
  if (process.env.CI === 'true') {
    throw new Error(`${bin} is not on PATH: CI must install the Debian package "${DEBIAN_PACKAGES[bin]}" (APT_PACKAGES in .ci/run)`)
  }
  return undefined
}

function mustHave (bin: ClientBin): string {
  const path = requireClient(bin)
  if (path === undefined) throw new Error(`${bin} is not installed (Debian package "${DEBIAN_PACKAGES[bin]}")`)
  return path
}

let setprivChecked = false
let setprivPath: string | undefined
/** util-linux setpriv with --pdeathsig (2.33+), to have the kernel kill a client whose parent dies. */
function pdeathsigWrapper (): string | undefined {
  if (!setprivChecked) {
    setprivChecked = true
    const path = which('setpriv')
    if (path !== undefined) {
      const help = spawnSync(path, ['--help'], { encoding: 'utf8' })
      if (help.status === 0 && help.stdout.includes('--pdeathsig')) setprivPath = path
    }
  }
  return setprivPath
}

// ---------------------------------------------------------------------------------------------
// Child processes: tracked, killed on stop / killAll / exit

interface Registry {
  children: Set<ChildProcess>
  dirs: Set<string>
}

const REGISTRY_KEY = Symbol.for('btt.test.interop.clients')

function registry (): Registry {
  const g = globalThis as unknown as Record<symbol, Registry | undefined>
  let reg = g[REGISTRY_KEY]
  if (reg === undefined) {
    const created: Registry = { children: new Set(), dirs: new Set() }
    reg = created
    g[REGISTRY_KEY] = created
    // 'exit' handlers must be synchronous: SIGKILL every client, remove our scratch directories.
    process.once('exit', () => {
      for (const child of created.children) {
        try { child.kill('SIGKILL') } catch {}
      }
      for (const dir of created.dirs) {
        try { rmSync(dir, { recursive: true, force: true }) } catch {}
      }
    })
  }
  return reg
}

/** SIGKILL every client process this module started and is still running. */
export function killAll (): void {
  const reg = registry()
  for (const child of reg.children) {
    try { child.kill('SIGKILL') } catch {}
  }
  reg.children.clear()
}

/** A scratch directory removed on stop and, at the latest, on process exit. */
async function scratchDir (prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  registry().dirs.add(dir)
  return dir
}

async function removeScratch (dir: string): Promise<void> {
  registry().dirs.delete(dir)
  await rm(dir, { recursive: true, force: true })
}

interface Exit {
  code: number | null
  signal: NodeJS.Signals | null
}

interface Proc {
  child: ChildProcess
  /** The last ~16 KiB of stdout and stderr, interleaved as received. */
  output: () => string
  exited: Promise<Exit>
  exit: () => Exit | undefined
  /** Calls back with each new chunk of output (and once with what is already there). */
  watch: (fn: (all: string) => void) => () => void
}

const TAIL_CHARS = 16_384

/**
 * Spawns a client with piped output. Through setpriv when present: --pdeathsig KILL, and with
 * `uid` set, --reuid/--regid/--clear-groups first (setpriv sets the death signal after the uid change,
 * which would otherwise clear it).
 */
function spawnTracked (bin: string, args: string[], opts: { cwd?: string, uid?: number } = {}): Proc {
  const wrapper = pdeathsigWrapper()
  const drop = opts.uid === undefined ? [] : [`--reuid=${opts.uid}`, `--regid=${opts.uid}`, '--clear-groups']
  const [cmd, argv] = wrapper === undefined ? [bin, args] : [wrapper, [...drop, '--pdeathsig', 'KILL', bin, ...args]]
  const child = spawn(cmd, argv, {
    cwd: opts.cwd,
    env: { ...process.env, LC_ALL: 'C', NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  const reg = registry()
  reg.children.add(child)
  let tail = ''
  let exitInfo: Exit | undefined
  const watchers = new Set<(all: string) => void>()
  const onData = (d: Buffer): void => {
    tail = (tail + d.toString('utf8')).slice(-TAIL_CHARS)
    for (const w of watchers) w(tail)
  }
  child.stdout?.on('data', onData)
  child.stderr?.on('data', onData)
  const exited = new Promise<Exit>(resolve => {
    child.once('error', err => {
      tail += `\n[spawn ${bin}: ${err.message}]`
      exitInfo = { code: null, signal: null }
      reg.children.delete(child)
      resolve(exitInfo)
    })
    child.once('exit', (code, signal) => {
      exitInfo = { code, signal }
      reg.children.delete(child)
      resolve(exitInfo)
    })
  })
  return {
    child,
    output: () => tail,
    exited,
    exit: () => exitInfo,
    watch: fn => {
      watchers.add(fn)
      fn(tail)
      return () => { watchers.delete(fn) }
    }
  }
}

/** Send `signal`, give the process `graceMs` to exit, then SIGKILL it; resolves once it is gone. */
async function stopProc (proc: Proc, signal: NodeJS.Signals = 'SIGTERM', graceMs = 3000): Promise<Exit> {
  if (proc.exit() !== undefined) return await proc.exited
  try { proc.child.kill(signal) } catch {}
  const timer = setTimeout(() => { try { proc.child.kill('SIGKILL') } catch {} }, graceMs)
  try {
    return await proc.exited
  } finally {
    clearTimeout(timer)
  }
}

/** Resolves when `pattern` appears in the output; rejects if the process exits first or on timeout. */
async function waitForOutput (proc: Proc, pattern: RegExp, timeoutMs: number, what: string): Promise<RegExpMatchArray> {
  let unwatch = (): void => {}
  let timer: NodeJS.Timeout | undefined
  try {
    return await new Promise<RegExpMatchArray>((resolve, reject) => {
      unwatch = proc.watch(all => {
        const m = all.match(pattern)
        if (m !== null) resolve(m)
      })
      timer = setTimeout(() => reject(new Error(`${what}: timed out after ${timeoutMs} ms\n${proc.output().slice(-2000)}`)), timeoutMs)
      proc.exited.then(e => reject(new Error(`${what}: exited (code ${e.code}, signal ${e.signal})\n${proc.output().slice(-2000)}`)), () => {})
    })
  } finally {
    unwatch()
    clearTimeout(timer)
  }
}

// ---------------------------------------------------------------------------------------------
// Ports

const issuedPorts = new Set<number>()

/**
 * A port free on 127.0.0.1 right now (TCP, and UDP too when asked): bind port 0, read it, release.
 * Another process may still take it before the client binds: callers retry on a bind failure.
 * Never hands out the same port twice in one process.
 */
export async function freePort (opts: { udp?: boolean } = {}): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const server = createServer()
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(0, LOOPBACK, () => resolve())
    })
    const port = (server.address() as AddressInfo).port
    let ok = !issuedPorts.has(port)
    if (ok && opts.udp === true) {
      const sock = createSocket('udp4')
      ok = await new Promise<boolean>(resolve => {
        sock.once('error', () => resolve(false))
        sock.bind(port, LOOPBACK, () => resolve(true))
      })
      await new Promise<void>(resolve => {
        try { sock.close(() => resolve()) } catch { resolve() }
      })
    }
    await new Promise<void>(resolve => server.close(() => resolve()))
    if (ok) {
      issuedPorts.add(port)
      return port
    }
  }
  throw new Error('no free port on 127.0.0.1')
}

// ---------------------------------------------------------------------------------------------
// Bencode (just enough to read .torrent files and tracker replies)

export type BValue = number | Buffer | BValue[] | { [key: string]: BValue }

function bdecodeAt (buf: Buffer, pos: number): [BValue, number] {
  const c = buf[pos]
  if (c === undefined) throw new Error('bencode: unexpected end')
  if (c === 0x69) { // i<n>e
    const end = buf.indexOf(0x65, pos)
    if (end < 0) throw new Error('bencode: unterminated integer')
    return [Number(buf.toString('latin1', pos + 1, end)), end + 1]
  }
  if (c === 0x6c) { // l…e
    const list: BValue[] = []
    let p = pos + 1
    while (buf[p] !== 0x65) {
      const [v, next] = bdecodeAt(buf, p)
      list.push(v)
      p = next
    }
    return [list, p + 1]
  }
  if (c === 0x64) { // d…e
    const dict: { [key: string]: BValue } = Object.create(null) as { [key: string]: BValue }
    let p = pos + 1
    while (buf[p] !== 0x65) {
      const [k, afterKey] = bdecodeAt(buf, p)
      if (!Buffer.isBuffer(k)) throw new Error('bencode: dictionary key is not a string')
      const [v, next] = bdecodeAt(buf, afterKey)
      dict[k.toString('utf8')] = v
      p = next
    }
    return [dict, p + 1]
  }
  if (c >= 0x30 && c <= 0x39) { // <len>:<bytes>
    const colon = buf.indexOf(0x3a, pos)
    const len = Number(buf.toString('latin1', pos, colon))
    const start = colon + 1
    if (colon < 0 || !Number.isSafeInteger(len) || start + len > buf.length) throw new Error('bencode: bad string')
    return [buf.subarray(start, start + len), start + len]
  }
  throw new Error(`bencode: unexpected byte 0x${c.toString(16)} at ${pos}`)
}

export function bdecode (buf: Buffer): BValue {
  return bdecodeAt(buf, 0)[0]
}

function isDict (v: BValue | undefined): v is { [key: string]: BValue } {
  return v !== undefined && typeof v === 'object' && !Array.isArray(v) && !Buffer.isBuffer(v)
}

function str (v: BValue | undefined): string | undefined {
  return Buffer.isBuffer(v) ? v.toString('utf8') : undefined
}

export interface TorrentInfo {
  /** SHA-1 of the bencoded info dictionary, lowercase hex. */
  infoHash: string
  name: string
  pieceLength: number
  totalBytes: number
  private: boolean
  /** Every announce URL (announce plus all announce-list tiers), de-duplicated. */
  announce: string[]
  /** Paths relative to the torrent's root folder (`name`), '/'-separated. */
  files: Array<{ path: string, length: number }>
}

export async function torrentInfo (torrentPath: string): Promise<TorrentInfo> {
  const buf = await readFile(torrentPath)
  if (buf[0] !== 0x64) throw new Error(`${torrentPath}: not a bencoded dictionary`)
  let p = 1
  let infoSpan: [number, number] | undefined
  const top: { [key: string]: BValue } = {}
  while (buf[p] !== 0x65) {
    const [k, afterKey] = bdecodeAt(buf, p)
    const [v, next] = bdecodeAt(buf, afterKey)
    const key = str(k) ?? ''
    if (key === 'info') infoSpan = [afterKey, next]
    top[key] = v
    p = next
  }
  const info = top.info
  if (infoSpan === undefined || !isDict(info)) throw new Error(`${torrentPath}: no info dictionary`)
  const announce = new Set<string>()
  const single = str(top.announce)
  if (single !== undefined) announce.add(single)
  const tiers = top['announce-list']
  if (Array.isArray(tiers)) {
    for (const tier of tiers) {
      if (Array.isArray(tier)) for (const u of tier) { const s = str(u); if (s !== undefined) announce.add(s) }
    }
  }
  const name = str(info.name) ?? ''
  const files: Array<{ path: string, length: number }> = []
  if (Array.isArray(info.files)) {
    for (const f of info.files) {
      if (!isDict(f) || !Array.isArray(f.path) || typeof f.length !== 'number') continue
      files.push({ path: f.path.map(s => str(s) ?? '').join('/'), length: f.length })
    }
  } else if (typeof info.length === 'number') {
    files.push({ path: name, length: info.length })
  }
  return {
    infoHash: createHash('sha1').update(buf.subarray(infoSpan[0], infoSpan[1])).digest('hex'),
    name,
    pieceLength: typeof info['piece length'] === 'number' ? info['piece length'] : 0,
    totalBytes: files.reduce((n, f) => n + f.length, 0),
    private: info.private === 1,
    announce: [...announce],
    files
  }
}

// ---------------------------------------------------------------------------------------------
// HTTP announce (used to probe opentracker)

async function httpGetBuffer (url: string, timeoutMs = 2000): Promise<{ status: number, body: Buffer }> {
  return await new Promise((resolve, reject) => {
    const req = httpGet(url, { agent: false, timeout: timeoutMs }, res => {
      const chunks: Buffer[] = []
      res.on('data', (d: Buffer) => chunks.push(d))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }))
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: timeout`)))
    req.on('error', reject)
  })
}

function percentEncode (bytes: Buffer): string {
  let out = ''
  for (const b of bytes) out += '%' + b.toString(16).padStart(2, '0')
  return out
}

interface AnnounceReply {
  failure?: string
  peers: Array<{ ip: string, port: number }>
}

/**
 * One HTTP announce as a leecher listening on port 1 (nothing listens there, so clients that try it
 * are refused at once); `stopped` takes that entry out of the swarm again.
 */
async function probeAnnounce (announceUrl: string, infoHash: string, peerId: Buffer, event?: 'stopped'): Promise<AnnounceReply> {
  const q = `info_hash=${percentEncode(Buffer.from(infoHash, 'hex'))}&peer_id=${percentEncode(peerId)}` +
    '&port=1&uploaded=0&downloaded=0&left=1&compact=1&numwant=200' + (event === undefined ? '' : `&event=${event}`)
  const { status, body } = await httpGetBuffer(`${announceUrl}?${q}`)
  if (status !== 200) throw new Error(`announce: HTTP ${status}`)
  const reply = bdecode(body)
  if (!isDict(reply)) throw new Error('announce: reply is not a dictionary')
  const failure = str(reply['failure reason'])
  const peers: Array<{ ip: string, port: number }> = []
  const compact = reply.peers
  if (Buffer.isBuffer(compact)) {
    for (let i = 0; i + 6 <= compact.length; i += 6) {
      peers.push({ ip: `${compact[i]}.${compact[i + 1]}.${compact[i + 2]}.${compact[i + 3]}`, port: compact.readUInt16BE(i + 4) })
    }
  }
  return failure === undefined ? { peers } : { failure, peers }
}

// ---------------------------------------------------------------------------------------------
// opentracker

export interface Tracker {
  /** http://127.0.0.1:<port>/announce */
  httpUrl: string
  /** udp://127.0.0.1:<port>/announce (same port number as HTTP) */
  udpUrl: string
  port: number
  process: ChildProcess
  /** Whitelist info hashes (hex) and wait until the tracker accepts announces for them. */
  allow: (...infoHashes: string[]) => Promise<void>
  /** The peers the tracker hands out for `infoHash` right now (probes with an HTTP announce). */
  peers: (infoHash: string) => Promise<Array<{ ip: string, port: number }>>
  /** Resolves once 127.0.0.1:`port` is in the swarm of `infoHash`, i.e. that client has announced. */
  waitForPeer: (infoHash: string, port: number, timeoutMs?: number) => Promise<void>
  output: () => string
  stop: () => Promise<void>
}

/**
 * opentracker on 127.0.0.1, HTTP and UDP on one free port, ready once it answers an HTTP scrape and
 * a UDP connect request.
 *
 * Flags: `-i 127.0.0.1` (must precede -p/-P: they bind at once), `-p`/`-P` the TCP/UDP port,
 * `-w wl.txt` the whitelist (Debian's build refuses any torrent not in it), `-d <scratch dir>`.
 * opentracker never keeps running as root: started as root it chroot()s to -d and setuid()s to -u
 * (default "nobody"; `-u root` panics "Still running with root privileges?!"); as any other user it
 * only chdir()s to -d. Here, as root, it is started as nobody by setpriv instead (no chroot needed,
 * and the parent-death signal is kept); only without setpriv does it get `-u nobody` and chroot (root
 * in a container then also needs CAP_SYS_CHROOT, which Docker grants by default). Either way nobody
 * must read the whitelist: the scratch dir is 0755, the file 0644, and its path is relative to -d
 * (after a chroot an absolute path would not resolve). Reload of the whitelist: SIGHUP.
 */
export async function startTracker (opts: { infoHashes?: string[], timeoutMs?: number } = {}): Promise<Tracker> {
  const bin = mustHave('opentracker')
  const timeoutMs = opts.timeoutMs ?? 10_000
  const dir = await scratchDir('btt-opentracker-')
  await chmod(dir, 0o755)
  const allowed = new Set((opts.infoHashes ?? []).map(h => h.toLowerCase()))
  const whitelist = join(dir, 'wl.txt')
  const writeWhitelist = async (): Promise<void> => {
    // write + rename, so a reload never reads a half-written file
    const tmp = `${whitelist}.${process.pid}.tmp`
    await writeFile(tmp, [...allowed].map(h => h + '\n').join(''), { mode: 0o644 })
    await chmod(tmp, 0o644)
    await rename(tmp, whitelist)
  }
  await writeWhitelist()
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0
  // As root, prefer starting it as nobody (uid/gid 65534) through setpriv: no chroot, and the parent
  // death signal survives. Without setpriv, opentracker's own -u nobody (chroot + setuid) it is.
  const asNobody = isRoot && pdeathsigWrapper() !== undefined

  let lastError: Error | undefined
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort({ udp: true })
    const args = ['-i', LOOPBACK, '-p', String(port), '-P', String(port), '-w', 'wl.txt', '-d', dir]
    if (isRoot && !asNobody) args.push('-u', 'nobody')
    const proc = spawnTracked(bin, args, asNobody ? { cwd: dir, uid: 65534 } : { cwd: dir })
    const httpUrl = `http://${LOOPBACK}:${port}/announce`
    try {
      await waitUntil(async () => {
        if (proc.exit() !== undefined) throw new StopWaiting(`opentracker exited (${JSON.stringify(proc.exit())}): ${proc.output()}`)
        const res = await httpGetBuffer(`http://${LOOPBACK}:${port}/scrape?info_hash=${'%00'.repeat(20)}`, 500).catch(() => undefined)
        return res !== undefined && res.status === 200 && res.body[0] === 0x64
      }, timeoutMs, 'opentracker HTTP scrape')
      await waitUntil(async () => await udpConnectOk(port), timeoutMs, 'opentracker UDP connect')
    } catch (err) {
      lastError = err as Error
      await stopProc(proc, 'SIGKILL')
      continue
    }
    const peerId = Buffer.from('-HP0001-' + randomBytes(6).toString('hex')) // 20 bytes
    const peers = async (infoHash: string): Promise<Array<{ ip: string, port: number }>> => {
      const reply = await probeAnnounce(httpUrl, infoHash, peerId)
      await probeAnnounce(httpUrl, infoHash, peerId, 'stopped').catch(() => undefined)
      if (reply.failure !== undefined) throw new Error(`tracker: ${reply.failure}`)
      return reply.peers.filter(p => p.port !== 1)
    }
    const tracker: Tracker = {
      httpUrl,
      udpUrl: `udp://${LOOPBACK}:${port}/announce`,
      port,
      process: proc.child,
      output: proc.output,
      allow: async (...infoHashes) => {
        for (const h of infoHashes) allowed.add(h.toLowerCase())
        await writeWhitelist()
        proc.child.kill('SIGHUP')
        for (const h of infoHashes) {
          await waitUntil(async () => {
            const reply = await probeAnnounce(httpUrl, h.toLowerCase(), peerId)
            if (reply.failure !== undefined) return false
            await probeAnnounce(httpUrl, h.toLowerCase(), peerId, 'stopped').catch(() => undefined)
            return true
          }, timeoutMs, `opentracker whitelist reload for ${h}`)
        }
      },
      peers,
      waitForPeer: async (infoHash, peerPort, waitMs = 15_000) => {
        await waitUntil(async () => (await peers(infoHash)).some(p => p.ip === LOOPBACK && p.port === peerPort),
          waitMs, `127.0.0.1:${peerPort} announcing ${infoHash} to the tracker`)
      },
      stop: async () => {
        await stopProc(proc, 'SIGTERM', 2000)
        await removeScratch(dir)
      }
    }
    return tracker
  }
  await removeScratch(dir)
  throw new Error(`opentracker did not start: ${lastError?.message ?? 'unknown'}`)
}

/** BEP 15 connect request; true when a well-formed connect reply comes back. */
async function udpConnectOk (port: number): Promise<boolean> {
  const sock = createSocket('udp4')
  const tid = randomBytes(4)
  const req = Buffer.alloc(16)
  req.writeBigUInt64BE(0x41727101980n, 0)
  req.writeUInt32BE(0, 8)
  tid.copy(req, 12)
  try {
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject)
      sock.bind(0, LOOPBACK, () => resolve())
    })
    return await new Promise<boolean>(resolve => {
      const timer = setTimeout(() => resolve(false), 300)
      sock.once('error', () => { clearTimeout(timer); resolve(false) })
      sock.on('message', msg => {
        if (msg.length >= 16 && msg.readUInt32BE(0) === 0 && msg.subarray(4, 8).equals(tid)) {
          clearTimeout(timer)
          resolve(true)
        }
      })
      sock.send(req, port, LOOPBACK)
    })
  } finally {
    sock.close()
  }
}

/** Thrown from a waitUntil() check to give up at once instead of retrying. */
class StopWaiting extends Error {}

async function waitUntil (check: () => Promise<boolean>, timeoutMs: number, what: string, everyMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let lastErr: unknown
  for (;;) {
    try {
      if (await check()) return
    } catch (err) {
      if (err instanceof StopWaiting) throw err
      lastErr = err
    }
    if (Date.now() >= deadline) {
      const detail = lastErr instanceof Error ? `: ${lastErr.message}` : ''
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${detail}`)
    }
    await sleep(everyMs)
  }
}

// ---------------------------------------------------------------------------------------------
// aria2

export interface Aria2Handle {
  /** BitTorrent TCP listen port (127.0.0.1). */
  port: number
  /** DHT UDP port, only when DHT had to be on for a udp:// tracker. */
  dhtPort?: number
  process: ChildProcess
  output: () => string
  /** False once the process has exited (for diagnostics: a download failing because its seeder died). */
  running: () => boolean
  stop: () => Promise<void>
}

/**
 * An empty aria2 DHT routing table (DHTRoutingTableSerializer format 2, version 3, zero nodes). With
 * it aria2 has no node to bootstrap from and does not log an ERROR about a missing dht.dat.
 */
function emptyDhtTable (): Buffer {
  const buf = Buffer.alloc(56)
  buf[0] = 0xa1
  buf[1] = 0xa2
  buf[2] = 0x02
  buf[7] = 0x03
  buf.writeBigUInt64BE(BigInt(Math.floor(Date.now() / 1000)), 8)
  randomBytes(20).copy(buf, 24)
  return buf
}

/**
 * Flags every aria2 process gets, and why:
 * --no-conf                ignore ~/.aria2/aria2.conf of whoever runs the tests
 * --interface=127.0.0.1    binds the BT listen socket, outgoing peer/tracker sockets and the DHT socket
 *                          to loopback (without it aria2 listens on 0.0.0.0)
 * --disable-ipv6           no IPv6 sockets at all
 * --enable-dht6=false, --bt-enable-lpd=false, --enable-peer-exchange=false  no discovery but the tracker
 * --enable-dht             only for udp:// trackers (aria2 sends UDP tracker traffic through the DHT
 *                          socket); then --dht-listen-port, a private --dht-file-path holding an empty
 *                          table, and no --dht-entry-point: nothing to contact beyond loopback peers
 * --bt-tracker-interval=1  announce every second (overrides the tracker's ~30 min interval) so peers
 *                          find each other within a second or two
 * --bt-tracker-connect-timeout / --bt-tracker-timeout=5  fail fast if the tracker is gone
 * --max-*-limit=0          no rate limits
 * --file-allocation=none   no preallocation (falloc/prealloc would add seconds for big files)
 * --summary-interval=0, --show-console-readout=false, --enable-color=false, --console-log-level=notice
 *                          quiet, but keeps the "listening on TCP port" line we wait for and ERRORs
 *                          (aria2 prints all of it on stdout)
 * --enable-rpc=false       no RPC listener
 * --stop-with-process=<our pid>  aria2 quits by itself if the test process dies
 */
function aria2CommonArgs (listenPort: number, dht: { port: number, file: string } | undefined): string[] {
  const args = [
    '--no-conf=true',
    `--interface=${LOOPBACK}`,
    '--disable-ipv6=true',
    `--listen-port=${listenPort}`,
    '--enable-dht6=false',
    '--bt-enable-lpd=false',
    '--enable-peer-exchange=false',
    '--bt-tracker-interval=1',
    '--bt-tracker-connect-timeout=5',
    '--bt-tracker-timeout=5',
    '--max-upload-limit=0',
    '--max-overall-upload-limit=0',
    '--max-overall-download-limit=0',
    '--file-allocation=none',
    '--summary-interval=0',
    '--show-console-readout=false',
    '--enable-color=false',
    '--console-log-level=notice',
    '--enable-rpc=false',
    `--stop-with-process=${process.pid}`
  ]
  if (dht === undefined) {
    args.push('--enable-dht=false')
  } else {
    args.push('--enable-dht=true', `--dht-listen-port=${dht.port}`, `--dht-file-path=${dht.file}`)
  }
  return args
}

interface Aria2Start {
  proc: Proc
  port: number
  dhtPort?: number
  scratch: string
}

/** Spawns aria2c and waits for its listen socket(s); retries with new ports when a bind fails. */
async function spawnAria2 (torrentPath: string, role: string, extra: string[], fixedPort: number | undefined, timeoutMs: number): Promise<Aria2Start> {
  const bin = mustHave('aria2c')
  const info = await torrentInfo(torrentPath)
  const needsDht = info.announce.some(u => u.startsWith('udp:'))
  const scratch = await scratchDir('btt-aria2-')
  let lastError: Error | undefined
  for (let attempt = 0; attempt < (fixedPort === undefined ? 5 : 1); attempt++) {
    const port = fixedPort ?? await freePort()
    let dht: { port: number, file: string } | undefined
    if (needsDht) {
      dht = { port: await freePort({ udp: true }), file: join(scratch, 'dht.dat') }
      await writeFile(dht.file, emptyDhtTable())
    }
    const proc = spawnTracked(bin, [...aria2CommonArgs(port, dht), ...extra, torrentPath])
    try {
      await waitForOutput(proc, new RegExp(`IPv4 BitTorrent: listening on TCP port ${port}\\b`), timeoutMs, `aria2 ${role}`)
      if (dht !== undefined) await waitForOutput(proc, new RegExp(`IPv4 DHT: listening on UDP port ${dht.port}\\b`), timeoutMs, `aria2 ${role} DHT`)
      return dht === undefined ? { proc, port, scratch } : { proc, port, dhtPort: dht.port, scratch }
    } catch (err) {
      lastError = err as Error
      await stopProc(proc, 'SIGKILL')
    }
  }
  await removeScratch(scratch)
  throw lastError ?? new Error(`aria2 ${role} did not start`)
}

/**
 * aria2c seeding an existing complete download: `dir` is the folder that CONTAINS the torrent's root
 * (aria2's --dir), e.g. `work/src` for a torrent made from `work/src/tree`.
 *
 * --bt-seed-unverified=true (default) seeds the files as they are, without hashing them first; it is
 * the faster valid choice when the data is the very tree mktorrent hashed (512 MiB: instant vs. a
 * full SHA-1 pass with --check-integrity). `verify: true` uses --check-integrity=true
 * --bt-hash-check-seed=true instead, for data of unknown provenance.
 * --seed-ratio=0.0 with no --seed-time seeds until stopped. No --bt-stop-timeout: it counts *download*
 * speed, which is always 0 for a seeder, and would end it.
 * Resolves once aria2 listens; it announces about a second later: use `tracker.waitForPeer()`.
 */
export async function startAria2Seeder (opts: { torrentPath: string, dir: string, port?: number, extraArgs?: string[], verify?: boolean, timeoutMs?: number }): Promise<Aria2Handle> {
  const verify = opts.verify === true
    ? ['--check-integrity=true', '--bt-hash-check-seed=true']
    : ['--bt-seed-unverified=true']
  const started = await spawnAria2(opts.torrentPath, 'seeder', [
    `--dir=${opts.dir}`,
    '--seed-ratio=0.0',
    ...verify,
    ...(opts.extraArgs ?? [])
  ], opts.port, opts.timeoutMs ?? 30_000)
  const handle: Aria2Handle = {
    port: started.port,
    process: started.proc.child,
    output: started.proc.output,
    running: () => started.proc.exit() === undefined,
    stop: async () => {
      await stopProc(started.proc, 'SIGTERM', 3000)
      await removeScratch(started.scratch)
    }
  }
  if (started.dhtPort !== undefined) handle.dhtPort = started.dhtPort
  return handle
}

export interface DownloadResult {
  /** From spawning the client to its verified completion (aria2: to its exit 0). */
  ms: number
  /** Date.now() when the client was spawned. */
  startedAt: number
  /** The client's BitTorrent listen port. */
  port: number
}

/**
 * aria2c downloads the torrent into `dir` (its --dir: the torrent's root folder is created inside)
 * and exits: --seed-time=0 ends it as soon as every piece has passed its SHA-1 check (aria2 checks
 * each piece as it completes). --check-integrity=true is added only when the target already exists
 * (a resumed download): on a fresh directory it has nothing to check and only logs a bogus
 * "Checksum error detected". Rejects with aria2's output tail on a non-zero exit or on timeout
 * (after killing it).
 */
export async function aria2Download (opts: { torrentPath: string, dir: string, timeoutMs: number, extraArgs?: string[], port?: number }): Promise<DownloadResult> {
  const info = await torrentInfo(opts.torrentPath)
  await mkdir(opts.dir, { recursive: true })
  const resuming = await stat(join(opts.dir, info.name)).then(() => true, () => false)
  const startedAt = Date.now()
  const deadline = startedAt + opts.timeoutMs
  const started = await spawnAria2(opts.torrentPath, 'downloader', [
    `--dir=${opts.dir}`,
    '--seed-time=0',
    ...(resuming ? ['--check-integrity=true'] : []),
    ...(opts.extraArgs ?? [])
  ], opts.port, Math.max(1000, deadline - Date.now()))
  let timer: NodeJS.Timeout | undefined
  try {
    const result = await Promise.race([
      started.proc.exited,
      new Promise<'timeout'>(resolve => { timer = setTimeout(() => resolve('timeout'), Math.max(0, deadline - Date.now())) })
    ])
    if (result === 'timeout') {
      await stopProc(started.proc, 'SIGKILL')
      throw new Error(`aria2 download timed out after ${opts.timeoutMs} ms\n${started.proc.output().slice(-4000)}`)
    }
    if (result.code !== 0) {
      const why = result.code === 7 ? ': it got SIGINT/SIGTERM with the download unfinished' : ''
      throw new Error(`aria2 download failed (code ${result.code}${why}, signal ${result.signal})\n${started.proc.output().slice(-4000)}`)
    }
    return { ms: Date.now() - startedAt, startedAt, port: started.port }
  } finally {
    clearTimeout(timer)
    await stopProc(started.proc, 'SIGKILL')
    await removeScratch(started.scratch)
  }
}

// ---------------------------------------------------------------------------------------------
// transmission-cli

/**
 * transmission-cli 3.00 downloads the torrent into `dir` (-w; the root folder is created inside).
 *
 * Flags and settings: transmission-cli has no flags for DHT/LPD/PEX/uTP (its `-D` is "no download
 * limit", not "no DHT"), so a fresh config dir (-g, never ~/.config) gets a settings.json first:
 * dht/lpd/pex/port-forwarding/utp off (uTP off: plain TCP like our engine), rpc off, blocklist off,
 * bind-address-ipv4 127.0.0.1 (listen and outgoing sockets) and -ipv6 ::1, no speed limits, no
 * ".part" renaming, encryption 1 (its default, "preferred": seen to accept a plaintext-only peer's
 * incoming handshake; 0 "tolerated" too, 2 "required" closes it). -p the peer port, -M no portmap.
 *
 * transmission 3.00 ignores every 127.x peer a tracker returns (net.c isMartianAddr), so on loopback
 * it only gets incoming connections: the seeder must dial it (aria2 with --bt-tracker-interval=1 does
 * on its next announce). It also only turns "interested" on its 10 s rechoke pulse, so even a tiny
 * download takes > 10 s.
 *
 * Completion: the -f script runs when the torrent is complete, i.e. every piece passed its SHA-1
 * check; it writes a marker file we poll. transmission keeps seeding, so it is then stopped with
 * SIGINT (the only signal it handles gracefully: it flushes its write cache and announces "stopped";
 * SIGTERM would kill it with blocks still cached), SIGKILL after 15 s. `ms` runs to the completion.
 */
export async function transmissionDownload (opts: { torrentPath: string, dir: string, timeoutMs: number, port?: number, encryption?: 0 | 1 | 2, settings?: Record<string, unknown> }): Promise<DownloadResult> {
  const bin = mustHave('transmission-cli')
  await mkdir(opts.dir, { recursive: true })
  const config = await scratchDir('btt-transmission-')
  const marker = join(config, 'done.marker')
  const script = join(config, 'done.sh')
  await writeFile(script, `#!/bin/sh\necho "$TR_TORRENT_HASH" > '${marker.replaceAll('\'', '\'\\\'\'')}'\n`, { mode: 0o755 })
  const startedAt = Date.now()
  const deadline = startedAt + opts.timeoutMs
  let lastError: Error | undefined
  try {
    for (let attempt = 0; attempt < (opts.port === undefined ? 5 : 1); attempt++) {
      const port = opts.port ?? await freePort()
      const settings = {
        'dht-enabled': false,
        'lpd-enabled': false,
        'pex-enabled': false,
        'utp-enabled': false,
        'port-forwarding-enabled': false,
        'rpc-enabled': false,
        'blocklist-enabled': false,
        'bind-address-ipv4': LOOPBACK,
        'bind-address-ipv6': '::1',
        'peer-port': port,
        'peer-port-random-on-start': false,
        encryption: opts.encryption ?? 1,
        'download-dir': opts.dir,
        'incomplete-dir-enabled': false,
        'rename-partial-files': false,
        'start-added-torrents': true,
        'speed-limit-down-enabled': false,
        'speed-limit-up-enabled': false,
        'alt-speed-enabled': false,
        'ratio-limit-enabled': false,
        'idle-seeding-limit-enabled': false,
        'scrape-paused-torrents-enabled': false,
        'message-level': 1,
        ...opts.settings
      }
      await writeFile(join(config, 'settings.json'), JSON.stringify(settings, null, 2))
      const proc = spawnTracked(bin, ['-g', config, '-w', opts.dir, '-p', String(port), '-M', '-f', script, opts.torrentPath])
      try {
        await waitUntil(async () => {
          if (proc.exit() !== undefined) throw new StopWaiting(`transmission-cli exited (${JSON.stringify(proc.exit())})`)
          if (/Couldn't bind port \d+ on 127\.0\.0\.1/.test(proc.output())) throw new StopWaiting('transmission-cli: peer port in use')
          return await stat(marker).then(() => true, () => false)
        }, Math.max(0, deadline - Date.now()), 'transmission-cli to complete the download', 100)
        const ms = Date.now() - startedAt
        const exit = await stopProc(proc, 'SIGINT', 15_000)
        if (exit.signal === 'SIGKILL') throw new Error(`transmission-cli did not stop on SIGINT\n${proc.output().slice(-4000)}`)
        return { ms, startedAt, port }
      } catch (err) {
        await stopProc(proc, 'SIGKILL')
        lastError = new Error(`transmission download failed: ${(err as Error).message}\n${proc.output().slice(-4000)}`)
        if (!/port in use/.test((err as Error).message)) break
      }
    }
    throw lastError ?? new Error('transmission download failed')
  } finally {
    await removeScratch(config)
  }
}

// ---------------------------------------------------------------------------------------------
// Test data

export interface TreeFile {
  /** Relative to the tree root, '/'-separated. */
  path: string
  size: number
}

/** mulberry32: a tiny deterministic PRNG for the layout (sizes); the bytes come from AES-CTR. */
function prng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const TREE_DIRS = ['', 'sub', 'sub/deeper', 'other dir']

/**
 * Writes `files` files totalling exactly `totalBytes` under `dir`, spread over nested folders (one
 * with a space in its name), deterministic for a given `seed`. Sizes vary; file #1 is tiny (< 100 B,
 * so a piece spans several files) and every size except possibly the last is odd, i.e. not a multiple
 * of any piece length. Content is the AES-128-CTR keystream of a key derived from `seed`, one counter
 * range per file (> 1 GB/s of generation; writing is bound by the page cache).
 */
export async function makeTestTree (dir: string, opts: { totalBytes: number, files: number, seed: number }): Promise<TreeFile[]> {
  const count = Math.max(2, Math.floor(opts.files))
  if (opts.totalBytes < count * 128) throw new Error(`makeTestTree: ${opts.totalBytes} bytes is too little for ${count} files`)
  const rand = prng(opts.seed)
  const tiny = 1 + 2 * Math.floor(rand() * 49) // odd, 1..97
  const weights = Array.from({ length: count - 1 }, () => 1 + Math.floor(rand() * 8))
  const weightSum = weights.reduce((a, b) => a + b, 0)
  const rest = opts.totalBytes - tiny
  const sizes: number[] = []
  let assigned = 0
  for (let i = 0; i < weights.length; i++) {
    if (i === weights.length - 1) {
      sizes.push(rest - assigned)
    } else {
      let s = Math.max(1, Math.floor(rest * (weights[i] as number) / weightSum))
      if (s % 2 === 0) s -= 1
      sizes.push(s)
      assigned += s
    }
  }
  sizes.splice(1, 0, tiny)

  const key = createHash('sha256').update(`btt-interop-tree:${opts.seed}`).digest().subarray(0, 16)
  const zeros = Buffer.alloc(4 << 20)
  const files: TreeFile[] = []
  for (let i = 0; i < sizes.length; i++) {
    const size = sizes[i] as number
    const sub = TREE_DIRS[i % TREE_DIRS.length] as string
    const name = i === 2 ? `file ${String(i).padStart(2, '0')} with spaces.bin` : `file-${String(i).padStart(2, '0')}.bin`
    const rel = sub === '' ? name : `${sub}/${name}`
    const abs = join(dir, ...rel.split('/'))
    await mkdir(join(abs, '..'), { recursive: true })
    const iv = Buffer.alloc(16)
    iv.writeUInt32BE(i, 4) // the high 64 bits pick the file: its counter range never overlaps another's
    const cipher = createCipheriv('aes-128-ctr', key, iv)
    const fh = await open(abs, 'w')
    try {
      let left = size
      while (left > 0) {
        const n = Math.min(left, zeros.length)
        const chunk = cipher.update(zeros.subarray(0, n))
        await fh.write(chunk, 0, chunk.length)
        left -= n
      }
    } finally {
      await fh.close()
    }
    files.push({ path: rel, size })
  }
  return files
}

/** sha256 of every regular file under `dir`, keyed by '/'-separated relative path, sorted by path. */
export async function hashTree (dir: string): Promise<Map<string, string>> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true })
  const paths = entries
    .filter(e => e.isFile())
    .map(e => relative(dir, join(e.parentPath, e.name)).split(sep).join('/'))
    .sort()
  const out = new Map<string, string>()
  for (const rel of paths) {
    const hash = createHash('sha256')
    for await (const chunk of createReadStream(join(dir, ...rel.split('/')), { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer)
    out.set(rel, hash.digest('hex'))
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// mktorrent

/**
 * mktorrent 1.1: a .torrent of folder `dir` (its basename is the torrent's name) at `out`
 * (overwritten). Each announce URL becomes its own tier (-a per URL). `pieceLength` in bytes, a
 * power of two from 32 KiB (default 256 KiB). `source` (-s) goes into the info dictionary: the same
 * data with another source is another info hash, i.e. another swarm.
 */
export async function mktorrent (opts: { dir: string, out: string, announce: string[], pieceLength?: number, private?: boolean, source?: string }): Promise<TorrentInfo & { path: string }> {
  const bin = mustHave('mktorrent')
  if (opts.announce.length === 0) throw new Error('mktorrent: at least one announce URL')
  const args: string[] = []
  for (const url of opts.announce) args.push('-a', url)
  if (opts.pieceLength !== undefined) {
    const exp = Math.log2(opts.pieceLength)
    if (!Number.isInteger(exp) || exp < 15 || exp > 28) throw new Error(`mktorrent: piece length ${opts.pieceLength} is not a power of two in 2^15..2^28`)
    args.push('-l', String(exp))
  }
  if (opts.private === true) args.push('-p')
  if (opts.source !== undefined) args.push('-s', opts.source)
  args.push('-o', opts.out, opts.dir)
  await rm(opts.out, { force: true })
  const proc = spawnTracked(bin, args)
  const exit = await proc.exited
  if (exit.code !== 0) throw new Error(`mktorrent failed (code ${exit.code})\n${proc.output().slice(-4000)}`)
  return { ...await torrentInfo(opts.out), path: opts.out }
}
