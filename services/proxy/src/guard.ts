import { promises as dns } from 'node:dns'
import net, { type Socket } from 'node:net'
import { networkInterfaces } from 'node:os'
import { pipeline, Transform, type Readable } from 'node:stream'
import tls from 'node:tls'
import zlib from 'node:zlib'
import ipaddr from 'ipaddr.js'
import { Agent, type buildConnector, type Dispatcher } from 'undici'
import { ProxyError } from './errors.js'

/**
 * The provider's outbound fetch: an SSRF guard around undici.
 *
 * - `checkUrl` refuses what can be refused from the URL alone (scheme, credentials, port, local-only
 *   names, domain lists, IP literals in forbidden ranges).
 * - `safeFetch` resolves each hop's host and checks every answer, then lets undici connect through
 *   its own `connect` function, which resolves AGAIN, checks every answer, dials the checked IP (never
 *   a name) and checks `socket.remoteAddress` once connected, before a byte is written. The address
 *   checked is the address dialled, so DNS rebinding between the two lookups gains nothing.
 * - Redirects are never followed by undici; each hop is re-checked from the start.
 * - Bodies are requested with `accept-encoding: gzip, deflate, br` and DECODED here (zlib streams,
 *   which respect back-pressure), so `maxBodyBytes` caps decoded bytes and a compression bomb stops
 *   at the cap. A `range` request asks for `identity` instead: a byte range of a compressed
 *   representation cannot be decoded on its own.
 * - Request headers: hop-by-hop ones, the ones this module sets itself (Host, Accept-Encoding,
 *   Range, Content-Length, Expect) and credentials (Cookie, Authorization, Proxy-*) are always
 *   dropped, so are Forwarded / X-Forwarded-* / X-Real-IP. There is no switch to forward
 *   credentials: they are the requester's secrets, and a redirect could carry them to another origin.
 * - Addresses: everything ipaddr.js does not call 'unicast' is refused, and for IPv6 everything
 *   outside 2000::/3. IPv4-mapped, IPv4-translated and NAT64 (64:ff9b::/96) addresses are judged by
 *   the IPv4 address they embed; 6to4, Teredo and local-use NAT64 (64:ff9b:1::/48) are refused.
 *   Order: own addresses, then `denyCidrs`, then `allowCidrs`, then the built-in denies. A name
 *   is refused if ANY of its addresses is.
 * - Timers: the deadline covers every hop, headers and body. The idle timer runs while this module
 *   waits for the origin (resolve, connect, headers, and each body read the caller is waiting on),
 *   restarting on every byte from the wire; a caller that stops reading is bounded by the deadline.
 * - Limits this module cannot enforce: a resolver call cannot be cancelled (the fetch fails at the
 *   idle timeout or deadline, the lookup finishes in the background); a public address that leads
 *   into the operator's network (its own NATed public address, a VPC's public range trusted by a
 *   firewall) is only refused if the operator lists it in `denyCidrs` or `ownAddresses`.
 */

export interface GuardPolicy {
  /** Ports that may be dialled. Empty means the default, [80, 443]. */
  allowPorts: number[]
  /** When not empty, only these domains and their subdomains ('example.com' matches 'a.example.com'). */
  allowDomains: string[]
  denyDomains: string[]
  /** Non-public ranges allowed anyway (a lab network, a test origin). Checked after `denyCidrs` and `ownAddresses`, before the built-in denies. */
  allowCidrs: string[]
  /** Extra ranges the operator refuses; they win over `allowCidrs`. */
  denyCidrs: string[]
  /**
   * The node's own listen addresses, always refused. Without `port`: the host, whatever the port
   * (an unspecified host, 0.0.0.0 or ::, means every address of this machine). With `port`: that
   * port on the host, on every loopback address and on every address of this machine's interfaces
   * (a listener on 0.0.0.0 answers on all of them).
   */
  ownAddresses?: Array<{ host: string, port?: number }>
}

export interface SafeFetchOptions {
  policy: GuardPolicy
  /** Cap on decoded bytes (for a partial answer counted from `range.start`): beyond it, PROXY_TOO_LARGE. */
  maxBodyBytes: number
  /** The whole fetch, every hop, headers and body: PROXY_DEADLINE when it runs out. */
  totalTimeoutMs: number
  /** No bytes from the origin for this long while we wait for them (connect, headers, or a body read): PROXY_IDLE. */
  idleTimeoutMs: number
  /** Default 5. */
  maxRedirects?: number
  /** The requester's headers; see the module comment for what is dropped. */
  headers?: Record<string, string>
  /** Sends `Range: bytes=start-`; `SafeResponse.partial` says whether the origin honoured it. */
  range?: { start: number }
  signal?: AbortSignal
  /** Name resolution (tests inject one). Default: the system resolver, all addresses. */
  lookup?: (host: string) => Promise<Array<{ address: string, family: 4 | 6 }>>
}

