import sodium from 'sodium-native'
import { InvalidKeyError } from './errors.js'

export const PUBLIC_KEY_BYTES = 32
export const SECRET_KEY_BYTES = 64
export const SIGNATURE_BYTES = 64
export const HASH_BYTES = 32

/** An ed25519 key pair in libsodium's layout: `secretKey` is seed ‖ publicKey. */
export interface KeyPair {
  publicKey: Uint8Array
  secretKey: Uint8Array
}

export function generateKeyPair (): KeyPair {
  const publicKey = Buffer.alloc(PUBLIC_KEY_BYTES)
  const secretKey = Buffer.alloc(SECRET_KEY_BYTES)
  sodium.crypto_sign_keypair(publicKey, secretKey)
  return { publicKey, secretKey }
}

/** Rebuild a key pair from its 32-byte seed. */
export function keyPairFromSeed (seed: Uint8Array): KeyPair {
  if (seed.length !== sodium.crypto_sign_SEEDBYTES) throw new InvalidKeyError('seed must be 32 bytes')
  const publicKey = Buffer.alloc(PUBLIC_KEY_BYTES)
  const secretKey = Buffer.alloc(SECRET_KEY_BYTES)
  sodium.crypto_sign_seed_keypair(publicKey, secretKey, Buffer.from(seed))
  return { publicKey, secretKey }
}

export function sign (message: Uint8Array, secretKey: Uint8Array): Uint8Array {
  if (secretKey.length !== SECRET_KEY_BYTES) throw new InvalidKeyError('secret key must be 64 bytes')
  const sig = Buffer.alloc(SIGNATURE_BYTES)
  sodium.crypto_sign_detached(sig, asBuffer(message), asBuffer(secretKey))
  return sig
}

/**
 * Strict ed25519 verification. libsodium (≥ 1.0.16) refuses non-canonical S (S ≥ L, the S+L
 * malleation), small-order R and small-order or non-canonical public keys, which includes the
 * all-zero key. Wrong lengths return false rather than throwing.
 */
export function verify (signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean {
  if (signature.length !== SIGNATURE_BYTES || publicKey.length !== PUBLIC_KEY_BYTES) return false
  return sodium.crypto_sign_verify_detached(asBuffer(signature), asBuffer(message), asBuffer(publicKey))
}

/**
 * Whether 32 bytes are a usable ed25519 public key: a canonical encoding of a point on the curve,
 * in the main subgroup, not of small order (the all-zero and identity encodings are refused).
 */
export function isValidPublicKey (key: Uint8Array): boolean {
  return key.length === PUBLIC_KEY_BYTES && sodium.crypto_core_ed25519_is_valid_point(asBuffer(key))
}

/** BLAKE2b-256 of the concatenated parts. */
export function blake2b256 (...parts: Uint8Array[]): Uint8Array {
  const out = Buffer.alloc(HASH_BYTES)
  sodium.crypto_generichash(out, Buffer.concat(parts))
  return out
}

export function randomBytes (n: number): Uint8Array {
  const buf = Buffer.alloc(n)
  sodium.randombytes_buf(buf)
  return buf
}

export function toHex (bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')
}

/** Strict lower-case hex of an exact byte length. */
export function fromHex (text: unknown, bytes: number, what: string): Uint8Array {
  if (typeof text !== 'string' || text.length !== bytes * 2 || !/^[0-9a-f]*$/.test(text)) {
    throw new InvalidKeyError(`${what} must be ${bytes * 2} lower-case hex characters`)
  }
  return Buffer.from(text, 'hex')
}

function asBuffer (u8: Uint8Array): Buffer {
  return Buffer.isBuffer(u8) ? u8 : Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength)
}
