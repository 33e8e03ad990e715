import net from 'node:net'
import tls from 'node:tls'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ProxyError } from './errors.js'
import { checkUrl, isForbiddenAddress, safeFetch, type GuardPolicy, type SafeFetchOptions } from './guard.js'
import { pattern, startCanary, startOrigin, TEST_TLS, type Canary, type Origin } from './test-support/origins.js'

const MiB = 1024 * 1024

/**
 * Name resolution for the tests: a fixed table; any other name fails, so no test ever asks the
 * real resolver. Public answers (93.184.216.34, 8.8.4.4) are only for names every test refuses
 * before dialling, so no connection leaves the machine.
 */
const calls = new Map<string, number>()
const table: Record<string, (n: number) => string[]> = {
  'metadata.google.internal': () => ['169.254.169.254'],
  'metadata.example.net': () => ['169.254.169.254'],
  'canary.example.com': () => ['127.0.0.1'],
  'canary2.example.com': () => ['127.0.0.2'],
  'trailing.example.com': () => ['127.0.0.1'],
  'mixed.example.com': () => ['93.184.216.34', '127.0.0.1'],
  'mapped.example.com': () => ['::ffff:127.0.0.1'],
  'v6loop.example.com': () => ['::1'],
  'private.example.com': () => ['10.1.2.3'],
  'cgnat.example.com': () => ['100.100.100.100'],
  'nat64.example.com': () => ['64:ff9b::a9fe:a9fe'],
  'opdeny.example.net': () => ['8.8.4.4'],
  // DNS rebinding: public for the first question, loopback after
  'rebind.example.com': n => n === 1 ? ['93.184.216.34'] : ['127.0.0.1'],
  'origin.example.com': () => ['127.0.0.1'],
  [TEST_TLS.name]: () => ['127.0.0.1']
}
async function lookup (host: string): Promise<Array<{ address: string, family: 4 | 6 }>> {
  const n = (calls.get(host) ?? 0) + 1
  calls.set(host, n)
  const answer = table[host]
  if (answer === undefined) throw Object.assign(new Error(`test lookup: unknown name ${host}`), { code: 'ENOTFOUND' })
  return answer(n).map(address => ({ address, family: net.isIPv6(address) ? 6 : 4 }))
}

function policy (over: Partial<GuardPolicy> = {}): GuardPolicy {
  return { allowPorts: [], allowDomains: [], denyDomains: [], allowCidrs: [], denyCidrs: [], ...over }
}

function options (p: GuardPolicy, over: Partial<SafeFetchOptions> = {}): SafeFetchOptions {
  return { policy: p, maxBodyBytes: 64 * MiB, totalTimeoutMs: 10_000, idleTimeoutMs: 5_000, lookup, ...over }
}

async function readAll (body: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = []
  for await (const c of body) parts.push(c)
  return Buffer.concat(parts)
}

/** The ProxyError a promise rejects with (fails the test if it resolves or throws something else). */
async function refusal (p: Promise<unknown>): Promise<ProxyError> {
  try {
    await p
  } catch (err) {
    expect(err).toBeInstanceOf(ProxyError)
    return err as ProxyError
  }
  throw new Error('expected a refusal, the fetch succeeded')
}

let canary: Canary
let origin: Origin
let O: number
let C: number
/** reaches the test origin only: 127.0.0.1 on its port (allowPorts), 127.0.0.1/32 (allowCidrs) */
let originPolicy: GuardPolicy

beforeAll(async () => {
  canary = await startCanary()
  origin = await startOrigin('127.0.0.1')
  C = canary.port
  O = origin.port
  originPolicy = policy({ allowPorts: [O], allowCidrs: ['127.0.0.1/32'] })
})

afterAll(async () => {
  await canary.close()
  await origin.close()
})

