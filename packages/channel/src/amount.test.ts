import { describe, expect, it } from 'vitest'
import { BASE_UNITS_PER_BTT, MAX_AMOUNT, checkAmount, formatBtt, parseBaseUnits, parseBtt } from './amount.js'

describe('parseBtt', () => {
  it('parses whole and fractional BTT exactly', () => {
    expect(parseBtt('1')).toBe(BASE_UNITS_PER_BTT)
    expect(parseBtt('0')).toBe(0n)
    expect(parseBtt('0.25')).toBe(250_000_000_000_000_000n)
    expect(parseBtt('0.000000000000000001')).toBe(1n)
    expect(parseBtt('12.000000000000000001')).toBe(12n * BASE_UNITS_PER_BTT + 1n)
    // far beyond 2^53 and beyond SQLite's int64: stays exact
    expect(parseBtt('9223372036.854775808')).toBe(9_223_372_036_854_775_808_000_000_000n)
  })

  it.each([
    ['-1', 'negative'],
    ['-0.5', 'negative'],
    ['', 'empty'],
    ['1e18', 'decimal'],
    ['01', 'decimal'],
    ['1.', 'decimal'],
    ['.5', 'decimal'],
    [' 1', 'decimal'],
    ['1,5', 'decimal'],
    ['+1', 'decimal'],
    ['0x10', 'decimal'],
    ['1.0000000000000000001', 'more than 18 decimals'],
    ['9'.repeat(100), 'too long']
  ])('rejects %j', (text, why) => {
    expect(() => parseBtt(text)).toThrow(expect.objectContaining({ code: 'CHANNEL_INVALID_AMOUNT', message: expect.stringContaining(why) }))
  })

  it('rejects amounts above the cap', () => {
    const over = (MAX_AMOUNT / BASE_UNITS_PER_BTT + 1n).toString()
    expect(() => parseBtt(over)).toThrow(expect.objectContaining({ code: 'CHANNEL_INVALID_AMOUNT' }))
  })
})

describe('parseBaseUnits', () => {
  it('parses decimal integers and rejects anything else', () => {
    expect(parseBaseUnits('1000000000000000000')).toBe(BASE_UNITS_PER_BTT)
    expect(parseBaseUnits(MAX_AMOUNT.toString())).toBe(MAX_AMOUNT)
    for (const bad of ['1.5', '-1', '007', '', '1e3', (MAX_AMOUNT + 1n).toString()]) {
      expect(() => parseBaseUnits(bad), bad).toThrow(expect.objectContaining({ code: 'CHANNEL_INVALID_AMOUNT' }))
    }
  })
})

describe('formatBtt', () => {
  it('round-trips with parseBtt', () => {
    for (const text of ['0', '1', '0.5', '123.456', '0.000000000000000001', '340282366920.938463463374607431']) {
      expect(formatBtt(parseBtt(text))).toBe(text)
    }
  })

  it('pads to fixed decimals and refuses to truncate', () => {
    expect(formatBtt(parseBtt('1.5'), 4)).toBe('1.5000')
    expect(formatBtt(parseBtt('2'), 0)).toBe('2')
    expect(() => formatBtt(parseBtt('1.23456'), 2)).toThrow(expect.objectContaining({ code: 'CHANNEL_INVALID_AMOUNT' }))
  })

  it('checkAmount rejects negative and oversized values', () => {
    expect(() => checkAmount(-1n)).toThrow(expect.objectContaining({ code: 'CHANNEL_INVALID_AMOUNT' }))
    expect(() => checkAmount(MAX_AMOUNT + 1n)).toThrow(expect.objectContaining({ code: 'CHANNEL_INVALID_AMOUNT' }))
  })
})
