/**
 * Storage benchmarks: the Merkle tree and proofs of storage of @btt/service-storage, loaded from
 * source (services/storage/src/merkle.ts and proof.ts).
 *
 * storage.sector_hash: hashSector over 64 MiB of 64 KiB sectors in memory, MB/s (10^6 bytes).
 * storage.tree_build: a 1 GiB random file read with a FileHandle (4 MiB reads, from the page cache
 *   since it was just written) and pushed into a TreeBuilder, MB/s: the hashing on the upload path.
 * storage.proof_gen: median ms of generateProof for k = 16 over NONCES random nonces, reading each
 *   touched 64 KiB sector from the file as the provider does (target < 20 ms).
 * storage.proof_verify: median ms of decodeProof + verifyProof (target < 2 ms).
 * storage.proof_size: median encoded proof, KiB (target < 16 KiB).
 *
 * The storage sources import './errors.js' and use a parameter property (errors.ts), which neither
 * `--experimental-strip-types` resolves nor strips; a module hook, limited to that directory, maps
 * './x.js' to './x.ts' and compiles those files with Node's own stripTypeScriptTypes (transform mode).
 * The bench declares the few signatures it uses rather than importing the sources' types, so its
 * typecheck does not pull the storage package in under bench's erasable-syntax-only settings.
 */
import { randomBytes, randomFillSync } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { mkdtemp, open, rm } from 'node:fs/promises'
import { registerHooks, stripTypeScriptTypes } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { median, note, report } from './lib.ts'

const FILE_BYTES = 1024 * 1024 * 1024
const WRITE_BYTES = 16 * 1024 * 1024
const READ_BYTES = 4 * 1024 * 1024
const HASH_MEMORY_BYTES = 64 * 1024 * 1024
const NONCES = 41
const K = 16

interface Tree { root: Uint8Array, size: number, height: number, leaves: number, serialize: () => Uint8Array }
interface Proof { segments: Uint8Array[], nodes: Uint8Array[] }
interface Merkle {
  SECTOR_BYTES: number
  hashSector: (bytes: Uint8Array, out?: Uint8Array) => Uint8Array
  TreeBuilder: new (size: number) => { push: (bytes: Uint8Array) => void, finish: () => Tree }
  Tree: { parse: (bytes: Uint8Array, size: number) => Tree }
}
interface Proofs {
  challengeIndices: (nonce: Uint8Array, root: Uint8Array, n: number, k: number) => number[]
  generateProof: (tree: Tree, indices: number[], readSector: (s: number) => Promise<Uint8Array>) => Promise<Proof>
  encodeProof: (proof: Proof) => Uint8Array
  decodeProof: (bytes: Uint8Array, opts: { n: number, k: number }) => Proof
  verifyProof: (root: Uint8Array, size: number, indices: number[], proof: Proof) => boolean
}

const STORAGE_SRC = new URL('../services/storage/src/', import.meta.url).href
let hooked = false

async function loadStorage (): Promise<{ merkle: Merkle, proofs: Proofs }> {
  if (!hooked) {
    hooked = true
    registerHooks({
      resolve: (specifier, context, nextResolve) => {
        if (context.parentURL?.startsWith(STORAGE_SRC) === true && specifier.startsWith('./') && specifier.endsWith('.js')) {
          return nextResolve(`${specifier.slice(0, -3)}.ts`, context)
        }
        return nextResolve(specifier, context)
      },
      load: (url, context, nextLoad) => {
        if (url.startsWith(STORAGE_SRC) && url.endsWith('.ts')) {
          const source = stripTypeScriptTypes(readFileSync(fileURLToPath(url), 'utf8'), { mode: 'transform', sourceUrl: url })
          return { format: 'module', source, shortCircuit: true }
        }
        return nextLoad(url, context)
      }
    })
  }
  const merkle = await import(`${STORAGE_SRC}merkle.ts`) as Merkle
  const proofs = await import(`${STORAGE_SRC}proof.ts`) as Proofs
  return { merkle, proofs }
}

