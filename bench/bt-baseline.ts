/**
 * Baseline for the BitTorrent engine benchmark: how fast do two real clients move a torrent over
 * loopback here? aria2 1.36 seeds, aria2 1.36 downloads, opentracker introduces them (HTTP announce).
 *
 * Method (what the numbers mean):
 * - The data: a multi-file tree of `bytes` (default 512 MiB, 8 files in nested folders), freshly
 *   written, so the seeder reads it from the page cache; a 1 MiB piece length.
 * - Before the clock starts the tracker is up and whitelists the torrent, and the seeder listens and
 *   has announced itself (it is in the tracker's peer list). It seeds with --bt-seed-unverified, so
 *   it has no hash check of its own to do; neither its startup nor mktorrent is timed.
 * - The downloader announces every second (--bt-tracker-interval=1) and exits (--seed-time=0) once
 *   every piece passed its SHA-1 check.
 * - `wallMs`: from spawning the downloader to its exit 0. This is dominated by aria2's own 1-second
 *   scheduling, not by the transfer: aria2 runs its tracker, peer-connection and shutdown logic on
 *   1 s ticks, so the first announce goes out ~1 s after start, the first peer connection ~1 s after
 *   that, and after the last piece it needs another ~1-2 s to send "stopped" and exit. These ~3-4 s
 *   are the same for 1 MiB and for 512 MiB.
 * - `ms` (and `mbPerSec`, which the engine benchmark compares against): the transfer itself, from the
 *   first payload byte the downloader writes (polled every 5 ms as the allocated blocks of the
 *   torrent's files; aria2 writes a piece out when it completes, so this is within one piece of the
 *   first byte received) to aria2's --on-bt-download-complete hook, which runs right after the last
 *   piece verified. MB = 10^6 bytes.
 * - After the download every file's sha256 is compared with the source (not timed).
 * The machine has 2 cores shared by seeder, downloader and this process: figures are noisy, compare
 * ratios measured in the same run rather than absolutes.
 *
 * Run alone: `node --experimental-strip-types --no-warnings bt-baseline.ts [MiB]` (through npx/npm so
 * that Node 24 is used). Not registered in run.ts: the engine benchmark calls measureAria2ToAria2()
 * and may reuse timeAria2Download() to time aria2 downloading from our engine the same way.
 */
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import {
  aria2Download,
  hashTree,
  killAll,
  makeTestTree,
  mktorrent,
  startAria2Seeder,
  startTracker,
  torrentInfo
} from '../test/interop/clients.ts'
import { note, report } from './lib.ts'

export interface Aria2Timing {
  /** bytes / `ms`, in MB/s (10^6 bytes). */
  mbPerSec: number
  /** Transfer: first payload byte written → last piece verified (aria2's on-bt-download-complete hook). */
  ms: number
  /** Downloader spawn → exit 0 (includes aria2's ~3-4 s of 1-second ticks, see the header). */
  wallMs: number
  /** bytes / `wallMs`, in MB/s. */
  wallMbPerSec: number
  /** Downloader spawn → first payload byte (tracker announce + peer connection). */
  startupMs: number
  bytes: number
}

const MIB = 1 << 20

/** A wall-clock timestamp in ms with sub-ms resolution (comparable to `date +%s%N` / 1e6). */
function now (): number {
  return performance.timeOrigin + performance.now()
}

/**
 * Times aria2c downloading `torrentPath` into `dir` from whatever seeds it (aria2 here, our engine in
 * the engine benchmark) with the method described at the top of this file. The seeder must already
 * be in the tracker's swarm.
 */
