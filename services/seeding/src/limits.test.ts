import { createHash, randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { SlotsChokePolicy, type ChokeContext, type ChokePolicy, type ChokerPeer } from './choker.js'
import { Engine, type EngineOptions } from './engine.js'
import { loopbackEngineOptions } from './test-support/engine.js'
import { encodeHandshake, HANDSHAKE_LENGTH } from './wire.js'

const logger = pino({ level: 'silent' })
const MiB = 1024 * 1024
const cleanup: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn().catch(() => {})
})

async function tempDir (): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'btt-limits-'))
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

async function file (dir: string, name: string, size: number): Promise<string> {
  await mkdir(join(dir, name, '..'), { recursive: true })
  await writeFile(join(dir, name), randomBytes(size))
  return join(dir, name)
}

async function sha (path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex')
}

async function sleep (ms: number): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, ms))
}

async function until (fn: () => boolean, ms = 20_000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await sleep(25)
  }
}

/**
 * Adds the seeder's torrents to the leecher, then points them all at the seeder at once (so the
 * same 1 s tick dials for all of them and they start together).
 */
async function leech (seeder: Engine, leecher: Engine, ...infoHashes: string[]): Promise<void> {
  for (const ih of infoHashes) await leecher.add({ torrent: await readFile(seeder.detail(ih).torrentFile!) })
  for (const ih of infoHashes) leecher.addPeer(ih, { host: '127.0.0.1', port: seeder.port })
}

interface Transfer {
  /** From the first byte counted to the last, ms. */
  ms: number
  /** Bytes/s from 1.5 s after the first byte (the 1 s burst allowance spent) to the end. */
  steady: number
  /** Highest rate the engine itself reported meanwhile. */
  maxReported: number
}

/** Samples a byte counter every 20 ms until it reaches `total`. */
async function watch (counter: () => number, total: number, reported: () => number, timeoutMs = 30_000): Promise<Transfer> {
  const samples: Array<{ at: number, bytes: number }> = []
  let maxReported = 0
  const end = Date.now() + timeoutMs
  for (;;) {
    const bytes = counter()
    samples.push({ at: performance.now(), bytes })
    maxReported = Math.max(maxReported, reported())
    if (bytes >= total) break
    if (Date.now() > end) throw new Error(`transfer stalled at ${bytes} of ${total} bytes`)
    await sleep(20)
  }
  const first = samples.find(s => s.bytes > 0)!
  const last = samples.at(-1)!
  const after = samples.find(s => s.at >= first.at + 1500)
  const steady = after !== undefined && last.at - after.at >= 500 ? (last.bytes - after.bytes) * 1000 / (last.at - after.at) : NaN
  return { ms: last.at - first.at, steady, maxReported }
}

function fmt (t: Transfer): string {
  if (Number.isNaN(t.steady)) return `${(t.ms / 1000).toFixed(2)} s`
  return `${(t.ms / 1000).toFixed(2)} s, steady ${(t.steady / MiB).toFixed(2)} MiB/s, reported ≤ ${(t.maxReported / MiB).toFixed(2)} MiB/s`
}

/** The limited transfer obeys `rate`; the unlimited one is much faster. */
function expectLimited (limited: Transfer, free: Transfer, size: number, rate: number): void {
  expect(limited.ms).toBeGreaterThanOrEqual((size / rate - 1.5) * 1000)
  expect(limited.steady).toBeGreaterThan(0.6 * rate)
  expect(limited.steady).toBeLessThan(1.3 * rate)
  expect(limited.maxReported).toBeLessThan(1.3 * rate)
  expect(limited.maxReported).toBeGreaterThan(0.3 * rate)
  expect(free.ms * 3).toBeLessThan(limited.ms)
}

