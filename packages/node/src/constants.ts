/** Defaults and limits of the node runtime. Each limit says why it is what it is. */

/** Admin API port. 7070 is unassigned by IANA and unlikely to collide with BitTorrent ports. */
export const DEFAULT_API_PORT = 7070
/** Admin API binds loopback only by default: it controls money. Expose it through a proxy or SSH tunnel. */
export const DEFAULT_API_HOST = '127.0.0.1'
/** libp2p TCP port for storage, proxy and channel streams between nodes. Public by default: a provider must be reachable. */
export const DEFAULT_P2P_LISTEN = ['/ip4/0.0.0.0/tcp/7171']
/** UDP port of the DHT node that publishes this node's offers: the libp2p port's number, so one firewall rule number covers both. */
export const DEFAULT_DHT_PORT = 7171
/** The mainline DHT's public routers (bittorrent-dht's own defaults). */
export const DEFAULT_DHT_BOOTSTRAP = ['router.bittorrent.com:6881', 'router.utorrent.com:6881', 'dht.transmissionbt.com:6881'] as const

/** The whole shutdown must finish within 10 s (systemd's and docker's default grace period is 10 s). */
export const SHUTDOWN_DEADLINE_MS = 10_000
/** Each component gets at most this long to stop before the next one is stopped regardless. */
export const COMPONENT_STOP_TIMEOUT_MS = 4_000

/** Largest admin API request body: enable/disable and service routes carry small JSON. */
export const API_MAX_BODY_BYTES = 1024 * 1024
/** A typed client gives up on the admin API after this long. */
export const API_CLIENT_TIMEOUT_MS = 15_000

/** Service names are used in URLs, config keys and environment variables. */
export const SERVICE_NAME_PATTERN = /^[a-z][a-z0-9-]{0,31}$/

/** Prefix of every metric this node exports. */
export const METRICS_PREFIX = 'btt_'
/** Prefix of every environment variable the config reads. */
export const ENV_PREFIX = 'BTT_NODE_'
