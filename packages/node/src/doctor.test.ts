import { spawn } from 'node:child_process'
import { createSocket } from 'node:dgram'
import { chmod, mkdtemp, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@btt/channel'
import { Discovery } from '@btt/discovery'
import { startLedgerServer, type LedgerServer } from '@btt/ledger'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { runDoctor, type DoctorCheckId, type DoctorInit, type DoctorReport, type FreeSpace } from './doctor.js'
import { initHome } from './home.js'
import { createNode } from './node.js'
import { defineService, type ServiceDefinition } from './service.js'
import { zPort } from './config/schema.js'

const MIB = 1024 * 1024
const GIB = 1024 * MIB

/** Stand-ins with the config keys of the real seeding and storage services that the doctor reads. */
const notBuilt = (): never => { throw new Error('not built in these tests') }
const SERVICES = [
  defineService({
    name: 'seeding',
    description: 'test stand-in',
    config: z.object({
      listen_host: z.string().default('0.0.0.0'),
      listen_port: zPort.default(6881),
      download_dir: z.string().default(''),
      autopilot: z.boolean().default(false),
      autopilot_trackers: z.array(z.string()).default([]),
      autopilot_disk_budget_mib: z.int().min(0).default(10_240)
    }),
    create: notBuilt
  }),
  defineService({
    name: 'storage',
    description: 'test stand-in',
    config: z.object({ provide: z.boolean().default(true), quota_mib: z.int().min(1).default(10_240) }),
    create: notBuilt
  })
] as unknown as ServiceDefinition[]

/** A free-space source that never touches the real disks. */
const plenty = async (): Promise<FreeSpace> => ({ free: 1000 * GIB, total: 2000 * GIB, device: 1 })

async function home (config: string): Promise<string> {
  const h = join(await mkdtemp(join(tmpdir(), 'btt-doctor-')), 'home')
  await initHome(h)
  await writeFile(join(h, 'config.toml'), config, { mode: 0o600 })
  return h
}

/** Loopback only: no DHT, OS-chosen p2p port. */
const BASE = `[api]
port = 0
[p2p]
listen = ["/ip4/127.0.0.1/tcp/0"]
[discovery]
enabled = false
`

async function doctor (h: string, init: Partial<DoctorInit> = {}): Promise<DoctorReport> {
  return await runDoctor(h, { services: SERVICES, freeSpace: plenty, probeTimeoutMs: 500, checkTimeoutMs: 3000, ...init })
}

function check (r: DoctorReport, id: DoctorCheckId) {
  const c = r.checks.find(c => c.id === id)
  if (c === undefined) throw new Error(`no check ${id}`)
  return c
}

async function listening (host = '127.0.0.1'): Promise<{ server: Server, port: number }> {
  const server = createServer()
  await new Promise<void>(resolve => server.listen(0, host, resolve))
  return { server, port: (server.address() as { port: number }).port }
}

async function freePort (): Promise<number> {
  const { server, port } = await listening()
  await new Promise(resolve => server.close(resolve))
  return port
}

describe('runDoctor', () => {
  it('passes a healthy stopped home: every check ok or skipped, ids in a stable order', async () => {
    const r = await doctor(await home(BASE))
    expect(r.ok).toBe(true)
    expect(r.checks.map(c => c.id)).toEqual(['config', 'home', 'keys', 'api', 'ports.p2p', 'ports.bittorrent', 'disk', 'ledger', 'clock', 'trackers', 'dht'])
    for (const c of r.checks) expect(['ok', 'skip'], `${c.id}: ${c.detail}`).toContain(c.status)
    expect(check(r, 'config').status).toBe('ok')
    expect(check(r, 'keys').status).toBe('ok')
    expect(check(r, 'disk').status).toBe('ok')
    expect(check(r, 'clock').detail).toMatch(/embedded ledger/)
  })

  describe('config', () => {
    it('reports the loader\'s exact error for an invalid value and an unknown key, and skips what needs the config', async () => {
      const r = await doctor(await home(BASE + '[ledger]\nurl = "ftp://x"\nprot = 1\n'))
      expect(r.ok).toBe(false)
      const c = check(r, 'config')
      expect(c.status).toBe('fail')
      expect(c.detail).toContain('ledger.url: must be an http(s) URL or empty')
      expect(c.detail).toContain('ledger.prot: unknown key')
      expect(c.fix).toMatch(/config set/)
      expect(check(r, 'ports.p2p').status).toBe('skip')
      expect(check(r, 'ledger').status).toBe('skip')
    })

    it('names the line of a TOML syntax error', async () => {
      const c = check(await doctor(await home('[api\nport = 1\n')), 'config')
      expect(c.status).toBe('fail')
      expect(c.detail).toMatch(/line 1, column \d+: not valid TOML/)
    })

    it('applies BTT_NODE_* environment like the node does', async () => {
      const c = check(await doctor(await home(BASE), { env: { BTT_NODE_API_PROT: '1' } }), 'config')
      expect(c.status).toBe('fail')
      expect(c.detail).toContain('BTT_NODE_API_PROT: unknown environment setting')
    })

    it('a home without config.toml is not initialised', async () => {
      const h = join(await mkdtemp(join(tmpdir(), 'btt-doctor-')), 'none')
      const r = await doctor(h)
      expect(check(r, 'config')).toMatchObject({ status: 'fail' })
      expect(check(r, 'config').fix).toContain('btt-node init')
      expect(r.ok).toBe(false)
    })
  })

  describe('home and keys', () => {
    it('fails a wallet key readable by others and says chmod 600', async () => {
      const h = await home(BASE)
      await chmod(join(h, 'keys', 'wallet.key'), 0o644)
      const r = await doctor(h)
      const c = check(r, 'keys')
      expect(c.status).toBe('fail')
      expect(c.detail).toContain('wallet.key is 0644')
      expect(c.fix).toBe(`chmod 600 ${join(h, 'keys', 'wallet.key')}`)
      expect(r.ok).toBe(false)
    })

    it('fails a missing identity key and a corrupt wallet key', async () => {
      const h = await home(BASE)
      const { rm } = await import('node:fs/promises')
      await rm(join(h, 'keys', 'identity.key'))
      await writeFile(join(h, 'keys', 'wallet.key'), 'nope', { mode: 0o600 })
      const c = check(await doctor(h), 'keys')
      expect(c.status).toBe('fail')
      expect(c.detail).toContain('identity.key is missing')
      expect(c.detail).toContain('not a JSON key file')
      expect(c.fix).toMatch(/restore .* from your backup/)
    })

    it('fails keys and home owned by another user', async () => {
      const h = await home(BASE)
      const r = await doctor(h, { uid: (process.getuid?.() ?? 0) + 1 })
      expect(check(r, 'keys').status).toBe('fail')
      expect(check(r, 'keys').detail).toMatch(/owned by uid \d+, not by this user/)
      expect(check(r, 'home').status).toBe('fail')
    })

    it('fails a home others can list', async () => {
      const h = await home(BASE)
      await chmod(h, 0o755)
      const c = check(await doctor(h), 'home')
      expect(c.status).toBe('fail')
      expect(c.fix).toBe(`chmod 700 ${h}`)
    })
  })

  describe('disk', () => {
    const storage = BASE + '[services.storage]\nenabled = true\nquota_mib = 10240\n'

    it('fails when the free space is below the storage quota, and says by how much', async () => {
      const r = await doctor(await home(storage), { freeSpace: async () => ({ free: 2 * GIB, total: 20 * GIB, device: 1 }) })
      const c = check(r, 'disk')
      expect(c.status).toBe('fail')
      expect(c.detail).toContain('services.storage.quota_mib = 10240')
      expect(c.fix).toMatch(/short by 8\.0 GiB/)
      expect(r.ok).toBe(false)
    })

    it('warns when the quota fits but leaves no headroom; ok with room to spare', async () => {
      const tight = await doctor(await home(storage), { freeSpace: async () => ({ free: 10 * GIB + 100 * MIB, total: 20 * GIB, device: 1 }) })
      expect(check(tight, 'disk').status).toBe('warn')
      expect(tight.ok).toBe(true)
      const roomy = await doctor(await home(storage), { freeSpace: async () => ({ free: 20 * GIB, total: 40 * GIB, device: 1 }) })
      expect(check(roomy, 'disk').status).toBe('ok')
    })

    it('counts what the quota already holds, and adds the autopilot budget on the same filesystem', async () => {
      const h = await home(storage + '[services.seeding]\nenabled = true\nlisten_host = "127.0.0.1"\nlisten_port = 0\nautopilot = true\nautopilot_trackers = ["http://127.0.0.1:1/announce"]\nautopilot_disk_budget_mib = 2048\n')
      const used = async (p: string): Promise<number> => p.endsWith('storage') ? 9 * GIB : 0
      const r = await doctor(h, { usedSpace: used, freeSpace: async () => ({ free: 3 * GIB + 512 * MIB, total: 40 * GIB, device: 7 }) })
      // 1 GiB of storage still to come + 2 GiB of autopilot budget = 3 GiB, 3.5 GiB free
      expect(check(r, 'disk').status).toBe('ok')
      const r2 = await doctor(h, { usedSpace: used, freeSpace: async () => ({ free: 2 * GIB + 512 * MIB, total: 40 * GIB, device: 7 }) })
      expect(check(r2, 'disk').status).toBe('fail')
    })

    it('a disabled storage service promises nothing', async () => {
      const r = await doctor(await home(BASE + '[services.storage]\nquota_mib = 99999\n'), { freeSpace: async () => ({ free: GIB, total: 2 * GIB, device: 1 }) })
      expect(check(r, 'disk').status).toBe('ok')
    })
  })

  describe('ports, node stopped', () => {
    it('fails a p2p port another process holds, naming the port and how to find the process', async () => {
      const { server, port } = await listening()
      try {
        const c = check(await doctor(await home(BASE.replace('tcp/0', `tcp/${port}`))), 'ports.p2p')
        expect(c.status).toBe('fail')
        expect(c.detail).toContain('EADDRINUSE')
        expect(c.fix).toContain(`sport = :${port}`)
      } finally {
        server.close()
      }
    })

    it('fails a BitTorrent port in use; ok when free', async () => {
      const { server, port } = await listening()
      try {
        const busy = check(await doctor(await home(`${BASE}[services.seeding]\nenabled = true\nlisten_host = "127.0.0.1"\nlisten_port = ${port}\n`)), 'ports.bittorrent')
        expect(busy.status).toBe('fail')
      } finally {
        server.close()
      }
      const free = check(await doctor(await home(`${BASE}[services.seeding]\nenabled = true\nlisten_host = "127.0.0.1"\nlisten_port = ${await freePort()}\n`)), 'ports.bittorrent')
      expect(free.status).toBe('ok')
    })
  })

  describe('a running node', () => {
    it('admin API ok and p2p port accepting; a p2p.listen changed since start is a closed port', async () => {
      const port = await freePort()
      const h = await home(BASE.replace('tcp/0', `tcp/${port}`))
      const node = await createNode({ home: h, services: SERVICES, logger: pino({ level: 'silent' }) })
      await node.start()
      try {
        const r = await doctor(h)
        expect(check(r, 'api').status).toBe('ok')
        expect(check(r, 'ports.p2p')).toMatchObject({ status: 'ok', detail: `node running; accepts connections on 127.0.0.1:${port}` })
        expect(r.ok).toBe(true)

        const other = await freePort()
        await writeFile(join(h, 'config.toml'), BASE.replace('tcp/0', `tcp/${other}`))
        const c = check(await doctor(h), 'ports.p2p')
        expect(c.status).toBe('fail')
        expect(c.detail).toContain(`127.0.0.1:${other}`)
        expect(c.fix).toMatch(/restart the node/)
      } finally {
        await node.stop()
      }
    })

    it('a stale node.json (dead pid) is a warning with the fix', async () => {
      const h = await home(BASE)
      const child = spawn(process.execPath, ['-e', ''])
      await new Promise(resolve => child.on('close', resolve))
      await writeFile(join(h, 'node.json'), JSON.stringify({ pid: child.pid, apiUrl: 'http://127.0.0.1:1', peerId: 'x', startedAt: '' }), { mode: 0o600 })
      const r = await doctor(h)
      const c = check(r, 'api')
      expect(c.status).toBe('warn')
      expect(c.fix).toContain(`rm ${join(h, 'node.json')}`)
      expect(r.ok).toBe(true)
    })

    it('a live pid whose API does not answer fails', async () => {
      const h = await home(BASE)
      await writeFile(join(h, 'node.json'), JSON.stringify({ pid: process.pid, apiUrl: `http://127.0.0.1:${await freePort()}`, peerId: 'x', startedAt: '' }), { mode: 0o600 })
      const c = check(await doctor(h), 'api')
      expect(c.status).toBe('fail')
      expect(c.detail).toMatch(/does not answer/)
    })
  })

  describe('ledger and clock', () => {
    let ledger: LedgerServer
    beforeAll(async () => {
      ledger = await startLedgerServer({ dbPath: join(await mkdtemp(join(tmpdir(), 'btt-doctor-ledger-')), 'ledger.db') })
    })
    afterAll(async () => { await ledger.close() })

    it('a reachable ledger with our time: both ok', async () => {
      const r = await doctor(await home(`${BASE}[ledger]\nurl = "${ledger.url}"\n`))
      expect(check(r, 'ledger').status).toBe('ok')
      expect(check(r, 'clock').status).toBe('ok')
    })

    it('a clock a minute ahead of the ledger fails, saying why it matters', async () => {
      const r = await doctor(await home(`${BASE}[ledger]\nurl = "${ledger.url}"\n`), { now: () => Date.now() + 60_000 })
      const c = check(r, 'clock')
      expect(c.status).toBe('fail')
      expect(c.detail).toMatch(/ahead of the ledger/)
      expect(c.detail).toMatch(/channel expiry/)
      expect(c.fix).toMatch(/NTP/)
      expect(check(r, 'ledger').status).toBe('ok')
    })

    it('skew thresholds: 3 s warns, 1 s is ok, 10 s behind fails (measured from the Date header)', async () => {
      const at = (offsetMs: number) => async (_url: string, _t: number, _now: () => number) => {
        const t = 1_700_000_000_000
        return { sentAt: t, receivedAt: t + 20, date: new Date(t - offsetMs - 500).toUTCString() }
      }
      const h = await home(`${BASE}[ledger]\nurl = "${ledger.url}"\n`)
      expect(check(await doctor(h, { network: { httpDate: at(1000) } }), 'clock').status).toBe('ok')
      expect(check(await doctor(h, { network: { httpDate: at(3000) } }), 'clock').status).toBe('warn')
      const behind = check(await doctor(h, { network: { httpDate: at(-10_000) } }), 'clock')
      expect(behind.status).toBe('fail')
      expect(behind.detail).toMatch(/behind the ledger/)
    })

    it('an unreachable ledger fails; the clock is then not measured', async () => {
      const r = await doctor(await home(`${BASE}[ledger]\nurl = "http://127.0.0.1:${await freePort()}"\n`))
      const c = check(r, 'ledger')
      expect(c.status).toBe('fail')
      expect(c.detail).toMatch(/does not answer/)
      expect(check(r, 'clock').status).toBe('skip')
      expect(r.ok).toBe(false)
    })
  })

  describe('DHT and trackers', () => {
    it('pings a loopback DHT bootstrap node; a silent one fails within the probe timeout', async () => {
      const boot = new Discovery({ keyPair: generateKeyPair(), host: '127.0.0.1', bootstrap: false })
      await boot.start()
      const silent = createSocket('udp4')
      await new Promise<void>(resolve => silent.bind(0, '127.0.0.1', resolve))
      try {
        const ok = check(await doctor(await home(`${BASE.replace('enabled = false', 'enabled = true')}bootstrap = ["127.0.0.1:${boot.address().port}"]\n`)), 'dht')
        expect(ok.status, ok.detail).toBe('ok')
        const t0 = Date.now()
        const bad = check(await doctor(await home(`${BASE.replace('enabled = false', 'enabled = true')}bootstrap = ["127.0.0.1:${silent.address().port}"]\n`)), 'dht')
        expect(bad.status).toBe('fail')
        expect(Date.now() - t0).toBeLessThan(3000)
        const some = check(await doctor(await home(`${BASE.replace('enabled = false', 'enabled = true')}bootstrap = ["127.0.0.1:${boot.address().port}", "127.0.0.1:${silent.address().port}"]\n`)), 'dht')
        expect(some.status).toBe('warn')
      } finally {
        silent.close()
        await boot.stop()
      }
    })

    it('probes the autopilot trackers: a dead one fails while the autopilot uses it', async () => {
      const cfg = (autopilot: boolean): string => `${BASE}[services.seeding]\nenabled = true\nlisten_host = "127.0.0.1"\nlisten_port = 0\nautopilot = ${autopilot}\nautopilot_trackers = ["http://127.0.0.1:9/announce", "http://127.0.0.1:8/announce"]\n`
      const probe = async (url: string): Promise<string> => { if (url.includes(':9/')) return 'answers'; throw new Error('ECONNREFUSED') }
      const on = check(await doctor(await home(cfg(true)), { trackerProbe: probe }), 'trackers')
      expect(on.status).toBe('fail')
      expect(on.detail).toContain('http://127.0.0.1:8/announce: ECONNREFUSED')
      expect(check(await doctor(await home(cfg(false)), { trackerProbe: probe }), 'trackers').status).toBe('warn')
      expect(check(await doctor(await home(cfg(true)), { trackerProbe: async () => 'answers' }), 'trackers').status).toBe('ok')
    })
  })

  it('no check may hang: a probe that never settles fails its check at the deadline', async () => {
    const h = await home(`${BASE}[services.seeding]\nenabled = true\nlisten_host = "127.0.0.1"\nlisten_port = 6881\n`)
    const t0 = Date.now()
    const r = await doctor(h, { checkTimeoutMs: 300, network: { canBind: async () => await new Promise<void>(() => {}) } })
    expect(Date.now() - t0).toBeLessThan(2000)
    expect(check(r, 'ports.bittorrent')).toMatchObject({ status: 'fail', detail: 'did not finish within 0.3 s' })
    expect(r.ok).toBe(false)
  })
})
