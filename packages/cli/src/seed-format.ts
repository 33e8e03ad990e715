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

/** The first 12 hex digits of an infohash, for tables; the full one is in `--json`. */
export function shortHash (infoHash: string): string {
  return `${infoHash.slice(0, 12)}…`
}

/**
 * `GET /v1/services/seeding/earnings` (engine.ts `EarningsReport`; @btt/service-seeding does not
 * export that type). Amounts are decimal strings of base units, exact.
 */
export interface EarningsJson {
  total: string
  torrents: TorrentEarningsJson[]
}

export interface TorrentEarningsJson {
  infoHash: string
  /** Empty once the torrent was removed (its earnings stay). */
  name: string
  amount: string
  /** Bytes served to paying peers and paid for. */
  bytes: number
  payers: Array<{ payer: string, amount: string, bytes: number, updatedAt: number }>
}
