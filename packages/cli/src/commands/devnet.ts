import { rmSync } from 'node:fs'
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { basename, join, resolve } from 'node:path'
import { formatBtt, generateKeyPair, parseBtt } from '@btt/channel'
import { HttpLedgerClient } from '@btt/ledger'
import { Command, Flags } from '@oclif/core'
import { childEnv, makeRequester, sleep, startGet, startLedger, startProvider, Supervisor, writeRandomFile, type Child, type Provider, type Requester } from '../devnet.js'
import { btt, table } from '../format.js'
import { bar, bytes, percent, rate } from '../seed-format.js'

/** The live view is refreshed this often. */
const TICK_MS = 500
/** The provider's fixed reserve (BTT per KiB); a tenth of it, and so on, while above a quarter of the lowest opening bid. */
const DEFAULT_RESERVE = parseBtt('0.00001')
/** Small pieces: payments (one per piece) and the live view move smoothly. */
const PIECE_LENGTH = 64 * 1024
/** After the downloads, wait this long for the provider to count the last payments. */
const SETTLE_MS = 5000
const TRACKER_NOTE = 'none yet, peers connect directly (bid-announce tracker arrives with [E])'

interface Row {
  r: Requester
  child: Child
  state: 'bidding' | 'downloading' | 'done' | 'failed'
  /** Paid bytes and amount as the provider counts them (its /earnings). */
  bytes: number
  paid: bigint
  /** Price per KiB of the latest payments. */
  price?: bigint
  rate: number
  startedAt: number
  seconds?: number
  /** What `get --json` reports it paid. */
  reported?: bigint
  error?: string
}

/** What a devnet run was asked for, and how it ends. */
interface Setup {
  dir: string
  /** `dir` is a temp folder, removed at exit. */
  temp: boolean
  size: number
  budgets: bigint[]
  reserve: bigint
  sup: Supervisor
  screen: Screen
  exitWhenDone: boolean
  teardown: (code: number) => Promise<never>
  isStopping: () => boolean
}

interface Earnings { torrents: Array<{ infoHash: string, payers: Array<{ payer: string, amount: string, bytes: number }> }> }

/** Not a BaseCommand: it makes its own homes, so --home would mean nothing here. */
export default class Devnet extends Command {
  static override description = `Run a private BitTorrent Speed network on 127.0.0.1 and watch paid downloads live

Starts a dev ledger, a provider node selling one paid upload slot for a generated file, and requesters (\`btt-node get --budget\`) with different budgets, all as child processes on loopback. Shows progress, prices and earnings, then a summary with the ledger balances. Ctrl-C stops every process and removes the state (unless --dir).
Tracker: ${TRACKER_NOTE}.`

  static override examples = [
    '<%= config.bin %> devnet',
    '<%= config.bin %> devnet --size 8 --budgets 2,1,0.5',
    '<%= config.bin %> devnet --dir ./devnet-state --json-events'
  ]

  static override flags = {
    size: Flags.integer({ description: 'size of the generated file, MiB', default: 32, min: 1, max: 4096 }),
    dir: Flags.string({ description: 'keep the state (homes, ledger, file, downloads) in this empty folder [default: a temp folder removed at exit]' }),
    budgets: Flags.string({ description: 'the requesters\' budgets in BTT, comma-separated (one requester each)', default: '4,1' }),
    'json-events': Flags.boolean({ description: 'print one JSON object per event and progress update instead of the live view' }),
    'exit-when-done': Flags.boolean({ description: 'stop everything and exit after the summary (0 when every download completed)' })
  }

