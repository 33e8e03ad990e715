import {
  ChannelError,
  randomBytes,
  toHex,
  voucherToJson,
  type KeyPair,
  type LedgerChannel,
  type LedgerClient,
  type LedgerInfo,
  type Voucher
} from '@btt/channel'
import { z } from 'zod'
import { signRequest } from './auth.js'
import { CLIENT_MAX_ANSWER_BYTES, CLIENT_TIMEOUT_MS } from './constants.js'
import { BadRequestError, BadResponseError, LEDGER_ERRORS, LedgerError, LedgerUnreachableError } from './errors.js'
import { amount, channelSchema, describeIssues, errorSchema, hexOf, infoSchema } from './json.js'
import type { Ledger } from './ledger.js'
import { httpRequest, type HttpAnswer } from './transport.js'

export interface HttpLedgerClientInit {
  /** The ledger server, e.g. `http://127.0.0.1:7080`. */
  url: string
  /** The account's wallet key: signs every mutating request. */
  keyPair: KeyPair
  /** Give up on one request after this long; default 30 s. */
  timeoutMs?: number
}

const claimAnswer = z.strictObject({ channel: channelSchema, paid: amount })
const finalizeAnswer = z.strictObject({ channel: channelSchema, refunded: amount })
const balanceAnswer = z.strictObject({ account: hexOf(32), balance: amount })
const channelsAnswer = z.strictObject({ channels: z.array(channelSchema).max(100_000) })

/**
 * LedgerClient over HTTP (node:http/https with keep-alive; see transport.ts for why not fetch).
 * Reads are plain GETs; mutations are signed with the
 * account key (auth.ts). An error answer becomes an error with the server's `code` (a LedgerError
 * subclass for LEDGER_… codes, a ChannelError for CHANNEL_… codes); a network failure or timeout is
 * a LedgerUnreachableError; an answer that does not parse is a BadResponseError.
 */
export class HttpLedgerClient implements LedgerClient {
  readonly account: string
  private readonly base: URL
  private readonly keyPair: KeyPair
  private readonly timeoutMs: number
  private ledgerId: Promise<string> | undefined

  constructor (init: HttpLedgerClientInit) {
    let base: URL
    try {
      base = new URL(init.url)
    } catch {
      throw new BadRequestError(`ledger url ${JSON.stringify(init.url)} is not a URL`)
    }
    if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new BadRequestError(`ledger url must be http(s), got ${base.protocol}`)
    this.base = base
    this.keyPair = checkKeyPair(init.keyPair)
    this.account = toHex(init.keyPair.publicKey)
    this.timeoutMs = init.timeoutMs ?? CLIENT_TIMEOUT_MS
  }

  async info (): Promise<LedgerInfo> {
    const info = await this.get('/v1/info', infoSchema)
    this.ledgerId ??= Promise.resolve(info.ledgerId)
    return info
  }

  async balance (account: string = this.account): Promise<bigint> {
    return (await this.get(`/v1/accounts/${encodeURIComponent(account)}`, balanceAnswer)).balance
  }

  async channel (id: string): Promise<LedgerChannel> {
    return await this.get(`/v1/channels/${encodeURIComponent(id)}`, channelSchema)
  }

  async channels (): Promise<LedgerChannel[]> {
    return (await this.get(`/v1/channels?account=${this.account}`, channelsAnswer)).channels
  }

  async open (req: { payee: string, deposit: bigint, expiresAt: number }): Promise<LedgerChannel> {
    const nonce = toHex(randomBytes(32))
    return await this.post('/v1/channels', { payee: req.payee, deposit: amountText(req.deposit), expiresAt: req.expiresAt, nonce }, channelSchema)
  }

  async topup (req: { channelId: string, amount: bigint }): Promise<LedgerChannel> {
    return await this.post(`${channelPath(req.channelId)}/topup`, { amount: amountText(req.amount) }, channelSchema)
  }

  async extend (req: { channelId: string, expiresAt: number }): Promise<LedgerChannel> {
    return await this.post(`${channelPath(req.channelId)}/extend`, { expiresAt: req.expiresAt }, channelSchema)
  }

  async claim (voucher: Voucher): Promise<{ channel: LedgerChannel, paid: bigint }> {
    return await this.post(`${channelPath(toHex(voucher.channelId))}/claim`, { voucher: voucherToJson(voucher) }, claimAnswer)
  }

  async refund (req: { channelId: string }): Promise<LedgerChannel> {
    return await this.post(`${channelPath(req.channelId)}/refund`, {}, channelSchema)
  }

  async finalize (req: { channelId: string }): Promise<{ channel: LedgerChannel, refunded: bigint }> {
    return await this.post(`${channelPath(req.channelId)}/finalize`, {}, finalizeAnswer)
  }

  async faucet (value: bigint): Promise<bigint> {
    return (await this.post('/v1/faucet', { amount: amountText(value) }, balanceAnswer)).balance
  }

  private async get<S extends z.ZodType> (path: string, schema: S): Promise<z.output<S>> {
    return await this.send('GET', path, undefined, {}, schema)
  }

  private async post<S extends z.ZodType> (path: string, body: unknown, schema: S): Promise<z.output<S>> {
    const ledgerId = await this.knownLedgerId()
    const bytes = Buffer.from(JSON.stringify(body), 'utf8')
    const url = new URL(path, this.base)
    const headers = signRequest({ ledgerId, method: 'POST', path: url.pathname, body: bytes, keyPair: this.keyPair })
    return await this.send('POST', path, bytes, { ...headers, 'content-type': 'application/json' }, schema)
  }

