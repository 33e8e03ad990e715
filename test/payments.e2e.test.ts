import { spawn, type ChildProcess } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { AdminClient, homePaths, initHome, readApiToken } from '@btt/node'
import { afterEach, describe, expect, it } from 'vitest'
import { cleanEnv, runCli, tempHome, waitForRuntime } from './helpers/cli.js'
import { startLedgerProcess, type LedgerProcess } from './helpers/paid.js'

const RUN_NODE = fileURLToPath(new URL('./fixtures/run-node.ts', import.meta.url))
const children: ChildProcess[] = []
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL')
})

/** `btt-node ledger serve --dev` as its own process, killed after the test. */
async function startLedger (args: string[] = []): Promise<LedgerProcess> {
  const ledger = await startLedgerProcess(args)
  children.push(ledger.child)
  return ledger
}

interface NodeProc { child: ChildProcess, api: AdminClient, home: string, addr: string, account: string, stop: () => Promise<number | null> }

/** A node with the paid test service in its own process, on loopback, using the ledger at `ledgerUrl`. */
async function startNode (home: string, ledgerUrl: string, extraToml = ''): Promise<NodeProc> {
  await writeFile(join(home, 'config.toml'), `[ledger]\nurl = "${ledgerUrl}"\n[payments]\nclaim_margin_seconds = 1\nclaim_poll_seconds = 1\n${extraToml}\n[services.paid-echo]\nenabled = true\nprice = "0.001"\n`)
  const child = spawn(process.execPath, ['--experimental-strip-types', '--no-warnings', RUN_NODE, home], {
    env: cleanEnv({ BTT_NODE_API_PORT: '0', BTT_NODE_P2P_LISTEN: '/ip4/127.0.0.1/tcp/0', BTT_NODE_LOG_LEVEL: 'warn' }),
    stdio: ['ignore', 'inherit', 'inherit']
  })
  children.push(child)
  const info = await waitForRuntime(home, child, child.pid)
  const api = new AdminClient({ url: info.apiUrl, token: await readApiToken(homePaths(home)) })
  const status = await api.status()
  const wallet = await api.wallet()
  const exited = new Promise<number | null>(resolve => child.on('exit', resolve))
  return {
    child,
    api,
    home,
    addr: status.listenAddresses.find(a => a.startsWith('/ip4/127.0.0.1/')) as string,
    account: wallet.account,
    stop: async () => { child.kill('SIGTERM'); return await exited }
  }
}

const BTT = 10n ** 18n
const PRICE = BTT / 1000n

