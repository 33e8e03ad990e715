import { randomBytes } from 'node:crypto'
import { readdir, writeFile, open } from 'node:fs/promises'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { toHex } from '@btt/channel'
import { afterEach, describe, expect, it } from 'vitest'
import { retrievalCost } from './client.js'
import { CHUNK_BYTES, TreeBuilder } from './merkle.js'
import { FRAME_DATA, FRAME_JSON, FRAME_PROOF, MAX_JSON_FRAME, chunkAmount, periodAmount, type Framed } from './protocol.js'
import { BTT, expectMessage, readMessage, storagePeers, type Peers, type TestHost } from './test-support/peers.js'

const KIB = 1024

let current: Peers[] = []
afterEach(async () => {
  for (const p of current) await p.close()
  current = []
})

async function peers (opts: Parameters<typeof storagePeers>[0] = {}): Promise<Peers> {
  const p = await storagePeers(opts)
  current.push(p)
  return p
}

async function * once (bytes: Uint8Array): AsyncIterable<Uint8Array> {
  yield bytes
}

function contract (p: Peers, id: string) {
  const c = p.provider.provider.contracts().find(c => c.id === id)
  if (c === undefined) throw new Error(`no contract ${id}`)
  return c
}

/** The highest voucher the provider's meter holds on a channel. */
function highest (p: Peers, channel: string): bigint {
  return p.provider.wallet.payments.meter.channel(channel).highest
}

async function files (dir: string): Promise<string[]> {
  return (await readdir(dir)).sort()
}

/** A put through the real client: a 300 KiB file for `duration` seconds. */
async function clientPut (p: Peers, opts: { bytes?: number, duration?: number } = {}) {
  const plain = randomBytes(opts.bytes ?? 300 * KIB)
  const f = await p.client.client.put({ source: once(plain), name: 'file.bin', size: plain.byteLength, addrs: [p.provider.addr], duration: opts.duration ?? 3 * p.provider.config.period, maxPrice: p.provider.config.price })
  return { f, plain }
}

/** A channel from `host` (default: the client) to the provider, covering `periods` periods of a `size`-byte contract. */
async function openChannel (p: Peers, opts: { size: number, periods: number, host?: TestHost, deposit?: bigint, expiresAt?: number, payee?: string }) {
  const c = p.provider.config
  const perPeriod = periodAmount(c.price, opts.size, c.period)
  const deposit = opts.deposit ?? perPeriod * BigInt(opts.periods) + retrievalCost(c.retrieval, opts.size) * 2n
  const expiresAt = opts.expiresAt ?? p.clock.now() + (opts.periods + 2) * c.period * 1000 + c.channelMarginMs + 3600_000
  const ch = await (opts.host ?? p.client).wallet.payments.openChannel(opts.payee ?? p.provider.wallet.account, deposit, expiresAt)
  return { channel: ch.id, perPeriod, deposit }
}

function putMessage (p: Peers, size: number, channel: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  const c = p.provider.config
  return { t: 'put', size, duration: 3 * c.period, period: c.period, price: c.price, retrieval: c.retrieval, allowed_misses: c.allowedMisses, channel, ...over }
}

function rootOf (bytes: Uint8Array): string {
  const b = new TreeBuilder(bytes.byteLength)
  b.push(bytes)
  return toHex(b.finish().root)
}

/** Upload `bytes` by hand on a new stream from `host`; returns the stored contract. */
async function rawPut (p: Peers, bytes: Uint8Array, channel: string, host: TestHost = p.client) {
  const io = await host.dial()
  try {
    await io.sendJson(putMessage(p, bytes.byteLength, channel))
    await expectMessage(io, 'ready')
    for (let off = 0; off < bytes.byteLength; off += 256 * KIB) await io.send(FRAME_DATA, bytes.subarray(off, off + 256 * KIB))
    await io.sendJson({ t: 'commit', root: rootOf(bytes) })
    return (await expectMessage(io, 'stored')).contract
  } finally {
    await io.stream.close().catch(() => {})
  }
}

/** A contract stored by hand, with its channel (3 periods). */
async function rawContract (p: Peers, size = 64 * KIB, host: TestHost = p.client) {
  const ch = await openChannel(p, { size, periods: 3, host })
  const bytes = randomBytes(size)
  const c = await rawPut(p, bytes, ch.channel, host)
  return { ...ch, id: c.id, contract: c, bytes }
}

/** Challenge a contract on a new stream and read the proof (not verified: the client tests do that). */
async function challenged (p: Peers, id: string, host: TestHost = p.client): Promise<Framed> {
  const io = await host.dial()
  await io.sendJson({ t: 'challenge', contract: id, nonce: randomBytes(32).toString('hex') })
  await expectMessage(io, 'proof')
  const f = await io.read()
  expect(f?.type).toBe(FRAME_PROOF)
  return io
}

/** Challenge, then pay `period` with `voucher`; the provider's answer. */
async function pay (p: Peers, id: string, period: number, voucher: Uint8Array, host: TestHost = p.client) {
  const io = await challenged(p, id, host)
  try {
    await io.sendJson({ t: 'pay', contract: id, period, voucher: Buffer.from(voucher).toString('hex') })
    return await readMessage(io)
  } finally {
    await io.stream.close().catch(() => {})
  }
}

