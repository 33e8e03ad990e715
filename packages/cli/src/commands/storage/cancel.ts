import { Args } from '@oclif/core'
import { BaseCommand } from '../../base.js'
import type { StoredFileJson } from '../../storage-format.js'

export default class StorageCancel extends BaseCommand {
  static override description = 'End a storage contract: the provider deletes the data and no further periods are paid'
  static override enableJsonFlag = true
  static override args = { id: Args.string({ description: 'file id (see `storage list`)', required: true }) }

  async run (): Promise<{ file: StoredFileJson }> {
    const { args, flags } = await this.parse(StorageCancel)
    const res = await (await this.client(this.homeFrom(flags))).serviceRequest<{ file: StoredFileJson }>('storage', 'POST', `/files/${encodeURIComponent(args.id)}/cancel`)
    if (!this.jsonEnabled()) this.log(`cancelled ${res.file.name}: the provider deletes it; ${res.file.paidPeriods} of ${res.file.periods} periods were paid`)
    return res
  }
}
