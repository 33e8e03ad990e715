import { chmod, mkdtemp, readFile, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { beforeEach, describe, expect, it } from 'vitest'
import { initHome, peerIdOf } from './home.js'
import { generateKeyPair } from '@btt/channel'
import { readKeyFile, writeKeyFile } from './keys.js'

let dir: string
beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'btt-keys-')) })

describe('key files', () => {
  it('round-trips a key, 0600', async () => {
    const key = generateKeyPair()
    const path = join(dir, 'k.key')
    await writeKeyFile(path, 'wallet', key)
    expect((await stat(path)).mode & 0o777).toBe(0o600)
    const back = await readKeyFile(path, 'wallet')
    expect(Buffer.from(back.secretKey).equals(Buffer.from(key.secretKey))).toBe(true)
    expect(peerIdOf(back)).toBe(peerIdOf(key))
  })

  it('refuses files others can read, the wrong purpose, corruption and missing files', async () => {
    const path = join(dir, 'k.key')
    await writeKeyFile(path, 'identity', generateKeyPair())
    await chmod(path, 0o644)
    await expect(readKeyFile(path, 'identity')).rejects.toMatchObject({ code: 'KEY_FILE_INVALID', message: expect.stringContaining('too open') })
    await chmod(path, 0o600)
    await expect(readKeyFile(path, 'wallet')).rejects.toMatchObject({ code: 'KEY_FILE_INVALID', message: expect.stringContaining('identity key') })

    const file = JSON.parse(await readFile(path, 'utf8')) as { publicKey: string }
    file.publicKey = Buffer.from(generateKeyPair().publicKey).toString('base64')
    await writeFile(path, JSON.stringify(file), { mode: 0o600 })
    await expect(readKeyFile(path, 'identity')).rejects.toMatchObject({ code: 'KEY_FILE_INVALID', message: expect.stringContaining('does not match') })

    await writeFile(path, 'not json', { mode: 0o600 })
    await expect(readKeyFile(path, 'identity')).rejects.toMatchObject({ code: 'KEY_FILE_INVALID' })
    await expect(readKeyFile(join(dir, 'missing.key'), 'identity')).rejects.toMatchObject({ code: 'KEY_FILE_INVALID', message: expect.stringContaining('missing') })
  })
})

describe('initHome', () => {
  it('creates a 0700 home with 0600 files and two different keys, and refuses to run twice', async () => {
    const home = join(dir, 'home')
    const result = await initHome(home)
    expect((await stat(home)).mode & 0o777).toBe(0o700)
    expect((await stat(join(home, 'keys'))).mode & 0o777).toBe(0o700)
    for (const f of ['config.toml', 'api.token', 'keys/identity.key', 'keys/wallet.key']) {
      expect((await stat(join(home, f))).mode & 0o777, f).toBe(0o600)
    }
    const identity = await readKeyFile(join(home, 'keys/identity.key'), 'identity')
    const wallet = await readKeyFile(join(home, 'keys/wallet.key'), 'wallet')
    expect(Buffer.from(identity.publicKey).equals(Buffer.from(wallet.publicKey))).toBe(false)
    expect(result.peerId).toBe(peerIdOf(identity))
    expect(result.walletPublicKey).toBe(Buffer.from(wallet.publicKey).toString('hex'))
    expect((await readFile(join(home, 'api.token'), 'utf8')).trim()).toMatch(/^[A-Za-z0-9_-]{43}$/)

    const before = await readFile(join(home, 'keys/wallet.key'), 'utf8')
    await expect(initHome(home)).rejects.toMatchObject({ code: 'HOME_EXISTS' })
    expect(await readFile(join(home, 'keys/wallet.key'), 'utf8')).toBe(before)
  })
})