export interface SafeResponse {
  /** the final URL, after redirects */
  url: string
  status: number
  /** response headers without hop-by-hop ones; without content-encoding and content-length when the body was decoded */
  headers: Record<string, string>
  /** the origin answered 206 to our range, with a Content-Range starting at `range.start` */
  partial: boolean
  /** decoded bytes; the size cap, the deadline and the idle timeout are enforced while iterating */
  body: AsyncIterable<Uint8Array>
}

const DEFAULT_PORTS = [80, 443]
const DEFAULT_MAX_REDIRECTS = 5
/** far more than a browser follows (20) would only serve loops */
const MAX_REDIRECTS_LIMIT = 20
/** a URL longer than this is refused (browsers and servers commonly stop near 8 KiB) */
const MAX_URL_LENGTH = 8192
const MAX_REQUEST_HEADERS = 64
const MAX_HEADER_VALUE = 8192
/** a single dial attempt; the total deadline still applies */
const CONNECT_TIMEOUT_MS = 10_000
/** Content-Encoding layers decoded; more is an attack or a broken origin */
const MAX_ENCODINGS = 2
/** answers checked for one name; more is refused */
const MAX_ADDRESSES = 64
/** RFC 6761 / 6762 / 8375 and common local-only suffixes: never public */
const LOCAL_SUFFIXES = ['localhost', 'local', 'internal', 'localdomain', 'home.arpa']
const REDIRECTS = new Set([301, 302, 303, 307, 308])

const STRIP_REQUEST = new Set([
  // hop-by-hop (RFC 9110 §7.6.1) and HTTP/2 upgrade
  'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'http2-settings',
  // set by this module or meaningless for a body-less GET
  'host', 'accept-encoding', 'range', 'content-length', 'expect',
  // credentials and identity claims
  'cookie', 'authorization', 'forwarded', 'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'x-real-ip'
])
const STRIP_RESPONSE = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'http2-settings'])
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
const CONTROL = /[\u0000-\u001f\u007f]/

type Addr = ipaddr.IPv4 | ipaddr.IPv6
type Cidr = [Addr, number, string]

interface Compiled {
  ports: Set<number>
  allowDomains: string[]
  denyDomains: string[]
  allow: Cidr[]
  deny: Cidr[]
  /** own hosts without a port: denied entirely */
  ownHosts: Addr[]
  /** own host:port pairs */
  ownPorts: Array<{ host: Addr, port: number }>
}

const GLOBAL_UNICAST = ipaddr.parseCIDR('2000::/3')
const NAT64_WKP = ipaddr.parseCIDR('64:ff9b::/96')

const compiled = new WeakMap<GuardPolicy, Compiled>()

function compile (policy: GuardPolicy): Compiled {
  const hit = compiled.get(policy)
  if (hit !== undefined) return hit
  const bad = (what: string): ProxyError => new ProxyError('PROXY_BAD_POLICY', what)
  const ports = new Set(policy.allowPorts.length > 0 ? policy.allowPorts : DEFAULT_PORTS)
  for (const p of ports) if (!Number.isInteger(p) || p < 1 || p > 65535) throw bad(`allowPorts: ${p} is not a port`)
  const cidr = (s: string, key: string): Cidr => {
    try {
      if (s.includes('/')) {
        const [a, bits] = ipaddr.parseCIDR(s)
        return [a, bits, s]
      }
      const a = ipaddr.parse(s)
      return [a, a.kind() === 'ipv4' ? 32 : 128, s]
    } catch {
      throw bad(`${key}: ${s} is not an address range`)
    }
  }
  const host = (s: string): Addr => {
    try { return normal(ipaddr.parse(s)) } catch { throw bad(`ownAddresses: ${s} is not an IP address`) }
  }
  const c: Compiled = {
    ports,
    allowDomains: policy.allowDomains.map(domainEntry),
    denyDomains: policy.denyDomains.map(domainEntry),
    allow: policy.allowCidrs.map(s => cidr(s, 'allowCidrs')),
    deny: policy.denyCidrs.map(s => cidr(s, 'denyCidrs')),
    ownHosts: (policy.ownAddresses ?? []).filter(o => o.port === undefined).map(o => host(o.host)),
    ownPorts: (policy.ownAddresses ?? []).filter(o => o.port !== undefined).map(o => ({ host: host(o.host), port: o.port as number }))
  }
  compiled.set(policy, c)
  return c
}

