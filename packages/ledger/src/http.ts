import type { IncomingMessage } from 'node:http'
import { ChannelError, verify, voucherFromJson } from '@btt/channel'
import { Hono, type Context } from 'hono'
import type { ContentfulStatusCode } from 'hono/utils/http-status'
import { z } from 'zod'
import { requestMessage } from './auth.js'
import { HEADER_ACCOUNT, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP, MAX_BODY_BYTES, REQUEST_MAX_SKEW_MS, REQUEST_NONCE_BYTES } from './constants.js'
import {
  BadRequestError,
  BodyTooLargeError,
  InternalError,
  LedgerError,
  RouteNotFoundError,
  StaleTimestampError,
  UnauthenticatedError
} from './errors.js'
import { amount, amountText, channelToJson, describeIssues, hexOf, unixMs } from './json.js'
import type { Ledger } from './ledger.js'

export interface LedgerAppInit {
  ledger: Ledger
  /** Told about unexpected errors (answered 500 without detail). Library code never logs itself. */
  onInternalError?: (err: unknown, path: string) => void
}

/** The one table from error code to HTTP status. Other CHANNEL_VOUCHER_* codes are 400; the rest 500. */
const STATUS_BY_CODE: Record<string, ContentfulStatusCode> = {
  LEDGER_BAD_REQUEST: 400,
  LEDGER_BAD_EXPIRY: 400,
  CHANNEL_INVALID_AMOUNT: 400,
  CHANNEL_INVALID_KEY: 400,
  LEDGER_UNAUTHENTICATED: 401,
  LEDGER_STALE_TIMESTAMP: 401,
  LEDGER_NOT_PAYER: 403,
  LEDGER_NOT_PAYEE: 403,
  LEDGER_NOT_PARTY: 403,
  LEDGER_UNKNOWN_CHANNEL: 404,
  LEDGER_FAUCET_DISABLED: 404,
  LEDGER_NOT_FOUND: 404,
  LEDGER_REPLAY: 409,
  LEDGER_INSUFFICIENT_FUNDS: 409,
  LEDGER_CHANNEL_EXISTS: 409,
  LEDGER_NOT_EXPIRED: 409,
  LEDGER_CHALLENGE_OPEN: 409,
  LEDGER_ALREADY_REFUNDING: 409,
  LEDGER_NOT_REFUNDING: 409,
  LEDGER_CHANNEL_FINALIZED: 409,
  LEDGER_BODY_TOO_LARGE: 413,
  LEDGER_BUSY: 503,
  LEDGER_CLOSED: 503
}

export function statusForCode (code: string): ContentfulStatusCode {
  return STATUS_BY_CODE[code] ?? (code.startsWith('CHANNEL_VOUCHER_') ? 400 : 500)
}

const key = hexOf(32)
const voucherJson = z.strictObject({ v: z.literal(1), ledgerId: hexOf(32), channelId: hexOf(32), amount: amountText, signature: hexOf(64) })

const bodies = {
  open: z.strictObject({ payee: key, deposit: amount, expiresAt: unixMs, nonce: hexOf(32) }),
  topup: z.strictObject({ amount }),
  extend: z.strictObject({ expiresAt: unixMs }),
  claim: z.strictObject({ voucher: voucherJson }),
  empty: z.strictObject({}),
  faucet: z.strictObject({ amount })
}

const TIMESTAMP_TEXT = /^(0|[1-9][0-9]{0,15})$/
const NONCE_TEXT = new RegExp(`^[0-9a-f]{${REQUEST_NONCE_BYTES * 2}}$`)
const KEY_TEXT = /^[0-9a-f]{64}$/
const SIGNATURE_TEXT = /^[0-9a-f]{128}$/
const utf8 = new TextDecoder('utf-8', { fatal: true })

interface Signed {
  account: string
  nonce: string
  timestamp: number
  body: Uint8Array
}

/**
 * The ledger's HTTP API. Reads are public; every mutation is signed by the account key (see
 * auth.ts) and runs through the ledger's group commit, its request nonce recorded in the same
 * transaction (kept even when the operation is refused, so a refused request cannot be replayed
 * later). Errors are `{ "error": { "code", "message" } }`; amounts are decimal strings.
 */
