/** Errors of the proxy service; `code` is stable (API bodies, wire errors and CLI messages use it). */
export class ProxyError extends Error {
  constructor (readonly code: string, message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'ProxyError'
  }
}
