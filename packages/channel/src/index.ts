/**
 * @btt/channel — the payment-channel core. Amounts are bigint base units (10^18 per BTT),
 * written as decimal strings on the wire and in JSON.
 */
export { BTT_DECIMALS, BASE_UNITS_PER_BTT, MAX_AMOUNT, parseBtt, parseBaseUnits, formatBtt, checkAmount } from './amount.js'
export { ChannelError, InvalidAmountError } from './errors.js'
