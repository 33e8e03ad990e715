/** @btt/wire — the strict bencode codec and the BitTorrent Speed (`btt`) extension messages. */
export * from './bencode.js'
export * from './btt.js'
export * from './errors.js'
