import type { NodeStatus } from '@btt/node'
import { BaseCommand } from '../base.js'
import { duration, table } from '../format.js'

function describeOffer (d: NodeStatus['discovery']): string {
  switch (d.state) {
    case 'off': return 'off (discovery.enabled = false): requesters find this node only by address'
    case 'idle': return 'none: no running service has a price to offer'
    case 'publishing': return `publishing ${d.services.join(', ')}…${d.error !== undefined ? ` (last error: ${d.error})` : ''}`
    case 'published': return `${d.services.join(', ')}, seq ${d.seq}, since ${d.publishedAt ?? '?'}${d.dht !== undefined ? `, DHT on udp ${d.dht.host}:${d.dht.port}` : ''}`
    case 'failed': return `failed: ${d.error ?? 'unknown error'} (retried at the next change)`
  }
}

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
    this.log(`DHT offer  ${describeOffer(status.discovery)}`)
    this.log('')
    this.log(status.services.length === 0
      ? 'services   none in this build'
      : table(['SERVICE', 'ENABLED', 'STATE', 'PROTOCOLS'], status.services.map(s => [s.name, s.enabled ? 'yes' : 'no', s.error !== undefined ? `${s.state}: ${s.error}` : s.state, s.protocols.join(',')])))
    return status
  }
}
