// Public face of alba/manager/: the manager on the cluster store (ASD registry, presets, NSM hosts,
// namespaces), the NSM store of manifests, the manifest codec and the key layout.
// Imported by alba/client/ (and later maintenance, the framework and the CLI) through this file.
export { AlbaManager, casRetriesMax, localNsmId, type AlbaManagerOptions, type AsdObservation, type AsdRegistration, type BackendRecord, type NsmResolver } from "./manager.js";
export { NsmStore, assertOnlyItemsMax, commitItemsMax, type AssertOnlyItem, type CommitItem, type ManifestRead, type NamespaceInfo } from "./nsm.js";
export {
  chunkCountMax, decodeManifest, encodeManifest, manifestAsdIds, manifestFormatVersion, measureManifest,
  type Manifest, type ManifestChunk, type ManifestFragment,
} from "./manifest.js";
export {
  fragmentKey, fragmentKeyBytes, managerKeys, namespaceFragmentPrefix, namespaceIdHex, nsmKeys, objectFragmentPrefix, objectIdBytes, parseFragmentKey, prefixEnd,
  type ParsedFragmentKey,
} from "./keys.js";
export {
  checkAsdId, multiNodePreset, singleNodePreset, validatePreset,
  type AsdErrorCounts, type AsdRecord, type AsdState, type DeletedNamespaceRecord, type GcRecord, type NamespaceRecord, type NamespaceState,
  type NsmRecord, type Policy, type PresetRecord, type StrayFragment,
} from "./records.js";
