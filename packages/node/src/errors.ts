/**
 * Errors of @btt/node. One class per condition, each with a stable `code` that the admin API
 * maps to an HTTP status (api/errors.ts) and that tests assert on.
 */
export class NodeError extends Error {
  readonly code: string
  constructor (code: string, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
  }
}

/** One problem in the configuration, naming the key (`api.port`) and what is wrong. */
export interface ConfigIssue {
  key: string
  problem: string
}

export class ConfigError extends NodeError {
  static readonly code = 'CONFIG_INVALID'
  override readonly name = 'ConfigError'
  readonly issues: ConfigIssue[]
  constructor (source: string, issues: ConfigIssue[], options?: { cause?: unknown }) {
    super(ConfigError.code, `invalid configuration in ${source}:\n${issues.map(i => `  ${i.key}: ${i.problem}`).join('\n')}`, options)
    this.issues = issues
  }
}

export class HomeNotInitialisedError extends NodeError {
  static readonly code = 'HOME_NOT_INITIALISED'
  override readonly name = 'HomeNotInitialisedError'
  constructor (home: string) {
    super(HomeNotInitialisedError.code, `${home} is not a btt-node home (no config.toml); run \`btt-node init --home ${home}\` first`)
  }
}

export class HomeExistsError extends NodeError {
  static readonly code = 'HOME_EXISTS'
  override readonly name = 'HomeExistsError'
  constructor (home: string) {
    super(HomeExistsError.code, `${home} is already initialised (config.toml exists); refusing to overwrite its keys`)
  }
}

export class KeyFileError extends NodeError {
  static readonly code = 'KEY_FILE_INVALID'
  override readonly name = 'KeyFileError'
  constructor (path: string, problem: string, options?: { cause?: unknown }) {
    super(KeyFileError.code, `${path}: ${problem}`, options)
  }
}

export class NodeAlreadyRunningError extends NodeError {
  static readonly code = 'NODE_ALREADY_RUNNING'
  override readonly name = 'NodeAlreadyRunningError'
  constructor (home: string, pid: number) {
    super(NodeAlreadyRunningError.code, `a node is already running on ${home} (pid ${pid})`)
  }
}

export class ListenError extends NodeError {
  static readonly code = 'LISTEN_FAILED'
  override readonly name = 'ListenError'
  constructor (what: string, address: string, hint: string, options?: { cause?: unknown }) {
    super(ListenError.code, `${what} could not listen on ${address}: ${(options?.cause as Error | undefined)?.message ?? 'unknown error'} (${hint})`, options)
  }
}

export class UnknownServiceError extends NodeError {
  static readonly code = 'SERVICE_UNKNOWN'
  override readonly name = 'UnknownServiceError'
  constructor (name: string, known: string[]) {
    super(UnknownServiceError.code, `unknown service "${name}" (known: ${known.length > 0 ? known.join(', ') : 'none'})`)
  }
}

export class ServiceNotRunningError extends NodeError {
  static readonly code = 'SERVICE_NOT_RUNNING'
  override readonly name = 'ServiceNotRunningError'
  constructor (name: string, state: string) {
    super(ServiceNotRunningError.code, `service "${name}" is ${state}; enable it with \`btt-node services enable ${name}\``)
  }
}

export class ServiceStartError extends NodeError {
  static readonly code = 'SERVICE_START_FAILED'
  override readonly name = 'ServiceStartError'
  constructor (name: string, options: { cause: unknown }) {
    super(ServiceStartError.code, `service "${name}" failed to start: ${(options.cause as Error)?.message ?? String(options.cause)}`, options)
  }
}

export class ServiceDefinitionError extends NodeError {
  static readonly code = 'SERVICE_DEFINITION_INVALID'
  override readonly name = 'ServiceDefinitionError'
  constructor (message: string) {
    super(ServiceDefinitionError.code, message)
  }
}

export class UnauthorizedError extends NodeError {
  static readonly code = 'API_UNAUTHORIZED'
  override readonly name = 'UnauthorizedError'
  constructor () {
    super(UnauthorizedError.code, 'missing or wrong bearer token (it is in <home>/api.token)')
  }
}

export class HostForbiddenError extends NodeError {
  static readonly code = 'API_HOST_FORBIDDEN'
  override readonly name = 'HostForbiddenError'
  constructor (host: string) {
    super(HostForbiddenError.code, `Host "${host}" is not allowed; add it to api.allowed_hosts if you proxy the admin API`)
  }
}

export class RouteNotFoundError extends NodeError {
  static readonly code = 'API_NOT_FOUND'
  override readonly name = 'RouteNotFoundError'
  constructor (method: string, path: string) {
    super(RouteNotFoundError.code, `no route ${method} ${path}`)
  }
}

/** The admin API answered with an error (client side). */
export class AdminApiError extends NodeError {
  override readonly name = 'AdminApiError'
  readonly status: number
  constructor (code: string, status: number, message: string) {
    super(code, message)
    this.status = status
  }
}

export class NodeNotRunningError extends NodeError {
  static readonly code = 'NODE_NOT_RUNNING'
  override readonly name = 'NodeNotRunningError'
  constructor (url: string, options?: { cause?: unknown }) {
    super(NodeNotRunningError.code, `no node answers at ${url}; start it with \`btt-node start\``, options)
  }
}
