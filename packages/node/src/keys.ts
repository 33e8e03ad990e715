import { readFile, stat } from 'node:fs/promises'
import { keyPairFromSeed, type KeyPair } from '@btt/channel'
import { KeyFileError } from './errors.js'
import { writeFileAtomic } from './fs.js'

/** @btt/channel's key pair: libsodium's layout, `secretKey` = seed ‖ publicKey, as libp2p's raw Ed25519 keys. */
export type Ed25519KeyPair = KeyPair

/** What a key is for. The identity key signs transport handshakes and DHT offers; the wallet key signs money. */
export type KeyPurpose = 'identity' | 'wallet'

interface KeyFileV1 {
  version: 1
  type: 'ed25519'
  purpose: KeyPurpose
  /** base64 of the 32-byte seed. */
  seed: string
  /** base64 of the 32-byte public key, checked against the seed on load. */
  publicKey: string
}

const SEED_BYTES = 32

/** Write a key file, 0600, refusing to replace an existing one. */
export async function writeKeyFile (path: string, purpose: KeyPurpose, key: Ed25519KeyPair): Promise<void> {
  const file: KeyFileV1 = {
    version: 1,
    type: 'ed25519',
    purpose,
    seed: Buffer.from(key.secretKey.subarray(0, SEED_BYTES)).toString('base64'),
    publicKey: Buffer.from(key.publicKey).toString('base64')
  }
  await writeFileAtomic(path, JSON.stringify(file, null, 2) + '\n', 0o600)
}

/**
 * Load a key file. Refuses files readable by group or others (like ssh does), malformed files,
 * a key of another purpose and a public key that does not match the seed.
 */
export async function readKeyFile (path: string, purpose: KeyPurpose): Promise<Ed25519KeyPair> {
  let text: string
  try {
    const st = await stat(path)
    if ((st.mode & 0o077) !== 0) {
      throw new KeyFileError(path, `permissions ${(st.mode & 0o777).toString(8)} are too open; run \`chmod 600 ${path}\``)
    }
    text = await readFile(path, 'utf8')
  } catch (err) {
    if (err instanceof KeyFileError) throw err
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new KeyFileError(path, 'key file is missing; restore it from your backup (a new key is a new identity/wallet)', { cause: err })
    throw new KeyFileError(path, `cannot read key file: ${(err as Error).message}`, { cause: err })
  }
  let file: Partial<KeyFileV1>
  try {
    file = JSON.parse(text) as Partial<KeyFileV1>
  } catch (err) {
    throw new KeyFileError(path, 'not a JSON key file', { cause: err })
  }
  if (file.version !== 1 || file.type !== 'ed25519') throw new KeyFileError(path, 'unsupported key file (expected version 1, type ed25519)')
  if (file.purpose !== purpose) throw new KeyFileError(path, `this is a ${String(file.purpose)} key, expected the ${purpose} key`)
  const seed = Buffer.from(file.seed ?? '', 'base64')
  if (seed.length !== SEED_BYTES) throw new KeyFileError(path, 'seed must be 32 bytes of base64')
  const { publicKey, secretKey } = keyPairFromSeed(seed)
  seed.fill(0)
  if (Buffer.from(file.publicKey ?? '', 'base64').compare(publicKey) !== 0) {
    throw new KeyFileError(path, 'public key does not match the seed; the file is corrupt')
  }
  return { publicKey, secretKey }
}
