// Public face of store/: the ClusterStore interface (the original's Arakoon role), its limits and
// helpers, and the embedded implementation. The contract suite (cluster-store.contract.ts) is imported
// by implementations' tests directly from its file, so vitest stays out of production imports.
export * from "./cluster-store.js";
export { EmbeddedStore, mutationsInFlightMax, type EmbeddedStoreOptions } from "./embedded-store.js";
