// Public face of alba/client/: AlbaBackend, the ALBA client implementing ObjectBackend (the proxy role).
// Imported through src/alba/index.ts.
export {
  AlbaBackend, chunksInFlightMax, commitRetriesMax, equalsFetchBytesMax, fragmentRetriesMax, manifestBytesMax, rangeCountMax, uploadAttemptsMax,
  type AlbaBackendOptions, type AlbaStatistics, type BadFragmentSeen, type UploadReport,
} from "./alba-backend.js";
export { type FragmentCacheStatistics } from "./fragment-cache.js";
