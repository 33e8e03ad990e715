/**
 * seeding.aria2    — MB/s aria2 downloads a 512 MiB multi-file torrent from `btt-node start`, against
 *                    aria2 downloading the same torrent from an aria2 seeder, in the same run
 *                    (ratio = btt-node / aria2; target ≥ 0.9). Both timed the same way
 *                    (bt-baseline.ts: first payload byte → last piece verified), median of
 *                    BENCH_RUNS alternating rounds.
 * seeding.download — MB/s `btt-node get` downloads the same torrent from an aria2 seeder, spawn to exit,
 *                    against aria2 downloading it from aria2 spawn to exit (not a target of [C]:
 *                    kept to show where the download side stands).
 * seeding.rss_1000 — MB resident of `btt-node start` seeding 1,000 small torrents (target < 400).
 * Loopback only: opentracker on 127.0.0.1, seeding with DHT and PEX off.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { AdminClient, homePaths, initHome, readApiToken } from '@btt/node'
import { hashTree, killAll, makeTestTree, mktorrent, startAria2Seeder, startTracker } from '../test/interop/clients.ts'
import { timeAria2Download } from './bt-baseline.ts'
import { median, note, report } from './lib.ts'

const CLI = fileURLToPath(new URL('../packages/cli/bin/run.js', import.meta.url))
const MIB = 1 << 20
const RUNS = Number(process.env.BENCH_RUNS ?? 3)
const SIZE_MIB = Number(process.env.BENCH_SEEDING_MIB ?? 512)

const SEEDING_ENV = {
  BTT_NODE_SERVICES_SEEDING_ENABLED: 'true',
  BTT_NODE_SERVICES_SEEDING_LISTEN_HOST: '127.0.0.1',
  BTT_NODE_SERVICES_SEEDING_LISTEN_PORT: '0',
  BTT_NODE_SERVICES_SEEDING_DHT: 'false',
  BTT_NODE_SERVICES_SEEDING_PEX: 'false',
  BTT_NODE_SERVICES_SEEDING_ANNOUNCE_INTERVAL: '2',
  BTT_NODE_DISCOVERY_ENABLED: 'false',
  BTT_NODE_LOG_LEVEL: 'warn'
}

interface Node { child: ChildProcess, client: AdminClient, home: string }

/** The bin as an operator runs it (its shebang carries the node flags), seeding on loopback. */
async function startNode (dir: string): Promise<Node> {
  const home = join(dir, 'home')
  await initHome(home)
  const paths = homePaths(home)
  const child = spawn(CLI, ['start', '--home', home, '--api-port', '0', '--api-host', '127.0.0.1', '--listen', '/ip4/127.0.0.1/tcp/0'], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, BTT_NODE_HOME: undefined, ...SEEDING_ENV }
  })
  const deadline = Date.now() + 30_000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`node exited with ${child.exitCode}`)
    if (Date.now() > deadline) throw new Error('node did not start')
    try {
      const info = JSON.parse(await readFile(paths.runtime, 'utf8')) as { pid: number, apiUrl: string }
      if (info.pid === child.pid) {
        return { child, home, client: new AdminClient({ url: info.apiUrl, token: await readApiToken(paths), timeoutMs: 600_000 }) }
      }
    } catch {}
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}

async function stopNode (n: Node): Promise<void> {
  if (n.child.exitCode !== null) return
  const exited = new Promise(resolve => n.child.once('close', resolve))
  n.child.kill('SIGTERM')
  await exited
}

async function rssMb (pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1]) / 1024
}

