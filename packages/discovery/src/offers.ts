import { createHash } from 'node:crypto'
import sodium from 'sodium-native'
import { decode, encode, type BDict, type BValue } from './bencode.js'
import {
  LEDGER_ID_HEX_CHARS, MAX_ADDR_CHARS, MAX_ADDRS, MAX_EXP, MAX_PRICE, MAX_SALT_BYTES, MAX_SERVICES,
  MAX_VALUE_BYTES, OFFER_SALT, OFFER_VERSION, SERVICE_INFOHASH_PREFIX, SERVICES
} from './constants.js'
import { InvalidOfferError } from './errors.js'

export type ServiceName = typeof SERVICES[number]

/** A service offer as the application sees it. On the wire prices are decimal strings. */
export interface Offer {
  services: ServiceName[]
  /** Price per service in base units (1 BTT = 10^18). One entry per listed service, no others. */
  prices: Partial<Record<ServiceName, bigint>>
  /** libp2p multiaddrs, e.g. `/ip4/1.2.3.4/tcp/4001/p2p/12D3…`. */
  addrs: string[]
  bt_port?: number
  /** Settlement ledger id, 64 lowercase hex chars. */
  ledger: string
  /** Unix seconds after which readers reject the offer. */
  exp: number
  v: 1
}

/** An ed25519 key pair in libsodium's layout: `secretKey` is seed ‖ publicKey. */
export interface KeyPair {
  publicKey: Uint8Array
  secretKey: Uint8Array
}

/** A BEP 44 mutable item as put on / read from the DHT. `v` is the bencoded offer dict. */
export interface SignedItem {
  k: Uint8Array
  seq: number
  salt?: Uint8Array
  v: Uint8Array
  sig: Uint8Array
}

export interface VerifiedOffer {
  publicKey: Uint8Array
  seq: number
  offer: Offer
}

const fail = (code: ConstructorParameters<typeof InvalidOfferError>[0], message: string): never => {
  throw new InvalidOfferError(code, message)
}

export function isServiceName (s: unknown): s is ServiceName {
  return typeof s === 'string' && (SERVICES as readonly string[]).includes(s)
}

function sha1 (...parts: Uint8Array[]): Buffer {
  const h = createHash('sha1')
  for (const p of parts) h.update(p)
  return h.digest()
}

/** The well-known infohash providers of `service` announce on: SHA-1("btt-service:" + name). */
export function serviceInfohash (service: ServiceName): Buffer {
  return sha1(Buffer.from(SERVICE_INFOHASH_PREFIX + service))
}

/** BEP 44 mutable target: SHA-1(pk ‖ salt). */
export function mutableTarget (publicKey: Uint8Array, salt: Uint8Array | undefined = Buffer.from(OFFER_SALT)): Buffer {
  return salt !== undefined && salt.length > 0 ? sha1(publicKey, salt) : sha1(publicKey)
}

/**
 * BEP 44 signature input: `4:salt<len>:<salt>3:seqi<seq>e1:v<bencoded v>`, the salt part only when a
 * salt is set. `v` here is the bytes stored as the BEP 44 value, which bittorrent-dht bencodes as a
 * byte string, so the bencoded v is `<len>:<bytes>`.
 */
export function signatureData (seq: number, v: Uint8Array, salt?: Uint8Array): Buffer {
  const parts: Buffer[] = []
  if (salt !== undefined && salt.length > 0) parts.push(Buffer.from(`4:salt${salt.length}:`), Buffer.from(salt))
  parts.push(Buffer.from(`3:seqi${seq}e1:v${v.length}:`), Buffer.from(v))
  return Buffer.concat(parts)
}

/** Bytes of the BEP 44 `v` as bencoded on the wire (a byte string holding the offer dict). */
export function bencodedValueLength (v: Uint8Array): number {
  return `${v.length}:`.length + v.length
}

// ---------------------------------------------------------------- validation

