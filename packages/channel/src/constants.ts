/** Defaults of the channel core. Each says why. */

/** How long a service waits for the payment of a delivered unit before it stops delivering. */
export const DEFAULT_PAYMENT_TIMEOUT_MS = 30_000
/** Credit-exposure cap in units: a provider never has more than one unit delivered and unpaid (DESIGN.md "Exposure"). */
export const DEFAULT_MAX_UNPAID_UNITS = 1
/** Payment failures (timeouts, invalid vouchers) in a row before a peer is banned. */
export const DEFAULT_BAN_AFTER_FAILURES = 3
/** How long a ban lasts. */
export const DEFAULT_BAN_MS = 60 * 60 * 1000
/** Claim when this much received value is unclaimed: 1 BTT. */
export const DEFAULT_CLAIM_THRESHOLD = 10n ** 18n
/** Claim everything this long before a channel expires: a refund may start at expiry. */
export const DEFAULT_CLAIM_SAFETY_MARGIN_MS = 60 * 60 * 1000
/** How often the claimer asks the ledger about channels holding unclaimed value (refunds, expiry). */
export const DEFAULT_CLAIM_POLL_MS = 60_000
