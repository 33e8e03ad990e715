import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { AdminClient, homePaths, readApiToken } from '@btt/node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CLI, cleanEnv, collect, runCli, startNodeProcess, tempHome, type NodeProcess } from './helpers/cli.js'
import { BTT, fundHome, ledgerHome, startLedgerProcess, type LedgerProcess } from './helpers/paid.js'

const MIB = 1024 * 1024
const PERIOD = 1

interface FileJson { id: string, channel: string, root: string, size: number, start: number, periods: number, paidPeriods: number, spent: string, price: string, status: string }
interface ContractJson { id: string, root: string, status: string, paid_periods: number, earned: string }

function periodAmount (price: bigint, size: number, period: number): bigint {
  const den = (1n << 30n) * 2_592_000n
  return (price * BigInt(size) * BigInt(period) + den - 1n) / den
}

/**
 * kill -9 of the provider during an upload and during proofs: after a restart, acknowledged uploads
 * and contracts are intact, partial uploads are gone, and no period is paid twice or lost.
 * Also: a requester node with `challenge = true` proves and pays on its own.
 */
describe('storage under faults (real processes, kill -9)', () => {
  let ledger: LedgerProcess
  let providerHome: string
  let requesterHome: string
  let provider: NodeProcess
  let requester: NodeProcess
  let port: number
  let providerAddr: string
  let dir: string
  let small: FileJson

  const cli = async (args: string[], home = requesterHome) => await runCli([...args, '--home', home])
  const contracts = async (): Promise<ContractJson[]> => (JSON.parse((await cli(['storage', 'contracts', '--json'], providerHome)).stdout) as { contracts: ContractJson[] }).contracts
  const files = async (home = requesterHome): Promise<FileJson[]> => (JSON.parse((await cli(['storage', 'list', '--json'], home)).stdout) as { files: FileJson[] }).files
  const startProvider = async (): Promise<void> => {
    provider = await startNodeProcess(providerHome, port === 0 ? [] : ['--listen', `/ip4/127.0.0.1/tcp/${port}`])
    const api = new AdminClient({ url: provider.apiUrl, token: await readApiToken(homePaths(providerHome)) })
    const addrs = (await api.status()).listenAddresses
    if (port === 0) {
      providerAddr = addrs[0] as string
      port = Number(/\/tcp\/(\d+)\//.exec(providerAddr)?.[1])
    }
  }

  beforeAll(async () => {
    ledger = await startLedgerProcess()
    providerHome = await ledgerHome(ledger.url, `[services.storage]\nenabled = true\nproof_period_seconds = ${PERIOD}\nmin_duration_seconds = 1\nprice_per_gib_month = "100"\nallowed_misses = 1000\n`, 'btt-sf-provider-')
    requesterHome = await ledgerHome(ledger.url, '[services.storage]\nenabled = true\nprovide = false\nchallenge = false\n', 'btt-sf-requester-')
    await fundHome(ledger.url, requesterHome, 100n * BTT)
    port = 0
    await startProvider()
    requester = await startNodeProcess(requesterHome)
    dir = await tempHome('btt-sf-files-')
    await mkdir(dir, { recursive: true })
    await writeFile(join(dir, 'small.bin'), randomBytes(3 * MIB + 5))
    const put = await cli(['storage', 'put', join(dir, 'small.bin'), '--provider', providerAddr, '--duration', '10m', '--max-price', '100', '--json'])
    expect(put.code, put.stderr).toBe(0)
    small = (JSON.parse(put.stdout) as { file: FileJson }).file
  }, 120_000)

  afterAll(async () => {
    await provider?.signal('SIGKILL')
    await requester?.signal('SIGKILL')
    ledger?.stop()
  })

  it('kill -9 during an upload: after restart the acknowledged contract is intact, the partial upload is gone, no contract for the cut one', async () => {
    const big = join(dir, 'big.bin')
    await writeFile(big, randomBytes(96 * MIB))
    const child = spawn(process.execPath, [CLI, 'storage', 'put', big, '--provider', providerAddr, '--duration', '10m', '--max-price', '100', '--home', requesterHome], { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
    const result = collect(child)
    const partialDir = join(providerHome, 'data', 'storage', 'partial')
    // wait until the provider has written part of it
    const deadline = Date.now() + 60_000
    for (;;) {
      const names = await readdir(partialDir).catch(() => [] as string[])
      const sizes = await Promise.all(names.map(async n => (await stat(join(partialDir, n)).catch(() => ({ size: 0 }))).size))
      if (sizes.some(s => s > 8 * MIB)) break
      if (Date.now() > deadline) throw new Error('the upload never started')
      await new Promise(resolve => setTimeout(resolve, 20))
    }
    await provider.signal('SIGKILL')
    const put = await result
    expect(put.code).not.toBe(0)
    expect((await readdir(partialDir)).length).toBeGreaterThan(0)

    await startProvider()
    expect(await readdir(partialDir)).toEqual([])
    expect((await contracts()).map(c => [c.id, c.status])).toEqual([[small.id, 'active']])
    expect((await readdir(join(providerHome, 'data', 'storage', 'blobs'))).sort()).toEqual([small.root, `${small.root}.tree`].sort())
    expect((await files()).map(f => f.id)).toEqual([small.id])
    const prove = await cli(['storage', 'prove', small.id, '--json'])
    expect(prove.code, prove.stdout + prove.stderr).toBe(0)
  }, 180_000)

  it('kill -9 during proofs and payments: no period is paid twice or lost; both sides agree afterwards', async () => {
    const perPeriod = periodAmount(BigInt(small.price), small.size, PERIOD)
    for (let round = 0; round < 6; round++) {
      // a period is due every second; prove and kill the provider somewhere inside the exchange
      await new Promise(resolve => setTimeout(resolve, 1100))
      const child = spawn(process.execPath, [CLI, 'storage', 'prove', small.id, '--json', '--home', requesterHome], { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
      const result = collect(child)
      await new Promise(resolve => setTimeout(resolve, 150 + round * 60))
      await provider.signal('SIGKILL')
      await result
      await startProvider()
    }
    // settle: proofs until the requester has caught up with every due period it can pay
    for (let i = 0; i < 3; i++) {
      await new Promise(resolve => setTimeout(resolve, 1100))
      const r = await cli(['storage', 'prove', small.id, '--json'])
      expect(r.code, r.stdout + r.stderr).toBe(0)
    }
    const c = (await contracts()).find(x => x.id === small.id) as ContractJson
    const f = (await files()).find(x => x.id === small.id) as FileJson
    expect(c.paid_periods).toBeGreaterThanOrEqual(3)
    expect(f.paidPeriods).toBe(c.paid_periods)
    expect(BigInt(c.earned)).toBe(perPeriod * BigInt(c.paid_periods))
    expect(BigInt(f.spent)).toBe(perPeriod * BigInt(f.paidPeriods))
    // the requester's channel spent exactly what the provider was credited
    const api = new AdminClient({ url: requester.apiUrl, token: await readApiToken(homePaths(requesterHome)) })
    const channel = (await api.channels()).outgoing.find(ch => ch.id === f.channel)
    expect(channel !== undefined && BigInt(channel.spent)).toBe(perPeriod * BigInt(c.paid_periods))
  }, 180_000)

  it('--stream sends and receives the file through the admin API (a node that cannot use the CLI\'s paths)', async () => {
    const src = join(dir, 'streamed.bin')
    const data = randomBytes(5 * MIB + 123)
    await writeFile(src, data)
    const put = await cli(['storage', 'put', src, '--provider', providerAddr, '--duration', '10m', '--max-price', '100', '--stream', '--json'])
    expect(put.code, put.stderr).toBe(0)
    const f = (JSON.parse(put.stdout) as { file: FileJson & { name: string, plainSize: number } }).file
    expect(f).toMatchObject({ name: 'streamed.bin', plainSize: data.length, status: 'active' })
    const out = join(dir, 'streamed.back')
    const get = await cli(['storage', 'get', f.id, '--out', out, '--stream', '--json'])
    expect(get.code, get.stderr).toBe(0)
    expect((await readFile(out)).equals(data)).toBe(true)
  }, 60_000)

  it('a requester node with challenge = true proves and pays each period on its own', async () => {
    const home = await ledgerHome(ledger.url, '[services.storage]\nenabled = true\nprovide = false\nchallenge = true\n', 'btt-sf-auto-')
    await fundHome(ledger.url, home, 10n * BTT)
    const node = await startNodeProcess(home)
    try {
      await writeFile(join(dir, 'auto.bin'), randomBytes(MIB))
      const put = await runCli(['storage', 'put', join(dir, 'auto.bin'), '--provider', providerAddr, '--duration', '10m', '--max-price', '100', '--json', '--home', home])
      expect(put.code, put.stderr).toBe(0)
      const id = (JSON.parse(put.stdout) as { file: FileJson }).file.id
      const deadline = Date.now() + 20_000
      let paid = 0
      while (paid < 3 && Date.now() < deadline) {
        await new Promise(resolve => setTimeout(resolve, 500))
        paid = (await contracts()).find(c => c.id === id)?.paid_periods ?? 0
      }
      expect(paid).toBeGreaterThanOrEqual(3)
      expect((await files(home)).find(f => f.id === id)).toMatchObject({ status: 'active', misses: 0 })
    } finally {
      await node.signal('SIGKILL')
    }
  }, 60_000)
})
