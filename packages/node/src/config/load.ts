import { readFile } from 'node:fs/promises'
import { parse as parseToml, TomlError } from 'smol-toml'
import type { z } from 'zod'
import { ENV_PREFIX } from '../constants.js'
import { ConfigError, type ConfigIssue } from '../errors.js'
import type { ServiceDefinition } from '../service.js'
import { buildConfigSchema, type NodeConfig } from './schema.js'

/** A raw, unvalidated config tree: what TOML, environment and flags produce before the schema runs. */
export type RawConfig = Record<string, unknown>

/** Environment variables that are not config keys. */
const NON_CONFIG_ENV = new Set([`${ENV_PREFIX}HOME`])

export interface LoadConfigInit {
  /** Path of config.toml. */
  file: string
  services: readonly ServiceDefinition[]
  /** Environment to read `BTT_NODE_*` variables from (default: none). */
  env?: Record<string, string | undefined>
  /** Settings from flags, by dotted key (`api.port`), highest precedence. Values are strings or typed values. */
  overrides?: Record<string, unknown>
}

/** Read config.toml, apply environment and flags over it, validate once. Throws ConfigError naming every bad key. */
export async function loadConfig (init: LoadConfigInit): Promise<NodeConfig> {
  const raw = await readConfigFile(init.file)
  const schema = buildConfigSchema(init.services)
  const defaults = schema.parse({}) as NodeConfig
  const envIssues: ConfigIssue[] = []
  for (const [name, value] of Object.entries(init.env ?? {})) {
    if (!name.startsWith(ENV_PREFIX) || NON_CONFIG_ENV.has(name) || value === undefined) continue
    const key = envNameToKey(name, defaults, init.services)
    if (key === undefined) {
      envIssues.push({ key: name, problem: 'unknown environment setting (names are BTT_NODE_<SECTION>_<KEY>, e.g. BTT_NODE_API_PORT)' })
      continue
    }
    setPath(raw, key, coerceValue(key, value, defaults))
  }
  if (envIssues.length > 0) throw new ConfigError('the environment', envIssues)
  for (const [key, value] of Object.entries(init.overrides ?? {})) {
    if (value === undefined) continue
    setPath(raw, key.split('.'), typeof value === 'string' ? coerceValue(key.split('.'), value, defaults) : value)
  }
  return validateConfig(raw, init.services, `${init.file} (with BTT_NODE_* environment and flags applied)`)
}

/** Validate a raw config tree against the full schema. */
export function validateConfig (raw: RawConfig, services: readonly ServiceDefinition[], source: string): NodeConfig {
  const result = buildConfigSchema(services).safeParse(raw)
  if (!result.success) throw new ConfigError(source, describeIssues(result.error.issues, services))
  return result.data as NodeConfig
}

/** Read and parse config.toml into a raw tree. A syntax error names the line and column. */
export async function readConfigFile (file: string): Promise<RawConfig> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {}
    throw err
  }
  try {
    return parseToml(text) as RawConfig
  } catch (err) {
    if (err instanceof TomlError) {
      throw new ConfigError(file, [{ key: `line ${err.line}, column ${err.column}`, problem: `not valid TOML: ${err.message.split('\n')[0]}` }], { cause: err })
    }
    throw err
  }
}

/** Turn zod issues into `key: problem` lines an operator can act on. */
function describeIssues (issues: readonly z.core.$ZodIssue[], services: readonly ServiceDefinition[]): ConfigIssue[] {
  const out: ConfigIssue[] = []
  for (const issue of issues) {
    const path = issue.path.map(String)
    if (issue.code === 'unrecognized_keys') {
      for (const k of issue.keys) {
        if (path.length === 1 && path[0] === 'services') {
          const known = services.map(s => s.name)
          out.push({ key: `services.${k}`, problem: `unknown service "${k}" (known: ${known.length > 0 ? known.join(', ') : 'none'})` })
        } else {
          out.push({ key: [...path, k].join('.'), problem: 'unknown key' })
        }
      }
      continue
    }
    out.push({ key: path.length > 0 ? path.join('.') : '(root)', problem: issue.message })
  }
  return out
}

/**
 * Map `BTT_NODE_API_ALLOWED_HOSTS` to ['api', 'allowed_hosts'] and
 * `BTT_NODE_SERVICES_MY_SVC_PRICE` to ['services', 'my-svc', 'price'], using the known keys
 * (those with defaults, and a service's optional keys from its schema).
 */
function envNameToKey (name: string, defaults: NodeConfig, services: readonly ServiceDefinition[]): string[] | undefined {
  const rest = name.slice(ENV_PREFIX.length).toLowerCase()
  const sections = defaults as unknown as Record<string, Record<string, unknown>>
  for (const section of Object.keys(sections)) {
    if (!rest.startsWith(`${section}_`)) continue
    const tail = rest.slice(section.length + 1)
    if (section === 'services') {
      for (const svc of Object.keys(sections.services ?? {})) {
        const envSvc = svc.replaceAll('-', '_')
        if (tail.startsWith(`${envSvc}_`)) {
          const key = tail.slice(envSvc.length + 1)
          const svcDefaults = (sections.services as Record<string, Record<string, unknown>>)[svc] ?? {}
          const shape = services.find(d => d.name === svc)?.config.shape ?? {}
          if (key in svcDefaults || Object.hasOwn(shape, key)) return ['services', svc, key]
        }
      }
      return undefined
    }
    if (tail in (sections[section] ?? {})) return [section, tail]
  }
  return undefined
}

/**
 * Turn a string from the environment, a flag or `config set` into the type the key's default has:
 * numbers and booleans are parsed strictly, lists are comma-separated (or a TOML/JSON array),
 * everything else (including amounts) stays a string for the schema to check.
 */
export function coerceValue (key: string[], value: string, defaults: NodeConfig): unknown {
  let def: unknown = defaults
  for (const k of key) def = (def as Record<string, unknown> | undefined)?.[k]
  if (typeof def === 'number') return /^-?[0-9]+$/.test(value.trim()) ? Number(value.trim()) : value
  if (typeof def === 'boolean') {
    const v = value.trim().toLowerCase()
    return v === 'true' ? true : v === 'false' ? false : value
  }
  if (Array.isArray(def)) {
    const v = value.trim()
    if (v.startsWith('[')) {
      try {
        return JSON.parse(v) as unknown
      } catch {
        return value
      }
    }
    return v === '' ? [] : v.split(',').map(s => s.trim())
  }
  return value
}

/** Set a value at a dotted path in a raw tree, creating tables on the way. Refuses prototype keys. */
export function setPath (tree: RawConfig, key: string[], value: unknown): void {
  let node: Record<string, unknown> = tree
  for (const [i, k] of key.entries()) {
    if (k === '__proto__' || k === 'constructor' || k === 'prototype') {
      throw new ConfigError('the key', [{ key: key.join('.'), problem: 'not a valid key' }])
    }
    if (i === key.length - 1) {
      node[k] = value
      return
    }
    const next = node[k]
    if (typeof next !== 'object' || next === null || Array.isArray(next)) {
      node[k] = {}
    }
    node = node[k] as Record<string, unknown>
  }
}

/** Read a value at a dotted path. */
export function getPath (tree: unknown, key: string[]): unknown {
  let node = tree
  for (const k of key) {
    if (typeof node !== 'object' || node === null || !Object.hasOwn(node, k)) return undefined
    node = (node as Record<string, unknown>)[k]
  }
  return node
}