/** Check an application-side offer; throws InvalidOfferError with the first violation's code. */
export function validateOffer (offer: Offer): void {
  if (offer === null || typeof offer !== 'object') fail('OFFER_NOT_DICT', 'offer must be an object')
  if (offer.v !== OFFER_VERSION) fail('OFFER_BAD_VERSION', `offer version must be ${OFFER_VERSION}`)
  checkServices(offer.services)
  checkPrices(offer.services, offer.prices)
  checkAddrs(offer.addrs)
  if (offer.bt_port !== undefined) checkPort(offer.bt_port)
  checkLedger(offer.ledger)
  checkExp(offer.exp)
}

function checkServices (services: unknown): asserts services is ServiceName[] {
  if (!Array.isArray(services) || services.length === 0) fail('OFFER_BAD_SERVICES', 'services must be a non-empty list')
  const list = services as unknown[]
  if (list.length > MAX_SERVICES) fail('OFFER_TOO_MANY_SERVICES', `at most ${MAX_SERVICES} services`)
  const seen = new Set<string>()
  for (const s of list) {
    if (!isServiceName(s)) fail('OFFER_UNKNOWN_SERVICE', `unknown service ${JSON.stringify(String(s)).slice(0, 40)}`)
    if (seen.has(s as string)) fail('OFFER_DUPLICATE_SERVICE', `service ${String(s)} listed twice`)
    seen.add(s as string)
  }
}

function checkPrices (services: ServiceName[], prices: unknown): void {
  if (prices === null || typeof prices !== 'object' || Array.isArray(prices)) fail('OFFER_BAD_PRICES', 'prices must be a dict')
  const p = prices as Record<string, unknown>
  const keys = Object.keys(p)
  for (const k of keys) {
    if (!services.includes(k as ServiceName)) fail('OFFER_BAD_PRICES', `price for unlisted service ${k.slice(0, 40)}`)
  }
  for (const s of services) {
    if (!Object.hasOwn(p, s)) fail('OFFER_BAD_PRICES', `missing price for ${s}`)
    const v = p[s]
    if (typeof v !== 'bigint' || v < 0n || v > MAX_PRICE) fail('OFFER_BAD_PRICE', `price for ${s} must be an integer in [0, 2^128)`)
  }
}

function checkAddrs (addrs: unknown): void {
  if (!Array.isArray(addrs) || addrs.length === 0) fail('OFFER_BAD_ADDRS', 'addrs must be a non-empty list')
  const list = addrs as unknown[]
  if (list.length > MAX_ADDRS) fail('OFFER_TOO_MANY_ADDRS', `at most ${MAX_ADDRS} addrs`)
  for (const a of list) {
    // a multiaddr string: starts with '/', printable ASCII, bounded
    if (typeof a !== 'string' || a.length === 0 || a.length > MAX_ADDR_CHARS || !/^\/[\x21-\x7e]*$/.test(a)) {
      fail('OFFER_BAD_ADDR', `addr must be a multiaddr string of at most ${MAX_ADDR_CHARS} printable chars`)
    }
  }
}

function checkPort (port: unknown): void {
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) fail('OFFER_BAD_PORT', 'bt_port must be 1..65535')
}

function checkLedger (ledger: unknown): void {
  if (typeof ledger !== 'string' || ledger.length !== LEDGER_ID_HEX_CHARS || !/^[0-9a-f]*$/.test(ledger)) {
    fail('OFFER_BAD_LEDGER', `ledger must be ${LEDGER_ID_HEX_CHARS} lowercase hex chars`)
  }
}

function checkExp (exp: unknown): void {
  if (typeof exp !== 'number' || !Number.isInteger(exp) || exp < 1 || exp >= MAX_EXP) fail('OFFER_BAD_EXPIRY', 'exp must be unix seconds in [1, 2^32)')
}

// ---------------------------------------------------------------- encode / decode

const FIELDS = new Set(['addrs', 'bt_port', 'exp', 'ledger', 'prices', 'services', 'v'])
const REQUIRED = ['addrs', 'exp', 'ledger', 'prices', 'services', 'v']

