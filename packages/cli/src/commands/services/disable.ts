import type { ServiceChangeResult } from '@btt/node'
import { Args } from '@oclif/core'
import { BaseCommand } from '../../base.js'
import { changeService } from '../../services.js'

export default class ServicesDisable extends BaseCommand {
  static override description = 'Disable a service: persisted to config.toml and applied live on a running node'
  static override enableJsonFlag = true
  static override args = {
    name: Args.string({ description: 'service name (see `btt-node services list`)', required: true })
  }

  async run (): Promise<ServiceChangeResult> {
    const { args, flags } = await this.parse(ServicesDisable)
    const home = this.homeFrom(flags)
    const { result, message } = await changeService(await this.client(home), home, args.name, false)
    this.log(message)
    return result
  }
}
