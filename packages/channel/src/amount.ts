import { InvalidAmountError } from './errors.js'

/** Decimal places of one BTT: amounts are bigint base units, 1 BTT = 10^18 base units. */
export const BTT_DECIMALS = 18
/** Base units in one BTT. */
export const BASE_UNITS_PER_BTT = 10n ** BigInt(BTT_DECIMALS)
/**
 * Largest amount accepted anywhere (config, wire, CLI): 2^128 − 1 base units, about 3.4e20 BTT,
 * far above the whole BTT supply (about 9.9e14 BTT). The cap keeps peer- and user-controlled
 * numbers bounded and lets amounts be stored in fixed 16-byte fields.
 */
export const MAX_AMOUNT = (1n << 128n) - 1n

const BTT_DECIMAL = /^(0|[1-9][0-9]*)(?:\.([0-9]+))?$/
const BASE_DECIMAL = /^(0|[1-9][0-9]*)$/
/** Longest decimal string we parse, so a hostile input cannot make BigInt() work hard. */
const MAX_DECIMAL_CHARS = 80

/**
 * Parse an amount written in BTT with up to 18 decimals ("1", "0.25", "12.000000000000000001")
 * into base units. Rejects signs, exponents, spaces, leading zeros, empty parts and excess precision:
 * money is never rounded.
 */
export function parseBtt (text: string): bigint {
  if (typeof text !== 'string') throw new InvalidAmountError(`amount must be a string, got ${typeof text}`)
  if (text.length === 0) throw new InvalidAmountError('amount is empty')
  if (text.length > MAX_DECIMAL_CHARS) throw new InvalidAmountError('amount is too long')
  if (text.startsWith('-')) throw new InvalidAmountError(`amount must not be negative: "${text}"`)
  const m = BTT_DECIMAL.exec(text)
  if (m === null) throw new InvalidAmountError(`not a decimal BTT amount: "${text}" (write e.g. "0.001")`)
  const whole = m[1] as string
  const frac = m[2] ?? ''
  if (frac.length > BTT_DECIMALS) {
    throw new InvalidAmountError(`amount "${text}" has more than ${BTT_DECIMALS} decimals`)
  }
  const value = BigInt(whole) * BASE_UNITS_PER_BTT + BigInt(frac.padEnd(BTT_DECIMALS, '0'))
  return checkAmount(value)
}

/** Parse a decimal string of base units ("1000000000000000000"), the form amounts take on the wire and in JSON. */
export function parseBaseUnits (text: string): bigint {
  if (typeof text !== 'string') throw new InvalidAmountError(`amount must be a decimal string, got ${typeof text}`)
  if (text.length === 0 || text.length > MAX_DECIMAL_CHARS) throw new InvalidAmountError('amount is empty or too long')
  if (text.startsWith('-')) throw new InvalidAmountError(`amount must not be negative: "${text}"`)
  if (!BASE_DECIMAL.test(text)) throw new InvalidAmountError(`not a decimal integer amount: "${text}"`)
  return checkAmount(BigInt(text))
}

/** Check that a bigint is a valid amount: 0 ≤ value ≤ MAX_AMOUNT. Returns it. */
export function checkAmount (value: bigint): bigint {
  if (typeof value !== 'bigint') throw new InvalidAmountError(`amount must be a bigint, got ${typeof value}`)
  if (value < 0n) throw new InvalidAmountError(`amount must not be negative: ${value}`)
  if (value > MAX_AMOUNT) throw new InvalidAmountError(`amount ${value} exceeds the maximum ${MAX_AMOUNT}`)
  return value
}

/**
 * Format base units as BTT with the fewest decimals that are exact ("1", "0.25"),
 * or with exactly `decimals` places when given (truncating is refused: pass enough places).
 */
export function formatBtt (value: bigint, decimals?: number): string {
  checkAmount(value)
  const whole = value / BASE_UNITS_PER_BTT
  const frac = (value % BASE_UNITS_PER_BTT).toString().padStart(BTT_DECIMALS, '0')
  if (decimals === undefined) {
    const trimmed = frac.replace(/0+$/, '')
    return trimmed.length === 0 ? whole.toString() : `${whole}.${trimmed}`
  }
  if (!Number.isInteger(decimals) || decimals < 0 || decimals > BTT_DECIMALS) {
    throw new RangeError(`decimals must be an integer 0..${BTT_DECIMALS}`)
  }
  const kept = frac.slice(0, decimals)
  if (/[1-9]/.test(frac.slice(decimals))) {
    throw new InvalidAmountError(`${value} base units cannot be shown exactly with ${decimals} decimals`)
  }
  return decimals === 0 ? whole.toString() : `${whole}.${kept}`
}
