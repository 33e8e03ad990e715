import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { readdir, readFile, rm } from 'node:fs/promises'
import { afterEach, describe, expect, it } from 'vitest'
import { CLI, cleanEnv } from './helpers/cli.js'

/**
 * `btt-node devnet` as a newcomer runs it: a ledger, a provider with one paid slot and two
 * `get --budget` requesters, all children of one process that cleans up after itself.
 */

const running: ChildProcess[] = []
const dirs: string[] = []
afterEach(async () => {
  // a failed test must not leave a devnet behind (its children follow it within a second)
  for (const c of running.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
})

interface Devnet { child: ChildProcess, stdout: () => string, stderr: () => string, exited: Promise<{ code: number | null, at: number }> }

function devnet (args: string[]): Devnet {
  const child = spawn(process.execPath, [CLI, 'devnet', ...args], { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
  running.push(child)
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const exited = new Promise<{ code: number | null, at: number }>(resolve => child.on('close', code => { resolve({ code, at: Date.now() }) }))
  return { child, stdout: () => stdout, stderr: () => stderr, exited }
}

async function waitFor (d: Devnet, re: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const m = re.exec(d.stdout())
    if (m !== null) return m
    if (d.child.exitCode !== null) throw new Error(`devnet exited with ${d.child.exitCode}:\n${d.stdout()}\n${d.stderr()}`)
    if (Date.now() > deadline) throw new Error(`no ${re} within ${timeoutMs} ms:\n${d.stdout()}\n${d.stderr()}`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}

function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** Pids of processes whose command line mentions `text` (Linux /proc). */
async function processesMentioning (text: string): Promise<number[]> {
  const found: number[] = []
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      if ((await readFile(`/proc/${entry}/cmdline`, 'utf8')).includes(text)) found.push(Number(entry))
    } catch {}
  }
  return found
}

interface SummaryEvent {
  requesters: Array<{ name: string, state: string, budget: string, paid: string, earnedFrom: string, pricePerKiB: string | null }>
  provider: { earned: string, claimed: string, balance: string }
}

describe('btt-node devnet', () => {
  it('runs two paid downloads to the end: both pay, the higher budget pays more per KiB, the provider earns the sum and claims it', async () => {
    const d = devnet(['--size', '4', '--exit-when-done', '--json-events'])
    const { code } = await d.exited
    expect(code, d.stderr()).toBe(0)
    const events = d.stdout().trim().split('\n').map(l => JSON.parse(l) as { event: string } & Record<string, unknown>)
    const summary = events.find(e => e.event === 'summary') as SummaryEvent | undefined
    expect(summary, d.stdout()).toBeDefined()
    const [a, b] = summary!.requesters
    expect(summary!.requesters.map(r => [r.name, r.state, r.budget])).toEqual([['A', 'done', '4000000000000000000'], ['B', 'done', '1000000000000000000']])
    for (const r of [a!, b!]) {
      expect(BigInt(r.paid)).toBeGreaterThan(0n)
      // what the requester says it paid is what the provider counted
      expect(r.earnedFrom).toBe(r.paid)
    }
    // one paid slot, uniform price: A pays B's bid, B then pays the reserve (a quarter of its bid or less)
    expect(BigInt(a!.pricePerKiB!)).toBeGreaterThan(BigInt(b!.pricePerKiB!))
    const earned = BigInt(summary!.provider.earned)
    expect(earned).toBe(BigInt(a!.paid) + BigInt(b!.paid))
    expect(BigInt(summary!.provider.claimed)).toBe(earned)
    expect(BigInt(summary!.provider.balance)).toBe(earned)
    // progress was shown while the downloads ran, and everything is gone afterwards
    expect(events.some(e => e.event === 'progress' && (e.requesters as Array<{ state: string }>).some(r => r.state === 'downloading'))).toBe(true)
    const dir = events.find(e => e.event === 'devnet')?.dir
    expect(typeof dir).toBe('string')
    expect(existsSync(dir as string)).toBe(false)
    const pids = events.flatMap(e => typeof e.pid === 'number' && e.event !== 'devnet' ? [e.pid] : [])
    expect(pids).toHaveLength(4) // ledger, provider, two requesters
    expect(pids.filter(alive)).toEqual([])
  }, 90_000)

  it('stops every process and removes its state within 10 s of SIGINT', async () => {
    const d = devnet(['--size', '64'])
    const dir = (await waitFor(d, /state in (\S+) \(removed at exit\)/, 10_000))[1]!
    dirs.push(dir)
    // the provider is up and both requesters are downloading (or bidding)
    await waitFor(d, /provider .* pid \d+[\s\S]*requester B .* pid \d+/, 45_000)
    const pids = [...d.stdout().matchAll(/pid (\d+)/g)].map(m => Number(m[1]))
    expect(pids).toHaveLength(4)
    expect(pids.every(alive)).toBe(true)
    const t0 = Date.now()
    d.child.kill('SIGINT')
    const { code, at } = await d.exited
    expect(code, d.stderr()).toBe(0)
    expect(at - t0).toBeLessThan(10_000)
    expect(pids.filter(alive)).toEqual([])
    expect(await processesMentioning(dir)).toEqual([])
    expect(existsSync(dir)).toBe(false)
  }, 60_000)
})