describe('upload limits', () => {
  it('torrentUploadRate holds a torrent to its rate; the same transfer without it is much faster', async () => {
    const src = await tempDir()
    const path = await file(src, 'up.bin', 4 * MiB)
    const rate = MiB
    const limited = await engine({ torrentUploadRate: rate })
    const free = await engine()
    const { infoHash } = await limited.add({ path, pieceLength: 65536 })
    await free.add({ path, pieceLength: 65536 })
    const l1 = await engine()
    const l2 = await engine()

    await leech(limited, l1, infoHash)
    const slow = await watch(() => limited.detail(infoHash).uploaded, 4 * MiB, () => limited.detail(infoHash).uploadRate)
    await leech(free, l2, infoHash)
    const fast = await watch(() => free.detail(infoHash).uploaded, 4 * MiB, () => 0)
    console.log(`torrentUploadRate 1 MiB/s: ${fmt(slow)}; unlimited ${fmt(fast)}`)
    expectLimited(slow, fast, 4 * MiB, rate)
    await until(() => l1.detail(infoHash).state === 'seeding', 10_000, 'the leecher to verify the last piece')
    expect(await sha(join(l1.detail(infoHash).savePath, 'up.bin'))).toBe(await sha(path))
  }, 40_000)

  it('uploadRate is one budget for every torrent of the engine', async () => {
    const src = await tempDir()
    const a = await file(src, 'a.bin', 2 * MiB)
    const b = await file(src, 'b.bin', 2 * MiB)
    const rate = MiB
    const limited = await engine({ uploadRate: rate })
    const free = await engine()
    const ta = (await limited.add({ path: a, pieceLength: 65536 })).infoHash
    const tb = (await limited.add({ path: b, pieceLength: 65536 })).infoHash
    await free.add({ path: a, pieceLength: 65536 })
    await free.add({ path: b, pieceLength: 65536 })
    const l1 = await engine()
    const l2 = await engine()

    await leech(limited, l1, ta, tb)
    const both = (e: Engine): number => e.detail(ta).uploaded + e.detail(tb).uploaded
    const slow = await watch(() => both(limited), 4 * MiB, () => limited.status().uploadRate as number)
    await leech(free, l2, ta, tb)
    const fast = await watch(() => both(free), 4 * MiB, () => 0)
    console.log(`uploadRate 1 MiB/s over two torrents: ${fmt(slow)}; unlimited ${fmt(fast)}`)
    expectLimited(slow, fast, 4 * MiB, rate)
  }, 40_000)

  it('a per-torrent limit under a global one of the same size does not cut what passes', async () => {
    // two buckets in a row: a block must take from both or from neither, or budget is lost
    const src = await tempDir()
    const a = await file(src, 'a.bin', 2 * MiB)
    const b = await file(src, 'b.bin', 2 * MiB)
    const rate = MiB
    const limited = await engine({ uploadRate: rate, torrentUploadRate: rate })
    const ta = (await limited.add({ path: a, pieceLength: 65536 })).infoHash
    const tb = (await limited.add({ path: b, pieceLength: 65536 })).infoHash
    const l1 = await engine()
    await leech(limited, l1, ta, tb)
    const t = await watch(() => limited.detail(ta).uploaded + limited.detail(tb).uploaded, 4 * MiB, () => limited.status().uploadRate as number)
    console.log(`uploadRate = torrentUploadRate = 1 MiB/s over two torrents: ${fmt(t)}`)
    expect(t.ms).toBeGreaterThanOrEqual((4 - 1.5) * 1000)
    expect(t.steady).toBeGreaterThan(0.75 * rate)
    expect(t.steady).toBeLessThan(1.3 * rate)
  }, 40_000)
})

