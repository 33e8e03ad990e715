import { formatBtt } from '@btt/channel'
import { Flags } from '@oclif/core'
import { BaseCommand } from '../../base.js'

interface CheckJson { ok: boolean, totalMinted: string, balances: string, locked: string }

export default class LedgerCheck extends BaseCommand {
  static override description = 'Check the conservation invariant: balances + locked deposits = total minted. Exits 1 if it does not hold.'
  static override enableJsonFlag = true
  static override flags = {
    db: Flags.string({ description: 'a ledger database file (the server may be running)', exactlyOne: ['db', 'url'] }),
    url: Flags.string({ description: 'a ledger server URL', exactlyOne: ['db', 'url'] })
  }

  async run (): Promise<CheckJson> {
    const { flags } = await this.parse(LedgerCheck)
    let result: CheckJson
    if (flags.url !== undefined) {
      const res = await fetch(new URL('/v1/check', flags.url), { signal: AbortSignal.timeout(15_000) })
      if (!res.ok) this.error(`ledger at ${flags.url} answered ${res.status}: ${await res.text()}`)
      result = await res.json() as CheckJson
    } else {
      const { Ledger } = await import('@btt/ledger')
      const ledger = new Ledger({ path: flags.db as string })
      try {
        const c = ledger.check()
        result = { ok: c.ok, totalMinted: c.totalMinted.toString(), balances: c.balances.toString(), locked: c.locked.toString() }
      } finally {
        ledger.close()
      }
    }
    this.log(`${result.ok ? 'ok' : 'BROKEN'}: balances ${formatBtt(BigInt(result.balances))} + locked ${formatBtt(BigInt(result.locked))} ${result.ok ? '=' : '≠'} minted ${formatBtt(BigInt(result.totalMinted))} BTT`)
    if (!result.ok) this.exit(1)
    return result
  }
}
