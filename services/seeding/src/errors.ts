import { CodedError } from '@btt/wire'

/**
 * Every error the seeding service raises on bad input carries a stable `code`, so callers (the
 * admin API, the CLI, the peer loop) can tell a hostile or malformed input from a bug.
 *
 * Code families: BENCODE_* (bencode decoding, raised by @btt/wire), TORRENT_* (.torrent and info
 * dicts), MAGNET_* (magnet URIs), EXT_* (BEP 10/9/11 extension messages), WIRE_* (peer wire
 * protocol), BTT_* (the paid-seeding extension), TRACKER_* (tracker responses), SEEDING_* (engine
 * operations).
 */
export class SeedingError extends CodedError {
  constructor (code: string, message: string, options?: ErrorOptions) {
    super(code, message, options)
    this.name = 'SeedingError'
  }
}

/** Any coded input error: the seeding service's own, or one from the bencode / btt codec. */
export function isSeedingError (err: unknown, prefix = ''): err is CodedError {
  return err instanceof CodedError && err.code.startsWith(prefix)
}
