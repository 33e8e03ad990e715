import { mkdtemp, readFile, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parse as parseToml } from 'smol-toml'
import { beforeEach, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { defineService } from '../service.js'
import { setConfigValue } from './edit.js'
import { loadConfig } from './load.js'
import { zAmount } from './schema.js'

const shop = defineService({
  name: 'shop',
  description: 'a service with a priced section',
  config: z.object({ price: zAmount.default(10n ** 15n), max_items: z.int().min(1).default(8), discount: zAmount.optional() }),
  create: () => { throw new Error('not built in config tests') }
})
const services = [shop]

let dir: string
let file: string
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'btt-config-'))
  file = join(dir, 'config.toml')
})

async function load (toml: string, env: Record<string, string> = {}, overrides: Record<string, unknown> = {}) {
  await writeFile(file, toml)
  return await loadConfig({ file, services, env, overrides })
}

async function issuesOf (toml: string, env: Record<string, string> = {}) {
  try {
    await load(toml, env)
  } catch (err) {
    return { code: (err as { code: string }).code, issues: (err as { issues: Array<{ key: string, problem: string }> }).issues, message: (err as Error).message }
  }
  throw new Error('config was accepted')
}

describe('loadConfig', () => {
  it('fills every default from an empty file', async () => {
    const config = await load('')
    expect(config.api).toEqual({ host: '127.0.0.1', port: 7070, allowed_hosts: [] })
    expect(config.log.level).toBe('info')
    expect(config.p2p.listen).toEqual(['/ip4/0.0.0.0/tcp/7171'])
    expect(config.services.shop).toEqual({ enabled: false, price: 10n ** 15n, max_items: 8 })
  })

  it('parses amounts exactly into bigint base units', async () => {
    const config = await load('[services.shop]\nprice = "12.000000000000000001"\n')
    expect(config.services.shop?.price).toBe(12_000_000_000_000_000_001n)
  })

  it('applies defaults < file < environment < flags', async () => {
    const toml = '[api]\nport = 7001\n[log]\nlevel = "warn"\n'
    expect((await load(toml)).api.port).toBe(7001)
    const fromEnv = await load(toml, { BTT_NODE_API_PORT: '7002', BTT_NODE_LOG_LEVEL: 'debug' })
    expect(fromEnv.api.port).toBe(7002)
    expect(fromEnv.log.level).toBe('debug')
    const fromFlags = await load(toml, { BTT_NODE_API_PORT: '7002' }, { 'api.port': 7003, 'log.level': undefined })
    expect(fromFlags.api.port).toBe(7003)
    expect(fromFlags.log.level).toBe('warn')
  })

  it('reads lists, booleans, amounts and service keys from the environment', async () => {
    const config = await load('', {
      BTT_NODE_P2P_LISTEN: '/ip4/127.0.0.1/tcp/1,/ip6/::1/tcp/2',
      BTT_NODE_API_ALLOWED_HOSTS: 'node.example.org',
      BTT_NODE_SERVICES_SHOP_ENABLED: 'true',
      BTT_NODE_SERVICES_SHOP_PRICE: '0.5',
      BTT_NODE_HOME: '/ignored/by/config'
    })
    expect(config.p2p.listen).toEqual(['/ip4/127.0.0.1/tcp/1', '/ip6/::1/tcp/2'])
    expect(config.api.allowed_hosts).toEqual(['node.example.org'])
    expect(config.services.shop).toMatchObject({ enabled: true, price: 5n * 10n ** 17n })
  })

  it.each([
    ['wrong type', '[api]\nport = "seventy"\n', 'api.port', 'integer'],
    ['unknown key', '[api]\nprot = 7070\n', 'api.prot', 'unknown key'],
    ['unknown section', '[apis]\nport = 7070\n', 'apis', 'unknown key'],
    ['port out of range', '[api]\nport = 70000\n', 'api.port', '0–65535'],
    ['negative port', '[api]\nport = -1\n', 'api.port', '0–65535'],
    ['negative price', '[services.shop]\nprice = "-0.5"\n', 'services.shop.price', 'negative'],
    ['float price', '[services.shop]\nprice = 0.5\n', 'services.shop.price', 'quoted BTT decimal'],
    ['price with too many decimals', '[services.shop]\nprice = "0.0000000000000000001"\n', 'services.shop.price', 'more than 18 decimals'],
    ['unknown service', '[services.shopp]\nenabled = true\n', 'services.shopp', 'unknown service "shopp" (known: shop)'],
    ['unknown key in a service', '[services.shop]\nenable = true\n', 'services.shop.enable', 'unknown key'],
    ['bad log level', '[log]\nlevel = "loud"\n', 'log.level', 'Invalid option'],
    ['bad multiaddr', '[p2p]\nlisten = ["/ip4/127.0.0.1/udp/1"]\n', 'p2p.listen.0', 'not a TCP multiaddr'],
    ['unparsable TOML', '[api\nport = 1\n', 'line 1, column 5', 'not valid TOML'],
    ['DHT bootstrap without a port', '[discovery]\nbootstrap = ["router.bittorrent.com"]\n', 'discovery.bootstrap.0', 'not host:port'],
    ['DHT bootstrap port 0', '[discovery]\nbootstrap = ["10.0.0.1:0"]\n', 'discovery.bootstrap.0', 'not host:port'],
    ['DHT bootstrap as a URL', '[discovery]\nbootstrap = ["udp://10.0.0.1:6881"]\n', 'discovery.bootstrap.0', 'not host:port'],
    ['DHT bootstrap IPv6', '[discovery]\nbootstrap = ["::1:6881"]\n', 'discovery.bootstrap.0', 'not host:port'],
    ['DHT port out of range', '[discovery]\nport = 65536\n', 'discovery.port', '0–65535']
  ])('rejects %s naming the key', async (_what, toml, key, problem) => {
    const { code, issues, message } = await issuesOf(toml)
    expect(code).toBe('CONFIG_INVALID')
    expect(issues).toContainEqual({ key, problem: expect.stringContaining(problem) })
    expect(message).toContain(key)
  })

  it('sets a service\'s optional key (no default) from the environment', async () => {
    const config = await load('', { BTT_NODE_SERVICES_SHOP_DISCOUNT: '0.25' })
    expect(config.services.shop).toMatchObject({ discount: 25n * 10n ** 16n })
    expect((await load('')).services.shop?.discount).toBeUndefined()
  })

  it('discovery: on by default with the mainline routers on udp 7171; bootstrap from the environment as a list', async () => {
    const config = await load('')
    expect(config.discovery).toEqual({ enabled: true, bootstrap: ['router.bittorrent.com:6881', 'router.utorrent.com:6881', 'dht.transmissionbt.com:6881'], host: '0.0.0.0', port: 7171 })
    const env = await load('', { BTT_NODE_DISCOVERY_BOOTSTRAP: '127.0.0.1:7000, dht.example.org:6881', BTT_NODE_DISCOVERY_ENABLED: 'false' })
    expect(env.discovery).toMatchObject({ enabled: false, bootstrap: ['127.0.0.1:7000', 'dht.example.org:6881'] })
  })

  it('rejects an unknown BTT_NODE_* variable and a badly typed one', async () => {
    const unknown = await issuesOf('', { BTT_NODE_API_PROT: '1' })
    expect(unknown.issues).toEqual([{ key: 'BTT_NODE_API_PROT', problem: expect.stringContaining('unknown environment setting') }])
    const typed = await issuesOf('', { BTT_NODE_API_PORT: '80a' })
    expect(typed.issues).toContainEqual({ key: 'api.port', problem: expect.stringContaining('integer') })
  })

  it('refuses prototype keys in TOML', async () => {
    const { issues } = await issuesOf('[api]\n__proto__ = 1\n')
    expect(issues.map(i => i.key)).toContain('api.__proto__')
  })
})