async function waitSeeding (client: AdminClient, infoHash: string): Promise<void> {
  const deadline = Date.now() + 120_000
  for (;;) {
    const { torrent } = await client.serviceRequest<{ torrent: { state: string } }>('seeding', 'GET', `/torrents/${infoHash}`)
    if (torrent.state === 'seeding') return
    if (Date.now() > deadline) throw new Error(`not seeding: ${torrent.state}`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

async function benchAria2 (): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'btt-bench-seeding-'))
  const tracker = await startTracker()
  let node: Node | undefined
  try {
    const src = join(work, 'src')
    await makeTestTree(join(src, 'tree'), { totalBytes: SIZE_MIB * MIB, files: 8, seed: 7 })
    const want = await hashTree(join(src, 'tree'))
    const torrent = await mktorrent({ dir: join(src, 'tree'), out: join(work, 'tree.torrent'), announce: [tracker.httpUrl], pieceLength: MIB })
    await tracker.allow(torrent.infoHash)
    node = await startNode(work)
    await node.client.serviceRequest('seeding', 'POST', '/torrents', { torrent_path: torrent.path, save_path: src, paused: true })
    const ours: number[] = []
    const theirs: number[] = []
    const getOurs: number[] = []
    const getTheirs: number[] = []
    for (let round = 0; round < RUNS; round++) {
      // aria2 → aria2
      const seeder = await startAria2Seeder({ torrentPath: torrent.path, dir: src })
      await tracker.waitForPeer(torrent.infoHash, seeder.port)
      const dlA = join(work, `dl-aria2-${round}`)
      const a = await timeAria2Download({ torrentPath: torrent.path, dir: dlA })
      await rm(dlA, { recursive: true, force: true })
      theirs.push(a.mbPerSec)
      getTheirs.push(a.wallMbPerSec)
      // btt-node get ← aria2, spawn to exit
      const dlG = join(work, `dl-get-${round}`)
      const t0 = performance.now()
      const exit = await new Promise<number | null>(resolve => {
        const child = spawn(CLI, ['get', torrent.path, '--out', dlG, '--no-dht', '--no-pex', '--listen-host', '127.0.0.1', '--timeout', '300'], { stdio: ['ignore', 'ignore', 'inherit'] })
        child.on('close', resolve)
      })
      const getMs = performance.now() - t0
      if (exit !== 0) throw new Error(`btt-node get exited with ${exit}`)
      if (JSON.stringify([...await hashTree(join(dlG, 'tree'))]) !== JSON.stringify([...want])) throw new Error('btt-node get got different bytes from aria2')
      await rm(dlG, { recursive: true, force: true })
      getOurs.push(SIZE_MIB * MIB / 1e6 / (getMs / 1000))
      await seeder.stop()
      // btt-node → aria2 (resume re-checks the files on the first round, not timed)
      await node.client.serviceRequest('seeding', 'POST', `/torrents/${torrent.infoHash}/resume`)
      await waitSeeding(node.client, torrent.infoHash)
      const port = (await node.client.serviceRequest<{ port: number }>('seeding', 'GET', '/status')).port
      await tracker.waitForPeer(torrent.infoHash, port)
      const dlB = join(work, `dl-btt-${round}`)
      const b = await timeAria2Download({ torrentPath: torrent.path, dir: dlB })
      const got = await hashTree(join(dlB, 'tree'))
      if (JSON.stringify([...got]) !== JSON.stringify([...want])) throw new Error('aria2 got different bytes from btt-node')
      await rm(dlB, { recursive: true, force: true })
      await node.client.serviceRequest('seeding', 'POST', `/torrents/${torrent.infoHash}/pause`)
      ours.push(b.mbPerSec)
      note(`round ${round + 1}: btt-node → aria2 ${b.mbPerSec.toFixed(0)} MB/s, aria2 → aria2 ${a.mbPerSec.toFixed(0)} MB/s`)
    }
    report({ bench: 'seeding.aria2', value: median(ours), unit: 'MB/s', anchor: 'aria2 → aria2, same torrent, same run', anchor_value: median(theirs) })
    report({ bench: 'seeding.download', value: median(getOurs), unit: 'MB/s', anchor: 'aria2 ← aria2 spawn to exit, same run', anchor_value: median(getTheirs) })
  } finally {
    if (node !== undefined) await stopNode(node)
    await tracker.stop()
    killAll()
    await rm(work, { recursive: true, force: true })
  }
}

async function benchRss1000 (): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'btt-bench-rss-'))
  let node: Node | undefined
  try {
    const content = join(work, 'content')
    await mkdir(content)
    for (let i = 0; i < 1000; i++) await writeFile(join(content, `t${i}.bin`), randomBytes(64 * 1024 + i))
    node = await startNode(work)
    await new Promise(resolve => setTimeout(resolve, 2000))
    const idle = await rssMb(node.child.pid!)
    for (let i = 0; i < 1000; i++) {
      await node.client.serviceRequest('seeding', 'POST', '/torrents', { path: join(content, `t${i}.bin`) })
    }
    const list = await node.client.serviceRequest<{ torrents: Array<{ state: string }> }>('seeding', 'GET', '/torrents')
    const seeding = list.torrents.filter(t => t.state === 'seeding').length
    if (seeding !== 1000) throw new Error(`only ${seeding} of 1000 torrents seeding`)
    await new Promise(resolve => setTimeout(resolve, 5000))
    const rss = await rssMb(node.child.pid!)
    note(`1000 torrents seeding: RSS ${rss.toFixed(1)} MB (idle node before adding: ${idle.toFixed(1)} MB)`)
    report({ bench: 'seeding.rss_1000', value: rss, unit: 'MB', anchor: 'idle node, no torrents', anchor_value: idle })
  } finally {
    if (node !== undefined) await stopNode(node)
    await rm(work, { recursive: true, force: true })
  }
}

export async function benchSeeding (): Promise<void> {
  await benchAria2()
  await benchRss1000()
}