/** Send one request on a new stream and read the single answer. */
async function ask (p: Peers, msg: Record<string, unknown>, host: TestHost = p.client) {
  const io = await host.dial()
  try {
    await io.sendJson(msg)
    return await readMessage(io)
  } finally {
    await io.stream.close().catch(() => {})
  }
}

function codeOf (m: { t: string, code?: string }): string {
  return m.t === 'error' ? (m.code as string) : `not an error: ${m.t}`
}

describe('StorageProvider and StorageClient, in process', () => {
  it('a full cycle: put, a proof before any period is due pays nothing, one proof per due period pays exactly one period, retrieval pays per chunk', async () => {
    const p = await peers()
    const { f, plain } = await clientPut(p)
    const period = p.provider.config.period
    const amount = periodAmount(p.provider.config.price, f.size, period)
    expect(f.periods).toBe(3)
    expect(contract(p, f.id)).toMatchObject({ status: 'active', paid_periods: 0, earned: 0n, root: f.root, size: f.size, channel: f.channel })
    expect(await files(join(p.provider.dir, 'blobs'))).toEqual([f.root, `${f.root}.tree`])

    // no period has ended: the proof is checked, nothing is paid
    expect(await p.client.client.prove(f.id)).toEqual({ ok: true })
    expect(contract(p, f.id)).toMatchObject({ paid_periods: 0, earned: 0n, proofs: 1 })
    expect(highest(p, f.channel)).toBe(0n)

    p.clock.advance(period)
    expect(await p.client.client.prove(f.id)).toEqual({ ok: true, paidPeriod: 0, amount })
    expect(contract(p, f.id)).toMatchObject({ paid_periods: 1, earned: amount })
    expect(highest(p, f.channel)).toBe(amount)
    expect(p.client.wallet.payments.outgoing(f.channel)?.spent).toBe(amount)

    // again within the same period: proven, not paid
    expect(await p.client.client.prove(f.id)).toEqual({ ok: true })
    expect(contract(p, f.id)).toMatchObject({ paid_periods: 1, earned: amount })
    expect(highest(p, f.channel)).toBe(amount)

    // a tick long after: each tick pays at most one period
    p.clock.advance(5 * period)
    await p.client.client.tick()
    expect(contract(p, f.id).paid_periods).toBe(2)
    await p.client.client.tick()
    await p.client.client.tick()
    expect(contract(p, f.id)).toMatchObject({ paid_periods: 3, earned: 3n * amount })
    expect(p.client.client.get(f.id)).toMatchObject({ status: 'complete', paidPeriods: 3, spent: 3n * amount })
    expect(highest(p, f.channel)).toBe(3n * amount)

    // retrieval: the plaintext back, paid chunk by chunk
    const out: Uint8Array[] = []
    const r = await p.client.client.retrieve(f.id, async b => { out.push(Buffer.from(b)) })
    expect(Buffer.concat(out).equals(plain)).toBe(true)
    const cost = retrievalCost(p.provider.config.retrieval, f.size)
    expect(r.paid).toBe(cost)
    expect(contract(p, f.id).earned).toBe(3n * amount + cost)
    expect(highest(p, f.channel)).toBe(3n * amount + cost)
  })
})

