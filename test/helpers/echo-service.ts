import { defineService, zAmount } from '@btt/node'
import { multiaddr } from '@multiformats/multiaddr'
import { Hono } from 'hono'
import { z } from 'zod'

export const ECHO_PROTOCOL = '/btt-test/echo/1.0.0'
/** A peer controls the request size: cap it. */
const MAX_REQUEST = 4096

/**
 * A test service with the same shape as storage and proxy: a libp2p protocol (server side), a
 * client side that dials other nodes through the node's host, admin routes and a price.
 */
export const echoService = defineService({
  name: 'echo',
  description: 'test service: answers what it is sent',
  config: z.object({ price: zAmount.default(10n ** 15n) }),
  create: ({ config, p2p }) => {
    let served = 0
    const routes = new Hono()
    // client side: ask another node's echo service, through this node's libp2p host
    routes.post('/ask', async c => {
      const { addr, text } = await c.req.json<{ addr: string, text: string }>()
      let stream
      try {
        stream = await p2p.dialProtocol(multiaddr(addr), ECHO_PROTOCOL, { signal: AbortSignal.timeout(10_000) })
      } catch (err) {
        return c.json({ error: { code: 'ECHO_DIAL_FAILED', message: (err as Error).name } }, 502)
      }
      stream.send(new TextEncoder().encode(text))
      await stream.close()
      let reply = ''
      for await (const chunk of stream) reply += new TextDecoder().decode(chunk.subarray())
      return c.json(JSON.parse(reply) as unknown)
    })
    return {
      name: 'echo',
      pricing: [{ item: 'echo', unit: 'message', price: config.price }],
      adminRoutes: routes,
      status: () => ({ served }),
      protocols: [{
        id: ECHO_PROTOCOL,
        options: { maxInboundStreams: 4 },
        handler: async (stream, connection) => {
          let text = ''
          for await (const chunk of stream) {
            text += new TextDecoder().decode(chunk.subarray())
            if (text.length > MAX_REQUEST) {
              stream.abort(new Error('request too large'))
              return
            }
          }
          served++
          stream.send(new TextEncoder().encode(JSON.stringify({
            echo: text,
            from: connection.remotePeer.toString(),
            encryption: connection.encryption,
            multiplexer: connection.multiplexer
          })))
          await stream.close()
        }
      }],
      start: async () => {},
      stop: async () => {}
    }
  }
})
