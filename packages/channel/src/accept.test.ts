import { mkdtemp } from 'node:fs/promises'
import { DatabaseSync } from 'node:sqlite'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { generateKeyPair, randomBytes, toHex } from './crypto.js'
import { Meter, type MeterSession } from './meter.js'
import { SqliteChannelStore } from './store.js'
import { fromLedger } from './state.js'
import { decodeVoucher, decodeVoucherBencode, encodeVoucher, encodeVoucherBencode, voucherFromJson, voucherToJson, type Voucher } from './voucher.js'
import { fixture } from './test-support/fixtures.js'

const L = 2n ** 252n + 27742317777372353535851937790883648493n // the order of the ed25519 base point

let dbPath: string
let store: SqliteChannelStore
let fx: ReturnType<typeof fixture>
let session: MeterSession

async function setup (payerKeyHex?: string, status: 'open' | 'finalized' = 'open') {
  fx = fixture({ deposit: 1000n })
  const channel = { ...fx.channel, payer: payerKeyHex ?? fx.channel.payer }
  await store.updateIncoming(channel.id, () => ({ state: fromLedger(channel), result: undefined }))
  const meter = new Meter({ store, ledger: { channel: async () => channel }, payee: channel.payee, ledgerId: channel.ledgerId })
  session = await meter.open({ peer: 'peer-1', channelId: channel.id, price: 10n })
  if (status === 'finalized') {
    await store.updateIncoming(channel.id, cur => ({ state: { ...cur!, status: 'finalized' }, result: undefined }))
  }
}

/** Every byte of every stored channel row, read by a separate connection. */
function dump (): string {
  const db = new DatabaseSync(dbPath, { readOnly: true })
  try {
    return JSON.stringify(db.prepare('SELECT * FROM incoming ORDER BY id').all(), (_k, v: unknown) => v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v)
  } finally {
    db.close()
  }
}

beforeEach(async () => {
  dbPath = join(await mkdtemp(join(tmpdir(), 'btt-accept-')), 'channels.db')
  store = new SqliteChannelStore(dbPath)
})
afterEach(async () => { await store.close() })

function malleate (v: Voucher): Voucher {
  const sig = Buffer.from(v.signature)
  const s = BigInt('0x' + Buffer.from(sig.subarray(32)).reverse().toString('hex')) + L
  const sBytes = Buffer.from(s.toString(16).padStart(64, '0'), 'hex').reverse()
  sBytes.copy(sig, 32)
  return { ...v, signature: sig }
}

/** A signature that a lax verifier accepts for the identity point as public key: R = identity, S = 0. */
const IDENTITY = Buffer.concat([Buffer.from([1]), Buffer.alloc(31)])
const LAX_SIG = Buffer.concat([IDENTITY, Buffer.alloc(32)])

