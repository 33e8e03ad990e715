import { createHash } from 'node:crypto'

/**
 * One bit per chunk of a torrent, set when we upload that chunk; cleared all at once when every
 * bit is set (whitepaper "Reserve prices"), so a challenge never names a chunk we served recently.
 */
export class UploadBitmap {
  private readonly bits: Uint8Array
  private set_ = 0

  constructor (readonly chunks: number) {
    if (!Number.isInteger(chunks) || chunks <= 0) throw new RangeError('chunks must be a positive integer')
    this.bits = new Uint8Array(Math.ceil(chunks / 8))
  }

  get count (): number { return this.set_ }

  has (chunk: number): boolean {
    return (this.bits[chunk >> 3]! & (0x80 >> (chunk & 7))) !== 0
  }

  mark (chunk: number): void {
    if (!Number.isInteger(chunk) || chunk < 0 || chunk >= this.chunks) throw new RangeError(`chunk ${chunk} out of range`)
    if (this.has(chunk)) return
    this.bits[chunk >> 3]! |= 0x80 >> (chunk & 7)
    if (++this.set_ === this.chunks) {
      this.bits.fill(0)
      this.set_ = 0
    }
  }
}

/**
 * The possession challenge: a chunk chosen by a PRNG seeded with (secret XOR infohash), drawing
 * again while the chunk's bit is set. The PRNG is SHA-256 in counter mode with rejection sampling
 * (uniform, reproducible by anyone who knows the seed; unpredictable to peers, who do not know the
 * secret). `draw` numbers successive challenges of the same torrent.
 */
export function selectChallenge (secret: Uint8Array, infoHash: Uint8Array, bitmap: UploadBitmap, draw = 0): number {
  if (secret.length < 20) throw new RangeError('the secret must be at least 20 bytes')
  if (infoHash.length !== 20) throw new RangeError('the infohash must be 20 bytes')
  const seed = Uint8Array.from(secret)
  for (let i = 0; i < 20; i++) seed[i]! ^= infoHash[i]!
  const n = BigInt(bitmap.chunks)
  const space = 1n << 64n
  const limit = space - (space % n)
  for (let counter = 0; ; counter++) {
    const block = Buffer.alloc(8)
    block.writeUInt32BE(draw >>> 0, 0)
    block.writeUInt32BE(counter, 4)
    const x = createHash('sha256').update(seed).update(block).digest().readBigUInt64BE(0)
    if (x >= limit) continue
    const chunk = Number(x % n)
    if (!bitmap.has(chunk)) return chunk
  }
}
