import { AdminClient, assertInitialised, ConfigError, NodeError, NodeNotRunningError, readApiToken, readConfigFile, readRuntimeInfo, resolveHome, DEFAULT_API_HOST, DEFAULT_API_PORT, SHUTDOWN_DEADLINE_MS } from '@btt/node'
import { Command, Flags } from '@oclif/core'

/** Exit codes beyond 0/1, so scripts and systemd can tell failures apart. */
export const EXIT = {
  /** sysexits EX_CONFIG: the configuration is invalid (systemd: RestartPreventExitStatus=78). */
  config: 78,
  /** The node is not running (commands that need it). */
  notRunning: 3
} as const

/** Flags and behaviour every btt-node command shares. */
export abstract class BaseCommand extends Command {
  static override baseFlags = {
    home: Flags.string({
      description: 'node home directory [default: $BTT_NODE_HOME, else ~/.btt-node]',
      helpGroup: 'GLOBAL'
    })
  }

  /** The home this invocation works on: --home, else BTT_NODE_HOME, else ~/.btt-node. */
  protected homeFrom (flags: { home?: string }): string {
    return resolveHome(flags.home)
  }

  /**
   * For servers run in the foreground (`ledger serve`, `tracker serve`): wait for SIGINT or
   * SIGTERM, close, and exit 0; exit 1 if closing fails or outlasts the shutdown deadline.
   */
  protected async serveUntilSignal (close: () => Promise<void>): Promise<never> {
    await new Promise<void>(resolveStop => {
      const stop = (): void => {
        setTimeout(() => process.exit(1), SHUTDOWN_DEADLINE_MS - 500).unref()
        close().then(resolveStop, () => process.exit(1))
      }
      process.once('SIGINT', stop)
      process.once('SIGTERM', stop)
    })
    process.exit(0)
  }

  /** A typed client of the node running on this home, found through node.json or config.toml. */
  protected async client (home: string, opts: { timeoutMs?: number } = {}): Promise<AdminClient> {
    const paths = await assertInitialised(home)
    const runtime = await readRuntimeInfo(paths)
    let url = runtime?.apiUrl
    if (url === undefined || url === '') {
      const raw = await readConfigFile(paths.config)
      const api = (raw.api ?? {}) as { host?: string, port?: number }
      const host = api.host ?? DEFAULT_API_HOST
      url = `http://${host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host}:${api.port ?? DEFAULT_API_PORT}`
    }
    return new AdminClient({ url, token: await readApiToken(paths), ...opts })
  }

  protected override async catch (err: Error & { exitCode?: number, code?: string }): Promise<unknown> {
    // our errors (node, channel, ledger, admin API) carry a stable code: print code and message, no stack
    const ours = err instanceof NodeError || (typeof err.code === 'string' && /^(CHANNEL|LEDGER|CONFIG|API|SERVICE|NODE|KEY|HOME|SEEDING|TORRENT|MAGNET|BENCODE|EXT|WIRE|TRACKER|STORAGE|PROXY)_[A-Z0-9_]+$/.test(err.code))
    if (!ours) return await super.catch(err)
    const exit = err instanceof ConfigError ? EXIT.config : err instanceof NodeNotRunningError ? EXIT.notRunning : 1
    if (this.jsonEnabled()) {
      this.logJson({ error: { code: err.code as string, message: err.message } })
      this.exit(exit)
    }
    this.error(err.message, { exit, code: err.code })
  }
}
