/**
 * `btt-node doctor`: checks a node home and its surroundings and says, for each problem, what to do.
 * Every check has a deadline; nothing here may hang the command. The network, the clock and the
 * free-space source are injectable (DoctorInit) so unit tests can seed faults without root or a
 * full disk; the defaults use real sockets and statfs.
 */
import { createSocket } from 'node:dgram'
import { randomBytes } from 'node:crypto'
import http from 'node:http'
import https from 'node:https'
import { connect, createServer, isIP } from 'node:net'
import { lstat, opendir, stat, statfs } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { generateKeyPair, type KeyPair, type LedgerInfo } from '@btt/channel'
import { HttpLedgerClient } from '@btt/ledger'
import { multiaddr } from '@multiformats/multiaddr'
import { AdminClient } from './api/client.js'
import type { NodeStatus } from './api/types.js'
import { loadConfig } from './config/load.js'
import type { NodeConfig } from './config/schema.js'
import { homePaths, isAlive, readApiToken, readRuntimeInfo, type HomePaths, type RuntimeInfo } from './home.js'
import { readKeyFile } from './keys.js'
import type { ServiceDefinition } from './service.js'

export type DoctorStatus = 'ok' | 'warn' | 'fail' | 'skip'

/** One line of the report. `fix` is empty when there is nothing to do. */
export interface DoctorCheck {
  id: DoctorCheckId
  status: DoctorStatus
  detail: string
  fix: string
}

export type DoctorCheckId = 'config' | 'home' | 'keys' | 'api' | 'ports.p2p' | 'ports.bittorrent' | 'disk' | 'ledger' | 'clock' | 'trackers' | 'dht'

export interface DoctorReport {
  checks: DoctorCheck[]
  /** No check failed (warnings allowed). */
  ok: boolean
}

/** What the doctor needs of the network. Each call settles within its own timeout. */
export interface DoctorNetwork {
  /** Resolves when a TCP connection to host:port is accepted; rejects with the socket error. */
  connect(host: string, port: number, timeoutMs: number): Promise<void>
  /** Resolves when a TCP server could listen on host:port (and closes it again). */
  canBind(host: string, port: number): Promise<void>
  /** One GET of `url`: the local clock before and after, and the server's `Date` header. */
  httpDate(url: string, timeoutMs: number, now: () => number): Promise<{ sentAt: number, receivedAt: number, date: string | undefined }>
  /** A KRPC ping to a DHT node (BEP 5); resolves with the answering node's address. */
  dhtPing(host: string, port: number, timeoutMs: number): Promise<string>
}

/** How much room is left on the filesystem holding `path`, and which filesystem that is. */
export interface FreeSpace {
  /** Bytes an unprivileged process may still write. */
  free: number
  total: number
  /** Device id: paths with the same one share their free space. */
  device: number
}

/** Probes one configured tracker (an announce URL); resolves with a short description of its answer. */
export type TrackerProbe = (announceUrl: string, signal: AbortSignal) => Promise<string>

export interface DoctorInit {
  /** The service definitions of this build: the config schema has a section for each. */
  services: readonly ServiceDefinition[]
  /** Environment with BTT_NODE_* settings, as the node would read it (default: none). */
  env?: Record<string, string | undefined>
  /** The clock, unix ms (default Date.now). */
  now?: () => number
  network?: Partial<DoctorNetwork>
  freeSpace?: (path: string) => Promise<FreeSpace>
  /** Bytes the files under `path` take (default: a bounded walk of the directory). */
  usedSpace?: (path: string) => Promise<number>
  /** Probe for the configured trackers; without one the tracker check is skipped. */
  trackerProbe?: TrackerProbe
  /** The uid that must own the home and its keys (default process.getuid()). */
  uid?: number
  /** Deadline of each check (default CHECK_TIMEOUT_MS). */
  checkTimeoutMs?: number
  /** Deadline of one network probe inside a check (default PROBE_TIMEOUT_MS). */
  probeTimeoutMs?: number
}

/** Each check gives up after this long; probes inside it have a shorter deadline so that it can still report which one hung. */
export const CHECK_TIMEOUT_MS = 8_000
/** One connect, ping or HTTP request: a healthy peer on the internet answers well within 3 s. */
export const PROBE_TIMEOUT_MS = 3_000
/**
 * Clock skew against the ledger above this fails: channel expiry and the claim margin are judged by
 * the ledger's clock, so a node behind it claims late (and can lose a payment), and one ahead
 * refuses channels that are still valid. The `Date` header has 1 s resolution, so a few seconds is
 * the smallest skew that can be told from measurement error.
 */
export const CLOCK_SKEW_FAIL_MS = 5_000
/** Above this, a warning: worth fixing before it grows. */
export const CLOCK_SKEW_WARN_MS = 2_000
/** Room beyond the promised quotas for databases, logs, piece caches and temporary files. */
export const DISK_HEADROOM_BYTES = 512 * 1024 * 1024
/** A directory walk measuring used space stops after this many entries (and reports a lower bound). */
const MAX_WALK_ENTRIES = 200_000
const MIB = 1024 * 1024

