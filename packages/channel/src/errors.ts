/**
 * Errors of @btt/channel. One class per condition, each with a stable `code`.
 * Callers and tests match on `code`, never on the message.
 */
export class ChannelError extends Error {
  readonly code: string
  constructor (code: string, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
  }
}

export class InvalidAmountError extends ChannelError {
  static readonly code = 'CHANNEL_INVALID_AMOUNT'
  override readonly name = 'InvalidAmountError'
  constructor (message: string, options?: { cause?: unknown }) {
    super(InvalidAmountError.code, message, options)
  }
}

export class InvalidKeyError extends ChannelError {
  static readonly code = 'CHANNEL_INVALID_KEY'
  override readonly name = 'InvalidKeyError'
  constructor (message: string) { super(InvalidKeyError.code, message) }
}

/** A voucher whose bytes, JSON or fields do not parse. */
export class MalformedVoucherError extends ChannelError {
  static readonly code = 'CHANNEL_VOUCHER_MALFORMED'
  override readonly name = 'MalformedVoucherError'
  constructor (message: string) { super(MalformedVoucherError.code, message) }
}

export class BadSignatureError extends ChannelError {
  static readonly code = 'CHANNEL_VOUCHER_BAD_SIGNATURE'
  override readonly name = 'BadSignatureError'
  constructor (message = 'voucher signature does not verify against the channel payer') { super(BadSignatureError.code, message) }
}

export class WrongLedgerError extends ChannelError {
  static readonly code = 'CHANNEL_VOUCHER_WRONG_LEDGER'
  override readonly name = 'WrongLedgerError'
  constructor (message = 'voucher is for another ledger') { super(WrongLedgerError.code, message) }
}

export class WrongChannelError extends ChannelError {
  static readonly code = 'CHANNEL_VOUCHER_WRONG_CHANNEL'
  override readonly name = 'WrongChannelError'
  constructor (message = 'voucher is for another channel') { super(WrongChannelError.code, message) }
}

export class StaleVoucherError extends ChannelError {
  static readonly code = 'CHANNEL_VOUCHER_STALE'
  override readonly name = 'StaleVoucherError'
  constructor (message: string) { super(StaleVoucherError.code, message) }
}

export class OverDepositError extends ChannelError {
  static readonly code = 'CHANNEL_VOUCHER_OVER_DEPOSIT'
  override readonly name = 'OverDepositError'
  constructor (message: string) { super(OverDepositError.code, message) }
}

export class ChannelClosedError extends ChannelError {
  static readonly code = 'CHANNEL_CLOSED'
  override readonly name = 'ChannelClosedError'
  constructor (message: string) { super(ChannelClosedError.code, message) }
}

export class UnknownChannelError extends ChannelError {
  static readonly code = 'CHANNEL_UNKNOWN'
  override readonly name = 'UnknownChannelError'
  constructor (channelId: string) { super(UnknownChannelError.code, `unknown channel ${channelId}`) }
}

/** The service must stop delivering: the peer did not pay within the payment timeout. */
export class PaymentTimeoutError extends ChannelError {
  static readonly code = 'CHANNEL_PAYMENT_TIMEOUT'
  override readonly name = 'PaymentTimeoutError'
  constructor (message: string) { super(PaymentTimeoutError.code, message) }
}

export class PeerBannedError extends ChannelError {
  static readonly code = 'CHANNEL_PEER_BANNED'
  override readonly name = 'PeerBannedError'
  constructor (peer: string, until: number) { super(PeerBannedError.code, `peer ${peer} is banned until ${new Date(until).toISOString()} after repeated payment failures`) }
}

export class SessionClosedError extends ChannelError {
  static readonly code = 'CHANNEL_SESSION_CLOSED'
  override readonly name = 'SessionClosedError'
  constructor (message = 'metering session is closed') { super(SessionClosedError.code, message) }
}

/** The channel cannot cover what the service would deliver next: the payer must top up. */
export class DepositExhaustedError extends ChannelError {
  static readonly code = 'CHANNEL_DEPOSIT_EXHAUSTED'
  override readonly name = 'DepositExhaustedError'
  constructor (message: string) { super(DepositExhaustedError.code, message) }
}
