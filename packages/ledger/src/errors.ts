/**
 * Errors of @btt/ledger. One class per condition, each with a stable `code` that the HTTP server
 * maps to a status (http.ts) and that clients and tests match on. Voucher problems reuse
 * @btt/channel's errors (codes CHANNEL_…).
 */
export class LedgerError extends Error {
  readonly code: string
  constructor (code: string, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
  }
}

export class InsufficientFundsError extends LedgerError {
  static readonly code = 'LEDGER_INSUFFICIENT_FUNDS'
  override readonly name = 'InsufficientFundsError'
  constructor (message = 'the account balance does not cover this amount') { super(InsufficientFundsError.code, message) }
}

export class UnknownChannelError extends LedgerError {
  static readonly code = 'LEDGER_UNKNOWN_CHANNEL'
  override readonly name = 'UnknownChannelError'
  constructor (message = 'no such channel on this ledger') { super(UnknownChannelError.code, message) }
}

export class ChannelExistsError extends LedgerError {
  static readonly code = 'LEDGER_CHANNEL_EXISTS'
  override readonly name = 'ChannelExistsError'
  constructor (message = 'a channel with this id exists already: choose a new nonce') { super(ChannelExistsError.code, message) }
}

export class NotPayerError extends LedgerError {
  static readonly code = 'LEDGER_NOT_PAYER'
  override readonly name = 'NotPayerError'
  constructor (message = 'only the channel payer may do this') { super(NotPayerError.code, message) }
}

export class NotPayeeError extends LedgerError {
  static readonly code = 'LEDGER_NOT_PAYEE'
  override readonly name = 'NotPayeeError'
  constructor (message = 'only the channel payee may claim') { super(NotPayeeError.code, message) }
}

/** Finalize by someone who is neither the payer nor the payee. */
export class NotPartyError extends LedgerError {
  static readonly code = 'LEDGER_NOT_PARTY'
  override readonly name = 'NotPartyError'
  constructor (message = 'only the channel payer or payee may do this') { super(NotPartyError.code, message) }
}

export class NotExpiredError extends LedgerError {
  static readonly code = 'LEDGER_NOT_EXPIRED'
  override readonly name = 'NotExpiredError'
  constructor (message = 'the channel has not expired yet') { super(NotExpiredError.code, message) }
}

export class ChannelFinalizedError extends LedgerError {
  static readonly code = 'LEDGER_CHANNEL_FINALIZED'
  override readonly name = 'ChannelFinalizedError'
  constructor (message = 'the channel is finalized') { super(ChannelFinalizedError.code, message) }
}

export class AlreadyRefundingError extends LedgerError {
  static readonly code = 'LEDGER_ALREADY_REFUNDING'
  override readonly name = 'AlreadyRefundingError'
  constructor (message = 'the channel is refunding') { super(AlreadyRefundingError.code, message) }
}

/** Finalize of a channel whose refund has not started. */
export class NotRefundingError extends LedgerError {
  static readonly code = 'LEDGER_NOT_REFUNDING'
  override readonly name = 'NotRefundingError'
  constructor (message = 'the channel is not refunding: the payer must ask for a refund after expiry first') { super(NotRefundingError.code, message) }
}

export class ChallengeOpenError extends LedgerError {
  static readonly code = 'LEDGER_CHALLENGE_OPEN'
  override readonly name = 'ChallengeOpenError'
  constructor (message = 'the challenge window is still open') { super(ChallengeOpenError.code, message) }
}

export class BadExpiryError extends LedgerError {
  static readonly code = 'LEDGER_BAD_EXPIRY'
  override readonly name = 'BadExpiryError'
  constructor (message = 'bad expiry time') { super(BadExpiryError.code, message) }
}

export class FaucetDisabledError extends LedgerError {
  static readonly code = 'LEDGER_FAUCET_DISABLED'
  override readonly name = 'FaucetDisabledError'
  constructor (message = 'the faucet exists only on a ledger started in dev mode') { super(FaucetDisabledError.code, message) }
}

export class BadRequestError extends LedgerError {
  static readonly code = 'LEDGER_BAD_REQUEST'
  override readonly name = 'BadRequestError'
  constructor (message = 'bad request') { super(BadRequestError.code, message) }
}

