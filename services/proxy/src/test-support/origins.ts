import { createCipheriv, createHash } from 'node:crypto'
import { once } from 'node:events'
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import https from 'node:https'
import type { AddressInfo, Socket } from 'node:net'
import type { TLSSocket } from 'node:tls'
import zlib from 'node:zlib'

/** Loopback servers for the guard's tests: a canary that must never be reached, and a scriptable origin. */

export interface Canary {
  /** the one port the canary listens on, on every address in `hosts` */
  port: number
  hosts: string[]
  /** connections accepted so far (counted on 'connection', before any HTTP parsing) */
  hits: () => number
  /** remote side and local address of each connection */
  log: string[]
  close: () => Promise<void>
}

async function listen (server: http.Server, host: string, port: number): Promise<number> {
  server.listen(port, host)
  await Promise.race([once(server, 'listening'), once(server, 'error').then(([err]) => { throw err as Error })])
  return (server.address() as AddressInfo).port
}

async function closeAll (servers: http.Server[]): Promise<void> {
  await Promise.all(servers.map(async s => {
    s.closeAllConnections()
    await new Promise<void>(resolve => { s.close(() => { resolve() }) })
  }))
}

/**
 * A server that counts every TCP connection it accepts, on the same port on each host given
 * (default 127.0.0.1, 127.0.0.2 and ::1: Linux routes all of 127/8 to the loopback interface).
 */
export async function startCanary (hosts = ['127.0.0.1', '127.0.0.2', '::1']): Promise<Canary> {
  for (let attempt = 0; ; attempt++) {
    let hits = 0
    const log: string[] = []
    const servers: http.Server[] = []
    const make = (): http.Server => {
      const s = http.createServer((_req, res) => { res.end('canary') })
      s.on('connection', (socket: Socket) => {
        hits++
        log.push(`${socket.remoteAddress ?? '?'} -> ${socket.localAddress ?? '?'}:${socket.localPort ?? '?'}`)
      })
      servers.push(s)
      return s
    }
    try {
      const port = await listen(make(), hosts[0] ?? '127.0.0.1', 0)
      for (const h of hosts.slice(1)) await listen(make(), h, port)
      return { port, hosts, hits: () => hits, log, close: async () => { await closeAll(servers) } }
    } catch (err) {
      await closeAll(servers.filter(s => s.listening))
      // the port picked on the first host may be taken on another: try another one
      if (attempt >= 5) throw err
    }
  }
}

