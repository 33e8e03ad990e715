import { createHash, timingSafeEqual } from 'node:crypto'
import { isIP } from 'node:net'
import { Hono } from 'hono'
import { bodyLimit } from 'hono/body-limit'
import { HTTPException } from 'hono/http-exception'
import type { Logger } from 'pino'
import { API_MAX_BODY_BYTES } from '../constants.js'

/** Service routes that stream request bodies: `/v1/services/<name>/stream/…`. */
const STREAM_ROUTE = /^\/v1\/services\/[a-z][a-z0-9-]*\/stream\//
import { HostForbiddenError, RouteNotFoundError, ServiceNotRunningError, UnauthorizedError } from '../errors.js'
import type { NodeMetrics } from '../metrics.js'
import type { ServiceManager } from '../service.js'
import { errorHandler } from './errors.js'
import type { NodeStatus, ServiceChangeResult } from './types.js'

export interface AdminApiInit {
  token: string
  /** Host names (no port) accepted in the Host header besides the loopback names. */
  allowedHosts: readonly string[]
  status(): NodeStatus
  services: Pick<ServiceManager, 'list' | 'info' | 'enable' | 'disable' | 'adminRoutes'>
  metrics: Pick<NodeMetrics, 'registry' | 'apiRequests'>
  logger: Logger
  /** More route groups by mount path, e.g. `{ '/v1': walletAndChannelRoutes }`, behind the same auth. */
  extraRoutes?: Record<string, Hono>
}

const LOOPBACK_HOSTS = ['localhost', '127.0.0.1', '::1']

/**
 * The admin API. Every route needs `Authorization: Bearer <token>`, and the Host header must name
 * this machine (or an allowed proxy name) so that a web page cannot reach it by DNS rebinding.
 */
export function createAdminApp (init: AdminApiInit): Hono {
  const app = new Hono()
  const onError = errorHandler(init.logger)
  const allowed = new Set([...LOOPBACK_HOSTS, ...init.allowedHosts].map(normaliseHost))
  const tokenDigest = sha256(init.token)

  app.onError(onError)
  app.notFound(c => { throw new RouteNotFoundError(c.req.method, c.req.path) })

  app.use('*', async (c, next) => {
    const host = normaliseHost(hostnameOf(c.req.header('host') ?? new URL(c.req.url).host))
    if (!allowed.has(host)) throw new HostForbiddenError(host)
    const match = /^Bearer ([^\s]+)$/.exec(c.req.header('authorization') ?? '')
    if (match === null || !timingSafeEqual(sha256(match[1] as string), tokenDigest)) throw new UnauthorizedError()
    try {
      await next()
    } finally {
      init.metrics.apiRequests.inc({ method: c.req.method, route: c.req.routePath, status: String(c.res.status) })
    }
  })
  // a service's /stream/ routes take bodies of any size (file uploads) and enforce their own limits
  const limit = bodyLimit({ maxSize: API_MAX_BODY_BYTES, onError: () => { throw new HTTPException(413, { message: `request body over ${API_MAX_BODY_BYTES} bytes` }) } })
  app.use('*', async (c, next) => STREAM_ROUTE.test(c.req.path) ? await next() : await limit(c, next))

  app.get('/v1/status', c => c.json(init.status()))
  app.get('/v1/services', c => c.json({ services: init.services.list() }))
  app.get('/v1/services/:name', c => c.json(init.services.info(c.req.param('name'))))
  app.post('/v1/services/:name/enable', async c => {
    const result: ServiceChangeResult = { service: await init.services.enable(c.req.param('name')), applied: 'live' }
    return c.json(result)
  })
  app.post('/v1/services/:name/disable', async c => {
    const result: ServiceChangeResult = { service: await init.services.disable(c.req.param('name')), applied: 'live' }
    return c.json(result)
  })
  // A running service's own routes, e.g. GET /v1/services/storage/contracts.
  const mounted = new WeakSet<Hono>()
  app.all('/v1/services/:name/*', async c => {
    const name = c.req.param('name')
    const { state, routes } = init.services.adminRoutes(name)
    if (state !== 'running') throw new ServiceNotRunningError(name, state)
    if (routes === undefined) throw new RouteNotFoundError(c.req.method, c.req.path)
    if (!mounted.has(routes)) {
      routes.onError(onError)
      routes.notFound(sub => { throw new RouteNotFoundError(sub.req.method, c.req.path) })
      mounted.add(routes)
    }
    const url = new URL(c.req.url)
    url.pathname = url.pathname.slice(`/v1/services/${name}`.length)
    return await routes.fetch(new Request(url, c.req.raw))
  })
  for (const [path, routes] of Object.entries(init.extraRoutes ?? {})) app.route(path, routes)
  app.get('/metrics', async c => {
    return c.body(await init.metrics.registry.metrics(), 200, { 'Content-Type': init.metrics.registry.contentType })
  })
  return app
}

function sha256 (text: string): Buffer {
  return createHash('sha256').update(text).digest()
}

/** `[::1]:7070` → `::1`, `Localhost:7070` → `localhost`. */
function hostnameOf (hostHeader: string): string {
  if (hostHeader.startsWith('[')) {
    const end = hostHeader.indexOf(']')
    return end === -1 ? hostHeader : hostHeader.slice(1, end)
  }
  if (isIP(hostHeader) === 6) return hostHeader
  const colon = hostHeader.lastIndexOf(':')
  return colon === -1 ? hostHeader : hostHeader.slice(0, colon)
}

function normaliseHost (host: string): string {
  return host.toLowerCase().replace(/\.$/, '')
}
