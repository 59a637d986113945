// Every limit and default of the maintenance agent, in one place so that their relations are checked at
// load time (STYLE.md). Imported only by src/alba/maintenance/ (the options type re-exports the defaults).
//
// Backpressure: the agent works on one object at a time and spends maintenance bytes (read + written)
// through a token bucket (throttle.ts) of bytesPerSecondMax, so client I/O keeps priority on the ASDs.

import { assert, MiB } from "../../base/index.js";

export const maintenanceLimits = {
  /** An ASD that has not answered for this long is failed and repaired away (DESIGN.md §6). */
  failAfterMsDefault: 900_000,
  /** How often every ASD is probed (disk usage). */
  probeIntervalMsDefault: 10_000,
  /** Pause between maintenance passes (repair, garbage collection, rebalance). */
  passIntervalMsDefault: 60_000,
  /** An upload record in state "uploading" is collected only once older than this (longer than any upload). */
  uploadGraceMsDefault: 900_000,
  /** An ASD key no manifest or garbage record covers is deleted once it has been so for this long. */
  orphanGraceMsDefault: 3_600_000,
  /** Rebalance starts when the fill of the fullest and the emptiest usable ASD differ by more than this (fraction). */
  rebalanceSpreadMaxDefault: 0.1,
  /** Fragment moves per rebalance pass. */
  rebalanceMovesMaxDefault: 256,
  /** Maintenance bytes (read + written) per second; the bucket holds one second of them. */
  bytesPerSecondMaxDefault: 64 * MiB,
  /** Per-request timeout of the agent's ASD connections. */
  requestTimeoutMsDefault: 10_000,
  /** Objects repaired per pass (the least safe first); the rest wait for the next pass. */
  repairBatchMax: 1024,
  /** Objects rewritten under a better policy per pass (after the repairs). */
  upgradeBatchMax: 64,
  /** Larger objects are not rewritten under a better policy (the rewrite holds the object in memory). */
  upgradeObjectBytesMax: 64 * MiB,
  /** Objects queued for repair by verify or reads (beyond this, new reports are dropped and counted). */
  repairQueueMax: 4096,
  /** Bad fragments kept in one verify report (all are counted and queued for repair). */
  verifyReportBadMax: 1000,
  /** Last errors kept for status. */
  lastErrorsMax: 20,
  /** Orphan candidates tracked between scans; past this the scan stops adding (and says so). */
  orphanTrackedMax: 100_000,
  /** Fragment keys listed per ASD per orphan scan. */
  orphanScanKeysMax: 1_000_000,
  /** Keys per range request and per delete apply on an ASD (≤ the ASD's keysPerRequestMax 1024). */
  asdBatchKeysMax: 512,
  /** Names read per NSM manifest batch (≤ the store's multiGet of 128). */
  manifestBatchMax: 128,
  /** Attempts at a fresh fragment version when the key is taken on the target ASD. */
  versionAttemptsMax: 4,
} as const;

const l = maintenanceLimits;
assert(l.asdBatchKeysMax <= 1024, "a batch of ASD keys fits one request");
assert(l.repairBatchMax <= l.repairQueueMax, "a repair batch fits the queue");
assert(l.verifyReportBadMax <= l.repairQueueMax, "reported bad fragments can all be queued");
assert(l.failAfterMsDefault > l.probeIntervalMsDefault, "an ASD is probed several times before it is failed");
