import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { AdminClient, NodeStatus } from '@btt/node'

/** The real CLI entry point, run with the same Node as the tests (Node 24). */
export const CLI = fileURLToPath(new URL('../../packages/cli/bin/run.js', import.meta.url))
export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url))

/** An environment without any BTT_NODE_* settings of the machine running the tests. */
export function cleanEnv (extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('BTT_NODE_')) env[k] = v
  return { ...env, NO_COLOR: '1', ...extra }
}

export interface CliResult {
  code: number | null
  stdout: string
  stderr: string
}

/** Run `btt-node <args>` to completion. */
export async function runCli (args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  const child = spawn(process.execPath, [CLI, ...args], { env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'] })
  return await collect(child)
}

export async function collect (child: ChildProcess): Promise<CliResult> {
  let stdout = ''
  let stderr = ''
  child.stdout?.on('data', (d: Buffer) => { stdout += d.toString() })
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString() })
  const code = await new Promise<number | null>(resolve => child.on('close', resolve))
  return { code, stdout, stderr }
}

export async function tempHome (prefix = 'btt-home-'): Promise<string> {
  return join(await mkdtemp(join(tmpdir(), prefix)), 'home')
}

/** Flags that keep a node on loopback with OS-assigned ports. */
export const LOOPBACK_FLAGS = ['--api-port', '0', '--api-host', '127.0.0.1', '--listen', '/ip4/127.0.0.1/tcp/0']
/** A test node publishes no offer on the mainline DHT (it would look up the public routers); tests that want one set a loopback DHT. */
export const NO_DHT_ENV: Record<string, string> = { BTT_NODE_DISCOVERY_ENABLED: 'false' }

/** Environment that switches seeding on for `btt-node start`, on loopback, with no DHT or PEX. */
export const SEEDING_LOOPBACK_ENV: Record<string, string> = {
  BTT_NODE_SERVICES_SEEDING_ENABLED: 'true',
  BTT_NODE_SERVICES_SEEDING_LISTEN_HOST: '127.0.0.1',
  BTT_NODE_SERVICES_SEEDING_LISTEN_PORT: '0',
  BTT_NODE_SERVICES_SEEDING_DHT: 'false',
  BTT_NODE_SERVICES_SEEDING_PEX: 'false'
}

export interface NodeProcess {
  child: ChildProcess
  pid: number
  apiUrl: string
  output: () => string
  /** Send a signal and wait for the exit; returns the exit code and how long it took. */
  signal(sig: NodeJS.Signals): Promise<{ code: number | null, ms: number }>
}

/** Wait until `home/node.json` names `pid` (or any pid when undefined): the node is up and its API listens. */
export async function waitForRuntime (home: string, child: ChildProcess, pid?: number, timeoutMs = 30_000): Promise<{ pid: number, apiUrl: string }> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`node exited with ${child.exitCode} before it was ready`)
    try {
      const info = JSON.parse(await readFile(join(home, 'node.json'), 'utf8')) as { pid: number, apiUrl: string }
      if (pid === undefined || info.pid === pid) return info
    } catch {}
    await new Promise(resolve => setTimeout(resolve, 25))
  }
  throw new Error(`node on ${home} not ready within ${timeoutMs} ms`)
}

/** `btt-node start --home <home>` as a real background process, resolved once its API is up. */
export async function startNodeProcess (home: string, args: string[] = [], env: Record<string, string> = {}): Promise<NodeProcess> {
  // NODE_FLAGS_FOR_NODES (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof") profiles the node processes of a bench or test
  const nodeFlags = (process.env.NODE_FLAGS_FOR_NODES ?? '').split(' ').filter(f => f !== '')
  const child = spawn(process.execPath, [...nodeFlags, CLI, 'start', '--home', home, ...LOOPBACK_FLAGS, ...args], { env: cleanEnv({ ...NO_DHT_ENV, ...env }), stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout?.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr?.on('data', (d: Buffer) => { out += d.toString() })
  const exited = new Promise<number | null>(resolve => child.on('close', resolve))
  let info: { apiUrl: string }
  try {
    info = await waitForRuntime(home, child, child.pid)
  } catch (err) {
    child.kill('SIGKILL')
    throw new Error(`${(err as Error).message}\n${out}`)
  }
  return {
    child,
    pid: child.pid as number,
    apiUrl: info.apiUrl,
    output: () => out,
    async signal (sig) {
      const t0 = Date.now()
      child.kill(sig)
      const code = await exited
      return { code, ms: Date.now() - t0 }
    }
  }
}

/** A node's status once its DHT offer is published (or the last one seen after `timeoutMs`): the caller asserts on it. */
export async function statusWhenPublished (api: Pick<AdminClient, 'status'>, timeoutMs = 20_000): Promise<NodeStatus> {
  const deadline = Date.now() + timeoutMs
  let status = await api.status()
  while (status.discovery.state !== 'published' && Date.now() < deadline) {
    await new Promise(resolve => setTimeout(resolve, 100))
    status = await api.status()
  }
  return status
}
