// Public face of store/: the ClusterStore interface (the original's Arakoon role), its limits and
// helpers, the embedded implementation and the etcd implementation. The contract suite
// (cluster-store.contract.ts) and the etcd test cluster (etcd-test-cluster.ts) are imported by tests and
// benchmarks directly from their files, so vitest and process spawning stay out of production imports.
export * from "./cluster-store.js";
export { EmbeddedStore, mutationsInFlightMax, type EmbeddedStoreOptions } from "./embedded-store.js";
export { EtcdStore, etcdTimeoutsDefault, type EtcdFaults, type EtcdRetryCounts, type EtcdStoreOptions, type EtcdTimeouts } from "./etcd-store.js";
