import { randomBytes } from 'node:crypto'
import { access, chmod, mkdir, readFile, rm } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join, resolve } from 'node:path'
import { privateKeyFromRaw } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { writeConfigFile } from './config/edit.js'
import { ENV_PREFIX } from './constants.js'
import { HomeExistsError, HomeNotInitialisedError, KeyFileError, NodeAlreadyRunningError } from './errors.js'
import { writeFileAtomic } from './fs.js'
import { generateKeyPair } from '@btt/channel'
import { readKeyFile, writeKeyFile, type Ed25519KeyPair } from './keys.js'

/** Where everything of one node lives. */
export interface HomePaths {
  home: string
  config: string
  keysDir: string
  identityKey: string
  walletKey: string
  apiToken: string
  dataDir: string
  /** Written while a node runs: its pid and admin API address. */
  runtime: string
}

/** `--home`, else `BTT_NODE_HOME`, else `~/.btt-node`. */
export function resolveHome (flag?: string, env: Record<string, string | undefined> = process.env): string {
  const home = flag ?? env[`${ENV_PREFIX}HOME`] ?? join(homedir(), '.btt-node')
  return resolve(home)
}

export function homePaths (home: string): HomePaths {
  const keysDir = join(home, 'keys')
  return {
    home,
    config: join(home, 'config.toml'),
    keysDir,
    identityKey: join(keysDir, 'identity.key'),
    walletKey: join(keysDir, 'wallet.key'),
    apiToken: join(home, 'api.token'),
    dataDir: join(home, 'data'),
    runtime: join(home, 'node.json')
  }
}

export interface InitResult {
  home: string
  peerId: string
  walletPublicKey: string
  config: string
  apiToken: string
}

/**
 * Create a node home: directory 0700, config.toml with the embedded defaults, an identity key,
 * a separate wallet key and an admin API token, each 0600. Refuses an initialised home.
 */
export async function initHome (home: string, initialConfig: Record<string, unknown> = {}): Promise<InitResult> {
  const paths = homePaths(home)
  if (await exists(paths.config)) throw new HomeExistsError(home)
  for (const key of [paths.identityKey, paths.walletKey]) {
    if (await exists(key)) throw new KeyFileError(key, 'a key already exists here without a config.toml; move it away or restore config.toml')
  }
  await mkdir(home, { recursive: true, mode: 0o700 })
  await chmod(home, 0o700)
  await mkdir(paths.keysDir, { recursive: true, mode: 0o700 })
  await mkdir(paths.dataDir, { recursive: true, mode: 0o700 })
  const identity = generateKeyPair()
  const wallet = generateKeyPair()
  await writeKeyFile(paths.identityKey, 'identity', identity)
  await writeKeyFile(paths.walletKey, 'wallet', wallet)
  await writeFileAtomic(paths.apiToken, randomBytes(32).toString('base64url') + '\n', 0o600)
  // config.toml last: its presence marks the home as initialised.
  await writeConfigFile(paths.config, initialConfig)
  return {
    home,
    peerId: peerIdOf(identity),
    walletPublicKey: Buffer.from(wallet.publicKey).toString('hex'),
    config: paths.config,
    apiToken: paths.apiToken
  }
}

/** Whether `home` has a config.toml (what `init` writes last). */
export async function isInitialised (home: string): Promise<boolean> {
  return await exists(homePaths(home).config)
}

export async function assertInitialised (home: string): Promise<HomePaths> {
  if (!(await isInitialised(home))) throw new HomeNotInitialisedError(home)
  return homePaths(home)
}

export function libp2pKeyOf (key: Ed25519KeyPair): PrivateKey {
  return privateKeyFromRaw(key.secretKey)
}

export function peerIdOf (key: Ed25519KeyPair): string {
  return peerIdFromPrivateKey(libp2pKeyOf(key)).toString()
}

export async function loadIdentity (paths: HomePaths): Promise<Ed25519KeyPair> {
  return await readKeyFile(paths.identityKey, 'identity')
}

export async function loadWallet (paths: HomePaths): Promise<Ed25519KeyPair> {
  return await readKeyFile(paths.walletKey, 'wallet')
}

export async function readApiToken (paths: HomePaths): Promise<string> {
  try {
    const token = (await readFile(paths.apiToken, 'utf8')).trim()
    if (token.length < 16) throw new KeyFileError(paths.apiToken, 'token is too short; delete the file and run `btt-node init` on a new home, or write 32+ random characters')
    return token
  } catch (err) {
    if (err instanceof KeyFileError) throw err
    throw new KeyFileError(paths.apiToken, `cannot read the admin API token: ${(err as Error).message}`, { cause: err })
  }
}

/** What a running node writes to `node.json`. */
export interface RuntimeInfo {
  pid: number
  apiUrl: string
  peerId: string
  startedAt: string
}

export async function readRuntimeInfo (paths: HomePaths): Promise<RuntimeInfo | undefined> {
  try {
    const info = JSON.parse(await readFile(paths.runtime, 'utf8')) as RuntimeInfo
    if (typeof info.pid !== 'number' || typeof info.apiUrl !== 'string') return undefined
    return info
  } catch {
    return undefined
  }
}

/** Refuse to start a second node on the same home while the first one's process is alive. */
export async function claimRuntime (paths: HomePaths): Promise<void> {
  const info = await readRuntimeInfo(paths)
  if (info !== undefined && info.pid !== process.pid && isAlive(info.pid)) throw new NodeAlreadyRunningError(paths.home, info.pid)
}

export async function writeRuntimeInfo (paths: HomePaths, info: RuntimeInfo): Promise<void> {
  await writeFileAtomic(paths.runtime, JSON.stringify(info, null, 2) + '\n', 0o600)
}

export async function removeRuntimeInfo (paths: HomePaths): Promise<void> {
  const info = await readRuntimeInfo(paths)
  if (info === undefined || info.pid === process.pid) await rm(paths.runtime, { force: true })
}

/** True while a process with this pid exists (signal 0; EPERM means it exists but is not ours). */
export function isAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

async function exists (path: string): Promise<boolean> {
  try {
    await access(path)
    return true
  } catch {
    return false
  }
}

