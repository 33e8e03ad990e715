// A second process on a ledger database: runs claims and top-ups through group commit and prints
// what it was paid. Run with `node --import <ts-hooks> ledger-process.ts` (see ts-hooks.mjs).
// Input (env LEDGER_JOB, JSON): { path, ledgerId, payer, payerSecret, channels: [{ id, payee }], rounds, step }
import { fromHex, signVoucher } from '@btt/channel'
import { Ledger } from '../ledger.js'

interface Job { path: string, payer: string, payerSecret: string, channels: Array<{ id: string, payee: string }>, rounds: number, step: string }

const job = JSON.parse(process.env.LEDGER_JOB ?? '') as Job
const ledger = new Ledger({ path: job.path })
const secret = fromHex(job.payerSecret, 64, 'secret')
const ledgerId = fromHex(ledger.ledgerId, 32, 'ledger')
const paid = job.channels.map(() => 0n)
let topups = 0
const step = BigInt(job.step)
for (let round = 1; round <= job.rounds; round++) {
  const ops: Array<Promise<unknown>> = []
  job.channels.forEach((c, i) => {
    const v = signVoucher({ ledgerId, channelId: fromHex(c.id, 32, 'channel'), amount: BigInt(round) * step + BigInt(i) }, secret)
    ops.push(ledger.enqueue(() => ledger.claim(c.payee, v)).then(r => { paid[i] = (paid[i] as bigint) + r.paid }))
  })
  const first = job.channels[0]
  if (first !== undefined) ops.push(ledger.enqueue(() => ledger.topup(job.payer, { channelId: first.id, amount: 1n })).then(() => { topups++ }))
  await Promise.all(ops)
}
ledger.close()
process.stdout.write(JSON.stringify({ paid: paid.map(String), topups }) + '\n')