  async run (): Promise<void> {
    const { flags } = await this.parse(Devnet)
    let budgets: bigint[]
    try {
      budgets = flags.budgets.split(',').map(b => parseBtt(b.trim()))
    } catch (err) {
      this.error(`--budgets: ${(err as Error).message}`, { exit: 2 })
    }
    if (budgets.length < 1 || budgets.length > 8 || budgets.some(b => b <= 0n)) this.error('--budgets: 1 to 8 amounts, each more than 0', { exit: 2 })
    const size = flags.size * 1024 * 1024
    // the requesters open with a bid of budget / KiB; the reserve stays below the lowest
    const lowestBid = budgets.reduce((a, b) => a < b ? a : b) * 1024n / BigInt(size)
    let reserve = DEFAULT_RESERVE
    while (reserve > 0n && reserve > lowestBid / 4n) reserve /= 10n
    if (reserve === 0n) this.error(`--budgets: the lowest budget is too small to bid for ${bytes(size)}`, { exit: 2 })

    const temp = flags.dir === undefined
    const dir = flags.dir === undefined ? await mkdtemp(join(tmpdir(), 'btt-devnet-')) : resolve(flags.dir)
    if (!temp) {
      await mkdir(dir, { recursive: true })
      if ((await readdir(dir)).length > 0) this.error(`--dir ${dir} is not empty: give a new or empty folder`, { exit: 2 })
    }
    await mkdir(join(dir, 'tmp'))
    const sup = new Supervisor(join(this.config.root, 'bin', 'run.js'), childEnv(join(dir, 'tmp')))
    const screen = new Screen(flags['json-events'], process.stdout.isTTY === true && !flags['json-events'])

    // teardown: children in reverse order (SIGTERM, SIGKILL after 5 s), the temp folder, exit
    let stopping: Promise<never> | undefined
    const teardown = async (code: number): Promise<never> => {
      stopping ??= (async () => {
        screen.endLive()
        await sup.stopAll()
        if (temp) await rm(dir, { recursive: true, force: true }).catch(() => {})
        screen.event('stopped', { code }, `devnet stopped${temp ? `; removed ${dir}` : `; state kept in ${dir}`}`)
        process.exit(code)
      })()
      return await stopping
    }
    const onSignal = (signal: NodeJS.Signals): void => {
      if (stopping !== undefined) { sup.killAllNow(); return }
      screen.event('signal', { signal }, `${signal}: stopping every process…`)
      void teardown(0)
    }
    for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(s, onSignal)
    // last resort when this process ends any other way: no child and no temp folder outlives it
    process.on('exit', () => {
      sup.killAllNow()
      if (temp) rmSync(dir, { recursive: true, force: true })
    })

    try {
      await this.devnet({ dir, temp, size, budgets, reserve, sup, screen, exitWhenDone: flags['exit-when-done'], teardown, isStopping: () => stopping !== undefined })
    } catch (err) {
      if (stopping !== undefined) await stopping
      screen.endLive()
      this.logToStderr(`devnet failed: ${(err as Error).message}`)
      await teardown(1)
    }
  }

  private async devnet (o: Setup): Promise<void> {
    const { dir, size, budgets, reserve, sup, screen } = o
    screen.event('devnet', { dir, removedAtExit: o.temp, size, budgets, reserve, pid: process.pid },
      `devnet: a ${bytes(size)} file, one provider and ${budgets.length} requester${budgets.length === 1 ? '' : 's'} on 127.0.0.1; state in ${dir}${o.temp ? ' (removed at exit)' : ''}`)

    const ledger = await startLedger(sup, join(dir, 'ledger', 'ledger.db'))
    screen.event('ledger', { url: ledger.url, pid: ledger.child.pid }, `  ledger       ${ledger.url} (dev faucet)  pid ${ledger.child.pid}`)
    screen.event('tracker', { url: null, note: TRACKER_NOTE }, `  tracker      ${TRACKER_NOTE}`)

    const provider = await startProvider(sup, join(dir, 'provider'), ledger.url, {
      paid_slots: 1, free_slots: 0, optimistic_slots: 0, reserve_fixed: formatBtt(reserve), bid_window_seconds: 2, rechoke_seconds: 1
    })
    screen.event('provider', { pid: provider.child.pid, home: provider.home, apiUrl: provider.api.url, port: provider.port, account: provider.account, paidSlots: 1, reserve },
      `  provider     1 paid slot, reserve ${btt(reserve)}/KiB, BitTorrent on 127.0.0.1:${provider.port}, admin API ${provider.api.url}  pid ${provider.child.pid}`)
    // from here on a ledger or provider that dies ends the devnet
    const crashed = new Promise<never>((_resolve, reject) => {
      for (const c of [ledger.child, provider.child]) {
        void c.exited.then(code => { if (!o.isStopping()) reject(new Error(`the ${c.name} exited (${c.proc.signalCode ?? `code ${code}`}):\n${c.output().trim().split('\n').slice(-20).join('\n')}`)) })
      }
    })
    crashed.catch(() => {})
    await Promise.race([this.session(o, ledger.url, provider), crashed])
  }

