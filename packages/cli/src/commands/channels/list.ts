import type { IncomingChannelJson, OutgoingChannelJson } from '@btt/node'
import { BaseCommand } from '../../base.js'
import { btt, table } from '../../format.js'

export default class ChannelsList extends BaseCommand {
  static override description = 'List payment channels: incoming (we are paid) and outgoing (we pay)'
  static override enableJsonFlag = true

  async run (): Promise<{ incoming: IncomingChannelJson[], outgoing: OutgoingChannelJson[] }> {
    const { flags } = await this.parse(ChannelsList)
    const result = await (await this.client(this.homeFrom(flags))).channels()
    const when = (ms: number): string => new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z')
    this.log('incoming')
    this.log(result.incoming.length === 0 ? '  none' : table(['ID', 'PAYER', 'DEPOSIT', 'RECEIVED', 'CLAIMED', 'STATUS', 'EXPIRES'],
      result.incoming.map(c => [c.id.slice(0, 16), c.payer.slice(0, 16), btt(c.deposit), btt(c.received), btt(c.claimed), c.status, when(c.expiresAt)])))
    this.log('outgoing')
    this.log(result.outgoing.length === 0 ? '  none' : table(['ID', 'PAYEE', 'DEPOSIT', 'SPENT', 'STATUS', 'EXPIRES'],
      result.outgoing.map(c => [c.id.slice(0, 16), c.payee.slice(0, 16), btt(c.deposit), btt(c.spent), c.status, when(c.expiresAt)])))
    return result
  }
}