function domainEntry (d: string): string {
  return d.trim().toLowerCase().replace(/^\*?\./, '').replace(/\.$/, '')
}

function inDomains (name: string, list: string[]): boolean {
  return list.some(d => d !== '' && (name === d || name.endsWith(`.${d}`)))
}

/** IPv4-mapped IPv6 addresses are the IPv4 address. */
function normal (a: Addr): Addr {
  return a.kind() === 'ipv6' && (a as ipaddr.IPv6).isIPv4MappedAddress() ? (a as ipaddr.IPv6).toIPv4Address() : a
}

function same (a: Addr, b: Addr): boolean {
  return a.kind() === b.kind() && a.toNormalizedString() === b.toNormalizedString()
}

function inCidr (a: Addr, net: Addr, bits: number): boolean {
  return a.kind() === net.kind() && a.match(net, bits)
}

function v4FromParts (hi: number, lo: number): ipaddr.IPv4 {
  return new ipaddr.IPv4([hi >> 8, hi & 0xff, lo >> 8, lo & 0xff])
}

/** Addresses of this machine's interfaces (the kernel delivers a dial to any of them locally). */
function isLocal (a: Addr): boolean {
  const range = a.range()
  if (range === 'loopback' || range === 'unspecified') return true
  for (const list of Object.values(networkInterfaces())) {
    for (const i of list ?? []) {
      try {
        if (same(a, normal(ipaddr.parse(i.address)))) return true
      } catch { /* an interface address ipaddr does not parse cannot equal a parsed one */ }
    }
  }
  return false
}

function ownReason (a: Addr, port: number | undefined, c: Compiled): string | undefined {
  for (const h of c.ownHosts) {
    if (h.range() === 'unspecified' ? isLocal(a) : same(a, h)) return `${a.toString()} is this node's own address`
  }
  for (const o of c.ownPorts) {
    // an unknown port is treated as the own port: refusing is the safe answer
    if (port !== undefined && port !== o.port) continue
    if (same(a, o.host) || isLocal(a)) return `${a.toString()} port ${o.port} is this node's own listener`
  }
  return undefined
}

function addressReason (raw: Addr, c: Compiled, port: number | undefined, depth: number): string | undefined {
  const a = normal(raw)
  const own = ownReason(a, port, c)
  if (own !== undefined) return own
  for (const [net, bits, src] of c.deny) if (inCidr(a, net, bits) || inCidr(raw, net, bits)) return `${a.toString()} is in the operator's denied range ${src}`
  for (const [net, bits] of c.allow) if (inCidr(a, net, bits) || inCidr(raw, net, bits)) return undefined
  if (a.kind() === 'ipv4') {
    const range = (a as ipaddr.IPv4).range()
    return range === 'unicast' ? undefined : `${a.toString()} is a ${range} address`
  }
  const v6 = a as ipaddr.IPv6
  const range = v6.range()
  const p = v6.parts
  // IPv4 translated (RFC 6145) and the NAT64 well-known prefix (RFC 6052): the IPv4 address is what is reached
  if ((range === 'rfc6145' || (range === 'rfc6052' && v6.match(NAT64_WKP))) && depth === 0) {
    const v4 = v4FromParts(p[6] ?? 0, p[7] ?? 0)
    const r = addressReason(v4, c, port, depth + 1)
    return r === undefined ? undefined : `${v6.toString()} embeds ${v4.toString()}: ${r}`
  }
  if (range === '6to4' || range === 'teredo') {
    // deprecated transition ranges: refused, naming what they embed
    const v4 = range === '6to4' ? v4FromParts(p[1] ?? 0, p[2] ?? 0) : v4FromParts(~(p[6] ?? 0) & 0xffff, ~(p[7] ?? 0) & 0xffff)
    const r = depth === 0 ? addressReason(v4, c, port, depth + 1) : undefined
    return `${v6.toString()} is a ${range} address embedding ${v4.toString()}${r !== undefined ? ` (${r})` : ''}`
  }
  if (range !== 'unicast') return `${v6.toString()} is a ${range} address`
  // ipaddr calls IPv4-compatible (::/96) and other unassigned space 'unicast'; only 2000::/3 is global
  if (!v6.match(GLOBAL_UNICAST)) return `${v6.toString()} is outside the global unicast range 2000::/3`
  return undefined
}

/**
 * Why `address` must not be dialled, or undefined when it may be. `port`, when given, applies the
 * port-specific `ownAddresses` entries only to that port (without it they apply to every port).
 */
