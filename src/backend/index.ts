// Public face of backend/: the object backend interface, name validation, and its local-directory
// implementation. The contract suite (object-backend.contract.ts) is imported by tests directly.
export * from "./object-backend.js";
export { checkListOptions, isValidName, nameBytesMax, validateName, validateRanges, type CheckedListOptions } from "./names.js";
export { LocalBackend, type LocalBackendOptions, type ApplyCrashPoint } from "./local-backend.js";
