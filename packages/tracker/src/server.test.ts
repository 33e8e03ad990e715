import { afterEach, describe, expect, it } from 'vitest'
import { createTracker, type TrackerServer, type TrackerInit } from './index.js'
import { announce, bidScrape } from './client.js'
import { announcePath, esc, failureOf, h20, rawGet, UdpClient, udpAnnounce } from './test-support/helpers.js'

let t: TrackerServer | undefined
afterEach(async () => { await t?.close(); t = undefined })

async function start (init: TrackerInit = {}): Promise<TrackerServer> {
  t = await createTracker({ rateLimit: false, bidIndexMaxAgeMs: 0, ...init })
  return t
}

describe('HTTP announce', () => {
  it('returns compact peers and counts, excluding the announcer', async () => {
    const s = await start()
    const ih = h20(1)
    const url = `http://127.0.0.1:${s.httpPort}/announce`
    await announce(url, { infoHash: ih, peerId: h20(1, 1), port: 1001, left: 0 })
    await announce(url, { infoHash: ih, peerId: h20(2, 1), port: 1002, left: 10 })
    const r = await announce(url, { infoHash: ih, peerId: h20(3, 1), port: 1003, left: 10 })
    expect(r.complete).toBe(1)
    expect(r.incomplete).toBe(2)
    expect(r.interval).toBe(1800)
    expect(r.peers.map(p => p.port).sort()).toEqual([1001, 1002])
    expect(r.peers[0]?.ip).toBe('127.0.0.1')
  })

  it('returns non-compact peer dicts with peer ids, and omits them with no_peer_id', async () => {
    const s = await start()
    const ih = h20(2)
    await announce(`http://127.0.0.1:${s.httpPort}/announce`, { infoHash: ih, peerId: h20(9, 1), port: 2000 })
    const { body } = await rawGet(s.httpPort, announcePath({ ih, pid: h20(8, 1), extra: '&compact=0' }))
    const peers = body.get('peers') as Array<Map<string, unknown>>
    expect(peers).toHaveLength(1)
    expect(Buffer.from(peers[0]?.get('peer id') as Uint8Array)).toEqual(h20(9, 1))
    const r2 = await rawGet(s.httpPort, announcePath({ ih, pid: h20(8, 1), extra: '&compact=0&no_peer_id=1' }))
    expect((r2.body.get('peers') as Array<Map<string, unknown>>)[0]?.has('peer id')).toBe(false)
  })

  it('removes a peer on stopped and counts completed downloads', async () => {
    const s = await start()
    const ih = h20(3)
    const url = `http://127.0.0.1:${s.httpPort}/announce`
    await announce(url, { infoHash: ih, peerId: h20(1, 2), port: 3001, left: 5, event: 'started' })
    await announce(url, { infoHash: ih, peerId: h20(1, 2), port: 3001, left: 0, event: 'completed' })
    expect(s.stats(ih)).toEqual({ complete: 1, incomplete: 0, downloaded: 1 })
    await announce(url, { infoHash: ih, peerId: h20(1, 2), port: 3001, left: 0, event: 'stopped' })
    expect(s.stats(ih)).toEqual({ complete: 0, incomplete: 0, downloaded: 0 })
  })

  it('expires peers after twice the interval', async () => {
    let now = 1_000_000
    const s = await start({ interval: 100, now: () => now })
    const ih = h20(4)
    s.announce({ infoHash: ih, peerId: h20(1, 3), ip: '127.0.0.1', port: 4001, left: 1 })
    now += 150_000
    s.announce({ infoHash: ih, peerId: h20(2, 3), ip: '127.0.0.1', port: 4002, left: 1 })
    expect(s.stats(ih).incomplete).toBe(2)
    now += 60_000 // first peer is 210 s old (> 200), second 60 s
    s.sweep()
    expect(s.stats(ih).incomplete).toBe(1)
  })

  it('clamps numwant to 200', async () => {
    const s = await start({ maxPeersPerAddress: 1000 })
    const ih = h20(5)
    for (let i = 0; i < 250; i++) s.announce({ infoHash: ih, peerId: h20(i, 4), ip: '127.0.0.1', port: 10000 + i, left: 1 })
    const { body } = await rawGet(s.httpPort, announcePath({ ih, pid: h20(999, 4), extra: '&numwant=100000' }))
    expect((body.get('peers') as Uint8Array).length).toBe(200 * 6)
    const d = await rawGet(s.httpPort, announcePath({ ih, pid: h20(999, 4) }))
    expect((d.body.get('peers') as Uint8Array).length).toBe(50 * 6)
  })

  it('scrapes several info hashes', async () => {
    const s = await start()
    s.announce({ infoHash: h20(6), peerId: h20(1, 5), ip: '127.0.0.1', port: 1, left: 0 })
    s.announce({ infoHash: h20(7), peerId: h20(1, 5), ip: '127.0.0.1', port: 1, left: 3 })
    const { body } = await rawGet(s.httpPort, `/scrape?info_hash=${esc(h20(6))}&info_hash=${esc(h20(7))}`)
    const files = body.get('files') as Map<string, Map<string, number>>
    expect(files.get(h20(6).toString('latin1'))?.get('complete')).toBe(1)
    expect(files.get(h20(7).toString('latin1'))?.get('incomplete')).toBe(1)
  })

  it('hands out IPv6 peers in peers6 (BEP 7)', async () => {
    const s = await start({ host: '::1' })
    const ih = h20(8)
    s.announce({ infoHash: ih, peerId: h20(1, 6), ip: '::1', port: 5555, left: 1 })
    const r = await announce(`http://[::1]:${s.httpPort}/announce`, { infoHash: ih, peerId: h20(2, 6), port: 1 })
    expect(r.peers).toEqual([{ ip: '0:0:0:0:0:0:0:1', port: 5555 }])
  })

  it('refuses info hashes outside the allow-list', async () => {
    const s = await start({ allowList: [h20(10).toString('hex')] })
    await expect(announce(`http://127.0.0.1:${s.httpPort}/announce`, { infoHash: h20(11), peerId: h20(1), port: 1 })).rejects.toThrow('info_hash not allowed')
    const ok = await announce(`http://127.0.0.1:${s.httpPort}/announce`, { infoHash: h20(10), peerId: h20(1), port: 1 })
    expect(ok.complete).toBe(1)
  })
})