class CheckTimeoutError extends Error {}

/** Run every check on `home` and return the report. Never throws for a problem of the node; a bug in a check becomes its `fail`. */
export async function runDoctor (home: string, init: DoctorInit): Promise<DoctorReport> {
  const paths = homePaths(home)
  const now = init.now ?? Date.now
  const net: DoctorNetwork = { ...defaultNetwork, ...init.network }
  const freeSpace = init.freeSpace ?? statfsFreeSpace
  const usedSpace = init.usedSpace ?? walkUsedSpace
  const checkTimeoutMs = init.checkTimeoutMs ?? CHECK_TIMEOUT_MS
  const probeMs = Math.min(init.probeTimeoutMs ?? PROBE_TIMEOUT_MS, checkTimeoutMs)
  const uid = init.uid ?? process.getuid?.() ?? -1
  const run = async (id: DoctorCheckId, fn: (signal: AbortSignal) => Promise<Omit<DoctorCheck, 'id'>>): Promise<DoctorCheck> => await guarded(id, checkTimeoutMs, fn)

  // local checks first: everything else depends on the config and on whether a node runs
  let config: NodeConfig | undefined
  const configCheck = await run('config', async () => {
    const r = await checkConfig(paths, init)
    config = r.config
    return r.check
  })
  const homeCheck = await run('home', async () => await checkHome(paths, uid))
  const keysCheck = await run('keys', async () => await checkKeys(paths, uid))

  let node: RunningNode = { state: 'stopped' }
  const apiCheck = await run('api', async () => {
    const r = await checkApi(paths, probeMs)
    node = r.node
    return r.check
  })

  const noConfig = { status: 'skip' as const, detail: 'config.toml does not load (see the config check)', fix: '' }
  const later: Array<Promise<DoctorCheck>> = [
    run('ports.p2p', async () => config === undefined ? noConfig : await checkP2pPorts(config, node, net, probeMs)),
    run('ports.bittorrent', async () => config === undefined ? noConfig : await checkBitTorrentPort(config, node, net, probeMs)),
    run('disk', async () => config === undefined ? noConfig : await checkDisk(paths, config, freeSpace, usedSpace)),
    run('ledger', async () => config === undefined ? noConfig : await checkLedger(paths, config, probeMs)),
    run('clock', async () => config === undefined ? noConfig : await checkClock(config, net, now, probeMs)),
    run('trackers', async signal => config === undefined ? noConfig : await checkTrackers(config, init.trackerProbe, probeMs, signal)),
    run('dht', async () => config === undefined ? noConfig : await checkDht(config, net, probeMs))
  ]
  const checks = [configCheck, homeCheck, keysCheck, apiCheck, ...await Promise.all(later)]
  return { checks, ok: checks.every(c => c.status !== 'fail') }
}

/** Run one check under its deadline; a timeout or an unexpected error is that check's failure. */
async function guarded (id: DoctorCheckId, timeoutMs: number, fn: (signal: AbortSignal) => Promise<Omit<DoctorCheck, 'id'>>): Promise<DoctorCheck> {
  const ac = new AbortController()
  let timer: NodeJS.Timeout | undefined
  try {
    const result = await Promise.race([
      fn(ac.signal),
      new Promise<never>((_resolve, reject) => { timer = setTimeout(() => { reject(new CheckTimeoutError()) }, timeoutMs) })
    ])
    return { id, ...result }
  } catch (err) {
    if (err instanceof CheckTimeoutError) {
      return { id, status: 'fail', detail: `did not finish within ${timeoutMs / 1000} s`, fix: 'something it asks (a host, a disk) is not answering; run the doctor again, and look at the network and disks of this machine' }
    }
    return { id, status: 'fail', detail: `the check itself failed: ${(err as Error).message}`, fix: 'report this as a bug of btt-node doctor' }
  } finally {
    clearTimeout(timer)
    ac.abort()
  }
}

// --- config, home, keys ----------------------------------------------------------------------

async function checkConfig (paths: HomePaths, init: DoctorInit): Promise<{ check: Omit<DoctorCheck, 'id'>, config?: NodeConfig }> {
  if (!(await exists(paths.config))) {
    return { check: { status: 'fail', detail: `${paths.config} does not exist: this is not an initialised node home`, fix: `run \`btt-node init --home ${paths.home}\` (or point --home / BTT_NODE_HOME at your home)` } }
  }
  try {
    const config = await loadConfig({ file: paths.config, services: init.services, env: init.env ?? {} })
    return { check: { status: 'ok', detail: `${paths.config} is valid`, fix: '' }, config }
  } catch (err) {
    const e = err as Error & { code?: string }
    if (e.code === 'CONFIG_INVALID') {
      return { check: { status: 'fail', detail: e.message, fix: `fix the keys named above in ${paths.config} (or the BTT_NODE_* variables), e.g. with \`btt-node config set <key> <value>\`; see docs/configuration.md. The node does not start until then.` } }
    }
    return { check: { status: 'fail', detail: `cannot read ${paths.config}: ${e.message}`, fix: `make ${paths.config} readable by this user` } }
  }
}

