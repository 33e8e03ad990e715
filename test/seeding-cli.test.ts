import { createHash, randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { copyFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import net from 'node:net'
import { dirname, join } from 'node:path'
import { AdminClient, homePaths, readApiToken } from '@btt/node'
import { createTorrent, parseTorrent } from '@btt/service-seeding'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runCli, SEEDING_LOOPBACK_ENV, startNodeProcess, tempHome, type CliResult, type NodeProcess } from './helpers/cli.js'

/** Seeding on loopback: no DHT or PEX; trackers on, but every tracker URL here is a closed port on 127.0.0.1. */
const SEEDING_ENV = {
  ...SEEDING_LOOPBACK_ENV,
  BTT_NODE_SERVICES_SEEDING_TRACKERS: 'true'
}
/** `btt-node get` stays on loopback too. */
const GET_FLAGS = ['--no-dht', '--no-pex', '--listen-host', '127.0.0.1']

interface Summary {
  name: string
  infoHash: string
  state: string
  size: number
  progress: number
  uploadRate: number
  downloadRate: number
  peers: number
  uploaded: number
  downloaded: number
  ratio: number
  magnet: string
}
interface Detail extends Summary {
  pieceLength: number
  pieceCount: number
  piecesHave: number
  savePath: string
  files: Array<{ path: string, length: number }>
  trackers: Array<{ url: string, status: string, error?: string }>
  peerList: unknown[]
  torrentFile?: string
}

let node: NodeProcess | undefined
let home = ''
let root = ''
let client: AdminClient
let deadTracker = ''

beforeAll(async () => {
  home = await tempHome('btt-seed-cli-')
  root = dirname(home)
  expect((await runCli(['init', '--home', home])).code).toBe(0)
  node = await startNodeProcess(home, [], SEEDING_ENV)
  client = new AdminClient({ url: node.apiUrl, token: await readApiToken(homePaths(home)) })
  // a port nobody listens on: connections are refused at once
  const probe = net.createServer()
  await new Promise<void>(resolve => { probe.listen(0, '127.0.0.1', resolve) })
  deadTracker = `http://127.0.0.1:${(probe.address() as net.AddressInfo).port}/announce`
  await new Promise<void>(resolve => { probe.close(() => { resolve() }) })
}, 60_000)

afterAll(async () => {
  if (node !== undefined && node.child.exitCode === null) await node.signal('SIGKILL')
  if (root !== '') await rm(root, { recursive: true, force: true })
})

async function cli (...args: string[]): Promise<CliResult> {
  return await runCli([...args, '--home', home])
}

/** Runs with --json; parses stdout whatever the exit code (errors are `{ error: { code, message } }`). */
async function json<T> (...args: string[]): Promise<{ code: number | null, out: T, stderr: string }> {
  const res = await cli(...args, '--json')
  let out: T
  try {
    out = JSON.parse(res.stdout) as T
  } catch {
    throw new Error(`not JSON (exit ${res.code}): ${res.stdout}\n${res.stderr}`)
  }
  return { code: res.code, out, stderr: res.stderr }
}

async function show (ih: string): Promise<Detail> {
  return (await client.serviceRequest<{ torrent: Detail }>('seeding', 'GET', `/torrents/${ih}`)).torrent
}

async function until (fn: () => Promise<boolean>, ms = 20_000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

async function sha (path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex')
}

/** A folder of two files, 1.5 MB in all. */
async function folder (name: string): Promise<{ path: string, size: number }> {
  const path = join(root, 'content', name)
  await mkdir(join(path, 'sub'), { recursive: true })
  await writeFile(join(path, 'a.bin'), randomBytes(1_200_000))
  await writeFile(join(path, 'sub', 'b.bin'), randomBytes(300_000))
  return { path, size: 1_500_000 }
}

function expectNodeAlive (): void {
  expect(node!.child.exitCode).toBeNull()
}

describe('btt-node seed … and get, against a running node', () => {
  let album: { path: string, size: number }
  let ih = ''
  let torrentCopy = ''

  it('seed add <folder> --tracker --piece-length --json: infohash, magnet and a .torrent with that tracker and piece length', async () => {
    album = await folder('album')
    const res = await json<Detail>('seed', 'add', album.path, '--tracker', deadTracker, '--piece-length', '65536')
    expect(res.code).toBe(0)
    const t = res.out
    expect(t.infoHash).toMatch(/^[0-9a-f]{40}$/)
    ih = t.infoHash
    expect(t.name).toBe('album')
    expect(t.state).toBe('seeding')
    expect(t.size).toBe(album.size)
    expect(t.magnet).toMatch(new RegExp(`^magnet:\\?xt=urn:btih:${ih}`))
    expect(decodeURIComponent(t.magnet)).toContain(deadTracker)
    expect(t.torrentFile).toBeDefined()
    expect(existsSync(t.torrentFile!)).toBe(true)
    const meta = parseTorrent(await readFile(t.torrentFile!))
    expect(meta.infoHash).toBe(ih)
    expect(meta.pieceLength).toBe(65536)
    expect(meta.announce.flat()).toEqual([deadTracker])
    expect(meta.files.map(f => f.path.join('/')).sort()).toEqual(['a.bin', 'sub/b.bin'])
    torrentCopy = join(root, 'album.torrent')
    await copyFile(t.torrentFile!, torrentCopy)

    // the human output says the same
    const again = await cli('seed', 'show', ih)
    expect(again.code).toBe(0)
    expect(again.stdout).toContain(ih)
    expect(again.stdout).toContain(deadTracker)
  })

  it('seed show reports the unreachable tracker as an error', async () => {
    await until(async () => (await show(ih)).trackers[0]?.status === 'error', 15_000, 'the announce to fail')
    const res = await json<Detail>('seed', 'show', ih)
    expect(res.code).toBe(0)
    expect(res.out.trackers).toEqual([expect.objectContaining({ url: deadTracker, status: 'error', error: expect.any(String) })])
    expect(res.out.trackers[0]!.error!.length).toBeGreaterThan(0)
    const human = await cli('seed', 'show', ih)
    expect(human.stdout).toMatch(/error/)
  })

  it('seed list --json and seed show --json carry the documented fields', async () => {
    const list = await json<{ torrents: Summary[] }>('seed', 'list')
    expect(list.code).toBe(0)
    const t = list.out.torrents.find(x => x.infoHash === ih)!
    expect(t).toEqual(expect.objectContaining({
      name: 'album', infoHash: ih, size: album.size, progress: 1, uploadRate: expect.any(Number), downloadRate: expect.any(Number),
      peers: 0, uploaded: 0, ratio: 0, state: 'seeding'
    }))
    const table = await cli('seed', 'list')
    expect(table.code).toBe(0)
    expect(table.stdout).toMatch(/NAME\s+INFOHASH\s+SIZE/)
    expect(table.stdout).toContain(ih)

    const d = (await json<Detail>('seed', 'show', ih)).out
    expect(d.pieceLength).toBe(65536)
    expect(d.pieceCount).toBe(Math.ceil(album.size / 65536))
    expect(d.piecesHave).toBe(d.pieceCount)
    expect(d.files.map(f => [f.path, f.length]).sort()).toEqual([['a.bin', 1_200_000], ['sub/b.bin', 300_000]])
    expect(d.peerList).toEqual([])
    expect(d.savePath).toBe(dirname(album.path))
  })

  it('btt-node get <.torrent> --peer <seed port> downloads byte-identical data, and the seeder counts the upload', async () => {
    const { port } = await client.serviceRequest<{ port: number }>('seeding', 'GET', '/status')
    expect(port).toBeGreaterThan(0)
    const out = join(root, 'got')
    const t0 = Date.now()
    const res = await runCli(['get', torrentCopy, '--out', out, ...GET_FLAGS, '--peer', `127.0.0.1:${port}`, '--timeout', '30'])
    console.log(`get: exit ${res.code} after ${Date.now() - t0} ms`)
    expect(res.code, res.stderr).toBe(0)
    expect(res.stdout).toMatch(/downloaded album/)
    for (const f of ['a.bin', 'sub/b.bin']) expect(await sha(join(out, 'album', f))).toBe(await sha(join(album.path, f)))
    await until(async () => (await show(ih)).uploaded >= album.size, 5000, 'the upload to be counted')
    const t = (await json<{ torrents: Summary[] }>('seed', 'list')).out.torrents.find(x => x.infoHash === ih)!
    expect(t.uploaded).toBeGreaterThanOrEqual(album.size)
    expect(t.ratio).toBeGreaterThanOrEqual(1)
  })

  it('btt-node get gives up after --timeout with a non-zero exit when nobody has the torrent', async () => {
    const lonely = join(root, 'content', 'lonely.bin')
    await writeFile(lonely, randomBytes(100_000))
    const created = await createTorrent(lonely, { pieceLength: 16384 })
    const file = join(root, 'lonely.torrent')
    await writeFile(file, created.torrent)
    // a peer that refuses connections, and nothing else to find it through
    const t0 = Date.now()
    const res = await runCli(['get', file, '--out', join(root, 'lonely-out'), ...GET_FLAGS, '--peer', deadTracker.replace(/^http:\/\/|\/announce$/g, ''), '--timeout', '2'])
    const ms = Date.now() - t0
    expect(res.code).toBe(1)
    expect(res.stderr).toMatch(/timed out after 2s/)
    expect(ms).toBeLessThan(20_000)
  })

  it('seed recheck finds a corrupt piece, and a second recheck after the repair seeds again', async () => {
    const a = join(album.path, 'a.bin')
    const good = await readFile(a)
    const bad = Buffer.from(good)
    bad[100_000] = bad[100_000]! ^ 0xff
    await writeFile(a, bad)
    const res = await cli('seed', 'recheck', ih)
    expect(res.code).toBe(0)
    expect(res.stdout).toMatch(/rechecking album/)
    await until(async () => (await show(ih)).state !== 'checking', 15_000, 'the recheck')
    const d = (await json<Detail>('seed', 'show', ih)).out
    expect(d.state).toBe('downloading')
    expect(d.piecesHave).toBe(d.pieceCount - 1)
    await writeFile(a, good)
    expect((await json<Detail>('seed', 'recheck', ih)).code).toBe(0)
    await until(async () => (await show(ih)).state === 'seeding', 15_000, 'the second recheck')
    expect((await show(ih)).piecesHave).toBe(d.pieceCount)
  })

  it('seed add of a .torrent (data already there) and of a magnet', async () => {
    // removed without --delete-data, the files stay; added back from the .torrent it checks and seeds them
    expect((await json<{ removed: string, deletedData: boolean }>('seed', 'remove', ih)).out).toEqual({ removed: ih, deletedData: false })
    expect(existsSync(join(album.path, 'a.bin'))).toBe(true)
    const added = await json<Detail>('seed', 'add', torrentCopy, '--save-path', dirname(album.path))
    expect(added.code).toBe(0)
    expect(added.out.infoHash).toBe(ih)
    expect(['checking', 'seeding']).toContain(added.out.state)
    await until(async () => (await show(ih)).state === 'seeding', 15_000, 'the added .torrent to be checked')

    // a magnet nobody serves waits for metadata
    const other = randomBytes(20).toString('hex')
    const m = await json<Detail>('seed', 'add', `magnet:?xt=urn:btih:${other}&dn=nobody`)
    expect(m.code).toBe(0)
    expect(m.out).toEqual(expect.objectContaining({ infoHash: other, state: 'metadata', name: 'nobody' }))
    const list = (await json<{ torrents: Summary[] }>('seed', 'list')).out.torrents
    expect(list.map(t => t.infoHash).sort()).toEqual([ih, other].sort())
    expect((await cli('seed', 'remove', other)).code).toBe(0)
  })

  it('bad input: clear coded errors, a non-zero exit, and the node keeps running', async () => {
    const unknown = '0'.repeat(40)
    const garbage = join(root, 'garbage.torrent')
    await writeFile(garbage, randomBytes(300))
    const [notHash, missing, removeMissing, recheckMissing, noPath, badTorrent, badMagnet, dupFolder, dupMagnet, humanMissing] = await Promise.all([
      cli('seed', 'show', 'not-an-infohash'),
      json<{ error: { code: string, message: string } }>('seed', 'show', unknown),
      json<{ error: { code: string } }>('seed', 'remove', unknown),
      json<{ error: { code: string } }>('seed', 'recheck', unknown),
      cli('seed', 'add', join(root, 'does', 'not', 'exist')),
      json<{ error: { code: string, message: string } }>('seed', 'add', garbage),
      json<{ error: { code: string, message: string } }>('seed', 'add', 'magnet:?xt=urn:btih:xyz'),
      // the same folder with the same piece length is the same infohash (another piece length would be another torrent)
      json<{ error: { code: string } }>('seed', 'add', album.path, '--piece-length', '65536'),
      json<{ error: { code: string } }>('seed', 'add', `magnet:?xt=urn:btih:${ih}`),
      cli('seed', 'show', unknown)
    ])
    expect(notHash.code).not.toBe(0)
    expect(notHash.stderr).toMatch(/not an infohash/)
    expect(missing.code).toBe(1)
    expect(missing.out.error.code).toBe('SEEDING_NOT_FOUND')
    expect(removeMissing.code).toBe(1)
    expect(removeMissing.out.error.code).toBe('SEEDING_NOT_FOUND')
    expect(recheckMissing.code).toBe(1)
    expect(recheckMissing.out.error.code).toBe('SEEDING_NOT_FOUND')
    expect(humanMissing.code).toBe(1)
    expect(humanMissing.stderr).toContain(unknown)
    expect(humanMissing.stderr).not.toMatch(/\n\s+at /)
    expect(noPath.code).not.toBe(0)
    expect(noPath.stderr).toMatch(/no such file or folder/)
    expect(badTorrent.code).toBe(1)
    expect(badTorrent.out.error.code).toMatch(/^(TORRENT|BENCODE)_/)
    expect(badMagnet.code).toBe(1)
    expect(badMagnet.out.error.code).toMatch(/^MAGNET_/)
    expect(dupFolder.code).toBe(1)
    expect(dupFolder.out.error.code).toBe('SEEDING_EXISTS')
    expect(dupMagnet.code).toBe(1)
    expect(dupMagnet.out.error.code).toBe('SEEDING_EXISTS')
    // the API refuses a malformed infohash on its own too
    await expect(client.serviceRequest('seeding', 'GET', '/torrents/not-an-infohash')).rejects.toMatchObject({ code: 'SEEDING_INVALID_INFOHASH' })

    expectNodeAlive()
    const list = await json<{ torrents: Summary[] }>('seed', 'list')
    expect(list.code).toBe(0)
    expect(list.out.torrents.map(t => t.infoHash)).toEqual([ih])
  })

  it('seed remove --delete-data removes the torrent and its files', async () => {
    const res = await json<{ removed: string, deletedData: boolean }>('seed', 'remove', ih, '--delete-data')
    expect(res.code).toBe(0)
    expect(res.out).toEqual({ removed: ih, deletedData: true })
    expect(existsSync(join(album.path, 'a.bin'))).toBe(false)
    expect(existsSync(join(album.path, 'sub', 'b.bin'))).toBe(false)
    expect(existsSync(album.path)).toBe(false)
    expect((await json<{ torrents: Summary[] }>('seed', 'list')).out.torrents).toEqual([])
    const gone = await json<{ error: { code: string } }>('seed', 'show', ih)
    expect(gone.code).toBe(1)
    expect(gone.out.error.code).toBe('SEEDING_NOT_FOUND')
    expectNodeAlive()
    expect((await node!.signal('SIGTERM')).code).toBe(0)
  })
})
