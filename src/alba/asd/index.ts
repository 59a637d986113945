// Public face of src/alba/asd/: the ASD daemon (runAsd, AsdServer), its client connection (AsdClient),
// and the protocol's types and limits. Other folders import only this file (through src/alba/index.ts).
export { runAsd, AsdServer, type AsdFaults, type AsdHandle, type AsdServerOptions, type RunAsdOptions } from "./asd-server.js";
export { AsdClient, valueOrThrow, type AsdClientOptions, type ClientAssert, type ClientRangeQuery, type ClientUpdate } from "./asd-client.js";
export { statfsSpace, type FilesystemSpace, type StatfsSource } from "./asd-store.js";
export { asdLimits } from "./limits.js";
export {
  PROTOCOL_VERSION as ASD_PROTOCOL_VERSION, type AsdCapabilities, type AsdDiskUsage, type AsdOpName, type AsdStatistics, type ByteRange,
  type CounterName as AsdCounterName, type OpStatistics as AsdOpStatistics, type ValueResult,
} from "./protocol.js";
export { capacityStatfs, directoryUsedBytes } from "./capacity.js";