describe('period payments cannot be replayed, under- or over-paid, or misdirected', () => {
  it('the same voucher cannot pay the next period', async () => {
    const p = await peers()
    const k = await rawContract(p)
    const v1 = p.client.wallet.voucher(k.channel, k.perPeriod)
    expect(await pay(p, k.id, 0, v1)).toEqual({ t: 'paid', period: 0, paid_periods: 1 })
    expect(codeOf(await pay(p, k.id, 1, v1))).toBe('STORAGE_BAD_PAYMENT')
    // the same voucher, re-sent for the period it paid: already paid, and says how many are
    expect(await pay(p, k.id, 0, v1)).toMatchObject({ t: 'error', code: 'STORAGE_ALREADY_PAID', paid_periods: 1 })
    expect(contract(p, k.id)).toMatchObject({ paid_periods: 1, earned: k.perPeriod })
    expect(highest(p, k.channel)).toBe(k.perPeriod)
    // the next correct voucher still pays the next period
    expect(await pay(p, k.id, 1, p.client.wallet.voucher(k.channel, 2n * k.perPeriod))).toEqual({ t: 'paid', period: 1, paid_periods: 2 })
    expect(contract(p, k.id)).toMatchObject({ paid_periods: 2, earned: 2n * k.perPeriod })
  })

  it('a voucher for too little or too much is refused and credits nothing', async () => {
    const p = await peers()
    const k = await rawContract(p)
    for (const amount of [k.perPeriod - 1n, k.perPeriod + 1n, 2n * k.perPeriod, 1n]) {
      expect(codeOf(await pay(p, k.id, 0, p.client.wallet.voucher(k.channel, amount)))).toBe('STORAGE_BAD_PAYMENT')
    }
    expect(contract(p, k.id)).toMatchObject({ paid_periods: 0, earned: 0n })
    expect(highest(p, k.channel)).toBe(0n)
    expect(await pay(p, k.id, 0, p.client.wallet.voucher(k.channel, k.perPeriod))).toEqual({ t: 'paid', period: 0, paid_periods: 1 })
  })

  it('a voucher on another channel (even one paying this provider) is refused', async () => {
    const p = await peers()
    const k = await rawContract(p)
    // the other channel is known to the provider: it pays for a second contract of the same size
    const other = await rawContract(p)
    expect(other.perPeriod).toBe(k.perPeriod)
    expect(codeOf(await pay(p, k.id, 0, p.client.wallet.voucher(other.channel, k.perPeriod)))).toBe('STORAGE_BAD_PAYMENT')
    expect(contract(p, k.id)).toMatchObject({ paid_periods: 0, earned: 0n })
    expect(contract(p, other.id)).toMatchObject({ paid_periods: 0, earned: 0n })
    expect(highest(p, other.channel)).toBe(0n)
    expect(highest(p, k.channel)).toBe(0n)
  })

  it('a voucher with a bad signature is refused, and the correct one is taken afterwards', async () => {
    const p = await peers()
    const k = await rawContract(p)
    const forged = Buffer.from(p.client.wallet.voucher(k.channel, k.perPeriod))
    forged[forged.length - 1] = (forged[forged.length - 1] as number) ^ 1
    expect(codeOf(await pay(p, k.id, 0, forged))).toBe('CHANNEL_VOUCHER_BAD_SIGNATURE')
    // signed by someone else (a stranger's wallet signing for the client's channel)
    const stranger = await p.addHost(BTT)
    expect(codeOf(await pay(p, k.id, 0, stranger.wallet.voucher(k.channel, k.perPeriod)))).toBe('CHANNEL_VOUCHER_BAD_SIGNATURE')
    expect(contract(p, k.id)).toMatchObject({ paid_periods: 0, earned: 0n })
    expect(highest(p, k.channel)).toBe(0n)
    expect(await pay(p, k.id, 0, p.client.wallet.voucher(k.channel, k.perPeriod))).toEqual({ t: 'paid', period: 0, paid_periods: 1 })
  })

  it('only the next unpaid period can be paid, and nothing after the last', async () => {
    const p = await peers()
    const k = await rawContract(p)
    expect(codeOf(await pay(p, k.id, 1, p.client.wallet.voucher(k.channel, k.perPeriod)))).toBe('STORAGE_BAD_PERIOD')
    expect(codeOf(await pay(p, k.id, 2 ** 40, p.client.wallet.voucher(k.channel, k.perPeriod)))).toBe('STORAGE_BAD_PERIOD')
    expect(highest(p, k.channel)).toBe(0n)
    for (let i = 0; i < 3; i++) {
      expect(await pay(p, k.id, i, p.client.wallet.voucher(k.channel, BigInt(i + 1) * k.perPeriod))).toEqual({ t: 'paid', period: i, paid_periods: i + 1 })
    }
    expect(codeOf(await pay(p, k.id, 3, p.client.wallet.voucher(k.channel, 4n * k.perPeriod)))).toBe('STORAGE_BAD_PERIOD')
    expect(contract(p, k.id)).toMatchObject({ paid_periods: 3, earned: 3n * k.perPeriod })
    expect(highest(p, k.channel)).toBe(3n * k.perPeriod)
  })

  it('a pay without a proof on the same stream, or for another contract after a proof, is refused', async () => {
    const p = await peers()
    const a = await rawContract(p)
    const b = await rawContract(p)
    const va = p.client.wallet.voucher(a.channel, a.perPeriod)
    expect(codeOf(await ask(p, { t: 'pay', contract: a.id, period: 0, voucher: Buffer.from(va).toString('hex') }))).toBe('STORAGE_PROTOCOL')
    // challenge b, pay a
    const io = await challenged(p, b.id)
    await io.sendJson({ t: 'pay', contract: a.id, period: 0, voucher: Buffer.from(va).toString('hex') })
    expect(codeOf(await readMessage(io))).toBe('STORAGE_PROTOCOL')
    await io.stream.close().catch(() => {})
    expect(contract(p, a.id).paid_periods).toBe(0)
    expect(contract(p, b.id).paid_periods).toBe(0)
    expect(highest(p, a.channel)).toBe(0n)
  })

  it('one voucher sent on two streams at once pays one period, not two (channel store commits slowly, as when busy)', async () => {
    const p = await peers()
    const k = await rawContract(p)
    const v = p.client.wallet.voucher(k.channel, k.perPeriod)
    const [s1, s2] = await Promise.all([challenged(p, k.id), challenged(p, k.id)])
    p.provider.wallet.delays.commitMs = 200
    const send = async (io: Framed) => {
      await io.sendJson({ t: 'pay', contract: k.id, period: 0, voucher: Buffer.from(v).toString('hex') })
      return await readMessage(io)
    }
    const first = send(s1)
    await new Promise(resolve => setTimeout(resolve, 50))
    const answers = await Promise.all([first, send(s2)])
    p.provider.wallet.delays.commitMs = 0
    await s1.stream.close().catch(() => {})
    await s2.stream.close().catch(() => {})
    expect(highest(p, k.channel)).toBe(k.perPeriod)
    expect(contract(p, k.id)).toMatchObject({ paid_periods: 1, earned: k.perPeriod })
    expect(answers.filter(a => a.t === 'paid')).toHaveLength(1)
  })
})

