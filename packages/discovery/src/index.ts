export { Discovery } from './discovery.js'
export type { DiscoveryInit, FindOptions, OfferInput, PublishResult } from './discovery.js'
export {
  decodeOffer, encodeOffer, isServiceName, mutableTarget, serviceInfohash, signatureData, signOffer,
  validateOffer, verifyItem, verifySignature
} from './offers.js'
export type { DecodeOptions, KeyPair, Offer, ServiceName, SignedItem, SignOptions, VerifiedOffer, VerifyOptions } from './offers.js'
export { DiscoveryError, InvalidOfferError } from './errors.js'
export type { DiscoveryErrorCode } from './errors.js'
export * as limits from './constants.js'
