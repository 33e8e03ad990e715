import type { Hono } from 'hono'
import type { Logger } from 'pino'
import { createAdminApp } from './api/app.js'
import { listenAdminApi, type AdminServer } from './api/server.js'
import type { NodeStatus } from './api/types.js'
import { setConfigValue } from './config/edit.js'
import { loadConfig } from './config/load.js'
import type { NodeConfig } from './config/schema.js'
import { paymentsRoutes } from './api/payments-routes.js'
import { NodeError } from './errors.js'
import { assertInitialised, claimRuntime, libp2pKeyOf, loadIdentity, loadWallet, readApiToken, removeRuntimeInfo, writeRuntimeInfo } from './home.js'
import { servicePaymentsOf, startPayments, type Payments } from './payments.js'
import { Lifecycle } from './lifecycle.js'
import { OfferPublisher } from './offers.js'
import { createLogger } from './logger.js'
import { createMetrics, registerChannelMetrics } from './metrics.js'
import { ServiceManager, type ServiceDefinition, type ServicePayments } from './service.js'
import { VERSION } from './version.js'

export interface NodeInit {
  home: string
  /** The services this build sells; only the CLI's `start` (the composition root) passes real ones. */
  services?: readonly ServiceDefinition[]
  /** Environment to read `BTT_NODE_*` settings from (default: none, so tests are hermetic). */
  env?: Record<string, string | undefined>
  /** Settings from flags by dotted key, e.g. `{ 'api.port': 0 }`. */
  overrides?: Record<string, unknown>
  /** A logger to use instead of one built from `log.level`. */
  logger?: Logger
}

/** A node: built, not yet started. */
export interface BttNode {
  readonly peerId: string
  readonly home: string
  readonly config: NodeConfig
  /** The admin API's URL once started. */
  readonly apiUrl: string
  /** The admin app (for in-process tests with `app.request()`). */
  readonly adminApp: Hono
  start(): Promise<void>
  /** Stop everything in reverse order. Safe to call twice. */
  stop(): Promise<void>
  status(): NodeStatus
}

/**
 * Build a node from its home: validate the config (a bad one throws ConfigError and nothing
 * starts), load the keys, build libp2p, the services and the admin API. Nothing listens yet.
 */
export async function createNode (init: NodeInit): Promise<BttNode> {
  const definitions = init.services ?? []
  const paths = await assertInitialised(init.home)
  const config = await loadConfig({ file: paths.config, services: definitions, env: init.env, overrides: init.overrides })
  const logger = init.logger ?? await createLogger({ level: config.log.level })
  const identity = await loadIdentity(paths)
  const wallet = await loadWallet(paths)
  const token = await readApiToken(paths)
  const privateKey = libp2pKeyOf(identity)
  // loaded here, not at import: CLI commands that only read files or call the API start faster
  const { createP2PHost } = await import('./p2p.js')
  const p2p = await createP2PHost({ privateKey, listen: config.p2p.listen, announce: config.p2p.announce })
  const peerId = p2p.peerId.toString()
  const metrics = createMetrics({ version: VERSION, peerId })
  let payments: Payments | undefined
  const requirePayments = (): Payments => {
    if (payments === undefined) throw new NodeError('PAYMENTS_NOT_READY', 'payments are not started yet')
    return payments
  }
  const servicePayments = (): ServicePayments => servicePaymentsOf(requirePayments())
  registerChannelMetrics(metrics.registry, () => payments)
  const services = new ServiceManager({
    definitions,
    sections: config.services,
    registrar: p2p,
    p2p,
    payments: servicePayments,
    logger,
    metrics: metrics.registry,
    dataRoot: paths.dataDir,
    persistEnabled: async (name, enabled) => { await setConfigValue(paths.config, `services.${name}.enabled`, enabled, definitions) },
    onState: (name, state) => {
      metrics.setServiceState(name, state)
      if (state === 'running' || state === 'stopped' || state === 'failed') offers.update()
    }
  })
  const offers = new OfferPublisher({
    config: config.discovery,
    identity,
    dataDir: paths.dataDir,
    logger: logger.child({ module: 'discovery' }),
    running: () => services.running(),
    addrs: () => p2p.getMultiaddrs().map(String),
    ledgerId: () => requirePayments().ledgerId
  })
  for (const name of services.names()) metrics.setServiceState(name, 'stopped')

  let startedAt = 0
  let api: AdminServer | undefined
  const status = (): NodeStatus => ({
    version: VERSION,
    nodeVersion: process.version,
    uptimeSeconds: startedAt === 0 ? 0 : Math.floor((Date.now() - startedAt) / 1000),
    peerId,
    listenAddresses: p2p.getMultiaddrs().map(String),
    api: { url: api?.url ?? '' },
    home: paths.home,
    services: services.list(),
    discovery: offers.status()
  })
  const adminApp = createAdminApp({
    token,
    allowedHosts: config.api.allowed_hosts,
    status,
    services,
    metrics,
    logger: logger.child({ module: 'api' }),
    extraRoutes: { '/v1': paymentsRoutes(requirePayments) }
  })

  const lifecycle = new Lifecycle([
    { name: 'runtime-lock', start: async () => { await claimRuntime(paths) }, stop: async () => {} },
    {
      name: 'payments',
      start: async () => { payments = await startPayments({ config, dataDir: paths.dataDir, wallet, logger }) },
      stop: async () => { await payments?.stop() }
    },
    { name: 'libp2p', start: async () => { await p2p.start() }, stop: async () => { await p2p.stop() } },
    { name: 'services', start: async () => { await services.startEnabled() }, stop: async () => { await services.stopAll() } },
    // after the services (it offers what runs), stopped before them (the offer stops refreshing first)
    { name: 'discovery', start: async () => { offers.start() }, stop: async () => { await offers.stop() } },
    {
      name: 'admin-api',
      start: async () => { api = await listenAdminApi(adminApp, config.api.host, config.api.port) },
      stop: async () => { await api?.close() }
    },
    {
      name: 'runtime-file',
      start: async () => { await writeRuntimeInfo(paths, { pid: process.pid, apiUrl: api?.url ?? '', peerId, startedAt: new Date(startedAt).toISOString() }) },
      stop: async () => { await removeRuntimeInfo(paths) }
    }
  ], logger)

  let state: 'new' | 'started' | 'stopped' = 'new'
  return {
    peerId,
    home: paths.home,
    config,
    adminApp,
    get apiUrl () { return api?.url ?? '' },
    status,
    async start () {
      if (state !== 'new') throw new Error('a node can be started once')
      startedAt = Date.now()
      await lifecycle.start()
      state = 'started'
      logger.info({ version: VERSION, peerId, api: api?.url, listen: status().listenAddresses }, 'node started')
    },
    async stop () {
      if (state === 'stopped') return
      state = 'stopped'
      await lifecycle.stop()
      logger.info('node stopped')
      logger.flush()
    }
  }
}
