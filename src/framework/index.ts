// Public face of framework/: the node (PlatformNode), its vDisk service, REST API, management model, ALBA wiring and ASD supervisor.
export { PlatformNode, type NodeOptions } from "./node.js";
export { VDiskService, validateVDiskName, type VDiskInfo, type VDiskRecord, type VDiskSettings, type VDiskSettingsChange } from "./vdisk-service.js";
export { buildApi, type NodeInfo } from "./api.js";
export { AuthService, roleNames, rolesUpTo, type Role, type Principal, type UserInfo, type ClientInfo, type AuthSettings, type IssuedToken } from "./auth/auth-service.js";
export { healthModules, healthStates, type HealthReport, type HealthState } from "./health/healthcheck.js";
export { AlbaService, type AsdView, type FragmentLocation, type ObjectSummary } from "./alba-service.js";
export { AsdSupervisor, type AsdCommand, type AsdSupervisorOptions, type LocalAsdInfo } from "./asd-supervisor.js";
export { decodeAsdLayout, encodeAsdLayout, readAsdLayout, type AsdLayout } from "./asd-layout.js";
export { ManagementModel, checkHeartbeatSettings, defaultVPoolName, heartbeatIntervalMsDefault, type StorageRouterView, type VPoolView, type BackendDetail, type DomainView, type VDiskListItem } from "./model/model-service.js";