async function checkHome (paths: HomePaths, uid: number): Promise<Omit<DoctorCheck, 'id'>> {
  const problems: string[] = []
  const fixes: string[] = []
  for (const [path, want] of [[paths.home, 0o700], [paths.keysDir, 0o700]] as const) {
    let st
    try {
      st = await stat(path)
    } catch (err) {
      problems.push(`${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
      fixes.push(path === paths.home ? `run \`btt-node init --home ${paths.home}\`` : `restore ${path} from your backup`)
      continue
    }
    if ((st.mode & 0o077) !== 0) {
      problems.push(`${path} is ${mode(st.mode)}, others can look inside`)
      fixes.push(`chmod ${want.toString(8)} ${path}`)
    }
    if (uid >= 0 && st.uid !== uid) {
      problems.push(`${path} is owned by uid ${st.uid}, not by this user (uid ${uid})`)
      fixes.push(`run the node as the owner, or \`chown -R $(id -un) ${paths.home}\``)
    }
  }
  if (problems.length === 0) return { status: 'ok', detail: `${paths.home} is 0700 and yours`, fix: '' }
  return { status: 'fail', detail: problems.join('; '), fix: fixes.join('; ') }
}

async function checkKeys (paths: HomePaths, uid: number): Promise<Omit<DoctorCheck, 'id'>> {
  const problems: string[] = []
  const fixes: string[] = []
  const files = [[paths.identityKey, 'identity'], [paths.walletKey, 'wallet'], [paths.apiToken, 'token']] as const
  for (const [path, purpose] of files) {
    let st
    try {
      st = await stat(path)
    } catch (err) {
      const missing = (err as NodeJS.ErrnoException).code === 'ENOENT'
      problems.push(`${path} ${missing ? 'is missing' : `cannot be read: ${(err as Error).message}`}`)
      fixes.push(purpose === 'token'
        ? `write a new token: \`head -c 32 /dev/urandom | base64 > ${path} && chmod 600 ${path}\` (then restart the node)`
        : `restore ${path} from your backup (a new key is a new ${purpose === 'wallet' ? 'wallet: the old balance stays with the old key' : 'peer id'})`)
      continue
    }
    if ((st.mode & 0o077) !== 0) {
      problems.push(`${path} is ${mode(st.mode)}: readable by others${purpose === 'wallet' ? ' (anyone who reads it can spend your BTT)' : ''}; the node refuses to start`)
      fixes.push(`chmod 600 ${path}`)
    }
    if (uid >= 0 && st.uid !== uid) {
      problems.push(`${path} is owned by uid ${st.uid}, not by this user (uid ${uid})`)
      fixes.push(`\`chown $(id -un) ${path}\`, or run the node as its owner`)
    }
    if ((st.mode & 0o077) === 0 && purpose !== 'token') {
      try {
        await readKeyFile(path, purpose)
      } catch (err) {
        problems.push((err as Error).message)
        fixes.push(`restore ${path} from your backup`)
      }
    }
  }
  if (problems.length === 0) return { status: 'ok', detail: 'identity.key, wallet.key and api.token exist, are 0600 and yours', fix: '' }
  return { status: 'fail', detail: problems.join('; '), fix: fixes.join('; ') }
}

// --- the running node ------------------------------------------------------------------------

type RunningNode =
  | { state: 'stopped' }
  /** A live process owns node.json; `status` is what its API said (undefined when it did not answer). */
  | { state: 'running', info: RuntimeInfo, status?: NodeStatus }

