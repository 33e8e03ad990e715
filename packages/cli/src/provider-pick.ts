import { readConfigFile } from '@btt/node'
import type { BaseCommand } from './base.js'

const HOST_PORT = /^([a-zA-Z0-9.-]+):(\d{1,5})$/
export const MAINLINE_BOOTSTRAP = ['router.bittorrent.com:6881', 'router.utorrent.com:6881', 'dht.transmissionbt.com:6881']

export interface PickedProvider {
  addrs: string[]
  /** the offer's price for the service (its pricing unit) */
  price: bigint
  publicKey: string
  /** offers that qualified / offers found */
  qualified: number
  found: number
}

/**
 * `--provider auto`: the cheapest verified offer for `service` on the DHT at or below `maxPrice`
 * (in the service's pricing unit) that settles on this node's ledger. Bootstrap from the flag,
 * else the config's `[discovery] bootstrap`, else the mainline routers.
 */
export async function pickProvider (cmd: BaseCommand, opts: {
  home: string
  client: Awaited<ReturnType<BaseCommand['client']>>
  service: 'storage' | 'proxy' | 'seeding'
  maxPrice: bigint
  bootstrap: string[] | undefined
  /** how a price reads in the error message */
  describePrice: (price: bigint) => string
}): Promise<PickedProvider> {
  const { Discovery } = await import('@btt/discovery')
  const { generateKeyPair } = await import('@btt/channel')
  const { homePaths } = await import('@btt/node')
  const raw = await readConfigFile(homePaths(opts.home).config)
  const configured = ((raw.discovery ?? {}) as { bootstrap?: string[] }).bootstrap
  const bootstrap = opts.bootstrap ?? configured ?? MAINLINE_BOOTSTRAP
  for (const b of bootstrap) if (!HOST_PORT.test(b)) cmd.error(`bootstrap ${b}: expected host:port`, { exit: 2 })
  const local = bootstrap.every(b => /^(127\.|localhost$)/.test(HOST_PORT.exec(b)?.[1] ?? ''))
  const ledger = (await opts.client.wallet()).ledger.ledgerId
  const dht = new Discovery({ keyPair: generateKeyPair(), bootstrap, host: local ? '127.0.0.1' : '0.0.0.0', port: 0 })
  let found: Awaited<ReturnType<typeof dht.findProviders>>
  try {
    await dht.start()
    found = await dht.findProviders(opts.service, { timeoutMs: 10_000, limit: 50 })
  } finally {
    await dht.stop()
  }
  const priceOf = (o: (typeof found)[number]): bigint => o.offer.prices[opts.service] ?? opts.maxPrice + 1n
  const usable = found
    .filter(o => o.offer.ledger === ledger && priceOf(o) <= opts.maxPrice && o.offer.addrs.length > 0)
    .sort((a, b) => priceOf(a) < priceOf(b) ? -1 : priceOf(a) > priceOf(b) ? 1 : 0)
  const best = usable[0]
  if (best === undefined) {
    cmd.error(`no ${opts.service} provider on the DHT at or below ${opts.describePrice(opts.maxPrice)} on ledger ${ledger.slice(0, 16)}… (${found.length} offer(s) found); raise --max-price or name one with --provider`, { exit: 1 })
  }
  return { addrs: best.offer.addrs, price: priceOf(best), publicKey: Buffer.from(best.publicKey).toString('hex'), qualified: usable.length, found: found.length }
}
