/** How a torrent's reserve price grows (base units per KiB). */
export interface ReserveSchedule {
  /** Growth per hour since possession was last proven (linear). */
  perHour: bigint
  /** Never above this. */
  cap: bigint
  /** A fixed reserve for this torrent instead of the curve (the operator's override). */
  override?: bigint
}

/**
 * The whitepaper's default reserve: 0 when the torrent completed, then growing with the time since
 * another peer last proved possession (a valid source_proof), up to the cap. Integer arithmetic:
 * floor(perHour × elapsed ms / 3,600,000).
 */
export function reservePrice (schedule: ReserveSchedule, since: { completedAt: number, lastProofAt?: number }, now: number): bigint {
  if (schedule.override !== undefined) return schedule.override
  if (schedule.perHour < 0n || schedule.cap < 0n) throw new RangeError('reserve schedule amounts must not be negative')
  const from = Math.max(since.completedAt, since.lastProofAt ?? 0)
  const elapsed = BigInt(Math.max(0, Math.floor(now - from)))
  const grown = schedule.perHour * elapsed / 3_600_000n
  return grown > schedule.cap ? schedule.cap : grown
}