describe('crash window and restart', () => {
  it('a voucher the meter took just before a crash (intent written, period not recorded) pays that period once when re-sent', async () => {
    const p = await peers()
    const k = await rawContract(p)
    const v = p.client.wallet.voucher(k.channel, k.perPeriod)
    // what payPeriod does up to the crash: the intent row, then the voucher accepted by the meter
    const db = new DatabaseSync(p.provider.dbPath)
    db.prepare('INSERT INTO intents (channel, amount, contract, period) VALUES (?, ?, ?, ?)').run(k.channel, k.perPeriod.toString(), k.id, 0)
    db.close()
    const session = await p.provider.wallet.payments.meter.open({ peer: p.client.peerId, channelId: k.channel, price: k.perPeriod, maxUnpaidUnits: 1 })
    const debit = await session.prepare(1)
    debit.apply()
    expect((await session.accept(v)).credited).toBe(k.perPeriod)
    session.close()
    await p.provider.restart()
    expect(contract(p, k.id)).toMatchObject({ paid_periods: 0, earned: 0n })

    expect(await pay(p, k.id, 0, v)).toEqual({ t: 'paid', period: 0, paid_periods: 1 })
    expect(contract(p, k.id)).toMatchObject({ paid_periods: 1, earned: k.perPeriod })
    expect(highest(p, k.channel)).toBe(k.perPeriod)
    // neither again for the same period nor for the next one
    expect(codeOf(await pay(p, k.id, 0, v))).toBe('STORAGE_ALREADY_PAID')
    expect(codeOf(await pay(p, k.id, 1, v))).toBe('STORAGE_BAD_PAYMENT')
    expect(contract(p, k.id)).toMatchObject({ paid_periods: 1, earned: k.perPeriod })
  })

  it('a channel backs one contract only, so one voucher can never be counted for two contracts', async () => {
    const p = await peers()
    const k = await rawContract(p)
    // a second contract on the same channel is refused before any byte is uploaded
    expect(codeOf(await ask(p, putMessage(p, k.bytes.byteLength, k.channel)))).toBe('STORAGE_CHANNEL_IN_USE')
    const v = p.client.wallet.voucher(k.channel, k.perPeriod)
    expect(await pay(p, k.id, 0, v)).toEqual({ t: 'paid', period: 0, paid_periods: 1 })
    expect(p.provider.provider.contracts()).toHaveLength(1)
  })

  it('a restart keeps contracts, payments and blobs, removes partial uploads and blobs no contract holds', async () => {
    const p = await peers()
    const { f } = await clientPut(p)
    p.clock.advance(p.provider.config.period)
    expect((await p.client.client.prove(f.id)).paidPeriod).toBe(0)
    const before = contract(p, f.id)

    // left by a crash: an upload in progress, and a blob committed whose contract row was never written
    const partial = join(p.provider.dir, 'partial')
    await writeFile(join(partial, randomBytes(16).toString('hex')), randomBytes(1000))
    await writeFile(join(partial, `${randomBytes(16).toString('hex')}.tree`), randomBytes(64))
    const orphan = randomBytes(32).toString('hex')
    await writeFile(join(p.provider.dir, 'blobs', orphan), randomBytes(1000))
    await writeFile(join(p.provider.dir, 'blobs', `${orphan}.tree`), randomBytes(64))

    await p.provider.restart()
    expect(await files(partial)).toEqual([])
    expect(await files(join(p.provider.dir, 'blobs'))).toEqual([f.root, `${f.root}.tree`])
    expect(contract(p, f.id)).toEqual(before)
    expect(p.provider.provider.usedBytes()).toBe(f.size)

    // and it goes on: a proof after the restart pays the next period, not the last one again
    p.clock.advance(p.provider.config.period)
    expect(await p.client.client.prove(f.id)).toMatchObject({ ok: true, paidPeriod: 1 })
    expect(contract(p, f.id)).toMatchObject({ paid_periods: 2, earned: 2n * before.earned })
  })
})

describe('ownership', () => {
  it('another peer cannot challenge, retrieve, pay for or cancel a contract it does not hold', async () => {
    const p = await peers()
    const k = await rawContract(p)
    const stranger = await p.addHost(100n * BTT)
    const v = p.client.wallet.voucher(k.channel, k.perPeriod)
    expect(codeOf(await ask(p, { t: 'challenge', contract: k.id, nonce: randomBytes(32).toString('hex') }, stranger))).toBe('STORAGE_UNKNOWN_CONTRACT')
    expect(codeOf(await ask(p, { t: 'retrieve', contract: k.id, from: 0 }, stranger))).toBe('STORAGE_UNKNOWN_CONTRACT')
    expect(codeOf(await ask(p, { t: 'cancel', contract: k.id }, stranger))).toBe('STORAGE_UNKNOWN_CONTRACT')
    expect(codeOf(await ask(p, { t: 'pay', contract: k.id, period: 0, voucher: Buffer.from(v).toString('hex') }, stranger))).toBe('STORAGE_PROTOCOL')
    // with a proof of its own contract first, then a pay for the client's contract
    const own = await rawContract(p, 64 * KIB, stranger)
    const io = await challenged(p, own.id, stranger)
    await io.sendJson({ t: 'pay', contract: k.id, period: 0, voucher: Buffer.from(v).toString('hex') })
    expect(codeOf(await readMessage(io))).toBe('STORAGE_PROTOCOL')
    await io.stream.close().catch(() => {})

    expect(contract(p, k.id)).toMatchObject({ status: 'active', paid_periods: 0, earned: 0n, proofs: 0, owner: p.client.peerId })
    expect(highest(p, k.channel)).toBe(0n)
    expect(await files(join(p.provider.dir, 'blobs'))).toContain(k.contract.root)
    // the owner still can
    expect(await pay(p, k.id, 0, v)).toEqual({ t: 'paid', period: 0, paid_periods: 1 })
  })
})

