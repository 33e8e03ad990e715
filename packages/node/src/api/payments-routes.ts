import { parseBaseUnits, type IncomingChannel, type OutgoingChannel } from '@btt/channel'
import { channelToJson as ledgerChannelJson } from '@btt/ledger'
import { Hono } from 'hono'
import { z } from 'zod'
import { NodeError } from '../errors.js'
import type { Payments } from '../payments.js'

const zHexKey = z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lower-case hex characters')
const zBaseUnits = z.string().transform((s, ctx) => {
  try {
    return parseBaseUnits(s)
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message })
    return z.NEVER
  }
})

/** Amounts as decimal strings of base units, the JSON form everywhere. */
export function incomingJson (c: IncomingChannel) {
  return {
    id: c.id,
    ledgerId: c.ledgerId,
    payer: c.payer,
    payee: c.payee,
    deposit: c.deposit.toString(),
    received: c.highest.toString(),
    claimed: c.claimed.toString(),
    expiresAt: c.expiresAt,
    status: c.status,
    challengeEndsAt: c.challengeEndsAt
  }
}

export function outgoingJson (c: OutgoingChannel) {
  return { ...c, deposit: c.deposit.toString(), spent: c.spent.toString() }
}

/** Wallet and channel routes of the admin API (mounted under /v1). */
export function paymentsRoutes (payments: () => Payments): Hono {
  const app = new Hono()
  const body = async <T extends z.ZodType>(req: { json: () => Promise<unknown> }, schema: T): Promise<z.output<T>> => {
    let raw: unknown
    try {
      raw = await req.json()
    } catch {
      throw new NodeError('API_BAD_REQUEST', 'request body must be JSON')
    }
    const r = schema.safeParse(raw)
    if (!r.success) throw new NodeError('API_BAD_REQUEST', r.error.issues.map(i => `${i.path.join('.') || 'body'}: ${i.message}`).join('; '))
    return r.data
  }
  const channelId = (id: string): string => {
    if (!/^[0-9a-f]{64}$/.test(id)) throw new NodeError('API_BAD_REQUEST', 'channel id must be 64 lower-case hex characters')
    return id
  }

  app.get('/wallet', async c => {
    const p = payments()
    return c.json({ account: p.account, balance: (await p.ledger.balance()).toString(), ledger: { location: p.ledgerLocation, ledgerId: p.ledgerId } })
  })
  app.post('/wallet/faucet', async c => {
    const { amount } = await body(c.req, z.strictObject({ amount: zBaseUnits }))
    return c.json({ balance: (await payments().ledger.faucet(amount)).toString() })
  })
  app.get('/channels', c => {
    const p = payments()
    return c.json({ incoming: p.store.listIncoming().map(incomingJson), outgoing: p.store.listOutgoing().map(outgoingJson) })
  })
  app.post('/channels', async c => {
    const req = await body(c.req, z.strictObject({ payee: zHexKey, deposit: zBaseUnits, expiresAt: z.int().positive() }))
    return c.json(outgoingJson(await payments().payer.open(req)), 201)
  })
  app.get('/channels/:id', async c => {
    const id = channelId(c.req.param('id'))
    const p = payments()
    const incoming = p.store.getIncoming(id)
    const outgoing = p.store.getOutgoing(id)
    const ledger = await p.ledger.channel(id)
    return c.json({ ledger: ledgerChannelJson(ledger), incoming: incoming === undefined ? null : incomingJson(incoming), outgoing: outgoing === undefined ? null : outgoingJson(outgoing) })
  })
  app.post('/channels/:id/claim', async c => {
    const id = channelId(c.req.param('id'))
    const p = payments()
    const paid = await p.claimer.claim(id)
    return c.json({ paid: paid.toString(), channel: ledgerChannelJson(await p.ledger.channel(id)) })
  })
  app.post('/channels/:id/topup', async c => {
    const { amount } = await body(c.req, z.strictObject({ amount: zBaseUnits }))
    return c.json(outgoingJson(await payments().payer.topup(channelId(c.req.param('id')), amount)))
  })
  app.post('/channels/:id/refund', async c => {
    return c.json(outgoingJson(await payments().payer.refund(channelId(c.req.param('id')))))
  })
  app.post('/channels/:id/finalize', async c => {
    const { channel, refunded } = await payments().payer.finalize(channelId(c.req.param('id')))
    return c.json({ refunded: refunded.toString(), channel: outgoingJson(channel) })
  })
  return app
}
