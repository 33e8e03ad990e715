import { isIP } from 'node:net'
import { parseBtt } from '@btt/channel'
import { multiaddr } from '@multiformats/multiaddr'
import { z } from 'zod'
import { DEFAULT_API_HOST, DEFAULT_API_PORT, DEFAULT_DHT_BOOTSTRAP, DEFAULT_DHT_PORT, DEFAULT_P2P_LISTEN } from '../constants.js'
import type { ServiceDefinition } from '../service.js'

/** A TCP/UDP port. 0 asks the OS for a free one (useful in tests). */
export const zPort = z.int({ error: 'must be an integer port' }).min(0, 'must be a port 0–65535').max(65535, 'must be a port 0–65535')

/**
 * An amount of BTT, written in the config as a quoted decimal string ("0.001") and parsed
 * into bigint base units. Floats are refused: TOML floats cannot hold 18 decimals exactly.
 */
export const zAmount = z.string({ error: 'write amounts as a quoted BTT decimal string, e.g. "0.001"' })
  .transform((text, ctx) => {
    try {
      return parseBtt(text)
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message })
      return z.NEVER
    }
  })

const zHost = z.string().min(1).refine(h => isIP(h) !== 0 || /^[a-zA-Z0-9.-]+$/.test(h), 'must be an IP address or host name')

const zTcpMultiaddr = z.string().superRefine((text, ctx) => {
  try {
    const protos = multiaddr(text).getComponents().map(c => c.name)
    if (!['ip4', 'ip6', 'dns4', 'dns6', 'dns'].includes(protos[0] ?? '') || protos[1] !== 'tcp') {
      ctx.addIssue({ code: 'custom', message: `"${text}" is not a TCP multiaddr like /ip4/0.0.0.0/tcp/7171` })
    }
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: `"${text}" is not a multiaddr: ${(err as Error).message}` })
  }
})

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const

const logSection = z.strictObject({
  /** trace | debug | info | warn | error | fatal | silent */
  level: z.enum(LOG_LEVELS).default('info')
})

const apiSection = z.strictObject({
  /** Address the admin API binds. Keep it on loopback unless it sits behind a TLS proxy. */
  host: zHost.default(DEFAULT_API_HOST),
  port: zPort.default(DEFAULT_API_PORT),
  /** Extra Host header names accepted (for a reverse proxy); loopback names are always accepted. */
  allowed_hosts: z.array(zHost).max(64).default([])
})

const p2pSection = z.strictObject({
  /** libp2p listen multiaddrs (TCP). */
  listen: z.array(zTcpMultiaddr).min(1, 'needs at least one address').max(16).default(DEFAULT_P2P_LISTEN),
  /** Addresses to announce instead of the listen addresses (e.g. the VPS public IP). */
  announce: z.array(zTcpMultiaddr).max(16).default([])
})

/** `host:port` of a DHT node: a host name or IPv4 address (bittorrent-dht speaks IPv4 only), a port 1–65535. */
const zHostPort = z.string().superRefine((text, ctx) => {
  const m = /^([a-zA-Z0-9.-]{1,253}):(\d{1,5})$/.exec(text)
  if (m === null || Number(m[2]) < 1 || Number(m[2]) > 65535 || (isIP(m[1] as string) === 0 && !/[a-zA-Z]/.test(m[1] as string))) {
    ctx.addIssue({ code: 'custom', message: `"${text.slice(0, 80)}" is not host:port, e.g. router.bittorrent.com:6881 or 127.0.0.1:7171` })
  }
})

const discoverySection = z.strictObject({
  /** Publish this node's signed service offer on the mainline DHT while a service with a price runs. */
  enabled: z.boolean().default(true),
  /** DHT nodes to join through (host:port). Default: the mainline DHT's public routers. */
  bootstrap: z.array(zHostPort).max(32).default([...DEFAULT_DHT_BOOTSTRAP]),
  /** Address the DHT's UDP socket binds. */
  host: zHost.default('0.0.0.0'),
  /** UDP port of the DHT node (open it in the firewall with the libp2p TCP port). */
  port: zPort.default(DEFAULT_DHT_PORT)
})

const ledgerSection = z.strictObject({
  /** A ledger server (`btt-node ledger serve`) shared by many nodes. Empty: the embedded ledger in <home>/data/ledger.db. */
  url: z.union([z.literal(''), z.url({ protocol: /^https?$/, error: 'must be an http(s) URL or empty' })]).default(''),
  /** Embedded ledger only: allow the dev faucet (`btt-node wallet faucet`). Never on a ledger holding real value. */
  dev: z.boolean().default(false),
  /** Embedded ledger only: the refund challenge window, seconds. */
  challenge_window_seconds: z.int().min(1).max(30 * 86400).default(3600)
})

const paymentsSection = z.strictObject({
  /** Claim once this much received value is unclaimed. */
  claim_threshold: zAmount.default(10n ** 18n),
  /** Claim everything this many seconds before a channel expires; channels closer to expiry are not served. */
  claim_margin_seconds: z.int().min(0).max(30 * 86400).default(3600),
  /** How often to ask the ledger about channels holding unclaimed value (refunds, expiry). */
  claim_poll_seconds: z.int().min(1).max(3600).default(60),
  /** Stop delivering to a payer that has not paid a delivered unit after this long. */
  payment_timeout_seconds: z.int().min(1).max(3600).default(30),
  /** Credit-exposure cap: units delivered and unpaid per session. */
  max_unpaid_units: z.int().min(1).max(1024).default(1),
  /** Payment failures in a row before a peer is banned, and for how long. */
  ban_after_failures: z.int().min(1).max(1000).default(3),
  ban_minutes: z.int().min(0).max(60 * 24 * 365).default(60)
})

/** Every service section has `enabled`; the service adds its own keys. */
const serviceBase = { enabled: z.boolean().default(false) }

/** Build the node's one config schema from the runtime sections and each service's section. */
export function buildConfigSchema (services: readonly ServiceDefinition[]) {
  const serviceShape: Record<string, z.ZodType> = {}
  for (const def of services) {
    serviceShape[def.name] = def.config.extend(serviceBase).strict().prefault({})
  }
  return z.strictObject({
    log: logSection.prefault({}),
    api: apiSection.prefault({}),
    p2p: p2pSection.prefault({}),
    discovery: discoverySection.prefault({}),
    ledger: ledgerSection.prefault({}),
    payments: paymentsSection.prefault({}),
    services: z.strictObject(serviceShape).prefault({})
  })
}

export type NodeConfigSchema = ReturnType<typeof buildConfigSchema>
/** The validated configuration: amounts are bigint, every default is filled in. */
export type NodeConfig = z.output<NodeConfigSchema> & {
  services: Record<string, { enabled: boolean, [key: string]: unknown }>
}
