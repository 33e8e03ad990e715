import { createHash } from 'node:crypto'
import {
  isSeedingError, bencode, decodeExtendedHandshake, decodeMetadataMessage, decodePex, parseInfo, parseTorrent
} from '@btt/service-seeding'
import {
  bencodeSeeds, fuzzInput, handshakeSeeds, makeRng, metadataSeeds, pexSeeds, torrentSeeds, type Seed
} from '../services/seeding/src/test-support/fuzz.ts'
import { note, report } from './lib.ts'

/** Inputs per decoder; the acceptance line asks for at least 1,000,000. */
const INPUTS = Number(process.env.BENCH_FUZZ_INPUTS ?? 1_000_000)
/** Inputs are generated in batches so the timer measures only the decoder. */
const BATCH = 10_000
/** Crashing inputs printed (hex) to stderr, to reproduce. */
const SHOWN = 5

interface Target {
  name: string
  seeds: Seed[]
  codes: RegExp
  /** Throws a SeedingError on bad input; any other throw is a crash. */
  run: (bytes: Uint8Array, size?: number) => void
}

function broken (what: string): never {
  throw new Error(what)
}

const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.compare(a, b) === 0

/**
 * fuzz.<decoder> — inputs/s through one decoder (bencode decode, parseTorrent, the BEP 10
 * handshake, ut_pex, ut_metadata), over INPUTS structure-aware inputs from the unit tests'
 * generators with a different seed. fuzz.<decoder>_crashes — inputs that threw anything other
 * than a coded SeedingError of the decoder's families, or broke an invariant (bencode: encode of
 * the decoded value is the input; .torrent: the infohash is sha1 of the info bytes). Must be 0:
 * the process exits non-zero otherwise.
 */
export async function benchFuzz (): Promise<void> {
  const r = makeRng(0xb77)
  const torrents = torrentSeeds(r, 200)
  const targets: Target[] = [
    {
      name: 'bencode',
      seeds: [...bencodeSeeds(r, 300), ...torrents.slice(0, 50), ...handshakeSeeds(r, 50), ...pexSeeds(r, 50)],
      codes: /^BENCODE_/,
      run: (bytes) => { if (!same(bencode.encode(bencode.decode(bytes)), bytes)) broken('encode(decode(x)) !== x') }
    },
    {
      name: 'torrent',
      seeds: torrents,
      codes: /^(BENCODE|TORRENT)_/,
      run: (bytes) => {
        const m = parseTorrent(bytes)
        if (m.infoHash !== createHash('sha1').update(m.info).digest('hex')) broken('infoHash is not sha1(info)')
        if (parseInfo(m.info, m.infoHash).length !== m.length) broken('parseInfo disagrees')
      }
    },
    {
      name: 'ext_handshake',
      seeds: handshakeSeeds(r, 200),
      codes: /^(BENCODE|EXT)_/,
      run: (bytes) => {
        const hs = decodeExtendedHandshake(bytes)
        for (const id of hs.m.values()) if (!(id >= 0 && id <= 255)) broken(`ext id ${id}`)
      }
    },
    {
      name: 'ut_pex',
      seeds: pexSeeds(r, 200),
      codes: /^(BENCODE|EXT)_/,
      run: (bytes) => {
        const { added, dropped } = decodePex(bytes)
        if (added.length > 200 || dropped.length > 200) broken('PEX cap')
      }
    },
    {
      name: 'ut_metadata',
      seeds: metadataSeeds(r, 200),
      codes: /^(BENCODE|EXT)_/,
      run: (bytes, size) => {
        const msg = decodeMetadataMessage(bytes, size)
        if (msg.msgType === 1 && (msg.data === undefined || msg.data.length > 16384)) broken('data length')
      }
    }
  ]

  let anyCrash = false
  for (const t of targets) {
    let crashes = 0
    let decodeMs = 0
    const inputs: Array<{ bytes: Uint8Array, size?: number }> = new Array(BATCH)
    const gen = makeRng(0x5eed)
    for (let done = 0; done < INPUTS; done += BATCH) {
      const n = Math.min(BATCH, INPUTS - done)
      // a fresh rng per input, as in the unit tests: a crash reproduces from its number alone
      for (let i = 0; i < n; i++) inputs[i] = fuzzInput(t.seeds, makeRng(gen.int(2 ** 32)))
      const t0 = performance.now()
      for (let i = 0; i < n; i++) {
        const { bytes, size } = inputs[i]!
        try {
          t.run(bytes, size)
        } catch (err) {
          if (isSeedingError(err) && t.codes.test(err.code)) continue
          crashes++
          if (crashes <= SHOWN) note(`fuzz.${t.name} crash: ${String(err)} on ${Buffer.from(bytes.subarray(0, 256)).toString('hex')}${size !== undefined ? ` (size ${size})` : ''}`)
        }
      }
      decodeMs += performance.now() - t0
    }
    note(`fuzz.${t.name}: ${INPUTS} inputs, ${crashes} crashes, ${(decodeMs / 1000).toFixed(1)} s decoding`)
    report({ bench: `fuzz.${t.name}`, value: INPUTS / (decodeMs / 1000), unit: 'inputs/s' })
    report({ bench: `fuzz.${t.name}_crashes`, value: crashes, unit: 'crashes' })
    if (crashes > 0) anyCrash = true
  }
  if (anyCrash) process.exitCode = 1
}
