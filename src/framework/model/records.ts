// The management model's own records in the cluster store (docs/formats/model-keys.md): storage
// routers, their heartbeats, vPools, storage drivers (a vPool on a storage router), domains and the
// domain of an ASD. Pure data, keys and validation; no I/O. Imported by the model's repository and
// service (this folder) only.
//
// What is NOT here, because a record already exists elsewhere and the model reads it in place: vDisks
// (ovs/vdisks/<name>, vdisk-registry.md), the ALBA backend, its presets and ASDs (ovs/alba/…,
// alba-keys.md), users, clients and roles (ovs/auth/…, auth-keys.md).
//
// Invariants: every record carries `version`, a counter that starts at 1 and rises by one with every
// change; a change is one store sequence asserting the bytes it read (repository.ts), so a stale update
// is refused (CONFLICT) and never lost. A decoded record has been validated (CORRUPT names the key).
// Records are JSON; fields are only ever added.

import { OvsError } from "../../base/index.js";
import { readCacheModes, type ReadCacheMode } from "../../volume/index.js";

export const modelPrefix = "ovs/model/";

export const modelKeys = {
  storageRouter: (id: string): string => `${modelPrefix}storagerouters/${id}`,
  storageRouterPrefix: `${modelPrefix}storagerouters/`,
  heartbeat: (id: string): string => `${modelPrefix}heartbeats/${id}`,
  heartbeatPrefix: `${modelPrefix}heartbeats/`,
  vpool: (name: string): string => `${modelPrefix}vpools/${name}`,
  vpoolPrefix: `${modelPrefix}vpools/`,
  storageDriver: (vpool: string, storageRouterId: string): string => `${modelPrefix}storagedrivers/${vpool}/${storageRouterId}`,
  storageDriverPrefix: (vpool: string): string => `${modelPrefix}storagedrivers/${vpool}/`,
  storageDriverAllPrefix: `${modelPrefix}storagedrivers/`,
  domain: (name: string): string => `${modelPrefix}domains/${name}`,
  domainPrefix: `${modelPrefix}domains/`,
  asd: (asdId: string): string => `${modelPrefix}asds/${asdId}`,
  asdPrefix: `${modelPrefix}asds/`,
} as const;

/** Every model record: `version` rises by one with each change (optimistic concurrency). */
export interface Versioned {
  version: number;
}

/** Where a backend is: the cluster's ALBA backend (by id), or one node's local directory backend. */
export type BackendRef = { kind: "alba"; backendId: string } | { kind: "local"; storageRouterId: string };

export interface StorageRouterRecord extends Versioned {
  /** The node id (`--node-id`). */
  id: string;
  name: string;
  /** The address its API listens on. */
  ip: string;
  ports: { nbd: number; api: number };
  /**
   * online: registered by the running node at its start; offline: marked by an operator, or by the
   * scheduler's leader when the heartbeat is older than the node's offline timeout.
   */
  status: "online" | "offline";
  /** Why it is offline (absent while online): operator (marked; until the node starts again) or heartbeat (back online once its heartbeat is). */
  offlineReason?: "operator" | "heartbeat";
  /** The backend this node's vDisks use. */
  backend: BackendRef;
  /** The vPool `ovs vdisk create` uses on this node without --vpool; vDisks without one belong to it. */
  defaultVPool: string;
  /** Domains the node is in (model: domains). */
  domains: string[];
  createdAt: string;
  updatedAt: string;
}

/** Written by the node every heartbeatIntervalMs; apart from the router's record so it bumps no version. */
export interface HeartbeatRecord {
  id: string;
  at: string;
  /** How often the node writes it (absent in heartbeats of older nodes: the default, 30 s). */
  intervalMs?: number;
  /** How long after `at` without a newer heartbeat the node is offline (absent: 3 intervals). */
  offlineAfterMs?: number;
}

/** A vPool's cache mode: the read cache mode its new vDisks get, by the volume's names (read-cache.ts). */
export const cacheModes: readonly CacheMode[] = readCacheModes;
export type CacheMode = ReadCacheMode;

/**
 * The cache mode names of vPool records written before they were aligned with the volume's: decoded to
 * these (and written back with the new name at the vPool's next change), never written. "both" (cache on
 * read and on write) has no equal; cache-on-write is its write half, and the cache serves hits either way.
 */
export const legacyCacheModes: Readonly<Record<string, CacheMode>> = Object.freeze({ read: "cache-on-read", write: "cache-on-write", both: "cache-on-write" });

/** A decoded vPool with a legacy cache mode name given its current name. */
export function upgradeVPool(record: VPoolRecord): VPoolRecord {
  const legacy = Object.hasOwn(legacyCacheModes, record.settings.cacheMode) ? legacyCacheModes[record.settings.cacheMode] : undefined;
  return legacy === undefined ? record : { ...record, settings: { ...record.settings, cacheMode: legacy } };
}

