import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { createTorrent } from './create-torrent.js'
import { Engine } from './engine.js'
import { loopbackEngineOptions } from './test-support/engine.js'

/**
 * The downloader hashes a piece as its blocks arrive, as far as they are contiguous, and hashes
 * the whole piece at the end otherwise. A raw seed (its own wire code, no engine) answers requests
 * in the order a test chooses and can corrupt one block: the download must complete byte-identical
 * whatever the order, and a corrupt block must fail its piece on either path.
 */

const BLOCK = 16 * 1024
const PIECE = 256 * 1024
const PIECES = 6
const SIZE = (PIECES - 1) * PIECE + 100_000

type Order = 'in-order' | 'reversed' | 'shuffled'

interface RawSeed {
  port: number
  /** Blocks sent, as `index:begin`, in the order they went out. */
  sent: string[]
  close: () => void
}

function frame (id: number, body: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(5)
  h.writeUInt32BE(body.length + 1, 0)
  h[4] = id
  return Buffer.concat([h, body])
}

/** A seed of `data` that answers each burst of requests in `order`; `corrupt` (once) flips a byte of that block. */
async function rawSeed (infoHash: Buffer, data: Buffer, order: Order, corrupt?: string): Promise<RawSeed> {
  const sent: string[] = []
  let corrupted = false
  const server = net.createServer(sock => {
    sock.on('error', () => {})
    let buf = Buffer.alloc(0)
    let shook = false
    let pending: Array<[number, number, number]> = []
    let timer: NodeJS.Timeout | undefined
    const flush = (): void => {
      timer = undefined
      const batch = pending
      pending = []
      if (order === 'reversed') batch.reverse()
      if (order === 'shuffled') batch.sort(() => Math.random() - 0.5)
      for (const [index, begin, length] of batch) {
        const block = Buffer.from(data.subarray(index * PIECE + begin, index * PIECE + begin + length))
        const key = `${index}:${begin}`
        if (key === corrupt && !corrupted) { corrupted = true; block[0] = block[0]! ^ 0xff }
        sent.push(key)
        const head = Buffer.alloc(8)
        head.writeUInt32BE(index, 0)
        head.writeUInt32BE(begin, 4)
        sock.write(frame(7, Buffer.concat([head, block])))
      }
    }
    sock.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c])
      if (!shook) {
        if (buf.length < 68) return
        shook = true
        buf = buf.subarray(68)
        const hs = Buffer.alloc(68)
        hs[0] = 19
        hs.write('BitTorrent protocol', 1, 'latin1')
        infoHash.copy(hs, 28)
        randomBytes(20).copy(hs, 48)
        const bits = Buffer.alloc(Math.ceil(PIECES / 8))
        for (let i = 0; i < PIECES; i++) bits[i >> 3]! |= 0x80 >> (i & 7)
        sock.write(Buffer.concat([hs, frame(5, bits)]))
      }
      while (buf.length >= 4) {
        const len = buf.readUInt32BE(0)
        if (buf.length < 4 + len) break
        const id = len > 0 ? buf[4] : -1
        if (id === 2) sock.write(frame(1)) // interested → unchoke
        if (id === 6) {
          pending.push([buf.readUInt32BE(5), buf.readUInt32BE(9), buf.readUInt32BE(13)])
          // answer a burst together, in the chosen order
          timer ??= setTimeout(flush, 5)
        }
        buf = buf.subarray(4 + len)
      }
    })
    sock.on('close', () => { if (timer !== undefined) clearTimeout(timer) })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return { port: (server.address() as net.AddressInfo).port, sent, close: () => { server.close() } }
}

const cleanup: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c()
})

async function download (order: Order, corrupt?: string): Promise<{ seed: RawSeed, got: Buffer, data: Buffer, corruptPieces: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'btt-order-'))
  cleanup.push(async () => { await rm(dir, { recursive: true, force: true }) })
  const data = randomBytes(SIZE)
  await writeFile(join(dir, 'data.bin'), data)
  const { torrent, metainfo } = await createTorrent(join(dir, 'data.bin'), { pieceLength: PIECE })
  const seed = await rawSeed(Buffer.from(metainfo.infoHash, 'hex'), data, order, corrupt)
  cleanup.push(seed.close)
  const engine = new Engine(loopbackEngineOptions(join(dir, 'leech'), pino({ level: 'silent' })))
  await engine.start()
  cleanup.push(async () => { await engine.stop() })
  const added = await engine.add({ torrent }, { savePath: join(dir, 'out') })
  engine.addPeer(added.infoHash, { host: '127.0.0.1', port: seed.port })
  const deadline = Date.now() + 15_000
  while (engine.detail(added.infoHash).state !== 'seeding') {
    if (Date.now() > deadline) throw new Error(`download stuck at ${engine.detail(added.infoHash).progress}`)
    await new Promise(resolve => setTimeout(resolve, 20))
  }
  const got = await readFile(join(dir, 'out', 'data.bin'))
  // a corrupt piece is fetched again: count the pieces whose first block went out twice
  const firsts = seed.sent.filter(k => k.endsWith(':0'))
  return { seed, got, data, corruptPieces: firsts.length - new Set(firsts).size }
}

describe('download: hashing blocks as they arrive', () => {
  it.each<Order>(['in-order', 'reversed', 'shuffled'])('blocks answered %s → byte-identical, nothing fetched twice', async (order) => {
    const { got, data, corruptPieces, seed } = await download(order)
    expect(got.equals(data)).toBe(true)
    expect(corruptPieces).toBe(0)
    if (order === 'reversed') {
      // the seed did answer out of order: some piece's first block came after its second
      const first = seed.sent.indexOf('0:0')
      expect(first).toBeGreaterThan(seed.sent.indexOf(`0:${BLOCK}`))
    }
  })

  it('a corrupt block in a piece hashed incrementally (in order) fails the piece; it is fetched again and the file is intact', async () => {
    const { got, data, corruptPieces } = await download('in-order', `2:${5 * BLOCK}`)
    expect(corruptPieces).toBe(1)
    expect(got.equals(data)).toBe(true)
  })

  it('a corrupt block in a piece whose blocks came reversed (hashed at the end) fails the piece; fetched again, intact', async () => {
    const { got, data, corruptPieces } = await download('reversed', `3:${BLOCK}`)
    expect(corruptPieces).toBe(1)
    expect(got.equals(data)).toBe(true)
  })
})