export function createLedgerApp (init: LedgerAppInit): Hono {
  const { ledger } = init
  const app = new Hono()

  app.onError((err, c) => {
    let error: LedgerError | ChannelError
    if (err instanceof LedgerError || err instanceof ChannelError) error = err
    else {
      init.onInternalError?.(err, c.req.path)
      error = new InternalError()
    }
    const status = statusForCode(error.code)
    if (status === 401) c.header('WWW-Authenticate', 'BttLedgerSignature')
    if (status === 413) c.header('Connection', 'close') // do not read the rest of a huge body
    return c.json({ error: { code: error.code, message: error.message } }, status)
  })
  app.notFound(c => { throw new RouteNotFoundError(`no route ${c.req.method} ${c.req.path}`) })

  // --- reads (public) ---
  app.get('/v1/info', c => c.json(ledger.info()))
  app.get('/v1/check', c => {
    const r = ledger.check()
    return c.json({ ok: r.ok, totalMinted: r.totalMinted.toString(), balances: r.balances.toString(), locked: r.locked.toString() })
  })
  app.get('/v1/accounts/:key', c => {
    const account = param(c, 'key')
    return c.json({ account, balance: ledger.balance(account).toString() })
  })
  app.get('/v1/channels/:id', c => c.json(channelToJson(ledger.channel(param(c, 'id')))))
  app.get('/v1/channels', c => {
    const account = c.req.query('account')
    if (account === undefined || !KEY_TEXT.test(account)) throw new BadRequestError('query parameter account must be 64 lower-case hex characters')
    return c.json({ channels: ledger.channels(account).map(channelToJson) })
  })

  // --- mutations (signed) ---
  /** A signed POST route: authenticate, validate the body, then run `prepare`'s operation by group commit. */
  function mutation<S extends z.ZodType, R> (path: string, schema: S, prepare: (account: string, body: z.output<S>, c: Context) => () => R, respond: (result: R, c: Context) => Response): void {
    app.post(path, async c => {
      const signed = await authenticate(c)
      const op = prepare(signed.account, parseBody(signed.body, schema), c)
      const result = await ledger.enqueue(op, () => { ledger.useRequestNonce(signed.account, signed.nonce, signed.timestamp) })
      return respond(result, c)
    })
  }

  mutation('/v1/channels', bodies.open,
    (account, b) => () => ledger.open(account, b),
    (channel, c) => c.json(channelToJson(channel), 201))
  mutation('/v1/channels/:id/topup', bodies.topup,
    (account, b, c) => { const channelId = param(c, 'id'); return () => ledger.topup(account, { channelId, amount: b.amount }) },
    (channel, c) => c.json(channelToJson(channel)))
  mutation('/v1/channels/:id/extend', bodies.extend,
    (account, b, c) => { const channelId = param(c, 'id'); return () => ledger.extend(account, { channelId, expiresAt: b.expiresAt }) },
    (channel, c) => c.json(channelToJson(channel)))
  mutation('/v1/channels/:id/claim', bodies.claim,
    (account, b, c) => {
      const channelId = param(c, 'id')
      const voucher = voucherFromJson(b.voucher)
      return () => ledger.claim(account, voucher, channelId)
    },
    (r, c) => c.json({ channel: channelToJson(r.channel), paid: r.paid.toString() }))
  mutation('/v1/channels/:id/refund', bodies.empty,
    (account, _b, c) => { const channelId = param(c, 'id'); return () => ledger.refund(account, { channelId }) },
    (channel, c) => c.json(channelToJson(channel)))
  mutation('/v1/channels/:id/finalize', bodies.empty,
    (account, _b, c) => { const channelId = param(c, 'id'); return () => ledger.finalize(account, { channelId }) },
    (r, c) => c.json({ channel: channelToJson(r.channel), refunded: r.refunded.toString() }))
  mutation('/v1/faucet', bodies.faucet,
    (account, b) => () => ({ account, balance: ledger.faucet(account, b.amount) }),
    (r, c) => c.json({ account: r.account, balance: r.balance.toString() }))

  /** Check the x-btt-* headers and the signature over the request; read the body. */
  async function authenticate (c: Context): Promise<Signed> {
    const account = c.req.header(HEADER_ACCOUNT)
    const timestampText = c.req.header(HEADER_TIMESTAMP)
    const nonce = c.req.header(HEADER_NONCE)
    const signature = c.req.header(HEADER_SIGNATURE)
    if (account === undefined || timestampText === undefined || nonce === undefined || signature === undefined) throw new UnauthenticatedError()
    if (!KEY_TEXT.test(account) || !TIMESTAMP_TEXT.test(timestampText) || !NONCE_TEXT.test(nonce) || !SIGNATURE_TEXT.test(signature)) {
      throw new UnauthenticatedError(`malformed ${HEADER_ACCOUNT}, ${HEADER_TIMESTAMP}, ${HEADER_NONCE} or ${HEADER_SIGNATURE} header`)
    }
    const timestamp = Number(timestampText)
    const skew = timestamp - ledger.now()
    if (Math.abs(skew) > REQUEST_MAX_SKEW_MS) {
      throw new StaleTimestampError(`the request timestamp is ${Math.round(skew / 1000)} s from the ledger clock (at most ${REQUEST_MAX_SKEW_MS / 1000} s); check this machine's clock`)
    }
    const body = await readBody(c)
    const path = rawPath(c.req.url)
    const message = requestMessage(ledger.ledgerId, c.req.method, path, timestampText, nonce, body)
    if (!verify(Buffer.from(signature, 'hex'), message, Buffer.from(account, 'hex'))) throw new UnauthenticatedError('the request signature does not verify against x-btt-account')
    return { account, nonce, timestamp, body }
  }

  return app
}

