/**
 * Every error the seeding service raises on bad input carries a stable `code`, so callers (the
 * admin API, the CLI, the peer loop) can tell a hostile or malformed input from a bug.
 *
 * Code families: BENCODE_* (bencode decoding), TORRENT_* (.torrent and info dicts), MAGNET_*
 * (magnet URIs), EXT_* (BEP 10/9/11 extension messages), WIRE_* (peer wire protocol),
 * TRACKER_* (tracker responses), SEEDING_* (engine operations).
 */
export class SeedingError extends Error {
  constructor (readonly code: string, message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'SeedingError'
  }
}

export function isSeedingError (err: unknown, prefix = ''): err is SeedingError {
  return err instanceof SeedingError && err.code.startsWith(prefix)
}
