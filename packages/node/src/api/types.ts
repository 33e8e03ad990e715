import type { OfferStatus } from '../offers.js'
import type { ChannelJson } from '@btt/ledger'
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
  /** This node's signed offer on the mainline DHT. */
  discovery: OfferStatus
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

/** Amounts in these are decimal strings of base units; times unix ms. */
export interface WalletJson {
  account: string
  balance: string
  ledger: { location: string, ledgerId: string }
}

/** A channel as the ledger describes it (the ledger's own JSON form). */
export type LedgerChannelJson = ChannelJson

export interface IncomingChannelJson {
  id: string
  ledgerId: string
  payer: string
  payee: string
  deposit: string
  /** Highest voucher received. */
  received: string
  claimed: string
  expiresAt: number
  status: 'open' | 'refunding' | 'finalized'
  challengeEndsAt: number | null
}

export interface OutgoingChannelJson {
  id: string
  ledgerId: string
  payer: string
  payee: string
  deposit: string
  /** Highest voucher signed. */
  spent: string
  expiresAt: number
  status: 'open' | 'refunding' | 'finalized'
}

export interface ChannelDetailJson {
  ledger: LedgerChannelJson
  incoming: IncomingChannelJson | null
  outgoing: OutgoingChannelJson | null
}
