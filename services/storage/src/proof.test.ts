import fc from 'fast-check'
import sodium from 'sodium-native'
import { describe, expect, it } from 'vitest'
import { StorageError } from './errors.js'
import { CHUNK_BYTES, SECTOR_BYTES, SEGMENT_BYTES, type Tree, TreeBuilder } from './merkle.js'
import {
  challengeIndices, chunkPath, decodeProof, encodeProof, generateProof, verifyChunk, verifyProof, type Proof
} from './proof.js'

const KiB = 1024
const MiB = 1024 * KiB
const K = 16

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

const u32be = (j: number): Uint8Array => { const b = Buffer.alloc(4); b.writeUInt32BE(j); return b }
const nonceOf = (seed: number, j: number): Uint8Array => b2(u32be(seed), u32be(j))
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

function buildTree (data: Uint8Array): Tree {
  const b = new TreeBuilder(data.length)
  b.push(data)
  return b.finish()
}

const reader = (data: Uint8Array) => async (s: number): Promise<Uint8Array> => data.slice(s * SECTOR_BYTES, (s + 1) * SECTOR_BYTES)

/** Every level explicitly, leaves padded with 32 zero bytes to a power of two (as in merkle.test.ts). */
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

/** The multiproof as the spec words it, from the full levels (a second, independent prover). */
function naiveProof (data: Uint8Array, levels: Uint8Array[][], indices: number[]): Proof {
  const n = Math.ceil(data.length / SEGMENT_BYTES)
  const nodes: Uint8Array[] = []
  let known = [...indices]
  for (let l = 0; l + 1 < levels.length; l++) {
    const width = Math.ceil(n / 2 ** l)
    const set = new Set(known)
    for (const i of known) {
      const sib = i ^ 1
      if (!set.has(sib) && sib < width) nodes.push((levels[l] as Uint8Array[])[sib] as Uint8Array)
    }
    known = [...new Set(known.map(i => i >> 1))]
  }
  return { segments: indices.map(i => data.slice(i * SEGMENT_BYTES, (i + 1) * SEGMENT_BYTES)), nodes }
}

function codeOf (fn: () => unknown): string | undefined {
  try {
    fn()
  } catch (err) {
    return (err as { code?: string }).code ?? `not a StorageError: ${String(err)}`
  }
  return undefined
}

async function asyncCodeOf (fn: () => Promise<unknown>): Promise<string | undefined> {
  try {
    await fn()
  } catch (err) {
    return (err as { code?: string }).code
  }
  return undefined
}

const flip = (b: Uint8Array, bit: number): Uint8Array => {
  const c = b.slice()
  c[bit >> 3] = (c[bit >> 3] as number) ^ (1 << (bit & 7))
  return c
}

describe('challengeIndices', () => {
  const root = b2(new Uint8Array([1]))

  it('picks k distinct sorted indices in range, deterministically, as the spec derives them', () => {
    for (const n of [17, 100, 16384, 2 ** 40 + 3]) {
      for (let j = 0; j < 20; j++) {
        const nonce = nonceOf(n % 1e9, j)
        const got = challengeIndices(nonce, root, n, K)
        expect(got).toEqual(challengeIndices(nonce, root, n, K))
        expect(got).toHaveLength(K)
        expect(new Set(got).size).toBe(K)
        expect([...got].sort((a, b) => a - b)).toEqual(got)
        for (const i of got) expect(i >= 0 && i < n && Number.isInteger(i)).toBe(true)
        // the reference derivation
        const want = new Set<number>()
        for (let c = 0; want.size < K; c++) {
          want.add(Number(Buffer.from(b2(nonce, root, u32be(c))).readBigUInt64BE(0) % BigInt(n)))
        }
        expect(got).toEqual([...want].sort((a, b) => a - b))
      }
    }
  })

  it('depends on the nonce and the root', () => {
    const a = challengeIndices(nonceOf(1, 1), root, 1_000_000, K)
    expect(challengeIndices(nonceOf(1, 2), root, 1_000_000, K)).not.toEqual(a)
    expect(challengeIndices(nonceOf(1, 1), b2(root), 1_000_000, K)).not.toEqual(a)
  })

  it('takes every leaf when n ≤ k, and refuses bad input', () => {
    expect(challengeIndices(nonceOf(0, 0), root, 1, K)).toEqual([0])
    expect(challengeIndices(nonceOf(0, 0), root, 5, K)).toEqual([0, 1, 2, 3, 4])
    expect(challengeIndices(nonceOf(0, 0), root, 16, K)).toEqual(Array.from({ length: 16 }, (_, i) => i))
    expect(codeOf(() => challengeIndices(new Uint8Array(31), root, 100, K))).toBe('STORAGE_BAD_CHALLENGE')
    expect(codeOf(() => challengeIndices(nonceOf(0, 0), root, 0, K))).toBe('STORAGE_BAD_CHALLENGE')
    expect(codeOf(() => challengeIndices(nonceOf(0, 0), root, 100, 0))).toBe('STORAGE_BAD_CHALLENGE')
  })
})