describe('download limits', () => {
  it('torrentDownloadRate holds a torrent to its rate; the same transfer without it is much faster', async () => {
    const src = await tempDir()
    const path = await file(src, 'down.bin', 4 * MiB)
    const rate = MiB
    const seeder = await engine()
    const { infoHash } = await seeder.add({ path, pieceLength: 65536 })
    const limited = await engine({ torrentDownloadRate: rate })
    const free = await engine()

    await leech(seeder, limited, infoHash)
    const slow = await watch(() => limited.detail(infoHash).downloaded, 4 * MiB, () => limited.detail(infoHash).downloadRate)
    await leech(seeder, free, infoHash)
    const fast = await watch(() => free.detail(infoHash).downloaded, 4 * MiB, () => 0)
    console.log(`torrentDownloadRate 1 MiB/s: ${fmt(slow)}; unlimited ${fmt(fast)}`)
    expectLimited(slow, fast, 4 * MiB, rate)
    await until(() => limited.detail(infoHash).state === 'seeding', 10_000, 'the leecher to verify the last piece')
    expect(await sha(join(limited.detail(infoHash).savePath, 'down.bin'))).toBe(await sha(path))
  }, 40_000)

  it('downloadRate is one budget for every torrent of the engine', async () => {
    const src = await tempDir()
    const a = await file(src, 'a.bin', 2 * MiB)
    const b = await file(src, 'b.bin', 2 * MiB)
    const rate = MiB
    const seeder = await engine()
    const ta = (await seeder.add({ path: a, pieceLength: 65536 })).infoHash
    const tb = (await seeder.add({ path: b, pieceLength: 65536 })).infoHash
    const limited = await engine({ downloadRate: rate })
    const free = await engine()

    await leech(seeder, limited, ta, tb)
    const both = (e: Engine): number => e.detail(ta).downloaded + e.detail(tb).downloaded
    const slow = await watch(() => both(limited), 4 * MiB, () => limited.status().downloadRate as number)
    await leech(seeder, free, ta, tb)
    const fast = await watch(() => both(free), 4 * MiB, () => 0)
    console.log(`downloadRate 1 MiB/s over two torrents: ${fmt(slow)}; unlimited ${fmt(fast)}`)
    expectLimited(slow, fast, 4 * MiB, rate)
  }, 40_000)
})

// --- peer limits -------------------------------------------------------------------------------

interface RawPeer {
  sock: net.Socket
  /** Bytes the engine sent us. */
  received: () => number
  closed: () => boolean
}

/** A bare TCP peer that sends a valid handshake for `infoHash` and then stays silent. */
function rawPeer (port: number, infoHash: string): RawPeer {
  const sock = net.connect({ host: '127.0.0.1', port })
  let received = 0
  let closed = false
  sock.on('data', (d: Buffer) => { received += d.length })
  sock.on('error', () => {})
  sock.on('close', () => { closed = true })
  sock.write(encodeHandshake(Buffer.from(infoHash, 'hex'), Buffer.concat([Buffer.from('-RAW000-'), randomBytes(12)]), { dht: false }))
  cleanup.push(async () => { sock.destroy() })
  return { sock, received: () => received, closed: () => closed }
}

/** Records the highest value `fn` returns until stopped, every 2 ms. */
function highWater (fn: () => number): { stop: () => number } {
  let max = fn()
  const timer = setInterval(() => { max = Math.max(max, fn()) }, 2)
  return { stop: () => { clearInterval(timer); return Math.max(max, fn()) } }
}

/** Peers the engine kept: their handshake came back and more followed (bitfield, extended handshake). */
function accepted (peers: RawPeer[]): RawPeer[] {
  return peers.filter(p => !p.closed() && p.received() > HANDSHAKE_LENGTH)
}

