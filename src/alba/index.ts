// Public face of src/alba/: the ALBA backend. asd/ is the ASD daemon and its client connection; the
// other parts (coding/, manager/, client/, maintenance/) add their exports here. Other folders import
// only this file.
export * from "./asd/index.js";
export * from "./manager/index.js";
export {
  checkPlacement, chooseFirstSatisfiable, placeableCount, placeChunk, placeMore, seededRandom, validatePolicy,
  type PlacementCandidate, type PlacementResult, type RandomSource,
} from "./placement/index.js";
export * from "./client/index.js";
export {
  MaintenanceAgent, maintenanceLimits,
  type AsdHealth, type AsdReachability, type BadFragmentReport, type DrainSummary, type GcSummary, type MaintenanceCounters, type MaintenanceError,
  type MaintenanceOptions, type MaintenanceStatus, type MaintenanceTask, type RebalanceSummary, type RepairSummary, type VerifyReport,
} from "./maintenance/index.js";