describe('proofs of storage', () => {
  const sizes = [1, 100, 256, 257, 1000, 64 * KiB - 1, 64 * KiB, 64 * KiB + 1, 200 * KiB + 7, 1 * MiB + 3, 4 * MiB + 3]

  it('verify at many sizes and nonces, and equal the naive multiproof', async () => {
    for (const size of sizes) {
      const data = randomData(size, size)
      const tree = buildTree(data)
      const levels = naiveLevels(data)
      const n = tree.leaves
      for (let j = 0; j < 6; j++) {
        const indices = challengeIndices(nonceOf(size, j), tree.root, n, K)
        const proof = await generateProof(tree, indices, reader(data))
        expect(verifyProof(tree.root, size, indices, proof)).toBe(true)
        const naive = naiveProof(data, levels, indices)
        expect(proof.nodes.map(hex)).toEqual(naive.nodes.map(hex))
        expect(proof.segments.map(hex)).toEqual(naive.segments.map(hex))
        const decoded = decodeProof(encodeProof(proof), { n, k: K })
        expect(verifyProof(tree.root, size, indices, decoded)).toBe(true)
        // another blob's root, or other indices, do not verify
        expect(verifyProof(b2(tree.root), size, indices, proof)).toBe(false)
      }
    }
  })

  it('handles adjacent and sibling indices, and k larger than a sector', async () => {
    const data = randomData(300 * KiB + 9, 77)
    const tree = buildTree(data)
    const n = tree.leaves
    for (const indices of [[0, 1], [0, 2, 3, 4], [254, 255, 256, 257], [n - 2, n - 1], [n - 1], Array.from({ length: 600 }, (_, i) => i * 2)]) {
      const proof = await generateProof(tree, indices, reader(data))
      expect(verifyProof(tree.root, data.length, indices, proof)).toBe(true)
      expect(proof.nodes.map(hex)).toEqual(naiveProof(data, naiveLevels(data), indices).nodes.map(hex))
    }
    const all = Array.from({ length: n }, (_, i) => i)
    const proof = await generateProof(tree, all, reader(data))
    expect(proof.nodes).toHaveLength(0) // every sibling is known or padding
    expect(verifyProof(tree.root, data.length, all, proof)).toBe(true)
  })

  it('fails when any single bit of a segment or node is flipped', async () => {
    const data = randomData(20 * KiB + 3, 5) // n = 81, H = 7: the last segment is 3 bytes
    const tree = buildTree(data)
    const rng = makeRng(99)
    let checked = 0
    for (let j = 0; j < 2; j++) {
      const indices = challengeIndices(nonceOf(5, j), tree.root, tree.leaves, K)
      const proof = await generateProof(tree, indices, reader(data))
      expect(verifyProof(tree.root, data.length, indices, proof)).toBe(true)
      proof.segments.forEach((seg, s) => {
        const bits = seg.length * 8
        // every bit of short segments, 128 random bits of full ones
        const which = bits <= 128 ? Array.from({ length: bits }, (_, b) => b) : Array.from({ length: 128 }, () => Math.floor(rng() * bits))
        for (const bit of which) {
          const segments = proof.segments.map((x, i) => i === s ? flip(x, bit) : x)
          expect(verifyProof(tree.root, data.length, indices, { segments, nodes: proof.nodes })).toBe(false)
          checked++
        }
      })
      proof.nodes.forEach((_, s) => {
        for (let bit = 0; bit < 256; bit++) {
          const nodes = proof.nodes.map((x, i) => i === s ? flip(x, bit) : x)
          expect(verifyProof(tree.root, data.length, indices, { segments: proof.segments, nodes })).toBe(false)
          checked++
        }
      })
      // reordered nodes are wrong too
      if (proof.nodes.length >= 2) {
        const nodes = [proof.nodes[1] as Uint8Array, proof.nodes[0] as Uint8Array, ...proof.nodes.slice(2)]
        expect(verifyProof(tree.root, data.length, indices, { segments: proof.segments, nodes })).toBe(false)
      }
    }
    expect(checked).toBeGreaterThan(5000)
  })

  it('refuses a malformed proof with STORAGE_BAD_PROOF', async () => {
    const data = randomData(100 * KiB + 1, 6) // the last segment is 1 byte
    const tree = buildTree(data)
    const indices = [...challengeIndices(nonceOf(6, 0), tree.root, tree.leaves, K - 1), tree.leaves - 1]
    indices.sort((a, b) => a - b)
    const proof = await generateProof(tree, [...new Set(indices)], reader(data))
    const idx = [...new Set(indices)]
    const { segments, nodes } = proof
    const bad = (p: Proof): string | undefined => codeOf(() => verifyProof(tree.root, data.length, idx, p))
    expect(bad({ segments, nodes: nodes.slice(0, -1) })).toBe('STORAGE_BAD_PROOF')
    expect(bad({ segments, nodes: [] })).toBe('STORAGE_BAD_PROOF')
    expect(bad({ segments, nodes: [...nodes, new Uint8Array(32)] })).toBe('STORAGE_BAD_PROOF')
    expect(bad({ segments: segments.slice(1), nodes })).toBe('STORAGE_BAD_PROOF')
    expect(bad({ segments: [...segments, segments[0] as Uint8Array], nodes })).toBe('STORAGE_BAD_PROOF')
    expect(bad({ segments: segments.map((s, i) => i === 0 ? s.subarray(1) : s), nodes })).toBe('STORAGE_BAD_PROOF')
    // the last segment padded to a full 256 bytes
    expect(bad({ segments: segments.map((s, i) => i === segments.length - 1 ? new Uint8Array(256) : s), nodes })).toBe('STORAGE_BAD_PROOF')
    expect(bad({ segments, nodes: nodes.map((x, i) => i === 0 ? x.subarray(1) : x) })).toBe('STORAGE_BAD_PROOF')
    expect(bad({ segments, nodes: 'x' as unknown as Uint8Array[] })).toBe('STORAGE_BAD_PROOF')
    expect(bad(proof)).toBeUndefined()
    // the verifier's own indices must make sense
    expect(codeOf(() => verifyProof(tree.root, data.length, [3, 2], proof))).toBe('STORAGE_BAD_INDICES')
    expect(codeOf(() => verifyProof(tree.root, data.length, [tree.leaves], proof))).toBe('STORAGE_BAD_INDICES')
  })

  it('the provider refuses bad indices, a short read, and a sector that no longer matches', async () => {
    const data = randomData(3 * SECTOR_BYTES + 10, 8)
    const tree = buildTree(data)
    expect(await asyncCodeOf(async () => await generateProof(tree, [5, 5], reader(data)))).toBe('STORAGE_BAD_INDICES')
    expect(await asyncCodeOf(async () => await generateProof(tree, [], reader(data)))).toBe('STORAGE_BAD_INDICES')
    expect(await asyncCodeOf(async () => await generateProof(tree, [3 * 256 + 1], reader(data)))).toBe('STORAGE_BAD_INDICES')
    expect(await asyncCodeOf(async () => await generateProof(tree, [1], async () => new Uint8Array(100)))).toBe('STORAGE_BAD_SECTOR')
    const damaged = data.slice()
    damaged[SECTOR_BYTES + 7] = (damaged[SECTOR_BYTES + 7] as number) ^ 0x10
    expect(await asyncCodeOf(async () => await generateProof(tree, [1, 300], reader(damaged)))).toBe('STORAGE_SECTOR_CORRUPT')
    expect(await asyncCodeOf(async () => await generateProof(tree, [1, 600], reader(damaged)))).toBeUndefined()
  })
})

