import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, mkdir, readFile, rm, writeFile, stat, utimes } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { Engine, type EngineOptions } from './engine.js'
import { loopbackEngineOptions } from './test-support/engine.js'
import { diskStats } from './storage.js'

const logger = pino({ level: 'silent' })
const cleanup: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn().catch(() => {})
})

async function tempDir (): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'btt-engine-'))
  cleanup.push(async () => { await rm(d, { recursive: true, force: true }) })
  return d
}

async function engine (over: Partial<EngineOptions> = {}): Promise<Engine> {
  const dir = await tempDir()
  const e = new Engine(loopbackEngineOptions(dir, logger, over))
  await e.start()
  cleanup.push(async () => { await e.stop() })
  return e
}

async function tree (root: string, files: Record<string, number>): Promise<void> {
  for (const [path, size] of Object.entries(files)) {
    await mkdir(join(root, path, '..'), { recursive: true })
    await writeFile(join(root, path), randomBytes(size))
  }
}

async function sha (path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex')
}

async function until (fn: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms
  while (!fn()) {
    if (Date.now() > end) throw new Error('timed out waiting')
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}

describe('engine', () => {
  it('seeds a folder it created a torrent for, and a second engine downloads it byte-identical', async () => {
    const src = await tempDir()
    await tree(join(src, 'album'), { 'a.bin': 3_000_000, 'sub/b.bin': 1234, 'sub/c.bin': 700_001, 'empty.txt': 0 })
    const seeder = await engine()
    const added = await seeder.add({ path: join(src, 'album'), pieceLength: 32 * 1024 })
    expect(added.state).toBe('seeding')
    expect(added.progress).toBe(1)
    const leecher = await engine()
    const torrentFile = await readFile(added.torrentFile!)
    const got = await leecher.add({ torrent: torrentFile })
    leecher.addPeer(got.infoHash, { host: '127.0.0.1', port: seeder.port })
    await until(() => leecher.detail(got.infoHash).state === 'seeding')
    for (const f of ['a.bin', 'sub/b.bin', 'sub/c.bin', 'empty.txt']) {
      expect(await sha(join(got.savePath, 'album', f))).toBe(await sha(join(src, 'album', f)))
    }
    expect(seeder.detail(added.infoHash).uploaded).toBeGreaterThanOrEqual(3_000_000 + 1234 + 700_001)
  })

  it('fetches metadata from a magnet link (ut_metadata) and completes', async () => {
    const src = await tempDir()
    await tree(src, { 'movie.bin': 2_500_000 })
    const seeder = await engine()
    const added = await seeder.add({ path: join(src, 'movie.bin') })
    const leecher = await engine()
    const magnet = `magnet:?xt=urn:btih:${added.infoHash}&dn=movie.bin&x.pe=127.0.0.1:${seeder.port}`
    const got = await leecher.add({ magnet })
    expect(got.state).toBe('metadata')
    await until(() => leecher.detail(got.infoHash).state === 'seeding')
    expect(await sha(join(got.savePath, 'movie.bin'))).toBe(await sha(join(src, 'movie.bin')))
    // the magnet's torrent was written to the home once the metadata arrived
    const written = await readFile(leecher.torrentPath(got.infoHash))
    expect(written.length).toBeGreaterThan(0)
  })

  it('restarts seeding from resume data without re-hashing, and rechecks files that changed', async () => {
    const src = await tempDir()
    await tree(src, { 'x.bin': 1_000_000, 'y.bin': 1_000_000 })
    const dir = await tempDir()
    const opts = { dataDir: join(dir, 'state'), downloadDir: join(dir, 'dl') }
    const first = await engine(opts)
    const x = await first.add({ path: join(src, 'x.bin') })
    const y = await first.add({ path: join(src, 'y.bin') })
    await first.stop()
    cleanup.pop()
    const hashedBefore = diskStats.hashedBytes
    const second = await engine(opts)
    expect(second.detail(x.infoHash).state).toBe('seeding')
    expect(second.detail(y.infoHash).state).toBe('seeding')
    expect(diskStats.hashedBytes).toBe(hashedBefore)
    await second.stop()
    cleanup.pop()
    // y changes on disk (same size, new mtime): the next start re-hashes it and finds it broken
    const buf = await readFile(join(src, 'y.bin'))
    buf[10] = buf[10]! ^ 0xff
    await writeFile(join(src, 'y.bin'), buf)
    const st = await stat(join(src, 'y.bin'))
    await utimes(join(src, 'y.bin'), st.atime, new Date(st.mtimeMs + 5000))
    const third = await engine(opts)
    expect(third.detail(x.infoHash).state).toBe('seeding')
    await until(() => third.detail(y.infoHash).state !== 'checking')
    const dy = third.detail(y.infoHash)
    expect(dy.state).toBe('downloading')
    expect(dy.piecesHave).toBe(dy.pieceCount - 1)
  })

  it('refuses a duplicate add and an unknown infohash with coded errors', async () => {
    const src = await tempDir()
    await tree(src, { 'z.bin': 100_000 })
    const e = await engine()
    const z = await e.add({ path: join(src, 'z.bin') })
    await expect(e.add({ path: join(src, 'z.bin') })).rejects.toMatchObject({ code: 'SEEDING_EXISTS' })
    expect(() => e.detail('0'.repeat(40))).toThrow(expect.objectContaining({ code: 'SEEDING_NOT_FOUND' }))
    await e.remove(z.infoHash)
    expect(e.list()).toHaveLength(0)
  })
})
