import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { Meter, OutgoingChannel } from '@btt/channel'
import type { Libp2p, StreamHandler, StreamHandlerOptions } from '@libp2p/interface'
import type { Hono } from 'hono'
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import type { z } from 'zod'
import { SERVICE_NAME_PATTERN } from './constants.js'
import { ServiceDefinitionError, ServiceStartError, UnknownServiceError } from './errors.js'

/** A libp2p protocol a service answers on, e.g. `/btt/storage/1.0.0`. */
export interface ServiceProtocol {
  id: string
  handler: StreamHandler
  /** Stream limits per connection (libp2p defaults: 32 inbound, 64 outbound). */
  options?: Pick<StreamHandlerOptions, 'maxInboundStreams' | 'maxOutboundStreams'>
}

/** One thing a service sells and its price in base units per unit. */
export interface PriceItem {
  /** What is sold, e.g. `piece`, `chunk`, `proof-period`, `retrieval`. */
  item: string
  /** The unit the price is per, e.g. `KiB`, `GiB·period`. */
  unit: string
  price: bigint
}

/**
 * A running service. Seeding speaks BitTorrent on its own TCP port (no protocols, opens its port
 * in `start`); storage and proxy answer libp2p streams (`protocols`), which the node registers
 * after `start` resolves and unregisters before `stop` is called.
 */
export interface Service {
  readonly name: string
  readonly protocols: readonly ServiceProtocol[]
  readonly pricing: readonly PriceItem[]
  /** Mounted by the node under `/v1/services/<name>`, behind the admin API's auth. */
  readonly adminRoutes?: Hono
  start(): Promise<void>
  stop(): Promise<void>
  /** JSON-serialisable details shown in `GET /v1/services/<name>` and status. */
  status?(): Record<string, unknown>
  /** The BitTorrent TCP port it listens on, if it speaks BitTorrent (put in the node's DHT offer). */
  btPort?(): number | undefined
}

/**
 * Money as services see it: meter sessions on the provider side, opaque vouchers on the requester
 * side. Services never see signatures, keys or the ledger.
 */
export interface ServicePayments {
  /** This node's wallet account (hex public key): what requesters open channels to. */
  readonly account: string
  readonly ledgerId: string
  /** Provider side: `meter.open({ peer, channelId, price })` → prepare/apply/accept; `channel(id)` is an incoming channel's state (deposit, highest voucher). */
  readonly meter: Pick<Meter, 'open' | 'isBanned' | 'channel'>
  /** Requester side: pay `amount` more on an outgoing channel; returns the voucher (binary form) to send. */
  pay(channelId: string, amount: bigint): Promise<Uint8Array>
  /** Requester side: the voucher for everything paid so far on a channel (to re-send after a reconnect or crash). */
  latestVoucher(channelId: string): Promise<Uint8Array>
  /** Requester side: an outgoing channel's state (spent, deposit, expiry), if known. */
  outgoing(channelId: string): OutgoingChannel | undefined
  /** Requester side: an open outgoing channel to `payee` with at least `min` unspent, other than those in `exclude` (channels busy in another session). */
  findChannel(payee: string, min: bigint, exclude?: ReadonlySet<string>): OutgoingChannel | undefined
  /** Requester side: open a channel at the ledger (locks `deposit` from the wallet's balance). */
  openChannel(payee: string, deposit: bigint, expiresAt: number): Promise<OutgoingChannel>
  /** Requester side: what the wallet holds at the ledger, not counting channel deposits. */
  balance(): Promise<bigint>
}

/** What the node gives a service. Narrow on purpose: services never see the node's internals. */
export interface ServiceComponents<C> {
  /** The service's validated config section (amounts are bigint). */
  config: C & { enabled: boolean }
  logger: Logger
  /** Register service metrics here; name them `btt_<service>_<thing>_total`. */
  metrics: Registry
  /** The node's libp2p host, for the client side of a protocol (dial other providers). */
  p2p: Pick<Libp2p, 'peerId' | 'getMultiaddrs' | 'dialProtocol'>
  /** `<home>/data/<service>`, created 0700, the service's own files and databases. */
  dataDir: string
  payments: ServicePayments
}

