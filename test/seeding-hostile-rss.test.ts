import { randomBytes } from 'node:crypto'
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import net from 'node:net'
import { dirname, join } from 'node:path'
import { AdminClient, homePaths, readApiToken } from '@btt/node'
import { decodeExtendedHandshake } from '@btt/service-seeding'
import { afterAll, describe, expect, it } from 'vitest'
import { runCli, SEEDING_LOOPBACK_ENV, startNodeProcess, tempHome, type NodeProcess } from './helpers/cli.js'

/**
 * 200 hostile peers connected to a real node's seeding service, each doing what it can to make the
 * node hold memory while staying connected: the node's RSS grows by less than 50 MB, and a
 * legitimate download (the `btt-node get` CLI) completes byte-identical while they are connected.
 *
 * What a peer can make the engine hold for a known torrent (services/seeding/src/wire.ts): the
 * parser refuses a length prefix over 1 MiB + 16 KiB, fixed-size messages of the wrong size, a
 * piece over 16 KiB, a bitfield longer than the torrent's and an extended message over 128 KiB, all
 * from the first 5 bytes - so the largest message it buffers is an extended message of 128 KiB + 2.
 * The hostile peers send 99% of one (in big writes, or trickled in 16-byte writes), an extended
 * handshake at the decoder's caps (64 KiB and 10,000 values today: ~5,000 extension names) before
 * it, or hundreds of requests (rejected while choked; queued, with a socket that is never read, by
 * the few that get unchoked). RSS is read after a garbage collection forced through the inspector.
 */

const HOSTILE = 200
const REFUSED = 40
const SIZE = 4 * 1024 * 1024
const KiB = 1024
const MiB = 1024 * KiB
/** Interested peers that wait for an unchoke and then queue requests they never read: fewer than the upload slots (8). */
const UNCHOKED_HOGS = 6
const RSS_BUDGET_MB = 50
/** The trickling peers write this many bytes at a time, each write a millisecond or so after the last. */
const TRICKLE_BYTES = 16

const SEEDING_ENV = {
  ...SEEDING_LOOPBACK_ENV,
  BTT_NODE_SERVICES_SEEDING_TRACKERS: 'false',
  // the default (50) would refuse most of them at the handshake: that is not a memory test
  BTT_NODE_SERVICES_SEEDING_MAX_PEERS_PER_TORRENT: '300'
}
/** The inspector (loopback, any port) lets the test force a garbage collection before it reads RSS. */
const NODE_ENV = { ...SEEDING_ENV, NODE_OPTIONS: '--inspect=127.0.0.1:0' }

const running: NodeProcess[] = []
const sockets: net.Socket[] = []
let home = ''
afterAll(async () => {
  for (const s of sockets) s.destroy()
  for (const n of running) if (n.child.exitCode === null) await n.signal('SIGKILL')
  if (home !== '') await rm(dirname(home), { recursive: true, force: true })
})

async function rssMB (pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  return Number(/VmRSS:\s+(\d+)\s+kB/.exec(status)?.[1]) / 1024
}

/**
 * A full garbage collection in the node process through its inspector (started on loopback with
 * --inspect=127.0.0.1:0): RSS is then what the process holds, not garbage V8 has not collected yet.
 */
async function collectGarbage (node: NodeProcess): Promise<void> {
  const url = /ws:\/\/127\.0\.0\.1:\d+\/[0-9a-f-]+/.exec(node.output())?.[0]
  if (url === undefined) throw new Error(`no inspector URL in the node's output:\n${node.output().slice(0, 2000)}`)
  const ws = new WebSocket(url)
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject })
  for (let id = 1; id <= 2; id++) {
    const done = new Promise<void>(resolve => {
      ws.onmessage = (e: MessageEvent) => { if ((JSON.parse(String(e.data)) as { id?: number }).id === id) resolve() }
    })
    ws.send(JSON.stringify({ id, method: 'HeapProfiler.collectGarbage' }))
    await done
  }
  ws.close()
  await sleep(500)
}

async function sleep (ms: number): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, ms))
}

function u32 (n: number): Buffer {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(n >>> 0, 0)
  return b
}

function msg (id: number, body: Uint8Array = Buffer.alloc(0)): Buffer {
  return Buffer.concat([u32(1 + body.length), Buffer.from([id]), body])
}

