import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Meter, SqliteChannelStore, fromLedger, generateKeyPair, randomBytes, signVoucher, encodeVoucher, decodeVoucher, verify, voucherMessage, toHex } from '@btt/channel'
import { note, report } from './lib.ts'

/** Channels paying at once (a seedbox with this many paying peers). */
const CHANNELS = Number(process.env.BENCH_CHANNELS ?? 64)
const PER_CHANNEL = Number(process.env.BENCH_VOUCHERS ?? 300)
const RUNS = Number(process.env.BENCH_RUNS ?? 3)

/**
 * channel.accept — vouchers/s through the payee's accept path: decode the binary voucher, verify
 * the signature, persist it (SQLite WAL, synchronous=FULL, group commit) and credit the session.
 * Vouchers of CHANNELS channels arrive continuously (a chunk per event-loop turn); each is
 * acknowledged only after its commit, and the run ends when the last one is acknowledged.
 * channel.accept_lockstep — the same, but every channel waits for its previous acknowledgement
 * before sending the next voucher and all channels move in step (the worst case for group commit).
 * Anchor of both: raw sodium-native ed25519 verify of the same vouchers on the same core, measured
 * in the same run. Median (by ratio) of RUNS runs.
 */
export async function benchChannel (): Promise<void> {
  const acceptRates: number[] = []
  const lockstepRates: number[] = []
  const verifyRates: number[] = []
  for (let run = 0; run < RUNS; run++) {
    const dir = await mkdtemp(join(tmpdir(), 'btt-bench-channel-'))
    const store = new SqliteChannelStore(join(dir, 'channels.db'))
    const payee = generateKeyPair()
    const ledgerId = randomBytes(32)
    const sessions = []
    const vouchers: Uint8Array[][] = []
    const payers: Uint8Array[] = []
    for (let c = 0; c < CHANNELS; c++) {
      const payer = generateKeyPair()
      const channelId = randomBytes(32)
      const channel = {
        id: toHex(channelId), ledgerId: toHex(ledgerId), payer: toHex(payer.publicKey), payee: toHex(payee.publicKey), nonce: toHex(randomBytes(32)),
        deposit: 10n ** 24n, claimed: 0n, expiresAt: Date.now() + 86_400_000, status: 'open' as const, challengeEndsAt: null
      }
      await store.updateIncoming(channel.id, () => ({ state: fromLedger(channel), result: undefined }))
      const meter = new Meter({ store, ledger: { channel: async () => channel }, payee: channel.payee, ledgerId: channel.ledgerId, policy: { threshold: 10n ** 30n, safetyMarginMs: 0 } })
      sessions.push(await meter.open({ peer: `p${c}`, channelId: channel.id, price: 1n }))
      vouchers.push(Array.from({ length: PER_CHANNEL }, (_, i) => encodeVoucher(signVoucher({ ledgerId, channelId, amount: BigInt(i + 1) * 1000n }, payer.secretKey))))
      payers.push(payer.publicKey)
    }
    const total = CHANNELS * PER_CHANNEL

    // streaming: half of the vouchers
    const half = Math.floor(PER_CHANNEL / 2)
    const t0 = performance.now()
    const acks: Array<Promise<unknown>> = []
    for (let i = 0; i < half; i++) {
      for (let c = 0; c < CHANNELS; c++) acks.push(sessions[c]!.accept(vouchers[c]![i]!))
      await new Promise(resolve => setImmediate(resolve))
    }
    await Promise.all(acks)
    const acceptRate = (half * CHANNELS) / ((performance.now() - t0) / 1000)
    // lockstep: the other half
    const t2 = performance.now()
    for (let i = half; i < PER_CHANNEL; i++) {
      await Promise.all(sessions.map(async (s, c) => await s.accept(vouchers[c]![i]!)))
    }
    const lockstepRate = ((PER_CHANNEL - half) * CHANNELS) / ((performance.now() - t2) / 1000)

    const t1 = performance.now()
    let ok = 0
    for (let i = 0; i < PER_CHANNEL; i++) {
      for (let c = 0; c < CHANNELS; c++) {
        const v = decodeVoucher(vouchers[c]![i]!)
        if (verify(v.signature, voucherMessage(v.ledgerId, v.channelId, v.amount), payers[c]!)) ok++
      }
    }
    const verifyRate = total / ((performance.now() - t1) / 1000)
    if (ok !== total) throw new Error('a voucher did not verify')
    await store.close()
    await rm(dir, { recursive: true, force: true })
    acceptRates.push(acceptRate)
    lockstepRates.push(lockstepRate)
    verifyRates.push(verifyRate)
    note(`channel run ${run + 1}/${RUNS}: accept ${acceptRate.toFixed(0)}/s (lockstep ${lockstepRate.toFixed(0)}/s), raw verify ${verifyRate.toFixed(0)}/s, ratio ${(acceptRate / verifyRate).toFixed(2)} (${(lockstepRate / verifyRate).toFixed(2)})`)
  }
  const anchor = 'sodium-native ed25519 verify, same vouchers, same run'
  for (const [bench, rates] of [['channel.accept', acceptRates], ['channel.accept_lockstep', lockstepRates]] as const) {
    const ratios = rates.map((a, i) => a / verifyRates[i]!)
    const mid = ratios.indexOf([...ratios].sort((a, b) => a - b)[Math.floor(ratios.length / 2)]!)
    report({ bench, value: rates[mid]!, unit: 'vouchers/s', anchor, anchor_value: verifyRates[mid]! })
  }
}
