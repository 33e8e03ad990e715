import { formatBtt } from '@btt/channel'
import { getPath, homePaths, loadConfig } from '@btt/node'
import { Args } from '@oclif/core'
import { ConfigError } from '@btt/node'
import { BaseCommand } from '../../base.js'
import { SERVICES } from '../../composition.js'

export default class ConfigGet extends BaseCommand {
  static override description = 'Print the effective value of a config key (defaults < config.toml < BTT_NODE_* environment), or every key'
  static override enableJsonFlag = true
  static override args = {
    key: Args.string({ description: 'dotted key, e.g. api.port or services.seeding.enabled; omit for all' })
  }

  static override examples = ['<%= config.bin %> config get api.port', '<%= config.bin %> config get --json']

  async run (): Promise<{ key: string, value: unknown }> {
    const { args, flags } = await this.parse(ConfigGet)
    const paths = homePaths(this.homeFrom(flags))
    const config = await loadConfig({ file: paths.config, services: SERVICES, env: process.env })
    const key = args.key ?? ''
    const value = displayable(key === '' ? config : getPath(config, key.split('.')))
    if (value === undefined) throw new ConfigError('the key', [{ key, problem: 'unknown key (run `btt-node config get` to see every key)' }])
    this.log(typeof value === 'object' && value !== null && !Array.isArray(value) ? JSON.stringify(value, null, 2) : Array.isArray(value) ? value.join(',') : String(value))
    return { key, value }
  }
}

/** Amounts print as BTT decimals, the way config.toml writes them. */
function displayable (value: unknown): unknown {
  if (typeof value === 'bigint') return formatBtt(value)
  if (Array.isArray(value)) return value.map(displayable)
  if (typeof value === 'object' && value !== null) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, displayable(v)]))
  return value
}
