import { mkdtemp, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Hono } from 'hono'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { initHome } from '../home.js'
import { createNode, type BttNode } from '../node.js'
import { defineService } from '../service.js'

const notes = defineService({
  name: 'notes',
  description: 'test service with admin routes',
  config: z.object({}),
  create: () => {
    const routes = new Hono()
    routes.get('/hello', c => c.json({ hello: 'world' }))
    routes.post('/echo', async c => c.json(await c.req.json()))
    routes.get('/boom', () => { throw new Error('secret internals') })
    return { name: 'notes', protocols: [], pricing: [{ item: 'note', unit: 'note', price: 5n }], adminRoutes: routes, start: async () => {}, stop: async () => {} }
  }
})

let node: BttNode
let token: string
let home: string

beforeAll(async () => {
  home = await mkdtemp(join(tmpdir(), 'btt-api-'))
  await initHome(home)
  token = (await readFile(join(home, 'api.token'), 'utf8')).trim()
  node = await createNode({ home, services: [notes], logger: pino({ level: 'silent' }), overrides: { 'api.allowed_hosts': ['btt.example.org'] } })
})

const auth = () => ({ authorization: `Bearer ${token}` })

/** Turn a route pattern into a concrete path: params and wildcards get sample values. */
function concrete (path: string): string {
  return path.replace(/:[a-zA-Z]+/g, 'notes').replace(/\*$/, 'hello')
}

describe('admin API auth', () => {
  it('answers 401 on every route in the route table without the token, and with a wrong one', async () => {
    const routes = node.adminApp.routes.filter(r => r.method !== 'ALL' || r.path !== '/*')
    const seen = new Set(routes.map(r => `${r.method} ${r.path}`))
    // the table is what the app really serves: a route added later is covered automatically
    expect(seen).toContain('GET /v1/status')
    expect(seen).toContain('POST /v1/services/:name/enable')
    expect(seen).toContain('GET /metrics')
    for (const r of routes) {
      const method = r.method === 'ALL' ? 'GET' : r.method
      for (const headers of [{}, { authorization: 'Bearer wrong-token' }, { authorization: `Basic ${token}` }, { authorization: `Bearer ${token}x` }]) {
        const res = await node.adminApp.request(concrete(r.path), { method, headers })
        expect(res.status, `${method} ${r.path} ${JSON.stringify(headers)}`).toBe(401)
        expect(await res.json()).toEqual({ error: { code: 'API_UNAUTHORIZED', message: expect.any(String) } })
        expect(res.headers.get('www-authenticate')).toContain('Bearer')
      }
    }
  })

  it('answers 401 for unknown paths too, so route names do not leak', async () => {
    expect((await node.adminApp.request('/v1/secret-admin')).status).toBe(401)
  })

  it('refuses a foreign Host header even with the token (DNS rebinding)', async () => {
    for (const host of ['evil.example.com', 'evil.example.com:7070', '127.0.0.1.evil.com', 'localhost.evil.com:7070']) {
      const res = await node.adminApp.request('/v1/status', { headers: { ...auth(), host } })
      expect(res.status, host).toBe(403)
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('API_HOST_FORBIDDEN')
    }
  })

  it('accepts loopback names and configured proxy names', async () => {
    for (const host of ['127.0.0.1:7070', 'localhost', 'LOCALHOST:1', '[::1]:7070', 'btt.example.org', 'btt.example.org.:443']) {
      const res = await node.adminApp.request('/v1/status', { headers: { ...auth(), host } })
      expect(res.status, host).toBe(200)
    }
  })
})

