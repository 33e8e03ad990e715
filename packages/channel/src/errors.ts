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