async function checkApi (paths: HomePaths, timeoutMs: number): Promise<{ check: Omit<DoctorCheck, 'id'>, node: RunningNode }> {
  const info = await readRuntimeInfo(paths)
  if (info === undefined) {
    return { node: { state: 'stopped' }, check: { status: 'skip', detail: 'no node runs on this home (no node.json)', fix: '' } }
  }
  if (!isAlive(info.pid)) {
    return {
      node: { state: 'stopped' },
      check: { status: 'warn', detail: `node.json names pid ${info.pid}, which is not running: the node did not shut down cleanly (crash, kill -9, power loss)`, fix: `remove the stale file: \`rm ${paths.runtime}\` (a new start ignores it too); look at the node's log for why it stopped` }
    }
  }
  const node: RunningNode = { state: 'running', info }
  let token: string
  try {
    token = await readApiToken(paths)
  } catch (err) {
    return { node, check: { status: 'fail', detail: `a node runs (pid ${info.pid}) but the admin API token cannot be read: ${(err as Error).message}`, fix: 'see the keys check' } }
  }
  try {
    const status = await new AdminClient({ url: info.apiUrl, token, timeoutMs }).status()
    node.status = status
    return { node, check: { status: 'ok', detail: `node ${status.version} (pid ${info.pid}) answers at ${info.apiUrl}, up ${status.uptimeSeconds} s`, fix: '' } }
  } catch (err) {
    const e = err as Error & { code?: string }
    const cause = (e.cause as Error | undefined)?.message
    return {
      node,
      check: {
        status: 'fail',
        detail: `pid ${info.pid} runs but the admin API at ${info.apiUrl} does not answer: ${e.message}${cause !== undefined ? ` (${cause})` : ''}`,
        fix: e.code === 'API_UNAUTHORIZED' || e.code === 'HTTP_401'
          ? `api.token changed since the node started: restart the node (\`systemctl restart btt-node\` or stop and \`btt-node start\`)`
          : `the node is hung or still starting; wait a few seconds and retry, else restart it (kill ${info.pid}; \`btt-node start\`) and read its log`
      }
    }
  }
}

// --- ports -----------------------------------------------------------------------------------

interface Endpoint { host: string, port: number }

function tcpOf (text: string): Endpoint | undefined {
  try {
    const parts = multiaddr(text).getComponents()
    const host = parts[0]
    const tcp = parts[1]
    if (host === undefined || tcp?.name !== 'tcp' || host.value === undefined || tcp.value === undefined) return undefined
    return { host: host.value, port: Number(tcp.value) }
  } catch {
    return undefined
  }
}

function isWildcard (host: string): boolean {
  return host === '0.0.0.0' || host === '::' || host === ''
}

function isLoopback (host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.')
}

/** Where to connect to reach a listener on `host`: loopback for a wildcard, else the host itself. */
function dialHosts (host: string): string[] {
  if (host === '::') return ['::1']
  if (isWildcard(host)) return ['127.0.0.1']
  return [host]
}

function hostPort (host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`
}

async function probeConnect (net: DoctorNetwork, endpoints: Endpoint[], timeoutMs: number): Promise<{ ok: string[], failed: string[] }> {
  const ok: string[] = []
  const failed: string[] = []
  await Promise.all(endpoints.flatMap(e => dialHosts(e.host).map(async h => {
    try {
      await net.connect(h, e.port, timeoutMs)
      ok.push(hostPort(h, e.port))
    } catch (err) {
      failed.push(`${hostPort(h, e.port)} (${errText(err)})`)
    }
  })))
  return { ok, failed }
}

async function probeBind (net: DoctorNetwork, endpoints: Endpoint[]): Promise<{ ok: string[], failed: string[], fixes: string[] }> {
  const ok: string[] = []
  const failed: string[] = []
  const fixes = new Set<string>()
  for (const e of endpoints) {
    if (e.port === 0) {
      ok.push(`${hostPort(e.host, 0)} (the OS picks a free port)`)
      continue
    }
    try {
      await net.canBind(e.host, e.port)
      ok.push(hostPort(e.host, e.port))
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      failed.push(`${hostPort(e.host, e.port)} cannot be bound (${errText(err)})`)
      if (code === 'EADDRINUSE') fixes.add(`another process holds port ${e.port}: find it with \`ss -ltnp 'sport = :${e.port}'\` and stop it, or choose another port`)
      else if (code === 'EADDRNOTAVAIL') fixes.add(`${e.host} is not an address of this machine: listen on 0.0.0.0 or one of \`ip -br addr\``)
      else if (code === 'EACCES') fixes.add(`ports below 1024 need privileges: choose a port ≥ 1024`)
      else fixes.add(`check ${hostPort(e.host, e.port)}`)
    }
  }
  return { ok, failed, fixes: [...fixes] }
}