describe('isForbiddenAddress', () => {
  const p = policy()
  it.each([
    '127.0.0.1', '127.255.255.254', '::1', '0.0.0.0', '::', '10.0.0.1', '172.16.0.1', '172.31.255.255', '192.168.0.1',
    '100.64.0.1', '169.254.169.254', 'fe80::1', 'fc00::1', 'fd00:ec2::254', '224.0.0.1', 'ff02::1', '255.255.255.255',
    '192.0.2.1', '198.51.100.1', '203.0.113.1', '198.18.0.1', '240.0.0.1', '2001:db8::1', '2001:2::1',
    '::ffff:127.0.0.1', '::ffff:10.0.0.1', '::ffff:0:7f00:1', '64:ff9b::7f00:1', '64:ff9b::a9fe:a9fe', '64:ff9b:1::1',
    '2002:7f00:1::1', '2002:808:808::1', '2001:0:4136:e378:8000:63bf:80ff:fffe', '::7f00:1', '100::1', 'not-an-ip'
  ])('refuses %s', a => {
    expect(isForbiddenAddress(a, p)).toBeTypeOf('string')
  })

  it.each(['93.184.216.34', '8.8.8.8', '1.1.1.1', '2606:4700::1111', '::ffff:8.8.8.8', '64:ff9b::808:808'])('allows the public %s', a => {
    expect(isForbiddenAddress(a, p)).toBeUndefined()
  })

  it('names what a NAT64 or mapped address embeds', () => {
    expect(isForbiddenAddress('64:ff9b::a00:1', p)).toMatch(/embeds 10\.0\.0\.1.*private/)
  })

  it('applies allowCidrs, and denyCidrs and ownAddresses over them', () => {
    const q = policy({ allowCidrs: ['127.0.0.0/8', '10.0.0.0/8'], denyCidrs: ['10.9.0.0/16', '8.8.8.0/24'], ownAddresses: [{ host: '127.0.0.1', port: 4001 }, { host: '10.1.1.1' }] })
    expect(isForbiddenAddress('127.0.0.1', q, 8080)).toBeUndefined()
    expect(isForbiddenAddress('::ffff:127.0.0.1', q, 8080)).toBeUndefined()
    expect(isForbiddenAddress('127.0.0.1', q, 4001)).toMatch(/own/)
    // a listener port is refused on every loopback address, not just the one listed
    expect(isForbiddenAddress('127.0.0.9', q, 4001)).toMatch(/own/)
    expect(isForbiddenAddress('::ffff:127.0.0.1', q, 4001)).toMatch(/own/)
    expect(isForbiddenAddress('127.0.0.1', q)).toMatch(/own/)
    expect(isForbiddenAddress('10.1.1.1', q, 80)).toMatch(/own/)
    expect(isForbiddenAddress('10.2.0.1', q, 80)).toBeUndefined()
    expect(isForbiddenAddress('10.9.1.1', q, 80)).toMatch(/denied range 10\.9\.0\.0\/16/)
    expect(isForbiddenAddress('8.8.8.8', q, 80)).toMatch(/denied range/)
    expect(isForbiddenAddress('64:ff9b::808:808', q, 80)).toMatch(/denied range/)
    expect(isForbiddenAddress('::1', q, 80)).toMatch(/loopback/)
  })
})

describe('checkUrl', () => {
  it('returns the parsed URL of an acceptable one', () => {
    expect(checkUrl('https://Example.COM/a?b=c#d', policy()).href).toBe('https://example.com/a?b=c#d')
    expect(checkUrl('http://93.184.216.34/', policy()).hostname).toBe('93.184.216.34')
  })

  it('applies the port and domain lists', () => {
    expect(() => checkUrl('http://example.com:8080/', policy())).toThrow(/port 8080/)
    expect(checkUrl('http://example.com:8080/', policy({ allowPorts: [8080] })).port).toBe('8080')
    expect(() => checkUrl('http://example.com/', policy({ allowPorts: [8080] }))).toThrow(/port 80/)
    const lists = policy({ allowDomains: ['example.com'], denyDomains: ['bad.example.com'] })
    expect(checkUrl('http://a.b.example.com/', lists).hostname).toBe('a.b.example.com')
    expect(checkUrl('http://example.com./', lists).hostname).toBe('example.com.')
    expect(() => checkUrl('http://notexample.com/', lists)).toThrow(/not in the allowed domains/)
    expect(() => checkUrl('http://x.bad.example.com./', lists)).toThrow(/denied/)
    expect(() => checkUrl('http://93.184.216.34/', lists)).toThrow(/not in the allowed domains/)
  })

  it('refuses with PROXY_FORBIDDEN_URL', () => {
    try {
      checkUrl('http://127.0.0.1/', policy())
      expect.unreachable()
    } catch (err) {
      expect((err as ProxyError).code).toBe('PROXY_FORBIDDEN_URL')
    }
  })
})