/** Raw bytes on a new stream (no framing help), then the provider's answer. */
async function rawAsk (p: Peers, bytes: Uint8Array, closeAfter = false) {
  const io = await p.client.dial()
  try {
    io.stream.send(bytes)
    if (closeAfter) await io.stream.close()
    return await readMessage(io)
  } finally {
    await io.stream.close().catch(() => {})
  }
}

function header (length: number, type: number): Uint8Array {
  const h = Buffer.alloc(5)
  h.writeUInt32BE(length, 0)
  h[4] = type
  return h
}

/** The provider still answers a quote, with its whole quota free and nothing half-uploaded. */
async function stillServing (p: Peers): Promise<void> {
  const terms = await ask(p, { t: 'quote' })
  expect(terms).toMatchObject({ t: 'terms', free: p.provider.config.quotaBytes, account: p.provider.wallet.account })
  expect(await files(join(p.provider.dir, 'partial'))).toEqual([])
  expect(await files(join(p.provider.dir, 'blobs'))).toEqual([])
  expect(p.provider.provider.contracts()).toEqual([])
}

describe('hostile frames and puts', () => {
  it('bad frames are answered with STORAGE_PROTOCOL and the provider keeps serving', async () => {
    const p = await peers()
    // over the JSON cap (the header alone: the provider must not wait for 64 KiB)
    expect(codeOf(await rawAsk(p, header(MAX_JSON_FRAME + 2, FRAME_JSON)))).toBe('STORAGE_PROTOCOL')
    expect(codeOf(await rawAsk(p, header(0xffffffff, FRAME_DATA)))).toBe('STORAGE_PROTOCOL')
    expect(codeOf(await rawAsk(p, Buffer.concat([header(2, 9), Buffer.from([0])])))).toBe('STORAGE_PROTOCOL')
    expect(codeOf(await rawAsk(p, header(0, FRAME_JSON)))).toBe('STORAGE_PROTOCOL')
    expect(codeOf(await rawAsk(p, Buffer.concat([header(9, FRAME_JSON), Buffer.from('not json')])))).toBe('STORAGE_PROTOCOL')
    const json = (o: string) => Buffer.concat([header(Buffer.byteLength(o) + 1, FRAME_JSON), Buffer.from(o)])
    expect(codeOf(await rawAsk(p, json('{"t":"quote","extra":1}')))).toBe('STORAGE_PROTOCOL')
    expect(codeOf(await rawAsk(p, json('{"__proto__":{"t":"quote"}}')))).toBe('STORAGE_PROTOCOL')
    expect(codeOf(await rawAsk(p, json('[]')))).toBe('STORAGE_PROTOCOL')
    expect(codeOf(await rawAsk(p, json('{"t":"done"}')))).toBe('STORAGE_PROTOCOL')
    expect(codeOf(await rawAsk(p, json('{"t":"commit","root":"' + '0'.repeat(64) + '"}')))).toBe('STORAGE_PROTOCOL')
    // data where a message should be; a header cut short by the end of the stream
    expect(codeOf(await rawAsk(p, Buffer.concat([header(4, FRAME_DATA), Buffer.from('abc')])))).toBe('STORAGE_PROTOCOL')
    expect(codeOf(await rawAsk(p, header(10, FRAME_JSON).subarray(0, 3), true))).toBe('STORAGE_PROTOCOL')
    expect(codeOf(await rawAsk(p, Buffer.concat([header(10, FRAME_JSON), Buffer.from('{"t"')]), true))).toBe('STORAGE_PROTOCOL')
    await stillServing(p)
  })

  it('a put outside the terms is refused with its code before any upload', async () => {
    const p = await peers()
    const c = p.provider.config
    const size = 64 * KIB
    const { channel } = await openChannel(p, { size, periods: 3 })
    const refused = async (over: Record<string, unknown>, ch = channel) => codeOf(await ask(p, putMessage(p, (over.size as number | undefined) ?? size, ch, over)))
    expect(await refused({ size: c.maxFileBytes + 1 })).toBe('STORAGE_TOO_LARGE')
    expect(await refused({ price: c.price - 1n })).toBe('STORAGE_PRICE_TOO_LOW')
    expect(await refused({ price: '0' })).toBe('STORAGE_PRICE_TOO_LOW')
    expect(await refused({ retrieval: c.retrieval - 1n })).toBe('STORAGE_PRICE_TOO_LOW')
    expect(await refused({ period: c.period + 1 })).toBe('STORAGE_BAD_TERMS')
    expect(await refused({ period: 1 })).toBe('STORAGE_BAD_TERMS')
    expect(await refused({ allowed_misses: c.allowedMisses + 1 })).toBe('STORAGE_BAD_TERMS')
    expect(await refused({ duration: c.minDuration - 1 })).toBe('STORAGE_BAD_TERMS')
    expect(await refused({ duration: c.maxDuration + 1 })).toBe('STORAGE_BAD_TERMS')
    expect(await refused({ size: 0 })).toBe('STORAGE_PROTOCOL')
    expect(await refused({ price: '-1' })).toBe('STORAGE_PROTOCOL')
    expect(await refused({ price: 1 })).toBe('STORAGE_PROTOCOL')
    expect(await refused({}, 'AB'.repeat(32))).toBe('STORAGE_PROTOCOL')
    await stillServing(p)
  })

  it('a put over the quota is refused, counting contracts held and uploads under way', async () => {
    const p = await peers({ config: { quotaBytes: 1024 * KIB, maxFileBytes: 1024 * KIB } })
    const k = await rawContract(p, 600 * KIB)
    const { channel } = await openChannel(p, { size: 500 * KIB, periods: 3 })
    expect(codeOf(await ask(p, putMessage(p, 500 * KIB, channel)))).toBe('STORAGE_OVER_QUOTA')
    // an upload under way holds its size
    const io = await p.client.dial()
    await io.sendJson(putMessage(p, 300 * KIB, channel))
    await expectMessage(io, 'ready')
    expect((await ask(p, { t: 'quote' }) as { free: number }).free).toBe(1024 * KIB - 900 * KIB)
    const { channel: ch2 } = await openChannel(p, { size: 200 * KIB, periods: 3 })
    expect(codeOf(await ask(p, putMessage(p, 200 * KIB, ch2)))).toBe('STORAGE_OVER_QUOTA')
    io.stream.abort(new Error('gone'))
    // the aborted upload gives its bytes back
    await expect.poll(async () => ((await ask(p, { t: 'quote' })) as { free: number }).free).toBe(1024 * KIB - 600 * KIB)
    expect(contract(p, k.id).status).toBe('active')
  })

  it('two puts at once cannot both take the last of the quota (new channels, looked up at a ledger over the network)', async () => {
    const p = await peers({ config: { quotaBytes: 1024 * KIB, maxFileBytes: 1024 * KIB } })
    const a = await openChannel(p, { size: 600 * KIB, periods: 3 })
    const b = await openChannel(p, { size: 600 * KIB, periods: 3 })
    p.provider.wallet.delays.ledgerMs = 100
    const [s1, s2] = await Promise.all([p.client.dial(), p.client.dial()])
    await Promise.all([s1.sendJson(putMessage(p, 600 * KIB, a.channel)), s2.sendJson(putMessage(p, 600 * KIB, b.channel))])
    const answers = await Promise.all([readMessage(s1), readMessage(s2)])
    p.provider.wallet.delays.ledgerMs = 0
    const used = p.provider.provider.usedBytes()
    s1.stream.abort(new Error('done'))
    s2.stream.abort(new Error('done'))
    expect(used).toBeLessThanOrEqual(1024 * KIB)
    expect(answers.map(a => a.t === 'error' ? a.code : a.t).sort()).toEqual(['STORAGE_OVER_QUOTA', 'ready'])
  })

  it('a put on a channel that does not pay this provider, is unknown, is too small or expires too soon is refused', async () => {
    const p = await peers()
    const size = 64 * KIB
    const periods = 3
    const stranger = await p.addHost(100n * BTT)
    // a channel from the client to someone else
    const elsewhere = await openChannel(p, { size, periods, payee: stranger.wallet.account })
    expect(codeOf(await ask(p, putMessage(p, size, elsewhere.channel)))).toBe('CHANNEL_VOUCHER_WRONG_CHANNEL')
    // unknown at the ledger
    expect(codeOf(await ask(p, putMessage(p, size, randomBytes(32).toString('hex'))))).toMatch(/UNKNOWN|NOT_FOUND/)
    // one base unit short of the contract's periods
    const perPeriod = periodAmount(p.provider.config.price, size, p.provider.config.period)
    const short = await openChannel(p, { size, periods, deposit: perPeriod * BigInt(periods) - 1n })
    expect(codeOf(await ask(p, putMessage(p, size, short.channel)))).toBe('STORAGE_CHANNEL_SHORT')
    // expires before the last payment plus the claim margin
    const c = p.provider.config
    const soon = await openChannel(p, { size, periods, expiresAt: p.clock.now() + (periods + 1) * c.period * 1000 + c.channelMarginMs - 60_000 })
    expect(codeOf(await ask(p, putMessage(p, size, soon.channel)))).toBe('STORAGE_CHANNEL_SHORT')
    await stillServing(p)
  })

  it('a channel whose deposit covers one contract cannot back a second one too', async () => {
    const p = await peers()
    const size = 64 * KIB
    const perPeriod = periodAmount(p.provider.config.price, size, p.provider.config.period)
    const { channel } = await openChannel(p, { size, periods: 3, deposit: 3n * perPeriod })
    await rawPut(p, randomBytes(size), channel)
    expect(codeOf(await ask(p, putMessage(p, size, channel)))).toBe('STORAGE_CHANNEL_IN_USE')
  })
})

