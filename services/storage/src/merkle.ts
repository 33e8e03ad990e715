/**
 * The Merkle tree of a stored blob.
 *
 * Leaves are 256-byte segments (the last one may be shorter and is hashed as it is):
 * leaf = BLAKE2b-256(segment), node = BLAKE2b-256(left ‖ right). With n leaves the tree has height
 * H = ceil(log2 n) (0 for one leaf: the root is then the leaf hash); every position at or past the
 * width of a level is the zero node Z_h (Z_0 = 32 zero bytes, Z_{h+1} = node(Z_h, Z_h)).
 *
 * The padding makes every aligned sector (256 leaves, 64 KiB) and chunk (16384 leaves, 4 MiB) a
 * complete subtree, rooted at level `min(8, H)` and `min(14, H)`. A provider keeps only the upper
 * tree (sector level to root, about 1 MiB per GiB) and rehashes a sector from its bytes when a proof
 * needs a node below it.
 */
import sodium from 'sodium-native'
import { StorageError } from './errors.js'

/** Bytes of a leaf. */
export const SEGMENT_BYTES = 256
/** Leaves of a sector: the unit the provider rehashes from disk for a proof. */
export const SECTOR_SEGMENTS = 256
export const SECTOR_BYTES = SEGMENT_BYTES * SECTOR_SEGMENTS
/** log2(SECTOR_SEGMENTS): a sector's root is at this level (or at the root, for smaller blobs). */
export const SECTOR_LEVEL = 8
/** The retrieval unit: one chunk is delivered, proven and paid at a time. */
export const CHUNK_BYTES = 16 * 1024 * 1024
export const CHUNK_SEGMENTS = CHUNK_BYTES / SEGMENT_BYTES
/** log2(CHUNK_SEGMENTS) */
export const CHUNK_LEVEL = 16
export const HASH_BYTES = 32

/** Sizes are safe integers, so n < 2^45 and H ≤ 45; zero nodes are precomputed this far. */
const MAX_HEIGHT = 64

const ZERO: Uint8Array[] = [new Uint8Array(HASH_BYTES)]
{
  const pair = new Uint8Array(2 * HASH_BYTES)
  for (let h = 1; h <= MAX_HEIGHT; h++) {
    const z = new Uint8Array(HASH_BYTES)
    sodium.crypto_generichash(z, pair)
    pair.set(z, 0)
    pair.set(z, HASH_BYTES)
    ZERO.push(z)
  }
}

/** Z_level, shared: callers must not modify it. */
export function zeroNode (level: number): Uint8Array {
  const z = ZERO[level]
  if (z === undefined) throw new StorageError('STORAGE_BAD_INDEX', `no zero node at level ${level}`)
  return z
}

/** Number of leaves of a blob of `size` bytes (size ≥ 1). */
export function leafCount (size: number): number {
  if (!Number.isSafeInteger(size) || size < 1) throw new StorageError('STORAGE_BAD_SIZE', `a blob size is a positive integer, not ${size}`)
  return Math.ceil(size / SEGMENT_BYTES)
}

/** ceil(log2 n) for n ≥ 1. */
export function ceilLog2 (n: number): number {
  let h = 0
  while (2 ** h < n) h++
  return h
}

/** Width of a level: positions at or past it are zero nodes. Exact: division by a power of two. */
export function levelWidth (n: number, level: number): number {
  return Math.ceil(n / 2 ** level)
}

const pairScratch = new Uint8Array(2 * HASH_BYTES)

/** out = node(left, right) */
export function hashPair (left: Uint8Array, right: Uint8Array, out: Uint8Array): Uint8Array {
  pairScratch.set(left, 0)
  pairScratch.set(right, HASH_BYTES)
  sodium.crypto_generichash(out, pairScratch)
  return out
}

/** Lifts a node alone in its subtree from level `from` to `to`: node(x, Z_from), node(·, Z_from+1), … */
function lift (node: Uint8Array, from: number, to: number, out: Uint8Array): Uint8Array {
  if (out !== node) out.set(node)
  for (let l = from; l < to; l++) hashPair(out, zeroNode(l), out)
  return out
}

