import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { autoPieceLength, createTorrent } from './create-torrent.js'
import { SeedingError } from './errors.js'
import { parseTorrent } from './metainfo.js'

const run = promisify(execFile)
const MKTORRENT = '/usr/bin/mktorrent'
const KiB = 1024
const MiB = 1024 * KiB

let dir: string
beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'btt-create-torrent-')) })
afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

/** Deterministic content so a failure can be reproduced. */
function content (seed: number, length: number): Buffer {
  const out = Buffer.alloc(length)
  let x = seed * 2654435761 >>> 0
  for (let i = 0; i < length; i++) {
    x ^= x << 13; x >>>= 0
    x ^= x >>> 17
    x ^= x << 5; x >>>= 0
    out[i] = x & 0xff
  }
  return out
}

async function makeTree (root: string, files: Record<string, number>): Promise<void> {
  let seed = 1
  for (const [rel, length] of Object.entries(files)) {
    const abs = join(root, rel)
    await mkdir(join(abs, '..'), { recursive: true })
    await writeFile(abs, content(seed++, length))
  }
}

/** Names that sort differently by whole path and by component ('-' and '.' sort before '/'). */
const TREE: Record<string, number> = {
  'a/b': 40_000,
  'a-b/x': 70_001,
  'a.txt': 1,
  B: 33 * KiB,
  b: 5000,
  '.hidden': 12,
  empty: 0,
  'sub/deep/f': 100_000,
  'sub/deep/g h': 32 * KiB,
  'é/ü.bin': 3000,
  Z: 65 * KiB
}

async function mktorrent (target: string, args: string[]): Promise<Buffer> {
  const out = join(dir, `mk-${Math.random().toString(36).slice(2)}.torrent`)
  await run(MKTORRENT, [...args, '-a', 'http://tracker.example/announce', '-o', out, target])
  return await readFile(out)
}

function code (err: unknown): string {
  expect(err).toBeInstanceOf(SeedingError)
  return (err as SeedingError).code
}

describe.skipIf(!existsSync(MKTORRENT))('createTorrent matches mktorrent', () => {
  it.each([15, 16, 17])('folder, piece length 2^%i', async (log2) => {
    const root = join(dir, `tree-${log2}`)
    await makeTree(root, TREE)
    const theirs = parseTorrent(await mktorrent(root, ['-l', String(log2)]))
    const ours = await createTorrent(root, { pieceLength: 2 ** log2, announce: [['http://tracker.example/announce']] })
    expect(ours.metainfo.files.map(f => f.path.join('/'))).toEqual(theirs.files.map(f => f.path.join('/')))
    expect(Buffer.compare(ours.metainfo.info, theirs.info)).toBe(0)
    expect(ours.metainfo.infoHash).toBe(theirs.infoHash)
  })

  it('private folder and single file', async () => {
    const root = join(dir, 'tree-private')
    await makeTree(root, TREE)
    const theirs = parseTorrent(await mktorrent(root, ['-l', '15', '-p']))
    const ours = await createTorrent(root, { pieceLength: 32 * KiB, private: true })
    expect(theirs.private).toBe(true)
    expect(ours.metainfo.private).toBe(true)
    expect(ours.metainfo.infoHash).toBe(theirs.infoHash)

    const file = join(dir, 'single.bin')
    await writeFile(file, content(99, 200_001))
    const theirsSingle = parseTorrent(await mktorrent(file, ['-l', '15']))
    const oursSingle = await createTorrent(file, { pieceLength: 32 * KiB })
    expect(oursSingle.metainfo.multiFile).toBe(false)
    expect(oursSingle.metainfo.infoHash).toBe(theirsSingle.infoHash)
  })
})

