// The ISA-L addon for the erasure coder: loaded by src/base/isal.ts (CRC32C is a base facility too).
export { ecKMax, ecMMax, isal, isalAddonPath, type IsalAddon } from "../../base/isal.js";
export { crc32c } from "../../base/checksum.js";
