import { expect } from 'vitest'
import { SeedingError } from '../errors.js'

/** The code of the SeedingError `fn` throws; fails the test if it returns or throws anything else. */
export function errorCode (fn: () => unknown): string {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(SeedingError)
    return (err as SeedingError).code
  }
  throw new Error('expected a SeedingError')
}
