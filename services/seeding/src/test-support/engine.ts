import { join } from 'node:path'
import type { Logger } from 'pino'
import type { EngineOptions } from '../engine.js'

/**
 * Engine options for tests: loopback, an OS-chosen port, state under `dir`, and nothing that
 * reaches past loopback (no DHT, trackers or PEX) unless a test turns it on in `over`.
 */
export function loopbackEngineOptions (dir: string, logger: Logger, over: Partial<EngineOptions> = {}): EngineOptions {
  return {
    dataDir: join(dir, 'state'),
    downloadDir: join(dir, 'downloads'),
    listenHost: '127.0.0.1',
    port: 0,
    dht: false,
    dhtBootstrap: [],
    trackers: false,
    pex: false,
    uploadRate: 0,
    downloadRate: 0,
    torrentUploadRate: 0,
    torrentDownloadRate: 0,
    maxPeers: 100,
    maxPeersPerTorrent: 50,
    maxActiveTorrents: 100,
    uploadSlots: 4,
    cacheBytes: 16 * 1024 * 1024,
    minAnnounceInterval: 5,
    logger,
    ...over
  }
}
