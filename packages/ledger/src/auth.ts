import { randomBytes, sign, toHex, type KeyPair } from '@btt/channel'
import { HEADER_ACCOUNT, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP, REQUEST_DOMAIN, REQUEST_NONCE_BYTES } from './constants.js'

/**
 * The bytes an account signs for a mutating request: the UTF-8 text
 * `"btt-ledger-request-v1\n" + ledgerId + "\n" + METHOD + "\n" + path + "\n" + timestamp + "\n" + nonce + "\n"`
 * followed by the raw body bytes. `path` is the URL's pathname as sent (no query), `timestamp`
 * the decimal unix-ms text of the header, `nonce` its 32 hex characters.
 */
export function requestMessage (ledgerId: string, method: string, path: string, timestamp: string, nonce: string, body: Uint8Array): Uint8Array {
  const head = Buffer.from(`${REQUEST_DOMAIN}\n${ledgerId}\n${method.toUpperCase()}\n${path}\n${timestamp}\n${nonce}\n`, 'utf8')
  return Buffer.concat([head, body])
}

/** The four `x-btt-*` headers of a request signed by `keyPair` now, with a fresh nonce. */
export function signRequest (req: { ledgerId: string, method: string, path: string, body: Uint8Array, keyPair: KeyPair, timestamp?: number, nonce?: string }): Record<string, string> {
  const timestamp = String(req.timestamp ?? Date.now())
  const nonce = req.nonce ?? toHex(randomBytes(REQUEST_NONCE_BYTES))
  const signature = sign(requestMessage(req.ledgerId, req.method, req.path, timestamp, nonce, req.body), req.keyPair.secretKey)
  return {
    [HEADER_ACCOUNT]: toHex(req.keyPair.publicKey),
    [HEADER_TIMESTAMP]: timestamp,
    [HEADER_NONCE]: nonce,
    [HEADER_SIGNATURE]: toHex(signature)
  }
}