describe('uploads that break the agreement leave nothing behind', () => {
  async function upload (p: Peers, size: number, steps: (io: Framed) => Promise<void>) {
    const { channel } = await openChannel(p, { size, periods: 3 })
    const io = await p.client.dial()
    try {
      await io.sendJson(putMessage(p, size, channel))
      await expectMessage(io, 'ready')
      await steps(io)
      return codeOf(await readMessage(io))
    } finally {
      await io.stream.close().catch(() => {})
    }
  }

  it('more bytes than agreed, fewer then end of stream, a wrong root, a message mid-upload, or silence: refused, partial file removed, no contract', async () => {
    const p = await peers({ config: { idleTimeoutMs: 800 } })
    const size = 300 * KIB
    const bytes = randomBytes(size + 1)
    expect(await upload(p, size, async io => { await io.send(FRAME_DATA, bytes) })).toBe('STORAGE_SIZE_MISMATCH')
    await stillServing(p)
    expect(await upload(p, size, async io => {
      await io.send(FRAME_DATA, bytes.subarray(0, size))
      await io.send(FRAME_DATA, bytes.subarray(size))
    })).toBe('STORAGE_PROTOCOL')
    await stillServing(p)
    expect(await upload(p, size, async io => {
      await io.send(FRAME_DATA, bytes.subarray(0, 200 * KIB))
      await io.stream.close()
    })).toBe('STORAGE_UPLOAD_TRUNCATED')
    await stillServing(p)
    expect(await upload(p, size, async io => {
      await io.send(FRAME_DATA, bytes.subarray(0, size))
      await io.sendJson({ t: 'commit', root: rootOf(bytes.subarray(1, size + 1)) })
    })).toBe('STORAGE_ROOT_MISMATCH')
    await stillServing(p)
    expect(await upload(p, size, async io => {
      await io.send(FRAME_DATA, bytes.subarray(0, 1000))
      await io.sendJson({ t: 'commit', root: rootOf(bytes.subarray(0, size)) })
    })).toBe('STORAGE_PROTOCOL')
    await stillServing(p)
    expect(await upload(p, size, async io => { await io.send(FRAME_DATA, bytes.subarray(0, 1000)) })).toBe('STORAGE_UPLOAD_IDLE')
    await stillServing(p)
    expect(await upload(p, size, async io => { await io.send(FRAME_DATA, bytes.subarray(0, size)) })).toBe('STORAGE_UPLOAD_IDLE')
    await stillServing(p)
  })
})

