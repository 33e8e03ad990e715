import { join } from 'node:path'
import { Claimer, Meter, Payer, SqliteChannelStore, generateKeyPair, toHex, type KeyPair } from '@btt/channel'
import { LocalLedgerClient, type Ledger } from '@btt/ledger'
import { servicePaymentsOf, type Payments, type ServicePayments } from '@btt/node'

export interface TestWallet {
  payments: ServicePayments
  all: Payments
  keyPair: KeyPair
  account: string
  close(): Promise<void>
}

/**
 * A node's money on an in-process ledger: a real SQLite channel store, Meter and Payer (what
 * startPayments builds), for engine-level tests of paid seeding.
 */
export async function testWallet (ledger: Ledger, dir: string, opts: { funds?: bigint, paymentTimeoutMs?: number, banAfterFailures?: number } = {}): Promise<TestWallet> {
  const keyPair = generateKeyPair()
  const client = new LocalLedgerClient({ ledger, keyPair })
  if (opts.funds !== undefined) await client.faucet(opts.funds)
  const info = await client.info()
  const store = new SqliteChannelStore(join(dir, `channels-${toHex(keyPair.publicKey).slice(0, 8)}.db`))
  const policy = { threshold: 10n ** 30n, safetyMarginMs: 60_000 }
  const claimer = new Claimer({ store, ledger: client, policy, pollMs: 60_000 })
  const meter = new Meter({
    store,
    ledger: client,
    payee: toHex(keyPair.publicKey),
    ledgerId: info.ledgerId,
    policy,
    paymentTimeoutMs: opts.paymentTimeoutMs ?? 10_000,
    banAfterFailures: opts.banAfterFailures ?? 3,
    banMs: 600_000
  })
  const payer = new Payer({ store, ledger: client, keyPair })
  const all: Payments = {
    account: toHex(keyPair.publicKey),
    ledger: client,
    ledgerId: info.ledgerId,
    ledgerLocation: 'embedded',
    meter,
    payer,
    claimer,
    store,
    async stop () { await store.close() }
  }
  return { payments: servicePaymentsOf(all), all, keyPair, account: all.account, close: async () => { await all.stop() } }
}
