import { access, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { runCli, startNodeProcess, tempHome, type NodeProcess } from './helpers/cli.js'

const running: NodeProcess[] = []
afterEach(async () => {
  for (const n of running.splice(0)) if (n.child.exitCode === null) await n.signal('SIGKILL')
})

async function exists (path: string): Promise<boolean> {
  return await access(path).then(() => true, () => false)
}

describe('btt-node init / start / status / SIGTERM', () => {
  it('starts in the background, reports its peer id in status --json, and exits 0 on SIGTERM within 10 s', async () => {
    const home = await tempHome()
    const init = await runCli(['init', '--home', home, '--json'])
    expect(init.code, init.stderr).toBe(0)
    const created = JSON.parse(init.stdout) as { peerId: string, home: string }
    expect(created.peerId).toMatch(/^12D3KooW[1-9A-HJ-NP-Za-km-z]{44}$/)

    const node = await startNodeProcess(home)
    running.push(node)
    const status = await runCli(['status', '--home', home, '--json'])
    expect(status.code, status.stderr).toBe(0)
    const body = JSON.parse(status.stdout) as { peerId: string, nodeVersion: string, listenAddresses: string[], api: { url: string }, uptimeSeconds: number }
    expect(body.peerId).toBe(created.peerId)
    expect(body.nodeVersion).toMatch(/^v24\./)
    expect(body.api.url).toBe(node.apiUrl)
    expect(body.listenAddresses).toContainEqual(expect.stringMatching(new RegExp(`^/ip4/127\\.0\\.0\\.1/tcp/\\d+/p2p/${created.peerId}$`)))

    const human = await runCli(['status', '--home', home])
    expect(human.stdout).toContain(`peer id    ${created.peerId}`)

    const { code, ms } = await node.signal('SIGTERM')
    expect(code, node.output()).toBe(0)
    expect(ms).toBeLessThan(10_000)
    expect(node.output()).toContain('node stopped')
    expect(await exists(join(home, 'node.json'))).toBe(false)
  })

  it('exits 0 on SIGINT too', async () => {
    const home = await tempHome()
    const node = await startNodeProcess(home, ['--init'])
    running.push(node)
    const { code } = await node.signal('SIGINT')
    expect(code, node.output()).toBe(0)
  })

  it('refuses a second node on the same home and a second init', async () => {
    const home = await tempHome()
    expect((await runCli(['init', '--home', home])).code).toBe(0)
    const again = await runCli(['init', '--home', home])
    expect(again.code).toBe(1)
    expect(again.stderr).toContain('already initialised')

    const node = await startNodeProcess(home)
    running.push(node)
    const second = await runCli(['start', '--home', home, '--api-port', '0', '--listen', '/ip4/127.0.0.1/tcp/0'])
    expect(second.code).toBe(1)
    expect(second.stderr).toContain(`already running on ${home} (pid ${node.pid})`)
    // the first node is unharmed
    expect((await runCli(['status', '--home', home, '--json'])).code).toBe(0)
  })

  it('start on a home that was never initialised says how to fix it', async () => {
    const home = await tempHome()
    const res = await runCli(['start', '--home', home, '--api-port', '0'])
    expect(res.code).toBe(1)
    expect(res.stderr).toContain('btt-node init')
  })

  it('status without a running node exits 3 with a clear message', async () => {
    const home = await tempHome()
    await runCli(['init', '--home', home])
    await writeFile(join(home, 'config.toml'), '[api]\nport = 1\n')
    const res = await runCli(['status', '--home', home])
    expect(res.code).toBe(3)
    expect(res.stderr).toContain('no node answers at http://127.0.0.1:1')
    const json = await runCli(['status', '--home', home, '--json'])
    expect(json.code).toBe(3)
    expect(JSON.parse(json.stdout)).toEqual({ error: { code: 'NODE_NOT_RUNNING', message: expect.any(String) } })
  })
})

describe('bad configuration: the node does not start and the message names the key', () => {
  it.each([
    ['wrong type', '[api]\nport = "7070"\n', {}, 'api.port'],
    ['unknown key', '[p2p]\nlisten_on = ["/ip4/127.0.0.1/tcp/0"]\n', {}, 'p2p.listen_on'],
    ['port out of range', '[api]\nport = 65536\n', {}, 'api.port'],
    ['not a TCP multiaddr', '[p2p]\nlisten = ["/ip4/127.0.0.1/udp/9"]\n', {}, 'p2p.listen.0'],
    ['unparsable TOML', '[api]\nport = = 3\n', {}, 'line 2'],
    ['unknown service', '[services.storage-x]\nenabled = true\n', {}, 'services.storage-x'],
    ['bad environment value', '', { BTT_NODE_API_PORT: 'x' }, 'api.port'],
    ['unknown environment setting', '', { BTT_NODE_LOG_LEVL: 'debug' }, 'BTT_NODE_LOG_LEVL']
  ])('%s', async (_what, toml, env, key) => {
    const home = await tempHome()
    expect((await runCli(['init', '--home', home])).code).toBe(0)
    await writeFile(join(home, 'config.toml'), toml)
    const res = await runCli(['start', '--home', home], env)
    expect(res.code, res.stderr).toBe(78)
    expect(res.stderr).toContain(key)
    expect(res.stderr).toContain('invalid configuration')
    expect(await exists(join(home, 'node.json'))).toBe(false)
  })

  it('a flag value out of range is refused too', async () => {
    const home = await tempHome()
    await runCli(['init', '--home', home])
    const res = await runCli(['start', '--home', home, '--api-port', '99999'])
    expect(res.code).toBe(78)
    expect(res.stderr).toContain('api.port')
  })
})

describe('btt-node config', () => {
  it('sets validated values with the node stopped and reads them back', async () => {
    const home = await tempHome()
    await runCli(['init', '--home', home])
    const set = await runCli(['config', 'set', 'api.port', '7123', '--home', home])
    expect(set.code, set.stderr).toBe(0)
    expect(await readFile(join(home, 'config.toml'), 'utf8')).toMatch(/\[api\]\s+port = 7123/)
    const get = await runCli(['config', 'get', 'api.port', '--home', home, '--json'])
    expect(JSON.parse(get.stdout)).toEqual({ key: 'api.port', value: 7123 })
    const plain = await runCli(['config', 'get', 'api.port', '--home', home])
    expect(plain.stdout.trim()).toBe('7123')
    // the environment wins over the file
    const env = await runCli(['config', 'get', 'api.port', '--home', home], { BTT_NODE_API_PORT: '7200' })
    expect(env.stdout.trim()).toBe('7200')

    const bad = await runCli(['config', 'set', 'api.port', '-5', '--home', home])
    expect(bad.code).toBe(78)
    expect(bad.stderr).toContain('api.port')
    const unknown = await runCli(['config', 'set', 'api.portt', '1', '--home', home])
    expect(unknown.code).toBe(78)
    expect(unknown.stderr).toContain('api.portt')
    expect(await readFile(join(home, 'config.toml'), 'utf8')).toMatch(/port = 7123/)
  })

  it('config get without a key prints the whole effective config', async () => {
    const home = await tempHome()
    await runCli(['init', '--home', home])
    const res = await runCli(['config', 'get', '--home', home, '--json'])
    expect(JSON.parse(res.stdout)).toMatchObject({ key: '', value: { api: { port: 7070, host: '127.0.0.1' }, log: { level: 'info' }, services: {} } })
  })
})

describe('btt-node --help', () => {
  it('lists the topics and commands', async () => {
    const res = await runCli(['--help'])
    expect(res.code).toBe(0)
    for (const t of ['config', 'services', 'init', 'start', 'status']) expect(res.stdout).toContain(t)
  })
})
