/**
 * btt-node against real BitTorrent clients from Debian, over loopback through opentracker:
 * aria2 and transmission-cli download a multi-file torrent from a `btt-node start` node, and
 * `btt-node get` downloads it from an aria2 seeder, by .torrent (HTTP tracker) and by magnet link
 * (UDP tracker, metadata over ut_metadata from aria2). In CI a missing client fails the test.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { AdminClient, homePaths, readApiToken } from '@btt/node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runCli, SEEDING_LOOPBACK_ENV, startNodeProcess, tempHome, type NodeProcess } from '../helpers/cli.js'
import {
  aria2Download, hashTree, killAll, makeTestTree, mktorrent, requireClient, startAria2Seeder, startTracker,
  transmissionDownload, type Aria2Handle, type TorrentInfo, type Tracker
} from './clients.ts'

const haveCore = Boolean(requireClient('opentracker')) && Boolean(requireClient('mktorrent')) && Boolean(requireClient('aria2c'))
const haveTransmission = Boolean(requireClient('transmission-cli'))
const TOTAL = 72 << 20
const TIMEOUT = 120_000

const SEEDING_ENV = {
  ...SEEDING_LOOPBACK_ENV,
  // transmission 3.00 never dials 127.x peers ("martian"): the seeder must dial it, and learns
  // of it only by announcing again, so announce every 2 s as the harness's aria2 does every 1 s
  BTT_NODE_SERVICES_SEEDING_ANNOUNCE_INTERVAL: '2',
  BTT_NODE_LOG_LEVEL: process.env.BTT_INTEROP_LOG ?? 'info'
}

interface Detail { infoHash: string, state: string, progress: number, peers: number }

describe.skipIf(!haveCore)('interop with aria2 and transmission-cli', () => {
  let work = ''
  let home = ''
  let tracker: Tracker
  let torrent: TorrentInfo & { path: string }
  let expected: Map<string, string>
  let node: NodeProcess | undefined
  let seedPort = 0

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'btt-interop-'))
    await makeTestTree(join(work, 'src', 'payload'), { totalBytes: TOTAL, files: 7, seed: 42 })
    expected = await hashTree(join(work, 'src', 'payload'))
    tracker = await startTracker()
    torrent = await mktorrent({ dir: join(work, 'src', 'payload'), out: join(work, 'payload.torrent'), announce: [tracker.httpUrl], pieceLength: 256 * 1024 })
    await tracker.allow(torrent.infoHash)

    home = await tempHome('btt-interop-home-')
    expect((await runCli(['init', '--home', home])).code).toBe(0)
    node = await startNodeProcess(home, [], SEEDING_ENV)
    // the real CLI: add the .torrent for data already on disk; the node hashes it and seeds
    const added = await runCli(['seed', 'add', torrent.path, '--save-path', join(work, 'src'), '--json', '--home', home])
    expect(added.code, added.stderr).toBe(0)
    expect((JSON.parse(added.stdout) as Detail).infoHash).toBe(torrent.infoHash)
    const client = new AdminClient({ url: node.apiUrl, token: await readApiToken(homePaths(home)) })
    const deadline = Date.now() + 30_000
    for (;;) {
      const { torrent: t } = await client.serviceRequest<{ torrent: Detail }>('seeding', 'GET', `/torrents/${torrent.infoHash}`)
      if (t.state === 'seeding') break
      if (Date.now() > deadline) throw new Error(`btt-node did not start seeding: ${t.state}`)
      await new Promise(resolve => setTimeout(resolve, 100))
    }
    seedPort = (await client.serviceRequest<{ port: number }>('seeding', 'GET', '/status')).port
    await tracker.waitForPeer(torrent.infoHash, seedPort, 30_000)
  }, 180_000)

  afterAll(async () => {
    if (node !== undefined && node.child.exitCode === null) await node.signal('SIGTERM')
    await tracker?.stop()
    killAll()
    if (work !== '') await rm(work, { recursive: true, force: true })
    if (home !== '') await rm(join(home, '..'), { recursive: true, force: true })
  })

  it('aria2 downloads the torrent from btt-node and every file matches', async () => {
    const dir = join(work, 'aria2-dl')
    const res = await aria2Download({ torrentPath: torrent.path, dir, timeoutMs: TIMEOUT, ...(process.env.BTT_INTEROP_LOG !== undefined ? { extraArgs: ['--log=/tmp/a2.log', '--log-level=info'] } : {}) })
    expect(await hashTree(join(dir, 'payload'))).toEqual(expected)
    console.log(`aria2 ← btt-node: ${(TOTAL / 2 ** 20).toFixed(0)} MiB in ${res.ms} ms`)
    if (process.env.BTT_INTEROP_LOG !== undefined) console.log(node?.output())
  }, TIMEOUT + 10_000)

  it.skipIf(!haveTransmission)('transmission-cli downloads the torrent from btt-node and every file matches', async () => {
    const dir = join(work, 'transmission-dl')
    const res = await transmissionDownload({ torrentPath: torrent.path, dir, timeoutMs: TIMEOUT })
    expect(await hashTree(join(dir, 'payload'))).toEqual(expected)
    console.log(`transmission ← btt-node: ${(TOTAL / 2 ** 20).toFixed(0)} MiB in ${res.ms} ms`)
  }, TIMEOUT + 10_000)

  describe('btt-node downloads from an aria2 seeder', () => {
    let seeder: Aria2Handle

    beforeAll(async () => {
      // take btt-node's seed out of the swarm, so aria2 is the only source
      const removed = await runCli(['seed', 'remove', torrent.infoHash, '--home', home])
      expect(removed.code, removed.stderr).toBe(0)
      if (node !== undefined) expect((await node.signal('SIGTERM')).code).toBe(0)
      seeder = await startAria2Seeder({ torrentPath: torrent.path, dir: join(work, 'src') })
      await tracker.waitForPeer(torrent.infoHash, seeder.port, 30_000)
    }, 60_000)

    afterAll(async () => { await seeder?.stop() })

    it('by .torrent over the HTTP tracker, with `btt-node get`', async () => {
      const out = join(work, 'get-torrent')
      const res = await runCli(['get', torrent.path, '--out', out, '--no-dht', '--no-pex', '--listen-host', '127.0.0.1', '--timeout', '110', '--json'])
      expect(res.code, res.stderr).toBe(0)
      expect((JSON.parse(res.stdout) as Detail).state).toBe('seeding')
      expect(await hashTree(join(out, 'payload'))).toEqual(expected)
    }, TIMEOUT)

    it('by magnet link only over the UDP tracker: metadata from aria2 (ut_metadata), then the data', async () => {
      const out = join(work, 'get-magnet')
      const magnet = `magnet:?xt=urn:btih:${torrent.infoHash}&dn=payload&tr=${encodeURIComponent(tracker.udpUrl)}`
      const res = await runCli(['get', magnet, '--out', out, '--no-dht', '--no-pex', '--listen-host', '127.0.0.1', '--timeout', '110', '--json'])
      expect(res.code, res.stderr).toBe(0)
      expect(await hashTree(join(out, 'payload'))).toEqual(expected)
    }, TIMEOUT)
  })
})