/** How a service plugs in: its config section and the factory that builds it. */
export interface ServiceDefinition<S extends z.ZodObject = z.ZodObject> {
  /** Lower-case name used in URLs, config (`[services.<name>]`) and env (`BTT_NODE_SERVICES_<NAME>_*`). */
  name: string
  description: string
  /** The config section's keys with defaults; the node adds `enabled`. */
  config: S
  create(components: ServiceComponents<z.output<S>>): Service
}

/** Type helper: keeps a service definition's config type flowing into `create`. */
export function defineService<S extends z.ZodObject> (def: ServiceDefinition<S>): ServiceDefinition<S> {
  return def
}

export type ServiceState = 'stopped' | 'starting' | 'running' | 'stopping' | 'failed'

/** What status reports for a service. Prices are decimal strings of base units. */
export interface ServiceInfo {
  name: string
  description: string
  enabled: boolean
  state: ServiceState
  error?: string
  protocols: string[]
  pricing: Array<{ item: string, unit: string, price: string }>
  details?: Record<string, unknown>
}

/** What the manager needs of libp2p to (un)register protocols. */
export interface ProtocolRegistrar {
  handle(protocol: string, handler: StreamHandler, options?: StreamHandlerOptions): Promise<void>
  unhandle(protocol: string): Promise<void>
}

export interface ServiceManagerInit {
  definitions: readonly ServiceDefinition[]
  /** Validated service sections by name. */
  sections: Record<string, { enabled: boolean, [k: string]: unknown }>
  registrar: ProtocolRegistrar
  p2p: ServiceComponents<unknown>['p2p']
  /** Available once the node's payments have started (before any service starts). */
  payments: () => ServicePayments
  logger: Logger
  metrics: Registry
  dataRoot: string
  /** Persist a service's enabled flag (to config.toml) before it is applied. */
  persistEnabled(name: string, enabled: boolean): Promise<void>
  /** Called on every state change (for metrics). */
  onState?(name: string, state: ServiceState): void
}

interface Entry {
  def: ServiceDefinition
  enabled: boolean
  state: ServiceState
  error?: string
  service?: Service
  /** Serialises enable/disable/stop of one service. */
  queue: Promise<unknown>
}

/** Starts, stops, enables and disables services; owns their protocol registration. */
export class ServiceManager {
  private readonly entries = new Map<string, Entry>()

  constructor (private readonly init: ServiceManagerInit) {
    for (const def of init.definitions) {
      if (!SERVICE_NAME_PATTERN.test(def.name)) throw new ServiceDefinitionError(`service name "${def.name}" must match ${SERVICE_NAME_PATTERN}`)
      if (this.entries.has(def.name)) throw new ServiceDefinitionError(`two services are named "${def.name}"`)
      this.entries.set(def.name, { def, enabled: init.sections[def.name]?.enabled === true, state: 'stopped', queue: Promise.resolve() })
    }
  }

  names (): string[] {
    return [...this.entries.keys()]
  }

  /** Start every enabled service. A service that fails is marked `failed` and logged; the others still start. */
  async startEnabled (): Promise<void> {
    for (const entry of this.entries.values()) {
      if (!entry.enabled) continue
      await this.serialised(entry, async () => {
        try {
          await this.startEntry(entry)
        } catch (err) {
          this.init.logger.error({ service: entry.def.name, err }, 'service failed to start; fix the cause and run `btt-node services enable %s`', entry.def.name)
        }
      })
    }
  }

  /** Stop every running service, in reverse order of definition. */
  async stopAll (): Promise<void> {
    for (const entry of [...this.entries.values()].reverse()) {
      await this.serialised(entry, async () => { await this.stopEntry(entry) })
    }
  }

  /** Persist `enabled = true`, then start the service live. */
  async enable (name: string): Promise<ServiceInfo> {
    const entry = this.get(name)
    return await this.serialised(entry, async () => {
      if (!entry.enabled) {
        await this.init.persistEnabled(name, true)
        entry.enabled = true
      }
      if (entry.state !== 'running') await this.startEntry(entry)
      return this.describe(entry)
    })
  }

  /** Persist `enabled = false`, then unregister its protocols and stop it live. */
  async disable (name: string): Promise<ServiceInfo> {
    const entry = this.get(name)
    return await this.serialised(entry, async () => {
      if (entry.enabled) {
        await this.init.persistEnabled(name, false)
        entry.enabled = false
      }
      await this.stopEntry(entry)
      return this.describe(entry)
    })
  }