  private async session (o: Setup, ledgerUrl: string, provider: Provider): Promise<void> {
    const { dir, size, budgets, reserve, sup, screen } = o
    const file = join(dir, 'files', `devnet-${size / (1024 * 1024)}MiB.bin`)
    await writeRandomFile(file, size)
    const added = await provider.api.serviceRequest<{ torrent: { infoHash: string, torrentFile: string } }>('seeding', 'POST', '/torrents', { path: file, piece_length: PIECE_LENGTH })
    const { infoHash, torrentFile } = added.torrent
    screen.event('file', { path: file, size, pieceLength: PIECE_LENGTH, infoHash, torrent: torrentFile },
      `  file         ${basename(file)}, ${bytes(size)} in ${Math.ceil(size / PIECE_LENGTH)} pieces of ${bytes(PIECE_LENGTH)}, infohash ${infoHash}`)

    const names = budgets.map((_b, i) => String.fromCharCode(65 + i))
    const requesters = await Promise.all(budgets.map(async (budget, i) => await makeRequester(join(dir, `requester-${names[i]}`), names[i] as string, ledgerUrl, budget, 2n * budget)))
    const rows: Row[] = requesters.map(r => ({ r, child: startGet(sup, r, torrentFile, provider.port, formatBtt(r.budget)), state: 'bidding', bytes: 0, paid: 0n, rate: 0, startedAt: Date.now() }))
    for (const row of rows) {
      const { r } = row
      const bid = r.budget * 1024n / BigInt(size)
      screen.event('requester', { name: r.name, pid: row.child.pid, home: r.home, account: r.account, budget: r.budget, funded: 2n * r.budget, openingBid: bid },
        `  requester ${r.name}  budget ${btt(r.budget)} (wallet funded with ${btt(2n * r.budget)}), opening bid ${btt(bid)}/KiB  pid ${row.child.pid}`)
      void row.child.exited.then(code => {
        row.seconds = (Date.now() - row.startedAt) / 1000
        if (o.isStopping()) return
        if (code === 0) {
          row.state = 'done'
          try {
            row.reported = BigInt((JSON.parse(row.child.stdout()) as { paid: { total: string } }).paid.total)
          } catch {}
        } else {
          row.state = 'failed'
          row.error = row.child.output().trim().split('\n').slice(-3).join(' / ')
        }
        screen.event(row.state, { name: r.name, code, seconds: row.seconds, paid: row.reported ?? null, ...(row.error !== undefined ? { error: row.error } : {}) },
          row.state === 'done'
            ? `requester ${r.name} finished in ${row.seconds.toFixed(1)} s, paid ${row.reported !== undefined ? btt(row.reported) : '?'}`
            : `requester ${r.name} failed (${row.child.proc.signalCode ?? `exit ${code}`}): ${row.error}`)
      })
    }

    // live view until every requester is done
    let earned = 0n
    let last = Date.now()
    const poll = async (): Promise<void> => {
      const report = await provider.api.serviceRequest<Earnings>('seeding', 'GET', '/earnings').catch(() => undefined)
      const now = Date.now()
      const dt = Math.max(now - last, 1) / 1000
      last = now
      if (report === undefined) return
      const payers = report.torrents.find(t => t.infoHash === infoHash)?.payers ?? []
      earned = payers.reduce((sum, p) => sum + BigInt(p.amount), 0n)
      for (const row of rows) {
        const p = payers.find(x => x.payer === row.r.account)
        const nowBytes = p?.bytes ?? 0
        const nowPaid = p !== undefined ? BigInt(p.amount) : 0n
        const dBytes = nowBytes - row.bytes
        if (dBytes > 0) row.price = (nowPaid - row.paid) * 1024n / BigInt(dBytes)
        row.rate = row.rate * 0.5 + (dBytes / dt) * 0.5
        row.bytes = nowBytes
        row.paid = nowPaid
        if (row.state === 'bidding' && nowBytes > 0) row.state = 'downloading'
      }
    }
    const render = (): void => {
      screen.progress({ requesters: rows.map(r => progressJson(r, size)), earned }, [...rows.map(r => liveLine(r, size)), `  provider earned ${btt(earned)}`])
    }
    while (rows.some(r => r.state === 'bidding' || r.state === 'downloading')) {
      await poll()
      render()
      await sleep(TICK_MS)
    }

    // the provider counts a payment when it accepts it: wait until it agrees with the requesters
    const deadline = Date.now() + SETTLE_MS
    while (Date.now() < deadline && rows.some(r => r.state === 'done' && r.reported !== undefined && r.paid !== r.reported)) {
      await sleep(100)
      await poll()
    }
    render()
    screen.endLive()
    await this.summary(o, ledgerUrl, provider, rows, earned)

    const ok = rows.every(r => r.state === 'done')
    if (o.exitWhenDone) await o.teardown(ok ? 0 : 1)
    screen.event('running', { providerHome: provider.home, ledgerUrl },
      `\nThe ledger and the provider keep running: try \`btt-node status --home ${provider.home}\` or \`btt-node seed list --home ${provider.home}\`.\nCtrl-C stops everything${o.temp ? ` and removes ${dir}` : ''}.`)
    await new Promise<never>(() => { setInterval(() => {}, 1 << 30) })
  }

