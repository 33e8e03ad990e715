import { spawn, type ChildProcess } from 'node:child_process'
import { chmod, mkdtemp, readFile, writeFile } from 'node:fs/promises'
import http from 'node:http'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@btt/channel'
import { Discovery } from '@btt/discovery'
import { startLedgerServer, type LedgerServer } from '@btt/ledger'
import { createTracker, type TrackerServer } from '@btt/tracker'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CLI, cleanEnv, collect, runCli, tempHome, waitForRuntime } from './helpers/cli.js'

interface Report { checks: Array<{ id: string, status: 'ok' | 'warn' | 'fail' | 'skip', detail: string, fix: string }>, ok: boolean }

async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as { port: number }).port
  await new Promise(resolve => server.close(resolve))
  return port
}

/** A node home on loopback only: admin API and p2p on 127.0.0.1, no DHT unless asked. */
async function makeHome (extra: string, p2pPort = 0): Promise<string> {
  const home = await tempHome('btt-doctor-')
  const r = await runCli(['init', '--home', home])
  expect(r.code, r.stderr).toBe(0)
  await writeFile(join(home, 'config.toml'), `[api]\nhost = "127.0.0.1"\nport = 0\n[p2p]\nlisten = ["/ip4/127.0.0.1/tcp/${p2pPort}"]\n${extra}`, { mode: 0o600 })
  return home
}

const NO_DHT = '[discovery]\nenabled = false\n'

async function doctor (home: string): Promise<{ code: number | null, report: Report, stderr: string }> {
  const r = await runCli(['doctor', '--home', home, '--json'])
  let report: Report
  try {
    report = JSON.parse(r.stdout) as Report
  } catch {
    throw new Error(`doctor --json printed no JSON (exit ${r.code}):\n${r.stdout}\n${r.stderr}`)
  }
  return { code: r.code, report, stderr: r.stderr }
}

function check (report: Report, id: string): Report['checks'][number] {
  const c = report.checks.find(c => c.id === id)
  if (c === undefined) throw new Error(`no check ${id} in ${JSON.stringify(report)}`)
  return c
}

/** Each seeded fault must be found by its own check, as a failure, with exit 1. */
async function expectFault (home: string, id: string): Promise<Report> {
  const { code, report } = await doctor(home)
  const c = check(report, id)
  expect(c.status, `${id}: ${c.detail}`).toBe('fail')
  expect(c.fix).not.toBe('')
  expect(report.ok).toBe(false)
  expect(code).toBe(1)
  return report
}