describe('payments end to end: ledger server, payee node and payer node in separate processes', () => {
  it('open, pay per unit, claim, refund: the refund is deposit − claimed to the base unit', async () => {
    const ledger = await startLedger(['--challenge-window', '2s'])
    const payeeHome = await tempHome()
    const payerHome = await tempHome()
    await initHome(payeeHome)
    await initHome(payerHome)
    const payee = await startNode(payeeHome, ledger.url)
    const payer = await startNode(payerHome, ledger.url)

    const faucet = await runCli(['wallet', 'faucet', '10', '--home', payerHome, '--json'])
    expect(faucet.code, faucet.stderr).toBe(0)
    expect(JSON.parse(faucet.stdout)).toEqual({ balance: (10n * BTT).toString() })

    // long enough that the payee's own claimer (1 s before expiry) does not claim before we do
    const open = await runCli(['channels', 'open', '--payee', payee.account, '--deposit', '0.5', '--expires', '15s', '--home', payerHome, '--json'])
    expect(open.code, open.stderr).toBe(0)
    const channel = JSON.parse(open.stdout) as { id: string, deposit: string, expiresAt: number }
    expect(channel.deposit).toBe((BTT / 2n).toString())
    expect((await payer.api.wallet()).balance).toBe((10n * BTT - BTT / 2n).toString())

    // 7 units, each paid by voucher after it arrives
    const bought = await payer.api.serviceRequest<{ received: string[], paid: string }>('paid-echo', 'POST', '/buy', { addr: payee.addr, channelId: channel.id, units: 7 })
    expect(bought.received).toEqual(['unit 1', 'unit 2', 'unit 3', 'unit 4', 'unit 5', 'unit 6', 'unit 7'])
    expect(bought.paid).toBe((7n * PRICE).toString())
    const held = await payee.api.channel(channel.id)
    expect(held.incoming?.received).toBe((7n * PRICE).toString())
    // the read commands an operator uses
    expect((await runCli(['wallet', 'address', '--home', payeeHome])).stdout.trim()).toBe(payee.account)
    const listed = JSON.parse((await runCli(['channels', 'list', '--home', payeeHome, '--json'])).stdout) as { incoming: Array<{ id: string, received: string }>, outgoing: unknown[] }
    expect(listed).toEqual({ incoming: [expect.objectContaining({ id: channel.id, received: (7n * PRICE).toString() })], outgoing: [] })
    const shown = await runCli(['channels', 'show', channel.id, '--home', payeeHome])
    expect(shown.stdout).toContain('deposit   0.5 BTT')
    expect(shown.stdout).toContain('received  0.007 BTT')
    // the money gauges: one open incoming channel, 0.007 BTT in vouchers the ledger has not paid yet
    const gauges = await payee.api.metrics()
    expect(gauges).toContain('btt_channels{direction="incoming",status="open"} 1')
    expect(gauges).toContain('btt_channel_received_btt 0.007')
    expect(gauges).toContain('btt_channel_unclaimed_btt 0.007')
    expect(gauges).toContain('btt_payment_bans 0')
    expect(await payer.api.metrics()).toContain('btt_channel_spent_btt 0.007')
    expect((await runCli(['wallet', 'balance', '--home', payerHome])).stdout).toMatch(/^9\.5 BTT /)
    const badOpen = await runCli(['channels', 'open', '--payee', 'xyz', '--deposit', '1', '--home', payerHome])
    expect(badOpen.code).toBe(2)
    expect(badOpen.stderr).toContain('--payee must be 64 lower-case hex')
    const badAmount = await runCli(['channels', 'open', '--payee', payee.account, '--deposit', '0.1234567890123456789', '--home', payerHome])
    expect(badAmount.code).toBe(1)
    expect(badAmount.stderr.replace(/[\s›]+/g, ' ')).toContain('has more than 18 decimals Code: CHANNEL_INVALID_AMOUNT')
    expect(badAmount.stderr).not.toContain('InvalidAmountError')

    const claim = await runCli(['channels', 'claim', channel.id, '--home', payeeHome, '--json'])
    expect(claim.code, claim.stderr).toBe(0)
    expect(JSON.parse(claim.stdout)).toMatchObject({ paid: (7n * PRICE).toString() })
    expect((await payee.api.wallet()).balance).toBe((7n * PRICE).toString())
    expect(await payee.api.metrics()).toContain('btt_channel_unclaimed_btt 0\n')
    // a second claim of the same voucher pays nothing
    expect(JSON.parse((await runCli(['channels', 'claim', channel.id, '--home', payeeHome, '--json'])).stdout)).toMatchObject({ paid: '0' })

    // refund: refused before expiry, then after expiry + the challenge window the rest comes back
    const early = await runCli(['channels', 'refund', channel.id, '--home', payerHome])
    expect(early.code).toBe(1)
    expect(early.stderr).toContain('LEDGER_NOT_EXPIRED')
    await new Promise(resolve => setTimeout(resolve, Math.max(0, channel.expiresAt - Date.now() + 300)))
    expect((await runCli(['channels', 'refund', channel.id, '--home', payerHome])).code).toBe(0)
    await new Promise(resolve => setTimeout(resolve, 2500))
    const fin = await runCli(['channels', 'finalize', channel.id, '--home', payerHome, '--json'])
    expect(fin.code, fin.stderr).toBe(0)
    expect(JSON.parse(fin.stdout)).toMatchObject({ refunded: (BTT / 2n - 7n * PRICE).toString() })
    expect((await payer.api.wallet()).balance).toBe((10n * BTT - 7n * PRICE).toString())
    expect((await payee.api.wallet()).balance).toBe((7n * PRICE).toString())

    const check = await runCli(['ledger', 'check', '--url', ledger.url, '--json'])
    expect(check.code, check.stderr).toBe(0)
    expect(JSON.parse(check.stdout)).toMatchObject({ ok: true, totalMinted: (10n * BTT).toString() })
    // the same check straight on the database file, while the server runs
    const onDb = await runCli(['ledger', 'check', '--db', ledger.db])
    expect(onDb.code, onDb.stderr).toBe(0)
    expect(onDb.stdout).toContain('ok: balances 10 + locked 0 = minted 10 BTT')
    await payer.stop()
    await payee.stop()
  })

  it('stale close: a refund started while the payee holds a newer voucher; the payee, restarted in the window, claims it', async () => {
    const ledger = await startLedger(['--challenge-window', '20s'])
    const payeeHome = await tempHome()
    const payerHome = await tempHome()
    await initHome(payeeHome)
    await initHome(payerHome)
    // a high claim threshold: the payee holds vouchers without claiming them
    let payee = await startNode(payeeHome, ledger.url)
    const payer = await startNode(payerHome, ledger.url)
    await payer.api.faucet(BTT)
    const channel = await payer.api.openChannel({ payee: payee.account, deposit: BTT / 10n, expiresAt: Date.now() + 5000 })
    await payer.api.serviceRequest('paid-echo', 'POST', '/buy', { addr: payee.addr, channelId: channel.id, units: 3 })
    expect((await payee.api.channel(channel.id)).ledger.claimed).toBe('0')
    expect(await payee.stop()).toBe(0)

    await new Promise(resolve => setTimeout(resolve, 5200))
    await payer.api.refundChannel(channel.id)
    expect((await payer.api.channel(channel.id)).ledger.status).toBe('refunding')

    // the payee comes back inside the window and claims the newer voucher by itself
    payee = await startNode(payeeHome, ledger.url)
    const deadline = Date.now() + 15_000
    let claimed = '0'
    while (Date.now() < deadline && claimed === '0') {
      claimed = (await payee.api.channel(channel.id)).ledger.claimed
      await new Promise(resolve => setTimeout(resolve, 200))
    }
    expect(claimed).toBe((3n * PRICE).toString())
    expect((await payee.api.wallet()).balance).toBe((3n * PRICE).toString())
    await payee.stop()
    await payer.stop()
  })
})
