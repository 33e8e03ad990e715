import type { ServiceChangeResult } from '@btt/node'
import { Args } from '@oclif/core'
import { BaseCommand } from '../../base.js'
import { isNotRunning, setEnabledInConfig } from '../../services-offline.js'

export default class ServicesDisable extends BaseCommand {
  static override description = 'Disable a service: persisted to config.toml and applied live on a running node'
  static override enableJsonFlag = true
  static override args = {
    name: Args.string({ description: 'service name (see `btt-node services list`)', required: true })
  }

  async run (): Promise<ServiceChangeResult> {
    const { args, flags } = await this.parse(ServicesDisable)
    const home = this.homeFrom(flags)
    let result: ServiceChangeResult
    try {
      result = await (await this.client(home)).disableService(args.name)
    } catch (err) {
      if (!isNotRunning(err)) throw err
      result = { service: await setEnabledInConfig(home, args.name, false), applied: 'restart' }
    }
    const s = result.service
    this.log(result.applied === 'live'
      ? `${s.name}: disabled, now ${s.state}${s.error !== undefined ? ` (${s.error})` : ''}`
      : `${s.name}: disabled in config.toml; the node is not running, so it applies at the next start`)
    return result
  }
}
