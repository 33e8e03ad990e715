import { formatBtt } from '@btt/channel'

/** Plain-text table: columns padded to their widest cell. */
export function table (headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map(r => (r[i] ?? '').length)))
  const line = (cells: string[]): string => cells.map((c, i) => i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)).join('  ').trimEnd()
  return [line(headers), ...rows.map(line)].join('\n')
}

/** 3725 → "1h 2m 5s". */
export function duration (seconds: number): string {
  const d = Math.floor(seconds / 86400)
  const h = Math.floor((seconds % 86400) / 3600)
  const m = Math.floor((seconds % 3600) / 60)
  const s = seconds % 60
  return [d > 0 ? `${d}d` : '', h > 0 ? `${h}h` : '', m > 0 ? `${m}m` : '', `${s}s`].filter(Boolean).join(' ')
}

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 }

/** "7d", "12h", "90m", "3600s", "2w" → milliseconds. */
export function parseDuration (text: string): number {
  const m = /^([1-9][0-9]{0,6})([smhdw])$/.exec(text.trim())
  if (m === null) throw new Error(`"${text}" is not a duration like 30m, 12h, 7d or 2w`)
  return Number(m[1]) * (UNIT_MS[m[2] as string] as number)
}

/** An amount of base units (decimal string) as "1.5 BTT", exact. */
export function btt (baseUnits: string | bigint): string {
  return `${formatBtt(typeof baseUnits === 'bigint' ? baseUnits : BigInt(baseUnits))} BTT`
}
