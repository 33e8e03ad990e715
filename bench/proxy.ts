/**
 * proxy.fetch          — MB/s of a paid, chunked `btt-node proxy fetch` of a BENCH_PROXY_MIB body
 *                        (default 256) from a local HTTP origin through a provider node (1 MiB
 *                        chunks, each hashed, written and fsynced with its manifest, paid, the voucher
 *                        verified and persisted before the next chunk), timed by the requester node
 *                        from its request to the file in place; against raw libp2p stream throughput
 *                        between the same two node processes (the proxy speed test). Target ≥ 0.8.
 *                        A second line gives the same fetch against a direct undici.request of the
 *                        origin from this process (what the proxy costs over going direct).
 * proxy.chunk_overhead — provider CPU per chunk, µs: the same body fetched in 64 KiB and in 16 MiB
 *                        chunks; (CPU₆₄ₖ − CPU₁₆ₘ) / (chunks₆₄ₖ − chunks₁₆ₘ), so the per-byte work
 *                        (origin read, SHA-256, sending) cancels out and what is left is the meter,
 *                        the voucher's verification and durable write, and the messages.
 * Median ratio of BENCH_RUNS rounds (default 3). Loopback only; every round fetches a new URL (no
 * cache hits; with the default config the provider still copies each answer into its cache).
 * BENCH_PROXY_CHUNK_KIB sets the chunk size of proxy.fetch (default: the CLI's, 4096);
 * BENCH_PROXY_CACHE_OFF=1 runs the provider with cache_mib = 0.
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { AdminClient, homePaths, readApiToken } from '@btt/node'
import { request } from 'undici'
import { runCli, startNodeProcess } from '../test/helpers/cli.ts'
import { BTT, fundHome, ledgerHome, startLedgerProcess } from '../test/helpers/paid.ts'
import { cpuSeconds, median, note, report } from './lib.ts'

const MIB = 1 << 20
const RUNS = Number(process.env.BENCH_RUNS ?? 3)
const SIZE_MIB = Number(process.env.BENCH_PROXY_MIB ?? 256)
const OVERHEAD_MIB = 64
/** KiB per chunk of the proxy.fetch figure; default: the CLI's default */
const CHUNK_KIB = process.env.BENCH_PROXY_CHUNK_KIB

