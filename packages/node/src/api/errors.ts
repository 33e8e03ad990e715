import type { Context } from 'hono'
import { HTTPException } from 'hono/http-exception'
import type { ContentfulStatusCode } from 'hono/utils/http-status'
import type { Logger } from 'pino'
import { NodeError } from '../errors.js'
import type { ApiErrorBody } from './types.js'

/** The one table from error code to HTTP status. Unlisted codes are 500. */
const STATUS_BY_CODE: Record<string, ContentfulStatusCode> = {
  API_UNAUTHORIZED: 401,
  API_HOST_FORBIDDEN: 403,
  API_NOT_FOUND: 404,
  API_BAD_REQUEST: 400,
  API_BODY_TOO_LARGE: 413,
  CONFIG_INVALID: 400,
  CHANNEL_INVALID_AMOUNT: 400,
  SERVICE_UNKNOWN: 404,
  SERVICE_NOT_RUNNING: 409,
  SERVICE_START_FAILED: 500,
  CHANNEL_UNKNOWN: 404,
  LEDGER_UNKNOWN_CHANNEL: 404,
  LEDGER_FAUCET_DISABLED: 403,
  LEDGER_INSUFFICIENT_FUNDS: 409,
  LEDGER_NOT_EXPIRED: 409,
  LEDGER_CHALLENGE_OPEN: 409,
  LEDGER_ALREADY_REFUNDING: 409,
  LEDGER_CHANNEL_FINALIZED: 409,
  LEDGER_NOT_PAYER: 403,
  LEDGER_NOT_PAYEE: 403,
  LEDGER_BAD_EXPIRY: 400,
  LEDGER_BAD_REQUEST: 400,
  LEDGER_UNREACHABLE: 502
}

/** Codes by prefix when not listed: a voucher problem is the caller's (400). */
function statusForPrefix (code: string): ContentfulStatusCode | undefined {
  if (code.startsWith('CHANNEL_VOUCHER_')) return 400
  return undefined
}

export function statusForCode (code: string): ContentfulStatusCode {
  return STATUS_BY_CODE[code] ?? statusForPrefix(code) ?? 500
}

/** hono `onError`: every error becomes `{ "error": { "code", "message" } }`; unknown errors hide their detail. */
export function errorHandler (logger: Logger) {
  return (err: Error, c: Context): Response => {
    let code: string
    let message: string
    let status: ContentfulStatusCode
    if (err instanceof HTTPException) {
      status = err.status as ContentfulStatusCode
      code = status === 413 ? 'API_BODY_TOO_LARGE' : status === 400 ? 'API_BAD_REQUEST' : `HTTP_${status}`
      message = err.message !== '' ? err.message : (status === 413 ? 'request body too large' : 'bad request')
    } else if (typeof (err as Partial<NodeError>).code === 'string' && /^[A-Z][A-Z0-9_]+$/.test((err as NodeError).code)) {
      code = (err as NodeError).code
      message = err.message
      // a service may say which status its coded error is (its codes are not in this table)
      const own = (err as { status?: unknown }).status
      status = typeof own === 'number' && own >= 400 && own < 600 ? own as ContentfulStatusCode : statusForCode(code)
    } else {
      code = 'INTERNAL'
      message = 'internal error; see the node log'
      status = 500
    }
    if (status >= 500) logger.error({ err, path: c.req.path }, 'admin API error')
    else logger.debug({ code, path: c.req.path }, 'admin API request refused')
    const body: ApiErrorBody = { error: { code, message } }
    if (status === 401) c.header('WWW-Authenticate', 'Bearer realm="btt-node"')
    return c.json(body, status)
  }
}
