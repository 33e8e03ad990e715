import { describe, expect, it } from 'vitest'
import { duration, table } from './format.js'

describe('table', () => {
  it('pads columns to their widest cell and trims line ends', () => {
    expect(table(['A', 'LONGER', 'C'], [['xyz', '1', 'last'], ['', 'twotwo', '']])).toBe(
      'A    LONGER  C\n' +
      'xyz  1       last\n' +
      '     twotwo'
    )
  })
})

describe('duration', () => {
  it.each([[0, '0s'], [59, '59s'], [61, '1m 1s'], [3725, '1h 2m 5s'], [90061, '1d 1h 1m 1s'], [86400, '1d 0s']])('%i s is %s', (s, text) => {
    expect(duration(s)).toBe(text)
  })
})