export async function benchProxy (): Promise<void> {
  const body = randomBytes(SIZE_MIB * MIB)
  // ?mib=N serves the first N MiB
  const origin = createServer((req, res) => {
    const mib = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('mib') ?? SIZE_MIB)
    const b = body.subarray(0, Math.min(SIZE_MIB, mib) * MIB)
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(b.length) })
    res.end(b)
  })
  await new Promise<void>(resolve => origin.listen(0, '127.0.0.1', resolve))
  const port = (origin.address() as AddressInfo).port
  const ledger = await startLedgerProcess()
  const providerHome = await ledgerHome(ledger.url, `[services.proxy]\nenabled = true\nallow_cidrs = ["127.0.0.1/32"]\nallow_ports = [${port}]\nper_payer_per_minute = 100000\n${process.env.BENCH_PROXY_CACHE_OFF !== undefined ? "cache_mib = 0\n" : ""}[log]\nlevel = "warn"\n`, 'btt-bench-pp-')
  const requesterHome = await ledgerHome(ledger.url, '[services.proxy]\nenabled = true\nprovide = false\n[log]\nlevel = "warn"\n', 'btt-bench-pr-')
  await fundHome(ledger.url, requesterHome, 1000n * BTT)
  const provider = await startNodeProcess(providerHome)
  const requester = await startNodeProcess(requesterHome)
  const work = await mkdtemp(join(tmpdir(), 'btt-bench-proxy-'))
  let n = 0
  const fetchOnce = async (chunkKiB: number | undefined, size = SIZE_MIB): Promise<{ seconds: number, chunks: number }> => {
    const out = join(work, `out-${n}.bin`)
    const url = `http://127.0.0.1:${port}/body-${n++}?mib=${size}`
    const r = await runCli(['proxy', 'fetch', url, '--provider', addr, '--out', out, ...(chunkKiB !== undefined ? ['--chunk-size', String(chunkKiB)] : []), '--json', '--home', requesterHome])
    if (r.code !== 0) throw new Error(`proxy fetch failed: ${r.stdout}${r.stderr}`)
    const res = JSON.parse(r.stdout) as { seconds: number, chunks: number, bytes: number }
    if (res.bytes !== size * MIB) throw new Error(`fetched ${res.bytes} bytes, expected ${size * MIB}`)
    await rm(out)
    return res
  }
  let addr = ''
  try {
    const papi = new AdminClient({ url: provider.apiUrl, token: await readApiToken(homePaths(providerHome)) })
    const rapi = new AdminClient({ url: requester.apiUrl, token: await readApiToken(homePaths(requesterHome)), timeoutMs: 600_000 })
    addr = (await papi.status()).listenAddresses[0] as string
    // a first fetch opens the channel (and makes this node a payer the speed test answers)
    await fetchOnce(1024)
    const fetched: number[] = []
    const direct: number[] = []
    const raw: number[] = []
    for (let round = 0; round < RUNS; round++) {
      const t0 = performance.now()
      const res = await request(`http://127.0.0.1:${port}/direct-${round}`)
      let got = 0
      for await (const c of res.body) got += (c as Buffer).length
      if (got !== body.length) throw new Error('direct fetch came short')
      const d = got / 1e6 / ((performance.now() - t0) / 1000)
      // CPU of both nodes and of this process (the origin) per wall second: 2.0 is both cores of a 2-vCPU machine
      const cpu = (): number => cpuSeconds(provider.pid) + cpuSeconds(requester.pid) + process.cpuUsage().user / 1e6 + process.cpuUsage().system / 1e6
      let c0 = cpu()
      let w0 = performance.now()
      const f = body.length / 1e6 / (await fetchOnce(CHUNK_KIB !== undefined ? Number(CHUNK_KIB) : undefined)).seconds
      const fetchCores = (cpu() - c0) / ((performance.now() - w0) / 1000)
      c0 = cpu()
      w0 = performance.now()
      const s = await rapi.serviceRequest<{ MBps: number }>('proxy', 'POST', '/speedtest', { provider: [addr], bytes: body.length })
      note(`cores busy: fetch (CLI excluded) ${fetchCores.toFixed(2)}, raw speed test ${((cpu() - c0) / ((performance.now() - w0) / 1000)).toFixed(2)}`)
      note(`round ${round + 1}: proxy fetch ${f.toFixed(1)} MB/s, raw libp2p ${s.MBps.toFixed(1)} MB/s, direct undici ${d.toFixed(1)} MB/s`)
      fetched.push(f); raw.push(s.MBps); direct.push(d)
    }
    const ratios = fetched.map((f, i) => f / (raw[i] as number))
    note(`ratios to raw libp2p: ${ratios.map(r => r.toFixed(2)).join(', ')}`)
    const mid = ratios.indexOf(median(ratios)) >= 0 ? ratios.indexOf(median(ratios)) : 0
    report({ bench: 'proxy.fetch', value: fetched[mid] as number, unit: 'MB/s', anchor: 'raw libp2p stream, same two processes', anchor_value: raw[mid] as number })
    report({ bench: 'proxy.fetch_vs_direct', value: fetched[mid] as number, unit: 'MB/s', anchor: 'undici.request of the origin, direct', anchor_value: direct[mid] as number })

    // per-chunk provider CPU: small chunks against large ones, same bytes
    const overheads: number[] = []
    const walls: number[] = []
    for (let round = 0; round < RUNS; round++) {
      const measure = async (kib: number): Promise<{ cpu: number, chunks: number, seconds: number }> => {
        const c0 = cpuSeconds(provider.pid)
        const r = await fetchOnce(kib, OVERHEAD_MIB)
        return { cpu: cpuSeconds(provider.pid) - c0, chunks: r.chunks, seconds: r.seconds }
      }
      const small = await measure(64)
      const large = await measure(16 * 1024)
      const per = (small.cpu - large.cpu) / (small.chunks - large.chunks) * 1e6
      const wall = (small.seconds - large.seconds) / (small.chunks - large.chunks) * 1e6
      note(`round ${round + 1}: provider CPU ${small.cpu.toFixed(2)} s for ${small.chunks} chunks, ${large.cpu.toFixed(2)} s for ${large.chunks}: ${per.toFixed(0)} µs per chunk (wall ${wall.toFixed(0)} µs per chunk)`)
      overheads.push(per); walls.push(wall)
    }
    note(`wall time per chunk (payment round trip included), median: ${median(walls).toFixed(0)} µs`)
    report({ bench: 'proxy.chunk_overhead', value: median(overheads), unit: 'µs' })
  } finally {
    await provider.signal('SIGTERM')
    await requester.signal('SIGTERM')
    ledger.stop()
    origin.close()
    await rm(work, { recursive: true, force: true })
  }
}
