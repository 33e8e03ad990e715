/**
 * @btt/node — the node runtime: config, keys, service plugins, lifecycle, libp2p host,
 * admin API and its typed client, metrics and logs.
 */
export { createNode, type BttNode, type NodeInit } from './node.js'
export {
  defineService,
  type Service,
  type ServiceComponents,
  type ServiceDefinition,
  type ServiceInfo,
  type ServiceProtocol,
  type ServiceState,
  type PriceItem,
  type ServicePayments
} from './service.js'
export { buildConfigSchema, zAmount, zPort, LOG_LEVELS, type NodeConfig } from './config/schema.js'
export { loadConfig, readConfigFile, validateConfig, getPath, type LoadConfigInit } from './config/load.js'
export { setConfigValue } from './config/edit.js'
export { resolveHome, homePaths, initHome, assertInitialised, isInitialised, loadWallet, readApiToken, readRuntimeInfo, isAlive, type HomePaths, type InitResult, type RuntimeInfo } from './home.js'
export { AdminClient, type AdminClientInit } from './api/client.js'
export type { NodeStatus, ServiceChangeResult, ApiErrorBody, WalletJson, LedgerChannelJson, IncomingChannelJson, OutgoingChannelJson, ChannelDetailJson } from './api/types.js'
export { createLogger, type Logger } from './logger.js'
export { VERSION } from './version.js'
export type { OfferStatus } from './offers.js'
export { startPayments, servicePaymentsOf, type Payments, type PaymentsInit } from './payments.js'
export * from './errors.js'
export { DEFAULT_API_HOST, DEFAULT_API_PORT, DEFAULT_P2P_LISTEN, SHUTDOWN_DEADLINE_MS } from './constants.js'
export { writeFileAtomic } from './fs.js'
export { createP2PHost, type P2PHost, type P2PHostInit } from './p2p.js'
export { Framed, FRAME_JSON, type Frame } from './framed.js'
export { runDoctor, CHECK_TIMEOUT_MS, PROBE_TIMEOUT_MS, CLOCK_SKEW_FAIL_MS, CLOCK_SKEW_WARN_MS, DISK_HEADROOM_BYTES, type DoctorInit, type DoctorReport, type DoctorCheck, type DoctorCheckId, type DoctorStatus, type DoctorNetwork, type FreeSpace, type TrackerProbe } from './doctor.js'
export { backupHome, restoreHome, verifyBackup, BACKUP_FORMAT, BACKUP_FORMAT_VERSION, BackupFileExistsError, BackupPathError, BackupInvalidError, BackupFailedError, RestoreHomeNotEmptyError, RestoreNodeRunningError, type BackupInit, type BackupResult, type RestoreInit, type RestoreResult, type BackupManifest, type BackupFileEntry, type BackupProgress } from './backup.js'
