import { join } from 'node:path'
import { Claimer, Meter, encodeVoucher, Payer, SqliteChannelStore, toHex, type KeyPair, type LedgerClient } from '@btt/channel'
import type { Logger } from 'pino'
import type { NodeConfig } from './config/schema.js'
import type { ServicePayments } from './service.js'

/** The node's money: its ledger client, channel store, Meter (for services), Claimer and Payer. */
export interface Payments {
  readonly account: string
  readonly ledger: LedgerClient
  readonly ledgerId: string
  /** `embedded` or the ledger server's URL. */
  readonly ledgerLocation: string
  readonly meter: Meter
  readonly payer: Payer
  readonly claimer: Claimer
  readonly store: SqliteChannelStore
  stop(): Promise<void>
}

export interface PaymentsInit {
  config: Pick<NodeConfig, 'ledger' | 'payments'>
  dataDir: string
  wallet: KeyPair
  logger: Logger
}

/** Open the ledger (embedded or remote) and the channel store; start claiming. */
export async function startPayments (init: PaymentsInit): Promise<Payments> {
  const { config, wallet, logger } = init
  const account = toHex(wallet.publicKey)
  let ledger: LedgerClient
  let closeLedger = (): void => {}
  if (config.ledger.url === '') {
    const { Ledger, LocalLedgerClient } = await import('@btt/ledger')
    const embedded = new Ledger({ path: join(init.dataDir, 'ledger.db'), dev: config.ledger.dev, challengeWindowMs: config.ledger.challenge_window_seconds * 1000 })
    ledger = new LocalLedgerClient({ ledger: embedded, keyPair: wallet })
    closeLedger = () => { embedded.close() }
  } else {
    const { HttpLedgerClient } = await import('@btt/ledger')
    ledger = new HttpLedgerClient({ url: config.ledger.url, keyPair: wallet })
  }
  const info = await ledger.info()
  const store = new SqliteChannelStore(join(init.dataDir, 'channels.db'))
  const policy = { threshold: config.payments.claim_threshold, safetyMarginMs: config.payments.claim_margin_seconds * 1000 }
  const log = logger.child({ module: 'payments' })
  const claimer = new Claimer({
    store,
    ledger,
    policy,
    pollMs: config.payments.claim_poll_seconds * 1000,
    onError: (err, channelId) => { log.warn({ err, channelId }, 'claim failed; retrying at the next poll') }
  })
  const meter = new Meter({
    store,
    ledger,
    payee: account,
    ledgerId: info.ledgerId,
    policy,
    paymentTimeoutMs: config.payments.payment_timeout_seconds * 1000,
    maxUnpaidUnits: config.payments.max_unpaid_units,
    banAfterFailures: config.payments.ban_after_failures,
    banMs: config.payments.ban_minutes * 60_000,
    onClaim: (channelId, reason) => {
      log.debug({ channelId, reason }, 'claiming')
      claimer.request(channelId)
    }
  })
  const payer = new Payer({ store, ledger, keyPair: wallet })
  claimer.start()
  log.info({ account, ledgerId: info.ledgerId, ledger: config.ledger.url === '' ? 'embedded' : config.ledger.url }, 'payments ready')
  return {
    account,
    ledger,
    ledgerId: info.ledgerId,
    ledgerLocation: config.ledger.url === '' ? 'embedded' : config.ledger.url,
    meter,
    payer,
    claimer,
    store,
    async stop () {
      await claimer.stop()
      await store.close()
      closeLedger()
    }
  }
}

/** Money as services see it (see ServicePayments): no keys, no ledger, no signatures. */
export function servicePaymentsOf (p: Payments): ServicePayments {
  return {
    account: p.account,
    ledgerId: p.ledgerId,
    meter: p.meter,
    pay: async (channelId, amount) => encodeVoucher(await p.payer.pay(channelId, amount)),
    latestVoucher: async channelId => encodeVoucher(await p.payer.latestVoucher(channelId)),
    outgoing: channelId => p.payer.channel(channelId),
    findChannel: (payee, min, exclude) => p.payer.list().find(c => c.payee === payee && exclude?.has(c.id) !== true && c.ledgerId === p.ledgerId && c.status === 'open' && c.deposit - c.spent >= min && c.expiresAt > Date.now()),
    openChannel: async (payee, deposit, expiresAt) => await p.payer.open({ payee, deposit, expiresAt }),
    balance: async () => (await p.ledger.balance(p.account))
  }
}
