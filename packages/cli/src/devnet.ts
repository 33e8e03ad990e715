import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, open } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { HttpLedgerClient } from '@btt/ledger'
import { AdminClient, homePaths, initHome, loadWallet, readApiToken, readRuntimeInfo } from '@btt/node'

/**
 * The processes of `btt-node devnet`: children of the same CLI on loopback (a ledger, a provider
 * node, `get --budget` requesters), what it takes to start each, and how they all stop.
 */

/** A child gets this long to exit after SIGTERM, then SIGKILL. */
export const STOP_GRACE_MS = 5000
/** How long a ledger or a provider may take to come up. */
const READY_TIMEOUT_MS = 30_000
/** Output kept per child for error messages (the tail). */
const MAX_OUTPUT_CHARS = 64 * 1024

/**
 * Loaded into every child with `--import`: the child SIGTERMs itself once the devnet process is
 * gone, so even a devnet that is SIGKILLed leaves no processes behind. Polls once a second.
 */
const WATCHDOG = 'data:text/javascript,' + encodeURIComponent(
  'const p=Number(process.env.BTT_DEVNET_PARENT);if(p>0){const t=setInterval(()=>{try{process.kill(p,0)}catch{clearInterval(t);process.kill(process.pid,"SIGTERM")}},1000);t.unref()}'
)

export interface Child {
  name: string
  pid: number
  proc: ChildProcess
  /** stdout and stderr as they came (the last 64 KiB). */
  output: () => string
  /** All of stdout (for `get --json`). */
  stdout: () => string
  exited: Promise<number | null>
}

/** Spawns children of this CLI and stops them in reverse order. */
export class Supervisor {
  private readonly children: Child[] = []

  constructor (private readonly cli: string, private readonly env: NodeJS.ProcessEnv) {}

  spawn (name: string, args: string[]): Child {
    // own process group: a terminal's Ctrl-C reaches only the devnet, which stops the children in order
    const proc = spawn(process.execPath, [`--import=${WATCHDOG}`, this.cli, ...args], { env: this.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
    if (proc.pid === undefined) throw new Error(`could not start ${name}`)
    let out = ''
    let stdout = ''
    proc.stdout.on('data', (d: Buffer) => { const s = d.toString(); stdout += s; out = (out + s).slice(-MAX_OUTPUT_CHARS) })
    proc.stderr.on('data', (d: Buffer) => { out = (out + d.toString()).slice(-MAX_OUTPUT_CHARS) })
    const exited = new Promise<number | null>(resolve => proc.on('close', code => { resolve(code) }))
    proc.on('error', () => {})
    const child: Child = { name, pid: proc.pid, proc, output: () => out, stdout: () => stdout, exited }
    this.children.push(child)
    return child
  }

  /** SIGTERM every running child, last started first; SIGKILL what is left after `graceMs`. */
  async stopAll (graceMs = STOP_GRACE_MS): Promise<void> {
    const running = this.children.filter(c => c.proc.exitCode === null && c.proc.signalCode === null).reverse()
    for (const c of running) c.proc.kill('SIGTERM')
    const all = Promise.all(running.map(async c => await c.exited))
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<'late'>(resolve => { timer = setTimeout(() => { resolve('late') }, graceMs) })
    if (await Promise.race([all, late]) === 'late') {
      this.killAllNow()
      await all
    }
    clearTimeout(timer)
  }

  /** SIGKILL whatever still runs, synchronously (for `process.on('exit')`). */
  killAllNow (): void {
    for (const c of this.children) {
      if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL')
    }
  }

  pids (): number[] {
    return this.children.map(c => c.pid)
  }
}

function failed (child: Child, what: string): Error {
  return new Error(`${child.name} ${what}:\n${child.output().trim().split('\n').slice(-20).join('\n')}`)
}

/** `btt-node ledger serve --dev` on a free loopback port; resolves with its URL. */
export async function startLedger (sup: Supervisor, db: string): Promise<{ url: string, child: Child }> {
  await mkdir(dirname(db), { recursive: true, mode: 0o700 })
  const child = sup.spawn('ledger', ['ledger', 'serve', '--dev', '--host', '127.0.0.1', '--port', '0', '--db', db])
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => { reject(failed(child, `did not listen within ${READY_TIMEOUT_MS / 1000} s`)) }, READY_TIMEOUT_MS)
    const onData = (): void => {
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(child.output())
      if (m !== null) { clearTimeout(timer); resolve(m[1] as string) }
    }
    child.proc.stdout?.on('data', onData)
    void child.exited.then(code => { clearTimeout(timer); reject(failed(child, `exited with ${code}`)) })
  })
  return { url, child }
}

