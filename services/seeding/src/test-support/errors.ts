import { CodedError } from '@btt/wire'
import { expect } from 'vitest'

/** The code of the coded error (SeedingError or a codec's) `fn` throws; fails the test otherwise. */
export function errorCode (fn: () => unknown): string {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(CodedError)
    return (err as CodedError).code
  }
  throw new Error('expected a coded error')
}
