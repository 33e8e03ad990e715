/**
 * Proofs of storage and of retrieved chunks, over the tree of merkle.ts.
 *
 * A challenge (nonce) picks k leaves; the provider answers with their segments and a compact
 * multiproof: walking levels 0..H-1 over the sorted set of known indices, for each known index whose
 * sibling is neither known nor padding (a zero node the verifier computes), the sibling's hash, in
 * that order; the next level's known set is the parents. The verifier replays the same walk.
 */
import sodium from 'sodium-native'
import { StorageError } from './errors.js'
import {
  CHUNK_BYTES, HASH_BYTES, SECTOR_BYTES, SECTOR_SEGMENTS, SEGMENT_BYTES, CHUNK_LEVEL, Tree,
  SECTOR_LEVEL as SECTOR_LEVEL_OF, ceilLog2, hashPair, hashSector, leafCount, levelWidth, sectorLevels, subtreeRoot, zeroNode
} from './merkle.js'

export interface Proof {
  /** One per challenged index, in the order of the indices: the segment's actual bytes. */
  segments: Uint8Array[]
  /** The compact multiproof (see the module comment). */
  nodes: Uint8Array[]
}

/** Counts are u16 in the encoding. */
const MAX_COUNT = 0xffff

function badProof (message: string): StorageError {
  return new StorageError('STORAGE_BAD_PROOF', message)
}

function checkIndices (indices: number[], n: number): void {
  if (indices.length === 0) throw new StorageError('STORAGE_BAD_INDICES', 'a proof covers at least one index')
  let prev = -1
  for (const i of indices) {
    if (!Number.isSafeInteger(i) || i <= prev || i >= n) throw new StorageError('STORAGE_BAD_INDICES', `indices must be distinct, ascending and below ${n}`)
    prev = i
  }
}

/** Byte length of leaf i of a blob of `size` bytes. */
function segmentLength (size: number, i: number): number {
  return Math.min(SEGMENT_BYTES, size - i * SEGMENT_BYTES)
}

function same (a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.length).equals(b)
}

/**
 * The k leaf indices a nonce challenges (all n when n ≤ k), distinct and ascending: candidate j is
 * the first 8 bytes of BLAKE2b-256(nonce ‖ root ‖ u32be(j)), big-endian, mod n; repeats are skipped.
 */
export function challengeIndices (nonce: Uint8Array, root: Uint8Array, n: number, k: number): number[] {
  if (nonce.length !== 32) throw new StorageError('STORAGE_BAD_CHALLENGE', `a nonce is 32 bytes, not ${nonce.length}`)
  if (root.length !== HASH_BYTES) throw new StorageError('STORAGE_BAD_CHALLENGE', `a root is ${HASH_BYTES} bytes, not ${root.length}`)
  if (!Number.isSafeInteger(n) || n < 1) throw new StorageError('STORAGE_BAD_CHALLENGE', `bad leaf count ${n}`)
  if (!Number.isSafeInteger(k) || k < 1) throw new StorageError('STORAGE_BAD_CHALLENGE', `bad challenge size ${k}`)
  if (n <= k) return Array.from({ length: n }, (_, i) => i)
  const input = new Uint8Array(32 + HASH_BYTES + 4)
  input.set(nonce, 0)
  input.set(root, 32)
  const inputView = new DataView(input.buffer)
  const out = new Uint8Array(HASH_BYTES)
  const outView = new DataView(out.buffer)
  const modulus = BigInt(n)
  const picked = new Set<number>()
  for (let j = 0; picked.size < k; j++) {
    // with n > k this ends after about k draws; 2^32 draws would need a broken hash
    if (j > 0xffffffff) throw new StorageError('STORAGE_BAD_CHALLENGE', 'ran out of challenge candidates')
    inputView.setUint32(64, j)
    sodium.crypto_generichash(out, input)
    picked.add(Number(outView.getBigUint64(0) % modulus))
  }
  return [...picked].sort((a, b) => a - b)
}

/**
 * Proves the leaves at `indices` (distinct, ascending, as challengeIndices returns them). Reads each
 * distinct sector touched once (`readSector(s)` returns bytes [s·64 KiB, min(size, (s+1)·64 KiB))),
 * rehashes it for the nodes below the sector level and checks it against the tree: a sector whose
 * bytes no longer match throws STORAGE_SECTOR_CORRUPT (the data is damaged; the proof would fail).
 */
