import { BaseCommand } from '../../base.js'
import { btt, table } from '../../format.js'
import { bytes } from '../../seed-format.js'

interface ContractJson { id: string, owner: string, size: number, status: string, periods: number, paid_periods: number, proofs: number, earned: string, start: number, period: number }
interface ContractsJson { provide: boolean, contracts: ContractJson[], usedBytes?: number, earned?: string, terms?: { free: number, max_size: number } }

export default class StorageContracts extends BaseCommand {
  static override description = 'Provider side: the storage contracts this node holds for others, quota used, earnings'
  static override enableJsonFlag = true

  async run (): Promise<ContractsJson> {
    const { flags } = await this.parse(StorageContracts)
    const res = await (await this.client(this.homeFrom(flags))).serviceRequest<ContractsJson>('storage', 'GET', '/contracts')
    if (!res.provide) {
      this.log('this node does not sell storage (services.storage.provide = false)')
      return res
    }
    this.log(`used ${bytes(res.usedBytes ?? 0)}, ${bytes(res.terms?.free ?? 0)} free; earned ${btt(res.earned ?? '0')}`)
    if (res.contracts.length > 0) {
      this.log(table(['ID', 'SIZE', 'STATUS', 'PAID', 'PROOFS', 'EARNED', 'OWNER'],
        res.contracts.map(c => [c.id, bytes(c.size), c.status, `${c.paid_periods}/${c.periods}`, String(c.proofs), btt(c.earned), c.owner])))
    }
    return res
  }
}
