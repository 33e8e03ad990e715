import { stringify as stringifyToml } from 'smol-toml'
import { ConfigError } from '../errors.js'
import { writeFileAtomic } from '../fs.js'
import type { ServiceDefinition } from '../service.js'
import { coerceValue, getPath, readConfigFile, setPath, validateConfig, type RawConfig } from './load.js'
import { buildConfigSchema, type NodeConfig } from './schema.js'

const HEADER = `# btt-node configuration. Every key, its default and its environment variable:
# docs/configuration.md. \`btt-node config set\` rewrites this file (comments are not kept).
`

/**
 * Set one key in config.toml, validated against the full schema before anything is written.
 * `value` is what a user typed; it is coerced to the key's type. Returns the validated config.
 * Works whether or not a node is running (a running node applies it at its next start).
 */
export async function setConfigValue (file: string, key: string, value: string | boolean, services: readonly ServiceDefinition[]): Promise<NodeConfig> {
  const path = key.split('.')
  const defaults = buildConfigSchema(services).parse({}) as NodeConfig
  if (path.some(p => p.length === 0) || getPath(defaults, path) === undefined || isTable(getPath(defaults, path))) {
    const known = path[0] === 'services' && path.length >= 2 && getPath(defaults, path.slice(0, 2)) === undefined
    throw new ConfigError('the key', [{ key, problem: known ? `unknown service "${path[1]}"` : 'unknown key (see `btt-node config get` for every key)' }])
  }
  const raw = await readConfigFile(file)
  setPath(raw, path, typeof value === 'string' ? coerceValue(path, value, defaults) : value)
  const config = validateConfig(raw, services, `${key}`)
  await writeConfigFile(file, raw)
  return config
}

/** Write a raw config tree as TOML, atomically (temp file, fsync, rename), mode 0600. */
export async function writeConfigFile (file: string, raw: RawConfig): Promise<void> {
  await writeFileAtomic(file, HEADER + '\n' + stringifyToml(raw) + '\n', 0o600)
}

function isTable (v: unknown): boolean {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}
