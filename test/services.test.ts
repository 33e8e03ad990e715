import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { AdminClient, createNode, initHome, readApiToken, homePaths, type BttNode } from '@btt/node'
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { runCli, startNodeProcess, tempHome } from './helpers/cli.js'
import { ECHO_PROTOCOL, echoService } from './helpers/echo-service.js'
import { createTestNode } from './helpers/node.js'

const nodes: BttNode[] = []
afterEach(async () => {
  for (const n of nodes.splice(0)) await n.stop()
})

async function client (node: BttNode): Promise<AdminClient> {
  return new AdminClient({ url: node.apiUrl, token: await readApiToken(homePaths(node.home)) })
}

function loopbackAddr (node: BttNode): string {
  const addr = node.status().listenAddresses.find(a => a.startsWith('/ip4/127.0.0.1/'))
  if (addr === undefined) throw new Error('node has no loopback address')
  return addr
}

describe('service plugins over libp2p', () => {
  it('a service registers its protocol; another node dials it over noise; disabling unregisters it', async () => {
    const provider = await createTestNode({ services: [echoService] })
    const requester = await createTestNode({ services: [echoService] })
    nodes.push(provider, requester)
    const pc = await client(provider)
    const rc = await client(requester)

    // not enabled: the protocol is not offered
    expect(provider.status().services[0]).toMatchObject({ name: 'echo', enabled: false, state: 'stopped', protocols: [] })
    await rc.enableService('echo')
    await expect(rc.serviceRequest('echo', 'POST', '/ask', { addr: loopbackAddr(provider), text: 'hi' }))
      .rejects.toMatchObject({ code: 'ECHO_DIAL_FAILED', status: 502, message: 'UnsupportedProtocolError' })

    const enabled = await pc.enableService('echo')
    expect(enabled).toMatchObject({ applied: 'live', service: { state: 'running', protocols: [ECHO_PROTOCOL], pricing: [{ item: 'echo', unit: 'message', price: '1000000000000000' }] } })

    const answer = await rc.serviceRequest<Record<string, string>>('echo', 'POST', '/ask', { addr: loopbackAddr(provider), text: 'hello provider' })
    expect(answer).toEqual({ echo: 'hello provider', from: requester.peerId, encryption: '/noise', multiplexer: '/yamux/1.0.0' })
    expect((await pc.service('echo')).details).toEqual({ served: 1 })

    const disabled = await pc.disableService('echo')
    expect(disabled.service).toMatchObject({ enabled: false, state: 'stopped', protocols: [] })
    // the provider no longer negotiates the protocol: the requester's dial fails
    await expect(rc.serviceRequest('echo', 'POST', '/ask', { addr: loopbackAddr(provider), text: 'still there?' }))
      .rejects.toMatchObject({ code: 'ECHO_DIAL_FAILED', message: 'UnsupportedProtocolError' })
    // and enabling again brings it back on the same host
    await pc.enableService('echo')
    expect(await rc.serviceRequest('echo', 'POST', '/ask', { addr: loopbackAddr(provider), text: 'back' })).toMatchObject({ echo: 'back' })
  })

  it('a negative price in a service section stops the node from being built', async () => {
    const home = await tempHome()
    await initHome(home)
    await import('node:fs/promises').then(async fs => { await fs.writeFile(join(home, 'config.toml'), '[services.echo]\nprice = "-0.1"\n') })
    await expect(createNode({ home, services: [echoService], logger: pino({ level: 'silent' }) })).rejects.toMatchObject({
      code: 'CONFIG_INVALID',
      issues: [{ key: 'services.echo.price', problem: expect.stringContaining('negative') }]
    })
  })
})

describe('btt-node services on a running node', () => {
  it('`services enable` shows in `status --json` and survives a restart', async () => {
    const home = await tempHome()
    await initHome(home)
    let node = await createTestNode({ services: [echoService], home })
    nodes.push(node)

    const list = await runCli(['services', 'list', '--home', home, '--json'])
    expect(JSON.parse(list.stdout)).toMatchObject({ running: true, services: [{ name: 'echo', enabled: false, state: 'stopped' }] })

    const enable = await runCli(['services', 'enable', 'echo', '--home', home])
    expect(enable.code, enable.stderr).toBe(0)
    expect(enable.stdout).toContain('echo: enabled, now running')

    const status = JSON.parse((await runCli(['status', '--home', home, '--json'])).stdout) as { services: unknown[] }
    expect(status.services).toEqual([expect.objectContaining({ name: 'echo', enabled: true, state: 'running', protocols: [ECHO_PROTOCOL] })])
    expect(await readFile(join(home, 'config.toml'), 'utf8')).toMatch(/\[services\.echo\]\s+enabled = true/)

    await node.stop()
    nodes.length = 0
    node = await createTestNode({ services: [echoService], home })
    nodes.push(node)
    const after = JSON.parse((await runCli(['status', '--home', home, '--json'])).stdout) as { services: unknown[], api: { url: string } }
    expect(after.api.url).toBe(node.apiUrl)
    expect(after.services).toEqual([expect.objectContaining({ name: 'echo', enabled: true, state: 'running' })])

    const unknown = await runCli(['services', 'enable', 'nope', '--home', home])
    expect(unknown.code).toBe(1)
    expect(unknown.stderr).toContain('unknown service "nope" (known: echo)')

    const disable = await runCli(['services', 'disable', 'echo', '--home', home, '--json'])
    expect(JSON.parse(disable.stdout)).toMatchObject({ applied: 'live', service: { name: 'echo', enabled: false, state: 'stopped' } })
  })

  it('with the node stopped, services commands read config.toml, refuse names this build does not have, and an enable applies at the next start', async () => {
    const home = await tempHome()
    await runCli(['init', '--home', home])
    const res = await runCli(['services', 'enable', 'echo', '--home', home])
    expect(res.code).toBe(78)
    expect(res.stderr).toContain('unknown service "echo"')
    const list = await runCli(['services', 'list', '--home', home, '--json'])
    expect(JSON.parse(list.stdout)).toMatchObject({ running: false, services: [{ name: 'seeding', enabled: false, state: 'stopped' }, { name: 'storage', enabled: false, state: 'stopped' }, { name: 'proxy', enabled: false, state: 'stopped' }] })
    // the real CLI and a real `btt-node start`: enabled offline, running after the start
    const enabled = await runCli(['services', 'enable', 'seeding', '--home', home])
    expect(enabled.code, enabled.stderr).toBe(0)
    expect(await readFile(join(home, 'config.toml'), 'utf8')).toMatch(/\[services\.seeding\][^[]*enabled = true/)
    const node = await startNodeProcess(home, [], {
      BTT_NODE_SERVICES_SEEDING_LISTEN_HOST: '127.0.0.1',
      BTT_NODE_SERVICES_SEEDING_LISTEN_PORT: '0',
      BTT_NODE_SERVICES_SEEDING_DHT: 'false'
    })
    try {
      const status = await runCli(['status', '--json', '--home', home])
      expect(JSON.parse(status.stdout).services).toEqual([expect.objectContaining({ name: 'seeding', enabled: true, state: 'running' }), expect.objectContaining({ name: 'storage', enabled: false, state: 'stopped' }), expect.objectContaining({ name: 'proxy', enabled: false, state: 'stopped' })])
    } finally {
      expect((await node.signal('SIGTERM')).code).toBe(0)
    }
  }, 60_000)
})
