import { pino, type DestinationStream, type Logger } from 'pino'

export type { Logger } from 'pino'

export interface LoggerInit {
  level: string
  /** Human-readable output; default: when stdout is a TTY. JSON otherwise. */
  pretty?: boolean
  /** Where to write (default stdout). */
  destination?: DestinationStream
}

/** The node's root logger: JSON lines when piped, readable lines on a terminal. */
export async function createLogger (init: LoggerInit): Promise<Logger> {
  const pretty = init.pretty ?? process.stdout.isTTY === true
  const options = { level: init.level, base: { pid: process.pid } }
  if (pretty) {
    // Loaded only on a terminal: pino-pretty costs start-up time a service manager does not need.
    const { default: prettyStream } = await import('pino-pretty')
    return pino(options, prettyStream({ colorize: true, sync: true, destination: init.destination as never, ignore: 'pid,hostname' }))
  }
  return pino(options, init.destination ?? pino.destination({ sync: false }))
}
