/** Hostile input: every malformed request gets its exact failure reason, and the tracker keeps serving. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createTracker, type TrackerServer } from './index.js'
import { announcePath, esc, failureOf, h20, rawGet, UdpClient, udpAnnounce, udpError } from './test-support/helpers.js'

let now = 10_000_000
let s: TrackerServer
let c: UdpClient
let other: UdpClient
beforeAll(async () => {
  s = await createTracker({ rateLimit: false, now: () => now })
  c = await UdpClient.open()
  other = await UdpClient.open()
})
afterAll(async () => { c.close(); other.close(); await s.close() })

const IH = esc(h20(1))
const PID = esc(h20(2))
const A = (rest: string): string => `/announce?${rest}`
const OK = `info_hash=${IH}&peer_id=${PID}&port=6881`

const HTTP_CASES: Array<[string, string, string, number?, string?]> = [
  ['missing info_hash', A(`peer_id=${PID}&port=1`), 'missing info_hash'],
  ['missing peer_id', A(`info_hash=${IH}&port=1`), 'missing peer_id'],
  ['missing port', A(`info_hash=${IH}&peer_id=${PID}`), 'missing port'],
  ['info_hash of 19 bytes', A(`info_hash=${esc(h20(1).subarray(1))}&peer_id=${PID}&port=1`), 'invalid info_hash'],
  ['info_hash of 21 bytes', A(`info_hash=${IH}%00&peer_id=${PID}&port=1`), 'invalid info_hash'],
  ['peer_id of 21 bytes', A(`info_hash=${IH}&peer_id=${PID}%41&port=1`), 'invalid peer_id'],
  ['duplicated port', A(`${OK}&port=2`), 'duplicate parameter: port'],
  ['duplicated info_hash in announce', A(`${OK}&info_hash=${IH}`), 'duplicate parameter: info_hash'],
  ['bad percent-encoding', A(`info_hash=%zz${IH}&peer_id=${PID}&port=1`), 'bad percent-encoding'],
  ['truncated percent escape', A(`${OK}&left=%4`), 'bad percent-encoding'],
  ['port 0', A(`info_hash=${IH}&peer_id=${PID}&port=0`), 'invalid port'],
  ['port 65536', A(`info_hash=${IH}&peer_id=${PID}&port=65536`), 'invalid port'],
  ['negative left', A(`${OK}&left=-1`), 'invalid left'],
  ['left past 2^53', A(`${OK}&left=99999999999999999`), 'invalid left'],
  ['non-numeric uploaded', A(`${OK}&uploaded=1e3`), 'invalid uploaded'],
  ['unknown event', A(`${OK}&event=paused`), 'invalid event'],
  ['negative bid', A(`${OK}&btt_bid=-5`), 'invalid btt_bid'],
  ['non-numeric bid', A(`${OK}&btt_bid=abc`), 'invalid btt_bid'],
  ['leading-zero bid', A(`${OK}&btt_bid=007`), 'invalid btt_bid'],
  ['bid of 2^128', A(`${OK}&btt_bid=${(2n ** 128n).toString()}`), 'invalid btt_bid'],
  ['empty bid', A(`${OK}&btt_bid=`), 'invalid btt_bid'],
  ['fractional bid', A(`${OK}&btt_bid=1.5`), 'invalid btt_bid'],
  ['btt_pk of 63 hex chars', A(`${OK}&btt_pk=${'a'.repeat(63)}`), 'invalid btt_pk'],
  ['non-hex btt_pk', A(`${OK}&btt_pk=${'g'.repeat(64)}`), 'invalid btt_pk'],
  ['unknown btt_order', A(`${OK}&btt_order=price`), 'invalid btt_order'],
  ['bad btt flag', A(`${OK}&btt=yes`), 'invalid btt'],
  ['oversized query (10 KiB)', A(`${OK}&pad=${'x'.repeat(10 * 1024)}`), 'query string too long', 414],
  ['non-GET method', A(OK), 'method not allowed', 405, 'POST'],
  ['unknown path', '/admin?x=1', 'unknown path', 404],
  ['scrape without info_hash', '/scrape', 'missing info_hash'],
  ['oversized scrape query (10 KiB)', `/scrape?info_hash=${IH}&pad=${'x'.repeat(10 * 1024)}`, 'query string too long', 414],
  ['scrape with a 19-byte hash', `/scrape?info_hash=${esc(h20(1).subarray(1))}`, 'invalid info_hash'],
  ['scrape with 101 hashes', `/scrape?${Array.from({ length: 101 }, () => 'info_hash=12345678901234567890').join('&')}`, 'too many info_hash'],
  ['bid-scrape leading-zero min_bid', '/bid-scrape?min_bid=01', 'invalid min_bid'],
  ['bid-scrape limit 1001', '/bid-scrape?limit=1001', 'invalid limit'],
  ['bid-scrape forged cursor', `/bid-scrape?cursor=${'z'.repeat(72)}`, 'invalid cursor'],
  ['bid-scrape duplicated limit', '/bid-scrape?limit=1&limit=2', 'duplicate parameter: limit']
]

describe('hostile HTTP input', () => {
  it.each(HTTP_CASES)('%s', async (_name, path, reason, status = 200, method = 'GET') => {
    const r = await rawGet(s.httpPort, path, method)
    expect(failureOf(r.body)).toBe(reason)
    expect(r.status).toBe(status)
  })

  it('clamps a huge numwant instead of failing, and ignores unknown params', async () => {
    const r = await rawGet(s.httpPort, A(`${OK}&numwant=9007199254740992&whatever=1`))
    expect(failureOf(r.body)).toBeUndefined()
    expect(r.body.get('interval')).toBe(1800)
  })
})

function packet (len: number, cid: Buffer | bigint, action: number, tid = 5): Buffer {
  const b = Buffer.alloc(len)
  if (typeof cid === 'bigint') b.writeBigUInt64BE(cid, 0)
  else cid.copy(b, 0)
  b.writeUInt32BE(action, 8)
  b.writeUInt32BE(tid, 12)
  return b
}

describe('hostile UDP input', () => {
  it('ignores a packet too short to carry a transaction id', async () => {
    expect(await c.send(s.udpPort, Buffer.alloc(8), '127.0.0.1', 200)).toBeUndefined()
  })

  it('refuses an unknown action', async () => {
    expect(udpError(await c.send(s.udpPort, packet(16, 0x41727101980n, 7)))).toBe('unknown action')
  })

  it('refuses connect with the wrong protocol magic', async () => {
    expect(udpError(await c.send(s.udpPort, packet(16, 0x41727101981n, 0)))).toBe('bad protocol id')
  })

  it('refuses a made-up connection id', async () => {
    expect(udpError(await c.send(s.udpPort, udpAnnounce(Buffer.alloc(8, 7), { ih: h20(1), pid: h20(2), port: 1 })))).toBe('bad connection id')
  })

  it('refuses a connection id issued to another address', async () => {
    const cid = await c.connect(s.udpPort)
    expect(udpError(await other.send(s.udpPort, udpAnnounce(cid, { ih: h20(1), pid: h20(2), port: 1 })))).toBe('bad connection id')
  })

  it('refuses a replayed connection id after it expired (2 minutes)', async () => {
    const cid = await c.connect(s.udpPort)
    now += 60_000
    expect(udpError(await c.send(s.udpPort, udpAnnounce(cid, { ih: h20(1), pid: h20(2), port: 1 })))).toBeUndefined()
    now += 120_000
    expect(udpError(await c.send(s.udpPort, udpAnnounce(cid, { ih: h20(1), pid: h20(2), port: 1 })))).toBe('bad connection id')
  })

  it('refuses a scrape of 200 hashes', async () => {
    const cid = await c.connect(s.udpPort)
    const b = Buffer.concat([packet(16, cid, 2), Buffer.alloc(200 * 20, 1)])
    expect(udpError(await c.send(s.udpPort, b))).toBe('too many info_hash')
  })

  it('refuses a truncated announce', async () => {
    const cid = await c.connect(s.udpPort)
    expect(udpError(await c.send(s.udpPort, udpAnnounce(cid, { ih: h20(1), pid: h20(2), port: 1 }).subarray(0, 60)))).toBe('truncated announce')
  })

  it('refuses a scrape whose length is not a whole number of hashes', async () => {
    const cid = await c.connect(s.udpPort)
    expect(udpError(await c.send(s.udpPort, Buffer.concat([packet(16, cid, 2), Buffer.alloc(19)])))).toBe('truncated scrape')
  })

  it('refuses announce port 0 and an unknown event', async () => {
    const cid = await c.connect(s.udpPort)
    expect(udpError(await c.send(s.udpPort, udpAnnounce(cid, { ih: h20(1), pid: h20(2), port: 0 })))).toBe('invalid port')
    expect(udpError(await c.send(s.udpPort, udpAnnounce(cid, { ih: h20(1), pid: h20(2), port: 1, event: 9 })))).toBe('invalid event')
  })
})

describe('rate limit', () => {
  it('refuses announces past the per-IP bucket, over HTTP and UDP', async () => {
    let t = 0
    const r = await createTracker({ rateLimit: { perSecond: 1, burst: 2 }, now: () => t })
    const u = await UdpClient.open()
    try {
      const path = announcePath({ ih: h20(1), pid: h20(2) })
      expect(failureOf((await rawGet(r.httpPort, path)).body)).toBeUndefined()
      expect(failureOf((await rawGet(r.httpPort, path)).body)).toBeUndefined()
      expect(failureOf((await rawGet(r.httpPort, path)).body)).toBe('rate limit exceeded')
      const cid = await u.connect(r.udpPort)
      expect(udpError(await u.send(r.udpPort, udpAnnounce(cid, { ih: h20(1), pid: h20(2), port: 1 })))).toBe('rate limit exceeded')
      t += 1000 // one token back
      expect(failureOf((await rawGet(r.httpPort, path)).body)).toBeUndefined()
    } finally {
      u.close()
      await r.close()
    }
  })
})

describe('after all of that', () => {
  it('still answers valid HTTP and UDP announces', async () => {
    const r = await rawGet(s.httpPort, announcePath({ ih: h20(77), pid: h20(3), port: 7777 }))
    expect(failureOf(r.body)).toBeUndefined()
    expect(r.body.get('incomplete')).toBe(1)
    const cid = await c.connect(s.udpPort)
    const u = await c.send(s.udpPort, udpAnnounce(cid, { ih: h20(77), pid: h20(4), port: 7778 }))
    expect(u?.readUInt32BE(0)).toBe(1)
    expect(u?.subarray(20)).toEqual(Buffer.from([127, 0, 0, 1, 0x1e, 0x61]))
  })
})
