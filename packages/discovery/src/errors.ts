/** Stable error codes of @btt/discovery. Tests assert the code, not the message. */
export type DiscoveryErrorCode =
  // value encoding
  | 'OFFER_MALFORMED' // not strict canonical bencode
  | 'OFFER_TOO_LARGE' // bencoded value over the BEP 44 limit (1000 bytes)
  | 'OFFER_NOT_DICT'
  | 'OFFER_UNKNOWN_FIELD'
  | 'OFFER_MISSING_FIELD'
  | 'OFFER_BAD_VERSION'
  // fields
  | 'OFFER_BAD_SERVICES'
  | 'OFFER_TOO_MANY_SERVICES'
  | 'OFFER_UNKNOWN_SERVICE'
  | 'OFFER_DUPLICATE_SERVICE'
  | 'OFFER_BAD_PRICES'
  | 'OFFER_BAD_PRICE'
  | 'OFFER_BAD_ADDRS'
  | 'OFFER_TOO_MANY_ADDRS'
  | 'OFFER_BAD_ADDR'
  | 'OFFER_BAD_PORT'
  | 'OFFER_BAD_LEDGER'
  | 'OFFER_BAD_EXPIRY'
  | 'OFFER_EXPIRED'
  // signed item
  | 'OFFER_BAD_KEY'
  | 'OFFER_BAD_SEQ'
  | 'OFFER_BAD_SALT'
  | 'OFFER_BAD_SIGNATURE'
  | 'OFFER_TARGET_MISMATCH'
  | 'OFFER_SEQ_STALE'
  // runtime
  | 'DISCOVERY_NOT_STARTED'
  | 'DISCOVERY_PUT_FAILED'

export class DiscoveryError extends Error {
  override name = 'DiscoveryError'
  readonly code: DiscoveryErrorCode

  constructor (code: DiscoveryErrorCode, message?: string, options?: { cause?: unknown }) {
    super(message ?? code, options)
    this.code = code
  }
}

/** An offer or signed item that breaks the format; `code` names the violation. */
export class InvalidOfferError extends DiscoveryError {
  override name = 'InvalidOfferError'
}