describe('UDP (BEP 15)', () => {
  it('connects, announces and scrapes', async () => {
    const s = await start()
    const c = await UdpClient.open()
    try {
      const ih = h20(20)
      s.announce({ infoHash: ih, peerId: h20(1, 7), ip: '127.0.0.1', port: 7001, left: 0 })
      const cid = await c.connect(s.udpPort)
      const r = await c.send(s.udpPort, udpAnnounce(cid, { ih, pid: h20(2, 7), port: 7002, tid: 99 }))
      expect(r?.readUInt32BE(0)).toBe(1)
      expect(r?.readUInt32BE(4)).toBe(99)
      expect(r?.readUInt32BE(8)).toBe(1800)
      expect(r?.readUInt32BE(12)).toBe(1) // leechers
      expect(r?.readUInt32BE(16)).toBe(1) // seeders
      expect(r?.subarray(20)).toEqual(Buffer.from([127, 0, 0, 1, 0x1b, 0x59]))
      const sc = Buffer.alloc(36)
      cid.copy(sc, 0)
      sc.writeUInt32BE(2, 8)
      sc.writeUInt32BE(5, 12)
      ih.copy(sc, 16)
      const rs = await c.send(s.udpPort, sc)
      expect([rs?.readUInt32BE(0), rs?.readUInt32BE(8), rs?.readUInt32BE(12), rs?.readUInt32BE(16)]).toEqual([2, 1, 0, 1])
      // stopped removes
      await c.send(s.udpPort, udpAnnounce(cid, { ih, pid: h20(2, 7), port: 7002, event: 3 }))
      expect(s.stats(ih).incomplete).toBe(0)
    } finally { c.close() }
  })
})