describe('createTorrent', () => {
  it('hashes pieces across file boundaries', async () => {
    const root = join(dir, 'hash-check')
    const files = { 'a/1': 10_000, 'a/2': 0, 'a/3': 50_000, 'b/1': 16 * KiB, 'c': 1 }
    await makeTree(root, files)
    const { torrent, metainfo: m } = await createTorrent(root, { pieceLength: 16 * KiB, comment: 'hi', createdBy: 'test', creationDate: 42 })
    const all = Buffer.concat(await Promise.all(['a/1', 'a/2', 'a/3', 'b/1', 'c'].map(async f => await readFile(join(root, f)))))
    expect(m.length).toBe(all.length)
    expect(m.pieceCount).toBe(Math.ceil(all.length / (16 * KiB)))
    for (let i = 0; i < m.pieceCount; i++) {
      const want = createHash('sha1').update(all.subarray(i * 16 * KiB, (i + 1) * 16 * KiB)).digest()
      expect(Buffer.compare(m.pieces.subarray(i * 20, i * 20 + 20), want), `piece ${i}`).toBe(0)
    }
    expect(m.files.map(f => [f.path.join('/'), f.offset])).toEqual([['a/1', 0], ['a/2', 10_000], ['a/3', 10_000], ['b/1', 60_000], ['c', 60_000 + 16 * KiB]])
    expect(m.name).toBe('hash-check')
    const back = parseTorrent(torrent)
    expect(back.infoHash).toBe(m.infoHash)
    expect(back.comment).toBe('hi')
    expect(back.createdBy).toBe('test')
    expect(back.creationDate).toBe(42)
    expect(back.announce).toEqual([])
  })

  it('skips symlinks and special files, and renames on request', async () => {
    const root = join(dir, 'links')
    await makeTree(root, { 'real.bin': 1000, 'sub/x': 10 })
    await symlink(join(root, 'real.bin'), join(root, 'link.bin'))
    await symlink(join(root, 'sub'), join(root, 'linkdir'))
    await run('mkfifo', [join(root, 'fifo')])
    const { metainfo } = await createTorrent(root, { name: 'renamed' })
    expect(metainfo.files.map(f => f.path.join('/'))).toEqual(['real.bin', 'sub/x'])
    expect(metainfo.name).toBe('renamed')
  })

  it('refuses empty inputs', async () => {
    const empty = join(dir, 'empty-dir')
    await mkdir(join(empty, 'nested'), { recursive: true })
    expect(code(await createTorrent(empty).catch(e => e))).toBe('TORRENT_EMPTY')
    await writeFile(join(empty, 'nested', 'zero'), '')
    expect(code(await createTorrent(empty).catch(e => e))).toBe('TORRENT_EMPTY')
    expect(code(await createTorrent(join(empty, 'nested', 'zero')).catch(e => e))).toBe('TORRENT_EMPTY')
  })

  it('refuses names the torrent could not carry', async () => {
    const root = join(dir, 'backslash')
    await makeTree(root, { 'a\\b': 10 })
    expect(code(await createTorrent(root).catch(e => e))).toBe('TORRENT_BAD_PATH')
    expect(code(await createTorrent(join(dir, 'links'), { name: '..' }).catch(e => e))).toBe('TORRENT_BAD_PATH')
    const latin1 = join(dir, 'latin1')
    await mkdir(latin1)
    await writeFile(Buffer.from(`${latin1}/caf\xe9`, 'latin1'), 'x')
    expect(code(await createTorrent(latin1).catch(e => e))).toBe('TORRENT_BAD_PATH')
  })

  it('validates options', async () => {
    const root = join(dir, 'links')
    for (const pieceLength of [0, 1000, 16 * KiB + 1, 128 * MiB, 1.5]) {
      expect(code(await createTorrent(root, { pieceLength }).catch(e => e))).toBe('TORRENT_PIECE_LENGTH')
    }
    expect(code(await createTorrent(root, { announce: [['ws://x.example']] }).catch(e => e))).toBe('TORRENT_BAD_ANNOUNCE')
    expect(code(await createTorrent(root, { announce: ['http://x.example'] as never }).catch(e => e))).toBe('TORRENT_BAD_ANNOUNCE')
    expect(code(await createTorrent(root, { creationDate: -1 }).catch(e => e))).toBe('TORRENT_BAD_OPTION')
    const ok = await createTorrent(root, { announce: [['udp://t.example:6969'], ['https://t2.example/a']], private: true })
    expect(ok.metainfo.announce).toEqual([['udp://t.example:6969'], ['https://t2.example/a']])
  })

  it('reports progress and can be aborted', async () => {
    const file = join(dir, 'progress.bin')
    await writeFile(file, content(5, 10 * MiB + 7))
    const seen: number[] = []
    await createTorrent(file, { onProgress: (done, total) => { expect(total).toBe(10 * MiB + 7); seen.push(done) } })
    expect(seen.length).toBeGreaterThan(1)
    expect(seen).toEqual([...seen].sort((a, b) => a - b))
    expect(seen.at(-1)).toBe(10 * MiB + 7)

    const ac = new AbortController()
    const err = await createTorrent(file, { signal: ac.signal, onProgress: () => { ac.abort() } }).catch(e => e)
    expect((err as Error).name).toBe('AbortError')
  })
})

describe('autoPieceLength', () => {
  it('picks a power of two giving 1,000–2,000 pieces within 16 KiB..16 MiB', () => {
    expect(autoPieceLength(1)).toBe(16 * KiB)
    expect(autoPieceLength(2000 * 16 * KiB)).toBe(16 * KiB)
    expect(autoPieceLength(2000 * 16 * KiB + 1)).toBe(32 * KiB)
    expect(autoPieceLength(10 ** 15)).toBe(16 * MiB)
    for (const total of [50 * MiB, 700 * MiB, 4.4 * 1024 * MiB, 30 * 1024 * MiB]) {
      const pieces = Math.ceil(total / autoPieceLength(total))
      expect(pieces, `${total}`).toBeGreaterThan(1000)
      expect(pieces, `${total}`).toBeLessThanOrEqual(2000)
    }
  })
})
