import { isIP } from 'node:net'
import { SeedingError } from './errors.js'
import { isTrackerUrl } from './metainfo.js'

export interface Magnet {
  /** 40 lower-case hex digits. */
  infoHash: string
  name?: string
  /** http, https and udp trackers, deduplicated, at most MAX_MAGNET_TRACKERS. */
  trackers: string[]
  /** `x.pe` peers (BEP 9). */
  peers: Array<{ host: string, port: number }>
}

/** Magnet links are pasted by people and sent by peers; 16 KiB is far above any real one. */
export const MAX_MAGNET_LENGTH = 16 * 1024
export const MAX_MAGNET_TRACKERS = 64
export const MAX_MAGNET_PEERS = 64

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'
const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/

/**
 * Parses a BitTorrent magnet URI (BEP 9). The infohash may be 40 hex digits or 32 base32 chars;
 * two different btih values are refused as ambiguous. Trackers of other schemes and malformed
 * `x.pe` peers are dropped (they are hints), but a malformed or missing infohash is an error.
 */
export function parseMagnet (uri: string): Magnet {
  if (typeof uri !== 'string') throw new SeedingError('MAGNET_INPUT', 'magnet URI must be a string')
  if (uri.length > MAX_MAGNET_LENGTH) throw new SeedingError('MAGNET_TOO_LARGE', `magnet URI is ${uri.length} chars; the limit is ${MAX_MAGNET_LENGTH}`)
  uri = uri.trim()
  if (!/^magnet:\?/i.test(uri)) throw new SeedingError('MAGNET_SYNTAX', 'not a magnet URI (must start with "magnet:?")')
  let infoHash: string | undefined
  let name: string | undefined
  let sawXt = false
  const trackers: string[] = []
  const peers: Array<{ host: string, port: number }> = []
  const seenPeers = new Set<string>()
  for (const part of uri.slice(8).split('&')) {
    if (part.length === 0) continue
    const eq = part.indexOf('=')
    const rawKey = eq === -1 ? part : part.slice(0, eq)
    // `xt.1`, `tr.2`: the numbered forms some clients write
    const key = rawKey.replace(/\.\d+$/, '')
    if (key !== 'xt' && key !== 'dn' && key !== 'tr' && key !== 'x.pe') continue
    const raw = eq === -1 ? '' : part.slice(eq + 1)
    const value = percentDecode(key === 'dn' ? raw.replace(/\+/g, ' ') : raw, key)
    if (key === 'xt') {
      sawXt = true
      if (!/^urn:btih:/i.test(value)) continue
      const ih = parseBtih(value.slice(9))
      if (infoHash !== undefined && infoHash !== ih) throw new SeedingError('MAGNET_CONFLICT', 'magnet URI names two different infohashes')
      infoHash = ih
    } else if (key === 'dn') {
      if (name === undefined && value.length > 0) name = value
    } else if (key === 'tr') {
      if (trackers.length < MAX_MAGNET_TRACKERS && isTrackerUrl(value) && !trackers.includes(value)) trackers.push(value)
    } else {
      const peer = parsePeer(value)
      if (peer !== undefined && peers.length < MAX_MAGNET_PEERS) {
        const k = `${peer.host}|${peer.port}`
        if (!seenPeers.has(k)) {
          seenPeers.add(k)
          peers.push(peer)
        }
      }
    }
  }
  if (infoHash === undefined) {
    throw new SeedingError(
      sawXt ? 'MAGNET_UNSUPPORTED' : 'MAGNET_NO_INFOHASH',
      sawXt ? 'magnet URI has no urn:btih infohash (v2-only urn:btmh links are not supported)' : 'magnet URI has no xt=urn:btih:<infohash>'
    )
  }
  return { infoHash, ...(name !== undefined ? { name } : {}), trackers, peers }
}

function percentDecode (s: string, key: string): string {
  try {
    return decodeURIComponent(s)
  } catch {
    throw new SeedingError('MAGNET_SYNTAX', `magnet ${key} has a malformed %-escape`)
  }
}

function parseBtih (s: string): string {
  if (/^[0-9a-fA-F]{40}$/.test(s)) return s.toLowerCase()
  if (/^[A-Za-z2-7]{32}$/.test(s)) {
    const up = s.toUpperCase()
    const out = Buffer.alloc(20)
    let bits = 0
    let acc = 0
    let o = 0
    for (const ch of up) {
      acc = (acc << 5) | BASE32.indexOf(ch)
      bits += 5
      if (bits >= 8) {
        bits -= 8
        out[o++] = (acc >> bits) & 0xff
      }
    }
    return out.toString('hex')
  }
  throw new SeedingError('MAGNET_BAD_INFOHASH', 'btih infohash must be 40 hex digits or 32 base32 characters')
}

function parsePeer (s: string): { host: string, port: number } | undefined {
  let host: string
  let portText: string
  if (s.startsWith('[')) {
    const close = s.indexOf(']')
    if (close === -1 || s[close + 1] !== ':') return undefined
    host = s.slice(1, close)
    portText = s.slice(close + 2)
    if (isIP(host) !== 6) return undefined
  } else {
    const colon = s.lastIndexOf(':')
    if (colon === -1) return undefined
    host = s.slice(0, colon)
    portText = s.slice(colon + 1)
    if (isIP(host) !== 4 && !HOSTNAME.test(host)) return undefined
  }
  if (!/^[1-9][0-9]{0,4}$/.test(portText)) return undefined
  const port = Number(portText)
  if (port > 65535) return undefined
  return { host, port }
}

/** A magnet URI with the hex infohash, the name and the trackers (BEP 9); lone surrogates become U+FFFD. */
export function formatMagnet (m: { infoHash: string, name?: string, trackers?: string[] }): string {
  if (typeof m.infoHash !== 'string' || !/^[0-9a-fA-F]{40}$/.test(m.infoHash)) {
    throw new SeedingError('MAGNET_BAD_INFOHASH', 'infohash must be 40 hex digits')
  }
  let uri = `magnet:?xt=urn:btih:${m.infoHash.toLowerCase()}`
  if (m.name !== undefined && m.name.length > 0) uri += `&dn=${encodeURIComponent(m.name.toWellFormed())}`
  for (const tr of m.trackers ?? []) uri += `&tr=${encodeURIComponent(String(tr).toWellFormed())}`
  return uri
}