describe('peer limits', () => {
  it('maxPeersPerTorrent: handshakes beyond the limit are closed, and a freed slot is reused', async () => {
    const src = await tempDir()
    const seeder = await engine({ maxPeersPerTorrent: 3, maxPeers: 100 })
    const { infoHash } = await seeder.add({ path: await file(src, 'p.bin', 100_000) })
    const hw = highWater(() => seeder.detail(infoHash).peers)
    const peers = Array.from({ length: 8 }, () => rawPeer(seeder.port, infoHash))
    await until(() => peers.every(p => p.closed() || p.received() > HANDSHAKE_LENGTH), 5000, 'every raw peer to be answered')
    await sleep(300)
    expect(accepted(peers)).toHaveLength(3)
    expect(peers.filter(p => p.closed())).toHaveLength(5)
    expect(seeder.detail(infoHash).peers).toBe(3)
    // one leaves; the next one takes its place, and the one after is refused again
    accepted(peers)[0]!.sock.destroy()
    await until(() => seeder.detail(infoHash).peers === 2, 5000, 'the engine to see the peer leave')
    const next = rawPeer(seeder.port, infoHash)
    await until(() => next.closed() || next.received() > HANDSHAKE_LENGTH, 5000, 'the next peer to be answered')
    const extra = rawPeer(seeder.port, infoHash)
    await until(() => extra.closed(), 5000, 'the peer over the limit to be closed')
    await sleep(200)
    expect(next.closed()).toBe(false)
    expect(seeder.detail(infoHash).peers).toBe(3)
    expect(hw.stop()).toBeLessThanOrEqual(3)
  })

  it('maxPeers: the total over all torrents never exceeds the limit, even when handshakes arrive at once', async () => {
    const src = await tempDir()
    const seeder = await engine({ maxPeersPerTorrent: 10, maxPeers: 4 })
    const a = (await seeder.add({ path: await file(src, 'a.bin', 100_000) })).infoHash
    const b = (await seeder.add({ path: await file(src, 'b.bin', 100_000) })).infoHash
    const hw = highWater(() => seeder.status().peers as number)
    // one at a time: the fifth is refused whatever torrent it names
    const first = [rawPeer(seeder.port, a), rawPeer(seeder.port, a), rawPeer(seeder.port, b)]
    await until(() => accepted(first).length === 3, 5000, 'three peers to be accepted')
    const fourth = rawPeer(seeder.port, b)
    await until(() => accepted([fourth]).length === 1, 5000, 'the fourth peer to be accepted')
    const fifth = rawPeer(seeder.port, a)
    await until(() => fifth.closed(), 5000, 'the fifth peer to be closed')
    expect(seeder.status().peers).toBe(4)
    for (const p of [...first, fourth]) p.sock.destroy()
    await until(() => seeder.status().peers === 0, 5000, 'every peer to leave')

    // all at once: 5 + 5 handshakes in flight together
    const burst = [...Array.from({ length: 5 }, () => rawPeer(seeder.port, a)), ...Array.from({ length: 5 }, () => rawPeer(seeder.port, b))]
    await until(() => burst.every(p => p.closed() || p.received() > HANDSHAKE_LENGTH), 5000, 'every raw peer to be answered')
    await sleep(300)
    expect(seeder.status().peers).toBe(4)
    expect(accepted(burst)).toHaveLength(4)
    expect(burst.filter(p => p.closed())).toHaveLength(6)
    expect(hw.stop()).toBeLessThanOrEqual(4)
  })

  it('maxActiveTorrents: a torrent over the limit is queued, refuses peers, and starts when a slot frees', async () => {
    const src = await tempDir()
    const e = await engine({ maxActiveTorrents: 2 })
    const one = await e.add({ path: await file(src, 'one.bin', 100_000) })
    const two = await e.add({ path: await file(src, 'two.bin', 100_000) })
    const three = await e.add({ path: await file(src, 'three.bin', 100_000) })
    expect(one.state).toBe('seeding')
    expect(two.state).toBe('seeding')
    expect(three.state).toBe('queued')
    expect(e.status().states).toEqual({ seeding: 2, queued: 1 })
    // a queued torrent does not answer handshakes
    const knock = rawPeer(e.port, three.infoHash)
    await until(() => knock.closed(), 5000, 'the handshake for a queued torrent to be refused')
    expect(knock.received()).toBe(0)

    await e.remove(one.infoHash)
    expect(e.detail(three.infoHash).state).toBe('seeding')
    const again = rawPeer(e.port, three.infoHash)
    await until(() => again.received() > HANDSHAKE_LENGTH, 5000, 'the promoted torrent to accept a peer')
    expect(again.closed()).toBe(false)

    // pausing an active torrent also frees a slot
    const four = await e.add({ path: await file(src, 'four.bin', 100_000) })
    expect(four.state).toBe('queued')
    await e.pause(two.infoHash)
    expect(e.detail(four.infoHash).state).toBe('seeding')
    expect(e.list().map(t => t.state).sort()).toEqual(['paused', 'seeding', 'seeding'])
  })
})