/** Every one of these must be refused without a connection to the canary. */
/** `{C}` is the canary's port. */
const HOSTILE = [
  'http://127.0.0.1:{C}/',
  'http://127.0.0.2:{C}/',
  'http://localhost:{C}/',
  'http://localhost.:{C}/',
  'http://sub.localhost:{C}/',
  'http://2130706433:{C}/',
  'http://0177.0.0.1:{C}/',
  'http://0x7f.1:{C}/',
  'http://0x7f000001:{C}/',
  'http://127.1:{C}/',
  'http://127.000.000.001:{C}/',
  'http://127.0.0.1.:{C}/',
  'http://%31%32%37.0.0.1:{C}/',
  'http://0:{C}/',
  'http://0.0.0.0:{C}/',
  'http://[::]:{C}/',
  'http://[::1]:{C}/',
  'http://[0:0:0:0:0:0:0:1]:{C}/',
  'http://[::ffff:127.0.0.1]:{C}/',
  'http://[0:0:0:0:0:ffff:7f00:1]:{C}/',
  'http://[::ffff:0:127.0.0.1]:{C}/',
  'http://[::127.0.0.1]:{C}/',
  'http://[64:ff9b::127.0.0.1]:{C}/',
  'http://[64:ff9b::10.0.0.1]:{C}/',
  'http://[2002:7f00:1::1]:{C}/',
  'http://[2001:0:4136:e378:8000:63bf:80ff:fffe]:{C}/',
  'http://10.0.0.1/',
  'http://172.16.0.1/',
  'http://192.168.1.1/',
  'http://100.64.0.1/',
  'http://169.254.169.254/latest/meta-data/',
  'http://[::ffff:169.254.169.254]/latest/meta-data/',
  'http://[fd00:ec2::254]/latest/meta-data/',
  'http://metadata.google.internal/computeMetadata/v1/',
  'http://metadata.example.net/latest/meta-data/',
  'http://224.0.0.1/',
  'http://255.255.255.255/',
  'http://[fe80::1]/',
  'http://[fc00::1]/',
  'http://[ff02::1]/',
  'http://192.0.2.1/',
  'http://198.18.0.1/',
  'http://240.0.0.1/',
  'http://[2001:db8::1]/',
  'http://user:pass@example.com/',
  'http://user@example.com/',
  'http://user@127.0.0.1:{C}/',
  // a naive parser sees host example.com; the WHATWG parser (used for the fetch) sees 127.0.0.1
  'http://127.0.0.1:{C}\\@example.com/',
  'data:text/plain,hi',
  'file:///etc/passwd',
  'ftp://example.com/pub/',
  'gopher://127.0.0.1:{C}/_GET%20/',
  'javascript:alert(1)',
  'ws://127.0.0.1:{C}/',
  'http://canary.example.com:{C}/',
  'http://canary2.example.com:{C}/',
  'http://trailing.example.com.:{C}/',
  'http://mixed.example.com:{C}/',
  'http://mapped.example.com:{C}/',
  'http://v6loop.example.com:{C}/',
  'http://private.example.com/',
  'http://cgnat.example.com/',
  'http://nat64.example.com/',
  'http://wiki:{C}/',
  'http://opdeny.example.net/',
  'http://denied.example.org/',
  'http://127.0.0.1:{C}\t/',
  '  http://127.0.0.1:{C}/'
]

