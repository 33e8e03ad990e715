/**
 * storage.upload   — MB/s of `btt-node storage put` of a BENCH_STORAGE_MIB file (default 256) from a
 *                    requester node to a provider node (plaintext streamed to the requester's admin
 *                    API, encrypted, Merkle-hashed, sent over libp2p, hashed and fsynced by the
 *                    provider), timed by the requester node from the first body byte to the
 *                    provider's acknowledgement; against raw libp2p stream throughput between the
 *                    same two node processes (the storage speed test: bytes over the same stream
 *                    kind, nothing else). Target ≥ 0.8.
 * storage.download — MB/s of `btt-node storage get` (chunks verified against the root, paid per
 *                    chunk, decrypted, streamed to the CLI which writes the file), timed by the CLI
 *                    from its request to the last byte on disk; against raw libp2p provider → requester.
 * Median ratio of BENCH_RUNS rounds (default 3). Loopback only.
 */
import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, open, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { AdminClient, homePaths, readApiToken } from '@btt/node'
import { runCli, startNodeProcess } from '../test/helpers/cli.ts'
import { BTT, fundHome, ledgerHome, startLedgerProcess } from '../test/helpers/paid.ts'
import { cpuSeconds, median, note, report } from './lib.ts'

const MIB = 1 << 20
const RUNS = Number(process.env.BENCH_RUNS ?? 3)
const SIZE_MIB = Number(process.env.BENCH_STORAGE_MIB ?? 256)

export async function benchStorage (): Promise<void> {
  const ledger = await startLedgerProcess()
  const providerHome = await ledgerHome(ledger.url, '[services.storage]\nenabled = true\nproof_period_seconds = 3600\nmin_duration_seconds = 1\nquota_mib = 4096\nprice_per_gib_month = "1"\n[log]\nlevel = "warn"\n', 'btt-bench-sp-')
  const requesterHome = await ledgerHome(ledger.url, '[services.storage]\nenabled = true\nprovide = false\nchallenge = false\n[log]\nlevel = "warn"\n', 'btt-bench-sr-')
  await fundHome(ledger.url, requesterHome, 1000n * BTT)
  const provider = await startNodeProcess(providerHome)
  const requester = await startNodeProcess(requesterHome)
  const work = await mkdtemp(join(tmpdir(), 'btt-bench-storage-'))
  try {
    const papi = new AdminClient({ url: provider.apiUrl, token: await readApiToken(homePaths(providerHome)) })
    const rapi = new AdminClient({ url: requester.apiUrl, token: await readApiToken(homePaths(requesterHome)), timeoutMs: 600_000 })
    const addr = (await papi.status()).listenAddresses[0] as string
    await mkdir(join(work, 'src'))
    const src = join(work, 'src', 'data.bin')
    const fh = await open(src, 'w')
    for (let i = 0; i < SIZE_MIB; i++) await fh.write(randomBytes(MIB))
    await fh.close()
    const up: number[] = []
    const down: number[] = []
    const rawUp: number[] = []
    const rawDown: number[] = []
    for (let round = 0; round < RUNS; round++) {
      const cpu = (): number => cpuSeconds(provider.pid) + cpuSeconds(requester.pid)
      let c0 = cpu()
      let w0 = performance.now()
      const put = await runCli(['storage', 'put', src, '--provider', addr, '--duration', '2h', '--max-price', '1', '--json', '--home', requesterHome])
      if (put.code !== 0) throw new Error(`put failed: ${put.stderr}`)
      const { file, seconds } = JSON.parse(put.stdout) as { file: { id: string, plainSize: number }, seconds: number }
      const putCpu = cpu() - c0
      const putWall = (performance.now() - w0) / 1000
      c0 = cpu()
      w0 = performance.now()
      const out = join(work, `back-${round}.bin`)
      const get = await runCli(['storage', 'get', file.id, '--out', out, '--json', '--home', requesterHome])
      if (get.code !== 0) throw new Error(`get failed: ${get.stderr}`)
      const got = JSON.parse(get.stdout) as { seconds: number }
      await rm(out)
      const getCpu = cpu() - c0
      const getWall = (performance.now() - w0) / 1000
      c0 = cpu()
      w0 = performance.now()
      const speed = await rapi.serviceRequest<{ upMBps: number, downMBps: number }>('storage', 'POST', `/files/${file.id}/speedtest?bytes=${SIZE_MIB * MIB}`)
      // both node processes' CPU per wall second: 2.0 is both cores of a 2-vCPU machine
      note(`cores busy (both nodes): put ${(putCpu / putWall).toFixed(2)}, get ${(getCpu / getWall).toFixed(2)}, raw speed test up+down ${((cpu() - c0) / ((performance.now() - w0) / 1000)).toFixed(2)}`)
      const u = file.plainSize / 1e6 / seconds
      const d = file.plainSize / 1e6 / got.seconds
      note(`round ${round + 1}: upload ${u.toFixed(1)} MB/s (raw ${speed.upMBps.toFixed(1)}), download ${d.toFixed(1)} MB/s (raw ${speed.downMBps.toFixed(1)})`)
      up.push(u); down.push(d); rawUp.push(speed.upMBps); rawDown.push(speed.downMBps)
      await runCli(['storage', 'cancel', file.id, '--home', requesterHome])
      if (process.env.BENCH_DEBUG !== undefined) note(provider.output().split('\n').filter(l => l.includes('upload received')).slice(-1).join('') + requester.output().split('\n').filter(l => l.includes('put timing')).slice(-1).join(''))
    }
    const ratios = (a: number[], b: number[]): number[] => a.map((v, i) => v / (b[i] as number))
    const mid = (r: number[]): number => r.indexOf(median(r)) >= 0 ? r.indexOf(median(r)) : 0
    const ru = ratios(up, rawUp)
    const rd = ratios(down, rawDown)
    note(`upload ratios ${ru.map(r => r.toFixed(2)).join(', ')}; download ratios ${rd.map(r => r.toFixed(2)).join(', ')}`)
    const iu = mid(ru)
    const id = mid(rd)
    report({ bench: 'storage.upload', value: up[iu] as number, unit: 'MB/s', anchor: 'raw libp2p stream, same two processes', anchor_value: rawUp[iu] as number })
    report({ bench: 'storage.download', value: down[id] as number, unit: 'MB/s', anchor: 'raw libp2p stream, same two processes', anchor_value: rawDown[id] as number })
  } finally {
    await provider.signal('SIGTERM')
    await requester.signal('SIGTERM')
    ledger.stop()
    await rm(work, { recursive: true, force: true })
  }
}