describe('proof encoding', () => {
  const data = randomData(1 * MiB + 5, 12)
  const tree = buildTree(data)
  const n = tree.leaves // 4097: H = 13
  const indices = challengeIndices(nonceOf(12, 0), tree.root, n, K)
  let proof: Proof
  let encoded: Uint8Array

  it('round-trips, with segments' + ' and nodes copied out of the input', async () => {
    proof = await generateProof(tree, indices, reader(data))
    encoded = encodeProof(proof)
    const input = encoded.slice()
    const back = decodeProof(input, { n, k: K })
    input.fill(0)
    expect(back.segments.map(hex)).toEqual(proof.segments.map(hex))
    expect(back.nodes.map(hex)).toEqual(proof.nodes.map(hex))
    expect(encoded.length).toBe(4 + K * (2 + 256) + proof.nodes.length * 32)
  })

  it('refuses hostile encodings', () => {
    const u16 = (v: number): number[] => [v >> 8, v & 0xff]
    const seg = (len: number): number[] => [...u16(len), ...new Array<number>(len).fill(7)]
    const enc = (...parts: number[][]): Uint8Array => new Uint8Array(parts.flat())
    const cases: Uint8Array[] = [
      new Uint8Array(0),
      new Uint8Array(1),
      enc(u16(0), u16(0)), // no segments
      enc(u16(K + 1), ...Array.from({ length: K + 1 }, () => seg(256)), u16(0)), // more than k
      enc(u16(1), seg(0), u16(0)), // empty segment
      enc(u16(1), seg(257), u16(0)), // oversized segment
      enc(u16(1), seg(256), u16(K * 13 + 1), new Array<number>((K * 13 + 1) * 32).fill(1)), // more than k·H nodes
      enc(u16(1), seg(256), u16(2), new Array<number>(63).fill(1)), // a node cut short
      enc(u16(1), seg(256), u16(1), new Array<number>(33).fill(1)), // a trailing byte
      enc(u16(1), seg(256)), // no node count
      enc(u16(0xffff)), // a huge count with nothing behind it
      enc(u16(2), seg(256), u16(300)) // the second segment claims bytes that are not there
    ]
    for (const c of cases) expect(codeOf(() => decodeProof(c, { n, k: K }))).toBe('STORAGE_BAD_PROOF')
    // more segments than leaves
    expect(codeOf(() => decodeProof(enc(u16(2), seg(1), seg(1), u16(0)), { n: 1, k: K }))).toBe('STORAGE_BAD_PROOF')
    expect(decodeProof(enc(u16(1), seg(1), u16(0)), { n: 1, k: K }).segments).toHaveLength(1)
    // every truncation and every extension of a valid proof
    for (let len = 0; len < encoded.length; len++) expect(codeOf(() => decodeProof(encoded.subarray(0, len), { n, k: K }))).toBe('STORAGE_BAD_PROOF')
    expect(codeOf(() => decodeProof(Buffer.concat([encoded, new Uint8Array(1)]), { n, k: K }))).toBe('STORAGE_BAD_PROOF')
    expect(codeOf(() => decodeProof(encoded, { n, k: 0 }))).toBe('STORAGE_BAD_PROOF')
    expect(codeOf(() => encodeProof({ segments: [new Uint8Array(257)], nodes: [] }))).toBe('STORAGE_BAD_PROOF')
  })

  it('decode throws nothing but STORAGE_BAD_PROOF on random bytes', () => {
    fc.assert(fc.property(
      fc.uint8Array({ maxLength: 1200 }), fc.integer({ min: 1, max: 2 ** 40 }), fc.integer({ min: 1, max: 64 }),
      (bytes, nn, k) => {
        try {
          decodeProof(bytes, { n: nn, k })
        } catch (err) {
          return err instanceof StorageError && err.code === 'STORAGE_BAD_PROOF'
        }
        return true
      }), { numRuns: 3000 })
  })

  it('a mutated encoding never verifies, and nothing but STORAGE_BAD_PROOF is thrown', () => {
    fc.assert(fc.property(
      fc.integer({ min: 0, max: 2 ** 31 }), fc.integer({ min: 0, max: 3 }),
      (r, kind) => {
        const pos = r % encoded.length
        let bytes: Uint8Array
        if (kind === 0) bytes = flip(encoded, r % (encoded.length * 8))
        else if (kind === 1) bytes = Buffer.concat([encoded.subarray(0, pos), encoded.subarray(pos + 1)])
        else if (kind === 2) bytes = Buffer.concat([encoded.subarray(0, pos), new Uint8Array([r & 0xff]), encoded.subarray(pos)])
        else { bytes = encoded.slice(); bytes[pos] = (r >> 8) & 0xff; if (bytes[pos] === encoded[pos]) return true }
        try {
          return !verifyProof(tree.root, data.length, indices, decodeProof(bytes, { n, k: K }))
        } catch (err) {
          return err instanceof StorageError && err.code === 'STORAGE_BAD_PROOF'
        }
      }), { numRuns: 2000 })
  })
})

