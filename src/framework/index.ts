// Public face of framework/: the single-node platform, its vDisk service and REST API.
export { PlatformNode, type NodeOptions } from "./node.js";
export { VDiskService, validateVDiskName, type VDiskInfo, type VDiskRecord } from "./vdisk-service.js";
export { buildApi, type NodeInfo } from "./api.js";
export { AuthService, roleNames, rolesUpTo, type Role, type Principal, type UserInfo, type ClientInfo, type AuthSettings, type IssuedToken } from "./auth/auth-service.js";
export { healthModules, healthStates, type HealthReport, type HealthState } from "./health/healthcheck.js";
