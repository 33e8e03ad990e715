/**
 * Runs every benchmark (or those named: `npm run bench -- start`), each printing one JSON line per
 * figure: {"bench": "<area>.<figure>", "value": n, "unit": "...", "anchor"?, "anchor_value"?, "ratio"?}.
 */
import { benchChannel } from './channel.ts'
import { benchFuzz } from './fuzz.ts'
import { benchLedger } from './ledger.ts'
import { benchProxy } from './proxy.ts'
import { benchSeeding } from './seeding.ts'
import { benchSeedingPaid } from './seeding-paid.ts'
import { benchStart } from './start.ts'
import { benchStorage } from './storage.ts'
import { benchStorageProof } from './storage-proof.ts'
import { benchTracker } from './tracker.ts'
import { benchWire } from './wire.ts'

const BENCHES: Record<string, () => Promise<void>> = {
  start: benchStart,
  ledger: benchLedger,
  channel: benchChannel,
  fuzz: benchFuzz,
  seeding: benchSeeding,
  'seeding-paid': benchSeedingPaid,
  'storage-proof': benchStorageProof,
  storage: benchStorage,
  tracker: benchTracker,
  proxy: benchProxy,
  wire: benchWire
}

const wanted = process.argv.slice(2)
for (const name of wanted) {
  if (!(name in BENCHES)) {
    process.stderr.write(`unknown benchmark "${name}" (known: ${Object.keys(BENCHES).join(', ')})\n`)
    process.exit(2)
  }
}
for (const [name, run] of Object.entries(BENCHES)) {
  if (wanted.length > 0 && !wanted.includes(name)) continue
  await run()
}
