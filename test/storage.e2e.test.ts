import { createHash, randomBytes } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdir, open, readdir, readFile, stat, truncate, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { AdminClient, homePaths, readApiToken } from '@btt/node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runCli, startNodeProcess, tempHome, type NodeProcess } from './helpers/cli.js'
import { BTT, fundHome, ledgerHome, startLedgerProcess, type LedgerProcess } from './helpers/paid.js'

const MIB = 1024 * 1024
const PERIOD = 2
/** Retrieval chunk (services/storage merkle.ts CHUNK_BYTES). */
const CHUNK = 16 * MIB
/** A marker that must never appear on the provider's disk. */
const MARKER = Buffer.from('BTT-PLAINTEXT-MARKER-0123456789abcdef')
const NAME = 'quarterly-report-secret-name.bin'

interface FileJson { id: string, name: string, plainSize: number, size: number, root: string, start: number, period: number, periods: number, paidPeriods: number, proofs: number, misses: number, spent: string, status: string, price: string, lastError?: string }
interface ContractsJson { contracts: Array<{ id: string, status: string, paid_periods: number, earned: string, size: number }>, earned: string, usedBytes: number }

/** oclif wraps long error lines as `\n ›   `: join them back. */
const flat = (s: string): string => s.replace(/\s*\n\s*›\s*/g, ' ')

async function sha256 (path: string): Promise<string> {
  const h = createHash('sha256')
  for await (const c of createReadStream(path)) h.update(c as Buffer)
  return h.digest('hex')
}

/** Every file under `dir`, recursively. */
async function filesUnder (dir: string): Promise<string[]> {
  const out: string[] = []
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    if (e.isDirectory()) out.push(...await filesUnder(p))
    else if (e.isFile()) out.push(p)
  }
  return out
}

/** Whether `needle` occurs in any file under `dir` (read in 8 MiB windows that overlap by the needle's length). */
async function diskContains (dir: string, needle: Buffer): Promise<string | undefined> {
  for (const f of await filesUnder(dir)) {
    const fh = await open(f, 'r')
    try {
      const size = (await fh.stat()).size
      const win = Buffer.alloc(8 * MIB + needle.length)
      for (let off = 0; off < size; off += 8 * MIB) {
        const { bytesRead } = await fh.read(win, 0, win.length, off)
        if (win.subarray(0, bytesRead).includes(needle)) return f
      }
    } finally {
      await fh.close()
    }
  }
  return undefined
}

/** The storage charge of one period, as the contract defines it: ceil(price × size × period / (GiB × 30 d)). */
function periodAmount (price: bigint, size: number, period: number): bigint {
  const den = (1n << 30n) * 2_592_000n
  return (price * BigInt(size) * BigInt(period) + den - 1n) / den
}

