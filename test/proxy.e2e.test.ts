import { spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, readFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import { join } from 'node:path'
import { AdminClient, homePaths, readApiToken } from '@btt/node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CLI, cleanEnv, collect, runCli, startNodeProcess, tempHome, type NodeProcess } from './helpers/cli.js'
import { BTT, fundHome, ledgerHome, startLedgerProcess, type LedgerProcess } from './helpers/paid.js'

const MIB = 1024 * 1024
const SIZE = 200 * MIB
const GIB = 1n << 30n
const PRICE_PER_GIB = 5n * 10n ** 17n

/** A local origin serving one deterministic 200 MiB body, with Range support and an ETag. */
async function startOrigin (body: Buffer): Promise<{ server: Server, port: number }> {
  const etag = `"${createHash('sha256').update(body).digest('hex').slice(0, 16)}"`
  const server = createServer((req, res) => {
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '')
    const start = m !== null ? Number(m[1]) : 0
    res.writeHead(m !== null ? 206 : 200, {
      'content-type': 'application/octet-stream',
      'content-length': String(body.length - start),
      etag,
      'accept-ranges': 'bytes',
      ...(m !== null ? { 'content-range': `bytes ${start}-${body.length - 1}/${body.length}` } : {})
    })
    res.end(body.subarray(start))
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return { server, port: (server.address() as { port: number }).port }
}

/**
 * A 200 MiB file from a local HTTP origin through a provider node, paid per chunk; the fetch is cut
 * 20 times at random (the CLI killed) and resumed each time; the result is byte-identical and the
 * requester's channel paid exactly price × bytes (no chunk paid twice, none unpaid).
 */
describe('proxy: a chunked, paid, resumable fetch between two real nodes', () => {
  let ledger: LedgerProcess
  let origin: { server: Server, port: number }
  let body: Buffer
  let provider: NodeProcess
  let requester: NodeProcess
  let providerHome: string
  let requesterHome: string
  let providerAddr: string
  let dir: string

  beforeAll(async () => {
    body = randomBytes(SIZE)
    origin = await startOrigin(body)
    ledger = await startLedgerProcess()
    // the origin is on loopback: reachable only through this test-only allowance of its port
    providerHome = await ledgerHome(ledger.url, `[services.proxy]\nenabled = true\nprice_per_gib = "0.5"\nallow_cidrs = ["127.0.0.1/32"]\nallow_ports = [${origin.port}]\n`, 'btt-proxy-provider-')
    requesterHome = await ledgerHome(ledger.url, '[services.proxy]\nenabled = true\nprovide = false\n', 'btt-proxy-requester-')
    await fundHome(ledger.url, requesterHome, 10n * BTT)
    provider = await startNodeProcess(providerHome)
    requester = await startNodeProcess(requesterHome)
    const api = new AdminClient({ url: provider.apiUrl, token: await readApiToken(homePaths(providerHome)) })
    providerAddr = (await api.status()).listenAddresses[0] as string
    dir = await tempHome('btt-proxy-out-')
    await mkdir(dir, { recursive: true })
  }, 120_000)

  afterAll(async () => {
    await provider?.signal('SIGKILL')
    await requester?.signal('SIGKILL')
    ledger?.stop()
    origin?.server.close()
  })

  it('cut 20 times and resumed each time: byte-identical, paid exactly price × bytes', async () => {
    const out = join(dir, 'big.bin')
    const url = `http://127.0.0.1:${origin.port}/big.bin`
    const args = ['proxy', 'fetch', url, '--provider', providerAddr, '--out', out, '--chunk-size', '1024', '--max-price', '1', '--budget', '1', '--json', '--home', requesterHome]
    let cuts = 0
    let seed = 7
    const rand = (): number => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed / 2 ** 31 }
    const progress: number[] = []
    // 20 cut points spread over the body; each run is killed once the download passed its point
    // (plus a random few ms, so the cut lands anywhere in a chunk's transfer or payment)
    const points = Array.from({ length: 20 }, () => Math.floor(rand() * (SIZE - 32 * MIB))).sort((a, b) => a - b)
    while (cuts < 20) {
      const spawned = Date.now()
      const child = spawn(process.execPath, [CLI, ...args, ...(cuts > 0 ? ['--resume'] : [])], { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
      const result = collect(child)
      const point = Math.max(points[cuts] as number, (progress[progress.length - 1] ?? 0) + 1)
      const deadline = Date.now() + 60_000
      // the node's live count (the manifest on disk is saved lazily)
      const samples: string[] = []
      const live = async (): Promise<number> => {
        const api = new AdminClient({ url: requester.apiUrl, token: await readApiToken(homePaths(requesterHome)) })
        const f = (await api.serviceRequest<{ fetches: Array<{ out: string, bytes: number, startedAt: number }> }>('proxy', 'GET', '/fetches')).fetches
        samples.push(`${Date.now()}:${JSON.stringify(f.map(x => [x.bytes, x.startedAt]))}`)
        // this run's fetch only (started after its CLI)
        return f.find(x => x.out === out && x.startedAt >= spawned)?.bytes ?? 0
      }
      while (await live() < point && child.exitCode === null && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 5))
      await new Promise(resolve => setTimeout(resolve, Math.floor(rand() * 40)))
      const reached = await live()
      if (cuts % 5 === 4) {
        // every fifth cut is a crash of the requester's node itself: the manifest, the partial file
        // and the channel store must carry the download (and a payment made but not sent) over it
        await requester.signal('SIGKILL')
        requester = await startNodeProcess(requesterHome)
      }
      child.kill('SIGKILL')
      const r = await result
      expect(r.code, `the fetch finished before 20 cuts (${cuts}): make the cuts faster`).not.toBe(0)
      expect(reached, `cut ${cuts} (point ${point}): the fetch ended on its own: ${samples.slice(-6).join(' ')} ${r.stdout}${r.stderr}\n${requester.output().split('\n').filter(l => l.includes('"level":50')).slice(-12).map(l => l.slice(0, 400)).join('\n')}\nPROVIDER ${provider.output().split('\n').slice(-12).map(l => l.slice(0, 400)).join('\n')}`).toBeGreaterThan(0)
      // the node notices its CLI went away and stops the download (the cut reaches the provider)
      const until = Date.now() + 10_000
      while ((await new AdminClient({ url: requester.apiUrl, token: await readApiToken(homePaths(requesterHome)) }).serviceRequest<{ fetches: unknown[] }>('proxy', 'GET', '/fetches')).fetches.length > 0) {
        expect(Date.now(), 'the node went on fetching 10 s after its CLI was killed').toBeLessThan(until)
        await new Promise(resolve => setTimeout(resolve, 20))
      }
      // the download stays resumable: its manifest is there (it may lag what was paid; the channel says the rest)
      await expect(readFile(`${out}.btt-manifest.json`, 'utf8')).resolves.toContain('"segments"')
      progress.push(reached)
      cuts++
    }
    // each cut came mid-download, and the download kept moving between cuts
    expect(progress[progress.length - 1]).toBeLessThan(SIZE)
    const advanced = progress.filter((b, i) => b > (progress[i - 1] ?? 0) && b >= (points[i] as number)).length
    expect(advanced, `bytes at each cut: ${progress.join(', ')}`).toBe(20)
    // resumed after the last cut, uninterrupted
    const last = await runCli([...args, '--resume'])
    expect(last.code, last.stderr).toBe(0)
    const summary = JSON.parse(last.stdout) as { bytes: number, resumedFrom: number }
    expect(summary.bytes).toBe(SIZE)
    // the manifest on disk may lag what was paid (it is saved lazily; the channel says the rest)
    expect(summary.resumedFrom).toBeGreaterThanOrEqual(Math.floor(progress[progress.length - 1] as number / MIB))
    await expect(readFile(`${out}.btt-manifest.json`)).rejects.toThrow()
    const got = await readFile(out)
    expect(got.length).toBe(SIZE)
    expect(createHash('sha256').update(got).digest('hex')).toBe(createHash('sha256').update(body).digest('hex'))

    const perByte = PRICE_PER_GIB / GIB
    const rapi = new AdminClient({ url: requester.apiUrl, token: await readApiToken(homePaths(requesterHome)) })
    const papi = new AdminClient({ url: provider.apiUrl, token: await readApiToken(homePaths(providerHome)) })
    const spent = (await rapi.channels()).outgoing.reduce((sum, ch) => sum + BigInt(ch.spent), 0n)
    expect(spent).toBe(perByte * BigInt(SIZE))
    const received = (await papi.channels()).incoming.reduce((sum, ch) => sum + BigInt(ch.received), 0n)
    expect(received).toBe(perByte * BigInt(SIZE))
  }, 300_000)
})
