import type { NodeStatus } from '@btt/node'
import { BaseCommand } from '../base.js'
import { duration, table } from '../format.js'

export default class Status extends BaseCommand {
  static override description = 'Show the running node: version, uptime, peer id, addresses and services'
  static override enableJsonFlag = true

  async run (): Promise<NodeStatus> {
    const { flags } = await this.parse(Status)
    const status = await (await this.client(this.homeFrom(flags))).status()
    this.log(`btt-node ${status.version}, up ${duration(status.uptimeSeconds)}`)
    this.log(`peer id    ${status.peerId}`)
    this.log(`admin API  ${status.api.url}`)
    this.log(`home       ${status.home}`)
    this.log('listening')
    for (const a of status.listenAddresses) this.log(`  ${a}`)
    this.log('')
    this.log(status.services.length === 0
      ? 'services   none in this build'
      : table(['SERVICE', 'ENABLED', 'STATE', 'PROTOCOLS'], status.services.map(s => [s.name, s.enabled ? 'yes' : 'no', s.error !== undefined ? `${s.state}: ${s.error}` : s.state, s.protocols.join(',')])))
    return status
  }
}