const request = (index: number, begin: number, length: number): Buffer => msg(6, Buffer.concat([u32(index), u32(begin), u32(length)]))
const ext = (id: number, payload: Uint8Array): Buffer => msg(20, Buffer.concat([Buffer.from([id]), payload]))

function handshake (infoHash: Buffer): Buffer {
  const b = Buffer.alloc(68)
  b[0] = 19
  b.write('BitTorrent protocol', 1, 'latin1')
  b[25] = 0x10
  b[27] = 0x04
  infoHash.copy(b, 28)
  Buffer.concat([Buffer.from('-HO0001-'), randomBytes(12)]).copy(b, 48)
  return b
}

/** 99% of the largest message the parser buffers for a known torrent: an extended message of 128 KiB + 2. */
function partialLargest (): Buffer {
  const len = 2 + 128 * KiB
  const body = Buffer.alloc(Math.floor(len * 0.99), 0x61)
  body[0] = 77 // an extension id nobody registered
  return Buffer.concat([u32(len), Buffer.from([20]), body.subarray(0, body.length - 1)])
}

function handshakePayload (names: number): Buffer {
  const list: string[] = []
  for (let k = 0; k < names; k++) list.push(`x${k.toString(36).padStart(3, '0')}`)
  list.sort()
  let m = ''
  list.forEach((n, i) => { m += `${n.length}:${n}i${1 + (i % 255)}e` })
  return Buffer.from(`d1:md${m}e1:v11:hostile 1.0e`, 'latin1')
}

/**
 * A valid extended handshake at the decoder's caps (today 64 KiB and 10,000 bencode values:
 * ~4,900 extension names): the most names the engine's own decoder accepts, found by bisection.
 */
function handshakeAtCaps (): { message: Buffer, names: number } {
  const accepts = (n: number): boolean => {
    try { decodeExtendedHandshake(handshakePayload(n)); return true } catch { return false }
  }
  let lo = 1
  let hi = 20_000
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2)
    if (accepts(mid)) lo = mid
    else hi = mid - 1
  }
  return { message: ext(0, handshakePayload(lo)), names: lo }
}

interface Hostile { sock: net.Socket, kind: string, closed: boolean, got: Buffer[], unchoked: boolean }

/** Connects, handshakes, waits for the node's handshake and its first messages. */
async function connectHostile (port: number, infoHash: Buffer, kind: string): Promise<Hostile> {
  const sock = net.connect({ host: '127.0.0.1', port, noDelay: true })
  sockets.push(sock)
  const h: Hostile = { sock, kind, closed: false, got: [], unchoked: false }
  sock.on('error', () => {})
  sock.on('close', () => { h.closed = true })
  let bytes = 0
  sock.on('data', (c: Buffer) => {
    bytes += c.length
    // an unchoke (0 0 0 1 1) after the handshake
    if (!h.unchoked && c.includes(Buffer.from([0, 0, 0, 1, 1]))) h.unchoked = true
  })
  await new Promise<void>((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject) })
  sock.write(handshake(infoHash))
  const end = Date.now() + 10_000
  // 68 bytes of handshake, then have_all and the extended handshake
  while (bytes < 68 + 5 + 20 && !h.closed && Date.now() < end) await sleep(5)
  if (bytes < 68 || h.closed) throw new Error(`hostile peer (${kind}) was not accepted`)
  return h
}