/** Validate and bencode an offer (the BEP 44 value). Refuses values over the 1000-byte limit. */
export function encodeOffer (offer: Offer): Buffer {
  validateOffer(offer)
  const prices: BDict = new Map()
  for (const s of offer.services) prices.set(s, Buffer.from((offer.prices[s] as bigint).toString()))
  const d: BDict = new Map<string, BValue>([
    ['addrs', offer.addrs.map(a => Buffer.from(a))],
    ['exp', BigInt(offer.exp)],
    ['ledger', Buffer.from(offer.ledger)],
    ['prices', prices],
    ['services', offer.services.map(s => Buffer.from(s))],
    ['v', BigInt(offer.v)]
  ])
  if (offer.bt_port !== undefined) d.set('bt_port', BigInt(offer.bt_port))
  const bytes = encode(d)
  if (bencodedValueLength(bytes) > MAX_VALUE_BYTES) {
    fail('OFFER_TOO_LARGE', `bencoded offer is ${bencodedValueLength(bytes)} bytes; BEP 44 allows ${MAX_VALUE_BYTES}`)
  }
  return bytes
}

export interface DecodeOptions {
  /** Current time in ms (default Date.now()); offers with exp ≤ now are rejected. */
  now?: number
}

/** Strictly decode and validate an offer value. Throws InvalidOfferError with the violation's code. */
export function decodeOffer (bytes: Uint8Array, opts: DecodeOptions = {}): Offer {
  if (bencodedValueLength(bytes) > MAX_VALUE_BYTES) fail('OFFER_TOO_LARGE', `offer value over ${MAX_VALUE_BYTES} bytes`)
  const d = decode(bytes)
  if (!(d instanceof Map)) return fail('OFFER_NOT_DICT', 'offer must be a dict')
  for (const k of d.keys()) if (!FIELDS.has(k)) fail('OFFER_UNKNOWN_FIELD', `unknown field ${JSON.stringify(k).slice(0, 40)}`)
  for (const k of REQUIRED) if (!d.has(k)) fail('OFFER_MISSING_FIELD', `missing field ${k}`)

  const v = d.get('v')
  if (v !== BigInt(OFFER_VERSION)) fail('OFFER_BAD_VERSION', `offer version must be ${OFFER_VERSION}`)

  const services = strList(d.get('services'), 'OFFER_BAD_SERVICES', 'services')
  checkServices(services)

  const pd = d.get('prices')
  if (!(pd instanceof Map)) return fail('OFFER_BAD_PRICES', 'prices must be a dict')
  const prices: Record<string, bigint> = Object.create(null) as Record<string, bigint>
  for (const [k, pv] of pd) {
    if (!Buffer.isBuffer(pv)) return fail('OFFER_BAD_PRICE', `price for ${k.slice(0, 40)} must be a decimal string`)
    const text = pv.toString('latin1')
    if (!/^(0|[1-9][0-9]{0,38})$/.test(text)) fail('OFFER_BAD_PRICE', `price for ${k.slice(0, 40)} is not a canonical decimal`)
    prices[k] = BigInt(text)
  }
  checkPrices(services, prices)

  const addrs = strList(d.get('addrs'), 'OFFER_BAD_ADDRS', 'addrs')
  checkAddrs(addrs)

  const offer: Offer = {
    services,
    prices: { ...prices },
    addrs,
    ledger: str(d.get('ledger'), 'OFFER_BAD_LEDGER', 'ledger'),
    exp: int(d.get('exp'), 'OFFER_BAD_EXPIRY', 'exp'),
    v: OFFER_VERSION
  }
  checkLedger(offer.ledger)
  checkExp(offer.exp)
  if (d.has('bt_port')) {
    offer.bt_port = int(d.get('bt_port'), 'OFFER_BAD_PORT', 'bt_port')
    checkPort(offer.bt_port)
  }
  const now = opts.now ?? Date.now()
  if (offer.exp * 1000 <= now) fail('OFFER_EXPIRED', `offer expired at ${offer.exp}`)
  return offer
}

type Code = ConstructorParameters<typeof InvalidOfferError>[0]

function str (v: BValue | undefined, code: Code, name: string): string {
  if (!Buffer.isBuffer(v)) return fail(code, `${name} must be a string`)
  const s = v.toString('utf8')
  if (!Buffer.from(s, 'utf8').equals(v)) fail(code, `${name} must be valid UTF-8`)
  return s
}

