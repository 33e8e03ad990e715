import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  Claimer, Meter, Payer, SqliteChannelStore, encodeVoucher, fromHex, generateKeyPair, signVoucher, toHex,
  type ChannelStore, type IncomingChannel, type KeyPair, type OutgoingChannel
} from '@btt/channel'
import { Ledger, LocalLedgerClient } from '@btt/ledger'
import { createP2PHost, servicePaymentsOf, type P2PHost, type Payments, type ServicePayments } from '@btt/node'
// a test host's libp2p identity (@libp2p/crypto is a dependency of @btt/node, hoisted)
import { generateKeyPair as generateLibp2pKey } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { pino } from 'pino'
import { FsBlobStore } from '../blobs.js'
import { StorageClient } from '../client.js'
import { StorageProvider, type ProviderConfig } from '../provider.js'
import { Framed, STORAGE_PROTOCOL, parseMessage, zProviderMessage, type ProviderMessage } from '../protocol.js'

/** 1 BTT in base units. */
export const BTT = 10n ** 18n

/** Made-slow parts of a wallet, to open the windows a busy node has (0: as fast as in process). */
export interface Delays {
  /**
   * Channel store commits: the record is visible at once (SqliteChannelStore updates its cache
   * before committing) and the update resolves this much later, as when the store is busy and
   * commits on its writer thread.
   */
  commitMs: number
  /** The meter's ledger lookups of channels it has not seen, as with a ledger over HTTP. */
  ledgerMs: number
}

const sleep = async (ms: number): Promise<void> => { if (ms > 0) await new Promise(resolve => setTimeout(resolve, ms)) }

class SlowCommitStore implements ChannelStore {
  constructor (readonly inner: ChannelStore, private readonly delays: Delays) {}
  getIncoming (id: string): IncomingChannel | undefined { return this.inner.getIncoming(id) }
  listIncoming (): IncomingChannel[] { return this.inner.listIncoming() }
  async updateIncoming<T>(id: string, fn: (current: IncomingChannel | undefined) => { state: IncomingChannel, result: T }): Promise<T> {
    const r = await this.inner.updateIncoming(id, fn)
    await sleep(this.delays.commitMs)
    return r
  }

  getOutgoing (id: string): OutgoingChannel | undefined { return this.inner.getOutgoing(id) }
  listOutgoing (): OutgoingChannel[] { return this.inner.listOutgoing() }
  async updateOutgoing<T>(id: string, fn: (current: OutgoingChannel | undefined) => { state: OutgoingChannel, result: T }): Promise<T> {
    return await this.inner.updateOutgoing(id, fn)
  }

  async close (): Promise<void> { await this.inner.close() }
}

export interface TestWallet {
  payments: ServicePayments
  all: Payments
  keyPair: KeyPair
  account: string
  /** Set these to slow the wallet's channel store commits or ledger lookups down. */
  delays: Delays
  /** A voucher for exactly `amount` (cumulative) on one of this wallet's outgoing channels, made without the Payer. */
  voucher(channelId: string, amount: bigint): Uint8Array
  close(): Promise<void>
}

