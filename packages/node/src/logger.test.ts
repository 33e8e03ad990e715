import { Writable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { createLogger } from './logger.js'

function sink () {
  const lines: string[] = []
  const stream = new Writable({ write (chunk: Buffer, _enc, cb) { lines.push(chunk.toString()); cb() } })
  return { lines, stream }
}

describe('createLogger', () => {
  it('writes JSON lines when not pretty, honouring the level', async () => {
    const { lines, stream } = sink()
    const log = await createLogger({ level: 'warn', pretty: false, destination: stream })
    log.info('hidden')
    log.child({ module: 'api' }).warn({ port: 7070 }, 'port busy')
    await new Promise(resolve => setImmediate(resolve))
    expect(lines).toHaveLength(1)
    expect(JSON.parse(lines[0] as string)).toMatchObject({ level: 40, module: 'api', port: 7070, msg: 'port busy' })
  })

  it('writes readable lines when pretty', async () => {
    const { lines, stream } = sink()
    const log = await createLogger({ level: 'info', pretty: true, destination: stream })
    log.info({ peerId: '12D3KooW' }, 'node started')
    await new Promise(resolve => setTimeout(resolve, 50))
    const text = lines.join('').replace(/\x1b\[[0-9;]*m/g, '')
    expect(text).toContain('INFO')
    expect(text).toContain('node started')
    expect(() => JSON.parse(text)).toThrow()
  })
})
