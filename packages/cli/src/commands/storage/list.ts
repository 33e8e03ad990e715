import { BaseCommand } from '../../base.js'
import { btt, table } from '../../format.js'
import { bytes } from '../../seed-format.js'
import type { StoredFileJson } from '../../storage-format.js'

export default class StorageList extends BaseCommand {
  static override description = 'Files this node stores with providers: contract, proofs, payments, status'
  static override enableJsonFlag = true

  async run (): Promise<{ files: StoredFileJson[] }> {
    const { flags } = await this.parse(StorageList)
    const res = await (await this.client(this.homeFrom(flags))).serviceRequest<{ files: StoredFileJson[] }>('storage', 'GET', '/files')
    if (res.files.length === 0) {
      this.log('no stored files; store one with `btt-node storage put <file> --provider <addr|auto> --duration 30d --max-price 1`')
      return res
    }
    this.log(table(['ID', 'NAME', 'SIZE', 'STATUS', 'PAID', 'PROOFS', 'MISSES', 'SPENT', 'EXPIRES'],
      res.files.map(f => [f.id, f.name.length > 32 ? f.name.slice(0, 31) + '…' : f.name, bytes(f.plainSize), f.status, `${f.paidPeriods}/${f.periods}`,
        String(f.proofs), `${f.misses}/${f.allowedMisses}`, btt(f.spent), new Date((f.start + f.periods * f.period) * 1000).toISOString().replace(/\.\d+Z$/, 'Z')])))
    return res
  }
}