export async function generateProof (tree: Tree, indices: number[], readSector: (sectorIndex: number) => Promise<Uint8Array>): Promise<Proof> {
  const n = tree.leaves
  const sL = tree.sectorLevel
  checkIndices(indices, n)
  const touched = [...new Set(indices.map(i => Math.floor(i / SECTOR_SEGMENTS)))]
  const datas = await Promise.all(touched.map(async s => await readSector(s)))
  const sectors = new Map<number, { data: Uint8Array, levels: Uint8Array[] }>()
  touched.forEach((s, j) => {
    const data = datas[j] as Uint8Array
    const expected = Math.min(SECTOR_BYTES, tree.size - s * SECTOR_BYTES)
    if (data.length !== expected) throw new StorageError('STORAGE_BAD_SECTOR', `sector ${s} is ${expected} bytes, read ${data.length}`)
    const levels = sectorLevels(data, sL)
    if (!same(levels[sL] as Uint8Array, tree.node(sL, s))) throw new StorageError('STORAGE_SECTOR_CORRUPT', `sector ${s} does not match the tree`)
    sectors.set(s, { data, levels })
  })

  const segments = indices.map(i => {
    const local = i % SECTOR_SEGMENTS
    const { data } = sectors.get(Math.floor(i / SECTOR_SEGMENTS)) as { data: Uint8Array }
    return data.slice(local * SEGMENT_BYTES, Math.min(data.length, (local + 1) * SEGMENT_BYTES))
  })

  const nodeAt = (level: number, index: number): Uint8Array => {
    if (level >= sL) return tree.node(level, index).slice()
    const span = 2 ** (sL - level)
    const s = Math.floor(index / span)
    const local = index - s * span
    const levels = (sectors.get(s) as { levels: Uint8Array[] }).levels
    return (levels[level] as Uint8Array).subarray(local * HASH_BYTES, (local + 1) * HASH_BYTES)
  }

  const nodes: Uint8Array[] = []
  let known = indices
  for (let level = 0; level < tree.height; level++) {
    const w = levelWidth(n, level)
    const parents: number[] = []
    for (let j = 0; j < known.length; j++) {
      const i = known[j] as number
      if (i % 2 === 0) {
        if (known[j + 1] === i + 1) j++
        else if (i + 1 < w) nodes.push(nodeAt(level, i + 1))
      } else {
        nodes.push(nodeAt(level, i - 1))
      }
      parents.push(Math.floor(i / 2))
    }
    known = parents
  }
  return { segments, nodes }
}

/**
 * Checks a proof of the leaves at `indices` against `root`. False when a hash does not match;
 * throws STORAGE_BAD_PROOF when the proof's shape is wrong (segment count or lengths, node count or
 * lengths), which no honest provider sends. `indices` are the verifier's own (challengeIndices).
 */
export function verifyProof (root: Uint8Array, size: number, indices: number[], proof: Proof): boolean {
  const n = leafCount(size)
  const height = ceilLog2(n)
  checkIndices(indices, n)
  const { segments, nodes } = proof
  if (!Array.isArray(segments) || segments.length !== indices.length) throw badProof(`expected ${indices.length} segments`)
  if (!Array.isArray(nodes)) throw badProof('no nodes')
  let hashes: Uint8Array[] = indices.map((i, j) => {
    const seg = segments[j]
    if (!(seg instanceof Uint8Array) || seg.length !== segmentLength(size, i)) throw badProof(`segment ${j} has the wrong length`)
    const h = new Uint8Array(HASH_BYTES)
    sodium.crypto_generichash(h, seg)
    return h
  })
  let next = 0
  const take = (): Uint8Array => {
    const node = nodes[next++]
    if (node === undefined) throw badProof('too few nodes')
    if (!(node instanceof Uint8Array) || node.length !== HASH_BYTES) throw badProof(`node ${next - 1} is not ${HASH_BYTES} bytes`)
    return node
  }
  let known = indices
  for (let level = 0; level < height; level++) {
    const w = levelWidth(n, level)
    const parents: number[] = []
    const parentHashes: Uint8Array[] = []
    for (let j = 0; j < known.length; j++) {
      const i = known[j] as number
      const h = hashes[j] as Uint8Array
      const out = new Uint8Array(HASH_BYTES)
      if (i % 2 === 0) {
        let right: Uint8Array
        if (known[j + 1] === i + 1) right = hashes[++j] as Uint8Array
        else if (i + 1 < w) right = take()
        else right = zeroNode(level)
        hashPair(h, right, out)
      } else {
        hashPair(take(), h, out)
      }
      parents.push(Math.floor(i / 2))
      parentHashes.push(out)
    }
    known = parents
    hashes = parentHashes
  }
  if (next !== nodes.length) throw badProof(`${nodes.length - next} nodes too many`)
  return root.length === HASH_BYTES && same(hashes[0] as Uint8Array, root)
}

/**
 * Encoding: u16be segment count, then per segment u16be length and its bytes, then u16be node
 * count and the nodes (32 bytes each). Big enough for k × H nodes up to 65535 (k = 16 needs ≤ 720).
 */
