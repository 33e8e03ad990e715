/** Human formatting for torrents: sizes, rates, progress. */
export function bytes (n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']
  let i = 0
  let v = n
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++ }
  return i === 0 ? `${n} B` : `${v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)} ${units[i]}`
}

export function rate (bytesPerSecond: number): string {
  return `${bytes(bytesPerSecond)}/s`
}

export function percent (p: number): string {
  return `${(Math.floor(p * 1000) / 10).toFixed(1)}%`
}

/** A one-line progress bar for a TTY: `[#####.....] 50.0%  12.3 MiB/s  ETA 1m 2s`. */
export function bar (progress: number, width = 30): string {
  const filled = Math.max(0, Math.min(width, Math.round(progress * width)))
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`
}

export const INFOHASH = /^[0-9a-fA-F]{40}$/
