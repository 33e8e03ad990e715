import { spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { generateKeyPair } from '@btt/channel'
import { Discovery } from '@btt/discovery'
import { AdminClient, homePaths, readApiToken } from '@btt/node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CLI, cleanEnv, collect, runCli, startNodeProcess, tempHome, type NodeProcess, statusWhenPublished } from './helpers/cli.js'
import { BTT, fundHome, ledgerHome, startLedgerProcess, type LedgerProcess } from './helpers/paid.js'

const MIB = 1024 * 1024
const GIB = 1n << 30n
const flat = (s: string): string => s.replace(/\s*\n\s*›\s*/g, ' ')
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

interface Origin { server: Server, port: number, hits: () => number, setBody: (path: string, body: Buffer) => void }

/** An HTTP origin on `host` serving bodies by path, with Range and an ETag per body; `/redirect?to=` redirects. */
async function startOrigin (host: string, port = 0): Promise<Origin> {
  const bodies = new Map<string, Buffer>()
  let hits = 0
  const server = createServer((req, res) => {
    hits++
    const url = new URL(req.url ?? '/', 'http://x')
    const to = url.searchParams.get('to')
    if (url.pathname === '/redirect' && to !== null) { res.writeHead(302, { location: to }); res.end(); return }
    const body = bodies.get(url.pathname)
    if (body === undefined) { res.writeHead(404); res.end(); return }
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '')
    const start = m !== null ? Number(m[1]) : 0
    res.writeHead(m !== null ? 206 : 200, {
      'content-type': 'application/octet-stream',
      'content-length': String(body.length - start),
      etag: `"${sha(body).slice(0, 16)}"`,
      ...(url.pathname.startsWith('/nostore-') ? { 'cache-control': 'no-store' } : {}),
      ...(m !== null ? { 'content-range': `bytes ${start}-${body.length - 1}/${body.length}` } : {})
    })
    if (!url.pathname.startsWith('/slow-')) { res.end(body.subarray(start)); return }
    // about 3 MiB/s
    let at = start
    const drip = setInterval(() => {
      if (at >= body.length || res.destroyed) { clearInterval(drip); res.end(); return }
      res.write(body.subarray(at, at + 64 * 1024))
      at += 64 * 1024
    }, 20)
    res.on('close', () => { clearInterval(drip) })
  })
  await new Promise<void>(resolve => server.listen(port, host, resolve))
  return { server, port: (server.address() as AddressInfo).port, hits: () => hits, setBody: (p, b) => { bodies.set(p, b) } }
}

interface ProviderNode { node: NodeProcess, home: string, api: AdminClient, addr: string, perByte: bigint }

/**
 * The proxy's money and resume rules between real nodes: a channel used up mid-download rolls over
 * to a new one; a download cut at one provider resumes at another (found with --provider auto on a
 * loopback DHT), each paid exactly for what it delivered; two downloads at once never share a
 * channel; an interrupted download is not silently restarted, and --force settles it first; a
 * resource that changed stops the resume; hostile URLs sent through a node are refused before any
 * connection (a canary on 127.0.0.2 counts zero hits).
 */