async function checkP2pPorts (config: NodeConfig, node: RunningNode, net: DoctorNetwork, timeoutMs: number): Promise<Omit<DoctorCheck, 'id'>> {
  const configured = config.p2p.listen.map(a => ({ text: a, ep: tcpOf(a) }))
  const bad = configured.filter(c => c.ep === undefined).map(c => c.text)
  const endpoints = configured.flatMap(c => c.ep === undefined ? [] : [c.ep])
  if (node.state === 'stopped') {
    const r = await probeBind(net, endpoints)
    if (r.failed.length > 0) return { status: 'fail', detail: `node stopped; p2p.listen: ${r.failed.join('; ')}`, fix: `${r.fixes.join('; ')} (then \`btt-node config set p2p.listen …\` if you move it)` }
    return { status: 'ok', detail: `node stopped; p2p.listen ${r.ok.join(', ')} free to bind${bad.length > 0 ? ` (not checked: ${bad.join(', ')})` : ''}`, fix: '' }
  }
  // running: dial what the config asks for; a port-0 entry is whatever the node reports
  const actual = (node.status?.listenAddresses ?? []).flatMap(a => { const ep = tcpOf(a); return ep === undefined ? [] : [ep] })
  const targets: Endpoint[] = endpoints.filter(e => e.port !== 0)
  if (endpoints.some(e => e.port === 0)) {
    for (const a of actual) if (isLoopback(a.host) || endpoints.some(e => e.host === a.host || isWildcard(e.host))) targets.push(a)
  }
  if (targets.length === 0) return { status: 'skip', detail: 'p2p.listen uses port 0 and the node did not report its addresses', fix: '' }
  const r = await probeConnect(net, dedupe(targets), timeoutMs)
  if (r.failed.length > 0) {
    const moved = endpoints.some(e => e.port !== 0 && !actual.some(a => a.port === e.port))
    return {
      status: 'fail',
      detail: `node running, but nothing accepts connections on ${r.failed.join('; ')}${actual.length > 0 ? `; the node reports ${[...new Set(actual.map(a => hostPort(a.host, a.port)))].join(', ')}` : ''}`,
      fix: moved
        ? 'the node listens elsewhere than config.toml says (p2p.listen changed since it started, or --listen flags): restart the node to apply the config, or fix p2p.listen'
        : 'the node is not accepting connections: look at its log; if it is a firewall on this machine, allow the port (`ufw allow <port>/tcp`)'
    }
  }
  return { status: 'ok', detail: `node running; accepts connections on ${r.ok.join(', ')}`, fix: '' }
}

interface SeedingSection { enabled: boolean, listen_host?: string, listen_port?: number, autopilot?: boolean, autopilot_trackers?: string[], autopilot_disk_budget_mib?: number, download_dir?: string }

function seedingOf (config: NodeConfig): SeedingSection | undefined {
  return config.services.seeding as SeedingSection | undefined
}

async function checkBitTorrentPort (config: NodeConfig, node: RunningNode, net: DoctorNetwork, timeoutMs: number): Promise<Omit<DoctorCheck, 'id'>> {
  const seeding = seedingOf(config)
  if (seeding === undefined || !seeding.enabled) return { status: 'skip', detail: 'seeding is not enabled', fix: '' }
  const host = seeding.listen_host ?? '0.0.0.0'
  const port = seeding.listen_port ?? 0
  if (node.state === 'stopped') {
    const r = await probeBind(net, [{ host, port }])
    if (r.failed.length > 0) return { status: 'fail', detail: `node stopped; services.seeding.listen_port: ${r.failed.join('; ')}`, fix: r.fixes.join('; ') }
    return { status: 'ok', detail: `node stopped; BitTorrent port ${r.ok.join(', ')} free to bind`, fix: '' }
  }
  const reported = node.status?.services.find(s => s.name === 'seeding')?.details?.port
  const actual = typeof reported === 'number' && reported > 0 ? reported : undefined
  const target = port !== 0 ? port : actual
  if (target === undefined) return { status: 'skip', detail: 'listen_port = 0 and the running node did not report its BitTorrent port', fix: '' }
  const r = await probeConnect(net, [{ host, port: target }], timeoutMs)
  if (r.failed.length > 0) {
    return {
      status: 'fail',
      detail: `node running, but nothing accepts BitTorrent connections on ${r.failed.join('; ')}${actual !== undefined && actual !== target ? `; the node reports port ${actual}` : ''}`,
      fix: actual !== undefined && actual !== target
        ? 'services.seeding.listen_port changed since the node started: restart the node, or set it back'
        : 'is seeding running? see `btt-node services list` and the node log; allow the port in the firewall (`ufw allow <port>/tcp`)'
    }
  }
  return { status: 'ok', detail: `node running; BitTorrent port accepts connections on ${r.ok.join(', ')}`, fix: '' }
}

function dedupe (eps: Endpoint[]): Endpoint[] {
  const seen = new Set<string>()
  return eps.filter(e => { const k = hostPort(e.host, e.port); if (seen.has(k)) return false; seen.add(k); return true })
}

// --- disk ------------------------------------------------------------------------------------

interface QuotaPromise { what: string, path: string, bytes: number, used: number }

