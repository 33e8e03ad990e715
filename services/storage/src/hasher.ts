import { availableParallelism } from 'node:os'
import { createRequire } from 'node:module'
import { Worker } from 'node:worker_threads'
import { StorageError } from './errors.js'
import { HASH_BYTES, SECTOR_BYTES, SECTOR_SEGMENTS, Tree, hashSector as hashSectorInto, leafCount } from './merkle.js'

/** Bytes handed to a worker at a time (64 sectors). */
const BATCH_BYTES = 64 * SECTOR_BYTES
/** Batches in flight before `push` waits: bounds memory at 8 × 4 MiB. */
const MAX_IN_FLIGHT = 8

/**
 * The sector hasher of merkle.ts (`hashSector` for whole 64 KiB sectors: 256 BLAKE2b-256 leaf
 * hashes, then pairs up to one root), as plain CommonJS for a worker thread: the worker gets the
 * path of sodium-native and nothing of ours, so it runs the same from src (tests) and dist.
 * `ParallelTreeBuilder`'s test checks it against `TreeBuilder` byte for byte.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads')
const sodium = require(workerData.sodium)
const SEG = 256, SEGS = 256, H = 32, SECTOR = SEG * SEGS
const hashes = new Uint8Array(SEGS * H)
const slots = [], pairs = []
for (let i = 0; i < SEGS; i++) { slots.push(hashes.subarray(i * H, (i + 1) * H)); if (i < SEGS / 2) pairs.push(hashes.subarray(i * 2 * H, (i + 1) * 2 * H)) }
parentPort.on('message', ({ id, buf, length }) => {
  const bytes = new Uint8Array(buf, 0, length)
  const n = length / SECTOR
  const roots = new Uint8Array(n * H)
  for (let s = 0; s < n; s++) {
    const base = s * SECTOR
    for (let i = 0; i < SEGS; i++) sodium.crypto_generichash(slots[i], bytes.subarray(base + i * SEG, base + (i + 1) * SEG))
    for (let w = SEGS / 2; w >= 1; w >>>= 1) for (let i = 0; i < w; i++) sodium.crypto_generichash(slots[i], pairs[i])
    roots.set(slots[0], s * H)
  }
  parentPort.postMessage({ id, roots: roots.buffer, buf }, [roots.buffer, buf])
})
`

let pool: Worker[] | undefined
let nextId = 0
const pending = new Map<number, { resolve: (r: { roots: Uint8Array, buf: ArrayBuffer }) => void, reject: (e: Error) => void }>()

/** Worker threads shared by every builder of this process; unref'd, so they never hold it open. */
function workers (): Worker[] {
  if (pool !== undefined) return pool
  const sodium = createRequire(import.meta.url).resolve('sodium-native')
  const count = Math.max(1, Math.min(2, availableParallelism() - 1))
  pool = Array.from({ length: count }, () => {
    const w = new Worker(WORKER_SOURCE, { eval: true, workerData: { sodium } })
    w.unref()
    w.on('message', (m: { id: number, roots: ArrayBuffer, buf: ArrayBuffer }) => {
      const p = pending.get(m.id)
      pending.delete(m.id)
      p?.resolve({ roots: new Uint8Array(m.roots), buf: m.buf })
    })
    w.on('error', (err: Error) => {
      for (const p of pending.values()) p.reject(err)
      pending.clear()
      pool = undefined
    })
    return w
  })
  return pool
}

/**
 * A TreeBuilder that hashes whole sectors in worker threads while the caller goes on receiving or
 * sending: bytes are copied into 4 MiB batches, each batch is hashed by a worker, and the sector
 * roots are combined at `finish()`. The last partial batch (and a short final sector) is hashed
 * here. Same roots as TreeBuilder.
 */
export class ParallelTreeBuilder {
  readonly size: number
  readonly #batchBytes: number
  #pushed = 0
  #batch: Uint8Array
  #fill = 0
  #batchIndex = 0
  readonly #roots: Uint8Array
  readonly #inFlight = new Set<Promise<void>>()
  readonly #spare: ArrayBuffer[] = []
  #failed: Error | undefined