export class UnauthenticatedError extends LedgerError {
  static readonly code = 'LEDGER_UNAUTHENTICATED'
  override readonly name = 'UnauthenticatedError'
  constructor (message = 'the request must be signed by the account key (x-btt-account, x-btt-timestamp, x-btt-nonce, x-btt-signature)') { super(UnauthenticatedError.code, message) }
}

export class StaleTimestampError extends LedgerError {
  static readonly code = 'LEDGER_STALE_TIMESTAMP'
  override readonly name = 'StaleTimestampError'
  constructor (message = 'the request timestamp is too far from the ledger clock; check this machine\'s clock') { super(StaleTimestampError.code, message) }
}

export class ReplayError extends LedgerError {
  static readonly code = 'LEDGER_REPLAY'
  override readonly name = 'ReplayError'
  constructor (message = 'this request nonce was used already') { super(ReplayError.code, message) }
}

export class RouteNotFoundError extends LedgerError {
  static readonly code = 'LEDGER_NOT_FOUND'
  override readonly name = 'RouteNotFoundError'
  constructor (message = 'no such route') { super(RouteNotFoundError.code, message) }
}

export class BodyTooLargeError extends LedgerError {
  static readonly code = 'LEDGER_BODY_TOO_LARGE'
  override readonly name = 'BodyTooLargeError'
  constructor (message = 'request body too large') { super(BodyTooLargeError.code, message) }
}

/** The ledger database could not take the write lock in time (another process holds it). */
export class LedgerBusyError extends LedgerError {
  static readonly code = 'LEDGER_BUSY'
  override readonly name = 'LedgerBusyError'
  constructor (message = 'the ledger database is busy; retry', options?: { cause?: unknown }) { super(LedgerBusyError.code, message, options) }
}

export class LedgerClosedError extends LedgerError {
  static readonly code = 'LEDGER_CLOSED'
  override readonly name = 'LedgerClosedError'
  constructor (message = 'the ledger is closed') { super(LedgerClosedError.code, message) }
}

/** Client side: the ledger server could not be reached or did not answer in time. */
export class LedgerUnreachableError extends LedgerError {
  static readonly code = 'LEDGER_UNREACHABLE'
  override readonly name = 'LedgerUnreachableError'
  constructor (message = 'the ledger server could not be reached', options?: { cause?: unknown }) { super(LedgerUnreachableError.code, message, options) }
}

/** Client side: the ledger server answered something this client does not understand. */
export class BadResponseError extends LedgerError {
  static readonly code = 'LEDGER_BAD_RESPONSE'
  override readonly name = 'BadResponseError'
  constructor (message = 'the ledger server sent a malformed response', options?: { cause?: unknown }) { super(BadResponseError.code, message, options) }
}

/** Server side: an unexpected failure (its detail is not sent to the caller). */
export class InternalError extends LedgerError {
  static readonly code = 'LEDGER_INTERNAL'
  override readonly name = 'InternalError'
  constructor (message = 'internal ledger error') { super(InternalError.code, message) }
}

/** Error classes by code, so a client can rebuild the error the server threw. */
export const LEDGER_ERRORS: Readonly<Record<string, new (message?: string) => LedgerError>> = Object.freeze({
  [InsufficientFundsError.code]: InsufficientFundsError,
  [UnknownChannelError.code]: UnknownChannelError,
  [ChannelExistsError.code]: ChannelExistsError,
  [NotPayerError.code]: NotPayerError,
  [NotPayeeError.code]: NotPayeeError,
  [NotPartyError.code]: NotPartyError,
  [NotExpiredError.code]: NotExpiredError,
  [ChannelFinalizedError.code]: ChannelFinalizedError,
  [AlreadyRefundingError.code]: AlreadyRefundingError,
  [NotRefundingError.code]: NotRefundingError,
  [ChallengeOpenError.code]: ChallengeOpenError,
  [BadExpiryError.code]: BadExpiryError,
  [FaucetDisabledError.code]: FaucetDisabledError,
  [BadRequestError.code]: BadRequestError,
  [UnauthenticatedError.code]: UnauthenticatedError,
  [StaleTimestampError.code]: StaleTimestampError,
  [ReplayError.code]: ReplayError,
  [RouteNotFoundError.code]: RouteNotFoundError,
  [BodyTooLargeError.code]: BodyTooLargeError,
  [LedgerBusyError.code]: LedgerBusyError,
  [LedgerClosedError.code]: LedgerClosedError,
  [InternalError.code]: InternalError
})
