export { SeedingError, isSeedingError } from './errors.js'
export { Engine, CLIENT_NAME, type EngineOptions, type AddSource, type AddOptions, type TorrentSummary, type TorrentDetail } from './engine.js'
export { seedingService, seedingConfig, seedingRoutes, engineOptions, type SeedingConfig } from './service.js'
export { SlotsChokePolicy, type ChokePolicy, type ChokerPeer, type ChokeContext } from './choker.js'
export { Torrent, type TorrentState } from './torrent.js'
export { Bitfield } from './bitfield.js'
export * from './wire.js'
export * as bencode from '@btt/wire'
export type { BValue, BDict } from '@btt/wire'
export { parseTorrent, parseInfo, encodeTorrent, pieceSize, type Metainfo, type TorrentFile, type TorrentFileInput } from './metainfo.js'
export { createTorrent, autoPieceLength, type CreateTorrentOptions } from './create-torrent.js'
export { parseMagnet, formatMagnet, type Magnet } from './magnet.js'
export {
  decodeExtendedHandshake, encodeExtendedHandshake, decodeMetadataMessage, encodeMetadataRequest, encodeMetadataData,
  encodeMetadataReject, decodePex, encodePex, decodeCompactPeers, encodeCompactPeer,
  type ExtendedHandshake, type ExtendedHandshakeInit, type MetadataMessage, type PeerAddr
} from './extension.js'
export { Speed, BttPeer, blockCost, type SpeedOptions, type BiddingOptions, type SpeedTorrent } from './speed.js'
export { AuctionChokePolicy, type ChokeDecision, type AuctionChokerOptions } from './choker.js'
export { speedOptions } from './service.js'
export { parseSpendingRate, PPM } from '@btt/market'