/**
 * Hashes a sector with one scratch buffer and views made once: the input is copied into `stage`
 * (a 64 KiB copy costs ~5 µs, less than the 256 subarray() calls it saves), leaf hashes go to
 * `hashes`, and each level is computed in place at the front of `hashes` (node i of the next level
 * reads pair i and overwrites slot i, which BLAKE2b allows: the input is consumed before the output
 * is written).
 */
class SectorHasher {
  readonly stage = new Uint8Array(SECTOR_BYTES)
  private readonly segments: Uint8Array[] = []
  private readonly hashes = new Uint8Array(SECTOR_SEGMENTS * HASH_BYTES)
  private readonly slots: Uint8Array[] = []
  private readonly pairs: Uint8Array[] = []

  constructor () {
    for (let i = 0; i < SECTOR_SEGMENTS; i++) {
      this.segments.push(this.stage.subarray(i * SEGMENT_BYTES, (i + 1) * SEGMENT_BYTES))
      this.slots.push(this.hashes.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES))
      if (i < SECTOR_SEGMENTS / 2) this.pairs.push(this.hashes.subarray(i * 2 * HASH_BYTES, (i + 1) * 2 * HASH_BYTES))
    }
  }

  /** Root of the first `len` bytes of `stage` (1..64 KiB), at level ceil(log2(ceil(len / 256))). */
  hash (len: number, out: Uint8Array): Uint8Array {
    const { segments, slots, pairs } = this
    const full = len >>> 8
    for (let i = 0; i < full; i++) sodium.crypto_generichash(slots[i] as Uint8Array, segments[i] as Uint8Array)
    let w = full
    if (full * SEGMENT_BYTES < len) sodium.crypto_generichash(slots[w++] as Uint8Array, this.stage.subarray(full * SEGMENT_BYTES, len))
    for (let level = 0; w > 1; level++) {
      if ((w & 1) === 1) this.hashes.set(zeroNode(level), (w++) * HASH_BYTES)
      w >>>= 1
      for (let i = 0; i < w; i++) sodium.crypto_generichash(slots[i] as Uint8Array, pairs[i] as Uint8Array)
    }
    out.set(slots[0] as Uint8Array)
    return out
  }
}

const shared = new SectorHasher()

function checkOut (out: Uint8Array): void {
  if (out.length !== HASH_BYTES) throw new StorageError('STORAGE_BAD_INDEX', `a hash output is ${HASH_BYTES} bytes, not ${out.length}`)
}

/**
 * The root of one sector's bytes (a full 64 KiB sector, or a final shorter one), written to `out`.
 * For m = ceil(len / 256) leaves the result is the node at level ceil(log2 m): the sector root
 * (level 8) for a full sector; for a short final sector the smallest subtree that holds it, which
 * `Tree.fromSectorRoots` lifts to the sector level with zero nodes. Synchronous and self-contained
 * (module scratch only), so it can run in a worker thread.
 */
export function hashSector (bytes: Uint8Array, out: Uint8Array = new Uint8Array(HASH_BYTES)): Uint8Array {
  if (bytes.length < 1 || bytes.length > SECTOR_BYTES) throw new StorageError('STORAGE_BAD_SECTOR', `a sector is 1 to ${SECTOR_BYTES} bytes, not ${bytes.length}`)
  checkOut(out)
  shared.stage.set(bytes)
  return shared.hash(bytes.length, out)
}

/**
 * All levels of one sector, 0 (leaf hashes) up to `top` (its root, one node): for proofs, which need
 * siblings below the sector level. Positions past the sector's data are zero nodes.
 */
