import { createHash, randomBytes } from 'node:crypto'
import dgram from 'node:dgram'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import DHT from 'bittorrent-dht'
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { Engine, type EngineOptions } from './engine.js'
import { loopbackEngineOptions } from './test-support/engine.js'
import { engineOptions, seedingConfig } from './service.js'

const logger = pino({ level: 'silent' })
const MiB = 1024 * 1024
const cleanup: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn().catch(() => {})
})

/** The part of bittorrent-dht's DHT this file uses. */
interface DhtNode {
  listen (port: number, host: string, cb: () => void): void
  address (): { port: number }
  on (event: 'announce', fn: (peer: { host: string, port: number }, infoHash: Buffer) => void): void
  on (event: 'get_peers', fn: (infoHash: Buffer) => void): void
  destroy (cb: () => void): void
}
const Dht = DHT as new (opts: object) => DhtNode

async function tempDir (): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'btt-discovery-'))
  cleanup.push(async () => { await rm(d, { recursive: true, force: true }) })
  return d
}

function baseOptions (dir: string): EngineOptions {
  return loopbackEngineOptions(dir, logger)
}

async function started (e: Engine): Promise<Engine> {
  await e.start()
  cleanup.push(async () => { await e.stop() })
  return e
}

async function engine (over: Partial<EngineOptions> = {}): Promise<Engine> {
  return await started(new Engine({ ...baseOptions(await tempDir()), ...over }))
}

