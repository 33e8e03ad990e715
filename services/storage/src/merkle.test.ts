import sodium from 'sodium-native'
import { describe, expect, it } from 'vitest'
import {
  CHUNK_BYTES, HASH_BYTES, SECTOR_BYTES, SEGMENT_BYTES, Tree, TreeBuilder, hashSector, subtreeRoot
} from './merkle.js'

const KiB = 1024
const MiB = 1024 * KiB

/** mulberry32: a seeded PRNG, so a failure reproduces. */
function makeRng (seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (s + 0x6d2b79f5) >>> 0
    let t = s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function randomData (size: number, seed: number): Uint8Array {
  const rng = makeRng(seed)
  const out = new Uint8Array(size)
  const words = new Uint32Array(out.buffer, 0, size >>> 2)
  for (let i = 0; i < words.length; i++) words[i] = rng() * 4294967296
  for (let i = words.length * 4; i < size; i++) out[i] = rng() * 256
  return out
}

function b2 (...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(32)
  sodium.crypto_generichash(out, Buffer.concat(parts))
  return out
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

/**
 * The reference: every level built explicitly, leaves padded with 32 zero bytes to a power of two
 * (so the zero nodes above come out of the hashing, not from a table).
 */
function naiveLevels (data: Uint8Array): Uint8Array[][] {
  const n = Math.ceil(data.length / SEGMENT_BYTES)
  let width = 1
  while (width < n) width *= 2
  let level: Uint8Array[] = []
  for (let i = 0; i < width; i++) level.push(i < n ? b2(data.subarray(i * SEGMENT_BYTES, (i + 1) * SEGMENT_BYTES)) : new Uint8Array(32))
  const levels = [level]
  while (level.length > 1) {
    const next: Uint8Array[] = []
    for (let i = 0; i < level.length; i += 2) next.push(b2(level[i] as Uint8Array, level[i + 1] as Uint8Array))
    levels.push(next)
    level = next
  }
  return levels
}

function buildTree (data: Uint8Array): Tree {
  const b = new TreeBuilder(data.length)
  b.push(data)
  return b.finish()
}

function codeOf (fn: () => unknown): string | undefined {
  try {
    fn()
  } catch (err) {
    return (err as { code?: string }).code
  }
  return undefined
}

describe('tree roots', () => {
  it('a one-leaf blob has the leaf hash as root: BLAKE2b-256("abc")', () => {
    const t = buildTree(new TextEncoder().encode('abc'))
    expect(t.height).toBe(0)
    expect(hex(t.root)).toBe('bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319')
  })

  const sizes = [1, 255, 256, 257, 513, 64 * KiB - 1, 64 * KiB, 64 * KiB + 1, 3 * 64 * KiB + 300, 2 * 64 * KiB + 6 * 256 + 10, 4 * MiB, 4 * MiB + 3, 5 * MiB + 7]
  for (const size of sizes) {
    it(`matches the naive reference for ${size} bytes, at every kept level`, () => {
      const data = randomData(size, size)
      const levels = naiveLevels(data)
      const t = buildTree(data)
      const H = levels.length - 1
      expect(t.height).toBe(H)
      expect(t.leaves).toBe(Math.ceil(size / 256))
      expect(hex(t.root)).toBe(hex((levels[H] as Uint8Array[])[0] as Uint8Array))
      expect(t.sectorLevel).toBe(Math.min(8, H))
      for (let l = t.sectorLevel; l <= H; l++) {
        const level = levels[l] as Uint8Array[]
        // every position, the padding ones included, plus one past the padded width of the level
        for (let i = 0; i < level.length; i++) expect(hex(t.node(l, i))).toBe(hex(level[i] as Uint8Array))
      }
    })
  }

  it('returns zero nodes past a level\'s width and refuses levels it does not keep', () => {
    const data = randomData(64 * KiB * 3, 9) // 3 sectors: H = 10, sector level 8, width 3
    const t = buildTree(data)
    let z = new Uint8Array(32)
    for (let l = 0; l < 8; l++) z = b2(z, z)
    expect(hex(t.node(8, 3))).toBe(hex(z))
    expect(hex(t.node(8, 1000))).toBe(hex(z))
    expect(codeOf(() => t.node(7, 0))).toBe('STORAGE_BAD_INDEX')
    expect(codeOf(() => t.node(11, 0))).toBe('STORAGE_BAD_INDEX')
    expect(codeOf(() => t.node(8, -1))).toBe('STORAGE_BAD_INDEX')
  })
})

describe('TreeBuilder', () => {
  it('gives the same root whatever the push chunking', () => {
    const rng = makeRng(7)
    for (const size of [1, 300, 64 * KiB, 64 * KiB + 1, 1 * MiB + 77, 4 * MiB + 3]) {
      const data = randomData(size, size + 1)
      const want = hex(buildTree(data).root)
      for (let round = 0; round < 4; round++) {
        const b = new TreeBuilder(size)
        const max = [size > 128 * KiB ? 1000 : 7, 300, 70 * KiB, 1 * MiB][round] as number
        let off = 0
        while (off < size) {
          const len = Math.min(size - off, Math.floor(rng() * (max + 1)))
          b.push(data.subarray(off, off + len)) // zero-length pushes included
          off += len
        }
        expect(b.pushed).toBe(size)
        expect(hex(b.finish().root)).toBe(want)
      }
    }
  })

  it('does not keep references to pushed buffers (the caller may reuse them)', () => {
    const data = randomData(200 * KiB + 5, 3)
    const b = new TreeBuilder(data.length)
    const buf = new Uint8Array(10 * KiB)
    for (let off = 0; off < data.length; off += buf.length) {
      const part = data.subarray(off, off + buf.length)
      buf.set(part)
      b.push(buf.subarray(0, part.length))
      buf.fill(0xee)
    }
    expect(hex(b.finish().root)).toBe(hex(buildTree(data).root))
  })

  it('refuses more or fewer bytes than the size', () => {
    const b = new TreeBuilder(1000)
    b.push(new Uint8Array(600))
    expect(codeOf(() => b.push(new Uint8Array(401)))).toBe('STORAGE_SIZE_MISMATCH')
    expect(codeOf(() => b.finish())).toBe('STORAGE_SIZE_MISMATCH')
    b.push(new Uint8Array(400))
    expect(b.finish().size).toBe(1000)
    expect(codeOf(() => new TreeBuilder(0))).toBe('STORAGE_BAD_SIZE')
    expect(codeOf(() => new TreeBuilder(1.5))).toBe('STORAGE_BAD_SIZE')
  })
})

describe('hashSector and Tree.fromSectorRoots', () => {
  it('hashes a full sector to its level-8 root and a short one to its smallest subtree', () => {
    const data = randomData(SECTOR_BYTES, 11)
    const levels = naiveLevels(data)
    expect(hex(hashSector(data))).toBe(hex((levels[8] as Uint8Array[])[0] as Uint8Array))
    for (const len of [1, 256, 257, 1000, SECTOR_BYTES - 1]) {
      const part = data.subarray(0, len)
      const naive = naiveLevels(part)
      expect(hex(hashSector(part))).toBe(hex((naive[naive.length - 1] as Uint8Array[])[0] as Uint8Array))
    }
  })

  it('writes into out, and one call does not leak into the next (shared scratch)', () => {
    const a = randomData(SECTOR_BYTES, 1)
    const short = randomData(300, 2)
    const out = new Uint8Array(32)
    const full = hex(hashSector(a))
    expect(hashSector(short, out)).toBe(out)
    expect(hex(out)).toBe(hex(buildTree(short).root))
    expect(hex(hashSector(a))).toBe(full)
    expect(codeOf(() => hashSector(new Uint8Array(0)))).toBe('STORAGE_BAD_SECTOR')
    expect(codeOf(() => hashSector(new Uint8Array(SECTOR_BYTES + 1)))).toBe('STORAGE_BAD_SECTOR')
  })

  it('combines sector roots hashed one by one into the same tree', () => {
    for (const size of [100, SECTOR_BYTES, SECTOR_BYTES + 1, 5 * SECTOR_BYTES + 12345, 17 * SECTOR_BYTES]) {
      const data = randomData(size, size * 3)
      const roots: Uint8Array[] = []
      for (let off = 0; off < size; off += SECTOR_BYTES) roots.push(hashSector(data.subarray(off, off + SECTOR_BYTES)))
      const t = Tree.fromSectorRoots(size, roots)
      expect(hex(t.root)).toBe(hex(buildTree(data).root))
      expect(hex(Tree.fromSectorRoots(size, Buffer.concat(roots)).root)).toBe(hex(t.root))
      expect(codeOf(() => Tree.fromSectorRoots(size, roots.slice(1)))).toBe('STORAGE_BAD_TREE')
      expect(codeOf(() => Tree.fromSectorRoots(size, [...roots, new Uint8Array(32)]))).toBe('STORAGE_BAD_TREE')
    }
  })

  it('subtreeRoot lifts a short blob to the level asked', () => {
    const data = randomData(300, 5) // 2 leaves: root at level 1
    const big = new Uint8Array(CHUNK_BYTES)
    big.set(data)
    // the same bytes padded with zero *nodes* (not zero bytes) up to level 14
    let h = buildTree(data).root
    let z = new Uint8Array(32)
    for (let l = 0; l < 14; l++) {
      if (l >= 1) h = b2(h, z)
      z = b2(z, z)
    }
    expect(hex(subtreeRoot(data, 14))).toBe(hex(h))
    expect(codeOf(() => subtreeRoot(new Uint8Array(513), 1))).toBe('STORAGE_BAD_SECTOR')
  })
})

describe('serialize and parse', () => {
  it('round-trips and refuses wrong lengths', () => {
    for (const size of [1, 5000, 64 * KiB, 10 * SECTOR_BYTES + 1]) {
      const t = buildTree(randomData(size, size))
      const bytes = t.serialize()
      const back = Tree.parse(bytes, size, { verify: true })
      expect(hex(back.root)).toBe(hex(t.root))
      expect(hex(back.serialize())).toBe(hex(bytes))
      for (const len of [0, bytes.length - 32, bytes.length - 1, bytes.length + 1, bytes.length + 32]) {
        const wrong = new Uint8Array(len)
        wrong.set(bytes.subarray(0, len))
        expect(codeOf(() => Tree.parse(wrong, size))).toBe('STORAGE_BAD_TREE')
      }
      expect(codeOf(() => Tree.parse(bytes, 0))).toBe('STORAGE_BAD_TREE')
    }
  })

  it('the tree of a size-mismatched blob is refused, and verify catches a damaged node', () => {
    const t = buildTree(randomData(10 * SECTOR_BYTES, 4))
    const bytes = t.serialize()
    // 11 sectors need 11 + 6 + 3 + 2 + 1 nodes, 10 need 10 + 5 + 3 + 2 + 1
    expect(codeOf(() => Tree.parse(bytes, 10 * SECTOR_BYTES + 1))).toBe('STORAGE_BAD_TREE')
    bytes[5 * HASH_BYTES] = (bytes[5 * HASH_BYTES] as number) ^ 1
    expect(codeOf(() => Tree.parse(bytes, 10 * SECTOR_BYTES, { verify: true }))).toBe('STORAGE_BAD_TREE')
    expect(hex(Tree.parse(bytes, 10 * SECTOR_BYTES).node(8, 5))).not.toBe(hex(t.node(8, 5)))
  })

  it('keeps about 1 MiB of upper tree per GiB', () => {
    const size = 1024 * MiB
    const t = Tree.fromSectorRoots(size, new Uint8Array((size / SECTOR_BYTES) * 32))
    expect(t.height).toBe(22)
    expect(t.sectors).toBe(16384)
    expect(t.serialize().length).toBe((2 * 16384 - 1) * 32)
  })
})