  /** `batchBytes`: a multiple of 64 KiB; smaller batches finish sooner after the last byte. */
  constructor (size: number, batchBytes = BATCH_BYTES) {
    if (batchBytes % SECTOR_BYTES !== 0 || batchBytes < SECTOR_BYTES) throw new RangeError('batchBytes must be a positive multiple of 64 KiB')
    this.size = size
    this.#batchBytes = batchBytes
    const sectors = Math.ceil(leafCount(size) / SECTOR_SEGMENTS)
    this.#roots = new Uint8Array(sectors * HASH_BYTES)
    this.#batch = new Uint8Array(batchBytes)
  }

  get pushed (): number { return this.#pushed }

  /** Copy `bytes` in; waits only when MAX_IN_FLIGHT batches are being hashed. */
  async push (bytes: Uint8Array): Promise<void> {
    if (this.#failed !== undefined) throw this.#failed
    if (this.#pushed + bytes.length > this.size) throw new StorageError('STORAGE_SIZE_MISMATCH', `${this.#pushed + bytes.length} bytes pushed into a tree of ${this.size}`)
    this.#pushed += bytes.length
    let off = 0
    while (off < bytes.length) {
      const take = Math.min(this.#batchBytes - this.#fill, bytes.length - off)
      this.#batch.set(off === 0 && take === bytes.length ? bytes : bytes.subarray(off, off + take), this.#fill)
      this.#fill += take
      off += take
      if (this.#fill === this.#batchBytes) {
        this.dispatch()
        while (this.#inFlight.size >= MAX_IN_FLIGHT) await Promise.race(this.#inFlight)
        if (this.#failed !== undefined) throw this.#failed
      }
    }
  }

  private dispatch (): void {
    const index = this.#batchIndex++
    const buf = this.#batch.buffer as ArrayBuffer
    const length = this.#fill
    this.#batch = new Uint8Array(this.#spare.pop() ?? new ArrayBuffer(this.#batchBytes))
    this.#fill = 0
    const list = workers()
    const w = list[index % list.length] as Worker
    const id = nextId++
    const done = new Promise<{ roots: Uint8Array, buf: ArrayBuffer }>((resolve, reject) => { pending.set(id, { resolve, reject }) })
    w.postMessage({ id, buf, length }, [buf])
    const p = done.then(({ roots, buf: back }) => {
      this.#roots.set(roots, index * (this.#batchBytes / SECTOR_BYTES) * HASH_BYTES)
      if (this.#spare.length < 2) this.#spare.push(back)
    }, (err: Error) => { this.#failed = err }).finally(() => { this.#inFlight.delete(p) })
    this.#inFlight.add(p)
  }

  async finish (): Promise<Tree> {
    if (this.#pushed !== this.size) throw new StorageError('STORAGE_SIZE_MISMATCH', `${this.#pushed} bytes pushed into a tree of ${this.size}`)
    await Promise.all(this.#inFlight)
    if (this.#failed !== undefined) throw this.#failed
    if (this.#fill > 0) {
      // the tail (< 4 MiB) here: whole sectors and the short last one, as hashSector hashes them
      const base = this.#batchIndex * (this.#batchBytes / SECTOR_BYTES)
      const sectors = Math.ceil(this.#fill / SECTOR_BYTES)
      const roots = tailRoots(this.#batch.subarray(0, this.#fill), sectors)
      this.#roots.set(roots, base * HASH_BYTES)
    }
    return Tree.fromSectorRoots(this.size, this.#roots)
  }
}

/** Sector roots of `bytes` (the last sector may be short), hashed on this thread. */
function tailRoots (bytes: Uint8Array, sectors: number): Uint8Array {
  const out = new Uint8Array(sectors * HASH_BYTES)
  for (let s = 0; s < sectors; s++) {
    hashSectorInto(bytes.subarray(s * SECTOR_BYTES, Math.min(bytes.length, (s + 1) * SECTOR_BYTES)), out.subarray(s * HASH_BYTES, (s + 1) * HASH_BYTES))
  }
  return out
}
