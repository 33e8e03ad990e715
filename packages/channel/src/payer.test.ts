import { mkdtemp } from 'node:fs/promises'
import { DatabaseSync } from 'node:sqlite'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import type { LedgerClient } from './ledger-api.js'
import { Payer } from './payer.js'
import { SqliteChannelStore } from './store.js'
import { fixture } from './test-support/fixtures.js'
import { amountFromBytes, verifyVoucher } from './voucher.js'

describe('Payer', () => {
  it('signs only amounts that are durable, never above the deposit', async () => {
    const path = join(await mkdtemp(join(tmpdir(), 'btt-payer-')), 'c.db')
    const store = new SqliteChannelStore(path)
    const fx = fixture({ deposit: 100n })
    const payer = new Payer({ store, ledger: {} as LedgerClient, keyPair: fx.payer })
    await payer.remember(fx.channel)
    const pending = payer.pay(fx.channel.id, 30n) // not awaited: its write is still queued
    const latest = await payer.latestVoucher(fx.channel.id)
    expect(latest.amount).toBe(30n)
    expect(verifyVoucher(latest, fx.payer.publicKey)).toBe(true)
    const db = new DatabaseSync(path, { readOnly: true })
    const row = db.prepare('SELECT spent FROM outgoing').get() as { spent: Uint8Array }
    db.close()
    expect(amountFromBytes(row.spent)).toBe(30n) // on disk before the voucher was handed out
    expect((await pending).amount).toBe(30n)
    await expect(payer.pay(fx.channel.id, 71n)).rejects.toMatchObject({ code: 'CHANNEL_VOUCHER_OVER_DEPOSIT' })
    expect((await payer.pay(fx.channel.id, 70n)).amount).toBe(100n)
    await store.close()
  })
})
