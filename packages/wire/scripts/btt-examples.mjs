// Prints the "Worked examples" of docs/protocol/btt-speed.md from the built codec:
//   npm run build -w @btt/wire && node_modules/.bin/node packages/wire/scripts/btt-examples.mjs
import { createHash, createPrivateKey, createPublicKey, sign } from 'node:crypto'
import { decode, decodeBttHandshakeEntry, decodeBttMessage, encode, encodeBttHandshakeEntry, encodeBttMessage } from '../dist/index.js'

const sha256 = (...parts) => createHash('sha256').update(Buffer.concat(parts.map(p => Buffer.from(p)))).digest()
/** An ed25519 key pair from a 32-byte seed (PKCS#8 wrapping of the raw seed). */
function keyPair (seed) {
  const privateKey = createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]), format: 'der', type: 'pkcs8' })
  const pk = createPublicKey(privateKey).export({ format: 'der', type: 'spki' }).subarray(-32)
  return { privateKey, pk: new Uint8Array(pk) }
}

const seeder = keyPair(sha256('btt-speed example: seeder'))
const downloader = keyPair(sha256('btt-speed example: downloader'))
const ledger = sha256('btt-speed example: ledger id') // a real ledger id is 32 random bytes
const channel = sha256('btt-speed example: channel id') // a real one is BLAKE2b-256(ledgerId ‖ payer ‖ payee ‖ nonce)
const rate = 10_000_000_000_000n // 10^13 base units per KiB
const pieceLength = 262_144
const paid = rate * BigInt(pieceLength / 1024) // piece 0: 16 blocks of 16 KiB at 16 × rate each

function voucher (amount) {
  const amt = Buffer.alloc(16)
  amt.writeBigUInt64BE(amount >> 64n, 0)
  amt.writeBigUInt64BE(amount & 0xffffffffffffffffn, 8)
  const message = Buffer.concat([Buffer.from('btt-voucher-v1', 'ascii'), ledger, channel, amt])
  const sig = sign(null, message, downloader.privateKey)
  return new Uint8Array(Buffer.concat([Buffer.from([1]), ledger, channel, amt, sig]))
}

const messages = [
  ['reserve', 'seeder → downloader: reserve price 10^12 base units/KiB; challenge chunk 3 of piece 7', { t: 'reserve', price: 1_000_000_000_000n, piece: 7, chunk: 3 }],
  ['bid', 'downloader → seeder: offers 1.2 × 10^13 per KiB', { t: 'bid', rate: 12_000_000_000_000n }],
  ['bid_response', 'seeder → downloader: pay 10^13 per KiB to the seeder\'s key, on a channel with ≥ 10 BTT for ≥ 1 day; pieces are 256 KiB', { t: 'bid_response', rate, payee: seeder.pk, ledger, minDeposit: 10n ** 19n, minExpiry: 86_400, pieceLength }],
  ['bid` with `channel', 'downloader → seeder: the same bid, naming the channel it will pay on', { t: 'bid', rate: 12_000_000_000_000n, channel }],
  ['source_proof', 'any → seeder: SHA-256 of chunk 3 of piece 7 (here a chunk of 16 KiB of zero bytes)', { t: 'source_proof', piece: 7, chunk: 3, hash: sha256(new Uint8Array(16_384)) }],
  ['payment', `downloader → seeder: piece 0 verified; voucher for a cumulative ${paid} (256 KiB × 10^13), signed by the downloader`, { t: 'payment', voucher: voucher(paid), piece: 0 }],
  ['payment_ack', 'seeder → downloader: that voucher is on disk', { t: 'payment_ack', amount: paid, piece: 0 }]
]

const printable = b => b.every(c => c >= 0x20 && c <= 0x7e)
const hex = b => Buffer.from(b).toString('hex')
/** Bencode as text: binary byte strings as <hex>; a dict's entries one per line when `lines`. */
function show (v, indent = '') {
  if (typeof v === 'number') return `i${v}e`
  if (v instanceof Uint8Array) return `${v.length}:${printable(v) ? Buffer.from(v).toString('latin1') : `<${hex(v)}>`}`
  if (Array.isArray(v)) return `l${v.map(x => show(x)).join('')}e`
  const inner = indent + '  '
  return `d\n${[...v].map(([k, x]) => `${inner}${k.length}:${k} ${show(x, inner)}`).join('\n')}\n${indent}e`
}
function dump (b) {
  const lines = []
  for (let i = 0; i < b.length; i += 16) {
    const row = [...b.subarray(i, i + 16)]
    const h = row.map(c => c.toString(16).padStart(2, '0'))
    const left = h.slice(0, 8).join(' ').padEnd(23)
    const right = h.slice(8).join(' ').padEnd(23)
    const ascii = row.map(c => c >= 0x20 && c <= 0x7e ? String.fromCharCode(c) : '.').join('')
    lines.push(`${i.toString(16).padStart(8, '0')}  ${left}  ${right}  |${ascii}|`)
  }
  return lines.join('\n')
}
function section (title, note, payload, text, after = '') {
  console.log(`### ${title}\n\n${note}. ${payload.length} bytes:\n\n\`\`\`\n${text}\n\`\`\`\n\n\`\`\`\n${dump(payload)}\n\`\`\`\n${after}`)
}
/** The voucher's fields, to read the payment example. */
function voucherParts (v) {
  const at = [[0, 1, 'version'], [1, 33, 'ledgerId'], [33, 65, 'channelId'], [65, 81, 'amount u128 BE'], [81, 145, 'signature']]
  return `\nThe voucher, field by field:\n\n\`\`\`\n${at.map(([s, e, n]) => `${n.padEnd(15)}${hex(v.subarray(s, e))}`).join('\n')}\n\`\`\`\n`
}

const hs = encode({ m: { btt: 3 }, btt: encodeBttHandshakeEntry({ v: 1, pk: downloader.pk, ledger }) })
const back = decodeBttHandshakeEntry(decode(hs).get('btt'))
if (hex(back.pk) !== hex(downloader.pk) || hex(back.ledger) !== hex(ledger)) throw new Error('handshake does not round-trip')
section('Extended handshake', 'The downloader\'s BEP 10 extended handshake, reduced to the `btt` id in `m` and the `btt` entry (real clients add `v`, `p`, `reqq`, … around them)', hs, show(decode(hs)))

for (const [title, note, m] of messages) {
  const payload = encodeBttMessage(m)
  if (hex(encodeBttMessage(decodeBttMessage(payload))) !== hex(payload)) throw new Error(`${title} does not round-trip`)
  section(`\`${title}\``, note, payload, show(decode(payload)), m.t === 'payment' ? voucherParts(m.voucher) : '')
}