  /** Claims the provider's channels, then prints who paid what, at what price, and the ledger balances. */
  private async summary (o: Setup, ledgerUrl: string, provider: Provider, rows: Row[], earned: bigint): Promise<void> {
    const { screen, size, reserve } = o
    const claims: string[] = []
    let { incoming } = await provider.api.channels()
    for (const c of incoming) {
      if (BigInt(c.received) <= BigInt(c.claimed)) continue
      await provider.api.claimChannel(c.id).catch((err: Error) => { claims.push(`${c.id.slice(0, 12)}…: ${err.message}`) })
    }
    incoming = (await provider.api.channels()).incoming
    const ledger = new HttpLedgerClient({ url: ledgerUrl, keyPair: generateKeyPair() })
    const providerBalance = await ledger.balance(provider.account)
    const requesters = await Promise.all(rows.map(async row => {
      const channels = incoming.filter(c => c.payer === row.r.account && c.status === 'open')
      const inChannels = channels.reduce((s, c) => s + BigInt(c.deposit) - BigInt(c.claimed), 0n)
      return {
        name: row.r.name,
        account: row.r.account,
        state: row.state,
        budget: row.r.budget,
        seconds: row.seconds ?? null,
        paid: row.reported ?? row.paid,
        earnedFrom: row.paid,
        bytes: row.bytes,
        pricePerKiB: row.bytes > 0 ? row.paid * 1024n / BigInt(row.bytes) : null,
        balance: await ledger.balance(row.r.account),
        inChannels
      }
    }))
    const claimed = incoming.reduce((s, c) => s + BigInt(c.claimed), 0n)
    const allDone = rows.every(r => r.state === 'done')
    const human = [
      '',
      `summary: ${allDone ? `${rows.length === 2 ? 'both' : `all ${rows.length}`} downloads of ${bytes(size)} completed` : `${rows.filter(r => r.state === 'done').length} of ${rows.length} downloads completed`}`,
      table(['  requester', 'budget', 'took', 'paid', 'price per KiB', 'ledger balance'], requesters.map(r => [
        `  ${r.name}${r.state === 'done' ? '' : ` (${r.state})`}`,
        btt(r.budget),
        r.seconds !== null ? `${r.seconds.toFixed(1)} s` : '-',
        btt(r.paid),
        r.pricePerKiB !== null ? btt(r.pricePerKiB) : '-',
        `${btt(r.balance)}${r.inChannels > 0n ? ` (+${btt(r.inChannels)} left in its channel, refundable)` : ''}`
      ])),
      `  provider earned ${btt(earned)}${earned === requesters.reduce((s, r) => s + r.paid, 0n) ? ' (the sum of what the requesters paid)' : ''}; claimed ${btt(claimed)} from ${incoming.length} channel(s): ledger balance ${btt(providerBalance)}`,
      ...claims.map(c => `  claim failed: ${c}`),
      `With one paid slot the highest bidder downloads first and pays the next-highest bid per KiB (uniform-price auction); the last one, bidding alone, pays the reserve (${btt(reserve)}/KiB).`
    ].join('\n')
    screen.event('summary', { requesters, provider: { account: provider.account, earned, claimed, balance: providerBalance, claimErrors: claims }, reserve }, human)
  }
}