describe('voucher rejection table: each rejected with a code, stored state byte-identical', () => {
  type Case = [string, () => Promise<unknown>, string, { payer?: string, finalized?: boolean, before?: bigint }]
  const cases: Case[] = [
    ['wrong channel id', async () => await session.accept(fx.voucher(10n, { channelId: randomBytes(32) })), 'CHANNEL_VOUCHER_WRONG_CHANNEL', {}],
    ['wrong ledger id', async () => await session.accept(fx.voucher(10n, { ledgerId: randomBytes(32) })), 'CHANNEL_VOUCHER_WRONG_LEDGER', {}],
    ['signed by another key', async () => await session.accept(fx.voucher(10n, { key: generateKeyPair() })), 'CHANNEL_VOUCHER_BAD_SIGNATURE', {}],
    ['S+L malleated signature', async () => await session.accept(malleate(fx.voucher(10n))), 'CHANNEL_VOUCHER_BAD_SIGNATURE', {}],
    ['small-order public key with a lax-valid signature', async () => await session.accept({ ...fx.voucher(10n), signature: LAX_SIG }), 'CHANNEL_VOUCHER_BAD_SIGNATURE', { payer: IDENTITY.toString('hex') }],
    ['all-zero public key', async () => await session.accept({ ...fx.voucher(10n), signature: LAX_SIG }), 'CHANNEL_VOUCHER_BAD_SIGNATURE', { payer: '00'.repeat(32) }],
    ['short signature (JSON)', async () => await session.accept(voucherFromJson({ ...voucherToJson(fx.voucher(10n)), signature: 'ab'.repeat(63) })), 'CHANNEL_VOUCHER_MALFORMED', {}],
    ['long signature (JSON)', async () => await session.accept(voucherFromJson({ ...voucherToJson(fx.voucher(10n)), signature: 'ab'.repeat(65) })), 'CHANNEL_VOUCHER_MALFORMED', {}],
    ['short binary voucher', async () => await session.accept(encodeVoucher(fx.voucher(10n)).subarray(0, 144)), 'CHANNEL_VOUCHER_MALFORMED', {}],
    ['long binary voucher', async () => await session.accept(Buffer.concat([encodeVoucher(fx.voucher(10n)), Buffer.from([0])])), 'CHANNEL_VOUCHER_MALFORMED', {}],
    ['equal amount', async () => await session.accept(fx.voucher(50n)), 'CHANNEL_VOUCHER_STALE', { before: 50n }],
    ['lower amount', async () => await session.accept(fx.voucher(40n)), 'CHANNEL_VOUCHER_STALE', { before: 50n }],
    ['zero amount', async () => await session.accept(fx.voucher(0n)), 'CHANNEL_VOUCHER_STALE', {}],
    ['amount above the deposit', async () => await session.accept(fx.voucher(1001n)), 'CHANNEL_VOUCHER_OVER_DEPOSIT', {}],
    ['negative amount (JSON)', async () => await session.accept(voucherFromJson({ ...voucherToJson(fx.voucher(10n)), amount: '-10' })), 'CHANNEL_VOUCHER_MALFORMED', {}],
    ['amount of 2^128 (JSON)', async () => await session.accept(voucherFromJson({ ...voucherToJson(fx.voucher(10n)), amount: (2n ** 128n).toString() })), 'CHANNEL_VOUCHER_MALFORMED', {}],
    ['channel already finalized', async () => await session.accept(fx.voucher(10n)), 'CHANNEL_CLOSED', { finalized: true }],
    ['unknown version byte', async () => { const b = Buffer.from(encodeVoucher(fx.voucher(10n))); b[0] = 2; return await session.accept(b) }, 'CHANNEL_VOUCHER_MALFORMED', {}],
    ['bencode with a wrong length prefix', async () => await session.accept(decodeVoucherBencode(Buffer.concat([Buffer.from('144:'), encodeVoucherBencode(fx.voucher(10n)).subarray(4)]))), 'CHANNEL_VOUCHER_MALFORMED', {}],
    ['bencode with trailing bytes', async () => await session.accept(decodeVoucherBencode(Buffer.concat([encodeVoucherBencode(fx.voucher(10n)), Buffer.from('e')]))), 'CHANNEL_VOUCHER_MALFORMED', {}],
    ['JSON with an extra key', async () => await session.accept(voucherFromJson({ ...voucherToJson(fx.voucher(10n)), extra: 1 })), 'CHANNEL_VOUCHER_MALFORMED', {}],
    ['JSON with upper-case hex', async () => await session.accept(voucherFromJson({ ...voucherToJson(fx.voucher(10n)), channelId: fx.channel.id.toUpperCase() })), 'CHANNEL_VOUCHER_MALFORMED', {}],
    ['JSON amount with a leading zero', async () => await session.accept(voucherFromJson({ ...voucherToJson(fx.voucher(10n)), amount: '010' })), 'CHANNEL_VOUCHER_MALFORMED', {}],
    ['JSON __proto__ key', async () => await session.accept(voucherFromJson(JSON.parse(`{"__proto__":{"v":1},${JSON.stringify(voucherToJson(fx.voucher(10n))).slice(1)}`))), 'CHANNEL_VOUCHER_MALFORMED', {}]
  ]

  it('has at least 14 cases', () => { expect(cases.length).toBeGreaterThanOrEqual(14) })

  it.each(cases)('%s', async (_name, attempt, code, opts) => {
    await setup(opts.payer, opts.finalized === true ? 'finalized' : 'open')
    if (opts.before !== undefined) await session.accept(fx.voucher(opts.before))
    const before = dump()
    await expect(attempt()).rejects.toMatchObject({ code })
    expect(dump()).toBe(before)
    // and the channel still takes a good voucher afterwards (unless it is closed)
    if (opts.finalized !== true && opts.payer === undefined) {
      const next = (opts.before ?? 0n) + 10n
      await expect(session.accept(fx.voucher(next))).resolves.toEqual({ credited: 10n })
      expect(store.getIncoming(fx.channel.id)?.highest).toBe(next)
    }
  })
})

describe('replay and concurrency', () => {
  it('the same voucher twice credits once', async () => {
    await setup()
    const v = fx.voucher(30n)
    expect(await session.accept(v)).toEqual({ credited: 30n })
    await expect(session.accept(v)).rejects.toMatchObject({ code: 'CHANNEL_VOUCHER_STALE' })
    await expect(session.accept(encodeVoucher(v))).rejects.toMatchObject({ code: 'CHANNEL_VOUCHER_STALE' })
    expect(session.credited).toBe(30n)
    expect(store.getIncoming(fx.channel.id)?.highest).toBe(30n)
  })

  it('100 concurrent vouchers on one channel leave the maximum, credited exactly once', async () => {
    await setup()
    const amounts = Array.from({ length: 100 }, (_, i) => BigInt(i + 1) * 7n)
    for (let i = amounts.length - 1; i > 0; i--) { const j = Math.floor(Math.random() * (i + 1)); [amounts[i], amounts[j]] = [amounts[j]!, amounts[i]!] }
    const results = await Promise.allSettled(amounts.map(a => session.accept(fx.voucher(a))))
    const credited = results.reduce((sum, r) => sum + (r.status === 'fulfilled' ? r.value.credited : 0n), 0n)
    expect(store.getIncoming(fx.channel.id)?.highest).toBe(700n)
    expect(credited).toBe(700n)
    expect(session.credited).toBe(700n)
    for (const r of results) if (r.status === 'rejected') expect((r.reason as { code: string }).code).toBe('CHANNEL_VOUCHER_STALE')
    // the stored voucher is the one for 700, and it verifies
    const stored = decodeVoucher(store.getIncoming(fx.channel.id)!.voucher!)
    expect(stored.amount).toBe(700n)
    expect(toHex(stored.channelId)).toBe(fx.channel.id)
  })
})
