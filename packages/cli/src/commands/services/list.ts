import type { ServiceInfo } from '@btt/node'
import { formatBtt } from '@btt/channel'
import { BaseCommand } from '../../base.js'
import { table } from '../../format.js'
import { isNotRunning, listFromConfig } from '../../services.js'

export default class ServicesList extends BaseCommand {
  static override description = 'List the services this node can sell, whether each is enabled, its state and prices'
  static override enableJsonFlag = true

  async run (): Promise<{ running: boolean, services: ServiceInfo[] }> {
    const { flags } = await this.parse(ServicesList)
    const home = this.homeFrom(flags)
    let services: ServiceInfo[]
    let running = true
    try {
      services = await (await this.client(home)).services()
    } catch (err) {
      if (!isNotRunning(err)) throw err
      running = false
      services = await listFromConfig(home)
    }
    if (!running) this.log('(node not running: showing config.toml)')
    if (services.length === 0) {
      this.log('no services in this build')
    } else {
      this.log(table(['SERVICE', 'ENABLED', 'STATE', 'PRICES', 'DESCRIPTION'], services.map(s => [
        s.name,
        s.enabled ? 'yes' : 'no',
        s.error !== undefined ? `${s.state}: ${s.error}` : s.state,
        s.pricing.map(p => `${formatBtt(BigInt(p.price))} BTT/${p.unit} per ${p.item}`).join('; ') || '-',
        s.description
      ])))
    }
    return { running, services }
  }
}