async function checkDisk (paths: HomePaths, config: NodeConfig, freeSpace: (path: string) => Promise<FreeSpace>, usedSpace: (path: string) => Promise<number>): Promise<Omit<DoctorCheck, 'id'>> {
  const promises: QuotaPromise[] = []
  const storage = config.services.storage as { enabled: boolean, provide?: boolean, quota_mib?: number } | undefined
  if (storage?.enabled === true && storage.provide !== false && storage.quota_mib !== undefined) {
    const dir = join(paths.dataDir, 'storage')
    promises.push({ what: `services.storage.quota_mib = ${storage.quota_mib}`, path: dir, bytes: storage.quota_mib * MIB, used: await usedSpace(dir) })
  }
  const seeding = seedingOf(config)
  if (seeding?.enabled === true && seeding.autopilot === true && seeding.autopilot_disk_budget_mib !== undefined) {
    const dir = seeding.download_dir !== undefined && seeding.download_dir !== '' ? seeding.download_dir : join(paths.dataDir, 'seeding', 'downloads')
    promises.push({ what: `services.seeding.autopilot_disk_budget_mib = ${seeding.autopilot_disk_budget_mib}`, path: dir, bytes: seeding.autopilot_disk_budget_mib * MIB, used: await usedSpace(dir) })
  }
  // group by filesystem: quotas on one disk share its free space
  const byDevice = new Map<number, { fs: FreeSpace, path: string, items: QuotaPromise[] }>()
  const dataFs = await freeSpace(await existingAncestor(paths.dataDir))
  byDevice.set(dataFs.device, { fs: dataFs, path: paths.dataDir, items: [] })
  for (const p of promises) {
    const fs = await freeSpace(await existingAncestor(p.path))
    const group = byDevice.get(fs.device) ?? { fs, path: p.path, items: [] }
    group.items.push(p)
    byDevice.set(fs.device, group)
  }
  let status: DoctorStatus = 'ok'
  const details: string[] = []
  const fixes: string[] = []
  for (const g of byDevice.values()) {
    const need = g.items.reduce((sum, p) => sum + Math.max(0, p.bytes - p.used), 0)
    const promised = g.items.length === 0 ? 'no quota promised' : `promised ${g.items.map(p => `${p.what} (${mib(p.used)} in use)`).join(' + ')}, ${mib(need)} still to come`
    details.push(`${g.path}: ${mib(g.fs.free)} free of ${mib(g.fs.total)}; ${promised}`)
    if (g.fs.free < need) {
      status = 'fail'
      fixes.push(`the filesystem of ${g.path} cannot hold what is promised (short by ${mib(need - g.fs.free)}): lower the quota (${g.items.map(p => p.what.split(' = ')[0]).join(', ')}) to at most ${mib(Math.max(0, g.fs.free - DISK_HEADROOM_BYTES))} in total, or free or add disk`)
    } else if (g.fs.free < need + DISK_HEADROOM_BYTES) {
      if (status === 'ok') status = 'warn'
      fixes.push(`keep at least ${mib(DISK_HEADROOM_BYTES)} free beyond the quotas on ${g.path} (databases, logs, caches): free some disk or lower the quotas`)
    }
  }
  return { status, detail: details.join('; '), fix: fixes.join('; ') }
}

async function existingAncestor (path: string): Promise<string> {
  let p = path
  for (;;) {
    if (await exists(p)) return p
    const up = dirname(p)
    if (up === p) return p
    p = up
  }
}

async function statfsFreeSpace (path: string): Promise<FreeSpace> {
  const s = await statfs(path)
  const st = await stat(path)
  return { free: s.bavail * s.bsize, total: s.blocks * s.bsize, device: st.dev }
}

/** Bytes allocated to the files under `path` (0 when it does not exist); stops after MAX_WALK_ENTRIES. */
async function walkUsedSpace (path: string): Promise<number> {
  let total = 0
  let entries = 0
  const stack = [path]
  while (stack.length > 0 && entries < MAX_WALK_ENTRIES) {
    const dir = stack.pop() as string
    let handle
    try {
      handle = await opendir(dir)
    } catch {
      continue
    }
    for await (const e of handle) {
      if (++entries >= MAX_WALK_ENTRIES) break
      const p = join(dir, e.name)
      if (e.isDirectory()) stack.push(p)
      else if (e.isFile()) {
        try { total += (await lstat(p)).blocks * 512 } catch {}
      }
    }
  }
  return total
}

function mib (bytes: number): string {
  if (bytes >= 1024 * 1024 * MIB) return `${(bytes / (1024 * 1024 * MIB)).toFixed(1)} TiB`
  if (bytes >= 1024 * MIB) return `${(bytes / (1024 * MIB)).toFixed(1)} GiB`
  return `${Math.round(bytes / MIB)} MiB`
}

// --- ledger and clock ------------------------------------------------------------------------