export function isForbiddenAddress (address: string, policy: GuardPolicy, port?: number): string | undefined {
  let a: Addr
  try {
    a = ipaddr.parse(address)
  } catch {
    return `${JSON.stringify(address.slice(0, 64))} is not an IP address`
  }
  return addressReason(a, compile(policy), port, 0)
}

function bracketless (host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host
}

function defaultPort (protocol: string): number {
  return protocol === 'https:' ? 443 : 80
}

function shown (raw: string): string {
  return JSON.stringify(raw.length > 200 ? `${raw.slice(0, 200)}…` : raw)
}

/** Syntactic checks of a URL; returns it parsed (WHATWG), which is what is then fetched. */
export function checkUrl (raw: string, policy: GuardPolicy): URL {
  const c = compile(policy)
  const bad = (why: string): ProxyError => new ProxyError('PROXY_FORBIDDEN_URL', `${why}: ${shown(String(raw))}`)
  if (typeof raw !== 'string' || raw === '') throw bad('empty URL')
  if (raw.length > MAX_URL_LENGTH) throw bad(`URL longer than ${MAX_URL_LENGTH} characters`)
  if (CONTROL.test(raw)) throw bad('control characters in the URL')
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):/.exec(raw)?.[1]?.toLowerCase()
  if (scheme !== 'http' && scheme !== 'https') throw bad(`scheme ${scheme ?? '(none)'} is not http or https`)
  // '@' in the authority as the URL parser will see it (it treats '\' as '/' for http)
  const authority = /^[a-zA-Z][a-zA-Z0-9+.-]*:[\\/]*([^\\/?#]*)/.exec(raw)?.[1] ?? ''
  if (authority.includes('@')) throw bad('credentials in the URL')
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    throw bad('not a valid URL')
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw bad(`scheme ${url.protocol} is not http or https`)
  if (url.username !== '' || url.password !== '') throw bad('credentials in the URL')
  const port = url.port === '' ? defaultPort(url.protocol) : Number(url.port)
  if (!c.ports.has(port)) throw bad(`port ${port} is not allowed`)
  const host = bracketless(url.hostname)
  if (net.isIP(host) !== 0) {
    // the URL parser has already turned every IPv4 spelling (2130706433, 0x7f.1, 0177.0.0.1, 127.1) into dotted decimal
    if (c.allowDomains.length > 0 && !c.allowDomains.includes(host)) throw bad(`${host} is not in the allowed domains`)
    if (inDomains(host, c.denyDomains)) throw bad(`${host} is denied`)
    const r = addressReason(ipaddr.parse(host), c, port, 0)
    if (r !== undefined) throw bad(r)
    return url
  }
  const name = hostName(host)
  if (name === '' || name.split('.').some(l => l === '')) throw bad('empty label in the host name')
  if (name.length > 253) throw bad('host name longer than 253 characters')
  if (!name.includes('.')) throw bad(`${name} is a single-label name (resolved through local search domains)`)
  if (LOCAL_SUFFIXES.some(s => name === s || name.endsWith(`.${s}`))) throw bad(`${name} is a local-only name`)
  if (inDomains(name, c.denyDomains)) throw bad(`${name} is denied`)
  if (c.allowDomains.length > 0 && !inDomains(name, c.allowDomains)) throw bad(`${name} is not in the allowed domains`)
  return url
}

/** lower case, one trailing dot removed ('example.com.' is 'example.com') */
function hostName (host: string): string {
  const h = host.toLowerCase()
  return h.endsWith('.') ? h.slice(0, -1) : h
}

async function systemLookup (host: string): Promise<Array<{ address: string, family: 4 | 6 }>> {
  // resolved as an absolute name: no search domain is ever appended
  const answers = await dns.lookup(`${host}.`, { all: true, verbatim: true })
  return answers.map(a => ({ address: a.address, family: a.family === 6 ? 6 : 4 }))
}

const noop = (): void => {}

/** One fetch's timers, abort controller, sockets and agent; `fail` tears it all down once. */
class Run {
  failure: ProxyError | undefined
  readonly ac = new AbortController()
  readonly sockets = new Set<Socket>()
  readonly agent: Agent
  out: Readable | undefined
  private readonly failed: Promise<never>
  private rejectFailed: (err: ProxyError) => void = noop
  private readonly deadline: NodeJS.Timeout
  private idle: NodeJS.Timeout | undefined
  private closed = false
  private readonly onAbort: () => void

  constructor (readonly opts: SafeFetchOptions, readonly lookup: NonNullable<SafeFetchOptions['lookup']>) {
    this.failed = new Promise<never>((_resolve, reject) => { this.rejectFailed = reject })
    this.failed.catch(noop)
    this.deadline = setTimeout(() => { this.fail(new ProxyError('PROXY_DEADLINE', `the fetch did not finish within ${opts.totalTimeoutMs} ms`)) }, opts.totalTimeoutMs)
    this.onAbort = () => { this.fail(new ProxyError('PROXY_ABORTED', 'the fetch was cancelled')) }
    opts.signal?.addEventListener('abort', this.onAbort, { once: true })
    const connect: buildConnector.connector = (o, cb) => {
      dial(o, this).then(s => { cb(null, s) }, (err: Error) => { cb(err, null) })
    }
    // timeouts are this module's (undici's are between chunks and coarse); redirects are followed here
    this.agent = new Agent({ connect, headersTimeout: 0, bodyTimeout: 0, maxResponseSize: -1, allowH2: false, connections: 4 })
  }

  /** Resolves with `p`, or rejects as soon as the fetch has failed. */
  async wait<T> (p: Promise<T>): Promise<T> {
    if (this.failure !== undefined) throw this.failure
    return await Promise.race([p, this.failed])
  }

  fail (err: ProxyError): ProxyError {
    if (this.failure !== undefined) return this.failure
    this.failure = err
    this.rejectFailed(err)
    this.ac.abort(err)
    this.out?.destroy(err)
    this.close()
    return err
  }

  armIdle (): void {
    clearTimeout(this.idle)
    this.idle = setTimeout(() => { this.fail(new ProxyError('PROXY_IDLE', `no bytes from the origin for ${this.opts.idleTimeoutMs} ms`)) }, this.opts.idleTimeoutMs)
  }

  /** bytes arrived: an armed idle timer starts again */
  poke (): void {
    if (this.idle !== undefined) this.armIdle()
  }

  disarmIdle (): void {
    clearTimeout(this.idle)
    this.idle = undefined
  }

  close (): void {
    if (this.closed) return
    this.closed = true
    clearTimeout(this.deadline)
    this.disarmIdle()
    this.opts.signal?.removeEventListener('abort', this.onAbort)
    if (this.out !== undefined && !this.out.destroyed) this.out.destroy()
    for (const s of this.sockets) s.destroy()
    this.agent.destroy().catch(noop)
  }
}

/** Resolves `host` (an IP literal resolves to itself) and refuses if ANY answer is forbidden. */
async function resolveChecked (host: string, port: number, run: Run): Promise<string[]> {
  const c = compile(run.opts.policy)
  let addresses: string[]
  if (net.isIP(host) !== 0) {
    addresses = [host]
  } else {
    const name = hostName(host)
    let answers: Array<{ address: string }>
    try {
      answers = await run.wait(run.lookup(name))
    } catch (err) {
      if (err instanceof ProxyError) throw err
      throw new ProxyError('PROXY_UPSTREAM', `cannot resolve ${name}: ${(err as Error).message}`, { cause: err })
    }
    if (!Array.isArray(answers) || answers.length === 0) throw new ProxyError('PROXY_UPSTREAM', `${name} has no address`)
    if (answers.length > MAX_ADDRESSES) throw new ProxyError('PROXY_FORBIDDEN', `${name} has more than ${MAX_ADDRESSES} addresses`)
    addresses = answers.map(a => String(a.address))
  }
  for (const address of addresses) {
    let reason: string | undefined
    try {
      reason = addressReason(ipaddr.parse(address), c, port, 0)
    } catch {
      reason = `${JSON.stringify(address.slice(0, 64))} is not an IP address`
    }
    if (reason !== undefined) throw new ProxyError('PROXY_FORBIDDEN', host === address ? reason : `${hostName(host)} resolves to ${reason}`)
  }
  return addresses
}

/** undici's connector: resolve, check, dial the checked IP, check the connected peer, then TLS. */
async function dial (o: buildConnector.Options, run: Run): Promise<Socket> {
  if (run.failure !== undefined) throw run.failure
  const host = bracketless(o.hostname)
  const https = o.protocol === 'https:'
  const port = o.port === '' || o.port === undefined ? defaultPort(o.protocol) : Number(o.port)
  if (!compile(run.opts.policy).ports.has(port)) throw new ProxyError('PROXY_FORBIDDEN', `port ${port} is not allowed`)
  const addresses = await resolveChecked(host, port, run)
  const servername = net.isIP(host) === 0 ? hostName(host) : undefined
  let last: unknown
  for (const address of addresses) {
    try {
      return await connectOne(address, port, https, servername, run)
    } catch (err) {
      if (err instanceof ProxyError) throw err
      last = err
    }
  }
  throw new ProxyError('PROXY_UPSTREAM', `cannot connect to ${host} port ${port}: ${(last as Error | undefined)?.message ?? 'no address'}`, { cause: last })
}

async function connectOne (address: string, port: number, https: boolean, servername: string | undefined, run: Run): Promise<Socket> {
  const socket = net.connect({
    host: address,
    port,
    noDelay: true,
    keepAlive: true,
    // `address` is an IP, so no lookup happens; should one ever be attempted, it fails
    lookup: (_hostname, _options, callback) => { callback(new Error('name lookup refused while dialling'), '', 4) }
  })
  run.sockets.add(socket)
  socket.once('close', () => run.sockets.delete(socket))
  await settle(socket, 'connect', run)
  const remote = socket.remoteAddress
  let reason: string | undefined
  if (remote === undefined) {
    reason = 'the connected socket has no remote address'
  } else {
    reason = isForbiddenAddress(remote, run.opts.policy, socket.remotePort)
    if (reason === undefined && !same(normal(ipaddr.parse(remote)), normal(ipaddr.parse(address)))) reason = `dialled ${address} but connected to ${remote}`
  }
  if (reason !== undefined) {
    socket.destroy()
    throw new ProxyError('PROXY_FORBIDDEN', reason)
  }
  if (!https) return socket
  const secure = tls.connect({
    socket,
    // no SNI for an IP literal (RFC 6066); the certificate is then checked against the IP
    ...(servername !== undefined ? { servername } : {}),
    host: servername ?? address,
    ALPNProtocols: ['http/1.1']
  })
  run.sockets.add(secure)
  secure.once('close', () => run.sockets.delete(secure))
  await settle(secure, 'secureConnect', run)
  return secure
}

/** Waits for `event` on a socket, with the dial timeout; rejects on error or when the fetch fails. */
async function settle (socket: Socket, event: string, run: Run): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  let onError: (err: Error) => void = noop
  let onEvent: () => void = noop
  try {
    await run.wait(new Promise<void>((resolve, reject) => {
      onEvent = resolve
      onError = reject
      socket.once(event, onEvent)
      socket.once('error', onError)
      timer = setTimeout(() => { reject(new Error(`no ${event} within ${CONNECT_TIMEOUT_MS} ms`)) }, CONNECT_TIMEOUT_MS)
    }))
  } catch (err) {
    socket.destroy()
    throw err
  } finally {
    clearTimeout(timer)
    socket.off(event, onEvent)
    socket.off('error', onError)
  }
}

