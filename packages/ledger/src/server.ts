import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createAdaptorServer } from '@hono/node-server'
import { createLedgerApp } from './http.js'
import { Ledger } from './ledger.js'

export interface LedgerServerInit {
  /** The ledger database file (created on first start). */
  dbPath: string
  /** Address to bind; default 127.0.0.1. */
  host?: string
  /** Port to bind; default 0 (any free port). */
  port?: number
  /** Enable the faucet (test BTT). Never on a ledger holding real value. */
  dev?: boolean
  /** Refund challenge window; default 1 h. */
  challengeWindowMs?: number
  /** The clock (unix ms); injectable for tests. */
  now?: () => number
  /** Told about unexpected errors (answered 500 without detail). */
  onInternalError?: (err: unknown, path: string) => void
}

export interface LedgerServer {
  /** e.g. `http://127.0.0.1:7080` */
  url: string
  ledger: Ledger
  /** Stop accepting, let requests in flight finish (at most CLOSE_GRACE_MS), then close the database. */
  close(): Promise<void>
}

/** How long close() lets requests in flight finish before cutting their connections. */
const CLOSE_GRACE_MS = 2000

/** Open the ledger at `dbPath` and serve its HTTP API. Resolves once listening. */
export async function startLedgerServer (init: LedgerServerInit): Promise<LedgerServer> {
  const host = init.host ?? '127.0.0.1'
  const ledger = new Ledger({
    path: init.dbPath,
    dev: init.dev === true,
    ...(init.challengeWindowMs === undefined ? {} : { challengeWindowMs: init.challengeWindowMs }),
    ...(init.now === undefined ? {} : { now: init.now })
  })
  const app = createLedgerApp(init.onInternalError === undefined ? { ledger } : { ledger, onInternalError: init.onInternalError })
  const server = createAdaptorServer({ fetch: app.fetch }) as Server
  server.requestTimeout = 30_000
  server.headersTimeout = 10_000
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(init.port ?? 0, host, () => {
        server.off('error', reject)
        resolve()
      })
    })
  } catch (err) {
    ledger.close()
    throw err
  }
  const address = server.address() as AddressInfo
  const urlHost = address.family === 'IPv6' ? `[${address.address}]` : address.address
  let closing: Promise<void> | undefined
  return {
    url: `http://${urlHost === '0.0.0.0' ? '127.0.0.1' : urlHost === '[::]' ? '[::1]' : urlHost}:${address.port}`,
    ledger,
    close: async () => {
      closing ??= new Promise<void>(resolve => {
        const force = setTimeout(() => { server.closeAllConnections() }, CLOSE_GRACE_MS)
        server.close(() => {
          clearTimeout(force)
          ledger.close()
          resolve()
        })
        server.closeIdleConnections()
      })
      await closing
    }
  }
}