async function checkLedger (paths: HomePaths, config: NodeConfig, timeoutMs: number): Promise<Omit<DoctorCheck, 'id'>> {
  if (config.ledger.url === '') return { status: 'skip', detail: `embedded ledger (${join(paths.dataDir, 'ledger.db')}): nothing to reach`, fix: '' }
  // info() is an unsigned GET: any key will do when the wallet cannot be read (the keys check reports that)
  let keyPair: KeyPair
  try {
    keyPair = await readKeyFile(paths.walletKey, 'wallet')
  } catch {
    keyPair = generateKeyPair()
  }
  let info: LedgerInfo
  try {
    info = await new HttpLedgerClient({ url: config.ledger.url, keyPair, timeoutMs }).info()
  } catch (err) {
    const e = err as Error & { code?: string }
    return {
      status: 'fail',
      detail: `ledger ${config.ledger.url} does not answer: ${e.message}`,
      fix: e.code === 'LEDGER_BAD_RESPONSE'
        ? 'ledger.url does not point at a btt-node ledger (`btt-node ledger serve`): check the URL'
        : 'without its ledger the node cannot open, check or claim channels: check ledger.url, that the ledger server runs, and the network or firewall between them (`curl <ledger.url>/v1/info`)'
    }
  }
  return { status: 'ok', detail: `ledger ${config.ledger.url} answers: id ${info.ledgerId.slice(0, 16)}…, version ${info.version}${info.dev ? ', dev (test BTT only)' : ''}`, fix: '' }
}

/** The ledger does not tell its time in /v1/info: its HTTP `Date` header does (1 s resolution). */
async function checkClock (config: NodeConfig, net: DoctorNetwork, now: () => number, timeoutMs: number): Promise<Omit<DoctorCheck, 'id'>> {
  if (config.ledger.url === '') {
    return { status: 'skip', detail: 'embedded ledger: it uses this machine\'s clock; keep that synced (NTP) all the same, payers and other ledgers judge expiry by theirs', fix: '' }
  }
  let answer
  try {
    answer = await net.httpDate(new URL('/v1/info', config.ledger.url).toString(), timeoutMs, now)
  } catch (err) {
    return { status: 'skip', detail: `cannot ask the ledger's time: ${errText(err)} (see the ledger check)`, fix: '' }
  }
  const serverMs = answer.date === undefined ? NaN : Date.parse(answer.date)
  if (Number.isNaN(serverMs)) return { status: 'warn', detail: `the ledger at ${config.ledger.url} sent no usable Date header; clock skew not measured`, fix: 'check the clock by other means: `timedatectl status`' }
  const rtt = answer.receivedAt - answer.sentAt
  // the header is truncated to the second: its true time is on average half a second later
  const skew = answer.sentAt + rtt / 2 - (serverMs + 500)
  const bound = 500 + rtt / 2
  const abs = Math.abs(skew)
  const text = `this machine's clock is ${(abs / 1000).toFixed(1)} s ${skew >= 0 ? 'ahead of' : 'behind'} the ledger (±${(bound / 1000).toFixed(1)} s)`
  const why = 'the ledger judges channel expiry, the claim margin and refund windows by its clock: a node behind it claims too late and can lose payments, one ahead refuses channels still valid; beyond 2 minutes every signed request is refused'
  const fix = 'sync the clock: enable NTP (`timedatectl set-ntp true`, or chrony/systemd-timesyncd) on this machine — and on the ledger server if it is the one that is off'
  if (abs - bound > CLOCK_SKEW_FAIL_MS) return { status: 'fail', detail: `${text}: ${why}`, fix }
  if (abs - bound > CLOCK_SKEW_WARN_MS) return { status: 'warn', detail: `${text}: ${why}`, fix }
  return { status: 'ok', detail: text, fix: '' }
}

// --- trackers, DHT ---------------------------------------------------------------------------

async function checkTrackers (config: NodeConfig, probe: TrackerProbe | undefined, timeoutMs: number, signal: AbortSignal): Promise<Omit<DoctorCheck, 'id'>> {
  const seeding = seedingOf(config)
  const trackers = seeding?.enabled === true ? seeding.autopilot_trackers ?? [] : []
  if (trackers.length === 0) return { status: 'skip', detail: seeding?.enabled === true ? 'no services.seeding.autopilot_trackers configured' : 'seeding is not enabled', fix: '' }
  if (probe === undefined) return { status: 'skip', detail: 'no tracker client in this build', fix: '' }
  const down: string[] = []
  const up: string[] = []
  await Promise.all(trackers.map(async url => {
    try {
      up.push(`${url} (${await probe(url, AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]))})`)
    } catch (err) {
      down.push(`${url}: ${errText(err)}`)
    }
  }))
  if (down.length === 0) return { status: 'ok', detail: `answer: ${up.join(', ')}`, fix: '' }
  const used = seeding?.autopilot === true
  return {
    status: used ? 'fail' : 'warn',
    detail: `${down.length} of ${trackers.length} tracker(s) do not answer: ${down.join('; ')}${used ? '' : ' (the autopilot is off, so nothing uses them now)'}`,
    fix: 'check the URLs in services.seeding.autopilot_trackers (an http(s) announce URL of a bid-aware tracker, e.g. `btt-node tracker serve`), that the tracker runs, and the network path to it'
  }
}

