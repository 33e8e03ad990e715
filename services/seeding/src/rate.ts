/** Bytes per second over the last few seconds, in 1-second buckets. */
export class RateMeter {
  private readonly buckets = new Float64Array(5)
  private second = Math.floor(Date.now() / 1000)
  total = 0

  add (n: number): void {
    this.roll()
    this.buckets[this.second % 5]! += n
    this.total += n
  }

  /** Average over the last full buckets plus the current one, in bytes/s. */
  get rate (): number {
    this.roll()
    let sum = 0
    for (const b of this.buckets) sum += b
    return sum / 5
  }

  private roll (): void {
    const now = Math.floor(Date.now() / 1000)
    if (now === this.second) return
    for (let s = this.second + 1; s <= now && s <= this.second + 5; s++) this.buckets[s % 5] = 0
    this.second = now
  }
}

/** A token bucket for byte rates. A rate of 0 means unlimited. */
export class TokenBucket {
  private tokens: number
  private last = performance.now()

  constructor (private rate_: number) {
    this.tokens = rate_
  }

  get rate (): number { return this.rate_ }
  set rate (r: number) {
    this.rate_ = r
    this.tokens = Math.min(this.tokens, r)
  }

  /** Milliseconds until `n` bytes may pass (0 = now, and the bytes are taken). */
  take (n: number): number {
    const wait = this.wait(n)
    if (wait === 0 && this.rate_ > 0) this.tokens -= n
    return wait
  }

  /**
   * Milliseconds until `n` bytes may pass, taking nothing: to pass bytes through two buckets
   * (a torrent's and the engine's), ask both, then take from both, or one loses budget.
   */
  wait (n: number): number {
    if (this.rate_ <= 0) return 0
    const now = performance.now()
    // burst of one second's worth, at least one block
    const cap = Math.max(this.rate_, n)
    this.tokens = Math.min(cap, this.tokens + (now - this.last) * this.rate_ / 1000)
    this.last = now
    return this.tokens >= n ? 0 : Math.ceil((n - this.tokens) * 1000 / this.rate_)
  }

  /** Counts bytes that already passed (downloads): the debt delays what comes next. */
  spend (n: number): number {
    if (this.rate_ <= 0) return 0
    const now = performance.now()
    this.tokens = Math.min(this.rate_, this.tokens + (now - this.last) * this.rate_ / 1000) - n
    this.last = now
    return this.tokens >= 0 ? 0 : Math.ceil(-this.tokens * 1000 / this.rate_)
  }
}
