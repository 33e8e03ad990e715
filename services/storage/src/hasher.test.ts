import { randomBytes } from 'node:crypto'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { ParallelTreeBuilder } from './hasher.js'
import { TreeBuilder } from './merkle.js'

describe('ParallelTreeBuilder (sector hashing in worker threads)', () => {
  it('gives the same tree as TreeBuilder for sizes around sector and batch edges, in random pushes', async () => {
    const sizes = [1, 255, 256, 65_535, 65_536, 65_537, 4 * 1024 * 1024 - 1, 4 * 1024 * 1024, 4 * 1024 * 1024 + 1, 9 * 1024 * 1024 + 77, 17 * 1024 * 1024]
    for (const size of sizes) {
      const data = randomBytes(size)
      const serial = new TreeBuilder(size)
      serial.push(data)
      const want = serial.finish()
      const par = new ParallelTreeBuilder(size)
      let off = 0
      const cuts = fc.sample(fc.integer({ min: 1, max: 3 * 1024 * 1024 }), 64)
      for (let i = 0; off < size; i++) {
        const n = Math.min(size - off, cuts[i % cuts.length] as number)
        await par.push(data.subarray(off, off + n))
        off += n
      }
      const got = await par.finish()
      expect(Buffer.from(got.root).toString('hex'), `size ${size}`).toBe(Buffer.from(want.root).toString('hex'))
      expect(Buffer.from(got.serialize()).equals(Buffer.from(want.serialize()))).toBe(true)
    }
  }, 30_000)

  it('refuses more or fewer bytes than its size', async () => {
    const b = new ParallelTreeBuilder(10)
    await expect(b.push(new Uint8Array(11))).rejects.toMatchObject({ code: 'STORAGE_SIZE_MISMATCH' })
    await b.push(new Uint8Array(9))
    await expect(b.finish()).rejects.toMatchObject({ code: 'STORAGE_SIZE_MISMATCH' })
  })
})
