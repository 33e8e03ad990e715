/**
 * Tracker benchmarks.
 *
 * tracker.announce: UDP announces/s of @btt/tracker vs opentracker (Debian), same load generator: one
 * Node client over loopback, connect once then announce round-robin over a fixed set of info hashes
 * with IN_FLIGHT requests outstanding, for DURATION_MS. Our tracker runs in a child process (as
 * opentracker does), so the load generator does not share its event loop.
 *
 * tracker.bid_scrape_100k: 100k swarms with bidders, filled in-process; the median time of one
 * `GET /bid-scrape?limit=100` page over real HTTP (walking the cursor).
 */
import { spawn } from 'node:child_process'
import { createSocket } from 'node:dgram'
import { get } from 'node:http'
import { createTracker } from '@btt/tracker'
import { killAll, requireClient, startTracker } from '../test/interop/clients.ts'
import { median, note, report } from './lib.ts'

const HASHES = 1000
const PEERS_PER_HASH = 20
const IN_FLIGHT = 64
const DURATION_MS = 4000

function hash (i: number): Buffer {
  const b = Buffer.alloc(20, 0xab)
  b.writeUInt32BE(i, 0)
  return b
}

/** Announces/s against a UDP tracker at 127.0.0.1:port. */
async function loadUdp (port: number): Promise<number> {
  const sock = createSocket('udp4')
  await new Promise<void>(resolve => { sock.bind(0, '127.0.0.1', () => { resolve() }) })
  const connect = Buffer.alloc(16)
  connect.writeBigUInt64BE(0x41727101980n, 0)
  connect.writeUInt32BE(0xc0ffee, 12)
  const cid = await new Promise<Buffer>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error('UDP connect timed out')) }, 2000)
    sock.once('message', m => { clearTimeout(timer); resolve(m.subarray(8, 16)) })
    sock.send(connect, port, '127.0.0.1')
  })
  let seq = 0
  let done = 0
  let errors = 0
  const sent = new Map<number, number>()
  const send = (): void => {
    const n = seq++
    const b = Buffer.alloc(98)
    cid.copy(b, 0)
    b.writeUInt32BE(1, 8)
    b.writeUInt32BE(n >>> 0, 12)
    hash(n % HASHES).copy(b, 16)
    b.writeUInt32BE(Math.floor(n / HASHES) % PEERS_PER_HASH, 52) // peer id
    b.writeBigUInt64BE(100n, 64)
    b.writeInt32BE(50, 92)
    b.writeUInt16BE(10000 + (Math.floor(n / HASHES) % PEERS_PER_HASH), 96)
    sent.set(n >>> 0, Date.now())
    sock.send(b, port, '127.0.0.1')
  }
  let running = true
  sock.on('message', m => {
    const tid = m.readUInt32BE(4)
    if (!sent.delete(tid)) return
    if (m.readUInt32BE(0) === 1) done++
    else errors++
    if (running) send()
  })
  // resend for lost packets
  const refill = setInterval(() => {
    const now = Date.now()
    for (const [tid, t] of sent) {
      if (now - t > 300) { sent.delete(tid); send() }
    }
  }, 100)
  const t0 = performance.now()
  for (let i = 0; i < IN_FLIGHT; i++) send()
  await new Promise(resolve => setTimeout(resolve, DURATION_MS))
  running = false
  const secs = (performance.now() - t0) / 1000
  clearInterval(refill)
  sock.close()
  if (errors > 0) note(`${errors} error responses`)
  return done / secs
}

async function startOurs (): Promise<{ port: number, stop: () => void }> {
  const code = `import { createTracker } from '@btt/tracker'
const t = await createTracker({ rateLimit: false, httpPort: false, maxPeersPerAddress: 1_000_000 })
process.stdout.write(String(t.udpPort) + '\\n')
process.stdin.resume(); process.stdin.on('end', () => process.exit(0))`
  const child = spawn(process.execPath, ['--input-type=module', '-e', code], { cwd: import.meta.dirname, stdio: ['pipe', 'pipe', 'inherit'] })
  const port = await new Promise<number>((resolve, reject) => {
    child.once('error', reject)
    child.stdout.once('data', (d: Buffer) => { resolve(Number(d.toString().trim())) })
  })
  return { port, stop: () => { child.kill('SIGKILL') } }
}

async function benchAnnounce (): Promise<void> {
  const ours = await startOurs()
  let value: number
  try {
    await loadUdp(ours.port) // warm-up fills the swarms
    value = await loadUdp(ours.port)
  } finally { ours.stop() }
  note(`ours: ${Math.round(value)} announces/s`)
  if (requireClient('opentracker') === undefined) {
    note('opentracker not installed: reporting ours only')
    report({ bench: 'tracker.announce', value, unit: 'announces/s' })
    return
  }
  const hashes = Array.from({ length: HASHES }, (_, i) => hash(i).toString('hex'))
  const ot = await startTracker({ infoHashes: hashes })
  let anchor: number
  try {
    await loadUdp(ot.port)
    anchor = await loadUdp(ot.port)
  } finally {
    await ot.stop()
    killAll()
  }
  note(`opentracker: ${Math.round(anchor)} announces/s`)
  report({ bench: 'tracker.announce', value, unit: 'announces/s', anchor: 'opentracker', anchor_value: anchor })
}

async function httpGet (port: number, path: string): Promise<Buffer> {
  return await new Promise((resolve, reject) => {
    get({ host: '127.0.0.1', port, path, agent: false }, res => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => { resolve(Buffer.concat(chunks)) })
    }).on('error', reject)
  })
}

async function benchBidScrape (): Promise<void> {
  const t = await createTracker({ rateLimit: false, udpPort: false, maxPeersPerAddress: 1_000_000 })
  try {
    const t0 = performance.now()
    for (let i = 0; i < 100_000; i++) {
      const ih = hash(i)
      for (let j = 0; j < 3; j++) {
        const pid = Buffer.alloc(20, j)
        t.announce({ infoHash: ih, peerId: pid, ip: '127.0.0.1', port: 1000 + j, left: 1, bid: BigInt((i * 7919 + j * 104729) % 1_000_000) })
      }
    }
    note(`filled 100k swarms (300k bidders) in ${Math.round(performance.now() - t0)} ms`)
    const c0 = performance.now()
    await httpGet(t.httpPort, '/bid-scrape?limit=100')
    const cold = performance.now() - c0
    note(`first page (builds the sorted index): ${cold.toFixed(1)} ms`)
    const times: number[] = []
    let cursor: string | undefined
    for (let i = 0; i < 21; i++) {
      const s0 = performance.now()
      const body = await httpGet(t.httpPort, `/bid-scrape?limit=100${cursor === undefined ? '' : `&cursor=${cursor}`}`)
      times.push(performance.now() - s0)
      const m = /4:next72:([0-9a-f]{72})/.exec(body.toString('latin1'))
      cursor = m?.[1]
    }
    report({ bench: 'tracker.bid_scrape_100k', value: median(times), unit: 'ms' })
    report({ bench: 'tracker.bid_scrape_100k_cold', value: cold, unit: 'ms' })
  } finally { await t.close() }
}

export async function benchTracker (): Promise<void> {
  await benchAnnounce()
  await benchBidScrape()
}