describe('storage: put, prove, get between two real nodes', () => {
  let ledger: LedgerProcess
  let providerHome: string
  let requesterHome: string
  let provider: NodeProcess
  let requester: NodeProcess
  let providerAddr: string
  let dir: string
  let src: string
  let file: FileJson

  const cli = async (args: string[], home = requesterHome) => await runCli([...args, '--home', home])
  const providerContracts = async (): Promise<ContractsJson> => JSON.parse((await cli(['storage', 'contracts', '--json'], providerHome)).stdout) as ContractsJson

  beforeAll(async () => {
    ledger = await startLedgerProcess()
    providerHome = await ledgerHome(ledger.url, `[services.storage]\nenabled = true\nproof_period_seconds = ${PERIOD}\nmin_duration_seconds = 1\nprice_per_gib_month = "10"\nretrieval_price_per_gib = "0.5"\nquota_mib = 300\nallowed_misses = 1000\n`, 'btt-storage-provider-')
    requesterHome = await ledgerHome(ledger.url, '[services.storage]\nenabled = true\nprovide = false\nchallenge = false\n', 'btt-storage-requester-')
    await fundHome(ledger.url, requesterHome, 100n * BTT)
    provider = await startNodeProcess(providerHome)
    requester = await startNodeProcess(requesterHome)
    const api = new AdminClient({ url: provider.apiUrl, token: await readApiToken(homePaths(providerHome)) })
    providerAddr = (await api.status()).listenAddresses[0] as string
    dir = await tempHome('btt-storage-files-')
    await mkdir(dir, { recursive: true })
    // 256 MiB of random bytes with the marker every MiB
    src = join(dir, NAME)
    const fh = await open(src, 'w')
    for (let i = 0; i < 256; i++) {
      const block = randomBytes(MIB)
      MARKER.copy(block, 4096)
      await fh.write(block)
    }
    await fh.close()
  }, 120_000)

  afterAll(async () => {
    await provider?.signal('SIGKILL')
    await requester?.signal('SIGKILL')
    ledger?.stop()
  })

  it('puts a 256 MiB file; the provider holds only ciphertext (no marker, no name on its disk)', async () => {
    const put = await cli(['storage', 'put', src, '--provider', providerAddr, '--duration', '120s', '--max-price', '10', '--json'])
    expect(put.code, put.stderr).toBe(0)
    file = (JSON.parse(put.stdout) as { file: FileJson }).file
    expect(file).toMatchObject({ name: NAME, plainSize: 256 * MIB, status: 'active', periods: 60, period: PERIOD, paidPeriods: 0 })
    expect(file.size).toBeGreaterThan(256 * MIB)

    const contracts = await providerContracts()
    expect(contracts.contracts).toEqual([expect.objectContaining({ id: file.id, status: 'active', size: file.size })])
    expect(await diskContains(providerHome, MARKER)).toBeUndefined()
    expect(await diskContains(providerHome, Buffer.from(NAME))).toBeUndefined()
    // the check can fail: the marker is found in the plaintext
    expect(await diskContains(dir, MARKER)).toBe(src)
    // the requester keeps root, key and contract, not the data
    const requesterBytes = (await Promise.all((await filesUnder(requesterHome)).map(async f => (await stat(f)).size))).reduce((a, b) => a + b, 0)
    expect(requesterBytes).toBeLessThan(16 * MIB)
  }, 180_000)

  it('proves 10 times; each valid proof pays exactly one period to the provider', async () => {
    const perPeriod = periodAmount(BigInt(file.price), file.size, PERIOD)
    expect(perPeriod).toBeGreaterThan(0n)
    for (let i = 0; i < 10; i++) {
      // wait for period i to end
      const due = (file.start + (i + 1) * PERIOD) * 1000 + 50
      if (Date.now() < due) await new Promise(resolve => setTimeout(resolve, due - Date.now()))
      const r = await cli(['storage', 'prove', file.id, '--json'])
      expect(r.code, r.stderr + r.stdout).toBe(0)
      const out = JSON.parse(r.stdout) as { proof: { ok: boolean, paidPeriod?: number, amount?: string }, file: FileJson }
      expect(out.proof).toEqual({ ok: true, paidPeriod: i, amount: perPeriod.toString() })
      const c = (await providerContracts()).contracts[0]
      expect(c).toMatchObject({ paid_periods: i + 1, earned: (perPeriod * BigInt(i + 1)).toString() })
    }
    // a proof with no period due pays nothing
    const early = JSON.parse((await cli(['storage', 'prove', file.id, '--json'])).stdout) as { proof: { ok: boolean, paidPeriod?: number } }
    if (Date.now() < (file.start + 11 * PERIOD) * 1000) expect(early.proof).toEqual({ ok: true })
    const listed = (JSON.parse((await cli(['storage', 'list', '--json'])).stdout) as { files: FileJson[] }).files[0] as FileJson
    expect(listed.paidPeriods).toBeGreaterThanOrEqual(10)
    expect(BigInt(listed.spent)).toBe(perPeriod * BigInt(listed.paidPeriods))
  }, 120_000)

  it('gets it back byte-identical, paying per chunk; a tampered segment is detected and refused unpaid', async () => {
    const before = BigInt((await providerContracts()).contracts[0]?.earned ?? '0')
    const out = join(dir, 'back.bin')
    const get = await cli(['storage', 'get', file.id, '--out', out, '--json'])
    expect(get.code, get.stderr).toBe(0)
    expect(await sha256(out)).toBe(await sha256(src))
    const chunks = Math.ceil(file.size / CHUNK)
    const chunkPrice = (price: number): bigint => (5n * 10n ** 17n * BigInt(price) + (1n << 30n) - 1n) / (1n << 30n)
    let expected = 0n
    for (let i = 0; i < chunks; i++) expected += chunkPrice(Math.min(CHUNK, file.size - i * CHUNK))
    const after = BigInt((await providerContracts()).contracts[0]?.earned ?? '0')
    expect(after - before).toBe(expected)

    // flip one byte of the ciphertext on the provider's disk, in chunk 3
    const blob = join(providerHome, 'data', 'storage', 'blobs', file.root)
    const fh = await open(blob, 'r+')
    const b = Buffer.alloc(1)
    await fh.read(b, 0, 1, 3 * CHUNK + 1000)
    b[0] = (b[0] as number) ^ 0x01
    await fh.write(b, 0, 1, 3 * CHUNK + 1000)
    await fh.close()
    const bad = await cli(['storage', 'get', file.id, '--out', join(dir, 'bad.bin')])
    expect(bad.code).toBe(1)
    expect(flat(bad.stderr)).toMatch(/chunk 3 does not match the file's Merkle root: refused and not paid/)
    await expect(stat(join(dir, 'bad.bin'))).rejects.toThrow()
    // chunks 0–2 were paid, chunk 3 was not
    const afterBad = BigInt((await providerContracts()).contracts[0]?.earned ?? '0')
    expect(afterBad - after).toBe(3n * chunkPrice(CHUNK))

    // undo it, and flip a byte at the end of chunk 2 instead: the start of an encrypted message that
    // ends in chunk 3, which decryption cannot check yet; its sector's hash catches it in chunk 2
    const fh2 = await open(blob, 'r+')
    await fh2.write(Buffer.from([(b[0] as number) ^ 0x01]), 0, 1, 3 * CHUNK + 1000)
    await fh2.read(b, 0, 1, 3 * CHUNK - 1000)
    b[0] = (b[0] as number) ^ 0x80
    await fh2.write(b, 0, 1, 3 * CHUNK - 1000)
    await fh2.close()
    const bad2 = await cli(['storage', 'get', file.id, '--out', join(dir, 'bad2.bin')])
    expect(bad2.code).toBe(1)
    expect(flat(bad2.stderr)).toMatch(/chunk 2 does not match the file's Merkle root: refused and not paid .*sector 255 does not match its hash/)
    const afterBad2 = BigInt((await providerContracts()).contracts[0]?.earned ?? '0')
    expect(afterBad2 - afterBad).toBe(2n * chunkPrice(CHUNK))
  }, 180_000)

  it('refuses over quota before any upload or channel, and below the provider\'s price naming it', async () => {
    const wallet = async (): Promise<string> => (JSON.parse((await cli(['wallet', 'balance', '--json'])).stdout) as { balance: string }).balance
    const balance = await wallet()
    const big = join(dir, 'big.bin')
    await writeFile(big, Buffer.alloc(1))
    await truncate(big, 100 * MIB)
    const over = await cli(['storage', 'put', big, '--provider', providerAddr, '--duration', '40s', '--max-price', '10'])
    expect(over.code).toBe(1)
    expect(flat(over.stderr)).toMatch(/over quota: the provider has \d+ bytes free; this file needs \d+ encrypted/)
    const cheap = await cli(['storage', 'put', src, '--provider', providerAddr, '--duration', '40s', '--max-price', '9.5'])
    expect(cheap.code).toBe(1)
    expect(flat(cheap.stderr)).toMatch(/the provider asks 10000000000000000000 base units per GiB·month, above --max-price 9500000000000000000/)
    expect(await wallet()).toBe(balance)
    expect((await providerContracts()).contracts).toHaveLength(1)
    expect(await readdir(join(providerHome, 'data', 'storage', 'partial'))).toEqual([])
  }, 60_000)

  it('cancel: the provider deletes the data and the contract ends', async () => {
    const r = await cli(['storage', 'cancel', file.id, '--json'])
    expect(r.code, r.stderr).toBe(0)
    expect((await providerContracts()).contracts[0]).toMatchObject({ status: 'cancelled' })
    await expect(readFile(join(providerHome, 'data', 'storage', 'blobs', file.root))).rejects.toThrow()
  })
})
