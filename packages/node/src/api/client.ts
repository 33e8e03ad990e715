import { API_CLIENT_TIMEOUT_MS } from '../constants.js'
import { AdminApiError, NodeNotRunningError } from '../errors.js'
import type { ServiceInfo } from '../service.js'
import type { ApiErrorBody, ChannelDetailJson, IncomingChannelJson, LedgerChannelJson, NodeStatus, OutgoingChannelJson, ServiceChangeResult, WalletJson } from './types.js'

export interface AdminClientInit {
  /** e.g. http://127.0.0.1:7070 */
  url: string
  token: string
  timeoutMs?: number
}

/** Typed client of the admin API. Commands that manage a running node use this, never its files or database. */
export class AdminClient {
  readonly url: string
  private readonly token: string
  private readonly timeoutMs: number

  constructor (init: AdminClientInit) {
    this.url = init.url.replace(/\/$/, '')
    this.token = init.token
    this.timeoutMs = init.timeoutMs ?? API_CLIENT_TIMEOUT_MS
  }

  async status (): Promise<NodeStatus> {
    return await this.request<NodeStatus>('GET', '/v1/status')
  }

  async services (): Promise<ServiceInfo[]> {
    return (await this.request<{ services: ServiceInfo[] }>('GET', '/v1/services')).services
  }

  async service (name: string): Promise<ServiceInfo> {
    return await this.request<ServiceInfo>('GET', `/v1/services/${encodeURIComponent(name)}`)
  }

  async enableService (name: string): Promise<ServiceChangeResult> {
    return await this.request<ServiceChangeResult>('POST', `/v1/services/${encodeURIComponent(name)}/enable`)
  }

  async disableService (name: string): Promise<ServiceChangeResult> {
    return await this.request<ServiceChangeResult>('POST', `/v1/services/${encodeURIComponent(name)}/disable`)
  }

  async wallet (): Promise<WalletJson> {
    return await this.request<WalletJson>('GET', '/v1/wallet')
  }

  async faucet (amount: bigint): Promise<{ balance: string }> {
    return await this.request('POST', '/v1/wallet/faucet', { amount: amount.toString() })
  }

  async channels (): Promise<{ incoming: IncomingChannelJson[], outgoing: OutgoingChannelJson[] }> {
    return await this.request('GET', '/v1/channels')
  }

  async channel (id: string): Promise<ChannelDetailJson> {
    return await this.request('GET', `/v1/channels/${encodeURIComponent(id)}`)
  }

  async openChannel (req: { payee: string, deposit: bigint, expiresAt: number }): Promise<OutgoingChannelJson> {
    return await this.request('POST', '/v1/channels', { payee: req.payee, deposit: req.deposit.toString(), expiresAt: req.expiresAt })
  }

  async claimChannel (id: string): Promise<{ paid: string, channel: LedgerChannelJson }> {
    return await this.request('POST', `/v1/channels/${encodeURIComponent(id)}/claim`)
  }

  async topupChannel (id: string, amount: bigint): Promise<OutgoingChannelJson> {
    return await this.request('POST', `/v1/channels/${encodeURIComponent(id)}/topup`, { amount: amount.toString() })
  }

  async refundChannel (id: string): Promise<OutgoingChannelJson> {
    return await this.request('POST', `/v1/channels/${encodeURIComponent(id)}/refund`)
  }

  async finalizeChannel (id: string): Promise<{ refunded: string, channel: OutgoingChannelJson }> {
    return await this.request('POST', `/v1/channels/${encodeURIComponent(id)}/finalize`)
  }

  async metrics (): Promise<string> {
    return await this.request<string>('GET', '/metrics', undefined, 'text')
  }

  /** Call a service's own admin route, e.g. `serviceRequest('storage', 'GET', '/contracts')`. */
  async serviceRequest<T> (name: string, method: string, path: string, body?: unknown): Promise<T> {
    return await this.request<T>(method, `/v1/services/${encodeURIComponent(name)}${path}`, body)
  }

  /**
   * A service's streaming route (`/v1/services/<name>/stream/…`): the body may be a stream of any
   * size and the raw Response is returned for the caller to read. No overall timeout: long
   * transfers are bounded by `signal`. A non-2xx answer throws AdminApiError.
   */
  async serviceStream (name: string, method: string, path: string, init: { body?: ReadableStream<Uint8Array> | Uint8Array, signal?: AbortSignal } = {}): Promise<Response> {
    let res: Response
    try {
      res = await fetch(`${this.url}/v1/services/${encodeURIComponent(name)}${path}`, {
        method,
        headers: { authorization: `Bearer ${this.token}`, ...(init.body !== undefined ? { 'content-type': 'application/octet-stream' } : {}) },
        ...(init.body !== undefined ? { body: init.body, duplex: 'half' } : {}),
        ...(init.signal !== undefined ? { signal: init.signal } : {})
      } as RequestInit)
    } catch (err) {
      if ((err as Error).name === 'AbortError') throw err
      throw new NodeNotRunningError(this.url, { cause: err })
    }
    if (!res.ok) await this.raise(res)
    return res
  }

  private async raise (res: Response): Promise<never> {
    const text = await res.text()
    let parsed: Partial<ApiErrorBody> | undefined
    try {
      parsed = JSON.parse(text) as ApiErrorBody
    } catch {}
    const e = parsed?.error
    throw new AdminApiError(e?.code ?? `HTTP_${res.status}`, res.status, e?.message ?? (text.slice(0, 200) || res.statusText))
  }

  private async request<T> (method: string, path: string, body?: unknown, as: 'json' | 'text' = 'json'): Promise<T> {
    let res: Response
    try {
      res = await fetch(this.url + path, {
        method,
        headers: {
          authorization: `Bearer ${this.token}`,
          ...(body !== undefined ? { 'content-type': 'application/json' } : {})
        },
        body: body !== undefined ? JSON.stringify(body) : undefined,
        signal: AbortSignal.timeout(this.timeoutMs)
      })
    } catch (err) {
      throw new NodeNotRunningError(this.url, { cause: err })
    }
    if (!res.ok) await this.raise(res)
    return (as === 'text' ? await res.text() : await res.json()) as T
  }
}