  /** The ledger id signed into every request, asked once. */
  private async knownLedgerId (): Promise<string> {
    if (this.ledgerId === undefined) {
      const asking = this.get('/v1/info', infoSchema).then(info => info.ledgerId)
      this.ledgerId = asking
      asking.catch(() => { if (this.ledgerId === asking) this.ledgerId = undefined })
    }
    return await this.ledgerId
  }

  private async send<S extends z.ZodType> (method: string, path: string, body: Uint8Array | undefined, headers: Record<string, string>, schema: S): Promise<z.output<S>> {
    const url = new URL(path, this.base)
    let answer: HttpAnswer
    try {
      answer = await httpRequest(method, url, headers, body, this.timeoutMs, CLIENT_MAX_ANSWER_BYTES)
    } catch (err) {
      throw new LedgerUnreachableError(`ledger ${this.base.origin}: ${method} ${url.pathname} failed: ${(err as Error).message}`, { cause: err })
    }
    let json: unknown
    try {
      json = JSON.parse(answer.text)
    } catch {
      throw new BadResponseError(`ledger ${this.base.origin} answered ${answer.status} with a body that is not JSON`)
    }
    if (answer.status < 200 || answer.status > 299) {
      const e = errorSchema.safeParse(json)
      if (!e.success) throw new BadResponseError(`ledger ${this.base.origin} answered ${answer.status} without an error code`)
      throw errorFromCode(e.data.error.code, e.data.error.message)
    }
    const parsed = schema.safeParse(json)
    if (!parsed.success) throw new BadResponseError(`ledger ${this.base.origin}: unexpected answer to ${method} ${url.pathname}: ${describeIssues(parsed.error)}`)
    return parsed.data
  }
}

export interface LocalLedgerClientInit {
  ledger: Ledger
  /** The account's wallet key: only its public key is used (the caller holds the key, no signing needed). */
  keyPair: KeyPair
}

/**
 * LedgerClient on a Ledger in this process: the embedded mode of a single node without a ledger
 * server. Mutations go through the ledger's group commit; reads are direct.
 */
export class LocalLedgerClient implements LedgerClient {
  readonly account: string
  private readonly ledger: Ledger

  constructor (init: LocalLedgerClientInit) {
    this.ledger = init.ledger
    this.account = toHex(checkKeyPair(init.keyPair).publicKey)
  }

  async info (): Promise<LedgerInfo> {
    return this.ledger.info()
  }

  async balance (account: string = this.account): Promise<bigint> {
    return this.ledger.balance(account)
  }

  async channel (id: string): Promise<LedgerChannel> {
    return this.ledger.channel(id)
  }

  async channels (): Promise<LedgerChannel[]> {
    return this.ledger.channels(this.account)
  }

  async open (req: { payee: string, deposit: bigint, expiresAt: number }): Promise<LedgerChannel> {
    const nonce = toHex(randomBytes(32))
    return await this.ledger.enqueue(() => this.ledger.open(this.account, { payee: req.payee, deposit: req.deposit, expiresAt: req.expiresAt, nonce }))
  }

  async topup (req: { channelId: string, amount: bigint }): Promise<LedgerChannel> {
    return await this.ledger.enqueue(() => this.ledger.topup(this.account, { channelId: req.channelId, amount: req.amount }))
  }

  async extend (req: { channelId: string, expiresAt: number }): Promise<LedgerChannel> {
    return await this.ledger.enqueue(() => this.ledger.extend(this.account, { channelId: req.channelId, expiresAt: req.expiresAt }))
  }

  async claim (voucher: Voucher): Promise<{ channel: LedgerChannel, paid: bigint }> {
    return await this.ledger.enqueue(() => this.ledger.claim(this.account, voucher))
  }

  async refund (req: { channelId: string }): Promise<LedgerChannel> {
    return await this.ledger.enqueue(() => this.ledger.refund(this.account, { channelId: req.channelId }))
  }

  async finalize (req: { channelId: string }): Promise<{ channel: LedgerChannel, refunded: bigint }> {
    return await this.ledger.enqueue(() => this.ledger.finalize(this.account, { channelId: req.channelId }))
  }

  async faucet (value: bigint): Promise<bigint> {
    return await this.ledger.enqueue(() => this.ledger.faucet(this.account, value))
  }
}

/** The error the server threw, rebuilt from its code and message. */
export function errorFromCode (code: string, message: string): LedgerError | ChannelError {
  const known = LEDGER_ERRORS[code]
  if (known !== undefined) return new known(message)
  if (code.startsWith('CHANNEL_')) return new ChannelError(code, message)
  return new LedgerError(code, message)
}

function checkKeyPair (keyPair: KeyPair): KeyPair {
  const ok = keyPair?.publicKey instanceof Uint8Array && keyPair.publicKey.length === 32 &&
    keyPair.secretKey instanceof Uint8Array && keyPair.secretKey.length === 64 &&
    Buffer.from(keyPair.secretKey.subarray(32)).equals(Buffer.from(keyPair.publicKey))
  if (!ok) throw new BadRequestError('keyPair must be an ed25519 key pair (32-byte public key, 64-byte libsodium secret key of that public key)')
  return keyPair
}

function channelPath (id: string): string {
  if (!/^[0-9a-f]{64}$/.test(id)) throw new BadRequestError('channel id must be 64 lower-case hex characters')
  return `/v1/channels/${id}`
}

function amountText (value: bigint): string {
  if (typeof value !== 'bigint') throw new BadRequestError('amounts are bigint base units')
  return value.toString()
}
