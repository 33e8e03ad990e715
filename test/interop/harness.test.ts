/**
 * Smoke test of the real-client harness: a 64 MiB multi-file tree, opentracker, an aria2 seeder, and
 * aria2 / transmission-cli downloaders that must reproduce the tree byte for byte. Clients that are
 * not installed skip these tests locally; in CI (CI=true) requireClient() throws instead.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  aria2Download,
  hashTree,
  killAll,
  makeTestTree,
  mktorrent,
  requireClient,
  startAria2Seeder,
  startTracker,
  transmissionDownload,
  type Aria2Handle,
  type TorrentInfo,
  type Tracker
} from './clients.ts'

const haveCore = Boolean(requireClient('opentracker')) && Boolean(requireClient('mktorrent')) && Boolean(requireClient('aria2c'))
const haveTransmission = Boolean(requireClient('transmission-cli'))

const TOTAL = 64 << 20
const TIMEOUT = 120_000

function note (text: string): void {
  process.stderr.write(`[interop] ${text}\n`)
}

/** A failed download says whether its seeder was still up, with the seeder's last output. */
async function fromSeeder<T> (seeder: Aria2Handle | undefined, download: Promise<T>): Promise<T> {
  try {
    return await download
  } catch (err) {
    const state = seeder === undefined ? 'no seeder' : `seeder ${seeder.running() ? 'running' : 'EXITED'}:\n${seeder.output().slice(-2000)}`
    throw new Error(`${(err as Error).message}\n--- ${state}`)
  }
}

describe.skipIf(!haveCore)('interop harness: real clients on loopback', () => {
  let work = ''
  let tracker: Tracker | undefined
  let source: Map<string, string>
  let httpTorrent: TorrentInfo & { path: string }
  let seeder: Aria2Handle | undefined
  const started: Aria2Handle[] = []

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'btt-interop-'))
    const srcRoot = join(work, 'src')
    let t = performance.now()
    const files = await makeTestTree(join(srcRoot, 'tree'), { totalBytes: TOTAL, files: 7, seed: 42 })
    note(`makeTestTree ${files.length} files, 64 MiB: ${Math.round(performance.now() - t)} ms`)
    expect(files.reduce((n, f) => n + f.size, 0)).toBe(TOTAL)
    expect(files.some(f => f.size < 100)).toBe(true)
    expect(files.some(f => f.path.split('/').length >= 3)).toBe(true)
    source = await hashTree(join(srcRoot, 'tree'))
    expect(source.size).toBe(7)

    t = performance.now()
    tracker = await startTracker()
    note(`opentracker up on ${tracker.port}: ${Math.round(performance.now() - t)} ms`)
    httpTorrent = await mktorrent({ dir: join(srcRoot, 'tree'), out: join(work, 'http.torrent'), announce: [tracker.httpUrl] })
    expect(httpTorrent.files).toHaveLength(7)
    await tracker.allow(httpTorrent.infoHash)

    t = performance.now()
    seeder = await startAria2Seeder({ torrentPath: httpTorrent.path, dir: srcRoot })
    started.push(seeder)
    await tracker.waitForPeer(httpTorrent.infoHash, seeder.port)
    note(`aria2 seeder listening and announced: ${Math.round(performance.now() - t)} ms`)
  }, TIMEOUT)

  afterAll(async () => {
    for (const s of started) await s.stop().catch(() => {})
    await tracker?.stop().catch(() => {})
    killAll()
    if (work !== '') await rm(work, { recursive: true, force: true })
  }, 30_000)

  it('the tracker only serves whitelisted torrents and lists the seeder', async () => {
    if (tracker === undefined || seeder === undefined) throw new Error('setup failed')
    await expect(tracker.peers('00'.repeat(20))).rejects.toThrow(/not authorized/)
    expect(await tracker.peers(httpTorrent.infoHash)).toContainEqual({ ip: '127.0.0.1', port: seeder.port })
  })

  it('aria2 downloads from the aria2 seeder through the HTTP tracker', async () => {
    const dir = join(work, 'dl-aria2-http')
    const { ms } = await fromSeeder(seeder, aria2Download({ torrentPath: httpTorrent.path, dir, timeoutMs: TIMEOUT - 10_000 }))
    note(`aria2 -> aria2 (HTTP tracker), 64 MiB: ${ms} ms`)
    expect(await hashTree(join(dir, 'tree'))).toEqual(source)
  }, TIMEOUT)

  it.skipIf(!haveTransmission)('transmission-cli downloads from the aria2 seeder through the HTTP tracker', async () => {
    const dir = join(work, 'dl-transmission')
    const { ms } = await fromSeeder(seeder, transmissionDownload({ torrentPath: httpTorrent.path, dir, timeoutMs: TIMEOUT - 10_000 }))
    note(`aria2 -> transmission-cli (HTTP tracker), 64 MiB: ${ms} ms`)
    expect(await hashTree(join(dir, 'tree'))).toEqual(source)
  }, TIMEOUT)

  it('aria2 seeds and downloads through the UDP tracker', async () => {
    if (tracker === undefined) throw new Error('setup failed')
    // Another source string, another info hash: a swarm of its own that only UDP announces can find.
    const udpTorrent = await mktorrent({ dir: join(work, 'src', 'tree'), out: join(work, 'udp.torrent'), announce: [tracker.udpUrl], source: 'udp' })
    expect(udpTorrent.infoHash).not.toBe(httpTorrent.infoHash)
    expect(udpTorrent.announce).toEqual([tracker.udpUrl])
    await tracker.allow(udpTorrent.infoHash)
    const udpSeeder = await startAria2Seeder({ torrentPath: udpTorrent.path, dir: join(work, 'src') })
    started.push(udpSeeder)
    expect(udpSeeder.dhtPort).toBeTypeOf('number')
    await tracker.waitForPeer(udpTorrent.infoHash, udpSeeder.port)
    const dir = join(work, 'dl-aria2-udp')
    await mkdir(dir, { recursive: true })
    const { ms } = await fromSeeder(udpSeeder, aria2Download({ torrentPath: udpTorrent.path, dir, timeoutMs: TIMEOUT - 20_000 }))
    note(`aria2 -> aria2 (UDP tracker), 64 MiB: ${ms} ms`)
    expect(await hashTree(join(dir, 'tree'))).toEqual(source)
  }, TIMEOUT)
})
