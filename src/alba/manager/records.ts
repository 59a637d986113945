// The records the ALBA manager keeps on the cluster store, as JSON (docs/formats/alba-keys.md): ASDs,
// presets, NSM hosts, namespaces and garbage-collection records, with their validation. Pure data
// and checks; no I/O. Imported by manager.ts, nsm.ts and through src/alba/manager/index.ts.
//
// Invariants: a decoded record has been validated (a malformed one is OvsError CORRUPT naming the key);
// every record carries the fields that later versions must keep reading (fields are only ever added).
// Limits: names are 1..nameBytesMax of [A-Za-z0-9._-] like object names; ids are 32 lowercase hex.

import { OvsError } from "../../base/index.js";
import { aesGcmKeySizeBytes, fragmentSizeMaxBytesLimit, type ChecksumKind, type CompressionKind, type EncryptionKind } from "../coding/index.js";
import { validatePolicy, type Policy } from "../placement/index.js";

export type { Policy };

export const asdStates = ["claimed", "decommissioned"] as const;
export type AsdState = (typeof asdStates)[number];

export interface AsdErrorCounts {
  /** Reads that failed (unreachable, timeout, I/O error). */
  readErrors: number;
  /** Writes that failed (unreachable, timeout, I/O error, full). */
  writeErrors: number;
  /** Fragments that came back but failed verification (checksum, decoding). */
  checksumErrors: number;
}

export interface AsdRecord {
  /** 32 hex digits, the id the ASD reports in its prologue. */
  asdId: string;
  /** The failure domain: fragments of a chunk per node are limited by a policy's x. */
  nodeId: string;
  host: string;
  port: number;
  rack?: string;
  site?: string;
  state: AsdState;
  capacityBytes: number;
  usedBytes: number;
  /** When the ASD last answered (ms since the epoch), 0 if never. */
  lastSeenMs: number;
  errorCounts: AsdErrorCounts;
  claimedAtMs: number;
}

export interface PresetRecord {
  name: string;
  /** Rises on every change (only policies and fragment size may change). */
  version: number;
  /** Ordered, best first; the first satisfiable one is used for each upload. */
  policies: Policy[];
  /** Largest fragment; a chunk holds at most k × this. */
  fragmentSizeMaxBytes: number;
  compression: CompressionKind;
  encryption: EncryptionKind;
  /** 64 hex digits (32 bytes) when encryption is aes-256-gcm; the key lives only here. */
  encryptionKeyHex?: string;
  fragmentChecksum: ChecksumKind;
}

export const namespaceStates = ["creating", "active", "removing"] as const;
export type NamespaceState = (typeof namespaceStates)[number];

export interface NamespaceRecord {
  name: string;
  /** Unique and never reused (fragment keys on ASDs start with it). */
  namespaceId: number;
  state: NamespaceState;
  presetName: string;
  /** The NSM host that holds its manifests. */
  nsmId: string;
  createdAtMs: number;
}

export interface NsmRecord {
  nsmId: string;
  /** Where it lives, for people and for the NSM resolver: e.g. "manager" (the manager's own store). */
  location: string;
  /** Key prefix of this NSM in its store. */
  prefix: string;
  namespaceCount: number;
  state: "active" | "lost";
}

/** A fragment stored outside any manifest that garbage collection must delete. */
export interface StrayFragment {
  asdId: string;
  chunkIndex: number;
  fragmentIndex: number;
  version: number;
}

export type GcRecord =
  /** Written before an upload's first fragment: until committed, every fragment of objectId is garbage. */
  | { kind: "upload"; objectId: string; startedAtMs: number; state: "uploading" | "abandoned" }
  /** An object no manifest references any more (overwritten or deleted): all its fragments are garbage. */
  | { kind: "object"; objectId: string; asdIds: string[]; reason: "overwritten" | "deleted"; atMs: number }
  /** Fragments of a live object written late or abandoned (holes in its manifest). */
  | { kind: "strays"; objectId: string; fragments: StrayFragment[]; atMs: number };

/** A deleted namespace whose fragments (every key under its id on every ASD) are garbage. */
export interface DeletedNamespaceRecord {
  namespaceId: number;
  name: string;
  deletedAtMs: number;
}

const namePattern = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}$/;
const hexIdPattern = /^[0-9a-f]{32}$/;
const compressions: readonly CompressionKind[] = ["none", "lz4", "zstd"];
const encryptions: readonly EncryptionKind[] = ["none", "aes-256-gcm"];
const checksums: readonly ChecksumKind[] = ["none", "crc32c"];

export function checkRecordName(name: unknown, what: string): string {
  if (typeof name !== "string" || !namePattern.test(name)) {
    throw new OvsError("INVALID_ARGUMENT", `${what} ${JSON.stringify(name)} is invalid: use 1–255 characters of A–Z, a–z, 0–9, ".", "_" and "-", not starting with ".".`);
  }
  return name;
}

export function checkAsdId(asdId: unknown): string {
  if (typeof asdId !== "string" || !hexIdPattern.test(asdId)) {
    throw new OvsError("INVALID_ARGUMENT", `ASD id ${JSON.stringify(asdId)} is invalid: an ASD id is 32 lowercase hex digits.`);
  }
  return asdId;
}