/**
 * The request body, at most MAX_BODY_BYTES. On a Node server (@hono/node-server passes the
 * IncomingMessage as `c.env.incoming`) it is read straight from the socket stream: building a web
 * Request body stream costs more than the rest of a claim's HTTP handling. Elsewhere (app.request,
 * other runtimes) from the web Request.
 */
async function readBody (c: Context): Promise<Uint8Array> {
  const declared = c.req.header('content-length')
  if (declared !== undefined && Number(declared) > MAX_BODY_BYTES) throw new BodyTooLargeError(`request body over ${MAX_BODY_BYTES} bytes`)
  const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming
  if (incoming !== undefined && typeof incoming.on === 'function') return await readIncoming(incoming)
  const stream = c.req.raw.body
  if (stream === null) return new Uint8Array(0)
  const chunks: Uint8Array[] = []
  let size = 0
  const reader = stream.getReader()
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    size += value.length
    if (size > MAX_BODY_BYTES) {
      await reader.cancel()
      throw new BodyTooLargeError(`request body over ${MAX_BODY_BYTES} bytes`)
    }
    chunks.push(value)
  }
  return Buffer.concat(chunks, size)
}

function readIncoming (incoming: IncomingMessage): Promise<Uint8Array> {
  return new Promise<Uint8Array>((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    const done = (): void => {
      incoming.off('data', onData)
      incoming.off('end', onEnd)
      incoming.off('error', onFail)
      incoming.off('close', onClose)
    }
    const onData = (chunk: Buffer): void => {
      size += chunk.length
      if (size > MAX_BODY_BYTES) {
        done()
        reject(new BodyTooLargeError(`request body over ${MAX_BODY_BYTES} bytes`))
      } else {
        chunks.push(chunk)
      }
    }
    const onEnd = (): void => {
      done()
      resolve(chunks.length === 1 ? chunks[0] as Buffer : Buffer.concat(chunks, size))
    }
    const onFail = (): void => {
      done()
      reject(new BadRequestError('the request body was cut off'))
    }
    const onClose = (): void => { if (!incoming.readableEnded) onFail() }
    if (incoming.readableEnded) {
      reject(new BadRequestError('the request body was already read'))
      return
    }
    incoming.on('data', onData)
    incoming.on('end', onEnd)
    incoming.on('error', onFail)
    incoming.on('close', onClose)
  })
}

/** The path of a request URL as sent (no query), e.g. `/v1/channels/ab…/claim`. */
function rawPath (url: string): string {
  const scheme = url.indexOf('://')
  const start = url.indexOf('/', scheme === -1 ? 0 : scheme + 3)
  if (start === -1) return '/'
  const query = url.indexOf('?', start)
  return url.slice(start, query === -1 ? url.length : query)
}

/** A path parameter that must be a 32-byte hex id or key. */
function param (c: Context, name: string): string {
  const value = c.req.param(name)
  if (typeof value !== 'string' || !KEY_TEXT.test(value)) throw new BadRequestError(`${name} must be 64 lower-case hex characters`)
  return value
}

/** JSON (UTF-8) validated by `schema`; an empty body is `{}`. */
function parseBody<S extends z.ZodType> (bytes: Uint8Array, schema: S): z.output<S> {
  let json: unknown = {}
  if (bytes.length > 0) {
    try {
      json = JSON.parse(utf8.decode(bytes))
    } catch {
      throw new BadRequestError('the body must be a JSON object (UTF-8)')
    }
  }
  const parsed = schema.safeParse(json)
  if (!parsed.success) throw new BadRequestError(describeIssues(parsed.error))
  return parsed.data
}