/** A node's money on an in-process ledger: real SQLite channel store, Meter and Payer (what startPayments builds). */
export async function testWallet (ledger: Ledger, dir: string, opts: { funds?: bigint, banAfterFailures?: number } = {}): Promise<TestWallet> {
  const keyPair = generateKeyPair()
  const client = new LocalLedgerClient({ ledger, keyPair })
  if (opts.funds !== undefined) await client.faucet(opts.funds)
  const info = await client.info()
  const sqlite = new SqliteChannelStore(join(dir, `channels-${toHex(keyPair.publicKey).slice(0, 8)}.db`))
  const delays: Delays = { commitMs: 0, ledgerMs: 0 }
  const store = new SlowCommitStore(sqlite, delays)
  const policy = { threshold: 10n ** 30n, safetyMarginMs: 60_000 }
  const claimer = new Claimer({ store, ledger: client, policy, pollMs: 60_000 })
  const meter = new Meter({
    store,
    ledger: { channel: async id => { await sleep(delays.ledgerMs); return await client.channel(id) } },
    payee: toHex(keyPair.publicKey),
    ledgerId: info.ledgerId,
    policy,
    paymentTimeoutMs: 10_000,
    banAfterFailures: opts.banAfterFailures ?? 1000,
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
    store: sqlite,
    async stop () { await store.close() }
  }
  return {
    payments: servicePaymentsOf(all),
    all,
    keyPair,
    account: all.account,
    delays,
    voucher: (channelId, amount) => encodeVoucher(signVoucher({ ledgerId: fromHex(info.ledgerId, 32, 'ledger id'), channelId: fromHex(channelId, 32, 'channel id'), amount }, keyPair.secretKey)),
    close: async () => { await all.stop() }
  }
}

export interface TestHost {
  host: P2PHost
  peerId: string
  wallet: TestWallet
  /** A raw storage stream to the provider, for speaking the protocol by hand. */
  dial(): Promise<Framed>
}

export interface ProviderSide extends TestHost {
  provider: StorageProvider
  blobs: FsBlobStore
  /** The provider's data directory: `blobs/`, `partial/`, `provider.db`. */
  dir: string
  dbPath: string
  config: ProviderConfig
  /** Its address, ending in /p2p/<peer id>. */
  addr: string
  /** Stop the provider and start a new one on the same database and blob directory (a restart). */
  restart(): Promise<StorageProvider>
}

export interface ClientSide extends TestHost {
  client: StorageClient
}

export interface Peers {
  ledger: Ledger
  dir: string
  /** The clock provider and client share: real time plus `offset` ms (the ledger and meters run on real time). */
  clock: { offset: number, now(): number, advance(seconds: number): void }
  provider: ProviderSide
  client: ClientSide
  /** Another host with its own wallet (e.g. a stranger to the client's contracts). */
  addHost(funds?: bigint): Promise<TestHost>
  close(): Promise<void>
}

export const DEFAULT_CONFIG: ProviderConfig = {
  price: 10n ** 15n,
  retrieval: 10n ** 15n,
  period: 60,
  allowedMisses: 1,
  minDuration: 60,
  maxDuration: 366 * 86_400,
  quotaBytes: 64 * 1024 * 1024,
  maxFileBytes: 32 * 1024 * 1024,
  maxUploads: 4,
  idleTimeoutMs: 3000,
  channelMarginMs: 3600_000
}

/**
 * A storage provider host and a client host on loopback, each with its own wallet on one
 * in-process ledger, in a temporary directory. The provider answers /btt/storage/1.0.0.
 */
export async function storagePeers (opts: { config?: Partial<ProviderConfig>, clientFunds?: bigint } = {}): Promise<Peers> {
  const dir = await mkdtemp(join(tmpdir(), 'btt-storage-peers-'))
  const closers: Array<() => Promise<void>> = []
  const logger = pino({ level: 'silent' })
  const ledger = new Ledger({ path: join(dir, 'ledger.db'), dev: true })
  closers.push(async () => { ledger.close() })
  const clock = {
    offset: 0,
    now: () => Date.now() + clock.offset,
    advance: (seconds: number) => { clock.offset += seconds * 1000 }
  }

  let providerAddr = ''
  const newHost = async (funds?: bigint): Promise<TestHost> => {
    const wallet = await testWallet(ledger, dir, funds !== undefined ? { funds } : {})
    closers.push(async () => { await wallet.close() })
    const host = await createP2PHost({ privateKey: await generateLibp2pKey('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'], announce: [] })
    await host.start()
    closers.push(async () => { await host.stop() })
    return {
      host,
      peerId: host.peerId.toString(),
      wallet,
      dial: async () => new Framed(await host.dialProtocol(multiaddr(providerAddr), STORAGE_PROTOCOL))
    }
  }

  try {
    const config = { ...DEFAULT_CONFIG, ...opts.config }
    const p = await newHost()
    const pdir = join(dir, 'provider')
    const blobs = new FsBlobStore(pdir)
    await blobs.init()
    const dbPath = join(pdir, 'provider.db')
    const makeProvider = async (): Promise<StorageProvider> => {
      const sp = new StorageProvider({ dbPath, blobs, payments: p.wallet.payments, config, logger, now: clock.now })
      await sp.start()
      return sp
    }
    const provider: ProviderSide = {
      ...p,
      provider: await makeProvider(),
      blobs,
      dir: pdir,
      dbPath,
      config,
      addr: '',
      restart: async () => {
        await provider.provider.stop()
        provider.provider = await makeProvider()
        return provider.provider
      }
    }
    closers.push(async () => { await provider.provider.stop().catch(() => {}) })
    await p.host.handle(STORAGE_PROTOCOL, async (stream, connection) => { await provider.provider.handle(stream, connection) })
    const tcp = p.host.getMultiaddrs().map(a => a.toString()).find(a => a.startsWith('/ip4/127.0.0.1/tcp/'))
    if (tcp === undefined) throw new Error('the provider host has no loopback TCP address')
    providerAddr = tcp.includes('/p2p/') ? tcp : `${tcp}/p2p/${p.peerId}`
    provider.addr = providerAddr

    const c = await newHost(opts.clientFunds ?? 1000n * BTT)
    const client = new StorageClient({ dbPath: join(dir, 'client.db'), masterKey: randomBytes(32), p2p: c.host, payments: c.wallet.payments, logger, now: clock.now })
    closers.push(async () => { client.close() })

    return {
      ledger,
      dir,
      clock,
      provider,
      client: { ...c, client },
      addHost: newHost,
      close: async () => {
        for (const close of closers.reverse()) await close().catch(() => {})
        await rm(dir, { recursive: true, force: true })
      }
    }
  } catch (err) {
    for (const close of closers.reverse()) await close().catch(() => {})
    await rm(dir, { recursive: true, force: true })
    throw err
  }
}

/** The provider's next message, validated. */
export async function readMessage (io: Framed): Promise<ProviderMessage> {
  return parseMessage(zProviderMessage, await io.readJson())
}

/** The provider's next message, which must be of type `t`. */
export async function expectMessage<K extends ProviderMessage['t']> (io: Framed, t: K): Promise<Extract<ProviderMessage, { t: K }>> {
  const m = await readMessage(io)
  if (m.t !== t) throw new Error(`expected ${t}, got ${JSON.stringify(m)}`)
  return m as Extract<ProviderMessage, { t: K }>
}
