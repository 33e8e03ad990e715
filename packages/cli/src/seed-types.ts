/** The JSON the seeding service's admin routes answer (engine.ts TorrentSummary/TorrentDetail). */
export type { TorrentSummary as TorrentSummaryJson, TorrentDetail as TorrentDetailJson } from '@btt/service-seeding'