describe('admin API routes', () => {
  it('serves status with version, peer id and services', async () => {
    const res = await node.adminApp.request('/v1/status', { headers: auth() })
    expect(res.status).toBe(200)
    const body = await res.json() as Record<string, unknown>
    expect(body).toMatchObject({ version: '0.1.0', peerId: node.peerId, home, services: [{ name: 'notes', enabled: false, state: 'stopped' }] })
    expect(node.peerId).toMatch(/^12D3KooW/)
  })

  it('enables and disables a service, persisting the flag, and mounts its routes only while running', async () => {
    const before = await node.adminApp.request('/v1/services/notes/hello', { headers: auth() })
    expect(before.status).toBe(409)
    expect(((await before.json()) as { error: { code: string } }).error.code).toBe('SERVICE_NOT_RUNNING')

    const enabled = await node.adminApp.request('/v1/services/notes/enable', { method: 'POST', headers: auth() })
    expect(await enabled.json()).toMatchObject({ applied: 'live', service: { name: 'notes', enabled: true, state: 'running', pricing: [{ item: 'note', unit: 'note', price: '5' }] } })
    expect(await readFile(join(home, 'config.toml'), 'utf8')).toMatch(/\[services\.notes\]\s+enabled = true/)

    const hello = await node.adminApp.request('/v1/services/notes/hello', { headers: auth() })
    expect(await hello.json()).toEqual({ hello: 'world' })
    const echo = await node.adminApp.request('/v1/services/notes/echo', { method: 'POST', headers: { ...auth(), 'content-type': 'application/json' }, body: '{"a":1}' })
    expect(await echo.json()).toEqual({ a: 1 })
    // a service's own errors come back in the one error format, without internals
    const boom = await node.adminApp.request('/v1/services/notes/boom', { headers: auth() })
    expect(boom.status).toBe(500)
    expect(await boom.json()).toEqual({ error: { code: 'INTERNAL', message: 'internal error; see the node log' } })
    const missing = await node.adminApp.request('/v1/services/notes/nope', { headers: auth() })
    expect(missing.status).toBe(404)

    const disabled = await node.adminApp.request('/v1/services/notes/disable', { method: 'POST', headers: auth() })
    expect(await disabled.json()).toMatchObject({ applied: 'live', service: { enabled: false, state: 'stopped' } })
    expect(await readFile(join(home, 'config.toml'), 'utf8')).toMatch(/\[services\.notes\]\s+enabled = false/)
    expect((await node.adminApp.request('/v1/services/notes/hello', { headers: auth() })).status).toBe(409)
  })

  it('maps errors to statuses with a JSON body', async () => {
    const unknown = await node.adminApp.request('/v1/services/nope/enable', { method: 'POST', headers: auth() })
    expect(unknown.status).toBe(404)
    expect(await unknown.json()).toEqual({ error: { code: 'SERVICE_UNKNOWN', message: 'unknown service "nope" (known: notes)' } })
    const noRoute = await node.adminApp.request('/v1/nothing', { headers: auth() })
    expect(noRoute.status).toBe(404)
    expect(((await noRoute.json()) as { error: { code: string } }).error.code).toBe('API_NOT_FOUND')
  })

  it('refuses bodies over the limit', async () => {
    await node.adminApp.request('/v1/services/notes/enable', { method: 'POST', headers: auth() })
    const res = await node.adminApp.request('/v1/services/notes/echo', {
      method: 'POST',
      headers: { ...auth(), 'content-type': 'application/json' },
      body: JSON.stringify({ big: 'x'.repeat(2 * 1024 * 1024) })
    })
    expect(res.status).toBe(413)
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('API_BODY_TOO_LARGE')
    await node.adminApp.request('/v1/services/notes/disable', { method: 'POST', headers: auth() })
  })

  it('serves Prometheus metrics with the btt_ prefix', async () => {
    const res = await node.adminApp.request('/metrics', { headers: auth() })
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toContain('text/plain')
    const text = await res.text()
    expect(text).toContain(`btt_node_info{version="0.1.0",peer_id="${node.peerId}"} 1`)
    expect(text).toMatch(/btt_api_requests_total\{method="GET",route="\/v1\/status",status="200"\} \d+/)
    expect(text).toContain('btt_service_up{service="notes"} 0')
    expect(text).toContain('btt_process_resident_memory_bytes')
    const names = [...text.matchAll(/^# TYPE (\S+)/gm)].map(m => m[1])
    expect(names.length).toBeGreaterThan(5)
    expect(names.filter(n => !n!.startsWith('btt_'))).toEqual([])
  })
})

afterAll(async () => {
  await node.stop()
})