export async function timeAria2Download (opts: { torrentPath: string, dir: string, timeoutMs?: number }): Promise<Aria2Timing> {
  const info = await torrentInfo(opts.torrentPath)
  const scratch = await mkdtemp(join(tmpdir(), 'btt-bench-hook-'))
  const stamp = join(scratch, 'complete.ns')
  const hook = join(scratch, 'complete.sh')
  await writeFile(hook, `#!/bin/sh\ndate +%s%N > '${stamp}'\n`, { mode: 0o755 })
  await mkdir(opts.dir, { recursive: true })
  const root = join(opts.dir, info.name)
  const paths = info.files.length === 1 && info.files[0]?.path === info.name
    ? [root]
    : info.files.map(f => join(root, ...f.path.split('/')))

  let firstDataAt: number | undefined
  let polling = true
  const poller = (async () => {
    while (polling && firstDataAt === undefined) {
      for (const p of paths) {
        const st = await stat(p).catch(() => undefined)
        if (st !== undefined && st.blocks > 0) {
          firstDataAt = now()
          break
        }
      }
      await new Promise(resolve => setTimeout(resolve, 5))
    }
  })()

  try {
    const result = await aria2Download({
      torrentPath: opts.torrentPath,
      dir: opts.dir,
      timeoutMs: opts.timeoutMs ?? 300_000,
      extraArgs: [`--on-bt-download-complete=${hook}`]
    })
    polling = false
    await poller
    const completeAt = Number(BigInt((await readFile(stamp, 'utf8')).trim()) / 1000n) / 1000
    const start = firstDataAt ?? result.startedAt
    const ms = completeAt - start
    const bytes = info.totalBytes
    return {
      mbPerSec: bytes / 1e6 / (ms / 1000),
      ms,
      wallMs: result.ms,
      wallMbPerSec: bytes / 1e6 / (result.ms / 1000),
      startupMs: start - result.startedAt,
      bytes
    }
  } finally {
    polling = false
    await poller
    await rm(scratch, { recursive: true, force: true })
  }
}

/**
 * aria2 seeder → aria2 downloader of one multi-file torrent of `bytes` (default 512 MiB) over
 * loopback through opentracker. Creates and removes its data under `workDir`.
 */
export async function measureAria2ToAria2 (opts: { bytes?: number, workDir: string, pieceLength?: number, files?: number }): Promise<Aria2Timing> {
  const bytes = opts.bytes ?? 512 * MIB
  const srcRoot = join(opts.workDir, 'aria2-baseline-src')
  const dlDir = join(opts.workDir, 'aria2-baseline-dl')
  const torrentPath = join(opts.workDir, 'aria2-baseline.torrent')
  await rm(srcRoot, { recursive: true, force: true })
  await rm(dlDir, { recursive: true, force: true })
  const tracker = await startTracker()
  const stops: Array<() => Promise<void>> = [tracker.stop]
  try {
    await makeTestTree(join(srcRoot, 'tree'), { totalBytes: bytes, files: opts.files ?? 8, seed: 1 })
    const torrent = await mktorrent({ dir: join(srcRoot, 'tree'), out: torrentPath, announce: [tracker.httpUrl], pieceLength: opts.pieceLength ?? MIB })
    await tracker.allow(torrent.infoHash)
    const seeder = await startAria2Seeder({ torrentPath, dir: srcRoot })
    stops.unshift(seeder.stop)
    await tracker.waitForPeer(torrent.infoHash, seeder.port)

    const timing = await timeAria2Download({ torrentPath, dir: dlDir })

    const [want, got] = [await hashTree(join(srcRoot, 'tree')), await hashTree(join(dlDir, 'tree'))]
    if (JSON.stringify([...want]) !== JSON.stringify([...got])) throw new Error('aria2 baseline: downloaded tree differs from the source')
    return timing
  } finally {
    for (const stop of stops) await stop().catch(() => {})
    killAll()
    await rm(srcRoot, { recursive: true, force: true })
    await rm(dlDir, { recursive: true, force: true })
    await rm(torrentPath, { force: true })
  }
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const mib = Number(process.argv[2] ?? 512)
  const workDir = await mkdtemp(join(tmpdir(), 'btt-bench-bt-'))
  try {
    const t = await measureAria2ToAria2({ bytes: mib * MIB, workDir })
    note(`aria2 -> aria2 ${mib} MiB: transfer ${t.ms.toFixed(0)} ms, startup ${t.startupMs.toFixed(0)} ms, wall ${t.wallMs} ms`)
    report({ bench: 'bt.aria2_to_aria2', value: t.mbPerSec, unit: 'MB/s' })
    report({ bench: 'bt.aria2_to_aria2_wall', value: t.wallMbPerSec, unit: 'MB/s' })
  } finally {
    await rm(workDir, { recursive: true, force: true })
  }
}
