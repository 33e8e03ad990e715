import DHT from 'bittorrent-dht'
import sodium from 'sodium-native'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Discovery } from './discovery.js'
import { signOffer, verifySignature, type KeyPair, type Offer } from './offers.js'

function keyPair (): KeyPair {
  const publicKey = Buffer.alloc(32)
  const secretKey = Buffer.alloc(64)
  sodium.crypto_sign_keypair(publicKey, secretKey)
  return { publicKey, secretKey }
}

const LEDGER = 'cd'.repeat(32)
const storageOffer = { services: ['storage'] as Offer['services'], prices: { storage: 7n }, addrs: ['/ip4/127.0.0.1/tcp/4101'], ledger: LEDGER, bt_port: 6881 }

describe('Discovery over a loopback DHT of 12 nodes', () => {
  const nodes: Discovery[] = []
  let boot: Discovery
  let provider: Discovery
  let requester: Discovery
  const providerKey = keyPair()

  const make = async (kp: KeyPair, extra: Partial<ConstructorParameters<typeof Discovery>[0]> = {}): Promise<Discovery> => {
    const d = new Discovery({ keyPair: kp, host: '127.0.0.1', bootstrap: [`127.0.0.1:${boot.address().port}`], ...extra })
    await d.start()
    nodes.push(d)
    return d
  }

  beforeAll(async () => {
    boot = new Discovery({ keyPair: keyPair(), host: '127.0.0.1', bootstrap: false })
    await boot.start()
    nodes.push(boot)
    await Promise.all(Array.from({ length: 9 }, async () => await make(keyPair())))
    provider = await make(providerKey, { seq: 41 })
    requester = await make(keyPair())
  })

  const rawNodes: DHT[] = []
  afterAll(async () => {
    await Promise.all(nodes.map(async n => await n.stop()))
    await Promise.all(rawNodes.map(async r => await new Promise<void>(resolve => r.destroy(() => resolve()))))
  })

  it('a provider publishes a storage offer and a requester finds and verifies it within 2 s', async () => {
    const res = await provider.publish(storageOffer)
    expect(res.seq).toBe(42)
    expect(provider.seq).toBe(42)
    expect(res.stored).toBeGreaterThan(0)

    const t0 = performance.now()
    const found = await requester.findProviders('storage', { timeoutMs: 2000, limit: 1 })
    const elapsed = performance.now() - t0
    expect(elapsed).toBeLessThan(2000)
    expect(found).toHaveLength(1)
    expect(Buffer.from(found[0]!.publicKey).equals(Buffer.from(providerKey.publicKey))).toBe(true)
    expect(found[0]!.seq).toBe(42)
    expect(found[0]!.offer.prices.storage).toBe(7n)
    expect(found[0]!.offer.addrs).toEqual(storageOffer.addrs)
    // nobody announced proxy
    expect(await requester.findProviders('proxy', { timeoutMs: 1500 })).toEqual([])
  })

  it('storing nodes and readers refuse a forged item and a lower seq; the genuine offer stays', async () => {
    // storing nodes drop a put whose signature fails without answering: short timeout keeps this fast
    const raw = new DHT({ bootstrap: [`127.0.0.1:${boot.address().port}`], host: false, verify: verifySignature, timeout: 300 })
    // kept alive until afterAll: a destroyed node left in routing tables slows later lookups by a timeout
    rawNodes.push(raw)
    await new Promise<void>(resolve => raw.listen(0, '127.0.0.1', () => resolve()))
    await new Promise<void>(resolve => { if (raw.ready) resolve(); else raw.once('ready', () => resolve()) })
    {
      const salt = Buffer.from('btt-offer')
      const exp = Math.floor(Date.now() / 1000) + 600
      const put = async (item: ReturnType<typeof signOffer>): Promise<number> => await new Promise(resolve => {
        raw.put({ k: Buffer.from(item.k), v: Buffer.from(item.v), seq: item.seq, salt, sig: Buffer.from(item.sig) }, (_err, _t, n) => resolve(n ?? 0))
      })
      // forged: another key signs an offer with a higher seq, published under the provider's key
      const forged = signOffer({ ...storageOffer, prices: { storage: 1n }, exp, v: 1 }, { seq: 1000, keyPair: keyPair() })
      await put({ ...forged, k: Buffer.from(providerKey.publicKey) })
      // modified: the provider's genuine signature over different bytes
      const genuine = signOffer({ ...storageOffer, exp, v: 1 }, { seq: 500, keyPair: providerKey })
      const v = Buffer.from(genuine.v)
      v[v.indexOf('i6881e') + 1] = 0x37
      await put({ ...genuine, v })
      // lower seq, correctly signed by the provider
      await put(signOffer({ ...storageOffer, prices: { storage: 2n }, exp, v: 1 }, { seq: 40, keyPair: providerKey }))

      const got = await requester.getOffer(providerKey.publicKey)
      expect(got?.seq).toBe(42)
      expect(got?.offer.prices.storage).toBe(7n)
      expect(got?.offer.bt_port).toBe(6881)
    }
  })

  it('refresh re-puts before expiry with seq + 1', async () => {
    const kp = keyPair()
    const seqs: number[] = []
    const p = await make(kp, { seq: 7, refreshIntervalMs: 300, ttlSeconds: 3, onSeq: s => seqs.push(s) })
    await p.publish({ ...storageOffer, services: ['proxy'], prices: { proxy: 3n } })
    expect(p.seq).toBe(8)
    await new Promise(resolve => setTimeout(resolve, 1100))
    expect(p.seq).toBeGreaterThanOrEqual(10)
    expect(seqs.slice(0, 3)).toEqual([8, 9, 10])
    const got = await requester.getOffer(kp.publicKey)
    expect(got).not.toBeNull()
    expect(got!.seq).toBeGreaterThanOrEqual(10)
    // still live past the first offer's 3 s lifetime because refresh moved exp forward
    await new Promise(resolve => setTimeout(resolve, 2500))
    const later = await requester.getOffer(kp.publicKey)
    expect(later!.seq).toBeGreaterThan(got!.seq)
    // stopping the node would leave a dead entry in routing tables (a timeout per later query)
    await p.unpublish()
    const last = p.seq
    await new Promise(resolve => setTimeout(resolve, 700))
    expect(p.seq).toBe(last)
  })

  it('an offer with a lower seq than one already seen is rejected by the reader', async () => {
    const kp = keyPair()
    const p = await make(kp, { seq: 20 })
    await p.publish(storageOffer)
    expect((await requester.getOffer(kp.publicKey))?.seq).toBe(21)
    // the provider restarts having lost its seq: storing nodes refuse the lower seq (BEP 44 error 302)
    const restarted = await make(kp, { seq: 2 })
    await restarted.publish({ ...storageOffer, prices: { storage: 1n } })
    const got = await requester.getOffer(kp.publicKey)
    expect(got?.seq).toBe(21)
    expect(got?.offer.prices.storage).toBe(7n)
  })

  it('an expired offer is rejected by readers', async () => {
    const kp = keyPair()
    const p = await make(kp, { ttlSeconds: 2, refreshIntervalMs: 3_600_000 })
    const { seq } = await p.publish(storageOffer)
    expect((await requester.getOffer(kp.publicKey))?.seq).toBe(seq)
    await new Promise(resolve => setTimeout(resolve, 2100))
    await expect(requester.getOffer(kp.publicKey)).rejects.toMatchObject({ code: 'OFFER_EXPIRED' })
    // and findProviders drops it
    const found = await requester.findProviders('storage', { timeoutMs: 1500 })
    expect(found.map(f => Buffer.from(f.publicKey).toString('hex'))).not.toContain(Buffer.from(kp.publicKey).toString('hex'))
  })
})
