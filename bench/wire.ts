/**
 * wire.bencode_decode_100kb — µs to decode a 100 KB .torrent (500 files, 3,000 pieces) with the
 * strict bencode decoder, median of 7 batches of 500 after a warm-up. (Was a timed unit test, which
 * failed under load; speed lives here.)
 */
import { randomBytes } from 'node:crypto'
import { decode, encode } from '@btt/wire'
import { median, report } from './lib.ts'

export async function benchWire (): Promise<void> {
  const files = Array.from({ length: 500 }, (_, i) => ({ length: i * 1000 + 1, path: ['some folder', `file number ${i}.bin`] }))
  const torrent = encode({ announce: 'http://tracker.example/announce', info: { files, name: 'x', 'piece length': 16384, pieces: randomBytes(20 * 3000) } })
  for (let i = 0; i < 200; i++) decode(torrent)
  const perDecode: number[] = []
  for (let b = 0; b < 7; b++) {
    const t0 = performance.now()
    for (let i = 0; i < 500; i++) decode(torrent)
    perDecode.push((performance.now() - t0) / 500 * 1000)
  }
  report({ bench: 'wire.bencode_decode_100kb', value: median(perDecode), unit: 'µs' })
}
