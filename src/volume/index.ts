// Public face of volume/: the volumedriver's volume and its formats.
export {
  Volume,
  defaultVolumeSettings,
  validateConfig,
  volumeLimits,
  volumeOs,
  type CloneParent,
  type ParentResolver,
  type RestoreReport,
  type SnapshotInfo,
  type VolumeConfig,
  type VolumeStats,
} from "./volume.js";
export { snapshotLimits, isValidSnapshotName } from "./snapshots-object.js";
export { scrubLimits, validateScrubOptions, type ScrubOptions, type ScrubProgress, type ScrubReport } from "./scrubber.js";
export { scoName, parseScoName, type ScoId } from "./sco-name.js";
export * as tlogFormat from "./tlog-format.js";
export { QosLimiter, noQosLimits, qosLimitKeys, validateQosLimits, type QosLimits, type QosKind } from "./qos.js";
export {
  ReadCache,
  ReadCacheOwner,
  defaultReadCacheSettings,
  readCacheLimits,
  readCacheModes,
  validateReadCacheSettings,
  validateReadCacheSize,
  type CachedLocation,
  type ReadCacheMode,
  type ReadCacheOwnerStats,
  type ReadCacheSettings,
  type ReadCacheStats,
} from "./read-cache.js";
export { DropBehind, scoDropBehind } from "./file-io.js";