describe('bid-announce', () => {
  it('orders peers by bid and carries bids in compact and non-compact form', async () => {
    const s = await start()
    const ih = h20(30)
    const url = `http://127.0.0.1:${s.httpPort}/announce`
    const pk = 'ab'.repeat(32)
    await announce(url, { infoHash: ih, peerId: h20(1, 8), port: 8001, left: 1, bid: 5n, pk })
    await announce(url, { infoHash: ih, peerId: h20(2, 8), port: 8002, left: 1 })
    await announce(url, { infoHash: ih, peerId: h20(3, 8), port: 8003, left: 1, bid: 2n ** 100n })
    await announce(url, { infoHash: ih, peerId: h20(4, 8), port: 8004, left: 1, bid: 0n })
    const r = await announce(url, { infoHash: ih, peerId: h20(5, 8), port: 8005, left: 1, orderByBid: true })
    expect(r.peers.map(p => [p.port, p.bid])).toEqual([[8003, 2n ** 100n], [8001, 5n], [8004, 0n], [8002, undefined]])
    // compact responses carry the wallet keys in btt_pks, parallel to peers
    expect(r.peers.map(p => p.pk)).toEqual([undefined, pk, undefined, undefined])
    const nc = await announce(url, { infoHash: ih, peerId: h20(5, 8), port: 8005, left: 1, orderByBid: true, compact: false })
    expect(nc.peers[1]).toMatchObject({ port: 8001, bid: 5n, pk })
    const plain = await rawGet(s.httpPort, announcePath({ ih, pid: h20(6, 8) }))
    expect(plain.body.has('btt_bids')).toBe(false)
    // a re-announce without btt_bid withdraws the bid
    await announce(url, { infoHash: ih, peerId: h20(3, 8), port: 8003, left: 1 })
    const r2 = await announce(url, { infoHash: ih, peerId: h20(5, 8), port: 8005, left: 1, orderByBid: true })
    expect(r2.peers[0]?.port).toBe(8001)
  })
})

describe('caps', () => {
  it('one address holds at most maxPeersPerAddress peers in a swarm (an IPv6 /64 counts as one address); others still get in', async () => {
    const s = await start({ maxPeersPerAddress: 3 })
    const ih = h20(42)
    for (let i = 0; i < 10; i++) s.announce({ infoHash: ih, peerId: h20(i, 11), ip: '10.0.0.1', port: 100 + i, left: 1 })
    expect(s.stats(ih).incomplete).toBe(3)
    for (let i = 0; i < 10; i++) s.announce({ infoHash: ih, peerId: h20(i, 12), ip: `2001:db8:1:2::${i + 1}`, port: 100 + i, left: 1 })
    expect(s.stats(ih).incomplete).toBe(6)
    s.announce({ infoHash: ih, peerId: h20(1, 13), ip: '2001:db8:1:3::1', port: 1, left: 1 })
    s.announce({ infoHash: ih, peerId: h20(2, 13), ip: '10.0.0.2', port: 1, left: 1 })
    expect(s.stats(ih).incomplete).toBe(8)
    // a peer that leaves frees its address's place
    s.announce({ infoHash: ih, peerId: h20(0, 11), ip: '10.0.0.1', port: 100, left: 1, event: 'stopped' })
    s.announce({ infoHash: ih, peerId: h20(99, 11), ip: '10.0.0.1', port: 999, left: 1 })
    expect(s.stats(ih).incomplete).toBe(8)
  })

  it('stops storing new peers past maxPeersTotal, across swarms', async () => {
    const s = await start({ maxPeersTotal: 5 })
    for (let i = 0; i < 8; i++) s.announce({ infoHash: h20(50 + i), peerId: h20(i, 14), ip: `10.1.0.${i + 1}`, port: 1, left: 1 })
    const stored = Array.from({ length: 8 }, (_, i) => s.stats(h20(50 + i)).incomplete).reduce((a, b) => a + b, 0)
    expect(stored).toBe(5)
  })

  it('stops storing peers past maxPeersPerSwarm and refuses new swarms past maxSwarms', async () => {
    const s = await start({ maxPeersPerSwarm: 2, maxSwarms: 1 })
    const url = `http://127.0.0.1:${s.httpPort}/announce`
    for (let i = 0; i < 3; i++) await announce(url, { infoHash: h20(40), peerId: h20(i, 10), port: 100 + i, left: 1 })
    expect(s.stats(h20(40)).incomplete).toBe(2)
    await expect(announce(url, { infoHash: h20(41), peerId: h20(1, 10), port: 1 })).rejects.toThrow('tracker is full')
  })
})

