import { createServer, type Server } from 'node:http'
import { afterEach, describe, expect, it } from 'vitest'
import { announce, bidScrape } from './client.js'

let srv: Server | undefined
afterEach(async () => { await new Promise(resolve => { srv?.close(resolve) ?? resolve(undefined) }); srv = undefined })

async function serve (body: Buffer): Promise<string> {
  srv = createServer((_req, res) => { res.end(body) })
  await new Promise<void>(resolve => { srv?.listen(0, '127.0.0.1', resolve) })
  const a = srv.address()
  return `http://127.0.0.1:${typeof a === 'object' && a !== null ? a.port : 0}`
}

describe('client decoding', () => {
  it('refuses a response over 4 MiB', async () => {
    const url = await serve(Buffer.alloc(5 * 1024 * 1024, 0x30))
    await expect(bidScrape(`${url}/bid-scrape`)).rejects.toMatchObject({ code: 'TRACKER_BAD_RESPONSE', message: 'bad tracker response: too large' })
  })

  it('refuses non-canonical bencode and malformed bids', async () => {
    const url = await serve(Buffer.from('d5:filesli01eee'))
    await expect(bidScrape(`${url}/bid-scrape`)).rejects.toMatchObject({ code: 'TRACKER_BAD_RESPONSE' })
    srv?.close()
    const url2 = await serve(Buffer.from('d8:btt_bidsl3:012e8:completei0e10:incompletei0e8:intervali60e5:peers6:abcdefe'))
    await expect(announce(`${url2}/announce`, { infoHash: Buffer.alloc(20), peerId: Buffer.alloc(20), port: 1 }))
      .rejects.toMatchObject({ code: 'TRACKER_BAD_RESPONSE', message: 'bad tracker response: btt_bids' })
  })
})
