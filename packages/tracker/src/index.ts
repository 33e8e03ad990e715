/** @btt/tracker — an HTTP + UDP BitTorrent tracker with bid-announce and bid-scrape, and its client helpers. */
export { createTracker } from './server.js'
export type { TrackerInit, TrackerServer, AnnounceInput, SwarmStats } from './server.js'
export { TrackerError } from './errors.js'
export * from './constants.js'
export { announce, bidScrape, bidScrapeUrl, escapeBytes } from './client.js'
export type { AnnounceParams, AnnounceResponse, AnnouncedPeer, BidScrapeFile, BidScrapeResponse, RequestOptions } from './client.js'
