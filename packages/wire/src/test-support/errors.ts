import { expect } from 'vitest'
import { CodedError } from '../errors.js'

/** The code of the CodedError `fn` throws; fails the test if it returns or throws anything else. */
export function errorCode (fn: () => unknown): string {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(CodedError)
    return (err as CodedError).code
  }
  throw new Error('expected a CodedError')
}
