import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { initHome, readApiToken, homePaths } from '@btt/node'
import { median, note, report } from './lib.ts'

const CLI = fileURLToPath(new URL('../packages/cli/bin/run.js', import.meta.url))
const RUNS = Number(process.env.BENCH_RUNS ?? 5)
/** How long the node idles before its RSS is read: long enough for start-up garbage to be collected. */
const IDLE_MS = 3000

/**
 * start.api_ready — ms from spawning `btt-node start` to the first 200 from GET /v1/status.
 * start.idle_rss  — MB resident after the node has idled for IDLE_MS.
 * Median of RUNS runs, each on a fresh home, loopback only. Run through npm so `node` is Node 24.
 */
export async function benchStart (): Promise<void> {
  const ready: number[] = []
  const rss: number[] = []
  for (let i = 0; i < RUNS; i++) {
    const dir = await mkdtemp(join(tmpdir(), 'btt-bench-'))
    const home = join(dir, 'home')
    await initHome(home)
    const paths = homePaths(home)
    const token = await readApiToken(paths)
    const t0 = performance.now()
    // the bin itself, as an operator runs it: its shebang carries the node flags
    const child = spawn(CLI, ['start', '--home', home, '--api-port', '0', '--listen', '/ip4/127.0.0.1/tcp/0'], {
      stdio: ['ignore', 'ignore', 'inherit'],
      env: { ...process.env, BTT_NODE_HOME: undefined }
    })
    let url: string | undefined
    while (url === undefined) {
      if (child.exitCode !== null) throw new Error(`node exited with ${child.exitCode}`)
      try {
        const info = JSON.parse(await readFile(paths.runtime, 'utf8')) as { pid: number, apiUrl: string }
        if (info.pid === child.pid) {
          const res = await fetch(`${info.apiUrl}/v1/status`, { headers: { authorization: `Bearer ${token}` } })
          if (res.status === 200) url = info.apiUrl
          await res.arrayBuffer()
        }
      } catch {}
      if (url === undefined) await new Promise(resolve => setTimeout(resolve, 5))
    }
    ready.push(performance.now() - t0)
    await new Promise(resolve => setTimeout(resolve, IDLE_MS))
    const status = await readFile(`/proc/${child.pid}/status`, 'utf8')
    const kb = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1])
    rss.push(kb / 1024)
    const exited = new Promise(resolve => child.on('close', resolve))
    child.kill('SIGTERM')
    await exited
    await rm(dir, { recursive: true, force: true })
    note(`start run ${i + 1}/${RUNS}: api ready ${ready.at(-1)?.toFixed(0)} ms, idle rss ${rss.at(-1)?.toFixed(1)} MB`)
  }
  report({ bench: 'start.api_ready', value: median(ready), unit: 'ms' })
  report({ bench: 'start.idle_rss', value: median(rss), unit: 'MB' })
}