function requestHeaders (input: Record<string, string> | undefined, range: { start: number } | undefined): Record<string, string> {
  const out: Record<string, string> = Object.create(null) as Record<string, string>
  const entries = Object.entries(input ?? {})
  if (entries.length > MAX_REQUEST_HEADERS) throw new ProxyError('PROXY_BAD_REQUEST', `more than ${MAX_REQUEST_HEADERS} request headers`)
  // headers named in Connection are hop-by-hop too
  const listed = new Set<string>()
  for (const [k, v] of entries) if (k.toLowerCase() === 'connection') for (const t of String(v).split(',')) listed.add(t.trim().toLowerCase())
  for (const [k, v] of entries) {
    if (!TOKEN.test(k)) throw new ProxyError('PROXY_BAD_REQUEST', `bad request header name ${shown(k)}`)
    if (typeof v !== 'string' || v.length > MAX_HEADER_VALUE || CONTROL.test(v.replace(/\t/g, ' '))) throw new ProxyError('PROXY_BAD_REQUEST', `bad value for request header ${k}`)
    const name = k.toLowerCase()
    if (STRIP_REQUEST.has(name) || name.startsWith('proxy-') || listed.has(name)) continue
    out[name] = v
  }
  out['accept-encoding'] = range !== undefined ? 'identity' : 'gzip, deflate, br'
  if (range !== undefined) out.range = `bytes=${range.start}-`
  return out
}