describe('hostile URLs', () => {
  // the canary port is allowed, so the port rule is not what stops them
  const hostilePolicy = (): GuardPolicy => policy({ allowPorts: [80, 443, C], denyCidrs: ['8.8.4.0/24'], denyDomains: ['denied.example.org'] })

  it('covers at least 40 URLs', () => {
    expect(HOSTILE.length).toBeGreaterThanOrEqual(40)
  })

  it.each(HOSTILE)('refuses %s', async template => {
    const url = template.replace('{C}', String(C))
    const err = await refusal(safeFetch(url, options(hostilePolicy())))
    expect(['PROXY_FORBIDDEN', 'PROXY_FORBIDDEN_URL'], `${url}: ${err.code} ${err.message}`).toContain(err.code)
  })

  it('refuses DNS rebinding at connect time, without dialling the first (public) answer', async () => {
    calls.delete('rebind.example.com')
    const err = await refusal(safeFetch(`http://rebind.example.com:${C}/`, options(hostilePolicy())))
    expect(err.code).toBe('PROXY_FORBIDDEN')
    expect(err.message).toMatch(/127\.0\.0\.1/)
    // the first question (public answer, accepted) was the early check; the second was the connector's
    expect(calls.get('rebind.example.com')).toBe(2)
  })

  it('left the canary untouched', () => {
    expect(canary.log).toEqual([])
    expect(canary.hits()).toBe(0)
  })
})

