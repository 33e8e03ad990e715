import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { z } from 'zod'
import { ServiceManager, type ProtocolRegistrar, type ServiceDefinition } from './service.js'

/** Unit test of the manager alone: the registrar is a recorder (the real libp2p path is in test/services.test.ts). */
function setup (defs: ServiceDefinition[], enabled: string[] = [], events: string[] = []) {
  const registered = new Set<string>()
  const registrar: ProtocolRegistrar = {
    handle: async (id) => { events.push(`handle ${id}`); registered.add(id) },
    unhandle: async (id) => { events.push(`unhandle ${id}`); registered.delete(id) }
  }
  const persisted: Array<[string, boolean]> = []
  return {
    events,
    registered,
    persisted,
    make: async () => new ServiceManager({
      definitions: defs,
      sections: Object.fromEntries(defs.map(d => [d.name, { enabled: enabled.includes(d.name) }])),
      registrar,
      p2p: {} as never,
      payments: () => { throw new Error('no payments in this unit test') },
      logger: pino({ level: 'silent' }),
      metrics: new Registry(),
      dataRoot: await mkdtemp(join(tmpdir(), 'btt-svc-')),
      persistEnabled: async (name, on) => { persisted.push([name, on]) }
    })
  }
}

function svc (name: string, events: string[], opts: { failStart?: boolean, instanceName?: string } = {}): ServiceDefinition {
  return {
    name,
    description: name,
    config: z.object({}),
    create: () => ({
      name: opts.instanceName ?? name,
      protocols: [{ id: `/${name}/1`, handler: () => {} }, { id: `/${name}/2`, handler: () => {} }],
      pricing: [],
      start: async () => {
        events.push(`start ${name}`)
        if (opts.failStart === true) throw new Error('port in use')
      },
      stop: async () => { events.push(`stop ${name}`) }
    })
  }
}

describe('ServiceManager', () => {
  it('startEnabled starts only enabled services; stopAll stops them in reverse', async () => {
    const events: string[] = []
    const s = setup([svc('a', events), svc('b', events), svc('c', events)], ['a', 'c'])
    const m = await s.make()
    await m.startEnabled()
    expect(m.list().map(i => [i.name, i.state])).toEqual([['a', 'running'], ['b', 'stopped'], ['c', 'running']])
    await m.stopAll()
    expect(events).toEqual(['start a', 'start c', 'stop c', 'stop a'])
    expect(s.registered.size).toBe(0)
    expect(s.persisted).toEqual([])
  })

  it('orders start, handle, unhandle, stop and persists before applying', async () => {
    const events: string[] = []
    const s = setup([svc('a', events)], [], events)
    const m = await s.make()
    await m.enable('a')
    expect([...s.registered]).toEqual(['/a/1', '/a/2'])
    await m.disable('a')
    expect([...s.registered]).toEqual([])
    expect(events).toEqual(['start a', 'handle /a/1', 'handle /a/2', 'unhandle /a/1', 'unhandle /a/2', 'stop a'])
    expect(s.persisted).toEqual([['a', true], ['a', false]])
  })

  it('a service that fails to start is marked failed, leaves no protocol behind, and the others start', async () => {
    const events: string[] = []
    const s = setup([svc('bad', events, { failStart: true }), svc('good', events)], ['bad', 'good'])
    const m = await s.make()
    await m.startEnabled()
    expect(m.info('bad')).toMatchObject({ enabled: true, state: 'failed', error: 'port in use' })
    expect(m.info('good')).toMatchObject({ state: 'running' })
    expect([...s.registered]).toEqual(['/good/1', '/good/2'])
    await expect(m.enable('bad')).rejects.toMatchObject({ code: 'SERVICE_START_FAILED' })
    await m.disable('bad')
    expect(m.info('bad')).toMatchObject({ enabled: false, state: 'stopped' })
  })

  it('serialises concurrent enable/disable of one service', async () => {
    const events: string[] = []
    const s = setup([svc('a', events)])
    const m = await s.make()
    await Promise.all([m.enable('a'), m.enable('a'), m.disable('a'), m.enable('a')])
    expect(events).toEqual(['start a', 'stop a', 'start a'])
    expect(m.info('a')).toMatchObject({ enabled: true, state: 'running' })
    expect([...s.registered]).toEqual(['/a/1', '/a/2'])
  })

  it('refuses bad definitions and unknown names', async () => {
    const events: string[] = []
    await expect(setup([svc('Bad Name', events)]).make()).rejects.toMatchObject({ code: 'SERVICE_DEFINITION_INVALID' })
    await expect(setup([svc('a', events), svc('a', events)]).make()).rejects.toMatchObject({ code: 'SERVICE_DEFINITION_INVALID' })
    const m = await setup([svc('a', events, { instanceName: 'b' })]).make()
    await expect(m.enable('a')).rejects.toMatchObject({ code: 'SERVICE_START_FAILED' })
    expect(() => m.info('zzz')).toThrow(expect.objectContaining({ code: 'SERVICE_UNKNOWN' }))
  })
})
