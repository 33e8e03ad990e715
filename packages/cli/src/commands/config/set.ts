import { getPath, homePaths, readRuntimeInfo, setConfigValue } from '@btt/node'
import { formatBtt } from '@btt/channel'
import { Args } from '@oclif/core'
import { BaseCommand } from '../../base.js'
import { SERVICES } from '../../composition.js'

export default class ConfigSet extends BaseCommand {
  static override description = 'Set a key in config.toml after validating it; works with the node stopped (a running node applies it at its next start)'
  static override enableJsonFlag = true
  static override args = {
    key: Args.string({ description: 'dotted key, e.g. api.port', required: true }),
    value: Args.string({ description: 'new value; lists are comma-separated; amounts in BTT, e.g. 0.001', required: true })
  }

  static override examples = ['<%= config.bin %> config set api.port 7071', '<%= config.bin %> config set p2p.listen /ip4/0.0.0.0/tcp/7171,/ip6/::/tcp/7171']

  async run (): Promise<{ key: string, value: unknown, file: string, restartRequired: boolean }> {
    const { args, flags } = await this.parse(ConfigSet)
    const paths = homePaths(this.homeFrom(flags))
    const config = await setConfigValue(paths.config, args.key, args.value, SERVICES)
    const raw = getPath(config, args.key.split('.'))
    const value = typeof raw === 'bigint' ? formatBtt(raw) : raw
    const running = (await readRuntimeInfo(paths)) !== undefined
    this.log(`${args.key} = ${Array.isArray(value) ? value.join(',') : String(value)} (written to ${paths.config})`)
    if (running) this.log('The node is running: restart it to apply this (services enable/disable apply live).')
    return { key: args.key, value, file: paths.config, restartRequired: running }
  }
}