describe('proxy: rollover, provider switch, concurrency, discard, SSRF through nodes', () => {
  const dht: Discovery[] = []
  let ledger: LedgerProcess
  let origin: Origin
  let canary: Origin
  let p1: ProviderNode
  let p2: ProviderNode
  let requesterHome: string
  let requester: NodeProcess
  let rapi: AdminClient
  let dir: string
  const files = new Map<string, Buffer>()

  const url = (name: string): string => `http://127.0.0.1:${origin.port}/${name}`
  const body = (name: string, size: number): Buffer => {
    const b = randomBytes(size)
    files.set(name, b)
    origin.setBody(`/${name}`, b)
    return b
  }
  const received = async (p: ProviderNode): Promise<bigint> => (await p.api.channels()).incoming.reduce((s, ch) => s + BigInt(ch.received), 0n)
  const spent = async (): Promise<bigint> => (await rapi.channels()).outgoing.reduce((s, ch) => s + BigInt(ch.spent), 0n)
  const fetchArgs = (name: string, provider: string, extra: string[] = []): string[] =>
    ['proxy', 'fetch', url(name), '--provider', provider, '--out', join(dir, name), '--max-price', '1', '--chunk-size', '1024', '--json', '--home', requesterHome, ...extra]
  const manifestBytes = async (name: string): Promise<number> => {
    try { return (JSON.parse(await readFile(join(dir, `${name}.btt-manifest.json`), 'utf8')) as { bytes: number }).bytes } catch { return 0 }
  }
  /** Run a fetch and kill its CLI once the download holds at least `bytes`; returns what the manifest vouches for. */
  const fetchAndCut = async (args: string[], name: string, bytes: number): Promise<number> => {
    const child = spawn(process.execPath, [CLI, ...args], { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
    const result = collect(child)
    const deadline = Date.now() + 60_000
    // the node's live count (the manifest on disk is saved lazily)
    const live = async (): Promise<number> => (await rapi.serviceRequest<{ fetches: Array<{ out: string, bytes: number }> }>('proxy', 'GET', '/fetches')).fetches.find(f => f.out === join(dir, name))?.bytes ?? 0
    while (await live() < bytes && child.exitCode === null && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 5))
    child.kill('SIGKILL')
    const r = await result
    expect(r.code, r.stderr).not.toBe(0)
    // the node notices the CLI went away and stops the download
    const until = Date.now() + 10_000
    for (;;) {
      const active = await rapi.serviceRequest<{ fetches: Array<{ out: string }> }>('proxy', 'GET', '/fetches')
      if (!active.fetches.some(f => f.out === join(dir, name)) || Date.now() > until) break
      await new Promise(resolve => setTimeout(resolve, 50))
    }
    return await manifestBytes(name)
  }
  const expectFile = async (name: string): Promise<void> => {
    const got = await readFile(join(dir, name))
    expect(got.length).toBe((files.get(name) as Buffer).length)
    expect(sha(got)).toBe(sha(files.get(name) as Buffer))
  }

  beforeAll(async () => {
    const boot = new Discovery({ keyPair: generateKeyPair(), host: '127.0.0.1', bootstrap: false })
    await boot.start()
    dht.push(boot)
    const bootstrap = `127.0.0.1:${boot.address().port}`
    for (let i = 0; i < 5; i++) {
      const d = new Discovery({ keyPair: generateKeyPair(), host: '127.0.0.1', bootstrap: [bootstrap] })
      await d.start()
      dht.push(d)
    }
    origin = await startOrigin('127.0.0.1')
    // same port, another loopback address: allowed by port, refused by address (allow_cidrs is 127.0.0.1/32 only)
    canary = await startOrigin('127.0.0.2', origin.port)
    canary.setBody('/secret', Buffer.from('canary'))
    ledger = await startLedgerProcess()
    const providers: ProviderNode[] = []
    for (const [price, concurrency, most] of [['0.5', 3, 2], ['0.25', 1, 32]] as const) {
      // the origin is on loopback: reachable only through this test-only allowance of 127.0.0.1 and its port
      const home = await ledgerHome(ledger.url, `[services.proxy]\nenabled = true\nprice_per_gib = "${price}"\nallow_cidrs = ["127.0.0.1/32"]\nallow_ports = [${origin.port}]\nper_payer_concurrency = ${concurrency}\nmax_fetches = ${most}\n`, 'btt-proxy2-provider-')
      const node = await startNodeProcess(home, [], { BTT_NODE_DISCOVERY_ENABLED: 'true', BTT_NODE_DISCOVERY_BOOTSTRAP: bootstrap, BTT_NODE_DISCOVERY_HOST: '127.0.0.1', BTT_NODE_DISCOVERY_PORT: '0' })
      const api = new AdminClient({ url: node.apiUrl, token: await readApiToken(homePaths(home)) })
      const status = await statusWhenPublished(api)
      expect(status.discovery).toMatchObject({ state: 'published', services: ['proxy'] })
      providers.push({ node, home, api, addr: status.listenAddresses[0] as string, perByte: (BigInt(Number(price) * 100) * BTT / 100n) / GIB })
    }
    [p1, p2] = providers as [ProviderNode, ProviderNode]
    requesterHome = await ledgerHome(ledger.url, `[services.proxy]\nenabled = true\nprovide = false\n[discovery]\nbootstrap = ["${bootstrap}"]\n`, 'btt-proxy2-requester-')
    await fundHome(ledger.url, requesterHome, 20n * BTT)
    requester = await startNodeProcess(requesterHome)
    rapi = new AdminClient({ url: requester.apiUrl, token: await readApiToken(homePaths(requesterHome)) })
    dir = await tempHome('btt-proxy2-out-')
    await mkdir(dir, { recursive: true })
  }, 120_000)

  afterAll(async () => {
    await p1?.node.signal('SIGKILL')
    await p2?.node.signal('SIGKILL')
    await requester?.signal('SIGKILL')
    ledger?.stop()
    origin?.server.close()
    canary?.server.close()
    await Promise.all(dht.map(async d => { await d.stop() }))
  })

  it('rolls over to a new channel when one is used up, paying each chunk once', async () => {
    body('roll.bin', 12 * MIB)
    // a 1 MiB chunk costs p1.perByte × 2^20; the budget buys three
    const chunkCost = p1.perByte * BigInt(MIB)
    const budget = Number(chunkCost * 3n + chunkCost / 2n) / 1e18
    const r = await runCli(fetchArgs('roll.bin', p1.addr, ['--budget', budget.toFixed(18)]))
    expect(r.code, r.stderr).toBe(0)
    const res = JSON.parse(r.stdout) as { bytes: number, paid: string, channels: string[] }
    expect(res.bytes).toBe(12 * MIB)
    expect(res.channels).toHaveLength(4)
    expect(BigInt(res.paid)).toBe(p1.perByte * BigInt(12 * MIB))
    await expectFile('roll.bin')
    expect(await received(p1)).toBe(p1.perByte * BigInt(12 * MIB))
    expect(await spent()).toBe(p1.perByte * BigInt(12 * MIB))
  }, 120_000)

  it('resumes a download cut at one provider through another found on the DHT; each is paid for what it delivered', async () => {
    const before1 = await received(p1)
    const before2 = await received(p2)
    const spentBefore = await spent()
    body('switch.bin', 24 * MIB)
    const at = await fetchAndCut(fetchArgs('switch.bin', p1.addr), 'switch.bin', 6 * MIB)
    expect(at).toBeGreaterThanOrEqual(6 * MIB)
    expect(at).toBeLessThan(24 * MIB)
    // --provider auto picks the cheaper offer (P2, 0.25 BTT/GiB) and checks the last chunk it holds against it
    const r = await runCli(fetchArgs('switch.bin', 'auto', ['--resume']))
    expect(r.code, r.stderr).toBe(0)
    const res = JSON.parse(r.stdout) as { provider: string, resumedFrom: number, bytes: number }
    expect(res.provider).toBe(p2.addr)
    expect(res.resumedFrom * MIB).toBeGreaterThanOrEqual(at)
    const kept = res.resumedFrom * MIB
    await expectFile('switch.bin')
    // P1 got every chunk the requester kept from it, the last one's voucher delivered on its own
    expect(await received(p1) - before1).toBe(p1.perByte * BigInt(kept))
    expect(await received(p2) - before2).toBe(p2.perByte * BigInt(24 * MIB - kept))
    expect(await spent() - spentBefore).toBe(p1.perByte * BigInt(kept) + p2.perByte * BigInt(24 * MIB - kept))
  }, 120_000)

  it('runs two downloads from one provider at once on separate channels; the provider limits a payer to its concurrency', async () => {
    // slow origins (about 3 MiB/s), so the two really run at the same time
    body('slow-a.bin', 9 * MIB)
    body('slow-b.bin', 9 * MIB)
    body('third.bin', 1 * MIB)
    const before = await received(p1)
    let overlapped = false
    const watch = setInterval(() => {
      rapi.serviceRequest<{ fetches: unknown[] }>('proxy', 'GET', '/fetches').then(r => { if (r.fetches.length === 2) overlapped = true }, () => {})
    }, 50)
    const both = Promise.all([runCli(fetchArgs('slow-a.bin', p1.addr)), runCli(fetchArgs('slow-b.bin', p1.addr))]).finally(() => { clearInterval(watch) })
    // P1 runs at most 2 fetches at once, all payers together (its per-payer cap, 3, would allow a third)
    for (let i = 0; i < 200 && !overlapped; i++) await new Promise(resolve => setTimeout(resolve, 25))
    const third = await runCli(fetchArgs('third.bin', p1.addr))
    expect(third.code).not.toBe(0)
    expect(flat(third.stdout + third.stderr)).toMatch(/PROXY_BUSY[\s\S]*2 fetches at once already/)
    const [a, b] = await both
    expect(overlapped).toBe(true)
    expect(a.code, a.stderr).toBe(0)
    expect(b.code, b.stderr).toBe(0)
    const ca = (JSON.parse(a.stdout) as { channels: string[] }).channels
    const cb = (JSON.parse(b.stdout) as { channels: string[] }).channels
    expect(ca.filter(c => cb.includes(c)), `a: ${ca.join(',')} b: ${cb.join(',')}`).toEqual([])
    await expectFile('slow-a.bin')
    await expectFile('slow-b.bin')
    expect(await received(p1) - before).toBe(p1.perByte * BigInt(18 * MIB))

    // P2 allows one fetch per payer at a time
    body('slow-c.bin', 24 * MIB)
    body('d.bin', 1 * MIB)
    const c = spawn(process.execPath, [CLI, ...fetchArgs('slow-c.bin', p2.addr)], { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
    const cr = collect(c)
    const deadline = Date.now() + 30_000
    while (await manifestBytes('slow-c.bin') === 0 && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 5))
    const d = await runCli(fetchArgs('d.bin', p2.addr))
    expect(d.code).not.toBe(0)
    expect(flat(d.stdout + d.stderr)).toMatch(/PROXY_BUSY/)
    // nothing was paid for d: no manifest is left and its channel is free again
    await expect(stat(join(dir, 'd.bin.btt-manifest.json'))).rejects.toThrow()
    expect((await cr).code).toBe(0)
    await expectFile('slow-c.bin')
  }, 120_000)

  it('refuses to restart an interrupted download silently; --force settles its last payment and starts over', async () => {
    body('again.bin', 16 * MIB)
    const before = await received(p1)
    const spentBefore = await spent()
    const at = await fetchAndCut(fetchArgs('again.bin', p1.addr), 'again.bin', 4 * MIB)
    const r = await runCli(fetchArgs('again.bin', p1.addr))
    expect(r.code).not.toBe(0)
    expect(flat(r.stdout + r.stderr)).toMatch(/PROXY_UNFINISHED/)
    const f = await runCli(fetchArgs('again.bin', p1.addr, ['--force']))
    expect(f.code, f.stderr).toBe(0)
    expect((JSON.parse(f.stdout) as { resumedFrom: number }).resumedFrom).toBe(0)
    await expectFile('again.bin')
    // the discarded chunks were delivered and paid (whole chunks, at least those the manifest named), and
    // their last voucher reached the provider; the new download is paid in full
    const paidFor = (await spent() - spentBefore) / p1.perByte
    expect(paidFor - BigInt(16 * MIB)).toBeGreaterThanOrEqual(BigInt(at))
    expect((paidFor - BigInt(16 * MIB)) % BigInt(MIB)).toBe(0n)
    expect(await received(p1) - before).toBe(await spent() - spentBefore)
    // a node stopped between putting the file in place and removing its manifest: a resume sees a
    // complete file (and pays nothing), not a broken download
    await writeFile(join(dir, 'again.bin.btt-manifest.json'), JSON.stringify({ v: 2, url: url('again.bin'), chunkSize: MIB, chunks: [], bytes: 0, segments: [] }))
    const spentNow = await spent()
    const late = await runCli(fetchArgs('again.bin', p1.addr, ['--resume']))
    expect(flat(late.stdout + late.stderr)).toMatch(/PROXY_ALREADY_COMPLETE/)
    await expect(stat(join(dir, 'again.bin.btt-manifest.json'))).rejects.toThrow()
    expect(await spent()).toBe(spentNow)
  }, 120_000)

  it('stops a resume when the resource changed', async () => {
    body('moving.bin', 16 * MIB)
    const at = await fetchAndCut(fetchArgs('moving.bin', p1.addr), 'moving.bin', 3 * MIB)
    expect(at).toBeGreaterThan(0)
    body('moving.bin', 16 * MIB)
    const r = await runCli(fetchArgs('moving.bin', p1.addr, ['--resume']))
    expect(r.code).not.toBe(0)
    expect(flat(r.stdout + r.stderr)).toMatch(/PROXY_RESUME_MISMATCH/)
    // the bytes already held stay
    expect(await manifestBytes('moving.bin')).toBeGreaterThanOrEqual(at)
  }, 120_000)

  it('serves a repeated fetch and a resume from the provider\'s disk cache; never what says no-store', async () => {
    body('cached.bin', 8 * MIB)
    body('nostore-x.bin', 2 * MIB)
    const first = await runCli(fetchArgs('cached.bin', p1.addr))
    expect(first.code, first.stderr).toBe(0)
    const hits = origin.hits()
    // the same URL again, to another file: from the cache (the origin sees nothing), paid the same
    const again = ['proxy', 'fetch', url('cached.bin'), '--provider', p1.addr, '--out', join(dir, 'cached-2.bin'), '--chunk-size', '1024', '--json', '--home', requesterHome]
    const before = await received(p1)
    const second = await runCli(again)
    expect(second.code, second.stderr).toBe(0)
    expect(origin.hits()).toBe(hits)
    expect(sha(await readFile(join(dir, 'cached-2.bin')))).toBe(sha(files.get('cached.bin') as Buffer))
    expect(await received(p1) - before).toBe(p1.perByte * BigInt(8 * MIB))
    const status = await p1.api.service('proxy')
    expect((status.details as { cache: { entries: number, hits: number } }).cache.hits).toBeGreaterThanOrEqual(1)
    expect(await p1.api.metrics()).toMatch(/btt_proxy_cache_lookups_total\{result="hit"\} [1-9]/)
    // a cut download of it resumes from the cache too (a range of the cached answer)
    const third = (extra: string[]): string[] => ['proxy', 'fetch', url('cached.bin'), '--provider', p1.addr, '--out', join(dir, 'cached-3.bin'), '--chunk-size', '1024', '--json', '--home', requesterHome, ...extra]
    const at = await fetchAndCut(third([]), 'cached-3.bin', 2 * MIB)
    expect(at).toBeGreaterThan(0)
    const resumed = await runCli(third(['--resume']))
    expect(resumed.code, resumed.stderr).toBe(0)
    expect((JSON.parse(resumed.stdout) as { resumedFrom: number }).resumedFrom).toBeGreaterThan(0)
    expect(sha(await readFile(join(dir, 'cached-3.bin')))).toBe(sha(files.get('cached.bin') as Buffer))
    expect(origin.hits()).toBe(hits)
    // no-store: fetched from the origin each time
    for (const out of ['ns-1.bin', 'ns-2.bin']) {
      const r = await runCli(['proxy', 'fetch', url('nostore-x.bin'), '--provider', p1.addr, '--out', join(dir, out), '--json', '--home', requesterHome])
      expect(r.code, r.stderr).toBe(0)
    }
    expect(origin.hits()).toBe(hits + 2)
  }, 120_000)

  it('refuses hostile URLs sent through a node before connecting anywhere they point', async () => {
    const port = origin.port
    const hostile = [
      `http://127.0.0.2:${port}/secret`,
      `http://2130706434:${port}/secret`,
      `http://0x7f000002:${port}/secret`,
      `http://0177.0.0.2:${port}/secret`,
      `http://[::ffff:127.0.0.2]:${port}/secret`,
      `http://[::1]:${port}/secret`,
      `http://[::]:${port}/secret`,
      `http://0.0.0.0:${port}/secret`,
      `http://169.254.169.254/latest/meta-data/`,
      `http://user:pass@127.0.0.1:${port}/a.bin`,
      `${url('redirect')}?to=${encodeURIComponent(`http://127.0.0.2:${port}/secret`)}`,
      `${url('redirect')}?to=${encodeURIComponent('http://169.254.169.254/')}`,
      'file:///etc/passwd',
      'gopher://127.0.0.2:70/',
      'data:text/plain,hello',
      `ftp://127.0.0.2:${port}/secret`
    ]
    const before = await spent()
    for (const u of hostile) {
      const err = await rapi.serviceRequest('proxy', 'POST', '/fetch', {
        url: u, provider: [p1.addr], out: join(dir, 'hostile.bin'), max_price: '1000000000', budget: String(BTT)
      }).then(() => undefined, (e: unknown) => e as { code?: string, message: string })
      expect(err, u).toBeDefined()
      expect(err?.code, `${u}: ${err?.message ?? ''}`).toMatch(/^PROXY_FORBIDDEN/)
    }
    expect(canary.hits()).toBe(0)
    expect(await spent()).toBe(before)
    const metrics = await p1.api.metrics()
    expect(metrics).toMatch(/btt_proxy_refusals_total\{reason="PROXY_FORBIDDEN[A-Z_]*"\} [1-9]/)
    // the earlier tests' downloads from P1: chunks and bytes counted, earnings too
    expect(metrics).toMatch(/btt_proxy_chunks_total [1-9]/)
    expect(metrics).toMatch(/btt_proxy_bytes_total [1-9]/)
    expect(metrics).toMatch(/btt_channel_received_btt 0\.0[0-9]*[1-9]/)
  }, 120_000)
})
