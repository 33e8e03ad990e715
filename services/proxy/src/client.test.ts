import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { readManifest, reconcileManifest, type Manifest, type Segment } from './client.js'

const CHUNK = 64 * 1024
const PRICE = 7n
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

/**
 * A resumed download trusts its channel, not its manifest, for what was paid: the manifest is saved
 * lazily, a chunk's bytes are durable before it is paid. These are the crash cases.
 */
describe('reconcileManifest', () => {
  let dir: string
  let partial: string
  let data: Buffer
  const seg = (over: Partial<Segment> = {}): Segment => ({ channel: 'c1', account: 'a1', addrs: ['/ip4/127.0.0.1/tcp/1/p2p/x'], price: PRICE.toString(), spentAtStart: '1000', fromByte: 0, ...over })
  const manifest = (chunks: number, segments: Segment[] = [seg()]): Manifest => ({
    v: 2, url: 'http://example.org/a', chunkSize: CHUNK, segments,
    chunks: Array.from({ length: chunks }, (_, i) => sha(data.subarray(i * CHUNK, (i + 1) * CHUNK))),
    bytes: chunks * CHUNK
  })
  const wallet = (spent: bigint) => (id: string) => id === 'c1' ? { spent } : undefined

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'btt-proxy-reconcile-'))
    partial = join(dir, 'out.btt-partial')
    data = randomBytes(5 * CHUNK + 100)
    await writeFile(partial, data)
  })
  afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

  it('nothing paid on the segment: nothing to resend, the manifest stays', async () => {
    const m = manifest(0)
    expect(await reconcileManifest(m, partial, wallet(1000n))).toBeUndefined()
    expect(m.bytes).toBe(0)
    expect(m.chunks).toEqual([])
  })

  it('a stale manifest is completed from the channel: chunks paid but not listed are hashed from the file', async () => {
    const m = manifest(2)
    const s = await reconcileManifest(m, partial, wallet(1000n + PRICE * BigInt(4 * CHUNK)))
    expect(s?.channel).toBe('c1')
    expect(m.bytes).toBe(4 * CHUNK)
    expect(m.chunks).toEqual([0, 1, 2, 3].map(i => sha(data.subarray(i * CHUNK, (i + 1) * CHUNK))))
  })

  it('a short last chunk (the body\'s end) is hashed at its length', async () => {
    const m = manifest(5)
    await reconcileManifest(m, partial, wallet(1000n + PRICE * BigInt(5 * CHUNK + 100)))
    expect(m.bytes).toBe(5 * CHUNK + 100)
    expect(m.chunks[5]).toBe(sha(data.subarray(5 * CHUNK)))
  })

  it('counts only the last segment\'s channel from where it began', async () => {
    const m = manifest(2, [seg({ channel: 'old', spentAtStart: '0' }), seg({ fromByte: 2 * CHUNK, spentAtStart: '50' })])
    await reconcileManifest(m, partial, wallet(50n + PRICE * BigInt(CHUNK)))
    expect(m.bytes).toBe(3 * CHUNK)
    expect(m.chunks).toHaveLength(3)
  })

  it.each([
    ['the channel paid for less than the manifest holds', 2, 1000n + PRICE * BigInt(CHUNK), /paid for 65536/],
    ['a spent amount no whole number of bytes explains', 1, 1000n + PRICE * BigInt(CHUNK) + 3n, /no whole number of bytes/],
    ['a channel that went backwards', 0, 999n, /no whole number of bytes/],
    ['more paid than the file holds', 0, 1000n + PRICE * BigInt(6 * CHUNK), /holds 327780 bytes, 393216 were paid for/]
  ])('refuses %s', async (_name, chunks, spent, message) => {
    const m = manifest(chunks)
    await expect(reconcileManifest(m, partial, wallet(spent))).rejects.toMatchObject({ code: 'PROXY_RESUME_MISMATCH', message: expect.stringMatching(message) })
  })

  it('refuses a channel the wallet does not know', async () => {
    await expect(reconcileManifest(manifest(1, [seg({ channel: 'gone' })]), partial, wallet(0n))).rejects.toMatchObject({ code: 'PROXY_RESUME_MISMATCH', message: expect.stringMatching(/not in the wallet/) })
  })

  it('refuses a malformed segment instead of throwing a TypeError', async () => {
    await expect(reconcileManifest(manifest(1, [seg({ price: 'x' })]), partial, wallet(1000n))).rejects.toMatchObject({ code: 'PROXY_RESUME_MISMATCH' })
  })
})

describe('readManifest', () => {
  let dir: string
  beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'btt-proxy-manifest-')) })
  afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

  it('is undefined when there is none', async () => {
    expect(await readManifest(join(dir, 'none.json'))).toBeUndefined()
  })

  it.each([
    ['not JSON', '{"v":2,'],
    ['another version', JSON.stringify({ v: 1, url: 'u', chunkSize: 65536, chunks: [], bytes: 0 })],
    ['a chunk size out of range', JSON.stringify({ v: 2, url: 'u', chunkSize: 1, chunks: [], bytes: 0, segments: [] })],
    ['no segments', JSON.stringify({ v: 2, url: 'u', chunkSize: 65536, chunks: [], bytes: 0 })],
    ['null', 'null']
  ])('refuses %s with a clear error', async (_name, text) => {
    const p = join(dir, 'm.json')
    await writeFile(p, text)
    await expect(readManifest(p)).rejects.toMatchObject({ code: 'PROXY_RESUME_MISMATCH' })
  })
})