// --- choking -----------------------------------------------------------------------------------

function peer (key: string, over: Partial<ChokerPeer> = {}): ChokerPeer {
  return { key, interested: true, choked: true, uploadRate: 0, downloadRate: 0, seed: false, lastUnchokedAt: 0, ...over }
}

/** Runs rechoke the way Torrent does: unchoked peers get `lastUnchokedAt = now`. */
function round (policy: ChokePolicy, peers: ChokerPeer[], ctx: ChokeContext): { peers: ChokerPeer[], out: Set<string> } {
  const out = policy.rechoke(peers, ctx)
  return { out, peers: peers.map(p => out.has(p.key) ? { ...p, choked: false, lastUnchokedAt: ctx.now } : { ...p, choked: true }) }
}

describe('SlotsChokePolicy', () => {
  it('unchokes exactly slots + 1 interested peers: the fastest by download rate while leeching, plus one optimistic', () => {
    const policy = new SlotsChokePolicy({ slots: 3, optimistic: 1, optimisticMs: 30_000 })
    const peers = Array.from({ length: 10 }, (_, i) => peer(`p${i}`, { downloadRate: i * 1000, uploadRate: (10 - i) * 1000 }))
    const out = policy.rechoke(peers, { seeding: false, now: 1_000_000 })
    expect(out.size).toBe(4)
    for (const k of ['p9', 'p8', 'p7']) expect(out.has(k)).toBe(true)
  })

  it('ranks by upload rate while seeding, and never unchokes seeds then', () => {
    const policy = new SlotsChokePolicy({ slots: 2, optimistic: 1, optimisticMs: 30_000 })
    const peers = [
      ...Array.from({ length: 6 }, (_, i) => peer(`p${i}`, { downloadRate: i * 1000, uploadRate: (10 - i) * 1000 })),
      peer('seed', { seed: true, uploadRate: 1e9 })
    ]
    const out = policy.rechoke(peers, { seeding: true, now: 1_000_000 })
    expect(out.size).toBe(3)
    expect(out.has('p0')).toBe(true)
    expect(out.has('p1')).toBe(true)
    expect(out.has('seed')).toBe(false)
  })

  it('never unchokes an uninterested peer, however fast', () => {
    const policy = new SlotsChokePolicy({ slots: 2, optimistic: 1, optimisticMs: 30_000 })
    const peers = [
      peer('fast-but-bored', { interested: false, downloadRate: 1e9, uploadRate: 1e9 }),
      peer('bored', { interested: false }),
      peer('a', { downloadRate: 10 }),
      peer('b', { downloadRate: 5 })
    ]
    let state = peers
    for (let i = 0; i < 10; i++) {
      const r = round(policy, state, { seeding: false, now: 1_000_000 + i * 31_000 })
      expect(r.out.has('fast-but-bored')).toBe(false)
      expect(r.out.has('bored')).toBe(false)
      expect([...r.out].sort()).toEqual(['a', 'b'])
      state = r.peers
    }
    // nobody interested: nobody unchoked
    expect(policy.rechoke(peers.map(p => ({ ...p, interested: false })), { seeding: false, now: 2_000_000 }).size).toBe(0)
  })

  it('keeps the optimistic unchoke for optimisticMs, then gives it to the peer that has waited longest', () => {
    const policy = new SlotsChokePolicy({ slots: 2, optimistic: 1, optimisticMs: 30_000 })
    // two fast peers hold the regular slots; five slow ones wait, last unchoked at different times
    let state = [
      peer('fast1', { downloadRate: 1e6 }),
      peer('fast2', { downloadRate: 9e5 }),
      peer('w1', { lastUnchokedAt: 500 }),
      peer('w2', { lastUnchokedAt: 100 }),
      peer('w3', { lastUnchokedAt: 300 }),
      peer('w4', { lastUnchokedAt: 400 }),
      peer('w5', { lastUnchokedAt: 200 })
    ]
    const t0 = 1_000_000
    const optimistic = (out: Set<string>): string => {
      const o = [...out].filter(k => !k.startsWith('fast'))
      expect(o).toHaveLength(1)
      return o[0]!
    }
    let r = round(policy, state, { seeding: false, now: t0 })
    expect(r.out.has('fast1') && r.out.has('fast2')).toBe(true)
    expect(optimistic(r.out)).toBe('w2')
    state = r.peers
    // before optimisticMs it stays, although others have waited longer now
    for (const dt of [10_000, 20_000, 29_999]) {
      r = round(policy, state, { seeding: false, now: t0 + dt })
      expect(optimistic(r.out)).toBe('w2')
      state = r.peers
    }
    // then it rotates through the waiting peers, longest wait first
    const order: string[] = []
    for (let i = 1; i <= 5; i++) {
      r = round(policy, state, { seeding: false, now: t0 + i * 30_000 })
      expect(r.out.size).toBe(3)
      order.push(optimistic(r.out))
      state = r.peers
    }
    expect(order).toEqual(['w5', 'w3', 'w4', 'w1', 'w2'])
  })

  it('with fewer interested peers than slots, unchokes them all', () => {
    const policy = new SlotsChokePolicy({ slots: 4, optimistic: 1, optimisticMs: 30_000 })
    const out = policy.rechoke([peer('a'), peer('b'), peer('c', { interested: false })], { seeding: false, now: 1 })
    expect([...out].sort()).toEqual(['a', 'b'])
  })
})

