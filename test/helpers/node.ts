import { createNode, initHome, type BttNode, type ServiceDefinition } from '@btt/node'
import { pino } from 'pino'
import { tempHome } from './cli.js'

/** A real node on a temporary home, on loopback with OS-assigned ports, started. */
export async function createTestNode (opts: { services?: ServiceDefinition[], home?: string, init?: boolean } = {}): Promise<BttNode> {
  const home = opts.home ?? await tempHome()
  if (opts.init !== false && opts.home === undefined) await initHome(home)
  const node = await createNode({
    home,
    services: opts.services ?? [],
    logger: pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }),
    overrides: { 'api.port': 0, 'api.host': '127.0.0.1', 'p2p.listen': ['/ip4/127.0.0.1/tcp/0'], 'discovery.enabled': false }
  })
  await node.start()
  return node
}
