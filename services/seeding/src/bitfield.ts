/** A fixed-size bit set in BitTorrent order (bit 0 is the high bit of byte 0). */
export class Bitfield {
  readonly bytes: Uint8Array
  private set_ = 0

  constructor (readonly length: number, bytes?: Uint8Array) {
    this.bytes = new Uint8Array(Math.ceil(length / 8))
    if (bytes !== undefined) {
      this.bytes.set(bytes.subarray(0, this.bytes.length))
      // spare bits past `length` are never set, so counts and equality stay exact
      const spare = this.bytes.length * 8 - length
      if (spare > 0) this.bytes[this.bytes.length - 1]! &= (0xff << spare) & 0xff
      this.set_ = popcount(this.bytes)
    }
  }

  static full (length: number): Bitfield {
    const b = new Bitfield(length)
    b.bytes.fill(0xff)
    const spare = b.bytes.length * 8 - length
    if (spare > 0) b.bytes[b.bytes.length - 1] = (0xff << spare) & 0xff
    b.set_ = length
    return b
  }

  get count (): number { return this.set_ }
  get complete (): boolean { return this.set_ === this.length }

  get (i: number): boolean {
    return (this.bytes[i >> 3]! & (0x80 >> (i & 7))) !== 0
  }

  set (i: number, value = true): void {
    const mask = 0x80 >> (i & 7)
    const byte = this.bytes[i >> 3]!
    const had = (byte & mask) !== 0
    if (value === had) return
    this.bytes[i >> 3] = value ? byte | mask : byte & ~mask
    this.set_ += value ? 1 : -1
  }

  /** True when `bytes` is a valid bitfield message body for `length` pieces (right size, spare bits zero). */
  static valid (length: number, bytes: Uint8Array): boolean {
    if (bytes.length !== Math.ceil(length / 8)) return false
    const spare = bytes.length * 8 - length
    return spare === 0 || (bytes[bytes.length - 1]! & ((1 << spare) - 1)) === 0
  }
}

function popcount (bytes: Uint8Array): number {
  let n = 0
  for (let b of bytes) {
    while (b !== 0) { b &= b - 1; n++ }
  }
  return n
}
