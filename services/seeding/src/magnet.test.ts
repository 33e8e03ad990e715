import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { SeedingError } from './errors.js'
import { formatMagnet, parseMagnet } from './magnet.js'
import { errorCode } from './test-support/errors.js'

const HEX = 'c12fe1c06bba254a9dc9f519b335aa7c1367a88a'
// the same 20 bytes in RFC 4648 base32
const B32 = Buffer.from(HEX, 'hex').reduce((acc, byte) => acc + byte.toString(2).padStart(8, '0'), '')
  .match(/.{5}/g)!.map(bits => 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'[parseInt(bits, 2)]).join('')

const code = errorCode

describe('parseMagnet', () => {
  it('reads the infohash, name, trackers and peers', () => {
    const m = parseMagnet(`magnet:?xt=urn:btih:${HEX.toUpperCase()}&dn=Big+Buck%20Bunny&tr=udp%3A%2F%2Ftracker.example%3A1337&tr=http://t2.example/announce&x.pe=10.0.0.1:6881&x.pe=[2001:db8::1]:51413&x.pe=peer.example:7000`)
    expect(m).toEqual({
      infoHash: HEX,
      name: 'Big Buck Bunny',
      trackers: ['udp://tracker.example:1337', 'http://t2.example/announce'],
      peers: [{ host: '10.0.0.1', port: 6881 }, { host: '2001:db8::1', port: 51413 }, { host: 'peer.example', port: 7000 }]
    })
  })

  it('accepts base32 infohashes in either case', () => {
    expect(B32).toHaveLength(32)
    expect(parseMagnet(`magnet:?xt=urn:btih:${B32}`).infoHash).toBe(HEX)
    expect(parseMagnet(`magnet:?xt=urn:btih:${B32.toLowerCase()}`).infoHash).toBe(HEX)
  })

  it('keeps only http(s) and udp trackers, deduplicated and capped', () => {
    const trs = ['wss://t.example', 'http://a.example/', 'http://a.example/', 'udp://b.example:1', 'garbage', 'https://c.example/']
    const m = parseMagnet(`magnet:?xt=urn:btih:${HEX}` + trs.map(t => `&tr=${encodeURIComponent(t)}`).join(''))
    expect(m.trackers).toEqual(['http://a.example/', 'udp://b.example:1', 'https://c.example/'])
    const many = Array.from({ length: 100 }, (_, i) => `&tr=http://t${i}.example/`).join('')
    expect(parseMagnet(`magnet:?xt=urn:btih:${HEX}${many}`).trackers).toHaveLength(64)
    // numbered keys some clients write
    expect(parseMagnet(`magnet:?xt.1=urn:btih:${HEX}&tr.1=http://n.example/`).trackers).toEqual(['http://n.example/'])
  })

  it('drops malformed peers', () => {
    const peers = ['1.2.3.4', '1.2.3.4:0', '1.2.3.4:65536', '1.2.3.4:01', '[::1]', '[zz]:1', 'bad host:1', '::1:80', '5.6.7.8:80', '5.6.7.8:80']
    const m = parseMagnet(`magnet:?xt=urn:btih:${HEX}` + peers.map(p => `&x.pe=${encodeURIComponent(p)}`).join(''))
    expect(m.peers).toEqual([{ host: '5.6.7.8', port: 80 }])
  })

  it('has no name when dn is absent or empty', () => {
    expect('name' in parseMagnet(`magnet:?xt=urn:btih:${HEX}`)).toBe(false)
    expect('name' in parseMagnet(`magnet:?xt=urn:btih:${HEX}&dn=`)).toBe(false)
  })

  it.each([
    ['http://example.com/?xt=urn:btih:' + HEX, 'MAGNET_SYNTAX'],
    ['magnet:xt=urn:btih:' + HEX, 'MAGNET_SYNTAX'],
    ['magnet:?dn=x', 'MAGNET_NO_INFOHASH'],
    ['magnet:?xt=urn:btih:' + HEX.slice(1), 'MAGNET_BAD_INFOHASH'],
    ['magnet:?xt=urn:btih:' + HEX + '0', 'MAGNET_BAD_INFOHASH'],
    ['magnet:?xt=urn:btih:' + 'g'.repeat(40), 'MAGNET_BAD_INFOHASH'],
    ['magnet:?xt=urn:btih:' + '1'.repeat(32), 'MAGNET_BAD_INFOHASH'],
    ['magnet:?xt=urn:btmh:1220' + 'a'.repeat(64), 'MAGNET_UNSUPPORTED'],
    [`magnet:?xt=urn:btih:${HEX}&xt=urn:btih:${'0'.repeat(40)}`, 'MAGNET_CONFLICT'],
    [`magnet:?xt=urn:btih:${HEX}&dn=%E0%A4%A`, 'MAGNET_SYNTAX'],
    [`magnet:?xt=urn:btih:${HEX}&tr=%zz`, 'MAGNET_SYNTAX'],
    [`magnet:?xt=urn:btih:${HEX}&dn=${'x'.repeat(16 * 1024)}`, 'MAGNET_TOO_LARGE']
  ])('refuses %s', (uri, expected) => {
    expect(code(() => parseMagnet(uri))).toBe(expected)
  })

  it('refuses non-strings with a coded error', () => {
    expect(code(() => parseMagnet(5 as never))).toBe('MAGNET_INPUT')
  })

  it('never throws anything but a MAGNET error', () => {
    const part = fc.oneof(
      fc.constantFrom('xt=urn:btih:', `xt=urn:btih:${HEX}`, `xt=urn:btih:${B32}`, 'tr=', 'dn=', 'x.pe=', '&', '=', '%', '%zz', '[', ']', ':'),
      fc.string({ unit: 'binary', maxLength: 12 })
    )
    fc.assert(fc.property(fc.array(part, { maxLength: 12 }), parts => {
      const uri = 'magnet:?' + parts.join('')
      try {
        const m = parseMagnet(uri)
        expect(m.infoHash).toMatch(/^[0-9a-f]{40}$/)
      } catch (err) {
        expect(err).toBeInstanceOf(SeedingError)
        expect((err as SeedingError).code).toMatch(/^MAGNET_/)
      }
    }), { seed: 7, numRuns: 5000 })
  })
})

describe('formatMagnet', () => {
  it('round-trips through parseMagnet', () => {
    const uri = formatMagnet({ infoHash: HEX.toUpperCase(), name: 'a & b = c?+ é', trackers: ['udp://t.example:1/announce?x=1&y=2', 'http://t2.example/'] })
    expect(uri.startsWith(`magnet:?xt=urn:btih:${HEX}&dn=`)).toBe(true)
    expect(parseMagnet(uri)).toEqual({ infoHash: HEX, name: 'a & b = c?+ é', trackers: ['udp://t.example:1/announce?x=1&y=2', 'http://t2.example/'], peers: [] })
    expect(formatMagnet({ infoHash: HEX })).toBe(`magnet:?xt=urn:btih:${HEX}`)
  })

  it('survives lone surrogates and refuses bad infohashes', () => {
    expect(parseMagnet(formatMagnet({ infoHash: HEX, name: 'x\ud800' })).name).toBe('x\ufffd')
    expect(code(() => formatMagnet({ infoHash: 'xyz' }))).toBe('MAGNET_BAD_INFOHASH')
  })
})