function headerValue (v: string | string[] | undefined): string | undefined {
  return v === undefined ? undefined : Array.isArray(v) ? v.join(', ') : v
}

function responseHeaders (raw: Dispatcher.ResponseData['headers'], decoded: boolean): Record<string, string> {
  const listed = new Set((headerValue(raw.connection) ?? '').split(',').map(t => t.trim().toLowerCase()))
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(raw)) {
    const name = k.toLowerCase()
    const value = headerValue(v)
    if (value === undefined || STRIP_RESPONSE.has(name) || name.startsWith('proxy-') || listed.has(name)) continue
    if (decoded && (name === 'content-encoding' || name === 'content-length')) continue
    out[name] = value
  }
  return out
}

type Encoding = 'gzip' | 'deflate' | 'br'

function encodings (header: string | undefined): Encoding[] {
  if (header === undefined) return []
  const list = header.split(',').map(t => t.trim().toLowerCase()).filter(t => t !== '' && t !== 'identity')
  if (list.length > MAX_ENCODINGS) throw new ProxyError('PROXY_BAD_ENCODING', `more than ${MAX_ENCODINGS} content encodings`)
  return list.map(t => {
    if (t === 'gzip' || t === 'x-gzip') return 'gzip'
    if (t === 'deflate' || t === 'br') return t
    throw new ProxyError('PROXY_BAD_ENCODING', `unsupported content encoding ${shown(t)}`)
  })
}