describe('retrieval is paid chunk by chunk', () => {
  /** Read one chunk (its message and data) from a retrieval stream. */
  async function readChunk (io: Framed) {
    const head = await expectMessage(io, 'chunk')
    let got = 0
    while (got < head.length) {
      const f = await io.read()
      expect(f?.type).toBe(FRAME_DATA)
      got += (f as { payload: Uint8Array }).payload.byteLength
    }
    expect(got).toBe(head.length)
    return head
  }

  async function silentFor (io: Framed, ms: number): Promise<boolean> {
    const timeout = new Promise<'silent'>(resolve => setTimeout(() => { resolve('silent') }, ms))
    return (await Promise.race([io.read().then(() => 'frame' as const, () => 'frame' as const), timeout])) === 'silent'
  }

  it('no second chunk before the first is paid; the payment must be for that chunk, and not a replay', async () => {
    const p = await peers()
    const size = CHUNK_BYTES + 1000
    const k = await rawContract(p, size)
    const price0 = chunkAmount(p.provider.config.retrieval, CHUNK_BYTES)
    const price1 = chunkAmount(p.provider.config.retrieval, 1000)

    // unpaid: nothing more comes; 'done' ends it with nothing earned
    let io = await p.client.dial()
    await io.sendJson({ t: 'retrieve', contract: k.id, from: 0 })
    expect(await readChunk(io)).toMatchObject({ index: 0, length: CHUNK_BYTES, price: price0 })
    expect(await silentFor(io, 500)).toBe(true)
    await io.sendJson({ t: 'done' })
    expect(await io.read()).toBeUndefined()
    await io.stream.close().catch(() => {})
    expect(contract(p, k.id).earned).toBe(0n)
    expect(highest(p, k.channel)).toBe(0n)

    // paid under the wrong index: refused
    io = await p.client.dial()
    await io.sendJson({ t: 'retrieve', contract: k.id, from: 0 })
    await readChunk(io)
    await io.sendJson({ t: 'pay', contract: k.id, period: 1, voucher: Buffer.from(p.client.wallet.voucher(k.channel, price0)).toString('hex') })
    expect(codeOf(await readMessage(io))).toBe('STORAGE_PROTOCOL')
    await io.stream.close().catch(() => {})
    expect(contract(p, k.id).earned).toBe(0n)
    expect(highest(p, k.channel)).toBe(0n)

    // chunk 0 paid, then its voucher replayed for chunk 1: refused, chunk 1 earned nothing
    io = await p.client.dial()
    await io.sendJson({ t: 'retrieve', contract: k.id, from: 0 })
    await readChunk(io)
    const v0 = p.client.wallet.voucher(k.channel, price0)
    await io.sendJson({ t: 'pay', contract: k.id, period: 0, voucher: Buffer.from(v0).toString('hex') })
    expect(await readChunk(io)).toMatchObject({ index: 1, length: 1000, price: price1 })
    await io.sendJson({ t: 'pay', contract: k.id, period: 1, voucher: Buffer.from(v0).toString('hex') })
    expect(codeOf(await readMessage(io))).toBe('CHANNEL_VOUCHER_STALE')
    await io.stream.close().catch(() => {})
    expect(contract(p, k.id).earned).toBe(price0)
    expect(highest(p, k.channel)).toBe(price0)

    // from chunk 1, paid properly: 'end'
    io = await p.client.dial()
    await io.sendJson({ t: 'retrieve', contract: k.id, from: 1 })
    await readChunk(io)
    await io.sendJson({ t: 'pay', contract: k.id, period: 1, voucher: Buffer.from(p.client.wallet.voucher(k.channel, price0 + price1)).toString('hex') })
    expect(await readMessage(io)).toEqual({ t: 'end' })
    await io.stream.close().catch(() => {})
    expect(contract(p, k.id).earned).toBe(price0 + price1)
    expect(highest(p, k.channel)).toBe(price0 + price1)
    expect(codeOf(await ask(p, { t: 'retrieve', contract: k.id, from: 2 }))).toBe('STORAGE_BAD_RANGE')
  })

  it('the last chunk paid with less than its price is refused, and earns only what was paid', async () => {
    const p = await peers()
    const k = await rawContract(p, 64 * KIB)
    const price = chunkAmount(p.provider.config.retrieval, 64 * KIB)
    expect(price).toBeGreaterThan(1n)
    const io = await p.client.dial()
    await io.sendJson({ t: 'retrieve', contract: k.id, from: 0 })
    await readChunk(io)
    await io.sendJson({ t: 'pay', contract: k.id, period: 0, voucher: Buffer.from(p.client.wallet.voucher(k.channel, 1n)).toString('hex') })
    const answer = await readMessage(io)
    await io.stream.close().catch(() => {})
    // what the provider books must be what its meter was paid
    expect(contract(p, k.id).earned).toBe(highest(p, k.channel))
    expect(answer.t).toBe('error')
  })

  it('a tampered blob: the client refuses the chunk, pays nothing, and the provider earns nothing', async () => {
    const p = await peers()
    const { f } = await clientPut(p)
    const fh = await open(join(p.provider.dir, 'blobs', f.root), 'r+')
    const b = Buffer.alloc(1)
    await fh.read(b, 0, 1, 1000)
    b[0] = (b[0] as number) ^ 0xff
    await fh.write(b, 0, 1, 1000)
    await fh.close()
    await expect(p.client.client.retrieve(f.id, async () => {})).rejects.toMatchObject({ code: 'STORAGE_TAMPERED' })
    expect(contract(p, f.id).earned).toBe(0n)
    expect(highest(p, f.channel)).toBe(0n)
    expect(p.client.wallet.payments.outgoing(f.channel)?.spent).toBe(0n)
    expect(p.client.client.get(f.id).spent).toBe(0n)
  })
})