export interface Provider { home: string, api: AdminClient, port: number, account: string, child: Child }

/** Initialise a provider home on loopback, settling on `ledgerUrl`, and run `btt-node start` on it. */
export async function startProvider (sup: Supervisor, home: string, ledgerUrl: string, seeding: Record<string, unknown>): Promise<Provider> {
  await initHome(home, {
    ledger: { url: ledgerUrl },
    api: { host: '127.0.0.1', port: 0 },
    p2p: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    discovery: { enabled: false },
    services: { seeding: { enabled: true, listen_host: '127.0.0.1', listen_port: 0, dht: false, pex: false, trackers: false, ...seeding } }
  })
  const child = sup.spawn('provider', ['start', '--home', home])
  const paths = homePaths(home)
  const deadline = Date.now() + READY_TIMEOUT_MS
  let api: AdminClient | undefined
  let port: number | undefined
  while (port === undefined) {
    if (child.proc.exitCode !== null || child.proc.signalCode !== null) throw failed(child, `exited with ${child.proc.exitCode ?? child.proc.signalCode}`)
    if (Date.now() > deadline) throw failed(child, `was not ready within ${READY_TIMEOUT_MS / 1000} s`)
    const runtime = await readRuntimeInfo(paths)
    if (runtime?.pid === child.pid) {
      api ??= new AdminClient({ url: runtime.apiUrl, token: await readApiToken(paths), timeoutMs: 5000 })
      port = await api.serviceRequest<{ port: number }>('seeding', 'GET', '/status').then(s => s.port, () => undefined)
    }
    if (port === undefined) await sleep(50)
  }
  const wallet = await (api as AdminClient).wallet()
  return { home, api: api as AdminClient, port, account: wallet.account, child }
}

/** `size` random bytes at `path`, written 1 MiB at a time. */
export async function writeRandomFile (path: string, size: number): Promise<void> {
  await mkdir(dirname(path), { recursive: true })
  const fh = await open(path, 'w')
  try {
    for (let done = 0; done < size; done += 1 << 20) await fh.write(randomBytes(Math.min(1 << 20, size - done)))
  } finally {
    await fh.close()
  }
}

export interface Requester { name: string, home: string, out: string, account: string, budget: bigint }

/** A requester home (no node runs on it) whose wallet the dev faucet funds with `funds`. */
export async function makeRequester (dir: string, name: string, ledgerUrl: string, budget: bigint, funds: bigint): Promise<Requester> {
  const home = join(dir, 'home')
  await initHome(home, { ledger: { url: ledgerUrl } })
  const ledger = new HttpLedgerClient({ url: ledgerUrl, keyPair: await loadWallet(homePaths(home)) })
  await ledger.faucet(funds)
  return { name, home, out: join(dir, 'downloads'), account: ledger.account, budget }
}

/** `btt-node get --budget` from the provider only (no DHT, PEX or tracker), JSON at the end. */
export function startGet (sup: Supervisor, r: Requester, torrent: string, providerPort: number, budget: string): Child {
  return sup.spawn(`requester ${r.name}`, [
    'get', torrent, '--out', r.out, '--home', r.home, '--budget', budget,
    '--peer', `127.0.0.1:${providerPort}`, '--no-dht', '--no-pex', '--listen-host', '127.0.0.1', '--json'
  ])
}

/** The environment of every child: none of the user's BTT_NODE_* settings, temp files under `tmp`. */
export function childEnv (tmp: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('BTT_NODE_')) env[k] = v
  return { ...env, TMPDIR: tmp, NO_COLOR: '1', BTT_DEVNET_PARENT: String(process.pid) }
}

export async function sleep (ms: number): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, ms))
}
