import type { ServiceInfo } from '../service.js'

/** `GET /v1/status`. */
export interface NodeStatus {
  version: string
  /** The Node.js version running the node. */
  nodeVersion: string
  uptimeSeconds: number
  peerId: string
  /** libp2p addresses others dial, each ending in /p2p/<peerId>. */
  listenAddresses: string[]
  api: { url: string }
  home: string
  services: ServiceInfo[]
}

/** `POST /v1/services/:name/enable|disable`. */
export interface ServiceChangeResult {
  service: ServiceInfo
  /** `live`: applied to the running node; `restart`: takes effect at the next start. */
  applied: 'live' | 'restart'
}

/** Every error the admin API returns. */
export interface ApiErrorBody {
  error: { code: string, message: string }
}