/** The first byte of a readable without consuming it (undefined for an empty body). */
async function peekByte (r: Readable, run: Run): Promise<number | undefined> {
  for (;;) {
    const chunk = r.read() as Buffer | null
    if (chunk !== null) {
      r.unshift(chunk)
      return chunk[0]
    }
    if (r.readableEnded || r.destroyed) return undefined
    let onDone: () => void = noop
    let onError: (err: Error) => void = noop
    try {
      await run.wait(new Promise<void>((resolve, reject) => {
        onDone = resolve
        onError = reject
        r.once('readable', onDone)
        r.once('end', onDone)
        r.once('error', onError)
      }))
    } finally {
      r.off('readable', onDone)
      r.off('end', onDone)
      r.off('error', onError)
    }
  }
}

async function respond (url: URL, res: Dispatcher.ResponseData, run: Run): Promise<SafeResponse> {
  const { opts } = run
  const layers = encodings(headerValue(res.headers['content-encoding']))
  let partial = false
  if (res.statusCode === 206) {
    if (opts.range === undefined) throw new ProxyError('PROXY_RANGE', 'the origin answered 206 to a request without a range')
    const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(headerValue(res.headers['content-range'])?.trim() ?? '')
    if (m === null || Number(m[1]) !== opts.range.start) throw new ProxyError('PROXY_RANGE', `the origin's Content-Range does not start at byte ${opts.range.start}`)
    if (layers.length > 0) throw new ProxyError('PROXY_RANGE', 'the origin answered a range with an encoded body')
    partial = true
  }
  const offset = partial && opts.range !== undefined ? opts.range.start : 0
  const declared = Number(headerValue(res.headers['content-length']))
  if (layers.length === 0 && Number.isSafeInteger(declared) && offset + declared > opts.maxBodyBytes) {
    throw new ProxyError('PROXY_TOO_LARGE', `the body is ${offset + declared} bytes, above the ${opts.maxBodyBytes} allowed`)
  }
  const headers = responseHeaders(res.headers, layers.length > 0)
  const raw = res.body as unknown as Readable
  raw.on('error', noop)
  const meter = new Transform({ transform (chunk: Buffer, _encoding, callback) { run.poke(); callback(null, chunk) } })
  const streams: Array<Readable | Transform> = [raw, meter]
  // the first byte tells zlib-wrapped from raw deflate; an empty body has nothing to decode (zlib would call it truncated)
  let first: number | undefined
  if (layers.length > 0) {
    run.armIdle()
    first = await peekByte(raw, run)
    run.disarmIdle()
  }
  const decode = first === undefined ? [] : layers
  // the last encoding listed was applied last: decode from the end
  for (let i = decode.length - 1; i >= 0; i--) {
    const layer = decode[i] as Encoding
    // flush after each input chunk so a slowly arriving compressed body still shows progress
    const options = { flush: zlib.constants.Z_SYNC_FLUSH }
    let decoder: Transform
    if (layer === 'gzip') {
      decoder = zlib.createGunzip(options)
    } else if (layer === 'br') {
      decoder = zlib.createBrotliDecompress()
    } else if (i === decode.length - 1) {
      // 'deflate' means zlib-wrapped (RFC 9110), but some servers send it raw: sniff the header byte
      decoder = first !== undefined && (first & 0x0f) === 0x08 ? zlib.createInflate(options) : zlib.createInflateRaw(options)
    } else {
      decoder = zlib.createInflate(options)
    }
    decoder.on('error', (err: Error) => { run.fail(new ProxyError('PROXY_BAD_ENCODING', `the ${layer} body does not decode: ${err.message}`, { cause: err })) })
    streams.push(decoder)
  }
  const out = streams[streams.length - 1] as Readable
  out.on('error', noop)
  run.out = out
  pipeline(streams, noop)
  let count = offset
  const body = async function * (): AsyncGenerator<Uint8Array, void, undefined> {
    const it = out[Symbol.asyncIterator]() as AsyncIterator<Buffer>
    try {
      for (;;) {
        run.armIdle()
        let r: IteratorResult<Buffer>
        try {
          r = await it.next()
        } finally {
          run.disarmIdle()
        }
        if (run.failure !== undefined) throw run.failure
        if (r.done === true) break
        count += r.value.byteLength
        if (count > opts.maxBodyBytes) throw run.fail(new ProxyError('PROXY_TOO_LARGE', `the decoded body exceeds the ${opts.maxBodyBytes} bytes allowed`))
        yield r.value
      }
      if (run.failure !== undefined) throw run.failure
    } catch (err) {
      throw run.failure ?? upstreamError(err)
    } finally {
      run.close()
    }
  }
  return { url: url.href, status: res.statusCode, headers, partial, body: body() }
}

