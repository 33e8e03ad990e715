import { mkdtemp } from 'node:fs/promises'
import { DatabaseSync } from 'node:sqlite'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { fromLedger } from './state.js'
import { SqliteChannelStore } from './store.js'
import { fixture } from './test-support/fixtures.js'
import { amountFromBytes } from './voucher.js'

/**
 * The SQLite store commits a lone update of an idle store on the caller's thread and groups the
 * updates of a busy one in the writer thread. Either way an update resolves only once it is on
 * disk, updates reach the disk in the order they were made, and a failed commit stops the store.
 */

async function freshStore (): Promise<{ store: SqliteChannelStore, path: string }> {
  const path = join(await mkdtemp(join(tmpdir(), 'btt-store-')), 'channels.db')
  return { store: new SqliteChannelStore(path), path }
}

/** What another connection reads from the file: only committed rows. */
function highestOnDisk (path: string, id: string): bigint | undefined {
  const db = new DatabaseSync(path, { readOnly: true })
  try {
    const row = db.prepare('SELECT highest FROM incoming WHERE id = ?').get(id) as { highest: Uint8Array } | undefined
    return row === undefined ? undefined : amountFromBytes(row.highest)
  } finally {
    db.close()
  }
}

const idle = async (): Promise<void> => { await new Promise(resolve => setTimeout(resolve, 10)) }

describe('SqliteChannelStore commits', () => {
  it('an idle store commits a lone update inline: on disk when it resolves, no writer thread started', async () => {
    const { store, path } = await freshStore()
    const c = fromLedger(fixture().channel)
    await store.updateIncoming(c.id, () => ({ state: { ...c, highest: 7n }, result: undefined }))
    expect(highestOnDisk(path, c.id)).toBe(7n)
    expect(store['writerThread']).toBeUndefined()
    await store.close()
  })

  it('a busy store sends a burst through the writer thread; every update resolves on disk and the last one wins', async () => {
    const { store, path } = await freshStore()
    const c = fromLedger(fixture().channel)
    await store.updateIncoming(c.id, () => ({ state: c, result: undefined }))
    // one update per event-loop turn, faster than the idle gap: an inline commit first, then batches
    const done: Array<Promise<void>> = []
    for (let i = 1n; i <= 200n; i++) {
      done.push(store.updateIncoming(c.id, cur => ({ state: { ...cur!, highest: i }, result: undefined })).then(() => {
        // resolved means committed: what is on disk is at least this update
        expect(highestOnDisk(path, c.id)! >= i).toBe(true)
      }))
      await new Promise(resolve => setImmediate(resolve))
    }
    await Promise.all(done)
    expect(store['writerThread']).toBeDefined()
    expect(highestOnDisk(path, c.id)).toBe(200n)
    await store.close()
    const reopened = new SqliteChannelStore(path)
    expect(reopened.getIncoming(c.id)?.highest).toBe(200n)
    await reopened.close()
  })

  it('a failed inline commit rejects its whole batch and every later update; nothing of it reaches the disk', async () => {
    const { store, path } = await freshStore()
    const good = fromLedger(fixture().channel)
    await store.updateIncoming(good.id, () => ({ state: good, result: undefined }))
    await idle()
    // NaN binds as NULL: NOT NULL fails inside the inline transaction, which also held the next update
    const bad = store.updateIncoming(good.id, cur => ({ state: { ...cur!, expiresAt: Number.NaN }, result: undefined }))
    const sameBatch = store.updateIncoming(good.id, cur => ({ state: { ...cur!, highest: 5n }, result: undefined }))
    await expect(bad).rejects.toMatchObject({ code: 'CHANNEL_STORE_FAILED' })
    await expect(sameBatch).rejects.toMatchObject({ code: 'CHANNEL_STORE_FAILED' })
    expect(store['writerThread']).toBeUndefined()
    await expect(store.updateIncoming(good.id, cur => ({ state: cur!, result: undefined }))).rejects.toMatchObject({ code: 'CHANNEL_STORE_FAILED' })
    await store.close()
    const reopened = new SqliteChannelStore(path)
    expect(reopened.getIncoming(good.id)).toEqual(good)
    await reopened.close()
  })
})