function progressJson (r: Row, size: number): Record<string, unknown> {
  return { name: r.r.name, state: r.state, bytes: r.bytes, progress: r.state === 'done' ? 1 : Math.min(r.bytes / size, 1), rate: Math.round(r.rate), paid: r.paid, price: r.price ?? null }
}

function liveLine (r: Row, size: number): string {
  const progress = r.state === 'done' ? 1 : Math.min(r.bytes / size, 1)
  const head = `  ${r.r.name}  ${bar(progress, 20)} ${percent(progress).padStart(6)}`
  switch (r.state) {
    case 'bidding': return `${head}  bidding, waiting for the paid slot`
    case 'downloading': return `${head}  ${rate(r.rate).padStart(11)}  paid ${btt(r.paid)}${r.price !== undefined ? ` at ${btt(r.price)}/KiB` : ''}`
    case 'done': return `${head}  done in ${(r.seconds ?? 0).toFixed(1)} s, paid ${btt(r.paid)}`
    case 'failed': return `${head}  failed: ${r.error ?? ''}`
  }
}

/**
 * Where the devnet writes: event lines, and a live block that a TTY redraws in place (elsewhere,
 * one line per change). With --json-events, one JSON object per line instead (amounts in base units).
 */
class Screen {
  private live: string[] = []
  private shown = 0
  private lastProgress = ''

  constructor (private readonly json: boolean, private readonly tty: boolean) {}

  event (name: string, data: Record<string, unknown>, human: string): void {
    if (this.json) { this.write(jsonLine({ event: name, ...data })); return }
    this.erase()
    this.write(human + '\n')
    this.draw()
  }

  progress (data: Record<string, unknown>, lines: string[]): void {
    if (this.json) {
      const line = jsonLine({ event: 'progress', ...data })
      if (line !== this.lastProgress) this.write(line)
      this.lastProgress = line
    } else if (this.tty) {
      this.erase()
      this.live = lines
      this.draw()
    } else {
      const line = lines.map(l => l.trim()).join(' | ')
      if (line !== this.lastProgress) this.write(line + '\n')
      this.lastProgress = line
    }
  }

  /** Leave the live block as last drawn and write below it from now on. */
  endLive (): void {
    this.live = []
    this.shown = 0
  }

  private erase (): void {
    if (this.shown > 0) this.write(`\x1b[${this.shown}F\x1b[J`)
    this.shown = 0
  }

  private draw (): void {
    if (!this.tty || this.live.length === 0) return
    const columns = process.stdout.columns ?? 0
    const width = columns > 20 ? columns - 1 : 200 // unknown width (0): do not cut
    this.write(this.live.map(l => l.slice(0, width) + '\n').join(''))
    this.shown = this.live.length
  }

  private write (text: string): void {
    process.stdout.write(text)
  }
}

function jsonLine (value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => typeof v === 'bigint' ? v.toString() : v) + '\n'
}
