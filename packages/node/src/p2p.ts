import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import type { PrivateKey } from '@libp2p/interface'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { createLibp2p } from 'libp2p'

export interface P2PHostInit {
  privateKey: PrivateKey
  listen: string[]
  announce: string[]
}

/**
 * The libp2p host: TCP + noise + yamux, with identify and ping. No peer discovery or bootstrap
 * is configured here: providers are found through the tracker and the DHT (@btt/discovery).
 */
export async function createP2PHost (init: P2PHostInit) {
  return await createLibp2p({
    privateKey: init.privateKey,
    start: false,
    addresses: {
      listen: init.listen,
      announce: init.announce
    },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      identify: identify(),
      ping: ping()
    }
  })
}

export type P2PHost = Awaited<ReturnType<typeof createP2PHost>>
