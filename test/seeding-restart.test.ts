import { randomBytes } from 'node:crypto'
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { AdminClient, homePaths, readApiToken } from '@btt/node'
import { afterAll, describe, expect, it } from 'vitest'
import { runCli, SEEDING_LOOPBACK_ENV, startNodeProcess, tempHome, type NodeProcess } from './helpers/cli.js'

const TORRENTS = 20
const SIZE = 16 * 1024 * 1024
/** Seeding on loopback, no DHT/trackers/PEX: nothing leaves the machine. */
const SEEDING_ENV = {
  ...SEEDING_LOOPBACK_ENV,
  BTT_NODE_SERVICES_SEEDING_TRACKERS: 'false'
}

interface Summary { infoHash: string, state: string, size: number }

const running: NodeProcess[] = []
let home = ''
afterAll(async () => {
  for (const n of running) if (n.child.exitCode === null) await n.signal('SIGKILL')
  if (home !== '') await rm(dirname(home), { recursive: true, force: true })
})

/** Bytes the process read through read(2) and friends, files and sockets alike (/proc/<pid>/io). */
async function rchar (pid: number): Promise<number> {
  const io = await readFile(`/proc/${pid}/io`, 'utf8')
  return Number(/rchar:\s+(\d+)/.exec(io)?.[1])
}

describe('seeding restart (fast resume)', () => {
  it(`a node seeding ${TORRENTS} torrents restarts and seeds them all within 5 s, reading far less than their size`, async () => {
    home = await tempHome('btt-restart-')
    expect((await runCli(['init', '--home', home])).code).toBe(0)
    const dataRoot = join(dirname(home), 'content')
    for (let i = 0; i < TORRENTS; i++) {
      const dir = join(dataRoot, `t${i}`)
      await mkdir(join(dir, 'sub'), { recursive: true })
      await writeFile(join(dir, 'a.bin'), randomBytes(SIZE - 1000))
      await writeFile(join(dir, 'sub', 'b.bin'), randomBytes(1000))
    }
    const first = await startNodeProcess(home, [], SEEDING_ENV)
    running.push(first)
    const client = new AdminClient({ url: first.apiUrl, token: await readApiToken(homePaths(home)), timeoutMs: 60_000 })
    for (let i = 0; i < TORRENTS; i++) {
      await client.serviceRequest('seeding', 'POST', '/torrents', { path: join(dataRoot, `t${i}`) })
    }
    const before = (await client.serviceRequest<{ torrents: Summary[] }>('seeding', 'GET', '/torrents')).torrents
    expect(before.filter(t => t.state === 'seeding')).toHaveLength(TORRENTS)
    const total = before.reduce((n, t) => n + t.size, 0)
    expect((await first.signal('SIGTERM')).code, first.output()).toBe(0)

    const t0 = Date.now()
    const second = await startNodeProcess(home, [], SEEDING_ENV)
    running.push(second)
    const client2 = new AdminClient({ url: second.apiUrl, token: await readApiToken(homePaths(home)) })
    let seeding = 0
    while (Date.now() - t0 < 10_000) {
      const list = (await client2.serviceRequest<{ torrents: Summary[] }>('seeding', 'GET', '/torrents').catch(() => ({ torrents: [] }))).torrents
      seeding = list.filter(t => t.state === 'seeding').length
      if (seeding === TORRENTS) break
      await new Promise(resolve => setTimeout(resolve, 50))
    }
    const ms = Date.now() - t0
    expect(seeding, second.output()).toBe(TORRENTS)
    expect(ms, second.output()).toBeLessThan(5000)
    const status = await client2.serviceRequest<{ disk: { readBytes: number, hashedBytes: number } }>('seeding', 'GET', '/status')
    expect(status.disk.hashedBytes, second.output()).toBe(0)
    expect(status.disk.readBytes, second.output()).toBe(0)
    // and Prometheus sees the same
    const metrics = await client2.metrics()
    expect(metrics).toContain(`btt_seeding_torrents{state="seeding"} ${TORRENTS}`)
    expect(metrics).toMatch(/btt_seeding_disk_bytes\{op="hashed"\} 0\n/)
    // the whole process, JavaScript modules and sockets included, read a small fraction of the data
    const read = await rchar(second.pid)
    expect(read).toBeLessThan(total / 4)
    // and `seed list --json` through the CLI agrees
    const listed = await runCli(['seed', 'list', '--json', '--home', home])
    expect(listed.code).toBe(0)
    const parsed = JSON.parse(listed.stdout) as { torrents: Summary[] }
    expect(parsed.torrents.map(t => t.state)).toEqual(Array(TORRENTS).fill('seeding'))
    console.log(`restart: ${TORRENTS} torrents (${(total / 2 ** 20).toFixed(0)} MiB) seeding after ${ms} ms; process read ${(read / 2 ** 20).toFixed(1)} MiB`)
    expect((await second.signal('SIGTERM')).code).toBe(0)
  }, 120_000)
})