/** Defaults for the vDisks created in a vPool (a vDisk keeps the values it was created with). */
export interface VPoolSettings {
  scoSizeBytes: number;
  tlogMultiplier: number;
  /** Cap on a vDisk's local SCO bytes once on the backend; 0 = none. */
  scoCacheMaxBytes: number;
  /** The read cache mode new vDisks get (their `cache.mode`), unless their creation names another. */
  cacheMode: CacheMode;
}

export interface VPoolRecord extends Versioned {
  name: string;
  /** The backend its vDisks' namespaces live on, and (ALBA) the preset of those namespaces. */
  backend: BackendRef;
  preset?: string;
  settings: VPoolSettings;
  /** deleting: a delete is checking that the vPool is empty (no vDisk may be created meanwhile). */
  status: "running" | "deleting";
  createdAt: string;
  updatedAt: string;
}

export interface StorageDriverRecord extends Versioned {
  vpool: string;
  storageRouterId: string;
  /** removing: a shrink is checking that the node serves no vDisk of the vPool. */
  status: "running" | "removing";
  createdAt: string;
}

export interface DomainRecord extends Versioned {
  name: string;
  createdAt: string;
}

/** The model's attributes of an ALBA ASD (its address, state and usage stay in ovs/alba/asds/<id>). */
export interface AsdModelRecord extends Versioned {
  asdId: string;
  domain: string;
}

// ---- Names ------------------------------------------------------------------------------------------

const namePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** vPool, domain and storage router names: 1–64 of [A-Za-z0-9._-], starting with a letter or digit. */
export function checkModelName(name: unknown, what: string): string {
  if (typeof name !== "string" || !namePattern.test(name)) {
    throw new OvsError("INVALID_ARGUMENT", `"${String(name)}" is not a valid ${what}: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit.`);
  }
  return name;
}

// ---- Codec ------------------------------------------------------------------------------------------

export function encodeModelRecord(record: object): Buffer {
  return Buffer.from(JSON.stringify(record), "utf8");
}

export function decodeModelRecord<T>(bytes: Buffer, key: string, check: (value: Record<string, unknown>) => boolean): T {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString("utf8"));
  } catch {
    throw new OvsError("CORRUPT", `The model record ${key} is not JSON.`, { key });
  }
  if (typeof value !== "object" || value === null || !check(value as Record<string, unknown>)) {
    throw new OvsError("CORRUPT", `The model record ${key} is malformed.`, { key });
  }
  return value as T;
}

const isString = (value: unknown): value is string => typeof value === "string";
const isPositive = (value: unknown): boolean => Number.isSafeInteger(value) && (value as number) > 0;
const isVersion = (value: unknown): boolean => Number.isSafeInteger(value) && (value as number) >= 1;
const isBackendRef = (value: unknown): boolean => {
  const ref = value as Record<string, unknown> | null;
  return typeof ref === "object" && ref !== null && ((ref.kind === "alba" && isString(ref.backendId)) || (ref.kind === "local" && isString(ref.storageRouterId)));
};

export const checks = {
  storageRouter: (r: Record<string, unknown>): boolean =>
    isString(r.id) && isString(r.name) && isString(r.ip) && typeof r.ports === "object" && r.ports !== null && (r.status === "online" || r.status === "offline") &&
    isBackendRef(r.backend) && isString(r.defaultVPool) && Array.isArray(r.domains) && r.domains.every(isString) && isVersion(r.version) &&
    (r.offlineReason === undefined || r.offlineReason === "operator" || r.offlineReason === "heartbeat"),
  vpool: (r: Record<string, unknown>): boolean => {
    const settings = r.settings as Record<string, unknown> | null;
    return isString(r.name) && isBackendRef(r.backend) && (r.preset === undefined || isString(r.preset)) && typeof settings === "object" && settings !== null &&
      Number.isSafeInteger(settings.scoSizeBytes) && Number.isSafeInteger(settings.tlogMultiplier) && Number.isSafeInteger(settings.scoCacheMaxBytes) &&
      ((cacheModes as readonly unknown[]).includes(settings.cacheMode) || (typeof settings.cacheMode === "string" && Object.hasOwn(legacyCacheModes, settings.cacheMode))) && (r.status === "running" || r.status === "deleting") && isVersion(r.version);
  },
  storageDriver: (r: Record<string, unknown>): boolean =>
    isString(r.vpool) && isString(r.storageRouterId) && (r.status === "running" || r.status === "removing") && isVersion(r.version),
  domain: (r: Record<string, unknown>): boolean => isString(r.name) && isVersion(r.version),
  asd: (r: Record<string, unknown>): boolean => isString(r.asdId) && isString(r.domain) && isVersion(r.version),
  heartbeat: (r: Record<string, unknown>): boolean =>
    isString(r.id) && isString(r.at) && (r.intervalMs === undefined || isPositive(r.intervalMs)) && (r.offlineAfterMs === undefined || isPositive(r.offlineAfterMs)),
};