  info (name: string): ServiceInfo {
    return this.describe(this.get(name))
  }

  list (): ServiceInfo[] {
    return [...this.entries.values()].map(e => this.describe(e))
  }

  /** Running services with what they sell (the node's DHT offer is built from these). */
  running (): Array<{ name: string, pricing: readonly PriceItem[], btPort?: number }> {
    const out: Array<{ name: string, pricing: readonly PriceItem[], btPort?: number }> = []
    for (const e of this.entries.values()) {
      if (e.state !== 'running' || e.service === undefined) continue
      const btPort = e.service.btPort?.()
      out.push({ name: e.def.name, pricing: e.service.pricing, ...(btPort !== undefined ? { btPort } : {}) })
    }
    return out
  }

  /** The running service's admin routes, if it is running and has any. */
  adminRoutes (name: string): { state: ServiceState, routes?: Hono } {
    const entry = this.get(name)
    return { state: entry.state, routes: entry.state === 'running' ? entry.service?.adminRoutes : undefined }
  }

  private get (name: string): Entry {
    const entry = this.entries.get(name)
    if (entry === undefined) throw new UnknownServiceError(name, this.names())
    return entry
  }

  private async serialised<T> (entry: Entry, fn: () => Promise<T>): Promise<T> {
    const run = entry.queue.then(fn, fn)
    entry.queue = run.catch(() => {})
    return await run
  }

  private setState (entry: Entry, state: ServiceState, error?: string): void {
    entry.state = state
    entry.error = error
    this.init.onState?.(entry.def.name, state)
  }

  private async startEntry (entry: Entry): Promise<void> {
    const { def } = entry
    const logger = this.init.logger.child({ module: def.name })
    this.setState(entry, 'starting')
    const registered: string[] = []
    try {
      const dataDir = join(this.init.dataRoot, def.name)
      await mkdir(dataDir, { recursive: true, mode: 0o700 })
      const payments = this.init.payments
      const service = def.create({
        config: this.init.sections[def.name] as never,
        logger,
        metrics: this.init.metrics,
        p2p: this.init.p2p,
        dataDir,
        // resolved on use: a service that never touches money does not need payments started
        get payments () { return payments() }
      })
      if (service.name !== def.name) throw new ServiceDefinitionError(`service "${def.name}" built an instance named "${service.name}"`)
      entry.service = service
      await service.start()
      for (const proto of service.protocols) {
        await this.init.registrar.handle(proto.id, proto.handler, proto.options)
        registered.push(proto.id)
      }
      this.setState(entry, 'running')
      logger.info({ protocols: registered }, 'service started')
    } catch (err) {
      for (const id of registered) await this.init.registrar.unhandle(id).catch(() => {})
      await entry.service?.stop().catch(() => {})
      entry.service = undefined
      this.setState(entry, 'failed', (err as Error).message)
      throw new ServiceStartError(def.name, { cause: err })
    }
  }

  private async stopEntry (entry: Entry): Promise<void> {
    const service = entry.service
    if (service === undefined) {
      if (entry.state === 'failed' && !entry.enabled) this.setState(entry, 'stopped')
      return
    }
    this.setState(entry, 'stopping')
    for (const proto of service.protocols) {
      await this.init.registrar.unhandle(proto.id).catch((err: unknown) => {
        this.init.logger.warn({ service: entry.def.name, protocol: proto.id, err }, 'could not unregister protocol')
      })
    }
    try {
      await service.stop()
      this.setState(entry, 'stopped')
    } catch (err) {
      this.setState(entry, 'failed', `stop failed: ${(err as Error).message}`)
      this.init.logger.error({ service: entry.def.name, err }, 'service failed to stop cleanly')
    } finally {
      entry.service = undefined
    }
  }

  private describe (entry: Entry): ServiceInfo {
    const running = entry.state === 'running' ? entry.service : undefined
    const info: ServiceInfo = {
      name: entry.def.name,
      description: entry.def.description,
      enabled: entry.enabled,
      state: entry.state,
      protocols: running?.protocols.map(p => p.id) ?? [],
      pricing: running?.pricing.map(p => ({ item: p.item, unit: p.unit, price: p.price.toString() })) ?? []
    }
    if (entry.error !== undefined) info.error = entry.error
    const details = running?.status?.()
    if (details !== undefined) info.details = details
    return info
  }
}