describe('chunk retrieval', () => {
  it('verifies the first, middle and last chunk; refuses tampered bytes, lengths, indices and paths', () => {
    for (const size of [1000, 1 * MiB + 1, 3 * MiB, 9 * MiB + 5, 12 * MiB + 7]) {
      const data = randomData(size, size)
      const tree = buildTree(data)
      const levels = naiveLevels(data)
      const chunks = Math.ceil(size / CHUNK_BYTES)
      expect(tree.chunks).toBe(chunks)
      for (const c of new Set([0, Math.floor(chunks / 2), chunks - 1])) {
        const bytes = data.subarray(c * CHUNK_BYTES, (c + 1) * CHUNK_BYTES)
        const path = chunkPath(tree, c)
        expect(path).toHaveLength(tree.height - tree.chunkLevel)
        // the path is the chunk's siblings in the full tree
        path.forEach((p, j) => {
          const l = tree.chunkLevel + j
          expect(hex(p)).toBe(hex((levels[l] as Uint8Array[])[(c >> j) ^ 1] as Uint8Array))
        })
        expect(verifyChunk(tree.root, size, c, bytes, path)).toBe(true)
        expect(verifyChunk(tree.root, size, c, flip(bytes, 8 * (bytes.length - 1) + 3), path)).toBe(false)
        expect(verifyChunk(tree.root, size, c, flip(bytes, 5), path)).toBe(false)
        expect(verifyChunk(tree.root, size, c, bytes.subarray(0, bytes.length - 1), path)).toBe(false)
        expect(verifyChunk(tree.root, size, c, Buffer.concat([bytes, new Uint8Array(1)]), path)).toBe(false)
        expect(verifyChunk(b2(tree.root), size, c, bytes, path)).toBe(false)
        if (path.length > 0) {
          for (let j = 0; j < path.length; j++) {
            expect(verifyChunk(tree.root, size, c, bytes, path.map((p, i) => i === j ? flip(p, 77) : p))).toBe(false)
          }
          expect(verifyChunk(tree.root, size, c, bytes, path.slice(1))).toBe(false)
        }
        expect(verifyChunk(tree.root, size, c, bytes, [...path, new Uint8Array(32)])).toBe(false)
        if (chunks > 1) expect(verifyChunk(tree.root, size, (c + 1) % chunks, bytes, path)).toBe(false)
      }
      expect(verifyChunk(tree.root, size, chunks, new Uint8Array(1), [])).toBe(false)
      expect(verifyChunk(tree.root, size, -1, new Uint8Array(1), [])).toBe(false)
      expect(codeOf(() => chunkPath(tree, chunks))).toBe('STORAGE_BAD_INDEX')
    }
  })
})

