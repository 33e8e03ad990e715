import { spawn, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { AdminClient, homePaths, readApiToken, type IncomingChannelJson, type OutgoingChannelJson } from '@btt/node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CLI, cleanEnv, collect, runCli, startNodeProcess, tempHome, type NodeProcess } from './helpers/cli.js'
import { BTT, fundHome, ledgerHome, startLedgerProcess, type LedgerProcess } from './helpers/paid.js'

const MIB = 1024 * 1024
const PERIOD = 1

interface FileJson { id: string, channel: string, root: string, size: number, paidPeriods: number, spent: string, status: string }
interface ContractJson { id: string, root: string, status: string, paid_periods: number, earned: string }
interface Channels { incoming: IncomingChannelJson[], outgoing: OutgoingChannelJson[] }
/** What must survive backup → wipe → restore. */
interface NodeState { peerId: string, account: string, channels: Channels, contracts: ContractJson[], files: FileJson[] }
interface BackupJson { file: string, size: number, nodeRunning: boolean, manifest: { peerId: string, walletPublicKey: string, files: Array<{ path: string, sqlite: boolean, sha256: string }> } }

/** oclif wraps long error lines as `\n ›   `: join them back. */
const flat = (s: string): string => s.replace(/\s*\n\s*›\s*/g, ' ')

/** Every file under `dir`, relative, `/`-separated. */
async function filesUnder (dir: string, rel = ''): Promise<string[]> {
  const out: string[] = []
  for (const e of await readdir(join(dir, rel), { withFileTypes: true })) {
    const p = rel === '' ? e.name : `${rel}/${e.name}`
    if (e.isDirectory()) out.push(...await filesUnder(dir, p))
    else out.push(p)
  }
  return out.sort()
}

async function isSqlite (path: string): Promise<boolean> {
  const fh = await open(path, 'r')
  try {
    const head = Buffer.alloc(16)
    await fh.read(head, 0, 16, 0)
    return head.toString('latin1') === 'SQLite format 3\0'
  } finally {
    await fh.close()
  }
}

/** Unpack an archive with the system's tar (it is a plain tar), check every SQLite file in it, return its files. */
async function checkArchive (file: string): Promise<{ files: string[], databases: string[] }> {
  const dir = await tempHome('btt-backup-unpacked-')
  await mkdir(dir, { recursive: true })
  const tar = spawnSync('tar', ['-xf', file, '-C', dir])
  expect(tar.status, tar.stderr.toString()).toBe(0)
  const files = await filesUnder(dir)
  const databases: string[] = []
  for (const f of files) {
    if (!(await isSqlite(join(dir, f)))) continue
    databases.push(f)
    const db = new DatabaseSync(join(dir, f), { readOnly: true })
    try {
      expect(db.prepare('PRAGMA integrity_check').all().map(r => ({ ...r })), f).toEqual([{ integrity_check: 'ok' }])
    } finally {
      db.close()
    }
  }
  return { files, databases }
}

/**
 * The acceptance test of `btt-node backup` / `restore`: a provider and a requester with a storage
 * contract and a payment channel between them. Backups taken while the requester pays the provider
 * in a loop and an upload is in flight pass `PRAGMA integrity_check` and restore to a node with the
 * same identity, wallet, channels and contracts; backup → wipe → restore → start gives back exactly
 * the state before, and the restored pair keeps serving and paying.
 */
describe('backup and restore of running nodes', () => {
  let ledger: LedgerProcess
  let providerHome: string
  let requesterHome: string
  let provider: NodeProcess
  let requester: NodeProcess
  let port = 0
  let providerAddr: string
  let dir: string
  let src: string
  let small: FileJson
  const extra: NodeProcess[] = []

  const cli = async (args: string[], home = requesterHome) => await runCli([...args, '--home', home])
  const json = async <T>(args: string[], home: string): Promise<T> => {
    const r = await cli([...args, '--json'], home)
    if (r.code !== 0) throw new Error(`${args.join(' ')} on ${home}: ${r.stdout}${r.stderr}`)
    return JSON.parse(r.stdout) as T
  }
  const state = async (home: string, role: 'provider' | 'requester'): Promise<NodeState> => ({
    peerId: (await json<{ peerId: string }>(['status'], home)).peerId,
    account: (await json<{ account: string }>(['wallet', 'address'], home)).account,
    channels: await json<Channels>(['channels', 'list'], home),
    contracts: role === 'provider' ? (await json<{ contracts: ContractJson[] }>(['storage', 'contracts'], home)).contracts : [],
    files: role === 'requester' ? (await json<{ files: FileJson[] }>(['storage', 'list'], home)).files : []
  })
  const startProvider = async (home: string): Promise<NodeProcess> => {
    const node = await startNodeProcess(home, port === 0 ? [] : ['--listen', `/ip4/127.0.0.1/tcp/${port}`])
    if (port === 0) {
      const api = new AdminClient({ url: node.apiUrl, token: await readApiToken(homePaths(home)) })
      providerAddr = (await api.status()).listenAddresses[0] as string
      port = Number(/\/tcp\/(\d+)\//.exec(providerAddr)?.[1])
    }
    return node
  }

  beforeAll(async () => {
    ledger = await startLedgerProcess()
    providerHome = await ledgerHome(ledger.url, `[services.storage]\nenabled = true\nproof_period_seconds = ${PERIOD}\nmin_duration_seconds = 1\nprice_per_gib_month = "100"\nretrieval_price_per_gib = "1"\nallowed_misses = 1000\n`, 'btt-bk-provider-')
    requesterHome = await ledgerHome(ledger.url, '[services.storage]\nenabled = true\nprovide = false\nchallenge = false\n', 'btt-bk-requester-')
    await fundHome(ledger.url, requesterHome, 100n * BTT)
    provider = await startProvider(providerHome)
    requester = await startNodeProcess(requesterHome)
    dir = await tempHome('btt-bk-files-')
    await mkdir(dir, { recursive: true })
    src = join(dir, 'small.bin')
    await writeFile(src, randomBytes(3 * MIB + 5))
    const put = await cli(['storage', 'put', src, '--provider', providerAddr, '--duration', '20m', '--max-price', '100', '--json'])
    expect(put.code, put.stderr).toBe(0)
    small = (JSON.parse(put.stdout) as { file: FileJson }).file
    await new Promise(resolve => setTimeout(resolve, 1100))
    const prove = await cli(['storage', 'prove', small.id, '--json'])
    expect(prove.code, prove.stderr).toBe(0)
  }, 120_000)

  afterAll(async () => {
    for (const n of [provider, requester, ...extra]) await n?.signal('SIGKILL')
    ledger?.stop()
  })

  it('backups taken under load (proofs paid in a loop, an upload in flight) pass integrity_check and restore to the same identity, wallet, channels and contracts', async () => {
    // the load: the requester proves in a loop, paying the provider one period (a voucher) per second …
    let loading = true
    let rounds = 0
    const failures: string[] = []
    const load = (async () => {
      while (loading) {
        const r = await cli(['storage', 'prove', small.id, '--json'])
        if (r.code !== 0) failures.push(r.stderr)
        rounds++
      }
    })()
    // … and uploads a second file; wait until the provider has part of it on disk
    const big = join(dir, 'big.bin')
    await writeFile(big, randomBytes(64 * MIB))
    const putChild = spawn(process.execPath, [CLI, 'storage', 'put', big, '--provider', providerAddr, '--duration', '20m', '--max-price', '100', '--json', '--home', requesterHome], { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
    const putDone = collect(putChild)
    const partialDir = join(providerHome, 'data', 'storage', 'partial')
    for (const deadline = Date.now() + 60_000; ;) {
      const names = await readdir(partialDir).catch(() => [] as string[])
      const sizes = await Promise.all(names.map(async n => (await stat(join(partialDir, n)).catch(() => ({ size: 0 }))).size))
      if (sizes.some(s => s > 2 * MIB)) break
      if (Date.now() > deadline) throw new Error('the upload never started')
      await new Promise(resolve => setTimeout(resolve, 10))
    }
    while (rounds < 2) await new Promise(resolve => setTimeout(resolve, 50))

    const before = { p: await state(providerHome, 'provider'), r: await state(requesterHome, 'requester') }
    const fileP = join(dir, 'provider-load.tar')
    const fileR = join(dir, 'requester-load.tar')
    const [bp, br] = await Promise.all([cli(['backup', fileP, '--json'], providerHome), cli(['backup', fileR, '--json'], requesterHome)])
    const after = { p: await state(providerHome, 'provider'), r: await state(requesterHome, 'requester') }
    expect(bp.code, bp.stderr).toBe(0)
    expect(br.code, br.stderr).toBe(0)
    loading = false
    await load
    expect(failures).toEqual([])
    const put = await putDone
    expect(put.code, put.stderr).toBe(0)
    // the provider was being paid across the backups
    const received = (s: NodeState, id: string): bigint => BigInt(s.channels.incoming.find(c => c.id === id)?.received ?? '-1')
    expect(received(after.p, small.channel)).toBeGreaterThan(received(before.p, small.channel))

    const backupP = JSON.parse(bp.stdout) as BackupJson
    const backupR = JSON.parse(br.stdout) as BackupJson
    expect(backupP).toMatchObject({ nodeRunning: true, manifest: { peerId: before.p.peerId, walletPublicKey: before.p.account } })
    expect(backupR).toMatchObject({ nodeRunning: true, manifest: { peerId: before.r.peerId, walletPublicKey: before.r.account } })
    expect((await stat(fileP)).mode & 0o777).toBe(0o600)

    // every SQLite file inside passes PRAGMA integrity_check; no WAL, runtime file or partial upload inside
    const unpackedP = await checkArchive(fileP)
    const unpackedR = await checkArchive(fileR)
    expect(unpackedP.databases).toEqual(expect.arrayContaining(['data/channels.db', 'data/storage/provider.db']))
    expect(unpackedR.databases).toEqual(expect.arrayContaining(['data/channels.db', 'data/storage/client.db']))
    expect(unpackedP.files).toEqual(expect.arrayContaining(['manifest.json', 'config.toml', 'api.token', 'keys/identity.key', 'keys/wallet.key', `data/storage/blobs/${small.root}`]))
    expect(unpackedR.files).toEqual(expect.arrayContaining(['keys/wallet.key', 'data/storage/storage.key']))
    for (const f of [...unpackedP.files, ...unpackedR.files]) expect(f).not.toMatch(/-wal$|-shm$|^node\.json$|^data\/storage\/partial\//)

    // restored into fresh homes, the nodes start with the state of the moment of the backup
    for (const [file, role, b, a] of [[fileP, 'provider', before.p, after.p], [fileR, 'requester', before.r, after.r]] as const) {
      const home = await tempHome(`btt-bk-restored-${role}-`)
      const r = await runCli(['restore', file, '--home', home, '--json'])
      expect(r.code, r.stderr).toBe(0)
      const node = await startNodeProcess(home)
      extra.push(node)
      const got = await state(home, role)
      expect(got.peerId).toBe(b.peerId)
      expect(got.account).toBe(b.account)
      // channels: every one known before is there, nothing that appeared after; amounts between the two
      const ids = (s: NodeState): string[] => [...s.channels.incoming, ...s.channels.outgoing].map(c => c.id).sort()
      expect(ids(got)).toEqual(expect.arrayContaining(ids(b)))
      for (const id of ids(got)) expect(ids(a)).toContain(id)
      for (const c of got.channels.incoming) {
        const lo = b.channels.incoming.find(x => x.id === c.id)
        const hi = a.channels.incoming.find(x => x.id === c.id) as IncomingChannelJson
        expect(BigInt(c.received)).toBeGreaterThanOrEqual(BigInt(lo?.received ?? '0'))
        expect(BigInt(c.received)).toBeLessThanOrEqual(BigInt(hi.received))
        expect({ ...c, received: '', claimed: '' }).toEqual({ ...hi, received: '', claimed: '' })
      }
      for (const c of got.channels.outgoing) {
        const lo = b.channels.outgoing.find(x => x.id === c.id)
        const hi = a.channels.outgoing.find(x => x.id === c.id) as OutgoingChannelJson
        expect(BigInt(c.spent)).toBeGreaterThanOrEqual(BigInt(lo?.spent ?? '0'))
        expect(BigInt(c.spent)).toBeLessThanOrEqual(BigInt(hi.spent))
      }
      // contracts (provider) and files (requester): the same rule
      const cids = (s: NodeState): string[] => [...s.contracts.map(c => c.id), ...s.files.map(f => f.id)].sort()
      expect(cids(got)).toEqual(expect.arrayContaining(cids(b)))
      for (const id of cids(got)) expect(cids(a)).toContain(id)
      expect(cids(got)).toContain(small.id)
      for (const c of got.contracts) {
        const lo = b.contracts.find(x => x.id === c.id)
        const hi = a.contracts.find(x => x.id === c.id) as ContractJson
        expect(c.paid_periods).toBeGreaterThanOrEqual(lo?.paid_periods ?? 0)
        expect(c.paid_periods).toBeLessThanOrEqual(hi.paid_periods)
        expect(c.root).toBe(hi.root)
      }
      for (const f of got.files) {
        const hi = a.files.find(x => x.id === f.id) as FileJson
        expect(f.root).toBe(hi.root)
        expect(f.channel).toBe(hi.channel)
      }
      await node.signal('SIGTERM')
    }
  }, 240_000)

  it('backup → wipe the home → restore → the nodes start with the same identity, wallet, channels and contracts, and keep serving and paying', async () => {
    const before = { p: await state(providerHome, 'provider'), r: await state(requesterHome, 'requester') }
    expect(before.p.contracts.length).toBeGreaterThanOrEqual(2)
    expect(before.r.channels.outgoing.length).toBeGreaterThanOrEqual(1)
    const fileP = join(dir, 'provider.tar')
    const fileR = join(dir, 'requester.tar')
    expect((await cli(['backup', fileP], providerHome)).code).toBe(0)
    expect((await cli(['backup', fileR], requesterHome)).code).toBe(0)
    // the file exists: refused without --force
    const again = await cli(['backup', fileP], providerHome)
    expect(again.code).toBe(1)
    expect(flat(again.stderr)).toMatch(/already exists.*--force/)
    // restore onto the running node's home: refused, even with --force
    const busy = await cli(['restore', fileP, '--force'], providerHome)
    expect(busy.code).toBe(1)
    expect(flat(busy.stderr)).toMatch(/a node is running on .* stop it before restoring/)

    expect((await provider.signal('SIGTERM')).code).toBe(0)
    expect((await requester.signal('SIGTERM')).code).toBe(0)
    await rm(providerHome, { recursive: true, force: true })
    await rm(requesterHome, { recursive: true, force: true })

    for (const [file, home] of [[fileP, providerHome], [fileR, requesterHome]] as const) {
      const r = await runCli(['restore', file, '--home', home])
      expect(r.code, r.stderr).toBe(0)
      expect((await stat(home)).mode & 0o777).toBe(0o700)
      for (const key of ['keys/identity.key', 'keys/wallet.key']) expect((await stat(join(home, key))).mode & 0o777).toBe(0o600)
    }
    provider = await startProvider(providerHome)
    requester = await startNodeProcess(requesterHome)
    const got = { p: await state(providerHome, 'provider'), r: await state(requesterHome, 'requester') }
    expect(got).toEqual(before)

    // the restored pair keeps working: a paid retrieval (blobs, keys and channel vouchers all restored)
    const out = join(dir, 'after-restore.bin')
    const get = await cli(['storage', 'get', small.id, '--out', out, '--json'])
    expect(get.code, get.stderr + get.stdout).toBe(0)
    expect((await readFile(out)).equals(await readFile(src))).toBe(true)
    const paid = { p: await state(providerHome, 'provider'), r: await state(requesterHome, 'requester') }
    const inc = paid.p.channels.incoming.find(c => c.id === small.channel) as IncomingChannelJson
    const outg = paid.r.channels.outgoing.find(c => c.id === small.channel) as OutgoingChannelJson
    expect(BigInt(inc.received)).toBeGreaterThan(BigInt(before.p.channels.incoming.find(c => c.id === small.channel)?.received ?? '0'))
    // both sides agree on the voucher: nothing was lost or rolled back on either side
    expect(inc.received).toBe(outg.spent)
  }, 240_000)
})
