import { formatBtt, generateKeyPair } from '@btt/channel'
import { Args, Flags } from '@oclif/core'
import { BaseCommand } from '../../base.js'
import { parseDuration } from '../../format.js'

/** bittorrent-dht's (k-rpc's) own bootstrap routers, used when no --bootstrap is given. */
const MAINLINE_BOOTSTRAP = ['router.bittorrent.com:6881', 'router.utorrent.com:6881', 'dht.transmissionbt.com:6881']
/** Longest --timeout: a lookup that has found nothing in 10 minutes will not. */
const MAX_TIMEOUT_MS = 600_000
const HOST_PORT = /^(\[[0-9a-fA-F:.]+\]|[^\s:[\]]+):([0-9]{1,5})$/
const LOOPBACK = /^(127\.[0-9.]+|localhost|\[::1\])$/

/** A verified offer as --json prints it: prices in base units, as decimal strings. */
interface ProviderJson {
  publicKey: string
  seq: number
  services: string[]
  prices: Record<string, string>
  addrs: string[]
  btPort?: number
  ledger: string
  exp: number
}

export default class ProvidersFind extends BaseCommand {
  static override description = 'Find providers of a service on the DHT and verify their signed offers: key, services, prices, addresses, expiry'
  static override enableJsonFlag = true
  static override examples = [
    '<%= config.bin %> providers find storage',
    '<%= config.bin %> providers find seeding --bootstrap 127.0.0.1:6881 --timeout 3s --json'
  ]

  static override args = {
    service: Args.string({ description: 'seeding, storage or proxy', required: true })
  }

  static override flags = {
    bootstrap: Flags.string({ description: 'DHT bootstrap node host:port (repeat the flag) [default: the mainline DHT routers]', multiple: true }),
    host: Flags.string({ description: 'address to bind the DHT node to [default: 127.0.0.1 when every bootstrap node is loopback, else 0.0.0.0]' }),
    timeout: Flags.string({ description: 'how long to search: 5s, 1m', default: '5s' }),
    limit: Flags.integer({ description: 'stop after this many verified offers', default: 20, min: 1, max: 1000 })
  }

  async run (): Promise<{ service: string, providers: ProviderJson[] }> {
    const { args, flags } = await this.parse(ProvidersFind)
    const { Discovery, isServiceName } = await import('@btt/discovery')
    const service = args.service
    if (!isServiceName(service)) this.error(`unknown service "${service}": expected seeding, storage or proxy`, { exit: 2 })
    let timeoutMs: number
    try {
      timeoutMs = parseDuration(flags.timeout)
    } catch (err) {
      this.error(`--timeout: ${(err as Error).message}`, { exit: 2 })
    }
    if (timeoutMs > MAX_TIMEOUT_MS) this.error('--timeout must be at most 10m', { exit: 2 })
    for (const b of flags.bootstrap ?? []) {
      const m = HOST_PORT.exec(b)
      if (m === null || Number(m[2]) < 1 || Number(m[2]) > 65535) this.error(`--bootstrap ${b}: expected host:port`, { exit: 2 })
    }
    const bootstrap = flags.bootstrap ?? MAINLINE_BOOTSTRAP
    // a socket bound to loopback cannot reach the internet; bind it only when every bootstrap node is local
    const host = flags.host ?? (bootstrap.every(b => LOOPBACK.test(HOST_PORT.exec(b)?.[1] ?? '')) ? '127.0.0.1' : '0.0.0.0')

    // a throwaway identity: a requester only runs a DHT node to look offers up
    const dht = new Discovery({ keyPair: generateKeyPair(), bootstrap, host, port: 0 })
    let found: Awaited<ReturnType<typeof dht.findProviders>>
    try {
      await dht.start()
      found = await dht.findProviders(service, { timeoutMs, limit: flags.limit })
    } finally {
      await dht.stop()
    }

    const providers: ProviderJson[] = found.map(v => ({
      publicKey: Buffer.from(v.publicKey).toString('hex'),
      seq: v.seq,
      services: [...v.offer.services],
      prices: Object.fromEntries(Object.entries(v.offer.prices).map(([s, p]) => [s, (p as bigint).toString()])),
      addrs: [...v.offer.addrs],
      ...(v.offer.bt_port !== undefined ? { btPort: v.offer.bt_port } : {}),
      ledger: v.offer.ledger,
      exp: v.offer.exp
    }))
    if (providers.length === 0) {
      this.log(`no ${service} provider found within ${flags.timeout}`)
    } else {
      for (const p of providers) {
        this.log(`${p.publicKey}  seq ${p.seq}  expires ${new Date(p.exp * 1000).toISOString().replace(/\.\d+Z$/, 'Z')}`)
        this.log(`  services  ${p.services.map(s => `${s} ${formatBtt(BigInt(p.prices[s] ?? '0'))} BTT`).join(', ')}`)
        this.log(`  ledger    ${p.ledger}`)
        for (const a of p.addrs) this.log(`  addr      ${a}`)
        if (p.btPort !== undefined) this.log(`  bt port   ${p.btPort}`)
      }
      this.log(`${providers.length} ${service} provider(s); offers are signed by their keys, addresses are not checked`)
    }
    return { service, providers }
  }
}