export function sectorLevels (bytes: Uint8Array, top: number): Uint8Array[] {
  const len = bytes.length
  const m = Math.ceil(len / SEGMENT_BYTES)
  let cur = new Uint8Array(m * HASH_BYTES)
  for (let i = 0; i < m; i++) {
    sodium.crypto_generichash(cur.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES), bytes.subarray(i * SEGMENT_BYTES, Math.min(len, (i + 1) * SEGMENT_BYTES)))
  }
  const levels = [cur]
  for (let l = 0; l < top; l++) {
    const w = cur.length / HASH_BYTES
    const next = new Uint8Array(Math.ceil(w / 2) * HASH_BYTES)
    const half = w >>> 1
    for (let i = 0; i < half; i++) {
      sodium.crypto_generichash(next.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES), cur.subarray(i * 2 * HASH_BYTES, (i + 1) * 2 * HASH_BYTES))
    }
    if ((w & 1) === 1) hashPair(cur.subarray((w - 1) * HASH_BYTES), zeroNode(l), next.subarray(half * HASH_BYTES))
    levels.push(next)
    cur = next
  }
  return levels
}

/**
 * Reduces `width` nodes at the front of `buf` (which has room for width + 1) from level `from` to
 * `to`, in place, padding with zero nodes; returns a view of the result (buf's first 32 bytes).
 */
function reduceInPlace (buf: Uint8Array, width: number, from: number, to: number): Uint8Array {
  let w = width
  for (let l = from; l < to; l++) {
    if (w % 2 === 1) buf.set(zeroNode(l), (w++) * HASH_BYTES)
    w /= 2
    for (let i = 0; i < w; i++) {
      sodium.crypto_generichash(buf.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES), buf.subarray(i * 2 * HASH_BYTES, (i + 1) * 2 * HASH_BYTES))
    }
  }
  return buf.subarray(0, HASH_BYTES)
}

/**
 * The node at `level` over `bytes` taken as the leaves of an aligned subtree of that level (1 to
 * 2^level segments; positions past them are zero nodes). A chunk's root is `subtreeRoot(chunk, chunkLevel)`.
 */
export function subtreeRoot (bytes: Uint8Array, level: number): Uint8Array {
  const len = bytes.length
  const m = Math.ceil(len / SEGMENT_BYTES)
  if (len < 1 || m > 2 ** level) throw new StorageError('STORAGE_BAD_SECTOR', `${len} bytes do not fit a subtree of level ${level}`)
  const sectors = Math.ceil(len / SECTOR_BYTES)
  const buf = new Uint8Array((sectors + 1) * HASH_BYTES)
  for (let s = 0; s < sectors; s++) {
    const out = buf.subarray(s * HASH_BYTES, (s + 1) * HASH_BYTES)
    const part = bytes.subarray(s * SECTOR_BYTES, Math.min(len, (s + 1) * SECTOR_BYTES))
    hashSector(part, out)
    if (sectors > 1) lift(out, ceilLog2(Math.ceil(part.length / SEGMENT_BYTES)), SECTOR_LEVEL, out)
  }
  const from = sectors > 1 ? SECTOR_LEVEL : ceilLog2(m)
  return reduceInPlace(buf, sectors, from, level).slice()
}

interface Layout {
  size: number
  leaves: number
  height: number
  sectorLevel: number
  /** widths[j] and offsets[j] (bytes) of level sectorLevel + j in the nodes buffer */
  widths: number[]
  offsets: number[]
  bytes: number
}

function layoutOf (size: number): Layout {
  const leaves = leafCount(size)
  const height = ceilLog2(leaves)
  const sectorLevel = Math.min(SECTOR_LEVEL, height)
  const widths: number[] = []
  const offsets: number[] = []
  let bytes = 0
  for (let l = sectorLevel; l <= height; l++) {
    const w = levelWidth(leaves, l)
    widths.push(w)
    offsets.push(bytes)
    bytes += w * HASH_BYTES
  }
  return { size, leaves, height, sectorLevel, widths, offsets, bytes }
}

/** Fills the levels above the sector level of `nodes` from the sector level. */
function fillUpper (layout: Layout, nodes: Uint8Array): void {
  const { widths, offsets, sectorLevel } = layout
  for (let j = 0; j + 1 < widths.length; j++) {
    const w = widths[j] as number
    const src = offsets[j] as number
    const dst = offsets[j + 1] as number
    const half = Math.floor(w / 2)
    for (let i = 0; i < half; i++) {
      sodium.crypto_generichash(nodes.subarray(dst + i * HASH_BYTES, dst + (i + 1) * HASH_BYTES), nodes.subarray(src + i * 2 * HASH_BYTES, src + (i + 1) * 2 * HASH_BYTES))
    }
    if (w % 2 === 1) {
      hashPair(nodes.subarray(src + (w - 1) * HASH_BYTES, src + w * HASH_BYTES), zeroNode(sectorLevel + j), nodes.subarray(dst + half * HASH_BYTES, dst + (half + 1) * HASH_BYTES))
    }
  }
}

