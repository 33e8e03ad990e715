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