describe('setConfigValue', () => {
  it('writes a validated, typed value and keeps other keys', async () => {
    await writeFile(file, '[api]\nhost = "127.0.0.1"\n')
    await setConfigValue(file, 'api.port', '7123', services)
    await setConfigValue(file, 'services.shop.price', '0.25', services)
    await setConfigValue(file, 'p2p.listen', '/ip4/127.0.0.1/tcp/9,/ip4/127.0.0.1/tcp/10', services)
    const raw = parseToml(await readFile(file, 'utf8'))
    expect(raw).toEqual({
      api: { host: '127.0.0.1', port: 7123 },
      services: { shop: { price: '0.25' } },
      p2p: { listen: ['/ip4/127.0.0.1/tcp/9', '/ip4/127.0.0.1/tcp/10'] }
    })
    const config = await loadConfig({ file, services })
    expect(config.services.shop?.price).toBe(25n * 10n ** 16n)
  })

  it.each([
    ['api.port', '99999', 'api.port'],
    ['api.nope', '1', 'api.nope'],
    ['services.nope.enabled', 'true', 'services.nope.enabled'],
    ['api', '1', 'api'],
    ['services.shop.price', '-1', 'services.shop.price'],
    ['api.__proto__.polluted', '1', 'api.__proto__.polluted']
  ])('refuses %s = %s and leaves the file untouched', async (key, value, named) => {
    const before = '[api]\nport = 7070\n'
    await writeFile(file, before)
    await expect(setConfigValue(file, key, value, services)).rejects.toMatchObject({
      code: 'CONFIG_INVALID',
      issues: expect.arrayContaining([expect.objectContaining({ key: named })])
    })
    expect(await readFile(file, 'utf8')).toBe(before)
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
  })
})
