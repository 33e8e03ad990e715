/** BEP 44: the bencoded `v` of a put must not exceed 1000 bytes. */
export const MAX_VALUE_BYTES = 1000
/** BEP 44: salt is at most 64 bytes. */
export const MAX_SALT_BYTES = 64
/** Services a node can offer; an offer lists each at most once. */
export const SERVICES = ['seeding', 'storage', 'proxy'] as const
export const MAX_SERVICES = SERVICES.length
/** Bounds what a peer can make us parse and dial; 8 covers ip4/ip6 × tcp/quic/ws with room. */
export const MAX_ADDRS = 8
export const MAX_ADDR_CHARS = 256
/** Prices are base units (1 BTT = 10^18) below 2^128, matching the channel amount range. */
export const MAX_PRICE = (1n << 128n) - 1n
/** Ledger ids are 32-byte hashes, lowercase hex. */
export const LEDGER_ID_HEX_CHARS = 64
/** Offer format version. */
export const OFFER_VERSION = 1
/** Salt of the offer item: target = SHA-1(pk ‖ "btt-offer"). */
export const OFFER_SALT = 'btt-offer'
/** Prefix of the well-known per-service infohash: SHA-1("btt-service:" + name). */
export const SERVICE_INFOHASH_PREFIX = 'btt-service:'
/** KRPC query a provider answers with its offer key (bittorrent-dht ignores unknown queries). */
export const PK_QUERY = 'btt_pk'
/** Mainline nodes drop BEP 44 items after about 2 h; refresh well inside that. */
export const DEFAULT_REFRESH_INTERVAL_MS = 30 * 60 * 1000
/** Offers live 2 h past each (re)publish unless the caller sets `ttlSeconds`. */
export const DEFAULT_TTL_SECONDS = 2 * 60 * 60
export const DEFAULT_FIND_TIMEOUT_MS = 5000
export const DEFAULT_FIND_LIMIT = 20
/** Exp is a unix time in seconds; cap it to 2^32 so it stays a small integer everywhere. */
export const MAX_EXP = 2 ** 32
