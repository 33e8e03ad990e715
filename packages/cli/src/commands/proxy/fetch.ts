import { stat } from 'node:fs/promises'
import { resolve } from 'node:path'
import { parseBtt } from '@btt/channel'
import { Args, Flags } from '@oclif/core'
import { BaseCommand } from '../../base.js'
import { btt } from '../../format.js'
import { ProgressLine } from '../../progress.js'
import { pickProvider } from '../../provider-pick.js'
import { bytes } from '../../seed-format.js'

const GIB = 1n << 30n

interface FetchJson { url: string, status: number, bytes: number, chunks: number, paid: string, resumedFrom: number, channels: string[], seconds: number, provider: string }
interface ActiveJson { out: string, bytes: number, length?: number }

export default class ProxyFetch extends BaseCommand {
  static override description = 'Fetch a URL through a provider, in chunks paid one by one; --resume continues an interrupted fetch (through any provider), checked against its manifest of chunk hashes'
  static override enableJsonFlag = true
  static override examples = [
    '<%= config.bin %> proxy fetch https://example.org/big.iso --provider /ip4/203.0.113.7/tcp/7171/p2p/12D3KooW… --out big.iso',
    '<%= config.bin %> proxy fetch https://example.org/big.iso --provider auto --out big.iso --resume'
  ]

  static override args = { url: Args.string({ description: 'http(s) URL', required: true }) }
  static override flags = {
    provider: Flags.string({ description: 'provider multiaddr ending in /p2p/<peer id>, or "auto" for the cheapest proxy offer on the DHT', required: true }),
    out: Flags.string({ description: 'where to write the body', required: true }),
    'chunk-size': Flags.integer({ description: 'KiB per chunk (64–16384); one chunk is paid at a time (a resume keeps the size it started with)', default: 4096, min: 64, max: 16384 }),
    resume: Flags.boolean({ description: 'continue from <out>.btt-manifest.json (possibly through another provider)', default: false }),
    'max-price': Flags.string({ description: 'highest price accepted, BTT per GiB', default: '1' }),
    budget: Flags.string({ description: 'deposit of a new payment channel to the provider when none has room, BTT', default: '1' }),
    force: Flags.boolean({ description: 'replace --out if it exists, or discard an interrupted download of it (its last payment is settled first)', default: false }),
    bootstrap: Flags.string({ description: 'with --provider auto: DHT bootstrap host:port (repeatable) [default: discovery.bootstrap of the config]', multiple: true })
  }

  async run (): Promise<FetchJson> {
    const { args, flags } = await this.parse(ProxyFetch)
    let maxPerGib: bigint
    let budget: bigint
    try {
      maxPerGib = parseBtt(flags['max-price'])
      budget = parseBtt(flags.budget)
    } catch (err) {
      this.error(`--max-price/--budget: ${(err as Error).message}`, { exit: 2 })
    }
    if (!/^https?:\/\//i.test(args.url)) this.error('only http and https URLs can be fetched', { exit: 2 })
    if (flags.resume && flags.force) this.error('--resume and --force exclude each other', { exit: 2 })
    const out = resolve(flags.out)
    if (!flags.force && !flags.resume && await stat(out).then(() => true, () => false)) this.error(`${flags.out} exists; pass --force to replace it`, { exit: 2 })
    const home = this.homeFrom(flags)
    const client = await this.client(home)
    // the provider's price is per byte; the flag is per GiB (rounded down, at least 1 base unit)
    const maxPerByte = maxPerGib / GIB > 0n ? maxPerGib / GIB : 1n
    let provider = flags.provider
    let addrs: string[]
    if (provider === 'auto') {
      const best = await pickProvider(this, { home, client, service: 'proxy', maxPrice: maxPerByte, bootstrap: flags.bootstrap, describePrice: p => `${btt(p * GIB)} per GiB` })
      if (!this.jsonEnabled()) this.logToStderr(`provider ${best.publicKey.slice(0, 16)}… at ${btt(best.price * GIB)} per GiB (${best.qualified} of ${best.found} offers qualify)`)
      addrs = best.addrs
      provider = addrs[0] as string
    } else {
      if (!/\/p2p\/[1-9A-HJ-NP-Za-km-z]+$/.test(provider)) this.error('--provider must be a multiaddr ending in /p2p/<peer id> (see `btt-node providers find proxy`), or auto', { exit: 2 })
      addrs = [provider]
    }

    const progress = new ProgressLine(undefined, 'fetching', !this.jsonEnabled())
    const long = await this.client(home, { timeoutMs: 7 * 86_400_000 })
    const poll = setInterval(() => {
      client.serviceRequest<{ fetches: ActiveJson[] }>('proxy', 'GET', '/fetches').then(r => {
        const f = r.fetches.find(x => x.out === out)
        if (f !== undefined) progress.update(f.bytes, f.length)
      }, () => {})
    }, 200)
    let res: FetchJson
    try {
      res = await long.serviceRequest<FetchJson>('proxy', 'POST', '/fetch', {
        url: args.url,
        provider: addrs,
        out,
        chunk_size: flags['chunk-size'] * 1024,
        resume: flags.resume,
        force: flags.force,
        max_price: maxPerByte.toString(),
        budget: budget.toString()
      })
    } finally {
      clearInterval(poll)
    }
    progress.update(res.bytes, res.bytes)
    progress.done()
    if (!this.jsonEnabled()) {
      this.log(`fetched ${bytes(res.bytes)} (HTTP ${res.status}) in ${res.chunks - res.resumedFrom} chunk(s)${res.resumedFrom > 0 ? `, resumed at chunk ${res.resumedFrom}` : ''}; paid ${btt(res.paid)} in ${res.seconds.toFixed(1)} s`)
    }
    return { ...res, provider }
  }
}