describe('custom choke policy', () => {
  it('chokerFactory replaces the choker: nobody unchoked means no data, and opening it lets data flow', async () => {
    class Gate implements ChokePolicy {
      open = false
      calls = 0
      sawInterested = false
      rechoke (peers: readonly ChokerPeer[]): Set<string> {
        this.calls++
        if (peers.some(p => p.interested)) this.sawInterested = true
        return this.open ? new Set(peers.filter(p => p.interested).map(p => p.key)) : new Set()
      }
    }
    const gate = new Gate()
    const made: string[] = []
    const src = await tempDir()
    const path = await file(src, 'gated.bin', 2 * MiB)
    const seeder = await engine({ chokerFactory: t => { made.push(t.infoHash); return gate } })
    const { infoHash } = await seeder.add({ path, pieceLength: 65536 })
    expect(made).toEqual([infoHash])
    const leecher = await engine()
    await leech(seeder, leecher, infoHash)
    await until(() => seeder.detail(infoHash).peerList.some(p => p.interested), 10_000, 'the leecher to be interested')
    await sleep(2500)
    expect(gate.calls).toBeGreaterThan(0)
    expect(gate.sawInterested).toBe(true)
    expect(seeder.detail(infoHash).peerList.map(p => p.choked)).toEqual([true])
    expect(seeder.detail(infoHash).uploaded).toBe(0)
    expect(leecher.detail(infoHash).downloaded).toBe(0)
    expect(leecher.detail(infoHash).peers).toBe(1)

    // the engine asks the policy again on its own (every 10 s); now it unchokes
    const t0 = Date.now()
    gate.open = true
    await until(() => leecher.detail(infoHash).state === 'seeding', 20_000, 'the download to complete once unchoked')
    const ms = Date.now() - t0
    console.log(`custom choker: unchoked and completed ${ms} ms after the policy opened`)
    expect(ms).toBeLessThan(13_000)
    expect(await sha(join(leecher.detail(infoHash).savePath, 'gated.bin'))).toBe(await sha(path))
  }, 30_000)
})

