import { spawn, type ChildProcess } from 'node:child_process'
import net from 'node:net'
import { generateKeyPair } from '@btt/channel'
import { Discovery } from '@btt/discovery'
import { announce } from '@btt/tracker'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CLI, cleanEnv, collect, runCli, type CliResult } from './helpers/cli.js'

interface Served { child: ChildProcess, firstLine: string, exited: Promise<CliResult> }

/** `btt-node tracker serve <args>` as a real process, resolved with the first line it prints. */
async function serveTracker (args: string[]): Promise<Served> {
  const child = spawn(process.execPath, [CLI, 'tracker', 'serve', ...args], { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
  const exited = collect(child)
  let out = ''
  const firstLine = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`no line from tracker serve within 20 s: ${out}`)) }, 20_000)
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString()
      const i = out.indexOf('\n')
      if (i >= 0) { clearTimeout(timer); resolve(out.slice(0, i)) }
    })
    child.on('close', code => { clearTimeout(timer); reject(new Error(`tracker serve exited ${code} before listening`)) })
  })
  return { child, firstLine, exited }
}

/** A loopback TCP port nothing listens on (bound, then released). */
async function closedPort (): Promise<number> {
  const srv = net.createServer()
  await new Promise<void>(resolve => srv.listen(0, '127.0.0.1', resolve))
  const port = (srv.address() as net.AddressInfo).port
  await new Promise(resolve => srv.close(resolve))
  return port
}

const IH_A = Buffer.alloc(20, 0xaa)
const IH_B = Buffer.alloc(20, 0xbb)
const peerId = (n: number): Buffer => Buffer.from(`-BT0001-${String(n).padStart(12, '0')}`)
const KIB_PRICE = 1_000_000_000_000n // 0.000001 BTT per KiB

interface ScrapeJson { url: string, files: Array<{ infoHash: string, bidders: number, bidMax: string, bidMedian: string, clearingPrice: string, complete: number, incomplete: number }>, next?: string }

