// bittorrent-dht ships no types; this is the part @btt/discovery uses (v11).
// `_rpc` (k-rpc) is private API: it carries the `btt_pk` query (see docs/discovery.md). The
// integration test in discovery.test.ts fails if it changes.
declare module 'bittorrent-dht' {
  import { EventEmitter } from 'node:events'

  export interface DHTPeer { host: string, port: number }
  export interface RpcPeer { address?: string, host?: string, port: number }
  export interface KrpcMessage { t?: Buffer, y?: Buffer | string, q?: Buffer | string, a?: Record<string, unknown>, r?: Record<string, unknown> }

  export interface MutableGetResult {
    v?: Buffer
    k?: Buffer
    sig?: Buffer
    seq?: number
    salt?: Buffer
    id?: Buffer
  }

  export interface PutOptions {
    v: Buffer
    k: Buffer
    seq: number
    salt?: Buffer
    cas?: number
    sign?: (buf: Buffer) => Buffer
    sig?: Buffer
  }

  export interface DHTOptions {
    bootstrap?: false | Array<string | DHTPeer>
    host?: string | false
    verify?: (sig: Buffer, message: Buffer, pk: Buffer) => boolean
    timeout?: number
    nodeId?: Buffer
    k?: number
  }

  export default class DHT extends EventEmitter {
    constructor (opts?: DHTOptions)
    nodeId: Buffer
    ready: boolean
    listening: boolean
    destroyed: boolean
    _rpc: {
      id: Buffer
      on(event: 'query', fn: (query: KrpcMessage, peer: RpcPeer) => void): void
      removeListener(event: 'query', fn: (query: KrpcMessage, peer: RpcPeer) => void): void
      query(peer: DHTPeer, message: { q: string, a: Record<string, unknown> }, cb: (err: Error | null, reply?: KrpcMessage) => void): void
      response(peer: RpcPeer, query: KrpcMessage, r: Record<string, unknown>): void
      error(peer: RpcPeer, query: KrpcMessage, err: [number, string]): void
    }
    listen(port?: number, host?: string, cb?: () => void): void
    address(): { address: string, family: string, port: number }
    addNode(node: { host: string, port: number, id?: Buffer }): void
    put(opts: PutOptions, cb?: (err: Error | null, target: Buffer, n: number) => void): Buffer
    get(target: Buffer, opts: { salt?: Buffer, verify?: DHTOptions['verify'], cache?: boolean }, cb: (err: Error | null, res: MutableGetResult | null) => void): void
    announce(infoHash: Buffer, port: number, cb?: (err: Error | null) => void): void
    lookup(infoHash: Buffer, cb?: (err: Error | null, n?: number) => void): () => void
    destroy(cb?: () => void): void
  }
}