/** Throws INVALID_ARGUMENT unless the preset is complete and consistent. */
export function validatePreset(preset: PresetRecord): void {
  checkRecordName(preset.name, "preset name");
  if (!Number.isInteger(preset.version) || preset.version < 1) throw new OvsError("INVALID_ARGUMENT", "A preset version is an integer ≥ 1.");
  if (!Array.isArray(preset.policies) || preset.policies.length === 0 || preset.policies.length > 16) {
    throw new OvsError("INVALID_ARGUMENT", "A preset has 1 to 16 policies.");
  }
  for (const policy of preset.policies) {
    validatePolicy(policy);
    if (policy.k > 32 || policy.m > 16) throw new OvsError("INVALID_ARGUMENT", `Policy k=${policy.k}, m=${policy.m}: k ≤ 32 and m ≤ 16.`);
  }
  const size = preset.fragmentSizeMaxBytes;
  if (!Number.isInteger(size) || size < 16 || size > fragmentSizeMaxBytesLimit) {
    throw new OvsError("INVALID_ARGUMENT", `A fragment size is 16 to ${fragmentSizeMaxBytesLimit} bytes; got ${size}.`);
  }
  if (!compressions.includes(preset.compression)) throw new OvsError("INVALID_ARGUMENT", `Unknown compression ${String(preset.compression)}: use ${compressions.join(", ")}.`);
  if (!encryptions.includes(preset.encryption)) throw new OvsError("INVALID_ARGUMENT", `Unknown encryption ${String(preset.encryption)}: use ${encryptions.join(", ")}.`);
  if (!checksums.includes(preset.fragmentChecksum)) throw new OvsError("INVALID_ARGUMENT", `Unknown fragment checksum ${String(preset.fragmentChecksum)}: use ${checksums.join(", ")}.`);
  if (preset.encryption === "aes-256-gcm") {
    if (typeof preset.encryptionKeyHex !== "string" || !new RegExp(`^[0-9a-f]{${aesGcmKeySizeBytes * 2}}$`).test(preset.encryptionKeyHex)) {
      throw new OvsError("INVALID_ARGUMENT", `AES-256-GCM needs a key of ${aesGcmKeySizeBytes * 2} lowercase hex digits.`);
    }
  } else if (preset.encryptionKeyHex !== undefined) {
    throw new OvsError("INVALID_ARGUMENT", "An encryption key was given but encryption is none.");
  }
}

/** The default preset of a single node (DESIGN.md §6): 6 local ASDs, [(4,2,5,6), (2,2,3,6)], crc32c, no compression. */
export function singleNodePreset(name = "default"): PresetRecord {
  return {
    name,
    version: 1,
    policies: [{ k: 4, m: 2, c: 5, x: 6 }, { k: 2, m: 2, c: 3, x: 6 }],
    fragmentSizeMaxBytes: 1024 * 1024,
    compression: "none",
    encryption: "none",
    fragmentChecksum: "crc32c",
  };
}

/** The default preset of several nodes (DESIGN.md §6): [(5,4,8,3), (2,2,3,4)]. */
export function multiNodePreset(name = "default-multi-node"): PresetRecord {
  return { ...singleNodePreset(name), policies: [{ k: 5, m: 4, c: 8, x: 3 }, { k: 2, m: 2, c: 3, x: 4 }] };
}

export function encodeRecord(record: object): Buffer {
  return Buffer.from(JSON.stringify(record), "utf8");
}

/** Parses a JSON record read from `key`, checking it with `check`; CORRUPT names the key. */
export function decodeRecord<T>(bytes: Buffer, key: string, check: (value: T) => void): T {
  let value: T;
  try {
    value = JSON.parse(bytes.toString("utf8")) as T;
  } catch (error) {
    throw new OvsError("CORRUPT", `The record at ${key} is not valid JSON.`, { key }, { cause: error });
  }
  try {
    if (typeof value !== "object" || value === null) throw new OvsError("CORRUPT", "not an object");
    check(value);
  } catch (error) {
    throw new OvsError("CORRUPT", `The record at ${key} is malformed: ${(error as Error).message}`, { key }, { cause: error });
  }
  return value;
}

export function checkAsdRecord(record: AsdRecord): void {
  checkAsdId(record.asdId);
  if (typeof record.nodeId !== "string" || record.nodeId.length === 0) throw new OvsError("CORRUPT", "nodeId missing");
  if (!asdStates.includes(record.state)) throw new OvsError("CORRUPT", `state ${String(record.state)}`);
  if (!Number.isInteger(record.port)) throw new OvsError("CORRUPT", "port missing");
}

export function checkNamespaceRecord(record: NamespaceRecord): void {
  if (!Number.isSafeInteger(record.namespaceId) || record.namespaceId < 1) throw new OvsError("CORRUPT", "namespaceId");
  if (!namespaceStates.includes(record.state)) throw new OvsError("CORRUPT", `state ${String(record.state)}`);
  if (typeof record.nsmId !== "string" || typeof record.presetName !== "string") throw new OvsError("CORRUPT", "nsmId or presetName");
}

export function checkNsmRecord(record: NsmRecord): void {
  if (typeof record.nsmId !== "string" || typeof record.prefix !== "string" || !Number.isInteger(record.namespaceCount)) {
    throw new OvsError("CORRUPT", "nsmId, prefix or namespaceCount");
  }
}

export function checkGcRecord(record: GcRecord): void {
  if (!hexIdPattern.test(record.objectId)) throw new OvsError("CORRUPT", "objectId");
  if (!["upload", "object", "strays"].includes(record.kind)) throw new OvsError("CORRUPT", `kind ${String(record.kind)}`);
}
