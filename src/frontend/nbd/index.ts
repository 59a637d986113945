// Public face of src/frontend/nbd/: the NBD server, the export contract it serves, and an in-memory
// export for tests and benchmarks. Internals (connection, handshake, chunk queue) stay private.
export { NbdServer, type NbdServerOptions } from "./server.js";
export { nbdErrorOf, type NbdExport, type NbdExportProvider } from "./nbd-export.js";
export { nbdLimits } from "./limits.js";
export { MemoryExport, StaticExportProvider, type MemoryExportOptions, type MemoryExportOperation } from "./memory-export.js";
export { VolumeExport } from "./volume-export.js";