async function file (dir: string, name: string, size: number): Promise<string> {
  await mkdir(dir, { recursive: true })
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

/** A standalone DHT node on loopback that knows nobody: the only bootstrap node of the test. */
async function bootstrapNode (): Promise<{ node: DhtNode, addr: string, announced: Array<{ infoHash: string, port: number }> }> {
  const node = new Dht({ bootstrap: false, host: false })
  await new Promise<void>(resolve => { node.listen(0, '127.0.0.1', resolve) })
  cleanup.push(async () => { await new Promise<void>(resolve => { node.destroy(resolve) }) })
  const announced: Array<{ infoHash: string, port: number }> = []
  node.on('announce', (peer, infoHash) => { announced.push({ infoHash: infoHash.toString('hex'), port: peer.port }) })
  return { node, addr: `127.0.0.1:${node.address().port}`, announced }
}

/** Binds a UDP socket to 127.0.0.1:port; resolves with the error code, or 'ok' (and closes it). */
async function udpBind (port: number): Promise<string> {
  const sock = dgram.createSocket('udp4')
  return await new Promise(resolve => {
    sock.once('error', (err: NodeJS.ErrnoException) => { sock.close(); resolve(err.code ?? err.message) })
    sock.bind(port, '127.0.0.1', () => { sock.close(); resolve('ok') })
  })
}

function hex (id: Uint8Array): string {
  return Buffer.from(id).toString('hex')
}

/** The peer ids a torrent of `e` is connected to, whoever dialled. */
function connectedIds (e: Engine, infoHash: string): string[] {
  return [...e.torrents.get(infoHash)!.peers.values()].map(p => p.peerId)
}

function candidates (e: Engine, infoHash: string): string[] {
  return [...e.torrents.get(infoHash)!.candidates.keys()]
}

describe('mainline DHT (BEP 5)', () => {
  it('a leecher finds the seeder of a magnet with no trackers and no peers through the DHT alone; a private torrent is never announced', async () => {
    const boot = await bootstrapNode()
    const dhtOpts = { dht: true, dhtBootstrap: [boot.addr], trackers: false, pex: false }
    const src = await tempDir()
    const path = await file(src, 'found.bin', 2 * MiB)
    const secret = await file(join(src, 'private'), 'secret.bin', 300_000)
    const seeder = await engine(dhtOpts)
    const pub = await seeder.add({ path, pieceLength: 65536 })
    const priv = await seeder.add({ path: secret, private: true })
    expect(priv.private).toBe(true)

    // the seeder announces on its first tick (through the bootstrap node it knows)
    await until(() => boot.announced.some(a => a.infoHash === pub.infoHash && a.port === seeder.port), 15_000, 'the seeder to announce on the DHT')
    expect((seeder.status().dht as { nodes: number }).nodes).toBeGreaterThan(0)

    const leecher = await engine(dhtOpts)
    const magnet = `magnet:?xt=urn:btih:${pub.infoHash}&dn=found.bin`
    const got = await leecher.add({ magnet })
    expect(got.state).toBe('metadata')
    expect(candidates(leecher, pub.infoHash)).toEqual([])
    await until(() => leecher.detail(pub.infoHash).state === 'seeding', 25_000, 'the leecher to complete from a peer found on the DHT')
    expect(candidates(leecher, pub.infoHash)).toContain(`127.0.0.1:${seeder.port}`)
    expect(connectedIds(leecher, pub.infoHash)).toContain(hex(seeder.peerId))
    expect(await sha(join(got.savePath, 'found.bin'))).toBe(await sha(path))

    // a looked-up private torrent finds nobody: the seeder never announced it
    const lost = await leecher.add({ magnet: `magnet:?xt=urn:btih:${priv.infoHash}&dn=secret.bin` })
    await sleep(2500)
    expect(boot.announced.filter(a => a.infoHash === priv.infoHash && a.port === seeder.port)).toEqual([])
    expect(candidates(leecher, lost.infoHash)).toEqual([])
    expect(leecher.detail(lost.infoHash).state).toBe('metadata')
  }, 45_000)

  it('dht = false in the config opens no UDP socket on the peer port; dht = true does', async () => {
    const boot = await bootstrapNode()
    const config = seedingConfig.parse({ listen_host: '127.0.0.1', listen_port: 0, dht: false, trackers: false, pex: false })
    const off = await started(new Engine(engineOptions(config, await tempDir(), logger)))
    expect(off.status().dht).toBe(false)
    expect(await udpBind(off.port)).toBe('ok')

    const onConfig = seedingConfig.parse({ listen_host: '127.0.0.1', listen_port: 0, dht: true, dht_bootstrap: [boot.addr], trackers: false, pex: false })
    const on = await started(new Engine(engineOptions(onConfig, await tempDir(), logger)))
    expect(on.status().dht).toEqual({ nodes: expect.any(Number) })
    expect(await udpBind(on.port)).toBe('EADDRINUSE')
  })

  it('a DHT port already taken fails start with a coded error instead of hanging', async () => {
    // a TCP port that is free, whose UDP twin another program holds
    const probe = net.createServer()
    await new Promise<void>(resolve => { probe.listen(0, '127.0.0.1', resolve) })
    const port = (probe.address() as net.AddressInfo).port
    await new Promise<void>(resolve => { probe.close(() => { resolve() }) })
    const squatter = dgram.createSocket('udp4')
    await new Promise<void>(resolve => { squatter.bind(port, '127.0.0.1', resolve) })
    cleanup.push(async () => { squatter.close() })
    const boot = await bootstrapNode()

    const e = new Engine({ ...baseOptions(await tempDir()), port, dht: true, dhtBootstrap: [boot.addr] })
    cleanup.push(async () => { await e.stop() })
    const outcome = await Promise.race([
      e.start().then(() => 'started', (err: { code?: string }) => err.code ?? 'error'),
      sleep(5000).then(() => 'hung')
    ])
    expect(outcome).toBe('SEEDING_LISTEN')
    // and it let go of the TCP port it had taken
    const again = net.createServer()
    await new Promise<void>((resolve, reject) => { again.once('error', reject); again.listen(port, '127.0.0.1', resolve) })
    await new Promise<void>(resolve => { again.close(() => { resolve() }) })
  })
})

describe('peer exchange (BEP 11)', () => {
  /**
   * A seeds; B downloads from A but uploads nothing (1 B/s); C is told only about B. C can only
   * complete by learning A's address from B.
   */
  async function swarm (cPex: boolean, opts: { private?: boolean } = {}): Promise<{ a: Engine, b: Engine, c: Engine, infoHash: string, path: string }> {
    const pex = { pex: true, pexIntervalMs: 500 }
    const src = await tempDir()
    const path = await file(src, 'swarm.bin', 2 * MiB)
    const a = await engine(pex)
    const { infoHash, torrentFile } = await a.add({ path, pieceLength: 65536, ...(opts.private === true ? { private: true } : {}) })
    const torrent = await readFile(torrentFile!)
    const b = await engine({ ...pex, uploadRate: 1 })
    await b.add({ torrent })
    b.addPeer(infoHash, { host: '127.0.0.1', port: a.port })
    await until(() => b.detail(infoHash).state === 'seeding', 20_000, 'B to download from A')
    const config = seedingConfig.parse({ listen_host: '127.0.0.1', listen_port: 0, dht: false, trackers: false, pex: cPex })
    const c = await started(new Engine({ ...engineOptions(config, await tempDir(), logger), pexIntervalMs: 500 }))
    await c.add({ torrent })
    c.addPeer(infoHash, { host: '127.0.0.1', port: b.port })
    return { a, b, c, infoHash, path }
  }

  it('C, told only about B, learns A through PEX and downloads from A', async () => {
    const { a, b, c, infoHash, path } = await swarm(true)
    await until(() => connectedIds(c, infoHash).includes(hex(a.peerId)), 15_000, 'C to connect to A')
    expect(candidates(c, infoHash)).toContain(`127.0.0.1:${a.port}`)
    await until(() => c.detail(infoHash).state === 'seeding', 20_000, 'C to complete')
    expect(await sha(join(c.detail(infoHash).savePath, 'swarm.bin'))).toBe(await sha(path))
    // the data came from A: B is held to 1 B/s
    expect(b.detail(infoHash).uploaded).toBe(0)
    expect(a.detail(infoHash).uploaded).toBeGreaterThanOrEqual(4 * MiB)
  }, 45_000)

  it('two engines that dial each other at the same instant keep exactly one connection', async () => {
    const src = await tempDir()
    const path = await file(src, 'both.bin', MiB)
    const x = await engine({ pex: true })
    const { infoHash, torrentFile } = await x.add({ path })
    const y = await engine({ pex: true })
    await y.add({ torrent: await readFile(torrentFile!) })
    // what a PEX round does (each side learns the other at once), with both 1 s ticks in the same
    // instant: each side gets an incoming and an outgoing connection to the same peer id
    x.torrents.get(infoHash)!.addCandidate({ host: '127.0.0.1', port: y.port })
    y.torrents.get(infoHash)!.addCandidate({ host: '127.0.0.1', port: x.port })
    const tick = (e: Engine): void => { (e as unknown as { tick: () => void }).tick() }
    tick(x)
    tick(y)
    await until(() => y.detail(infoHash).state === 'seeding', 10_000, 'Y to download over the surviving connection')
    expect(connectedIds(x, infoHash)).toEqual([hex(y.peerId)])
    expect(connectedIds(y, infoHash)).toEqual([hex(x.peerId)])
    expect(await sha(join(y.detail(infoHash).savePath, 'both.bin'))).toBe(await sha(path))
  })

  it('with pex = false in its config, C never learns A', async () => {
    const { a, b, c, infoHash } = await swarm(false)
    await until(() => connectedIds(c, infoHash).includes(hex(b.peerId)), 10_000, 'C to connect to B')
    // B told A about C meanwhile (A may dial C), but C is never told about A
    await sleep(3000)
    expect(candidates(c, infoHash)).toEqual([`127.0.0.1:${b.port}`])
    const cAtB = [...b.torrents.get(infoHash)!.peers.values()].find(p => p.peerId === hex(c.peerId))!
    expect(cAtB.extIds.has('ut_pex')).toBe(false)
    // B heard of C's listen address from A, but knows it is the peer that dialled in: no second dial
    expect(cAtB.incoming).toBe(true)
    expect(connectedIds(b, infoHash).filter(id => id === hex(c.peerId))).toHaveLength(1)
    expect(c.detail(infoHash).peerList.filter(p => !p.incoming).map(p => p.address)).not.toContain(`127.0.0.1:${a.port}`)
    expect(a.detail(infoHash).state).toBe('seeding')
  }, 45_000)

  it('a private torrent never uses PEX: nobody offers it, nobody learns from it', async () => {
    const { a, b, c, infoHash } = await swarm(true, { private: true })
    expect(c.detail(infoHash).private).toBe(true)
    await until(() => connectedIds(c, infoHash).includes(hex(b.peerId)), 10_000, 'C to connect to B')
    await sleep(3000)
    expect(candidates(c, infoHash)).toEqual([`127.0.0.1:${b.port}`])
    expect(connectedIds(c, infoHash)).toEqual([hex(b.peerId)])
    expect(connectedIds(a, infoHash)).toEqual([hex(b.peerId)])
    for (const [e, other] of [[b, c], [c, b], [a, b], [b, a]] as const) {
      const p = [...e.torrents.get(infoHash)!.peers.values()].find(x => x.peerId === hex(other.peerId))!
      expect(p.extIds.has('ut_pex')).toBe(false)
    }
    expect(c.detail(infoHash).downloaded).toBe(0)
  }, 45_000)
})