export function encodeProof (proof: Proof): Uint8Array {
  const { segments, nodes } = proof
  if (segments.length > MAX_COUNT || nodes.length > MAX_COUNT) throw badProof('too many segments or nodes to encode')
  let len = 4 + nodes.length * HASH_BYTES
  for (const s of segments) {
    if (s.length < 1 || s.length > SEGMENT_BYTES) throw badProof(`a segment is 1 to ${SEGMENT_BYTES} bytes, not ${s.length}`)
    len += 2 + s.length
  }
  const out = new Uint8Array(len)
  let o = 0
  const u16 = (v: number): void => { out[o++] = v >>> 8; out[o++] = v & 0xff }
  u16(segments.length)
  for (const s of segments) {
    u16(s.length)
    out.set(s, o)
    o += s.length
  }
  u16(nodes.length)
  for (const node of nodes) {
    if (node.length !== HASH_BYTES) throw badProof(`a node is ${HASH_BYTES} bytes, not ${node.length}`)
    out.set(node, o)
    o += HASH_BYTES
  }
  return out
}

/**
 * Decodes a peer's proof for a blob of n leaves challenged with k indices. Everything the peer
 * controls is capped before anything is allocated: at most min(k, n) segments of 1..256 bytes, at
 * most min(k, n) × H nodes, no trailing bytes. Anything else throws STORAGE_BAD_PROOF.
 */
export function decodeProof (bytes: Uint8Array, opts: { n: number, k: number }): Proof {
  const { n, k } = opts
  if (!Number.isSafeInteger(n) || n < 1 || !Number.isSafeInteger(k) || k < 1) throw badProof(`bad proof parameters n=${n} k=${k}`)
  const maxSegments = Math.min(k, n, MAX_COUNT)
  const maxNodes = Math.min(maxSegments * ceilLog2(n), MAX_COUNT)
  if (!(bytes instanceof Uint8Array)) throw badProof('a proof is bytes')
  // a private copy: segments and nodes are views of it, whatever happens to the peer's buffer
  const b = bytes.slice()
  let o = 0
  const u16 = (): number => {
    if (o + 2 > b.length) throw badProof('truncated proof')
    const v = ((b[o] as number) << 8) | (b[o + 1] as number)
    o += 2
    return v
  }
  const segCount = u16()
  if (segCount < 1 || segCount > maxSegments) throw badProof(`${segCount} segments (at most ${maxSegments})`)
  const segments: Uint8Array[] = []
  for (let j = 0; j < segCount; j++) {
    const len = u16()
    if (len < 1 || len > SEGMENT_BYTES) throw badProof(`segment of ${len} bytes`)
    if (o + len > b.length) throw badProof('truncated proof')
    segments.push(b.subarray(o, o + len))
    o += len
  }
  const nodeCount = u16()
  if (nodeCount > maxNodes) throw badProof(`${nodeCount} nodes (at most ${maxNodes})`)
  if (b.length - o !== nodeCount * HASH_BYTES) throw badProof(b.length - o < nodeCount * HASH_BYTES ? 'truncated proof' : 'trailing bytes after the proof')
  const nodes: Uint8Array[] = []
  for (let j = 0; j < nodeCount; j++) nodes.push(b.subarray(o + j * HASH_BYTES, o + (j + 1) * HASH_BYTES))
  return { segments, nodes }
}

/**
 * The path of chunk `chunkIndex` (4 MiB, the last may be shorter) up to the root: its sibling at
 * each level from chunkLevel = min(14, H) to H-1, bottom up. Zero-node siblings are included, so a
 * path always has H - chunkLevel entries (a wrong zero node fails verification like any wrong node).
 */
export function chunkPath (tree: Tree, chunkIndex: number): Uint8Array[] {
  if (!Number.isSafeInteger(chunkIndex) || chunkIndex < 0 || chunkIndex >= tree.chunks) {
    throw new StorageError('STORAGE_BAD_INDEX', `the blob has ${tree.chunks} chunks, no chunk ${chunkIndex}`)
  }
  const path: Uint8Array[] = []
  let index = chunkIndex
  for (let level = tree.chunkLevel; level < tree.height; level++) {
    path.push(tree.node(level, index % 2 === 0 ? index + 1 : index - 1).slice())
    index = Math.floor(index / 2)
  }
  return path
}

/**
 * Checks retrieved chunk bytes against the blob's root: hashes them into the chunk's subtree root,
 * then up `path` (as chunkPath builds it). False on any mismatch, including a wrong chunk length,
 * index or path length.
 */