describe('tracker serve + market scrape', () => {
  let tracker: Served
  let announceUrl: string

  beforeAll(async () => {
    // two paid slots: with three bidders on A the clearing estimate is the third-highest bid
    tracker = await serveTracker(['--port', '0', '--udp-port', '0', '--paid-slots', '2'])
    const m = /^tracker listening on (http:\/\/127\.0\.0\.1:(\d+)\/announce) \(udp:\/\/127\.0\.0\.1:(\d+)\), bid-scrape http:\/\/127\.0\.0\.1:(\d+)\/bid-scrape$/.exec(tracker.firstLine)
    expect(m, tracker.firstLine).not.toBeNull()
    announceUrl = (m as RegExpExecArray)[1] as string
    expect(Number(m?.[3])).toBeGreaterThan(0)
    // A: three bidders (3, 1, 2 µBTT/KiB); B: one of them bids 2.5 µBTT/KiB there
    const bids: Array<[Buffer, number, bigint]> = [[IH_A, 1, 3n * KIB_PRICE], [IH_A, 2, KIB_PRICE], [IH_A, 3, 2n * KIB_PRICE], [IH_B, 2, 5n * KIB_PRICE / 2n]]
    for (const [ih, n, bid] of bids) {
      await announce(announceUrl, { infoHash: ih, peerId: peerId(n), port: 6000 + n, left: 1000, event: 'started', bid, pk: String(n).repeat(64) })
    }
    // a seeder without a bid on A
    await announce(announceUrl, { infoHash: IH_A, peerId: peerId(9), port: 6009, left: 0, event: 'started' })
  })

  afterAll(() => {
    if (tracker?.child.exitCode === null) tracker.child.kill('SIGKILL')
  })

  it('--json lists swarms by highest bid with exact base-unit amounts', async () => {
    const r = await runCli(['market', 'scrape', announceUrl, '--json'])
    expect(r.code, r.stderr).toBe(0)
    const j = JSON.parse(r.stdout) as ScrapeJson
    expect(j.url).toBe(announceUrl.replace(/announce$/, 'bid-scrape'))
    expect(j.next).toBeUndefined()
    expect(j.files).toEqual([
      { infoHash: 'aa'.repeat(20), bidders: 3, bidMax: '3000000000000', bidMedian: '2000000000000', clearingPrice: '1000000000000', complete: 1, incomplete: 3, downloaded: 0 },
      { infoHash: 'bb'.repeat(20), bidders: 1, bidMax: '2500000000000', bidMedian: '2500000000000', clearingPrice: '2500000000000', complete: 0, incomplete: 1, downloaded: 0 }
    ])
  })

  it('prints a table in BTT per KiB, exact decimals', async () => {
    const r = await runCli(['market', 'scrape', announceUrl])
    expect(r.code, r.stderr).toBe(0)
    const lines = r.stdout.trim().split('\n')
    expect(lines[0]?.split(/\s+/)).toEqual(['INFOHASH', 'BIDDERS', 'HIGHEST', 'MEDIAN', 'CLEARING', 'SEEDS', 'PEERS'])
    expect(lines[1]?.split(/\s+/)).toEqual(['aa'.repeat(20), '3', '0.000003', '0.000002', '0.000001', '1', '4'])
    expect(lines[2]?.split(/\s+/)).toEqual(['bb'.repeat(20), '1', '0.0000025', '0.0000025', '0.0000025', '0', '1'])
    expect(r.stdout).toMatch(/2 swarm\(s\); bids in BTT per KiB/)
  })

  it('--min-bid filters by highest bid; the bid-scrape URL works as given', async () => {
    const r = await runCli(['market', 'scrape', announceUrl.replace(/announce$/, 'bid-scrape'), '--min-bid', '0.0000028', '--json'])
    expect(r.code, r.stderr).toBe(0)
    expect((JSON.parse(r.stdout) as ScrapeJson).files.map(f => f.infoHash)).toEqual(['aa'.repeat(20)])
    const none = await runCli(['market', 'scrape', announceUrl, '--min-bid', '1'])
    expect(none.code, none.stderr).toBe(0)
    expect(none.stdout).toMatch(/no swarm with a bid of at least 1 BTT\/KiB/)
  })

  it('--limit pages with a cursor; --all follows it', async () => {
    const p1 = JSON.parse((await runCli(['market', 'scrape', announceUrl, '--limit', '1', '--json'])).stdout) as ScrapeJson
    expect(p1.files.map(f => f.infoHash)).toEqual(['aa'.repeat(20)])
    expect(p1.next).toMatch(/^[0-9a-f]{72}$/)
    const p2 = JSON.parse((await runCli(['market', 'scrape', announceUrl, '--limit', '1', '--cursor', p1.next as string, '--json'])).stdout) as ScrapeJson
    expect(p2.files.map(f => f.infoHash)).toEqual(['bb'.repeat(20)])
    const all = await runCli(['market', 'scrape', announceUrl, '--limit', '1', '--all', '--json'])
    expect(all.code, all.stderr).toBe(0)
    const j = JSON.parse(all.stdout) as ScrapeJson
    expect(j.files.map(f => f.infoHash)).toEqual(['aa'.repeat(20), 'bb'.repeat(20)])
    expect(j.next).toBeUndefined()
    const text = await runCli(['market', 'scrape', announceUrl, '--limit', '1'])
    expect(text.stdout).toContain(`more swarms follow: --cursor ${p1.next as string}`)
  })

  it('a tracker failure reason is one line, exit 1', async () => {
    const r = await runCli(['market', 'scrape', announceUrl, '--cursor', 'nope'])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/invalid cursor/)
    expect(r.stderr).not.toMatch(/at .*\.js:\d+/)
  })

  it('stops on SIGTERM with exit 0', async () => {
    tracker.child.kill('SIGTERM')
    const res = await tracker.exited
    expect(res.code, res.stderr).toBe(0)
  })
})

describe('tracker serve --json', () => {
  it('prints its URLs as one JSON line and stops on SIGINT with exit 0', async () => {
    const t = await serveTracker(['--port', '0', '--no-udp', '--json'])
    const j = JSON.parse(t.firstLine) as { http: string, udp: string | null, bidScrape: string }
    expect(j.http).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/announce$/)
    expect(j.udp).toBeNull()
    expect(j.bidScrape).toBe(j.http.replace(/announce$/, 'bid-scrape'))
    const empty = await runCli(['market', 'scrape', j.http])
    expect(empty.code, empty.stderr).toBe(0)
    expect(empty.stdout).toMatch(/no swarm with bids/)
    t.child.kill('SIGINT')
    expect((await t.exited).code).toBe(0)
  })
})

