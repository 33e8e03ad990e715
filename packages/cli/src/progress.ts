import { bar, bytes, percent, rate } from './seed-format.js'

/**
 * A progress line on stderr for long transfers: `[#####.....] 50.0%  12 MiB of 24 MiB  30.1 MiB/s`.
 * Drawn only on a TTY and at most 10 times a second; `done()` ends the line.
 */
export class ProgressLine {
  private readonly started = performance.now()
  private last = 0
  private readonly tty: boolean

  /** `total` undefined: the size is not known (yet); the line shows bytes and rate only. */
  constructor (private total: number | undefined, private readonly label: string, enabled = true) {
    this.tty = enabled && process.stderr.isTTY === true
  }

  update (done: number, total?: number): void {
    if (total !== undefined) this.total = total
    if (!this.tty) return
    const now = performance.now()
    if (now - this.last < 100 && (this.total === undefined || done < this.total)) return
    this.last = now
    const secs = (now - this.started) / 1000
    const speed = rate(secs > 0 ? done / secs : 0)
    if (this.total === undefined) {
      process.stderr.write(`\r${this.label} ${bytes(done)}  ${speed}   `)
      return
    }
    const p = this.total > 0 ? done / this.total : 1
    process.stderr.write(`\r${this.label} ${bar(p)} ${percent(p)}  ${bytes(done)} of ${bytes(this.total)}  ${speed}   `)
  }

  done (): void {
    if (this.tty) process.stderr.write('\n')
  }

  /** Seconds since the start. */
  get seconds (): number {
    return (performance.now() - this.started) / 1000
  }
}

/** One progress line per phase, on a TTY only. */
export class PhasedProgress {
  private line: ProgressLine | undefined
  private phase: string | undefined
  constructor (private readonly enabled: boolean) {}
  update (p: { phase: 'copy' | 'archive' | 'verify', done: number, total: number }): void {
    if (p.phase !== this.phase) {
      this.line?.done()
      this.phase = p.phase
      this.line = new ProgressLine(p.total, { copy: 'copying  ', archive: 'archiving', verify: 'verifying' }[p.phase], this.enabled)
    }
    this.line?.update(p.done, p.total)
  }

  done (): void {
    this.line?.done()
    this.line = undefined
  }
}