describe('contract ends', () => {
  it('after cancel the data is gone and nothing more can be proven, paid or retrieved', async () => {
    const p = await peers()
    const { f } = await clientPut(p)
    expect((await p.client.client.cancel(f.id)).status).toBe('cancelled')
    expect(contract(p, f.id).status).toBe('cancelled')
    expect(await files(join(p.provider.dir, 'blobs'))).toEqual([])
    expect(codeOf(await ask(p, { t: 'challenge', contract: f.id, nonce: randomBytes(32).toString('hex') }))).toBe('STORAGE_CONTRACT_ENDED')
    expect(codeOf(await ask(p, { t: 'retrieve', contract: f.id, from: 0 }))).toBe('STORAGE_CONTRACT_ENDED')
    expect(codeOf(await ask(p, { t: 'cancel', contract: f.id }))).toBe('STORAGE_CONTRACT_ENDED')
    expect(p.provider.provider.usedBytes()).toBe(0)
  })

  it('the sweep ends a contract once more periods than allowed are missed, and expires a paid-up one at its end', async () => {
    const p = await peers()
    const period = p.provider.config.period
    const unpaid = await rawContract(p)
    const paid = await rawContract(p)
    // allowed misses 1: period 0 is missed once period 1 has ended; ended when period 1 is missed too
    p.clock.advance(2 * period + 1)
    expect(await pay(p, paid.id, 0, p.client.wallet.voucher(paid.channel, paid.perPeriod))).toMatchObject({ t: 'paid' })
    expect(await pay(p, paid.id, 1, p.client.wallet.voucher(paid.channel, 2n * paid.perPeriod))).toMatchObject({ t: 'paid' })
    await p.provider.provider.sweep()
    expect(contract(p, unpaid.id).status).toBe('active')
    p.clock.advance(period)
    await p.provider.provider.sweep()
    expect(contract(p, unpaid.id).status).toBe('unpaid')
    expect(contract(p, paid.id).status).toBe('active')
    expect(await files(join(p.provider.dir, 'blobs'))).toEqual([paid.contract.root, `${paid.contract.root}.tree`])
    expect(codeOf(await ask(p, { t: 'challenge', contract: unpaid.id, nonce: randomBytes(32).toString('hex') }))).toBe('STORAGE_CONTRACT_ENDED')
    expect(await pay(p, paid.id, 2, p.client.wallet.voucher(paid.channel, 3n * paid.perPeriod))).toMatchObject({ t: 'paid', paid_periods: 3 })
    await p.provider.provider.sweep()
    expect(contract(p, paid.id).status).toBe('expired')
    expect(await files(join(p.provider.dir, 'blobs'))).toEqual([])
  })
})
