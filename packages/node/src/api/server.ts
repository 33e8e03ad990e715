import type { AddressInfo } from 'node:net'
import type { Server } from 'node:http'
import { createAdaptorServer } from '@hono/node-server'
import type { Hono } from 'hono'
import { ListenError } from '../errors.js'

export interface AdminServer {
  url: string
  close(): Promise<void>
}

/** Serve the admin app on host:port. Resolves once listening; a busy port is a clear ListenError. */
export async function listenAdminApi (app: Hono, host: string, port: number): Promise<AdminServer> {
  const server = createAdaptorServer({ fetch: app.fetch }) as Server
  server.requestTimeout = 30_000
  server.headersTimeout = 10_000
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => {
      reject(new ListenError('the admin API', `${host}:${port}`, 'set api.port or BTT_NODE_API_PORT to a free port', { cause: err }))
    }
    server.once('error', onError)
    server.listen(port, host, () => {
      server.off('error', onError)
      resolve()
    })
  })
  const address = server.address() as AddressInfo
  const urlHost = address.family === 'IPv6' ? `[${address.address}]` : address.address
  return {
    url: `http://${urlHost === '0.0.0.0' ? '127.0.0.1' : urlHost === '[::]' ? '[::1]' : urlHost}:${address.port}`,
    close: async () => {
      await new Promise<void>(resolve => {
        server.close(() => { resolve() })
        server.closeAllConnections()
      })
    }
  }
}