describe('UDP and bids', () => {
  it('a UDP announce keeps the bid the peer made over HTTP', async () => {
    const s = await start()
    const ih = h20(50)
    const pid = h20(1, 11)
    await announce(`http://127.0.0.1:${s.httpPort}/announce`, { infoHash: ih, peerId: pid, port: 9001, left: 1, bid: 77n })
    const c = await UdpClient.open()
    try {
      const cid = await c.connect(s.udpPort)
      await c.send(s.udpPort, udpAnnounce(cid, { ih, pid, port: 9001 }))
    } finally { c.close() }
    const r = await bidScrape(`http://127.0.0.1:${s.httpPort}/bid-scrape`)
    expect(r.files.map(f => f.bidMax)).toEqual([77n])
  })
})

describe('bid-scrape', () => {
  it('pages by bid_max desc, filters by min_bid and estimates the clearing price', async () => {
    const s = await start({ paidSlots: 2 })
    const base = `http://127.0.0.1:${s.httpPort}/bid-scrape`
    // swarm 1: bids 10, 8, 6, 4 → max 10, median (lower-index of sorted desc at n/2) 6, clearing 3rd = 6
    for (const [i, b] of [10n, 8n, 6n, 4n].entries()) s.announce({ infoHash: h20(1), peerId: h20(i, 9), ip: '127.0.0.1', port: 100 + i, bid: b, left: 1 })
    // swarm 2: one bidder 20 → clearing = lowest = 20
    s.announce({ infoHash: h20(2), peerId: h20(1, 9), ip: '127.0.0.1', port: 1, bid: 20n, left: 0 })
    // swarm 3: no bidders → absent
    s.announce({ infoHash: h20(3), peerId: h20(1, 9), ip: '127.0.0.1', port: 1, left: 0 })
    // swarms 4, 5: equal bid 1 → info_hash order
    s.announce({ infoHash: h20(5), peerId: h20(1, 9), ip: '127.0.0.1', port: 1, bid: 1n })
    s.announce({ infoHash: h20(4), peerId: h20(1, 9), ip: '127.0.0.1', port: 1, bid: 1n })
    const all = await bidScrape(base)
    expect(all.next).toBeUndefined()
    expect(all.files.map(f => f.infoHash[19])).toEqual([2, 1, 4, 5])
    expect(all.files[1]).toMatchObject({ bidders: 4, bidMax: 10n, bidMedian: 6n, clearingPrice: 6n, incomplete: 4 })
    expect(all.files[0]).toMatchObject({ bidders: 1, bidMax: 20n, clearingPrice: 20n, complete: 1 })
    const p1 = await bidScrape(base, { limit: 3 })
    expect(p1.files.map(f => f.infoHash[19])).toEqual([2, 1, 4])
    expect(p1.next).toBeDefined()
    const p2 = await bidScrape(base, { limit: 3, cursor: p1.next })
    expect(p2.files.map(f => f.infoHash[19])).toEqual([5])
    expect(p2.next).toBeUndefined()
    const rich = await bidScrape(base, { minBid: 10n })
    expect(rich.files.map(f => f.infoHash[19])).toEqual([2, 1])
    expect(rich.next).toBeUndefined()
    // a withdrawn bid drops the swarm
    s.announce({ infoHash: h20(2), peerId: h20(1, 9), ip: '127.0.0.1', port: 1, left: 0 })
    expect((await bidScrape(base)).files.map(f => f.infoHash[19])).toEqual([1, 4, 5])
  })
})

describe('failures reach the client', () => {
  it('throws TRACKER_FAILURE with the reason', async () => {
    const s = await start()
    await expect(announce(`http://127.0.0.1:${s.httpPort}/announce`, { infoHash: h20(1).subarray(0, 19), peerId: h20(1), port: 1 }))
      .rejects.toMatchObject({ code: 'TRACKER_FAILURE', message: 'invalid info_hash' })
    expect(failureOf((await rawGet(s.httpPort, '/bid-scrape?limit=0')).body)).toBe('invalid limit')
  })
})
