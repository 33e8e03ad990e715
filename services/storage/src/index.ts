/**
 * @btt/service-storage — encrypted storage with proofs-of-storage: the protocol, the provider and
 * the client in one package (docs/storage.md).
 */
export { StorageError } from './errors.js'
export * from './protocol.js'
export { StorageClient, retrievalCost, type StoredFile, type PutOptions, type ProveResult, type ClientInit, type FileStatus } from './client.js'
export { StorageProvider, type ProviderConfig, type ProviderContract, type ProviderInit, type ContractStatus } from './provider.js'
export { FsBlobStore, type BlobStore, type BlobWriter } from './blobs.js'
export * from './crypto.js'
export * from './merkle.js'
export * from './proof.js'