function benchSectorHash (merkle: Merkle): void {
  const mem = randomBytes(HASH_MEMORY_BYTES)
  const sectors: Uint8Array[] = []
  for (let off = 0; off < mem.length; off += merkle.SECTOR_BYTES) sectors.push(mem.subarray(off, off + merkle.SECTOR_BYTES))
  const out = new Uint8Array(32)
  const rates: number[] = []
  for (let round = 0; round < 6; round++) {
    const t0 = performance.now()
    for (const s of sectors) merkle.hashSector(s, out)
    const secs = (performance.now() - t0) / 1000
    if (round > 0) rates.push(mem.length / 1e6 / secs) // round 0 warms up
  }
  report({ bench: 'storage.sector_hash', value: median(rates), unit: 'MB/s' })
}

export async function benchStorageProof (): Promise<void> {
  const { merkle, proofs } = await loadStorage()
  benchSectorHash(merkle)

  const dir = await mkdtemp(join(tmpdir(), 'btt-bench-storage-'))
  try {
    const path = join(dir, 'blob')
    const w0 = performance.now()
    const wf = await open(path, 'w')
    try {
      const buf = Buffer.allocUnsafe(WRITE_BYTES)
      for (let off = 0; off < FILE_BYTES; off += WRITE_BYTES) {
        randomFillSync(buf)
        await wf.write(buf, 0, WRITE_BYTES, off)
      }
    } finally { await wf.close() }
    note(`wrote 1 GiB of random bytes in ${Math.round(performance.now() - w0)} ms`)

    const fh = await open(path, 'r')
    try {
      const b0 = performance.now()
      const builder = new merkle.TreeBuilder(FILE_BYTES)
      const buf = Buffer.allocUnsafe(READ_BYTES)
      for (let off = 0; off < FILE_BYTES;) {
        const { bytesRead } = await fh.read(buf, 0, READ_BYTES, off)
        if (bytesRead === 0) throw new Error('the file is short')
        builder.push(buf.subarray(0, bytesRead))
        off += bytesRead
      }
      const built = builder.finish()
      const buildSecs = (performance.now() - b0) / 1000
      report({ bench: 'storage.tree_build', value: FILE_BYTES / 1e6 / buildSecs, unit: 'MB/s' })

      // as the provider does on a challenge: the tree comes back from its serialized form
      const serialized = built.serialize()
      const p0 = performance.now()
      const tree = merkle.Tree.parse(serialized, FILE_BYTES)
      note(`upper tree ${(serialized.length / 1024).toFixed(0)} KiB, height ${tree.height}; Tree.parse ${(performance.now() - p0).toFixed(2)} ms`)

      const readSector = async (s: number): Promise<Uint8Array> => {
        const offset = s * merkle.SECTOR_BYTES
        const length = Math.min(merkle.SECTOR_BYTES, FILE_BYTES - offset)
        const out = Buffer.allocUnsafe(length)
        let got = 0
        while (got < length) {
          const { bytesRead } = await fh.read(out, got, length - got, offset + got)
          if (bytesRead === 0) throw new Error('the file is short')
          got += bytesRead
        }
        return out
      }

      const gen: number[] = []
      const verify: number[] = []
      const sizes: number[] = []
      for (let j = 0; j < NONCES; j++) {
        const nonce = randomBytes(32)
        const g0 = performance.now()
        const indices = proofs.challengeIndices(nonce, tree.root, tree.leaves, K)
        const encoded = proofs.encodeProof(await proofs.generateProof(tree, indices, readSector))
        gen.push(performance.now() - g0)
        sizes.push(encoded.length / 1024)
        const v0 = performance.now()
        const ok = proofs.verifyProof(tree.root, FILE_BYTES, proofs.challengeIndices(nonce, tree.root, tree.leaves, K),
          proofs.decodeProof(encoded, { n: tree.leaves, k: K }))
        verify.push(performance.now() - v0)
        if (!ok) throw new Error('a proof did not verify')
      }
      note(`proof_gen over ${NONCES} nonces: min ${Math.min(...gen).toFixed(2)} ms, max ${Math.max(...gen).toFixed(2)} ms (the first warms up)`)
      report({ bench: 'storage.proof_gen', value: median(gen), unit: 'ms' })
      report({ bench: 'storage.proof_verify', value: median(verify), unit: 'ms' })
      report({ bench: 'storage.proof_size', value: median(sizes), unit: 'KiB' })
    } finally { await fh.close() }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}
