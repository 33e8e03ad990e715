import { createWriteStream } from 'node:fs'
import { rename, rm, stat } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { resolve } from 'node:path'
import { Writable } from 'node:stream'
import { Args, Flags } from '@oclif/core'
import { BaseCommand } from '../../base.js'
import { ProgressLine } from '../../progress.js'
import { bytes } from '../../seed-format.js'
import { isLoopback, type StoredFileJson } from '../../storage-format.js'

export default class StorageGet extends BaseCommand {
  static override description = 'Retrieve a stored file: every chunk is checked against the root before it is paid for, then decrypted'
  static override enableJsonFlag = true
  static override args = { id: Args.string({ description: 'file id (see `storage list`)', required: true }) }
  static override flags = {
    out: Flags.string({ description: 'where to write the file', required: true }),
    force: Flags.boolean({ description: 'replace --out if it exists', default: false }),
    stream: Flags.boolean({ description: 'receive the file through the admin API even when the node could write it itself (a node running as another user)', default: false })
  }

  async run (): Promise<{ id: string, out: string, size: number, seconds: number }> {
    const { args, flags } = await this.parse(StorageGet)
    if (!flags.force && await stat(flags.out).then(() => true, () => false)) this.error(`${flags.out} exists; pass --force to replace it`, { exit: 2 })
    const client = await this.client(this.homeFrom(flags))
    const { file } = await client.serviceRequest<{ file: StoredFileJson }>('storage', 'GET', `/files/${encodeURIComponent(args.id)}`)
    const tmp = `${flags.out}.btt-partial`
    const progress = new ProgressLine(file.plainSize, 'retrieving', !this.jsonEnabled())
    // the node writes the file itself when it can (same machine, a path it may write)
    if (!flags.stream && isLoopback(client.url)) {
      const transfer = randomBytes(16).toString('hex')
      const long = await this.client(this.homeFrom(flags), { timeoutMs: 7 * 86_400_000 })
      const poll = setInterval(() => {
        long.serviceRequest<{ transfer: { done: number } }>('storage', 'GET', `/transfers/${transfer}`).then(r => { progress.update(r.transfer.done) }, () => {})
      }, 200)
      try {
        const r = await long.serviceRequest<{ size: number, seconds: number }>('storage', 'POST', `/files/${encodeURIComponent(args.id)}/retrieve`, { out: resolve(flags.out), force: flags.force, transfer })
        clearInterval(poll)
        progress.update(r.size)
        progress.done()
        if (!this.jsonEnabled()) this.log(`retrieved ${file.name} (${bytes(r.size)}) to ${flags.out} in ${r.seconds.toFixed(1)} s`)
        return { id: args.id, out: flags.out, size: r.size, seconds: r.seconds }
      } catch (err) {
        clearInterval(poll)
        if ((err as { code?: string }).code !== 'STORAGE_PATH') {
          progress.done()
          const after = await client.serviceRequest<{ file: StoredFileJson }>('storage', 'GET', `/files/${encodeURIComponent(args.id)}`).catch(() => undefined)
          this.error(`retrieval of ${file.name} failed: ${after?.file.lastError ?? (err as Error).message}`, { exit: 1 })
        }
      }
    }
    const ac = new AbortController()
    process.once('SIGINT', () => { ac.abort() })
    let got = 0
    try {
      const res = await client.serviceStream('storage', 'GET', `/stream/files/${encodeURIComponent(args.id)}/content`, { signal: ac.signal })
      const body = res.body
      if (body === null) throw new Error('empty response')
      const counter = new TransformStream<Uint8Array, Uint8Array>({ transform: (chunk, ctl) => { got += chunk.byteLength; progress.update(got); ctl.enqueue(chunk) } })
      await body.pipeThrough(counter).pipeTo(Writable.toWeb(createWriteStream(tmp, { mode: 0o600 })) as WritableStream<Uint8Array>)
      if (got !== file.plainSize) throw new Error(`received ${got} of ${file.plainSize} bytes`)
    } catch (err) {
      progress.done()
      await rm(tmp, { force: true })
      // the node records why a retrieval stopped (a tampered chunk, an unreachable provider)
      const after = await client.serviceRequest<{ file: StoredFileJson }>('storage', 'GET', `/files/${encodeURIComponent(args.id)}`).catch(() => undefined)
      const reason = after?.file.lastError ?? (err as Error).message
      this.error(`retrieval of ${file.name} failed: ${reason}`, { exit: 1 })
    }
    await rename(tmp, flags.out)
    progress.done()
    if (!this.jsonEnabled()) this.log(`retrieved ${file.name} (${bytes(got)}) to ${flags.out} in ${progress.seconds.toFixed(1)} s`)
    return { id: args.id, out: flags.out, size: got, seconds: progress.seconds }
  }
}