function same (a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.length).equals(b)
}

/**
 * The upper tree of a blob: every level from the sector level (`min(8, height)`) up to the root.
 * Immutable; `node()` returns views into it, which callers must not modify.
 */
export class Tree {
  readonly size: number
  /** n = ceil(size / 256) */
  readonly leaves: number
  /** H = ceil(log2 n) */
  readonly height: number
  /** min(8, H): the lowest level kept */
  readonly sectorLevel: number
  /** min(14, H): the level of a chunk's root */
  readonly chunkLevel: number
  /** Sectors (64 KiB, the last may be shorter) = the width of the sector level. */
  readonly sectors: number
  /** Chunks (4 MiB, the last may be shorter). */
  readonly chunks: number
  readonly root: Uint8Array
  readonly #layout: Layout
  readonly #nodes: Uint8Array

  private constructor (layout: Layout, nodes: Uint8Array) {
    this.#layout = layout
    this.#nodes = nodes
    this.size = layout.size
    this.leaves = layout.leaves
    this.height = layout.height
    this.sectorLevel = layout.sectorLevel
    this.chunkLevel = Math.min(CHUNK_LEVEL, layout.height)
    this.sectors = layout.widths[0] as number
    this.chunks = Math.ceil(layout.size / CHUNK_BYTES)
    this.root = this.node(layout.height, 0)
  }

  /**
   * Combines sector roots hashed elsewhere (with `hashSector`, e.g. in workers): one per sector, in
   * order, either as an array of 32-byte roots or as one buffer of them back to back. The last root
   * is as `hashSector` returns it for a short final sector; it is lifted to the sector level here.
   */
  static fromSectorRoots (size: number, roots: Uint8Array[] | Uint8Array): Tree {
    const layout = layoutOf(size)
    const sectors = layout.widths[0] as number
    const nodes = new Uint8Array(layout.bytes)
    if (roots instanceof Uint8Array) {
      if (roots.length !== sectors * HASH_BYTES) throw new StorageError('STORAGE_BAD_TREE', `${size} bytes have ${sectors} sector roots (${sectors * HASH_BYTES} bytes), not ${roots.length} bytes`)
      nodes.set(roots)
    } else {
      if (roots.length !== sectors) throw new StorageError('STORAGE_BAD_TREE', `${size} bytes have ${sectors} sector roots, not ${roots.length}`)
      for (let s = 0; s < sectors; s++) {
        const r = roots[s] as Uint8Array
        if (r.length !== HASH_BYTES) throw new StorageError('STORAGE_BAD_TREE', `sector root ${s} is ${r.length} bytes`)
        nodes.set(r, s * HASH_BYTES)
      }
    }
    const lastLeaves = layout.leaves - (sectors - 1) * SECTOR_SEGMENTS
    const last = nodes.subarray((sectors - 1) * HASH_BYTES, sectors * HASH_BYTES)
    lift(last, ceilLog2(lastLeaves), layout.sectorLevel, last)
    fillUpper(layout, nodes)
    return new Tree(layout, nodes)
  }

