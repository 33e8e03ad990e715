import { createNode, homePaths, initHome, isInitialised, LOG_LEVELS, SHUTDOWN_DEADLINE_MS } from '@btt/node'
import { Flags } from '@oclif/core'
import { BaseCommand } from '../base.js'
import { SERVICES } from '../composition.js'

export default class Start extends BaseCommand {
  static override description = 'Run the node in the foreground until SIGINT/SIGTERM (systemd and docker run it this way)'
  static override examples = ['<%= config.bin %> start', '<%= config.bin %> start --init --log-level debug', '<%= config.bin %> start --api-port 7071 --listen /ip4/0.0.0.0/tcp/7272']

  static override flags = {
    init: Flags.boolean({ description: 'initialise the home with the embedded defaults first if it has no config.toml' }),
    'log-level': Flags.option({ options: LOG_LEVELS, description: 'log level (overrides log.level)' })(),
    'api-host': Flags.string({ description: 'admin API address (overrides api.host)' }),
    'api-port': Flags.integer({ description: 'admin API port (overrides api.port)' }),
    listen: Flags.string({ description: 'libp2p listen multiaddr, repeatable (overrides p2p.listen)', multiple: true })
  }

  async run (): Promise<void> {
    const { flags } = await this.parse(Start)
    const home = this.homeFrom(flags)
    const paths = homePaths(home)
    if (flags.init && !(await isInitialised(home))) {
      const result = await initHome(home)
      this.logToStderr(`initialised a new node home at ${home} (peer id ${result.peerId}); back up ${paths.keysDir}`)
    }
    const node = await createNode({
      home,
      services: SERVICES,
      env: process.env,
      overrides: {
        'log.level': flags['log-level'],
        'api.host': flags['api-host'],
        'api.port': flags['api-port'],
        'p2p.listen': flags.listen
      }
    })
    const stopped = new Promise<void>(resolve => {
      let stopping = false
      const onSignal = (signal: NodeJS.Signals): void => {
        if (stopping) {
          this.logToStderr(`${signal} again: exiting without waiting`)
          process.exit(1)
        }
        stopping = true
        const deadline = setTimeout(() => {
          this.logToStderr(`shutdown took longer than ${SHUTDOWN_DEADLINE_MS / 1000} s; exiting`)
          process.exit(1)
        }, SHUTDOWN_DEADLINE_MS - 500)
        deadline.unref()
        node.stop().then(resolve, (err: unknown) => {
          this.logToStderr(`shutdown failed: ${(err as Error).message}`)
          process.exit(1)
        })
      }
      process.on('SIGINT', onSignal)
      process.on('SIGTERM', onSignal)
    })
    await node.start()
    this.logToStderr(`btt-node is running: admin API ${node.apiUrl} (token in ${paths.apiToken}); peer id ${node.peerId}. Ctrl-C stops it.`)
    await stopped
    process.exit(0)
  }
}

