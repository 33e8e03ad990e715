import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { Lifecycle, type Component } from './lifecycle.js'

const silent = pino({ level: 'silent' })

function recorder () {
  const events: string[] = []
  const component = (name: string, opts: { failStart?: boolean, failStop?: boolean, hangStop?: boolean } = {}): Component => ({
    name,
    start: async () => {
      events.push(`start ${name}`)
      if (opts.failStart === true) throw new Error(`${name} cannot start`)
    },
    stop: async () => {
      events.push(`stop ${name}`)
      if (opts.failStop === true) throw new Error(`${name} cannot stop`)
      if (opts.hangStop === true) await new Promise(() => {})
    }
  })
  return { events, component }
}

describe('Lifecycle', () => {
  it('starts in order and stops in reverse', async () => {
    const { events, component } = recorder()
    const lc = new Lifecycle([component('a'), component('b'), component('c')], silent)
    await lc.start()
    await lc.stop()
    expect(events).toEqual(['start a', 'start b', 'start c', 'stop c', 'stop b', 'stop a'])
  })

  it('stops what started when a later component fails, then rethrows', async () => {
    const { events, component } = recorder()
    const lc = new Lifecycle([component('a'), component('b'), component('c', { failStart: true }), component('d')], silent)
    await expect(lc.start()).rejects.toThrow('c cannot start')
    expect(events).toEqual(['start a', 'start b', 'start c', 'stop b', 'stop a'])
  })

  it('keeps stopping the rest when one fails or hangs, and stops only once', async () => {
    const { events, component } = recorder()
    const lc = new Lifecycle([component('a'), component('b', { hangStop: true }), component('c', { failStop: true })], silent)
    await lc.start()
    const t0 = Date.now()
    await lc.stop(200)
    expect(Date.now() - t0).toBeLessThan(2000)
    expect(events).toEqual(['start a', 'start b', 'start c', 'stop c', 'stop b', 'stop a'])
    await lc.stop(200)
    expect(events).toHaveLength(6)
  })
})