// --- pause, resume, recheck, remove ------------------------------------------------------------

describe('torrent lifecycle', () => {
  it('pause drops peers and refuses new ones; resume rechecks and seeds again; recheck finds a corrupt piece and it is repaired', async () => {
    const src = await tempDir()
    const root = join(src, 'album')
    await file(root, 'a.bin', MiB)
    await file(root, 'sub/b.bin', 300_000)
    const original = await sha(join(root, 'a.bin'))
    const seeder = await engine()
    const { infoHash, pieceCount } = await seeder.add({ path: root, pieceLength: 65536 })
    const leecher = await engine()
    await leech(seeder, leecher, infoHash)
    await until(() => leecher.detail(infoHash).state === 'seeding', 20_000, 'the leecher to complete')

    // pause
    await until(() => seeder.detail(infoHash).peers === 1, 5000, 'the leecher connection')
    const paused = await seeder.pause(infoHash)
    expect(paused.state).toBe('paused')
    expect(paused.peers).toBe(0)
    await until(() => leecher.detail(infoHash).peers === 0, 5000, 'the leecher to see the seeder go')
    const knock = rawPeer(seeder.port, infoHash)
    await until(() => knock.closed(), 5000, 'a handshake for a paused torrent to be refused')
    expect(knock.received()).toBe(0)
    expect(seeder.detail(infoHash).state).toBe('paused')

    // resume: hashes the files again, then seeds
    const resumed = await seeder.resumeTorrent(infoHash)
    expect(['checking', 'seeding']).toContain(resumed.state)
    await until(() => seeder.detail(infoHash).state === 'seeding', 10_000, 'resume to finish its check')
    expect(seeder.detail(infoHash).piecesHave).toBe(pieceCount)
    const hello = rawPeer(seeder.port, infoHash)
    await until(() => hello.received() > HANDSHAKE_LENGTH, 5000, 'the resumed torrent to accept a peer')

    // a byte changes on disk: recheck finds exactly that piece bad
    const buf = await readFile(join(root, 'a.bin'))
    buf[70_000] = buf[70_000]! ^ 0xff
    await writeFile(join(root, 'a.bin'), buf)
    await seeder.recheck(infoHash)
    await expect(seeder.recheck(infoHash)).rejects.toMatchObject({ code: 'SEEDING_BUSY' })
    await until(() => seeder.detail(infoHash).state !== 'checking', 10_000, 'the recheck')
    const checked = seeder.detail(infoHash)
    expect(checked.state).toBe('downloading')
    expect(checked.piecesHave).toBe(pieceCount - 1)
    expect(checked.progress).toBeLessThan(1)
    // and it downloads the piece back from the leecher
    seeder.addPeer(infoHash, { host: '127.0.0.1', port: leecher.port })
    await until(() => seeder.detail(infoHash).state === 'seeding', 20_000, 'the seeder to repair its piece')
    expect(await sha(join(root, 'a.bin'))).toBe(original)
  }, 60_000)

  it('stopping while the last piece is written saves state without an unhandled rejection', async () => {
    const rejections: unknown[] = []
    const onRejection = (err: unknown): void => { rejections.push(err) }
    process.on('unhandledRejection', onRejection)
    try {
      const src = await tempDir()
      const path = await file(src, 'last.bin', 2 * MiB)
      const seeder = await engine()
      const { infoHash } = await seeder.add({ path, pieceLength: 65536 })
      const leecher = await engine()
      await leech(seeder, leecher, infoHash)
      // the last block is in: the piece is being hashed and written, completion is a moment away
      const end = Date.now() + 20_000
      while (leecher.detail(infoHash).downloaded < 2 * MiB && Date.now() < end) await new Promise(resolve => setImmediate(resolve))
      await leecher.stop()
      await sleep(500)
      // what was saved leads to a complete torrent on the next start (fast resume or a recheck)
      const again = await engine({ dataDir: leecher.opts.dataDir, downloadDir: leecher.opts.downloadDir })
      await until(() => again.detail(infoHash).state === 'seeding', 10_000, 'the restarted engine to seed')
      expect(await sha(join(again.detail(infoHash).savePath, 'last.bin'))).toBe(await sha(path))
    } finally {
      process.off('unhandledRejection', onRejection)
    }
    expect(rejections).toEqual([])
  })

  it('a magnet keeps its name and x.pe peers across a restart before its metadata arrives', async () => {
    const src = await tempDir()
    const path = await file(src, 'later.bin', 500_000)
    const seeder = await engine()
    const { infoHash } = await seeder.add({ path })
    // the only peer is paused: no metadata can come before the restart
    await seeder.pause(infoHash)
    const leecher = await engine()
    const magnet = `magnet:?xt=urn:btih:${infoHash}&dn=Later%20Movie&x.pe=127.0.0.1:${seeder.port}`
    const added = await leecher.add({ magnet })
    expect(added.name).toBe('Later Movie')
    expect(added.state).toBe('metadata')
    await sleep(1500)
    await leecher.stop()

    await seeder.resumeTorrent(infoHash)
    await until(() => seeder.detail(infoHash).state === 'seeding', 10_000, 'the seeder to resume')
    const again = await engine({ dataDir: leecher.opts.dataDir, downloadDir: leecher.opts.downloadDir })
    expect(again.detail(infoHash).name).toBe('Later Movie')
    await until(() => again.detail(infoHash).state === 'seeding', 15_000, 'the restarted magnet to find its x.pe peer and complete')
    expect(again.detail(infoHash).name).toBe('later.bin')
    expect(await sha(join(again.detail(infoHash).savePath, 'later.bin'))).toBe(await sha(path))
  })

  it('remove keeps the data by default; remove with deleteData deletes the files and the .torrent', async () => {
    const src = await tempDir()
    const root = join(src, 'album')
    await file(root, 'a.bin', 500_000)
    await file(root, 'sub/deeper/b.bin', 200_000)
    const seeder = await engine()
    const { infoHash } = await seeder.add({ path: root, pieceLength: 65536 })
    const leecher = await engine()
    await leech(seeder, leecher, infoHash)
    await until(() => leecher.detail(infoHash).state === 'seeding', 20_000, 'the leecher to complete')
    const got = join(leecher.detail(infoHash).savePath, 'album')
    expect(existsSync(join(got, 'sub/deeper/b.bin'))).toBe(true)
    const torrentFile = leecher.detail(infoHash).torrentFile!
    expect(existsSync(torrentFile)).toBe(true)

    await leecher.remove(infoHash, { deleteData: true })
    expect(leecher.list()).toEqual([])
    expect(() => leecher.detail(infoHash)).toThrow(expect.objectContaining({ code: 'SEEDING_NOT_FOUND' }))
    await expect(leecher.remove(infoHash)).rejects.toMatchObject({ code: 'SEEDING_NOT_FOUND' })
    expect(existsSync(join(got, 'a.bin'))).toBe(false)
    expect(existsSync(join(got, 'sub/deeper/b.bin'))).toBe(false)
    expect(existsSync(got)).toBe(false)
    expect(existsSync(torrentFile)).toBe(false)

    const seederTorrent = seeder.detail(infoHash).torrentFile!
    await seeder.remove(infoHash)
    expect(seeder.list()).toEqual([])
    expect(existsSync(seederTorrent)).toBe(false)
    expect(existsSync(join(root, 'a.bin'))).toBe(true)
    expect(existsSync(join(root, 'sub/deeper/b.bin'))).toBe(true)
    // and the same data can be added again
    expect((await seeder.add({ path: root, pieceLength: 65536 })).state).toBe('seeding')
  }, 40_000)
})
