import type { Stream } from '@libp2p/interface'
import { Uint8ArrayList } from 'uint8arraylist'

/** Frame type of a JSON control message (every protocol built on Framed uses it). */
export const FRAME_JSON = 1

/** One frame: `u32be length ‖ u8 type ‖ payload` on the wire (length counts type + payload). */
export interface Frame { type: number, payload: Uint8Array }

/**
 * Frames over a libp2p stream: reads with a cap per frame type, writes with backpressure
 * (`send` returning false means wait for drain: yamux's write buffer is otherwise unbounded).
 */
export class Framed {
  private readonly iterator: AsyncIterator<{ subarray(): Uint8Array } | Uint8Array>
  private chunks: Uint8Array[] = []
  private buffered = 0

  constructor (readonly stream: Stream, private readonly caps: Partial<Record<number, number>>, private readonly fail: (message: string) => Error) {
    this.iterator = (stream as unknown as AsyncIterable<{ subarray(): Uint8Array } | Uint8Array>)[Symbol.asyncIterator]()
  }

  private capOf (type: number): number {
    return this.caps[type] ?? 0
  }

  /** The next frame, or undefined when the remote closed its side cleanly between frames. */
  async read (): Promise<Frame | undefined> {
    if (!(await this.fill(5))) {
      if (this.buffered === 0) return undefined
      throw this.fail('stream ended inside a frame header')
    }
    const head = this.take(5)
    const length = new DataView(head.buffer, head.byteOffset, 5).getUint32(0)
    const type = head[4] as number
    const cap = this.capOf(type)
    if (cap === 0) throw this.fail(`unknown frame type ${type}`)
    if (length < 1 || length - 1 > cap) throw this.fail(`frame of ${length - 1} bytes over the ${cap}-byte cap for type ${type}`)
    if (!(await this.fill(length - 1))) throw this.fail('stream ended inside a frame')
    return { type, payload: this.take(length - 1) }
  }

  /** The next frame, which must be a JSON message; parsed (not yet validated). */
  async readJson (): Promise<unknown> {
    const f = await this.read()
    if (f === undefined) throw this.fail('stream ended before a message')
    if (f.type !== FRAME_JSON) throw this.fail(`expected a message, got frame type ${f.type}`)
    try {
      return JSON.parse(Buffer.from(f.payload.buffer, f.payload.byteOffset, f.payload.byteLength).toString('utf8'))
    } catch {
      throw this.fail('a message is not JSON')
    }
  }

  async send (type: number, payload: Uint8Array): Promise<void> {
    // one send per frame (a separate 5-byte head would cost its own yamux frame and noise
    // message), without copying the payload
    const head = new Uint8Array(5)
    new DataView(head.buffer).setUint32(0, payload.byteLength + 1)
    head[4] = type
    if (!this.stream.send(new Uint8ArrayList(head, payload) as unknown as Parameters<Stream['send']>[0])) await this.stream.onDrain()
  }

  async sendJson (msg: Record<string, unknown>): Promise<void> {
    await this.send(FRAME_JSON, Buffer.from(JSON.stringify(msg, (_k, v: unknown) => typeof v === 'bigint' ? v.toString() : v)))
  }

  /** Read and discard `n` raw (unframed) bytes: buffered ones first, then the stream's. */
  async discardRaw (n: number): Promise<void> {
    let left = n
    while (left > 0) {
      if (this.buffered === 0 && !(await this.fill(1))) throw this.fail(`stream ended ${left} bytes early`)
      const k = Math.min(left, this.buffered)
      this.take(k)
      left -= k
    }
  }

  /** Write `n` raw bytes (zeros) with backpressure. */
  async sendRaw (n: number, block = 256 * 1024): Promise<void> {
    const buf = new Uint8Array(block)
    for (let left = n; left > 0; left -= block) {
      if (!this.stream.send(left >= block ? buf : buf.subarray(0, left))) await this.stream.onDrain()
    }
  }

  private async fill (n: number): Promise<boolean> {
    while (this.buffered < n) {
      const { value, done } = await this.iterator.next()
      if (done === true) return false
      const bytes = value instanceof Uint8Array ? value : value.subarray()
      if (bytes.byteLength === 0) continue
      this.chunks.push(bytes)
      this.buffered += bytes.byteLength
    }
    return true
  }

  private take (n: number): Uint8Array {
    const first = this.chunks[0] as Uint8Array
    if (first.byteLength >= n) {
      const out = first.subarray(0, n)
      if (first.byteLength === n) this.chunks.shift()
      else this.chunks[0] = first.subarray(n)
      this.buffered -= n
      return out
    }
    const out = new Uint8Array(n)
    let off = 0
    while (off < n) {
      const c = this.chunks[0] as Uint8Array
      const k = Math.min(c.byteLength, n - off)
      out.set(c.subarray(0, k), off)
      off += k
      if (k === c.byteLength) this.chunks.shift()
      else this.chunks[0] = c.subarray(k)
    }
    this.buffered -= n
    return out
  }
}

