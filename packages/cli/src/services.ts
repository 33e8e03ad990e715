import { AdminClient, homePaths, loadConfig, NodeNotRunningError, setConfigValue, type ServiceChangeResult, type ServiceInfo } from '@btt/node'
import { SERVICES } from './composition.js'

/**
 * When no node runs on the home, services are listed from, and enabled in, config.toml,
 * so an operator can prepare a node before its first start.
 */
export async function listFromConfig (home: string): Promise<ServiceInfo[]> {
  const config = await loadConfig({ file: homePaths(home).config, services: SERVICES, env: process.env })
  return SERVICES.map(def => ({
    name: def.name,
    description: def.description,
    enabled: config.services[def.name]?.enabled === true,
    state: 'stopped',
    protocols: [],
    pricing: []
  }))
}

export async function setEnabledInConfig (home: string, name: string, enabled: boolean): Promise<ServiceInfo> {
  const config = await setConfigValue(homePaths(home).config, `services.${name}.enabled`, enabled, SERVICES)
  const def = SERVICES.find(s => s.name === name)
  return { name, description: def?.description ?? '', enabled: config.services[name]?.enabled === true, state: 'stopped', protocols: [], pricing: [] }
}

export function isNotRunning (err: unknown): err is NodeNotRunningError {
  return err instanceof NodeNotRunningError
}

/** Enable or disable a service: live through the admin API, or in config.toml when no node runs. */
export async function changeService (client: AdminClient, home: string, name: string, enabled: boolean): Promise<{ result: ServiceChangeResult, message: string }> {
  const verb = enabled ? 'enabled' : 'disabled'
  let result: ServiceChangeResult
  try {
    result = enabled ? await client.enableService(name) : await client.disableService(name)
  } catch (err) {
    if (!isNotRunning(err)) throw err
    result = { service: await setEnabledInConfig(home, name, enabled), applied: 'restart' }
  }
  const s = result.service
  const message = result.applied === 'live'
    ? `${s.name}: ${verb}, now ${s.state}${s.error !== undefined ? ` (${s.error})` : ''}`
    : `${s.name}: ${verb} in config.toml; the node is not running, so it applies at the next start`
  return { result, message }
}