describe('seeding: 200 hostile peers against a real node', () => {
  it(`holds less than ${RSS_BUDGET_MB} MB for ${HOSTILE} hostile peers, refuses ${REFUSED} more, and a legitimate download completes meanwhile`, async () => {
    home = await tempHome('btt-hostile-rss-')
    expect((await runCli(['init', '--home', home])).code).toBe(0)
    const content = join(dirname(home), 'content')
    await mkdir(content, { recursive: true })
    const data = randomBytes(SIZE)
    await writeFile(join(content, 'payload.bin'), data)
    const node = await startNodeProcess(home, [], NODE_ENV)
    running.push(node)
    const client = new AdminClient({ url: node.apiUrl, token: await readApiToken(homePaths(home)), timeoutMs: 60_000 })
    type Added = { infoHash: string, torrentFile: string, state: string, pieceLength: number, pieceCount: number }
    const added = (await client.serviceRequest<{ torrent: Added }>('seeding', 'POST', '/torrents', { path: join(content, 'payload.bin') })).torrent
    expect(added.state).toBe('seeding')
    const blocksPerPiece = added.pieceLength / (16 * KiB)
    /** The k-th valid block request of the torrent (its last piece is a full one: SIZE is a power of two). */
    const validRequest = (k: number): Buffer => request(k % added.pieceCount, (k % blocksPerPiece) * 16 * KiB, 16 * KiB)
    const ih = Buffer.from(added.infoHash, 'hex')
    const { port } = await client.serviceRequest<{ port: number }>('seeding', 'GET', '/status')
    const peerCount = async (): Promise<number> =>
      (await client.serviceRequest<{ torrent: { peerList: unknown[] } }>('seeding', 'GET', `/torrents/${added.infoHash}`)).torrent.peerList.length

    const partial = partialLargest()
    const caps = handshakeAtCaps()
    const atCaps = caps.message
    const kinds = ['partial 128 KiB extended', 'extended handshake at caps + partial', `partial trickled in ${TRICKLE_BYTES} B writes`, 'requests + partial']

    /** Does what its kind does; trickled bytes are returned for the pump. */
    async function misbehave (h: Hostile, i: number): Promise<Buffer | undefined> {
      switch (h.kind) {
        case kinds[0]:
          for (let off = 0; off < partial.length; off += 16 * KiB) h.sock.write(partial.subarray(off, off + 16 * KiB))
          return undefined
        case kinds[1]:
          h.sock.write(atCaps)
          h.sock.write(partial)
          return undefined
        case kinds[2]:
          return partial
        case 'idle':
          return undefined
        default: {
          if (i < UNCHOKED_HOGS) {
            // interested, and once unchoked: requests it never reads (below the 500 it may queue)
            h.sock.write(msg(2))
            const end = Date.now() + 5000
            while (!h.unchoked && Date.now() < end) await sleep(10)
            h.sock.pause()
            const reqs: Buffer[] = []
            for (let k = 0; k < 480; k++) reqs.push(validRequest(k))
            h.sock.write(Buffer.concat(reqs))
          } else {
            // requests while choked (each rejected, none counted), 20 invalid ones (one short of the limit)
            h.sock.pause()
            const reqs: Buffer[] = []
            for (let k = 0; k < 500; k++) reqs.push(validRequest(k))
            for (let k = 0; k < 20; k++) reqs.push(request(0, 0, MiB))
            h.sock.write(Buffer.concat(reqs))
          }
          h.sock.write(partial)
          return undefined
        }
      }
    }

    /** Writes every trickle TRICKLE_BYTES at a time, one write per peer per millisecond or so. */
    async function pump (trickles: Array<{ h: Hostile, bytes: Buffer }>): Promise<void> {
      for (let off = 0; trickles.some(t => off < t.bytes.length); off += TRICKLE_BYTES) {
        for (const t of trickles) if (off < t.bytes.length && !t.h.closed) t.h.sock.write(t.bytes.subarray(off, off + TRICKLE_BYTES))
        await sleep(1)
      }
    }

    /** RSS after a forced garbage collection, and before it. */
    async function settledRss (): Promise<{ rss: number, raw: number }> {
      const raw = await rssMB(node.pid)
      await collectGarbage(node)
      return { rss: await rssMB(node.pid), raw }
    }

    /** `n` peers of one kind (or of every kind in turn), connected one after the other, misbehaving together. */
    async function wave (n: number, kind?: string): Promise<Hostile[]> {
      const peers: Hostile[] = []
      for (let i = 0; i < n; i++) peers.push(await connectHostile(port, ih, kind ?? kinds[i % kinds.length]!))
      const trickles: Array<{ h: Hostile, bytes: Buffer }> = []
      await Promise.all(peers.map(async (h, i) => {
        const t = await misbehave(h, i)
        if (t !== undefined) trickles.push({ h, bytes: t })
      }))
      await pump(trickles)
      return peers
    }

    async function disconnect (peers: Hostile[]): Promise<void> {
      for (const h of peers) h.sock.destroy()
      const t0 = Date.now()
      while (await peerCount() > 0 && Date.now() - t0 < 5000) await sleep(50)
      await sleep(2000)
    }

    /** `btt-node get` of the torrent from the node, as a separate process. */
    async function download (out: string): Promise<{ code: number | null, stderr: string, ms: number }> {
      const t = Date.now()
      const r = await runCli(['get', added.torrentFile, '--out', out, '--no-dht', '--no-pex', '--listen-host', '127.0.0.1', '--peer', `127.0.0.1:${port}`, '--timeout', '90'])
      return { ...r, ms: Date.now() - t }
    }

    // warm-up: the code paths the hostile peers take, and a legitimate download (the piece cache
    // fills, the JavaScript heap grows to its working size), so the baseline is a node that has
    // been serving; then, for scale, what 50 peers that only handshake cost
    const warm = await wave(8)
    const warmDownload = await download(join(dirname(home), 'warm-download'))
    expect(warmDownload.code, warmDownload.stderr).toBe(0)
    await disconnect(warm)
    const idleBefore = (await settledRss()).rss
    const idle = await wave(50, 'idle')
    await sleep(2000)
    const idleCost = (await settledRss()).rss - idleBefore
    await disconnect(idle)
    const baseline = await settledRss()
    const before = baseline.rss

    // the refused ones: each is dropped as soon as its first 5 bytes arrive
    const refusedBytes = [
      Buffer.concat([u32(0x00ffffff), Buffer.from([5]), Buffer.alloc(1000)]),
      Buffer.concat([u32(MiB + 16 * KiB), Buffer.from([20, 0]), Buffer.alloc(1000)]),
      Buffer.concat([u32(MiB), Buffer.from([7]), Buffer.alloc(1000)]),
      Buffer.concat([u32(1 + MiB), Buffer.from([5]), Buffer.alloc(1000)])
    ]
    const refused = await Promise.all(Array.from({ length: REFUSED }, async (_, i) => {
      const h = await connectHostile(port, ih, 'refused')
      h.sock.write(refusedBytes[i % refusedBytes.length]!)
      return h
    }))

    // the 200: a wave of 50 of each kind, RSS after each
    const hostile: Hostile[] = []
    const steps: string[] = []
    let last = before
    for (const kind of kinds) {
      hostile.push(...await wave(HOSTILE / kinds.length, kind))
      await sleep(1000)
      const now = await settledRss()
      steps.push(`+${(now.rss - last).toFixed(1)} MB for 50 × ${kind} (${(now.raw - now.rss).toFixed(1)} MB more before the GC)`)
      last = now.rss
    }
    const t1 = Date.now()
    while (refused.some(h => !h.closed) && Date.now() - t1 < 5000) await sleep(20)
    expect(refused.filter(h => !h.closed)).toEqual([])

    // settle, then measure with all of them connected
    await sleep(2000)
    const connected = await peerCount()
    const stillOpen = hostile.filter(h => !h.closed).length
    const settled = await settledRss()
    const after = settled.rss
    const unchoked = hostile.filter(h => h.unchoked).length

    // a legitimate download while they are connected
    const out = join(dirname(home), 'download')
    const got = await download(out)
    const afterDownload = await rssMB(node.pid)
    const connectedAfter = await peerCount()

    console.log([
      `hostile RSS (after a forced GC): before ${before.toFixed(1)} MB, with ${connected} hostile peers connected ${after.toFixed(1)} MB ` +
        `(+${(after - before).toFixed(1)} MB; before the GC: ${baseline.raw.toFixed(1)} → ${settled.raw.toFixed(1)} MB, +${(settled.raw - baseline.raw).toFixed(1)} MB; ` +
        `${stillOpen}/${HOSTILE} sockets open, ${unchoked} unchoked), ${REFUSED} refused peers all dropped`,
      `  growth by wave: ${steps.join('; ')}`,
      `  for scale: 50 peers that only handshake cost ${idleCost.toFixed(1)} MB; the extended handshake at the caps lists ${caps.names} extension names (${atCaps.length} bytes)`,
      `  legitimate download with them connected: exit ${got.code} in ${(got.ms / 1000).toFixed(1)} s (before them: ${(warmDownload.ms / 1000).toFixed(1)} s); ` +
        `RSS after it ${afterDownload.toFixed(1)} MB; ${connectedAfter} hostile peers still connected`
    ].join('\n'))

    expect(got.code, got.stderr).toBe(0)
    expect((await readFile(join(out, 'payload.bin'))).equals(data)).toBe(true)
    expect(stillOpen).toBe(HOSTILE)
    expect(connected).toBe(HOSTILE)
    expect(after - before).toBeLessThan(RSS_BUDGET_MB)
    expect(node.child.exitCode).toBeNull()
    for (const s of sockets) s.destroy()
    expect((await node.signal('SIGTERM')).code).toBe(0)
  }, 240_000)
})