describe('detection: a provider that lost 1 % of its segments', () => {
  // n = 16384 leaves (4 MiB), L = 164 lost (1 %), k = 16 per challenge
  const size = 4 * MiB
  const data = randomData(size, 2024)
  const tree = buildTree(data)
  const levels = naiveLevels(data)
  const n = tree.leaves
  const rng = makeRng(31337)
  const lostCount = Math.round(0.01 * n)
  const order = Array.from({ length: n }, (_, i) => i)
  for (let i = 0; i < lostCount; i++) {
    const j = i + Math.floor(rng() * (n - i))
    ;[order[i], order[j]] = [order[j] as number, order[i] as number]
  }
  const lost = new Set(order.slice(0, lostCount))

  /**
   * The cheater kept every hash (so its nodes are right) but not the lost segments' bytes: it
   * answers with what it has and random bytes in their place. The real verifier decides.
   */
  const caught = (nonce: Uint8Array): { detected: boolean, hit: boolean } => {
    const indices = challengeIndices(nonce, tree.root, n, K)
    const proof = naiveProof(data, levels, indices)
    proof.segments = proof.segments.map((s, j) => lost.has(indices[j] as number) ? randomData(s.length, Math.floor(rng() * 2 ** 32)) : s)
    const detected = !verifyProof(tree.root, size, indices, decodeProof(encodeProof(proof), { n, k: K }))
    return { detected, hit: indices.some(i => lost.has(i)) }
  }

  // sampling without replacement: P(no lost leaf among k distinct) = C(n-L, k) / C(n, k)
  let pass = 1
  for (let i = 0; i < K; i++) pass *= (n - lostCount - i) / (n - i)
  const exact = 1 - pass

  it('per challenge: detected with probability 1 - C(n-L,k)/C(n,k) ≈ 1 - (1-p)^k ≈ 0.149', () => {
    expect(exact).toBeCloseTo(1 - 0.99 ** K, 2) // the binomial approximation (0.1485) vs exact (0.1487)
    const trials = 2000
    let detected = 0
    for (let j = 0; j < trials; j++) {
      const r = caught(nonceOf(1, j))
      expect(r.detected).toBe(r.hit) // caught exactly when a lost segment is challenged
      if (r.detected) detected++
    }
    const rate = detected / trials
    expect(Math.abs(rate - exact)).toBeLessThan(0.03)
  })

  it('over a 30-period contract: at least 99 % of 500 contracts caught (expected 1 - 0.851^30 ≈ 0.992)', () => {
    const contracts = 500
    const periods = 30
    let caughtContracts = 0
    for (let c = 0; c < contracts; c++) {
      for (let p = 0; p < periods; p++) {
        if (caught(nonceOf(2 + c, p)).detected) { caughtContracts++; break }
      }
    }
    const expected = 1 - pass ** periods
    expect(expected).toBeGreaterThan(0.991)
    const rate = caughtContracts / contracts
    // ≥ 99 % is only ~0.2 points under the expectation (σ ≈ 0.4 points for 500 contracts): it
    // holds for this fixed seed; the 3σ band is what any seed must meet
    expect(rate).toBeGreaterThanOrEqual(0.99)
    expect(Math.abs(rate - expected)).toBeLessThan(3 * Math.sqrt(expected * (1 - expected) / contracts))
  })
})
