import sodium from 'sodium-native'
import { describe, expect, it } from 'vitest'
import { encode, type BDict, type BValue } from './bencode.js'
import { InvalidOfferError } from './errors.js'
import { decodeOffer, encodeOffer, mutableTarget, signatureData, signOffer, verifyItem, type KeyPair, type Offer } from './offers.js'

export function keyPair (): KeyPair {
  const publicKey = Buffer.alloc(32)
  const secretKey = Buffer.alloc(64)
  sodium.crypto_sign_keypair(publicKey, secretKey)
  return { publicKey, secretKey }
}

const NOW = 1_800_000_000_000
const base = (): Offer => ({
  services: ['storage'],
  prices: { storage: 1000000000000000n },
  addrs: ['/ip4/127.0.0.1/tcp/4001'],
  ledger: 'ab'.repeat(32),
  exp: NOW / 1000 + 3600,
  v: 1
})

function codeOf (fn: () => unknown): string | undefined {
  try { fn() } catch (err) { if (err instanceof InvalidOfferError) return err.code; throw err }
  return undefined
}

/** Bencode a raw dict built from the good offer with one field replaced. */
function raw (patch: Record<string, BValue | undefined>): Buffer {
  const b = (s: string): Buffer => Buffer.from(s)
  const d: BDict = new Map<string, BValue>([
    ['addrs', [b('/ip4/127.0.0.1/tcp/4001')]],
    ['exp', BigInt(NOW / 1000 + 3600)],
    ['ledger', b('ab'.repeat(32))],
    ['prices', new Map([['storage', b('1000')]])],
    ['services', [b('storage')]],
    ['v', 1n]
  ])
  for (const [k, v] of Object.entries(patch)) { if (v === undefined) d.delete(k); else d.set(k, v) }
  return encode(d)
}
const s = (x: string): Buffer => Buffer.from(x)

describe('decodeOffer', () => {
  it('round-trips a valid offer', () => {
    const o = { ...base(), services: ['storage', 'proxy'] as Offer['services'], prices: { storage: 5n, proxy: (1n << 128n) - 1n }, bt_port: 6881 }
    expect(decodeOffer(encodeOffer(o), { now: NOW })).toEqual(o)
  })

  const cases: Array<[string, Buffer, string]> = [
    ['trailing bytes', Buffer.concat([raw({}), s('x')]), 'OFFER_MALFORMED'],
    ['leading-zero integer', Buffer.from(raw({}).toString('latin1').replace('i1e', 'i01e'), 'latin1'), 'OFFER_MALFORMED'],
    ['unsorted keys', s('d1:vi1e5:addrsle'), 'OFFER_MALFORMED'],
    ['duplicate keys', s('d1:vi1e1:vi1ee'), 'OFFER_MALFORMED'],
    ['not a dict', s('li1ee'), 'OFFER_NOT_DICT'],
    ['unknown field', raw({ extra: 1n }), 'OFFER_UNKNOWN_FIELD'],
    ['__proto__ field', raw(Object.fromEntries([['__proto__', 1n]])), 'OFFER_UNKNOWN_FIELD'],
    ['missing ledger', raw({ ledger: undefined }), 'OFFER_MISSING_FIELD'],
    ['version 2', raw({ v: 2n }), 'OFFER_BAD_VERSION'],
    ['services not a list', raw({ services: s('storage') }), 'OFFER_BAD_SERVICES'],
    ['empty services', raw({ services: [] }), 'OFFER_BAD_SERVICES'],
    ['4 services', raw({ services: [s('storage'), s('proxy'), s('seeding'), s('storage')] }), 'OFFER_TOO_MANY_SERVICES'],
    ['unknown service', raw({ services: [s('mining')] }), 'OFFER_UNKNOWN_SERVICE'],
    ['duplicate service', raw({ services: [s('storage'), s('storage')] }), 'OFFER_DUPLICATE_SERVICE'],
    ['price for unlisted service', raw({ prices: new Map([['storage', s('1')], ['proxy', s('1')]]) }), 'OFFER_BAD_PRICES'],
    ['missing price', raw({ prices: new Map() }), 'OFFER_BAD_PRICES'],
    ['price as integer', raw({ prices: new Map([['storage', 5n]]) }), 'OFFER_BAD_PRICE'],
    ['price with leading zero', raw({ prices: new Map([['storage', s('05')]]) }), 'OFFER_BAD_PRICE'],
    ['negative price', raw({ prices: new Map([['storage', s('-5')]]) }), 'OFFER_BAD_PRICE'],
    ['decimal point price', raw({ prices: new Map([['storage', s('1.5')]]) }), 'OFFER_BAD_PRICE'],
    ['price = 2^128', raw({ prices: new Map([['storage', s((1n << 128n).toString())]]) }), 'OFFER_BAD_PRICE'],
    ['9 addrs', raw({ addrs: Array.from({ length: 9 }, (_, i) => s(`/ip4/10.0.0.${i}/tcp/1`)) }), 'OFFER_TOO_MANY_ADDRS'],
    ['empty addrs', raw({ addrs: [] }), 'OFFER_BAD_ADDRS'],
    ['addr of 257 chars', raw({ addrs: [s('/' + 'a'.repeat(256))] }), 'OFFER_BAD_ADDR'],
    ['addr not a multiaddr', raw({ addrs: [s('127.0.0.1:4001')] }), 'OFFER_BAD_ADDR'],
    ['addr with space', raw({ addrs: [s('/ip4/1.2.3.4 /tcp/1')] }), 'OFFER_BAD_ADDR'],
    ['bt_port 0', raw({ bt_port: 0n }), 'OFFER_BAD_PORT'],
    ['bt_port 65536', raw({ bt_port: 65536n }), 'OFFER_BAD_PORT'],
    ['bt_port string', raw({ bt_port: s('6881') }), 'OFFER_BAD_PORT'],
    ['ledger 62 hex', raw({ ledger: s('ab'.repeat(31)) }), 'OFFER_BAD_LEDGER'],
    ['ledger uppercase hex', raw({ ledger: s('AB'.repeat(32)) }), 'OFFER_BAD_LEDGER'],
    ['exp negative', raw({ exp: -1n }), 'OFFER_BAD_EXPIRY'],
    ['exp past 2^32', raw({ exp: 1n << 32n }), 'OFFER_BAD_EXPIRY'],
    ['expired', raw({ exp: BigInt(NOW / 1000) }), 'OFFER_EXPIRED'],
    ['too large', raw({ addrs: Array.from({ length: 8 }, () => s('/' + 'a'.repeat(200))) }), 'OFFER_TOO_LARGE']
  ]
  it.each(cases)('rejects %s', (_name, bytes, code) => {
    expect(codeOf(() => decodeOffer(bytes, { now: NOW }))).toBe(code)
  })
})