export function verifyChunk (root: Uint8Array, size: number, chunkIndex: number, chunkBytes: Uint8Array, path: Uint8Array[]): boolean {
  const n = leafCount(size)
  const height = ceilLog2(n)
  const chunkLevel = Math.min(CHUNK_LEVEL, height)
  const chunks = Math.ceil(size / CHUNK_BYTES)
  if (!Number.isSafeInteger(chunkIndex) || chunkIndex < 0 || chunkIndex >= chunks) return false
  if (chunkBytes.length !== Math.min(CHUNK_BYTES, size - chunkIndex * CHUNK_BYTES)) return false
  if (!Array.isArray(path) || path.length !== height - chunkLevel) return false
  if (!path.every(p => p instanceof Uint8Array && p.length === HASH_BYTES)) return false
  return walkChunkPath(root, chunkIndex, subtreeRoot(chunkBytes, chunkLevel), path)
}

/**
 * As verifyChunk, from the chunk's root hashed elsewhere (e.g. as its bytes arrived): `chunkTree`
 * is the tree of the chunk's bytes taken as a blob of their own, whose root is lifted to the chunk
 * level with zero nodes here.
 */
export function verifyChunkTree (root: Uint8Array, size: number, chunkIndex: number, chunkTree: Tree, path: Uint8Array[]): boolean {
  const n = leafCount(size)
  const height = ceilLog2(n)
  const chunkLevel = Math.min(CHUNK_LEVEL, height)
  const chunks = Math.ceil(size / CHUNK_BYTES)
  if (!Number.isSafeInteger(chunkIndex) || chunkIndex < 0 || chunkIndex >= chunks) return false
  if (chunkTree.size !== Math.min(CHUNK_BYTES, size - chunkIndex * CHUNK_BYTES)) return false
  if (!Array.isArray(path) || path.length !== height - chunkLevel) return false
  if (!path.every(p => p instanceof Uint8Array && p.length === HASH_BYTES)) return false
  const h = chunkTree.root.slice()
  for (let level = chunkTree.height; level < chunkLevel; level++) hashPair(h, zeroNode(level), h)
  return walkChunkPath(root, chunkIndex, h, path)
}

/**
 * Checks a retrieved chunk's sector-level nodes (what the provider's tree holds for the chunk's
 * sectors, zero-padded as in the tree) against the blob's root: they are reduced to the chunk's
 * root and walked up `path`. The bytes themselves are then checked per sector against these nodes
 * (`sectorNode`) or, for ciphertext, by decrypting it.
 */
export function verifyChunkSectors (root: Uint8Array, size: number, chunkIndex: number, sectorNodes: Uint8Array[], path: Uint8Array[]): boolean {
  const n = leafCount(size)
  const height = ceilLog2(n)
  const sectorLevel = Math.min(SECTOR_LEVEL_OF, height)
  const chunkLevel = Math.min(CHUNK_LEVEL, height)
  const chunks = Math.ceil(size / CHUNK_BYTES)
  if (!Number.isSafeInteger(chunkIndex) || chunkIndex < 0 || chunkIndex >= chunks) return false
  const length = Math.min(CHUNK_BYTES, size - chunkIndex * CHUNK_BYTES)
  if (sectorNodes.length !== Math.ceil(length / SECTOR_BYTES)) return false
  if (!sectorNodes.every(p => p instanceof Uint8Array && p.length === HASH_BYTES)) return false
  if (!Array.isArray(path) || path.length !== height - chunkLevel) return false
  if (!path.every(p => p instanceof Uint8Array && p.length === HASH_BYTES)) return false
  let level: Uint8Array[] = sectorNodes.map(x => x.slice())
  for (let l = sectorLevel; l < chunkLevel; l++) {
    if (level.length % 2 === 1) level.push(zeroNode(l).slice())
    const next: Uint8Array[] = []
    for (let i = 0; i < level.length; i += 2) next.push(hashPair(level[i] as Uint8Array, level[i + 1] as Uint8Array, new Uint8Array(HASH_BYTES)))
    level = next
  }
  if (level.length !== 1) return false
  return walkChunkPath(root, chunkIndex, level[0] as Uint8Array, path)
}

/** The node at the sector level over one sector's bytes (a short last sector padded with zero nodes). */
export function sectorNode (bytes: Uint8Array, size: number): Uint8Array {
  const sectorLevel = Math.min(SECTOR_LEVEL_OF, ceilLog2(leafCount(size)))
  const h = hashSector(bytes)
  for (let l = ceilLog2(Math.ceil(bytes.length / SEGMENT_BYTES)); l < sectorLevel; l++) hashPair(h, zeroNode(l), h)
  return h
}

function walkChunkPath (root: Uint8Array, chunkIndex: number, h: Uint8Array, path: Uint8Array[]): boolean {
  let index = chunkIndex
  for (const sibling of path) {
    if (index % 2 === 0) hashPair(h, sibling, h)
    else hashPair(sibling, h, h)
    index = Math.floor(index / 2)
  }
  return root.length === HASH_BYTES && same(h, root)
}
