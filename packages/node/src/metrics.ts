import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client'
import { METRICS_PREFIX } from './constants.js'
import type { ServiceState } from './service.js'

export interface NodeMetrics {
  registry: Registry
  apiRequests: Counter<'method' | 'route' | 'status'>
  serviceUp: Gauge<'service'>
  setServiceState(name: string, state: ServiceState): void
}

/** A registry of its own (never prom-client's global one), with process metrics, all prefixed `btt_`. */
export function createMetrics (labels: { version: string, peerId: string }): NodeMetrics {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: METRICS_PREFIX })
  const info = new Gauge({
    name: `${METRICS_PREFIX}node_info`,
    help: 'Constant 1, labelled with the node version and peer id',
    labelNames: ['version', 'peer_id'] as const,
    registers: [registry]
  })
  info.set({ version: labels.version, peer_id: labels.peerId }, 1)
  const apiRequests = new Counter({
    name: `${METRICS_PREFIX}api_requests_total`,
    help: 'Admin API requests by method, matched route and status',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [registry]
  })
  const serviceUp = new Gauge({
    name: `${METRICS_PREFIX}service_up`,
    help: '1 while a service is running, 0 otherwise',
    labelNames: ['service'] as const,
    registers: [registry]
  })
  return {
    registry,
    apiRequests,
    serviceUp,
    setServiceState: (name, state) => { serviceUp.set({ service: name }, state === 'running' ? 1 : 0) }
  }
}

/** What the channel gauges read at scrape time. */
export interface ChannelSource {
  store: { listIncoming(): Array<{ status: string, deposit: bigint, claimed: bigint, highest: bigint }>, listOutgoing(): Array<{ status: string, deposit: bigint, spent: bigint }> }
  meter: { bannedCount(): number }
}

/**
 * Money gauges, read from the channel store when scraped: channels by direction and status,
 * deposits, what vouchers hold that the ledger has not paid yet (the provider's exposure to a
 * payer who refunds before a claim), what this node has locked in its own open channels, and the
 * payers banned now. BTT as floats for dashboards; exact amounts are in GET /v1/channels.
 */
export function registerChannelMetrics (registry: Registry, source: () => ChannelSource | undefined): void {
  const gauge = (name: string, help: string, labelNames: string[], collect: (g: Gauge<string>) => void): void => {
    new Gauge({ name, help, labelNames, registers: [registry], collect () { this.reset(); collect(this) } })
  }
  gauge('btt_channels', 'Payment channels by direction and status', ['direction', 'status'], g => {
    const s = source()
    for (const c of s?.store.listIncoming() ?? []) g.inc({ direction: 'incoming', status: c.status })
    for (const c of s?.store.listOutgoing() ?? []) g.inc({ direction: 'outgoing', status: c.status })
  })
  gauge('btt_channel_deposit_btt', 'Deposits of open channels, BTT (float)', ['direction'], g => {
    const s = source()
    g.set({ direction: 'incoming' }, toBtt(sum(s?.store.listIncoming().filter(c => c.status === 'open').map(c => c.deposit))))
    g.set({ direction: 'outgoing' }, toBtt(sum(s?.store.listOutgoing().filter(c => c.status === 'open').map(c => c.deposit))))
  })
  gauge('btt_channel_received_btt', 'Highest vouchers received on incoming channels, BTT (float)', [], g => {
    g.set(toBtt(sum(source()?.store.listIncoming().map(c => c.highest))))
  })
  gauge('btt_channel_unclaimed_btt', 'Received in vouchers and not yet paid by the ledger (claim exposure), BTT (float)', [], g => {
    g.set(toBtt(sum(source()?.store.listIncoming().map(c => c.highest > c.claimed ? c.highest - c.claimed : 0n))))
  })
  gauge('btt_channel_spent_btt', 'Paid on outgoing channels, BTT (float)', [], g => {
    g.set(toBtt(sum(source()?.store.listOutgoing().map(c => c.spent))))
  })
  gauge('btt_channel_locked_btt', 'Unspent deposits of this node\'s open outgoing channels, BTT (float)', [], g => {
    g.set(toBtt(sum(source()?.store.listOutgoing().filter(c => c.status === 'open').map(c => c.deposit - c.spent))))
  })
  gauge('btt_payment_bans', 'Payers banned now for failing to pay (all services metered by the node)', [], g => {
    g.set(source()?.meter.bannedCount() ?? 0)
  })
}

function sum (xs: bigint[] | undefined): bigint {
  let n = 0n
  for (const x of xs ?? []) n += x
  return n
}

/** Base units as a float of BTT: whole BTT and the fraction apart, so large values keep their leading digits. */
function toBtt (baseUnits: bigint): number {
  return Number(baseUnits / 10n ** 18n) + Number(baseUnits % 10n ** 18n) / 1e18
}
