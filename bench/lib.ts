import { readFileSync } from 'node:fs'

/** CPU seconds (user + system) a process has used so far, from /proc (Linux). */
export function cpuSeconds (pid: number): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? []
    return (Number(f[11]) + Number(f[12])) / 100
  } catch {
    return NaN
  }
}

/** One benchmark figure, printed as one JSON line on stdout. */
export interface Figure {
  bench: string
  value: number
  unit: string
  anchor?: string
  anchor_value?: number
  ratio?: number
}

export function report (figure: Figure): void {
  const out: Figure = { ...figure, value: round(figure.value) }
  if (figure.anchor_value !== undefined) {
    out.anchor_value = round(figure.anchor_value)
    out.ratio = round(figure.value / figure.anchor_value)
  }
  process.stdout.write(JSON.stringify(out) + '\n')
}

export function median (values: number[]): number {
  const s = [...values].sort((a, b) => a - b)
  const mid = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[mid] as number : ((s[mid - 1] as number) + (s[mid] as number)) / 2
}

/** Progress for a human, on stderr so stdout stays JSON lines. */
export function note (text: string): void {
  process.stderr.write(`[bench] ${text}\n`)
}

function round (n: number): number {
  return Math.round(n * 1000) / 1000
}