describe('btt-node doctor', () => {
  let ledger: LedgerServer
  let tracker: TrackerServer
  let dht: Discovery
  let skewed: http.Server
  let skewedUrl: string

  beforeAll(async () => {
    ledger = await startLedgerServer({ dbPath: join(await mkdtemp(join(tmpdir(), 'btt-doctor-ledger-')), 'ledger.db'), dev: true })
    tracker = await createTracker({ host: '127.0.0.1', httpPort: 0, udpPort: false })
    dht = new Discovery({ keyPair: generateKeyPair(), host: '127.0.0.1', bootstrap: false })
    await dht.start()
    // plays a ledger whose clock is 2 minutes ahead: a real /v1/info answer with a skewed Date header
    skewed = http.createServer((req, res) => {
      res.setHeader('date', new Date(Date.now() + 120_000).toUTCString())
      if (req.url === '/v1/info') {
        res.setHeader('content-type', 'application/json')
        res.end(JSON.stringify({ ledgerId: 'ab'.repeat(32), challengeWindowMs: 3_600_000, dev: true, version: '0.1.0' }))
      } else {
        res.statusCode = 404
        res.end(JSON.stringify({ error: { code: 'LEDGER_NOT_FOUND', message: 'not found' } }))
      }
    })
    await new Promise<void>(resolve => skewed.listen(0, '127.0.0.1', resolve))
    skewedUrl = `http://127.0.0.1:${(skewed.address() as { port: number }).port}`
  })

  afterAll(async () => {
    await ledger?.close()
    await tracker?.close()
    await dht?.stop()
    skewed?.close()
  })

  describe('a healthy running node', () => {
    let home: string
    let child: ChildProcess | undefined
    let p2pPort: number

    beforeAll(async () => {
      p2pPort = await freePort()
      const btPort = await freePort()
      home = await makeHome([
        `[discovery]\nenabled = true\nhost = "127.0.0.1"\nport = 0\nbootstrap = ["127.0.0.1:${dht.address().port}"]`,
        `[ledger]\nurl = "${ledger.url}"`,
        `[services.seeding]\nenabled = true\nlisten_host = "127.0.0.1"\nlisten_port = ${btPort}\ndht = false\npex = false\nautopilot_trackers = ["http://127.0.0.1:${tracker.httpPort}/announce"]`,
        ''
      ].join('\n'), p2pPort)
      child = spawn(process.execPath, [CLI, 'start', '--home', home], { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
      const out = collect(child)
      try {
        await waitForRuntime(home, child, child.pid)
      } catch (err) {
        child.kill('SIGKILL')
        const r = await out
        throw new Error(`${(err as Error).message}\n${r.stdout}\n${r.stderr}`)
      }
    })

    afterAll(async () => {
      if (child !== undefined && child.exitCode === null) {
        child.kill('SIGTERM')
        await new Promise(resolve => child?.on('close', resolve))
      }
    })

    it('passes: exit 0, ok, and every check that applies is ok', async () => {
      const { code, report, stderr } = await doctor(home)
      expect(report.ok, JSON.stringify(report, null, 2)).toBe(true)
      expect(code, stderr).toBe(0)
      for (const id of ['config', 'home', 'keys', 'api', 'ports.p2p', 'ports.bittorrent', 'ledger', 'clock', 'trackers', 'dht']) {
        expect(check(report, id).status, `${id}: ${check(report, id).detail}`).toBe('ok')
      }
      // the machine's disk decides between ok and warn (headroom); it never fails without a quota
      expect(['ok', 'warn']).toContain(check(report, 'disk').status)
      expect(check(report, 'ports.p2p').detail).toContain(`127.0.0.1:${p2pPort}`)
    })

    it('prints a table on a terminal', async () => {
      const r = await runCli(['doctor', '--home', home])
      expect(r.code, r.stderr).toBe(0)
      expect(r.stdout).toMatch(/^CHECK\s+STATUS\s+DETAIL\s+FIX/)
      expect(r.stdout).toMatch(/\nledger\s+ok\s+ledger http:\/\/127\.0\.0\.1:\d+ answers/)
    })

    it('fault: closed port — p2p.listen moved to a port nothing listens on while the node runs', async () => {
      const other = await freePort()
      const config = await readFile(join(home, 'config.toml'), 'utf8')
      await writeFile(join(home, 'config.toml'), config.replace(`tcp/${p2pPort}`, `tcp/${other}`))
      const report = await expectFault(home, 'ports.p2p')
      expect(check(report, 'ports.p2p').detail).toContain(`127.0.0.1:${other}`)
      expect(check(report, 'ports.p2p').fix).toMatch(/restart the node/)
    })
  })

  it('fault: full disk quota — a storage quota far above the free space of the filesystem', async () => {
    // 2^30 MiB = 1 PiB: more than any test machine's disk
    const report = await expectFault(await makeHome(`${NO_DHT}[services.storage]\nenabled = true\nquota_mib = ${2 ** 30}\nmax_file_mib = 1\n`), 'disk')
    expect(check(report, 'disk').detail).toContain(`services.storage.quota_mib = ${2 ** 30}`)
  })

  it('fault: bad key permissions — wallet.key readable by others', async () => {
    const home = await makeHome(NO_DHT)
    await chmod(join(home, 'keys', 'wallet.key'), 0o644)
    const report = await expectFault(home, 'keys')
    expect(check(report, 'keys').fix).toContain('chmod 600')
  })

  it('fault: unreachable ledger — ledger.url on a closed loopback port', async () => {
    await expectFault(await makeHome(`${NO_DHT}[ledger]\nurl = "http://127.0.0.1:${await freePort()}"\n`), 'ledger')
  })

  it('fault: clock skew — the ledger\'s Date is 2 minutes ahead', async () => {
    const report = await expectFault(await makeHome(`${NO_DHT}[ledger]\nurl = "${skewedUrl}"\n`), 'clock')
    expect(check(report, 'clock').detail).toMatch(/behind the ledger/)
    expect(check(report, 'ledger').status).toBe('ok')
  })

  it('fault: invalid config — reports the loader\'s exact error', async () => {
    const report = await expectFault(await makeHome(`${NO_DHT}[payments]\nprot = 1\n`), 'config')
    expect(check(report, 'config').detail).toContain('payments.prot: unknown key')
  })
})
