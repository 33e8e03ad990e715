/** Errors of the storage service; `code` is stable (API bodies and CLI messages use it). */
export class StorageError extends Error {
  constructor (readonly code: string, message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'StorageError'
  }
}
