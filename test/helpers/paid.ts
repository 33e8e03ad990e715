import { spawn, type ChildProcess } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { HttpLedgerClient } from '@btt/ledger'
import { AdminClient, homePaths, loadWallet, readApiToken } from '@btt/node'
import { CLI, cleanEnv, runCli, SEEDING_LOOPBACK_ENV, startNodeProcess, tempHome, type NodeProcess } from './cli.ts'

export const BTT = 10n ** 18n

export interface LedgerProcess { url: string, db: string, child: ChildProcess, ledgerId: string, stop(): void }

/** `btt-node ledger serve --dev` as its own process on loopback. */
export async function startLedgerProcess (args: string[] = []): Promise<LedgerProcess> {
  const db = join(await tempHome('btt-ledger-'), 'ledger.db')
  const child = spawn(process.execPath, [CLI, 'ledger', 'serve', '--dev', '--port', '0', '--db', db, ...args], { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
  const url = await new Promise<string>((resolve, reject) => {
    let out = ''
    const onData = (d: Buffer): void => {
      out += d.toString()
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out)
      if (m !== null) resolve(m[1] as string)
    }
    child.stdout?.on('data', onData)
    child.stderr?.on('data', onData)
    child.on('exit', code => { reject(new Error(`ledger exited ${code}: ${out}`)) })
  })
  const res = await fetch(`${url}/v1/info`)
  const info = await res.json() as { ledgerId: string }
  return { url, db, child, ledgerId: info.ledgerId, stop: () => { child.kill('SIGKILL') } }
}

/** An initialised home whose node settles on `ledgerUrl`, with `toml` appended to its config. */
export async function ledgerHome (ledgerUrl: string, toml = '', prefix = 'btt-paid-'): Promise<string> {
  const home = await tempHome(prefix)
  const init = await runCli(['init', '--home', home])
  if (init.code !== 0) throw new Error(init.stderr)
  await writeFile(join(home, 'config.toml'), `[ledger]\nurl = "${ledgerUrl}"\n${toml}\n`)
  return home
}

/** Mint dev BTT straight at the ledger into the wallet of `home` (no node needed). */
export async function fundHome (ledgerUrl: string, home: string, amount: bigint): Promise<string> {
  const wallet = await loadWallet(homePaths(home))
  const client = new HttpLedgerClient({ url: ledgerUrl, keyPair: wallet })
  await client.faucet(amount)
  return client.account
}

export interface Provider { node: NodeProcess, home: string, api: AdminClient, port: number, account: string }

/**
 * A real `btt-node start` selling seeding slots on loopback. `seeding` holds extra keys of
 * [services.seeding] (TOML lines).
 */
export async function startProvider (ledgerUrl: string, seeding: string[], existingHome?: string): Promise<Provider> {
  const home = existingHome ?? await ledgerHome(ledgerUrl, `[services.seeding]\nenabled = true\n${seeding.join('\n')}\n`, 'btt-provider-')
  const node = await startNodeProcess(home, [], SEEDING_LOOPBACK_ENV)
  const api = new AdminClient({ url: node.apiUrl, token: await readApiToken(homePaths(home)) })
  const status = await api.serviceRequest<{ port: number }>('seeding', 'GET', '/status')
  const wallet = await api.wallet()
  return { node, home, api, port: status.port, account: wallet.account }
}
