import { createReadStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { basename, resolve } from 'node:path'
import { Readable } from 'node:stream'
import { parseBtt } from '@btt/channel'
import { Args, Flags } from '@oclif/core'
import { BaseCommand } from '../../base.js'
import { btt, parseDuration } from '../../format.js'
import { ProgressLine } from '../../progress.js'
import { pickProvider } from '../../provider-pick.js'
import { bytes } from '../../seed-format.js'
import { isLoopback, printFile, type StoredFileJson } from '../../storage-format.js'


export default class StoragePut extends BaseCommand {
  static override description = 'Encrypt a file and store it with a provider for a duration, paid per proven period (the running node keeps the key, root and contract)'
  static override enableJsonFlag = true
  static override examples = [
    '<%= config.bin %> storage put ./backup.tar --provider /ip4/203.0.113.7/tcp/7171/p2p/12D3KooW… --duration 30d --max-price 2',
    '<%= config.bin %> storage put ./backup.tar --provider auto --duration 90d --max-price 1.5'
  ]

  static override args = { file: Args.string({ description: 'the file to store', required: true }) }
  static override flags = {
    provider: Flags.string({ description: 'provider multiaddr ending in /p2p/<peer id>, or "auto" to pick the cheapest on the DHT', required: true }),
    duration: Flags.string({ description: 'how long to store it: 12h, 30d, 2w', required: true }),
    'max-price': Flags.string({ description: 'highest storage price accepted, BTT per GiB·month', required: true }),
    stream: Flags.boolean({ description: 'send the file through the admin API even when the node could read it itself (a node running as another user)', default: false }),
    bootstrap: Flags.string({ description: 'with --provider auto: DHT bootstrap host:port (repeatable) [default: discovery.bootstrap of the config]', multiple: true })
  }

  async run (): Promise<{ file: StoredFileJson, seconds: number }> {
    const { args, flags } = await this.parse(StoragePut)
    let durationMs: number
    let maxPrice: bigint
    try {
      durationMs = parseDuration(flags.duration)
    } catch (err) {
      this.error(`--duration: ${(err as Error).message}`, { exit: 2 })
    }
    try {
      maxPrice = parseBtt(flags['max-price'])
    } catch (err) {
      this.error(`--max-price: ${(err as Error).message}`, { exit: 2 })
    }
    const st = await stat(args.file).catch((err: NodeJS.ErrnoException) => this.error(`${args.file}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`, { exit: 2 }))
    if (!st.isFile()) this.error(`${args.file} is not a regular file`, { exit: 2 })
    const home = this.homeFrom(flags)
    const client = await this.client(home)

    let addrs: string[]
    if (flags.provider === 'auto') {
      const best = await pickProvider(this, { home, client, service: 'storage', maxPrice, bootstrap: flags.bootstrap, describePrice: p => `${btt(p)} per GiB·month` })
      if (!this.jsonEnabled()) this.logToStderr(`provider ${best.publicKey.slice(0, 16)}… at ${btt(best.price)} per GiB·month (${best.qualified} of ${best.found} offers qualify)`)
      addrs = best.addrs
    } else {
      if (!/\/p2p\/[1-9A-HJ-NP-Za-km-z]+$/.test(flags.provider)) this.error('--provider must be a multiaddr ending in /p2p/<peer id> (see `btt-node providers find storage`), or auto', { exit: 2 })
      addrs = [flags.provider]
    }

    const progress = new ProgressLine(st.size, 'uploading', !this.jsonEnabled())
    // the node reads the file itself when it can (same machine, same user): no HTTP hop for the bytes
    if (!flags.stream && isLoopback(client.url)) {
      const transfer = randomBytes(16).toString('hex')
      const long = await this.client(home, { timeoutMs: 7 * 86_400_000 })
      const poll = setInterval(() => {
        long.serviceRequest<{ transfer: { done: number } }>('storage', 'GET', `/transfers/${transfer}`).then(r => { progress.update(r.transfer.done) }, () => {})
      }, 200)
      try {
        const out = await long.serviceRequest<{ file: StoredFileJson, seconds: number }>('storage', 'POST', '/files', {
          path: resolve(args.file), provider: addrs, duration: Math.ceil(durationMs / 1000), max_price: maxPrice.toString(), transfer
        })
        clearInterval(poll)
        progress.update(st.size)
        progress.done()
        if (!this.jsonEnabled()) {
          this.log(`stored ${out.file.name} (${bytes(out.file.plainSize)}) in ${out.seconds.toFixed(1)} s`)
          printFile(this, out.file)
        }
        return out
      } catch (err) {
        clearInterval(poll)
        if ((err as { code?: string }).code !== 'STORAGE_PATH') throw err
      }
    }
    let sent = 0
    const file = createReadStream(args.file, { highWaterMark: 1024 * 1024 })
    file.on('data', (chunk) => { sent += chunk.length; progress.update(sent) })
    const q = new URLSearchParams({ name: basename(args.file), size: String(st.size), duration: String(Math.ceil(durationMs / 1000)), max_price: maxPrice.toString() })
    for (const a of addrs) q.append('provider', a)
    const ac = new AbortController()
    process.once('SIGINT', () => { ac.abort() })
    const res = await client.serviceStream('storage', 'POST', `/stream/files?${q.toString()}`, { body: Readable.toWeb(file) as ReadableStream<Uint8Array>, signal: ac.signal })
    const out = await res.json() as { file: StoredFileJson, seconds: number }
    progress.done()
    if (!this.jsonEnabled()) {
      this.log(`stored ${out.file.name} (${bytes(out.file.plainSize)}) in ${progress.seconds.toFixed(1)} s`)
      printFile(this, out.file)
    }
    return out
  }
}