describe('encodeOffer', () => {
  it('refuses an offer whose bencoded value exceeds 1000 bytes', () => {
    const o = { ...base(), addrs: Array.from({ length: 5 }, (_, i) => `/dns4/${'x'.repeat(200)}/tcp/${i}`) }
    expect(codeOf(() => encodeOffer(o))).toBe('OFFER_TOO_LARGE')
  })
  it('validates before encoding', () => {
    expect(codeOf(() => encodeOffer({ ...base(), prices: { storage: -1n } }))).toBe('OFFER_BAD_PRICE')
    expect(codeOf(() => encodeOffer({ ...base(), bt_port: 70000 }))).toBe('OFFER_BAD_PORT')
  })
})

describe('BEP 44 signing', () => {
  const kp = keyPair()
  it('signs exactly salt ‖ seq ‖ v as BEP 44 specifies', () => {
    const v = Buffer.from('12:Hello World!')
    expect(signatureData(1, v.subarray(3), Buffer.from('foobar')).toString()).toBe('4:salt6:foobar3:seqi1e1:v12:Hello World!')
    expect(signatureData(1, v.subarray(3)).toString()).toBe('3:seqi1e1:v12:Hello World!')
    // BEP 44 test vector target for the given key with salt "foobar"
    const pk = Buffer.from('77ff84905a91936367c01360803104f92432fcd904a43511876df5cdf3e7e548', 'hex')
    expect(mutableTarget(pk, Buffer.from('foobar')).toString('hex')).toBe('411eba73b6f087ca51a3795d9c8c938d365e32c1')
    expect(mutableTarget(pk, new Uint8Array(0)).toString('hex')).toBe('4a533d47ec9c7d95b1ad75f576cffc641853b750')
  })

  it('verifies a genuine item', () => {
    const item = signOffer(base(), { seq: 3, keyPair: kp })
    const r = verifyItem(item, { target: mutableTarget(kp.publicKey), now: NOW, minSeq: 3 })
    expect(r.seq).toBe(3)
    expect(r.offer).toEqual(base())
  })

  it('rejects a forged item (signed by another key for this target)', () => {
    const other = keyPair()
    const forged = { ...signOffer(base(), { seq: 9, keyPair: other }), k: Buffer.from(kp.publicKey) }
    expect(codeOf(() => verifyItem(forged, { target: mutableTarget(kp.publicKey), now: NOW }))).toBe('OFFER_BAD_SIGNATURE')
    const own = signOffer(base(), { seq: 9, keyPair: other })
    expect(codeOf(() => verifyItem(own, { target: mutableTarget(kp.publicKey), now: NOW }))).toBe('OFFER_TARGET_MISMATCH')
  })

  it('rejects a modified value with the signature kept', () => {
    const item = signOffer(base(), { seq: 3, keyPair: kp })
    const v = Buffer.from(item.v)
    const i = v.indexOf('1000')
    v[i] = 0x39 // price 1000… → 9000…
    expect(codeOf(() => verifyItem({ ...item, v }, { now: NOW }))).toBe('OFFER_BAD_SIGNATURE')
    expect(codeOf(() => verifyItem({ ...item, seq: 4 }, { now: NOW }))).toBe('OFFER_BAD_SIGNATURE')
  })

  it('rejects a lower seq than already seen', () => {
    const item = signOffer(base(), { seq: 3, keyPair: kp })
    expect(codeOf(() => verifyItem(item, { now: NOW, minSeq: 4 }))).toBe('OFFER_SEQ_STALE')
  })

  it('rejects an expired offer', () => {
    const item = signOffer(base(), { seq: 3, keyPair: kp })
    expect(codeOf(() => verifyItem(item, { now: NOW + 3600_000 }))).toBe('OFFER_EXPIRED')
    expect(codeOf(() => verifyItem(item, { now: NOW + 3599_000 }))).toBeUndefined()
  })
})
