/**
 * Every error raised on bad input carries a stable `code`, so callers (the admin API, the CLI, the
 * peer loop) can tell a hostile or malformed input from a bug. Services extend this class.
 *
 * Code families here: BENCODE_* (bencode decoding and the typed field getters, which take the
 * family of the caller: TORRENT_*, EXT_*, …) and BTT_* (the `btt` extension messages).
 */
export class CodedError extends Error {
  constructor (readonly code: string, message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'CodedError'
  }
}

/** An error of the `btt` wire codec or bencode. */
export class WireError extends CodedError {
  constructor (code: string, message: string, options?: ErrorOptions) {
    super(code, message, options)
    this.name = 'WireError'
  }
}

export function isCodedError (err: unknown, prefix = ''): err is CodedError {
  return err instanceof CodedError && err.code.startsWith(prefix)
}
