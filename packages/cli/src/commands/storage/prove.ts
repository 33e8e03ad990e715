import { Args } from '@oclif/core'
import { BaseCommand } from '../../base.js'
import { btt } from '../../format.js'
import type { StoredFileJson } from '../../storage-format.js'

interface ProveJson { proof: { ok: boolean, paidPeriod?: number, amount?: string, error?: string }, file: StoredFileJson }

export default class StorageProve extends BaseCommand {
  static override description = 'Challenge the provider to prove it holds a file now; a valid proof pays the period that is due, if any'
  static override enableJsonFlag = true
  static override args = { id: Args.string({ description: 'file id (see `storage list`)', required: true }) }

  async run (): Promise<ProveJson> {
    const { args, flags } = await this.parse(StorageProve)
    const res = await (await this.client(this.homeFrom(flags))).serviceRequest<ProveJson>('storage', 'POST', `/files/${encodeURIComponent(args.id)}/prove`)
    if (!this.jsonEnabled()) {
      if (res.proof.ok) {
        this.log(`proof ok: the provider holds ${res.file.name}${res.proof.paidPeriod !== undefined ? `; paid period ${res.proof.paidPeriod + 1} of ${res.file.periods} (${btt(res.proof.amount ?? '0')})` : '; no period due'}`)
      } else {
        this.log(`proof FAILED: ${res.proof.error ?? 'unknown'} (misses ${res.file.misses} of ${res.file.allowedMisses} allowed; status ${res.file.status})`)
      }
    }
    if (!res.proof.ok) this.exit(1)
    return res
  }
}
