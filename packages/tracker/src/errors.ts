import { CodedError } from '@btt/wire'

/** A request the tracker refuses; `message` is the exact `failure reason` sent back. */
export class TrackerError extends CodedError {
  constructor (code: string, message: string, options?: ErrorOptions) {
    super(code, message, options)
    this.name = 'TrackerError'
  }
}
