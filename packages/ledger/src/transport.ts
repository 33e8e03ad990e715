import http from 'node:http'
import https from 'node:https'

export interface HttpAnswer {
  status: number
  text: string
}

/**
 * Keep-alive agents shared by every HttpLedgerClient of this process. node:http rather than global
 * fetch: a small signed request costs ~85 µs of client CPU with node:http and ~200–250 µs with fetch
 * on the 2-core machines here, and the ledger client is on the path of every claim (README.md).
 * The agents honour the server's `Keep-Alive: timeout=…` hint, so they do not reuse a connection the
 * server is about to close; their idle sockets do not keep the process alive.
 */
const agents = {
  'http:': new http.Agent({ keepAlive: true }),
  'https:': new https.Agent({ keepAlive: true })
}

/** One request; resolves with the status and the body (at most `maxBytes`), rejects on a network failure or after `timeoutMs`. */
export async function httpRequest (method: string, url: URL, headers: Record<string, string>, body: Uint8Array | undefined, timeoutMs: number, maxBytes: number): Promise<HttpAnswer> {
  const protocol = url.protocol as 'http:' | 'https:'
  const send = protocol === 'https:' ? https.request : http.request
  return await new Promise<HttpAnswer>((resolve, reject) => {
    let settled = false
    const finish = (err: Error | undefined, answer?: HttpAnswer): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      if (err !== undefined) reject(err)
      else resolve(answer as HttpAnswer)
    }
    const req = send(url, {
      method,
      agent: agents[protocol],
      headers: body === undefined ? headers : { ...headers, 'content-length': String(body.length) }
    }, res => {
      const chunks: Buffer[] = []
      let size = 0
      res.on('data', (chunk: Buffer) => {
        size += chunk.length
        if (size > maxBytes) req.destroy(new Error(`answer larger than ${maxBytes} bytes`))
        else chunks.push(chunk)
      })
      res.on('end', () => { finish(undefined, { status: res.statusCode ?? 0, text: Buffer.concat(chunks, size).toString('utf8') }) })
      res.on('error', err => { finish(err) })
      res.on('close', () => { if (!res.complete) finish(new Error('the connection closed before the answer was complete')) })
    })
    const timer = setTimeout(() => { req.destroy(new Error(`no answer within ${timeoutMs} ms`)) }, timeoutMs)
    req.on('error', err => { finish(err) })
    req.end(body)
  })
}