describe('redirects', () => {
  // the origin is allowed by a test-only CIDR; the canary listens on 127.0.0.1 too, but its port is
  // the node's own (ownAddresses), and on 127.0.0.2 and ::1, which the CIDR does not cover
  const redirectPolicy = (): GuardPolicy => policy({ allowPorts: [O, C], allowCidrs: ['127.0.0.1/32'], ownAddresses: [{ host: '127.0.0.1', port: C }] })
  /** `{C}` the canary's port, `{O}` the origin's */
  const TARGETS = [
    'http://127.1:{C}/',
    'http://0x7f000001:{C}/',
    'http://2130706433:{C}/',
    'http://[::ffff:127.0.0.1]:{C}/',
    'http://127.0.0.1:{C}/',
    'http://127.0.0.2:{C}/',
    'http://[::1]:{C}/',
    'http://localhost:{C}/',
    'http://canary.example.com:{C}/',
    'http://canary2.example.com:{C}/',
    'http://169.254.169.254/latest/meta-data/',
    'http://user@127.0.0.1:{O}/file/1',
    'file:///etc/passwd',
    'http://127.0.0.1:1/'
  ]

  it.each(TARGETS)('follows the allowed first hop and refuses a redirect to %s', async template => {
    const target = template.replace('{C}', String(C)).replace('{O}', String(O))
    const before = origin.hits('/redirect')
    const err = await refusal(safeFetch(`${origin.base}/redirect?to=${encodeURIComponent(target)}`, options(redirectPolicy())))
    expect(['PROXY_FORBIDDEN', 'PROXY_FORBIDDEN_URL'], `${target}: ${err.code} ${err.message}`).toContain(err.code)
    expect(err.message).toMatch(/redirect refused|own|loopback/)
    expect(origin.hits('/redirect')).toBe(before + 1)
  })

  it('refuses a refused target behind two allowed hops', async () => {
    const second = `${origin.base}/redirect?status=307&to=${encodeURIComponent(`http://127.1:${C}/`)}`
    const err = await refusal(safeFetch(`${origin.base}/redirect?status=301&to=${encodeURIComponent(second)}`, options(redirectPolicy())))
    expect(err.code).toBe('PROXY_FORBIDDEN_URL')
  })

  it('control: the same redirect to a listener that is not the node\'s own is followed', async () => {
    // shows that the refusals above come from re-checking the second hop, not from a broken redirect
    const control = await startCanary(['127.0.0.1'])
    try {
      const p = policy({ ...redirectPolicy(), allowPorts: [O, C, control.port] })
      const res = await safeFetch(`${origin.base}/redirect?to=${encodeURIComponent(`http://0x7f000001:${control.port}/x`)}`, options(p))
      expect((await readAll(res.body)).toString()).toBe('canary')
      expect(res.url).toBe(`http://127.0.0.1:${control.port}/x`)
      expect(control.hits()).toBe(1)
    } finally {
      await control.close()
    }
  })

  it('follows 5 redirects and refuses a 6th', async () => {
    const ok = await safeFetch(`${origin.base}/chain/5`, options(originPolicy))
    expect((await readAll(ok.body)).toString()).toBe('end')
    expect(ok.url).toBe(`${origin.base}/chain/0`)
    const err = await refusal(safeFetch(`${origin.base}/chain/6`, options(originPolicy)))
    expect(err.code).toBe('PROXY_REDIRECTS')
    const none = await refusal(safeFetch(`${origin.base}/chain/1`, options(originPolicy, { maxRedirects: 0 })))
    expect(none.code).toBe('PROXY_REDIRECTS')
  })

  it('keeps the (stripped) request headers across hops', async () => {
    const res = await safeFetch(`${origin.base}/redirect?to=/echo`, options(originPolicy, { headers: { 'X-Keep': 'yes', Cookie: 'a=b' } }))
    const echoed = JSON.parse((await readAll(res.body)).toString()) as Record<string, string>
    expect(echoed['x-keep']).toBe('yes')
    expect(echoed.cookie).toBeUndefined()
  })

  it('left the canary untouched', () => {
    expect(canary.log).toEqual([])
    expect(canary.hits()).toBe(0)
  })
})

describe('bodies', () => {
  it('returns a 5 MiB body byte for byte', async () => {
    const res = await safeFetch(`${origin.base}/file/${5 * MiB}`, options(originPolicy, { maxBodyBytes: 8 * MiB }))
    expect(res.status).toBe(200)
    expect(res.partial).toBe(false)
    expect(res.headers['content-length']).toBe(String(5 * MiB))
    expect((await readAll(res.body)).equals(pattern(5 * MiB))).toBe(true)
  })

  it('decodes gzip, deflate (zlib and raw) and br, and drops the encoded length', async () => {
    for (const enc of ['gzip', 'deflate', 'deflate-raw', 'br']) {
      const res = await safeFetch(`${origin.base}/${enc}/300000`, options(originPolicy))
      expect((await readAll(res.body)).equals(pattern(300000)), enc).toBe(true)
      expect(res.headers['content-encoding']).toBeUndefined()
      expect(res.headers['content-length']).toBeUndefined()
    }
  })

  it('answers an empty encoded body as empty, and refuses corrupt or unknown encodings', async () => {
    const empty = await safeFetch(`${origin.base}/raw?ce=gzip`, options(originPolicy))
    expect((await readAll(empty.body)).length).toBe(0)
    const corrupt = await safeFetch(`${origin.base}/raw?ce=gzip&hex=1f8b08000000000000ff${'ab'.repeat(64)}`, options(originPolicy))
    expect((await refusal(readAll(corrupt.body))).code).toBe('PROXY_BAD_ENCODING')
    expect((await refusal(safeFetch(`${origin.base}/raw?ce=zstd&hex=00`, options(originPolicy)))).code).toBe('PROXY_BAD_ENCODING')
    expect((await refusal(safeFetch(`${origin.base}/raw?ce=gzip,gzip,gzip&hex=00`, options(originPolicy)))).code).toBe('PROXY_BAD_ENCODING')
  })

  it('refuses a declared length over the cap before reading the body', async () => {
    const err = await refusal(safeFetch(`${origin.base}/file/${2 * MiB}`, options(originPolicy, { maxBodyBytes: MiB })))
    expect(err.code).toBe('PROXY_TOO_LARGE')
  })

  it('refuses a 50 KB gzip bomb (50 MiB decoded) at 1 MiB', async () => {
    const res = await safeFetch(`${origin.base}/bomb`, options(originPolicy, { maxBodyBytes: MiB }))
    let got = 0
    const err = await refusal((async () => { for await (const c of res.body) got += c.byteLength })())
    expect(err.code).toBe('PROXY_TOO_LARGE')
    expect(got).toBeLessThanOrEqual(MiB)
  })

  it('stops reading a bomb at the cap instead of decoding all of it', async () => {
    // 1000 members of 50 MiB: 50 MB on the wire, 50 GiB decoded (minutes of CPU if decoded)
    const started = Date.now()
    const res = await safeFetch(`${origin.base}/bigbomb?members=1000`, options(originPolicy, { maxBodyBytes: MiB }))
    let got = 0
    const err = await refusal((async () => { for await (const c of res.body) got += c.byteLength })())
    expect(err.code).toBe('PROXY_TOO_LARGE')
    expect(got).toBeLessThanOrEqual(MiB)
    expect(Date.now() - started).toBeLessThan(3000)
    await new Promise(resolve => setTimeout(resolve, 100))
    expect(origin.bombAborted()).toBe(true)
    // the origin was stopped by back-pressure long before it sent its 50 MB
    expect(origin.bombWritten()).toBeLessThan(20 * MiB)
  })

  it('ends a drip-fed body at the total deadline (1500 ± 100 ms)', async () => {
    const started = Date.now()
    let got = 0
    const err = await refusal((async () => {
      const res = await safeFetch(`${origin.base}/drip`, options(originPolicy, { totalTimeoutMs: 1500, idleTimeoutMs: 1000 }))
      for await (const c of res.body) got += c.byteLength
    })())
    const elapsed = Date.now() - started
    expect(err.code).toBe('PROXY_DEADLINE')
    expect(got).toBeGreaterThan(10)
    expect(elapsed).toBeGreaterThanOrEqual(1400)
    expect(elapsed).toBeLessThanOrEqual(1600)
  })

  it('ends a stalled body at the idle timeout', async () => {
    const res = await safeFetch(`${origin.base}/stall`, options(originPolicy, { idleTimeoutMs: 300 }))
    const started = Date.now()
    const err = await refusal(readAll(res.body))
    const elapsed = Date.now() - started
    expect(err.code).toBe('PROXY_IDLE')
    expect(elapsed).toBeGreaterThanOrEqual(250)
    expect(elapsed).toBeLessThan(800)
  })

  it('ends a fetch whose headers never come at the idle timeout', async () => {
    const started = Date.now()
    const err = await refusal(safeFetch(`${origin.base}/stall-headers`, options(originPolicy, { idleTimeoutMs: 300 })))
    expect(err.code).toBe('PROXY_IDLE')
    expect(Date.now() - started).toBeLessThan(800)
  })

  it('stops when the caller aborts', async () => {
    const ac = new AbortController()
    const res = await safeFetch(`${origin.base}/drip`, options(originPolicy, { signal: ac.signal }))
    setTimeout(() => { ac.abort() }, 200)
    const err = await refusal(readAll(res.body))
    expect(err.code).toBe('PROXY_ABORTED')
  })
})

describe('headers and ranges', () => {
  it('strips hop-by-hop, credential and self-set request headers', async () => {
    const res = await safeFetch(`${origin.base}/echo`, options(originPolicy, {
      headers: {
        Host: 'evil.example', Connection: 'close, X-Listed', 'X-Listed': 'hop', 'Keep-Alive': 'timeout=1', 'Proxy-Authorization': 'Basic eA==',
        'Proxy-Connection': 'keep-alive', TE: 'trailers', Trailer: 'X-T', 'Transfer-Encoding': 'chunked', Upgrade: 'websocket',
        Cookie: 'session=1', Authorization: 'Bearer t', 'Accept-Encoding': 'zstd', Range: 'bytes=0-0', 'X-Forwarded-For': '10.0.0.1',
        'User-Agent': 'tester/1', 'X-Keep': 'kept'
      }
    }))
    const echoed = JSON.parse((await readAll(res.body)).toString()) as Record<string, string>
    // undici sets its own Connection header; the requester's is gone
    expect(echoed.connection ?? '').not.toMatch(/close|x-listed/i)
    for (const h of ['x-listed', 'keep-alive', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'cookie', 'authorization', 'range', 'x-forwarded-for']) {
      expect(echoed[h], h).toBeUndefined()
    }
    expect(echoed.host).toBe(`127.0.0.1:${O}`)
    expect(echoed['accept-encoding']).toBe('gzip, deflate, br')
    expect(echoed['user-agent']).toBe('tester/1')
    expect(echoed['x-keep']).toBe('kept')
    // and the response's hop-by-hop headers, including those its Connection header names
    expect(res.headers['x-kept']).toBe('yes')
    expect(res.headers['x-hop']).toBeUndefined()
    expect(res.headers['keep-alive']).toBeUndefined()
    expect(res.headers.connection).toBeUndefined()
  })

  it('refuses malformed request headers', async () => {
    const err = await refusal(safeFetch(`${origin.base}/echo`, options(originPolicy, { headers: { 'X-Bad': 'a\r\nHost: evil' } })))
    expect(err.code).toBe('PROXY_BAD_REQUEST')
  })

  it('sends Range: bytes=N- and reports a 206', async () => {
    const echo = await safeFetch(`${origin.base}/echo`, options(originPolicy, { range: { start: 400 } }))
    const echoed = JSON.parse((await readAll(echo.body)).toString()) as Record<string, string>
    expect(echoed.range).toBe('bytes=400-')
    expect(echoed['accept-encoding']).toBe('identity')
    expect(echo.partial).toBe(false)

    const res = await safeFetch(`${origin.base}/file/1000`, options(originPolicy, { range: { start: 400 } }))
    expect(res.status).toBe(206)
    expect(res.partial).toBe(true)
    expect((await readAll(res.body)).equals(pattern(1000).subarray(400))).toBe(true)
  })

  it('reports an ignored range (200, whole body)', async () => {
    const res = await safeFetch(`${origin.base}/file/1000?norange`, options(originPolicy, { range: { start: 400 } }))
    expect(res.status).toBe(200)
    expect(res.partial).toBe(false)
    expect((await readAll(res.body)).equals(pattern(1000))).toBe(true)
  })

  it('counts a partial body from the range start against the cap', async () => {
    const err = await refusal(safeFetch(`${origin.base}/file/2000`, options(originPolicy, { range: { start: 1500 }, maxBodyBytes: 1999 })))
    expect(err.code).toBe('PROXY_TOO_LARGE')
  })
})

describe('TLS', () => {
  let tlsOrigin: Origin
  const defaults = tls.getCACertificates('default')

  beforeAll(async () => {
    tlsOrigin = await startOrigin('127.0.0.1', TEST_TLS)
    tls.setDefaultCACertificates([...defaults, TEST_TLS.cert])
  })
  afterAll(async () => {
    tls.setDefaultCACertificates(defaults)
    await tlsOrigin.close()
  })

  it('dials the checked IP and sends the host name as SNI', async () => {
    const p = policy({ allowPorts: [tlsOrigin.port], allowCidrs: ['127.0.0.1/32'] })
    const res = await safeFetch(`https://${TEST_TLS.name}:${tlsOrigin.port}/file/1000`, options(p))
    expect((await readAll(res.body)).equals(pattern(1000))).toBe(true)
    expect(tlsOrigin.servername()).toBe(TEST_TLS.name)
  })

  it('verifies the certificate against the URL host', async () => {
    const p = policy({ allowPorts: [tlsOrigin.port], allowCidrs: ['127.0.0.1/32'] })
    const err = await refusal(safeFetch(`https://127.0.0.1:${tlsOrigin.port}/file/10`, options(p)))
    expect(err.code).toBe('PROXY_UPSTREAM')
    expect(String((err.cause as { code?: string } | undefined)?.code)).toMatch(/ALTNAME|CERT/)
  })
})

describe('the canary', () => {
  it('counts a connection (so zero hits above means something)', async () => {
    const probe = await startCanary(['127.0.0.1'])
    try {
      const s = net.connect(probe.port, '127.0.0.1')
      await new Promise(resolve => s.once('connect', resolve))
      s.destroy()
      await new Promise(resolve => setTimeout(resolve, 50))
      expect(probe.hits()).toBe(1)
    } finally {
      await probe.close()
    }
  })

  it('was never reached by any test in this file', () => {
    expect(canary.log).toEqual([])
    expect(canary.hits()).toBe(0)
  })
})