async function checkDht (config: NodeConfig, net: DoctorNetwork, timeoutMs: number): Promise<Omit<DoctorCheck, 'id'>> {
  if (!config.discovery.enabled) return { status: 'skip', detail: 'discovery is disabled (discovery.enabled = false)', fix: '' }
  const nodes = config.discovery.bootstrap
  if (nodes.length === 0) return { status: 'warn', detail: 'discovery.bootstrap is empty: the DHT node cannot join', fix: 'set discovery.bootstrap (default: the mainline routers)' }
  const up: string[] = []
  const down: string[] = []
  await Promise.all(nodes.map(async hp => {
    const i = hp.lastIndexOf(':')
    try {
      await net.dhtPing(hp.slice(0, i), Number(hp.slice(i + 1)), timeoutMs)
      up.push(hp)
    } catch (err) {
      down.push(`${hp} (${errText(err)})`)
    }
  }))
  const fix = 'check discovery.bootstrap, that outgoing UDP is allowed (and DNS resolves the names), and open the DHT port in the firewall (`ufw allow <discovery.port>/udp`)'
  if (up.length === 0) return { status: 'fail', detail: `no DHT bootstrap node answers a ping: ${down.join(', ')}; this node's offer cannot be published`, fix }
  if (down.length > 0) return { status: 'warn', detail: `${up.join(', ')} answer; ${down.join(', ')} do not`, fix }
  return { status: 'ok', detail: `${up.join(', ')} answer a ping`, fix: '' }
}

// --- the real network ------------------------------------------------------------------------

const defaultNetwork: DoctorNetwork = {
  async connect (host, port, timeoutMs) {
    await new Promise<void>((resolve, reject) => {
      const socket = connect({ host, port })
      const done = (err?: Error): void => {
        clearTimeout(timer)
        socket.destroy()
        if (err !== undefined) reject(err)
        else resolve()
      }
      const timer = setTimeout(() => { done(new Error(`no answer within ${timeoutMs} ms`)) }, timeoutMs)
      socket.once('connect', () => { done() })
      socket.once('error', err => { done(err) })
    })
  },

  async canBind (host, port) {
    await new Promise<void>((resolve, reject) => {
      const server = createServer()
      server.once('error', reject)
      server.listen({ host: host === '' ? undefined : host, port, exclusive: true }, () => { server.close(() => { resolve() }) })
    })
  },

  async httpDate (url, timeoutMs, now) {
    const u = new URL(url)
    const send = u.protocol === 'https:' ? https.request : http.request
    return await new Promise((resolve, reject) => {
      const sentAt = now()
      // a fresh connection, no agent: a reused one would not measure this request's round trip
      const req = send(u, { method: 'GET', agent: false, timeout: timeoutMs }, res => {
        const receivedAt = now()
        res.resume()
        resolve({ sentAt, receivedAt, date: res.headers.date })
      })
      req.on('timeout', () => { req.destroy(new Error(`no answer within ${timeoutMs} ms`)) })
      req.on('error', reject)
      req.end()
    })
  },

  async dhtPing (host, port, timeoutMs) {
    const tid = randomBytes(2)
    // d1:ad2:id20:<id>e1:q4:ping1:t2:<tid>1:y1:qe — the smallest KRPC query (BEP 5)
    const msg = Buffer.concat([Buffer.from('d1:ad2:id20:'), randomBytes(20), Buffer.from('e1:q4:ping1:t2:'), tid, Buffer.from('1:y1:qe')])
    const family = isIP(host) === 6 ? 'udp6' : 'udp4'
    return await new Promise<string>((resolve, reject) => {
      const socket = createSocket(family)
      const done = (err: Error | undefined, from?: string): void => {
        clearTimeout(timer)
        socket.close()
        if (err !== undefined) reject(err)
        else resolve(from as string)
      }
      const timer = setTimeout(() => { done(new Error(`no answer within ${timeoutMs} ms`)) }, timeoutMs)
      socket.on('error', err => { done(err) })
      socket.on('message', (data, rinfo) => {
        // an answer (y=r) or an error (y=e) with our transaction id: the node is alive
        const tidField = Buffer.concat([Buffer.from('1:t2:'), tid])
        if (data[0] === 0x64 && data.includes(tidField) && (data.includes('1:y1:r') || data.includes('1:y1:e'))) done(undefined, `${rinfo.address}:${rinfo.port}`)
      })
      socket.send(msg, port, host, err => { if (err !== null && err !== undefined) done(err) })
    })
  }
}

// --- helpers ---------------------------------------------------------------------------------

function mode (m: number): string {
  return (m & 0o777).toString(8).padStart(4, '0')
}

function errText (err: unknown): string {
  const e = err as NodeJS.ErrnoException
  return e.code !== undefined && !e.message.includes(e.code) ? `${e.code}: ${e.message}` : e.message ?? String(err)
}

async function exists (path: string): Promise<boolean> {
  try {
    await stat(path)
    return true
  } catch {
    return false
  }
}
