import { randomBytes } from 'node:crypto'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair } from '@btt/channel'
import { Discovery } from '@btt/discovery'
import { AdminClient, homePaths, readApiToken } from '@btt/node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runCli, startNodeProcess, tempHome, type NodeProcess, statusWhenPublished } from './helpers/cli.js'
import { BTT, fundHome, ledgerHome, startLedgerProcess, type LedgerProcess } from './helpers/paid.js'

const flat = (s: string): string => s.replace(/\s*\n\s*›\s*/g, ' ')

/**
 * `storage put --provider auto`: the requester finds storage providers through their signed DHT
 * offers (a loopback DHT of 8 nodes), keeps those on its ledger at or below --max-price, and stores
 * with the cheapest.
 */
describe('storage put --provider auto through the DHT', () => {
  const dht: Discovery[] = []
  let bootstrap: string
  let ledger: LedgerProcess
  const providers: Array<{ node: NodeProcess, home: string, peerId: string }> = []
  let requesterHome: string
  let requester: NodeProcess
  let dir: string

  beforeAll(async () => {
    const boot = new Discovery({ keyPair: generateKeyPair(), host: '127.0.0.1', bootstrap: false })
    await boot.start()
    dht.push(boot)
    bootstrap = `127.0.0.1:${boot.address().port}`
    for (let i = 0; i < 7; i++) {
      const d = new Discovery({ keyPair: generateKeyPair(), host: '127.0.0.1', bootstrap: [bootstrap] })
      await d.start()
      dht.push(d)
    }
    ledger = await startLedgerProcess()
    // two providers on the DHT: 3 BTT and 2 BTT per GiB·month
    for (const price of ['3', '2']) {
      const home = await ledgerHome(ledger.url, `[services.storage]\nenabled = true\nmin_duration_seconds = 1\nprice_per_gib_month = "${price}"\n`, 'btt-auto-provider-')
      const node = await startNodeProcess(home, [], {
        BTT_NODE_DISCOVERY_ENABLED: 'true', BTT_NODE_DISCOVERY_BOOTSTRAP: bootstrap, BTT_NODE_DISCOVERY_HOST: '127.0.0.1', BTT_NODE_DISCOVERY_PORT: '0'
      })
      const api = new AdminClient({ url: node.apiUrl, token: await readApiToken(homePaths(home)) })
      const status = await statusWhenPublished(api)
      expect(status.discovery).toMatchObject({ state: 'published', services: ['storage'] })
      providers.push({ node, home, peerId: status.peerId })
    }
    requesterHome = await ledgerHome(ledger.url, `[services.storage]\nenabled = true\nprovide = false\nchallenge = false\n[discovery]\nbootstrap = ["${bootstrap}"]\n`, 'btt-auto-requester-')
    await fundHome(ledger.url, requesterHome, 10n * BTT)
    requester = await startNodeProcess(requesterHome)
    dir = await tempHome('btt-auto-files-')
    await mkdir(dir, { recursive: true })
    await writeFile(join(dir, 'a.bin'), randomBytes(300_000))
  }, 120_000)

  afterAll(async () => {
    for (const p of providers) await p.node.signal('SIGKILL')
    await requester?.signal('SIGKILL')
    ledger?.stop()
    await Promise.all(dht.map(async d => { await d.stop() }))
  })

  it('picks the cheapest offer within --max-price (bootstrap from the config), and stores there', async () => {
    const r = await runCli(['storage', 'put', join(dir, 'a.bin'), '--provider', 'auto', '--duration', '1h', '--max-price', '5', '--json', '--home', requesterHome])
    expect(r.code, r.stderr).toBe(0)
    const file = (JSON.parse(r.stdout) as { file: { provider: string, price: string } }).file
    expect(file.provider).toBe(providers[1]?.peerId)
    expect(file.price).toBe((2n * BTT).toString())
  }, 60_000)

  it('says so when no offer is at or below --max-price', async () => {
    const r = await runCli(['storage', 'put', join(dir, 'a.bin'), '--provider', 'auto', '--duration', '1h', '--max-price', '1.5', '--home', requesterHome])
    expect(r.code).toBe(1)
    expect(flat(r.stderr)).toMatch(/no storage provider on the DHT at or below 1\.5 BTT per GiB·month on ledger [0-9a-f]{16}… \(2 offer\(s\) found\)/)
  }, 60_000)
})
