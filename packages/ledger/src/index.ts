/**
 * @btt/ledger — the settlement ledger (the whitepaper's private ledger): accounts, channels, claims,
 * refunds on node:sqlite; its HTTP server; and two LedgerClients (HTTP, and in-process).
 */
export { Ledger, type LedgerInit, type LedgerCheck } from './ledger.js'
export { createLedgerApp, statusForCode, type LedgerAppInit } from './http.js'
export { startLedgerServer, type LedgerServer, type LedgerServerInit } from './server.js'
export { HttpLedgerClient, LocalLedgerClient, errorFromCode, type HttpLedgerClientInit, type LocalLedgerClientInit } from './client.js'
export { requestMessage, signRequest } from './auth.js'
export { channelToJson, type ChannelJson } from './json.js'
export * from './errors.js'
export {
  DEFAULT_CHALLENGE_WINDOW_MS,
  REQUEST_DOMAIN,
  REQUEST_MAX_SKEW_MS,
  MAX_BODY_BYTES,
  HEADER_ACCOUNT,
  HEADER_TIMESTAMP,
  HEADER_NONCE,
  HEADER_SIGNATURE
} from './constants.js'