function upstreamError (err: unknown): ProxyError {
  if (err instanceof ProxyError) return err
  const e = err as { name?: string, code?: string, message?: string }
  if (e.name === 'AbortError' || e.code === 'UND_ERR_ABORTED') return new ProxyError('PROXY_ABORTED', 'the fetch was cancelled', { cause: err })
  return new ProxyError('PROXY_UPSTREAM', `the origin fetch failed: ${e.message ?? String(err)}`, { cause: err })
}

function validate (opts: SafeFetchOptions): void {
  const bad = (what: string): ProxyError => new ProxyError('PROXY_BAD_REQUEST', what)
  if (!Number.isSafeInteger(opts.maxBodyBytes) || opts.maxBodyBytes < 0) throw bad('maxBodyBytes must be a non-negative integer')
  if (!(opts.totalTimeoutMs > 0) || !Number.isFinite(opts.totalTimeoutMs)) throw bad('totalTimeoutMs must be positive')
  if (!(opts.idleTimeoutMs > 0) || !Number.isFinite(opts.idleTimeoutMs)) throw bad('idleTimeoutMs must be positive')
  const r = opts.maxRedirects ?? DEFAULT_MAX_REDIRECTS
  if (!Number.isInteger(r) || r < 0 || r > MAX_REDIRECTS_LIMIT) throw bad(`maxRedirects must be an integer from 0 to ${MAX_REDIRECTS_LIMIT}`)
  if (opts.range !== undefined && (!Number.isSafeInteger(opts.range.start) || opts.range.start < 0)) throw bad('range.start must be a non-negative integer')
}

/** GET `raw` through the guard; see the module comment. Errors are ProxyError with a stable code. */
export async function safeFetch (raw: string, opts: SafeFetchOptions): Promise<SafeResponse> {
  validate(opts)
  compile(opts.policy)
  if (opts.signal?.aborted === true) throw new ProxyError('PROXY_ABORTED', 'the fetch was cancelled')
  const run = new Run(opts, opts.lookup ?? systemLookup)
  try {
    let url = checkUrl(raw, opts.policy)
    const headers = requestHeaders(opts.headers, opts.range)
    const maxRedirects = opts.maxRedirects ?? DEFAULT_MAX_REDIRECTS
    for (let hop = 0; ; hop++) {
      run.armIdle()
      // refuse early, with the reason, before undici is involved; the connector checks again on what it dials
      const port = url.port === '' ? defaultPort(url.protocol) : Number(url.port)
      await resolveChecked(bracketless(url.hostname), port, run)
      const res = await run.wait(run.agent.request({ origin: url.origin, path: `${url.pathname}${url.search}`, method: 'GET', headers, signal: run.ac.signal }))
      run.disarmIdle()
      const location = res.headers.location
      if (!REDIRECTS.has(res.statusCode) || location === undefined) return await respond(url, res, run)
      ;(res.body as unknown as Readable).on('error', noop).destroy()
      if (hop >= maxRedirects) throw new ProxyError('PROXY_REDIRECTS', `more than ${maxRedirects} redirects`)
      if (typeof location !== 'string') throw new ProxyError('PROXY_UPSTREAM', 'a redirect with several Location headers')
      let next: URL
      try {
        next = new URL(location, url)
      } catch {
        throw new ProxyError('PROXY_UPSTREAM', `a redirect to an invalid location ${shown(location)}`)
      }
      try {
        url = checkUrl(next.href, opts.policy)
      } catch (err) {
        if (err instanceof ProxyError) throw new ProxyError(err.code, `redirect refused: ${err.message}`, { cause: err })
        throw err
      }
    }
  } catch (err) {
    const failure = run.failure ?? upstreamError(err)
    run.close()
    throw failure
  }
}
