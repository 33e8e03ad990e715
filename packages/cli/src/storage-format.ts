import { btt } from './format.js'
import { bytes } from './seed-format.js'

/** A stored file as GET /v1/services/storage/files returns it (amounts: decimal strings of base units). */
export interface StoredFileJson {
  id: string
  name: string
  plainSize: number
  size: number
  root: string
  provider: string
  addrs: string[]
  account: string
  channel: string
  start: number
  period: number
  periods: number
  price: string
  retrieval: string
  allowedMisses: number
  paidPeriods: number
  proofs: number
  misses: number
  spent: string
  status: string
  lastProof?: number
  lastError?: string
  created: number
}

export function printFile (cmd: { log: (s: string) => void }, f: StoredFileJson): void {
  cmd.log(`id        ${f.id}`)
  cmd.log(`provider  ${f.provider}`)
  cmd.log(`size      ${bytes(f.plainSize)} (${bytes(f.size)} encrypted)`)
  cmd.log(`root      ${f.root}`)
  cmd.log(`contract  ${f.periods} periods of ${f.period} s from ${new Date(f.start * 1000).toISOString().replace(/\.\d+Z$/, 'Z')}; ${btt(f.price)} per GiB·month, retrieval ${btt(f.retrieval)} per GiB; ${f.allowedMisses} missed proofs allowed`)
  cmd.log(`status    ${f.status}: ${f.paidPeriods}/${f.periods} periods paid, ${f.proofs} proofs, spent ${btt(f.spent)}`)
}

/** Whether the admin API (and so the node) is on this machine: then the node reads and writes the files itself. */
export function isLoopback (url: string): boolean {
  const host = new URL(url).hostname
  return host === 'localhost' || host === '[::1]' || host === '::1' || /^127\./.test(host)
}