  /**
   * Reads `serialize()` output for a blob of `size` bytes. The length must be exact. With
   * `verify`, every node above the sector level is recomputed (about 6 ms per GiB stored) and an
   * inconsistent tree refused; without it a damaged upper node only shows as failing proofs.
   */
  static parse (bytes: Uint8Array, size: number, opts: { verify?: boolean } = {}): Tree {
    let layout: Layout
    try {
      layout = layoutOf(size)
    } catch (err) {
      throw new StorageError('STORAGE_BAD_TREE', `no tree for size ${size}`, { cause: err })
    }
    if (bytes.length !== layout.bytes) throw new StorageError('STORAGE_BAD_TREE', `the tree of ${size} bytes is ${layout.bytes} bytes, not ${bytes.length}`)
    const nodes = bytes.slice()
    if (opts.verify === true) {
      const check = new Uint8Array(layout.bytes)
      check.set(nodes.subarray(0, (layout.widths[0] as number) * HASH_BYTES))
      fillUpper(layout, check)
      if (!same(check, nodes)) throw new StorageError('STORAGE_BAD_TREE', 'the tree is inconsistent: an upper node is not the hash of its children')
    }
    return new Tree(layout, nodes)
  }

  /** The levels from the sector level to the root, back to back (32 bytes a node, no header). */
  serialize (): Uint8Array {
    return this.#nodes.slice()
  }

  /** The node at (level, index), level from sectorLevel to height; Z_level past the level's width. */
  node (level: number, index: number): Uint8Array {
    const { sectorLevel, height, widths, offsets } = this.#layout
    if (!Number.isInteger(level) || level < sectorLevel || level > height) throw new StorageError('STORAGE_BAD_INDEX', `the tree keeps levels ${sectorLevel} to ${height}, not ${level}`)
    if (!Number.isSafeInteger(index) || index < 0) throw new StorageError('STORAGE_BAD_INDEX', `bad node index ${index}`)
    const j = level - sectorLevel
    if (index >= (widths[j] as number)) return zeroNode(level)
    const at = (offsets[j] as number) + index * HASH_BYTES
    return this.#nodes.subarray(at, at + HASH_BYTES)
  }
}

/**
 * Builds the tree of a blob from its bytes in order, in pushes of any size. Bytes are copied once
 * into a 64 KiB staging buffer and hashed from there (faster than hashing from views of the input,
 * see SectorHasher); nothing else is kept but the sector roots (32 bytes per 64 KiB).
 */
export class TreeBuilder {
  readonly size: number
  readonly #sectors: number
  readonly #roots: Uint8Array
  readonly #hasher = new SectorHasher()
  #pushed = 0
  #fill = 0
  #sector = 0
  #tree: Tree | undefined

  constructor (size: number) {
    this.size = size
    this.#sectors = Math.ceil(leafCount(size) / SECTOR_SEGMENTS)
    this.#roots = new Uint8Array(this.#sectors * HASH_BYTES)
  }

  /** Bytes pushed so far. */
  get pushed (): number { return this.#pushed }

  push (bytes: Uint8Array): void {
    if (this.#pushed + bytes.length > this.size) throw new StorageError('STORAGE_SIZE_MISMATCH', `${this.#pushed + bytes.length} bytes pushed into a tree of ${this.size}`)
    this.#pushed += bytes.length
    const stage = this.#hasher.stage
    let off = 0
    while (off < bytes.length) {
      const take = Math.min(SECTOR_BYTES - this.#fill, bytes.length - off)
      stage.set(off === 0 && take === bytes.length ? bytes : bytes.subarray(off, off + take), this.#fill)
      this.#fill += take
      off += take
      if (this.#fill === SECTOR_BYTES) {
        const s = this.#sector++
        this.#hasher.hash(SECTOR_BYTES, this.#roots.subarray(s * HASH_BYTES, (s + 1) * HASH_BYTES))
        this.#fill = 0
      }
    }
  }

  /** The tree; throws STORAGE_SIZE_MISMATCH unless exactly `size` bytes were pushed. */
  finish (): Tree {
    if (this.#tree !== undefined) return this.#tree
    if (this.#pushed !== this.size) throw new StorageError('STORAGE_SIZE_MISMATCH', `${this.#pushed} bytes pushed into a tree of ${this.size}`)
    if (this.#fill > 0) {
      const s = this.#sector++
      this.#hasher.hash(this.#fill, this.#roots.subarray(s * HASH_BYTES, (s + 1) * HASH_BYTES))
      this.#fill = 0
    }
    this.#tree = Tree.fromSectorRoots(this.size, this.#roots)
    return this.#tree
  }
}
