import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair } from '@btt/channel'
import { Discovery } from '@btt/discovery'
import { AdminClient, homePaths, readApiToken } from '@btt/node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runCli, SEEDING_LOOPBACK_ENV, startNodeProcess, tempHome, type NodeProcess } from './helpers/cli.js'

interface FoundJson { publicKey: string, seq: number, services: string[], prices: Record<string, string>, addrs: string[], btPort?: number, ledger: string, exp: number }

/**
 * `btt-node start` publishes the node's signed offer on the DHT (here a loopback DHT of 10 nodes):
 * what runs, at what price, where to dial it, and which ledger it settles on; `providers find`
 * finds and verifies it; the offer follows services being switched off and on; seq survives a restart.
 */
describe('a started node publishes its offer on the DHT', () => {
  const dhtNodes: Discovery[] = []
  let bootstrap: string
  let home: string
  let node: NodeProcess | undefined

  beforeAll(async () => {
    const boot = new Discovery({ keyPair: generateKeyPair(), host: '127.0.0.1', bootstrap: false })
    await boot.start()
    dhtNodes.push(boot)
    bootstrap = `127.0.0.1:${boot.address().port}`
    for (let i = 0; i < 9; i++) {
      const d = new Discovery({ keyPair: generateKeyPair(), host: '127.0.0.1', bootstrap: [bootstrap] })
      await d.start()
      dhtNodes.push(d)
    }
    home = await tempHome('btt-offer-')
    const init = await runCli(['init', '--home', home])
    expect(init.code, init.stderr).toBe(0)
  }, 60_000)

  afterAll(async () => {
    await node?.signal('SIGKILL')
    await Promise.all(dhtNodes.map(async d => { await d.stop() }))
  })

  const env = (): Record<string, string> => ({
    ...SEEDING_LOOPBACK_ENV,
    BTT_NODE_SERVICES_SEEDING_RESERVE_FIXED: '0.00001',
    BTT_NODE_DISCOVERY_ENABLED: 'true',
    BTT_NODE_DISCOVERY_BOOTSTRAP: bootstrap,
    BTT_NODE_DISCOVERY_HOST: '127.0.0.1',
    BTT_NODE_DISCOVERY_PORT: '0'
  })

  const find = async (): Promise<FoundJson[]> => {
    const r = await runCli(['providers', 'find', 'seeding', '--bootstrap', bootstrap, '--timeout', '3s', '--limit', '1', '--json'])
    expect(r.code, r.stderr).toBe(0)
    return (JSON.parse(r.stdout) as { providers: FoundJson[] }).providers
  }

  const waitFor = async <T>(fn: () => Promise<T | undefined>, what: string, ms = 20_000): Promise<T> => {
    const deadline = Date.now() + ms
    for (;;) {
      const v = await fn()
      if (v !== undefined) return v
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
      await new Promise(resolve => setTimeout(resolve, 100))
    }
  }

  it('providers find returns the node\'s verified offer: its identity key, seeding at the reserve, its libp2p addresses, BitTorrent port and ledger', async () => {
    node = await startNodeProcess(home, [], env())
    const api = new AdminClient({ url: node.apiUrl, token: await readApiToken(homePaths(home)) })
    const status = await waitFor(async () => { const s = await api.status(); return s.discovery.state === 'published' ? s : undefined }, 'the offer to be published')
    expect(status.discovery).toMatchObject({ enabled: true, state: 'published', services: ['seeding'], dht: { host: '127.0.0.1' } })
    // the first seq counts from the clock, so a lost state file can never reuse an old one
    expect(status.discovery.seq).toBeGreaterThanOrEqual(Math.floor(Date.now() / 1000) - 120)

    const identity = JSON.parse(await readFile(join(home, 'keys', 'identity.key'), 'utf8')) as { publicKey: string }
    const seeding = await api.serviceRequest<{ port: number }>('seeding', 'GET', '/status')
    const wallet = await api.wallet()
    const found = await find()
    expect(found).toHaveLength(1)
    const offer = found[0] as FoundJson
    expect(offer.publicKey).toBe(Buffer.from(identity.publicKey, 'base64').toString('hex'))
    expect(offer.services).toEqual(['seeding'])
    expect(offer.prices).toEqual({ seeding: (10n ** 13n).toString() })
    expect(offer.btPort).toBe(seeding.port)
    expect(offer.ledger).toBe(wallet.ledger.ledgerId)
    expect(offer.seq).toBe(status.discovery.seq)
    expect(offer.addrs.length).toBeGreaterThan(0)
    for (const a of offer.addrs) expect(a).toMatch(new RegExp(`^/ip4/127\\.0\\.0\\.1/tcp/\\d+/p2p/${status.peerId}$`))
    expect(status.listenAddresses).toEqual(expect.arrayContaining(offer.addrs))

    const human = await runCli(['status', '--home', home])
    expect(human.stdout).toMatch(new RegExp(`DHT offer  seeding, seq ${status.discovery.seq}`))
  }, 60_000)

  it('switching seeding off withdraws the offer (no refresh, status idle); on again republishes with a higher seq; a restart keeps counting up', async () => {
    const api = new AdminClient({ url: (node as NodeProcess).apiUrl, token: await readApiToken(homePaths(home)) })
    const before = (await api.status()).discovery.seq
    expect((await runCli(['services', 'disable', 'seeding', '--home', home])).code).toBe(0)
    await waitFor(async () => (await api.status()).discovery.state === 'idle' ? true : undefined, 'the offer to be withdrawn')
    expect((await runCli(['services', 'enable', 'seeding', '--home', home])).code).toBe(0)
    const again = await waitFor(async () => { const d = (await api.status()).discovery; return d.state === 'published' && d.seq > before ? d : undefined }, 'the offer to be republished')
    expect(again.seq).toBe(before + 1)
    expect((await find())[0]?.seq).toBe(again.seq)

    // the seq is kept in data/discovery.json: after a restart the next put counts up from it
    expect(JSON.parse(await readFile(join(home, 'data', 'discovery.json'), 'utf8'))).toEqual({ seq: again.seq })
    await writeSeqAhead(home, again.seq + 1000)
    expect((await (node as NodeProcess).signal('SIGTERM')).code).toBe(0)
    node = await startNodeProcess(home, [], env())
    const api2 = new AdminClient({ url: node.apiUrl, token: await readApiToken(homePaths(home)) })
    const restarted = await waitFor(async () => { const d = (await api2.status()).discovery; return d.state === 'published' ? d : undefined }, 'the offer after the restart')
    expect(restarted.seq).toBe(again.seq + 1001)
    expect((await find())[0]?.seq).toBe(restarted.seq)
  }, 90_000)

  it('discovery.enabled = false publishes nothing and says so', async () => {
    await (node as NodeProcess).signal('SIGTERM')
    node = await startNodeProcess(home, [], { ...env(), BTT_NODE_DISCOVERY_ENABLED: 'false' })
    const api = new AdminClient({ url: node.apiUrl, token: await readApiToken(homePaths(home)) })
    const status = await api.status()
    expect(status.discovery).toMatchObject({ enabled: false, state: 'off' })
    expect((await runCli(['status', '--home', home])).stdout).toContain('DHT offer  off (discovery.enabled = false)')
  }, 60_000)
})

/** A seq saved ahead of the clock (as after many refreshes) must be what the next put counts from. */
async function writeSeqAhead (home: string, seq: number): Promise<void> {
  const { writeFile } = await import('node:fs/promises')
  await writeFile(join(home, 'data', 'discovery.json'), JSON.stringify({ seq }) + '\n', { mode: 0o600 })
}
