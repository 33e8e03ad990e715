export { runAuction, type Bidder, type AuctionResult } from './auction.js'
export { reservePrice, type ReserveSchedule } from './reserve.js'
export { UploadBitmap, selectChallenge } from './challenge.js'
export { autoBid, parseSpendingRate, BidScheduler, PPM } from './autobid.js'
