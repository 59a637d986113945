// Public face of alba/maintenance/: the maintenance agent (failure detection, repair, verify, garbage
// collection, rebalance, decommission, status) and its pure planners. Imported through src/alba/index.ts.
export {
  MaintenanceAgent,
  type BadFragmentReport, type DrainSummary, type GcSummary, type MaintenanceCounters, type MaintenanceError, type MaintenanceOptions, type MaintenanceStatus,
  type MaintenanceTask, type RebalanceSummary, type RepairSummary, type VerifyReport,
} from "./agent.js";
export { maintenanceLimits } from "./limits.js";
export { ReachabilityTracker, type AsdReachability, type AsdReachabilityState } from "./reachability.js";
export {
  assessManifest, fillOf, fragmentId, orderRepairs, planChunkMove, planChunkTargets, rebalanceClasses,
  type AsdFill, type AsdHealth, type ChunkAssessment, type ChunkMove, type ObjectAssessment, type RebalanceClasses, type RepairCandidate, type ReplaceReason,
} from "./planner.js";
export { gcDecision, OrphanTracker, type GcDecision } from "./garbage.js";
export { Throttle } from "./throttle.js";
