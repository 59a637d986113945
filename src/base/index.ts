// Public face of base/: assertions, the error catalogue, units, checksums, logging.
export * from "./assert.js";
export * from "./errors.js";
export * from "./units.js";
export * from "./checksum.js";
export * from "./log.js";
export * from "./isal.js";
export * from "./chunk-queue.js";
export * from "./buffer-pool.js";
export * from "./coalescer.js";
export * from "./page-cache.js";
export * from "./dir-sync.js";
export * from "./worker-pool.js";
export * from "./bytes.js";
export * from "./row-map.js";
export * from "./random.js";