/** Deterministic pseudo-random bytes, never repeating (so a wrong offset shows): AES-CTR keystream. */
export function pattern (size: number, seed = 1): Buffer {
  const key = createHash('sha256').update(`pattern:${seed}`).digest()
  return createCipheriv('aes-256-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(size))
}

export interface Origin {
  port: number
  host: string
  /** base URL, e.g. http://127.0.0.1:1234 */
  base: string
  /** requests per path (without query) */
  hits: (path: string) => number
  connections: () => number
  /** bytes the /bigbomb route managed to write before its client went away */
  bombWritten: () => number
  /** whether the last /bigbomb response was cut short by its client */
  bombAborted: () => boolean
  /** the SNI name of the last TLS connection (TLS origins only) */
  servername: () => string | undefined
  close: () => Promise<void>
}

/** 50 MiB of zeros, gzip'd once: about 50 KB */
let bombMember: Buffer | undefined
export function gzipBomb (): Buffer {
  bombMember ??= zlib.gzipSync(Buffer.alloc(50 * 1024 * 1024), { level: 9 })
  return bombMember
}

/**
 * An origin with these routes:
 * - `/file/N` N pattern bytes, honours `Range: bytes=S-` unless `?norange`
 * - `/gzip/N`, `/deflate/N`, `/deflate-raw/N`, `/br/N` N pattern bytes, encoded
 * - `/redirect?to=URL[&status=302]`, `/chain/N` (N redirects, then 'end')
 * - `/bomb` 50 KB gzip decoding to 50 MiB; `/bigbomb?members=N` that member N times (N × 50 MiB decoded)
 * - `/drip` a byte every 50 ms, forever; `/stall` headers then nothing; `/stall-headers` nothing at all
 * - `/echo` the request headers as JSON, with hop-by-hop response headers added
 * - `/raw?ce=ENCODING&hex=BYTES` the bytes given, labelled with the Content-Encoding given
 */
export async function startOrigin (host = '127.0.0.1', tlsOptions?: { key: string, cert: string }): Promise<Origin> {
  const hits = new Map<string, number>()
  let connections = 0
  let bombWritten = 0
  let bombAborted = false
  let servername: string | undefined
  const timers = new Set<NodeJS.Timeout>()

  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const u = new URL(req.url ?? '/', 'http://origin')
    hits.set(u.pathname, (hits.get(u.pathname) ?? 0) + 1)
    const parts = u.pathname.split('/').filter(p => p !== '')
    const n = Number(parts[1] ?? 0)
    switch (parts[0]) {
      case 'file': {
        const body = pattern(n)
        const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '')
        if (m !== null && !u.searchParams.has('norange')) {
          const start = Number(m[1])
          res.writeHead(206, { 'content-type': 'application/octet-stream', 'content-range': `bytes ${start}-${n - 1}/${n}`, 'content-length': n - start })
          res.end(body.subarray(start))
          return
        }
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': n })
        res.end(body)
        return
      }
      case 'gzip': case 'deflate': case 'deflate-raw': case 'br': {
        const body = pattern(n)
        const encoded = parts[0] === 'gzip'
          ? zlib.gzipSync(body)
          : parts[0] === 'deflate' ? zlib.deflateSync(body) : parts[0] === 'br' ? zlib.brotliCompressSync(body) : zlib.deflateRawSync(body)
        res.writeHead(200, { 'content-encoding': parts[0] === 'deflate-raw' ? 'deflate' : parts[0], 'content-length': encoded.length })
        res.end(encoded)
        return
      }
      case 'raw': {
        // `?ce=` as Content-Encoding, `?hex=` as the body bytes
        const body = Buffer.from(u.searchParams.get('hex') ?? '', 'hex')
        res.writeHead(200, { 'content-encoding': u.searchParams.get('ce') ?? 'identity', 'content-length': body.length })
        res.end(body)
        return
      }
      case 'redirect':
        res.writeHead(Number(u.searchParams.get('status') ?? 302), { location: u.searchParams.get('to') ?? '/' })
        res.end()
        return
      case 'chain':
        if (n > 0) {
          res.writeHead(302, { location: `/chain/${n - 1}` })
          res.end()
        } else {
          res.end('end')
        }
        return
      case 'bomb': {
        const b = gzipBomb()
        res.writeHead(200, { 'content-encoding': 'gzip', 'content-length': b.length })
        res.end(b)
        return
      }
      case 'bigbomb': {
        const members = Number(u.searchParams.get('members') ?? 100)
        const b = gzipBomb()
        bombWritten = 0
        bombAborted = false
        res.writeHead(200, { 'content-encoding': 'gzip', 'content-length': b.length * members })
        let sent = 0
        const pump = (): void => {
          while (sent < members && !res.destroyed) {
            sent++
            bombWritten += b.length
            if (!res.write(b)) { res.once('drain', pump); return }
          }
          if (!res.destroyed) res.end()
        }
        res.on('close', () => { if (sent < members || !res.writableFinished) bombAborted = true })
        pump()
        return
      }
      case 'drip': {
        res.writeHead(200, { 'content-type': 'text/plain' })
        const t = setInterval(() => { if (!res.destroyed) res.write('x') }, 50)
        timers.add(t)
        res.on('close', () => { clearInterval(t); timers.delete(t) })
        return
      }
      case 'stall':
        res.writeHead(200, { 'content-type': 'text/plain' })
        res.flushHeaders()
        return
      case 'stall-headers':
        return
      case 'echo':
        res.writeHead(200, { 'content-type': 'application/json', connection: 'keep-alive, x-hop', 'x-hop': 'secret', 'keep-alive': 'timeout=5', 'x-kept': 'yes' })
        res.end(JSON.stringify(req.headers))
        return
      default:
        res.writeHead(404)
        res.end()
    }
  }

  const server = tlsOptions !== undefined ? https.createServer(tlsOptions, handler) : http.createServer(handler)
  server.on('connection', () => { connections++ })
  if (tlsOptions !== undefined) server.on('secureConnection', (s: TLSSocket) => { servername = typeof s.servername === 'string' ? s.servername : undefined })
  const port = await listen(server, host, 0)
  const shown = host.includes(':') ? `[${host}]` : host
  return {
    port,
    host,
    base: `${tlsOptions !== undefined ? 'https' : 'http'}://${shown}:${port}`,
    hits: path => hits.get(path) ?? 0,
    connections: () => connections,
    bombWritten: () => bombWritten,
    bombAborted: () => bombAborted,
    servername: () => servername,
    close: async () => {
      for (const t of timers) clearInterval(t)
      await closeAll([server])
    }
  }
}

/**
 * A self-signed certificate for tls.example.com only (EC P-256, valid 2020 to 2120). TEST-ONLY key,
 * not a secret: it exists to show that TLS is verified and that SNI carries the host name.
 */
export const TEST_TLS = {
  name: 'tls.example.com',
  key: `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg8MV4e/HGC3Fxjc9u
Na5M5ON0b2BX/QRZcqSJfIxBTKmhRANCAAQ+k12NtejALe36V+80ZHpGNcNI5LKS
71pCoyM5+PoOOC7H9Q/f3C39NXajcn/G5ujXZgGgd3L/bS85SEdmfc5i
-----END PRIVATE KEY-----
`,
  cert: `-----BEGIN CERTIFICATE-----
MIIBlTCCATugAwIBAgIBATAKBggqhkjOPQQDAjAaMRgwFgYDVQQDDA90bHMuZXhh
bXBsZS5jb20wIBcNMjAwMTAxMDAwMDAwWhgPMjEyMDAxMDEwMDAwMDBaMBoxGDAW
BgNVBAMMD3Rscy5leGFtcGxlLmNvbTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IA
BD6TXY216MAt7fpX7zRkekY1w0jkspLvWkKjIzn4+g44Lsf1D9/cLf01dqNyf8bm
6NdmAaB3cv9tLzlIR2Z9zmKjcDBuMBoGA1UdEQQTMBGCD3Rscy5leGFtcGxlLmNv
bTAMBgNVHRMBAf8EAjAAMA4GA1UdDwEB/wQEAwIHgDATBgNVHSUEDDAKBggrBgEF
BQcDATAdBgNVHQ4EFgQUU6l2PwYGxhBnN4NatWBv47jvYCAwCgYIKoZIzj0EAwID
SAAwRQIgBtmHfIGJZpVoW5M6UqR0bAzP2nwSUQ+nT9lN0oEUkcECIQDD0gEfxRqA
LV4O99w7zZbiIut4H8BVrYhyoWXgw1HzXA==
-----END CERTIFICATE-----
`
}
