import type { Logger } from 'pino'
import { COMPONENT_STOP_TIMEOUT_MS } from './constants.js'

export interface Component {
  name: string
  start(): Promise<void>
  stop(): Promise<void>
}

/**
 * Starts components in the order given (dependencies first) and stops the started ones in
 * reverse. If a start fails, what already started is stopped before the error is rethrown.
 * A component that does not stop within its timeout is logged and left behind so that the
 * rest still stop.
 */
export class Lifecycle {
  private started: Component[] = []

  constructor (private readonly components: readonly Component[], private readonly logger: Logger) {}

  async start (): Promise<void> {
    for (const c of this.components) {
      try {
        await c.start()
      } catch (err) {
        this.logger.debug({ component: c.name, err }, 'start failed; stopping what started')
        await this.stop()
        throw err
      }
      this.started.push(c)
      this.logger.debug({ component: c.name }, 'started')
    }
  }

  async stop (timeoutMs = COMPONENT_STOP_TIMEOUT_MS): Promise<void> {
    const toStop = this.started.reverse()
    this.started = []
    for (const c of toStop) {
      let timer: NodeJS.Timeout | undefined
      const timeout = new Promise<'timeout'>(resolve => { timer = setTimeout(() => { resolve('timeout') }, timeoutMs) })
      try {
        const result = await Promise.race([c.stop().then(() => 'ok' as const), timeout])
        if (result === 'timeout') this.logger.warn({ component: c.name, timeoutMs }, 'component did not stop in time; continuing shutdown')
        else this.logger.debug({ component: c.name }, 'stopped')
      } catch (err) {
        this.logger.error({ component: c.name, err }, 'component failed to stop cleanly')
      } finally {
        clearTimeout(timer)
      }
    }
  }
}