describe('bad input', () => {
  it('market scrape refuses what is not an http tracker URL, exit 2', async () => {
    for (const url of ['not-a-url', 'udp://127.0.0.1:6969/announce', 'http://127.0.0.1:6969/somewhere']) {
      const r = await runCli(['market', 'scrape', url])
      expect(r.code, url).toBe(2)
      expect(r.stderr).toMatch(/tracker URL|bid-scrape/)
    }
    const bid = await runCli(['market', 'scrape', 'http://127.0.0.1:6969/announce', '--min-bid', '-1'])
    expect(bid.code).toBe(2)
    expect(bid.stderr).toMatch(/--min-bid/)
    const limit = await runCli(['market', 'scrape', 'http://127.0.0.1:6969/announce', '--limit', '1001'])
    expect(limit.code).toBe(2)
  })

  it('market scrape of an unreachable tracker is one line, exit 1', async () => {
    const port = await closedPort()
    const r = await runCli(['market', 'scrape', `http://127.0.0.1:${port}/announce`])
    expect(r.code).toBe(1)
    expect(r.stderr.replace(/\s*\n\s*›\s*/g, ' ')).toContain(`cannot reach tracker http://127.0.0.1:${port}/bid-scrape: ECONNREFUSED`)
  })

  it('tracker serve refuses bad flags with exit 2', async () => {
    for (const args of [['--port', '70000'], ['--interval', 'soon'], ['--allow', 'xyz'], ['--paid-slots', '0'], ['--no-udp', '--udp-port', '1']]) {
      const r = await runCli(['tracker', 'serve', ...args])
      expect(r.code, args.join(' ')).toBe(2)
    }
  })

  it('providers find refuses an unknown service and bad flags with exit 2', async () => {
    const r = await runCli(['providers', 'find', 'nosuchservice'])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/unknown service "nosuchservice"/)
    expect((await runCli(['providers', 'find', 'storage', '--bootstrap', 'nohostport'])).code).toBe(2)
    expect((await runCli(['providers', 'find', 'storage', '--timeout', 'x'])).code).toBe(2)
  })

  it('providers find with a dead loopback bootstrap finds nothing, exit 0', async () => {
    const r = await runCli(['providers', 'find', 'storage', '--bootstrap', '127.0.0.1:9', '--timeout', '1s', '--json'])
    expect(r.code, r.stderr).toBe(0)
    expect(JSON.parse(r.stdout)).toEqual({ service: 'storage', providers: [] })
  })

  it('providers find, bootstrapped from a loopback DHT, finds and verifies a published storage offer; prices in BTT', async () => {
    const nodes: Discovery[] = []
    try {
      const boot = new Discovery({ keyPair: generateKeyPair(), host: '127.0.0.1', bootstrap: false })
      await boot.start()
      nodes.push(boot)
      const bootstrap = [`127.0.0.1:${boot.address().port}`]
      for (let i = 0; i < 4; i++) {
        const d = new Discovery({ keyPair: generateKeyPair(), host: '127.0.0.1', bootstrap })
        await d.start()
        nodes.push(d)
      }
      const key = generateKeyPair()
      const provider = new Discovery({ keyPair: key, host: '127.0.0.1', bootstrap })
      await provider.start()
      nodes.push(provider)
      await provider.publish({ services: ['storage'], prices: { storage: 2_500_000_000_000_000n }, addrs: ['/ip4/127.0.0.1/tcp/4101'], ledger: 'ab'.repeat(32), bt_port: 6881 })
      const r = await runCli(['providers', 'find', 'storage', '--bootstrap', bootstrap[0]!, '--timeout', '5s', '--limit', '1', '--json'])
      expect(r.code, r.stderr).toBe(0)
      const out = JSON.parse(r.stdout) as { service: string, providers: Array<{ publicKey: string, prices: Record<string, string>, addrs: string[] }> }
      expect(out.providers).toHaveLength(1)
      expect(out.providers[0]).toMatchObject({ publicKey: Buffer.from(key.publicKey).toString('hex'), prices: { storage: '2500000000000000' }, addrs: ['/ip4/127.0.0.1/tcp/4101'] })
      const human = await runCli(['providers', 'find', 'storage', '--bootstrap', bootstrap[0]!, '--timeout', '5s', '--limit', '1'])
      expect(human.code, human.stderr).toBe(0)
      expect(human.stdout).toContain('0.0025')
    } finally {
      await Promise.all(nodes.map(async n => { await n.stop() }))
    }
  }, 60_000)
})
