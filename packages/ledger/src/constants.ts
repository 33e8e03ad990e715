/** Defaults and limits of the ledger. Each says why it is what it is. */

/** The ledger's version, reported by GET /v1/info. */
export const LEDGER_VERSION = '0.1.0'

/** Refund challenge window: DESIGN.md "Payment channels" step 5 (default 1 h). */
export const DEFAULT_CHALLENGE_WINDOW_MS = 60 * 60 * 1000
/**
 * Longest challenge window accepted: 30 days. Longer would lock a payer's refund for longer than
 * any payee needs to bring its last voucher.
 */
export const MAX_CHALLENGE_WINDOW_MS = 30 * 24 * 60 * 60 * 1000
/**
 * Latest expiry a channel may have, counted from now: 10 years. A bound so that an expiry is a
 * plausible time and its arithmetic (expiry + window) stays far inside Number.MAX_SAFE_INTEGER.
 */
export const MAX_EXPIRY_AHEAD_MS = 10 * 365 * 24 * 60 * 60 * 1000

/** How long a writer waits for another process's write transaction before giving up (SQLite busy_timeout). */
export const BUSY_TIMEOUT_MS = 10_000
/**
 * Most operations committed in one group-commit transaction. Bounds the time the write lock is held
 * and the latency added to the first request of a batch (≈ 100 µs per claim here, so ≤ ~25 ms).
 */
export const MAX_BATCH_OPS = 256

/** Domain separation of signed requests: the first line of the signed text. */
export const REQUEST_DOMAIN = 'btt-ledger-request-v1'
/** A signed request's timestamp may differ from the ledger's clock by at most this: 2 minutes. */
export const REQUEST_MAX_SKEW_MS = 2 * 60 * 1000
/**
 * Request nonces are kept this long after their timestamp: twice the skew, so a replay is always
 * either stale or found, even when another process's clock is a full skew behind.
 */
export const NONCE_RETENTION_MS = 2 * REQUEST_MAX_SKEW_MS
/** Old request nonces are deleted at most this often (inside a write transaction)… */
export const NONCE_PRUNE_INTERVAL_MS = 1000
/**
 * …and at most this many at a time, so that no request waits for a large delete; while a prune
 * finds this many, the next request prunes again (at 4,000 requests/s about 1 in 500 does).
 */
export const NONCE_PRUNE_BATCH = 512
/** Request nonce: 16 random bytes (hex in `x-btt-nonce`). */
export const REQUEST_NONCE_BYTES = 16

/** Largest request body: every request is a small JSON object (a voucher is ~350 bytes). */
export const MAX_BODY_BYTES = 64 * 1024
/** The HTTP client gives up on the ledger after this long. */
export const CLIENT_TIMEOUT_MS = 30_000
/** Largest answer the HTTP client reads: a long channel list (~400 bytes per channel) fits. */
export const CLIENT_MAX_ANSWER_BYTES = 64 * 1024 * 1024

export const HEADER_ACCOUNT = 'x-btt-account'
export const HEADER_TIMESTAMP = 'x-btt-timestamp'
export const HEADER_NONCE = 'x-btt-nonce'
export const HEADER_SIGNATURE = 'x-btt-signature'