function strList (v: BValue | undefined, code: Code, name: string): any[] {
  if (!Array.isArray(v)) return fail(code, `${name} must be a list`)
  return v.map(x => str(x, code, name))
}

function int (v: BValue | undefined, code: Code, name: string): number {
  if (typeof v !== 'bigint' || v < 0n || v > BigInt(Number.MAX_SAFE_INTEGER)) return fail(code, `${name} must be a non-negative integer`)
  return Number(v)
}

// ---------------------------------------------------------------- signing

export interface SignOptions {
  seq: number
  keyPair: KeyPair
  /** Default "btt-offer". */
  salt?: Uint8Array
}

/** Encode an offer and sign it as a BEP 44 mutable item. */
export function signOffer (offer: Offer, opts: SignOptions): SignedItem {
  checkSeq(opts.seq)
  const salt = opts.salt ?? Buffer.from(OFFER_SALT)
  checkSalt(salt)
  const v = encodeOffer(offer)
  const sig = Buffer.alloc(sodium.crypto_sign_BYTES)
  if (opts.keyPair.secretKey.length !== sodium.crypto_sign_SECRETKEYBYTES) fail('OFFER_BAD_KEY', 'secret key must be 64 bytes')
  sodium.crypto_sign_detached(sig, signatureData(opts.seq, v, salt), Buffer.from(opts.keyPair.secretKey))
  return { k: Buffer.from(opts.keyPair.publicKey), seq: opts.seq, salt, v, sig }
}

/** ed25519 verify; false for wrong sizes rather than throwing (the DHT calls it on peer input). */
export function verifySignature (sig: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean {
  if (sig.length !== sodium.crypto_sign_BYTES || publicKey.length !== sodium.crypto_sign_PUBLICKEYBYTES) return false
  return sodium.crypto_sign_verify_detached(Buffer.from(sig), Buffer.from(message), Buffer.from(publicKey))
}

export interface VerifyOptions extends DecodeOptions {
  /** The target the item was fetched under; must equal SHA-1(k ‖ salt). */
  target?: Uint8Array
  /** Expected public key. */
  publicKey?: Uint8Array
  /** Highest seq already seen for this target: an item with a lower seq is stale. */
  minSeq?: number
}

/** Verify a BEP 44 item end to end: key, seq, salt, target, signature, then the strict offer decode. */
export function verifyItem (item: SignedItem, opts: VerifyOptions = {}): VerifiedOffer {
  if (item.k?.length !== sodium.crypto_sign_PUBLICKEYBYTES) fail('OFFER_BAD_KEY', 'public key must be 32 bytes')
  if (opts.publicKey !== undefined && !Buffer.from(opts.publicKey).equals(Buffer.from(item.k))) fail('OFFER_BAD_KEY', 'item signed by another key')
  checkSeq(item.seq)
  if (item.salt !== undefined) checkSalt(item.salt)
  if (opts.target !== undefined && !mutableTarget(item.k, item.salt ?? new Uint8Array(0)).equals(Buffer.from(opts.target))) {
    fail('OFFER_TARGET_MISMATCH', 'item does not belong to the requested target')
  }
  if (!verifySignature(item.sig, signatureData(item.seq, item.v, item.salt), item.k)) fail('OFFER_BAD_SIGNATURE', 'BEP 44 signature does not verify')
  if (opts.minSeq !== undefined && item.seq < opts.minSeq) fail('OFFER_SEQ_STALE', `seq ${item.seq} is below ${opts.minSeq} already seen`)
  const offer = decodeOffer(item.v, opts)
  return { publicKey: Buffer.from(item.k), seq: item.seq, offer }
}

function checkSeq (seq: unknown): void {
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) fail('OFFER_BAD_SEQ', 'seq must be a non-negative safe integer')
}

function checkSalt (salt: Uint8Array): void {
  if (salt.length > MAX_SALT_BYTES) fail('OFFER_BAD_SALT', `salt over ${MAX_SALT_BYTES} bytes`)
}
