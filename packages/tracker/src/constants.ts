/** Default announce interval (s): BEP 3 leaves it to the tracker; 30 min is what public trackers use. */
export const DEFAULT_INTERVAL = 1800
/** Default min interval (s) clients should respect between announces. */
export const DEFAULT_MIN_INTERVAL = 60
/** Peers returned when numwant is absent (BEP 3 convention). */
export const DEFAULT_NUMWANT = 50
/** numwant is clamped to this: more peers than this never help a client and cost bandwidth. */
export const MAX_NUMWANT = 200
/** Peers kept per swarm; beyond it new peers get answers but are not stored. */
export const DEFAULT_MAX_PEERS_PER_SWARM = 10_000
/** Swarms kept; beyond it announces for new info hashes fail. */
export const DEFAULT_MAX_SWARMS = 1_000_000
/** Longest accepted announce / bid-scrape query string (bytes): a full announce with bid fields is ~400. */
export const MAX_QUERY_BYTES = 2048
/** Longest accepted scrape query: 100 fully percent-encoded info hashes (100 × 70 bytes) plus slack. */
export const MAX_SCRAPE_QUERY_BYTES = 8192
/** info_hash repetitions in one HTTP scrape. */
export const MAX_SCRAPE_HASHES = 100
/** info hashes in one UDP scrape: BEP 15 says ~74 fit in a packet. */
export const MAX_UDP_SCRAPE_HASHES = 74
/** Per-IP token bucket: sustained announces per second and burst. */
export const DEFAULT_RATE_PER_SECOND = 50
export const DEFAULT_RATE_BURST = 200
/** Paid slots assumed by the clearing-price estimate of bid-scrape. */
export const DEFAULT_PAID_SLOTS = 4
/** bid-scrape page size: default and cap. */
export const DEFAULT_BID_SCRAPE_LIMIT = 100
export const MAX_BID_SCRAPE_LIMIT = 1000
/** How long (ms) the sorted bid-scrape index may be reused after a change before it is rebuilt. */
export const DEFAULT_BID_INDEX_MAX_AGE_MS = 1000
/** A UDP connection id is valid in the bucket it was issued and the next one (BEP 15: 2 minutes). */
export const UDP_CONNECTION_BUCKET_MS = 60_000
/** BEP 15 protocol magic. */
export const UDP_PROTOCOL_ID = 0x41727101980n
/** Client responses are refused past this size. */
export const MAX_RESPONSE_BYTES = 4 * 1024 * 1024
/** Memoised UDP connection ids (one HMAC per client address and minute instead of per packet). */
export const MAX_CONNECTION_ID_CACHE = 100_000
/** Per-IP rate buckets kept at most (memory bound against many source addresses). */
export const MAX_RATE_BUCKETS = 1_000_000
/** Peers one address (an IPv4 address or an IPv6 /64) may hold in one swarm: a few clients behind a NAT, not a flood of made-up peer ids. */
export const MAX_PEERS_PER_ADDRESS = 8
/** Peers across every swarm: past it, new peers get answers but are not stored. */
export const DEFAULT_MAX_PEERS_TOTAL = 2_000_000
