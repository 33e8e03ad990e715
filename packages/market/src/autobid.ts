/** Spending rate as parts per million (1,000,000 = 1.0): no floats near money. */
export const PPM = 1_000_000n

/**
 * The whitepaper's auto-bid: bid = spendingRate × balance / (remainingBytes / 1024), in base units
 * per KiB, rounded down. Nothing left to download bids 0.
 */
export function autoBid (opts: { spendingRatePpm: bigint, balance: bigint, remainingBytes: bigint }): bigint {
  const { spendingRatePpm: r, balance, remainingBytes } = opts
  if (r < 0n || r > PPM) throw new RangeError('spending rate must be within 0..1 (0..1,000,000 ppm)')
  if (balance < 0n || remainingBytes < 0n) throw new RangeError('balance and remaining bytes must not be negative')
  if (remainingBytes === 0n) return 0n
  return r * balance * 1024n / (PPM * remainingBytes)
}

/** Parses "0.75" / "1" / "0" into ppm, exactly; more than 6 decimals is refused. */
export function parseSpendingRate (text: string): bigint {
  const m = /^(0|1)(?:\.(\d{1,6}))?$/.exec(text.trim())
  if (m === null) throw new RangeError(`spending rate "${text}" must be a decimal from 0 to 1 with at most 6 decimals`)
  const ppm = BigInt(m[1]!) * PPM + BigInt((m[2] ?? '').padEnd(6, '0') || '0')
  if (ppm > PPM) throw new RangeError(`spending rate "${text}" is above 1`)
  return ppm
}

/**
 * When to send a new bid (whitepaper "Bidding Revisions and Frequency"): the first bid at once; a
 * changed budget at once; otherwise only after a minute since the last bid and only when the bid
 * moved by more than 10 %.
 */
export class BidScheduler {
  private last?: bigint
  private lastAt = 0

  constructor (private readonly minIntervalMs = 60_000) {}

  /** Returns the bid to send now, or undefined to keep the current one. */
  next (bid: bigint, now: number, budgetChanged = false): bigint | undefined {
    const send = this.last === undefined || budgetChanged ||
      (now - this.lastAt >= this.minIntervalMs && movedOver10Percent(this.last, bid))
    if (!send) return undefined
    this.last = bid
    this.lastAt = now
    return bid
  }
}

function movedOver10Percent (from: bigint, to: bigint): boolean {
  const diff = to > from ? to - from : from - to
  if (from === 0n) return to !== 0n
  return diff * 10n > from
}
