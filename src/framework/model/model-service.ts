// The management model (the original's DAL, on the cluster store): storage routers, vPools, storage
// drivers, vDisks, snapshots, backends, presets, ASD nodes, ASDs and domains, with optimistic concurrency
// (repository.ts). Keys: docs/formats/model-keys.md.
//
// What is stored where:
// - own records (records.ts) under ovs/model/: storage routers, heartbeats, vPools, storage drivers,
//   domains, an ASD's domain;
// - read in place, never copied: vDisks (the registry ovs/vdisks/<name>; snapshots are the volume's),
//   the ALBA backend, presets, ASDs (ovs/alba/…; an ASD node is the ASDs sharing a node id).
//
// Invariants:
// - Every change is one store sequence asserting what it read; a caller naming a stale version, or
//   losing a race, gets CONFLICT and nothing changed.
// - A vDisk is created in a vPool only while the vPool is extended to this node: its registry put asserts
//   the storage driver's bytes (not the vPool's: a change of the vPool's defaults does not refuse it).
//   Deleting a vPool marks it deleting and all its storage drivers removing (shrinking marks the one),
//   then checks that no vDisk uses it, then removes them asserting the marks: a vDisk created meanwhile
//   either committed before the marks (and is seen) or fails its assert.
// - Assigning a domain raises the domain's version in the same sequence, so a delete that checked the
//   domain unused cannot commit after an assignment.
// - A vDisk without a vPool field belongs to its node's default vPool; a clone to its parent's.
// Imported by node.ts, api.ts (vDisk create and list) and model-api.ts.

import fsp from "node:fs/promises";
import { OvsError, formatBytes, isOvsError, type Logger } from "../../base/index.js";
import { rangeLimitMax, type ClusterStore } from "../../store/index.js";
import { volumeLimits } from "../../volume/index.js";
import type { AlbaService } from "../alba-service.js";
import { registryPrefix, validateVDiskName, type VDiskInfo, type VDiskRecord, type VDiskService } from "../vdisk-service.js";
import {
  cacheModes, checkModelName, checks, encodeModelRecord, legacyCacheModes, modelKeys, upgradeVPool,
  type AsdModelRecord, type BackendRef, type CacheMode, type DomainRecord, type HeartbeatRecord, type StorageDriverRecord, type StorageRouterRecord,
  type VPoolRecord, type VPoolSettings,
} from "./records.js";
import { Repository, commit, type Change, type Loaded } from "./repository.js";
import { policySafety, type PolicySafety, type SafetyAsd } from "./safety.js";
import { withNamespacePreset } from "./vpool-backend.js";

export const defaultVPoolName = "default";
export const heartbeatIntervalMsDefault = 30_000;
/** A storage router whose heartbeat is older than this many intervals (unless it names another timeout) is not alive. */
export const heartbeatMissedMax = 3;
/** Bounds of a node's heartbeat interval and offline timeout (`ovs up --heartbeat-interval --offline-after`). */
export const heartbeatLimits = { intervalMsMin: 1000, intervalMsMax: 3_600_000, offlineAfterIntervalsMin: 2 } as const;
/** Most storage routers and ASDs one assign/unassign names (each is one operation of a sequence). */
export const assignTargetsMax = 32;
export const vdiskPageMax = 1000;
/** How often registration retries when other nodes change the same records meanwhile. */
const registerAttemptsMax = 8;

export const vpoolSettingsDefault: VPoolSettings = { scoSizeBytes: 8 * 1024 * 1024, tlogMultiplier: 8, scoCacheMaxBytes: 0, cacheMode: "cache-on-read" };

export interface ModelOptions {
  store: ClusterStore;
  vdisks: VDiskService;
  nodeId: string;
  /** This node's ALBA backend; undefined with --backend local. */
  alba?: AlbaService;
  /** The local backend's directory (usage), with --backend local. */
  localBackendDir?: string;
  log: Logger;
  now?: () => number;
  heartbeatIntervalMs?: number;
  /** How long after its last heartbeat this node is to be marked offline (default heartbeatMissedMax intervals). */
  offlineAfterMs?: number;
}

/** What one check of the storage routers' heartbeats did (checkStorageRouters). */
export interface RouterCheck {
  markedOffline: string[];
  markedOnline: string[];
  /** Tasks of offline storage routers without a recent heartbeat marked failed. */
  tasksFailed: number;
}

/** Validates a heartbeat interval and offline timeout (INVALID_ARGUMENT); returns the timeout. */
export function checkHeartbeatSettings(intervalMs: number, offlineAfterMs: number | undefined): number {
  const { intervalMsMin, intervalMsMax, offlineAfterIntervalsMin } = heartbeatLimits;
  if (!Number.isSafeInteger(intervalMs) || intervalMs < intervalMsMin || intervalMs > intervalMsMax) {
    throw new OvsError("INVALID_ARGUMENT", `the heartbeat interval must be from ${intervalMsMin / 1000} to ${intervalMsMax / 1000} seconds.`);
  }
  const timeout = offlineAfterMs ?? heartbeatMissedMax * intervalMs;
  if (!Number.isSafeInteger(timeout) || timeout < offlineAfterIntervalsMin * intervalMs) {
    throw new OvsError("INVALID_ARGUMENT", `the offline timeout must be at least ${offlineAfterIntervalsMin} heartbeat intervals (${(offlineAfterIntervalsMin * intervalMs) / 1000} seconds).`);
  }
  return timeout;
}

export interface StorageRouterView extends StorageRouterRecord {
  lastHeartbeat: string | null;
  /** The heartbeat is recent (within heartbeatMissedMax intervals). */
  alive: boolean;
  vpools: string[];
  vdiskCount: number;
}

export interface VPoolView extends VPoolRecord {
  backendName: string;
  /** Derived: SCO size × TLog multiplier × 1.5 (DESIGN.md §6), the non-disposable limit per vDisk. */
  writeBufferBytes: number;
  storageDrivers: Array<{ storageRouterId: string; status: string; createdAt: string }>;
  vdiskCount: number;
}

export interface VPoolSpec {
  name: string;
  /** A backend name (GET /api/v1/backends); default: this node's. */
  backend?: string;
  preset?: string;
  scoSizeBytes?: number;
  tlogMultiplier?: number;
  /** Sets the TLog multiplier: writeBuffer / (1.5 × SCO size), as the original's wizard did. */
  writeBufferBytes?: number;
  scoCacheMaxBytes?: number;
  cacheMode?: string;
  /** Storage routers to put it on (default: this node). */
  storageRouters?: string[];
}

export type VPoolChange = Omit<VPoolSpec, "name" | "backend" | "preset" | "storageRouters">;

export interface VDiskListQuery {
  vpool?: string;
  /** Names starting with this. */
  name?: string;
  template?: boolean;
  storageRouter?: string;
  /** name, size or created; a leading "-" sorts descending. */
  sort?: string;
  offset?: number;
  /** An opaque cursor: the page after the item it was made for (the `next` of the previous page); not with offset. */
  after?: string;
  limit?: number;
}

/** One page of the vDisk list. */
export interface VDiskPage {
  vdisks: VDiskListItem[];
  /** How many match the filters. */
  total: number;
  /** Where the page starts in the sorted list. */
  offset: number;
  limit: number;
  /** The cursor of the next page (pass it as `after`), or null on the last page. */
  next: string | null;
}

/** What a vDisk list cursor holds (base64url JSON): the sort it was made for, and its item's key and name. */
interface VDiskCursor {
  sort: string;
  key: string | number;
  name: string;
}

export const vdiskCursorBytesMax = 512;

function encodeCursor(cursor: VDiskCursor): string {
  return Buffer.from(JSON.stringify([cursor.sort, cursor.key, cursor.name]), "utf8").toString("base64url");
}

function decodeCursor(text: string, sort: string): VDiskCursor {
  let value: unknown;
  try {
    value = text.length > vdiskCursorBytesMax || !/^[A-Za-z0-9_-]+$/.test(text) ? undefined : JSON.parse(Buffer.from(text, "base64url").toString("utf8"));
  } catch {
    value = undefined;
  }
  const parts = value as [unknown, unknown, unknown] | undefined;
  if (!Array.isArray(parts) || parts.length !== 3 || typeof parts[0] !== "string" || (typeof parts[1] !== "string" && typeof parts[1] !== "number") || typeof parts[2] !== "string") {
    throw new OvsError("INVALID_ARGUMENT", `"${text.slice(0, 64)}" is not a cursor of the vDisk list: pass the "next" of a previous page as after.`);
  }
  if (parts[0] !== sort) throw new OvsError("INVALID_ARGUMENT", `the cursor was made for sort=${parts[0]}, not sort=${sort}: page with the sort it was made for.`);
  return { sort: parts[0], key: parts[1], name: parts[2] };
}

export interface VDiskListItem {
  name: string;
  id: string;
  namespace: string;
  vpool: string;
  storageRouterId: string;
  sizeBytes: number;
  size: string;
  createdAt: string;
  parent?: { name: string; snapshot: string };
  /** Live on this node; "remote" when another storage router serves it (ask that node for statistics). */
  state: VDiskInfo["state"] | "remote" | "deleting";
  /** null when another node serves it. */
  template: boolean | null;
  connectionCount: number | null;
  snapshotCount: number | null;
  stats: VDiskInfo["stats"] | null;
}

export interface BackendView {
  name: string;
  kind: "alba" | "local";
  storageRouters: string[];
  vpools: string[];
}

export interface BackendDetail extends BackendView {
  usage: { capacityBytes: number; usedBytes: number; freeBytes: number } | null;
  presets: Array<{ name: string; isDefault: boolean; compression: string; encryption: string; fragmentChecksum: string; policies: PolicySafety[] }>;
  asdNodes: Array<{ nodeId: string; asdCount: number; capacityBytes: number; usedBytes: number }>;
  asds: Array<{ asdId: string; nodeId: string; host: string; port: number; state: string; health: string; domain: string | null; capacityBytes: number; usedBytes: number }>;
}

export interface DomainView extends DomainRecord {
  storageRouters: string[];
  asds: string[];
}

const sortKeys = ["name", "size", "created"] as const;

export class ManagementModel {
  readonly routers: Repository<StorageRouterRecord>;
  readonly vpools: Repository<VPoolRecord>;
  readonly drivers: Repository<StorageDriverRecord>;
  readonly domains: Repository<DomainRecord>;
  readonly asdDomains: Repository<AsdModelRecord>;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  /** checkStorageRouters: the last heartbeat of each storage router whose tasks it has failed. */
  private readonly tasksFailedFor = new Map<string, string>();
  private readonly now: () => number;

  constructor(private readonly options: ModelOptions) {
    const { store } = options;
    this.routers = new Repository(store, "storage router", modelKeys.storageRouter, checks.storageRouter);
    this.vpools = new Repository(store, "vPool", modelKeys.vpool, checks.vpool, upgradeVPool);
    this.drivers = new Repository(store, "storage driver", (id) => {
      const at = id.indexOf("@"); // vPool names have no "@"
      return modelKeys.storageDriver(id.slice(0, at), id.slice(at + 1));
    }, checks.storageDriver);
    this.domains = new Repository(store, "domain", modelKeys.domain, checks.domain);
    this.asdDomains = new Repository(store, "ASD", modelKeys.asd, checks.asd);
    this.now = options.now ?? Date.now;
  }

  private get store(): ClusterStore {
    return this.options.store;
  }

  private isoNow(): string {
    return new Date(this.now()).toISOString();
  }

  /** This node's backend as a reference. */
  private ownBackend(): BackendRef {
    const manager = this.options.alba?.manager;
    return manager !== undefined ? { kind: "alba", backendId: manager.backendId } : { kind: "local", storageRouterId: this.options.nodeId };
  }

  // ---- Registration and heartbeat (node start) --------------------------------------------------------

  /**
   * Registers this node as a storage router (online, its address and ports), makes sure it has a default
   * vPool on its backend (the cluster's "default" when this node reaches its backend, else
   * "default-<node id>") extended to it, and writes a first heartbeat. Safe to run on several nodes at once.
   */
  async registerNode(node: { name: string; ip: string; ports: { nbd: number; api: number } }): Promise<StorageRouterRecord> {
    const backend = this.ownBackend();
    const nodeId = this.options.nodeId;
    for (let attempt = 0; ; attempt++) {
      try {
        const vpoolName = await this.ensureDefaultVPool(backend);
        const existing = await this.routers.get(nodeId);
        const fields = { id: nodeId, name: node.name, ip: node.ip, ports: node.ports, status: "online" as const, backend, defaultVPool: vpoolName, updatedAt: this.isoNow() };
        const { offlineReason: _reason, ...kept } = existing?.record ?? {};
        const written = existing === undefined
          ? this.routers.create(nodeId, { ...fields, domains: [], createdAt: this.isoNow() })
          : this.routers.update(existing, { ...(kept as StorageRouterRecord), ...fields });
        const driverId = `${vpoolName}@${nodeId}`;
        const driver = await this.drivers.get(driverId);
        const changes: Change[] = [written.change];
        if (driver === undefined) changes.push(this.drivers.create(driverId, { vpool: vpoolName, storageRouterId: nodeId, status: "running", createdAt: this.isoNow() }).change);
        await commit(this.store, changes, "the storage router changed while it registered.");
        await this.heartbeat();
        this.options.log.info({ storageRouter: nodeId, vpool: vpoolName }, "storage router registered");
        return written.record;
      } catch (error) {
        if (!isOvsError(error, "CONFLICT") || attempt + 1 >= registerAttemptsMax) throw error;
      }
    }
  }

  private async ensureDefaultVPool(backend: BackendRef): Promise<string> {
    const shared = await this.vpools.get(defaultVPoolName);
    const name = shared === undefined || sameBackend(shared.record.backend, backend) ? defaultVPoolName : `default-${this.options.nodeId.replace(/[^A-Za-z0-9._-]/g, "-")}`.slice(0, 64);
    if ((await this.vpools.get(name)) !== undefined) return name;
    const preset = backend.kind === "alba" ? ((await this.options.alba!.manager!.defaultPresetName()) ?? "default") : undefined;
    const created = this.vpools.create(name, {
      name, backend, ...(preset === undefined ? {} : { preset }), settings: { ...vpoolSettingsDefault }, status: "running", createdAt: this.isoNow(), updatedAt: this.isoNow(),
    });
    await commit(this.store, [created.change], `the vPool ${name} was created meanwhile.`);
    return name;
  }

  private get heartbeatIntervalMs(): number {
    return this.options.heartbeatIntervalMs ?? heartbeatIntervalMsDefault;
  }

  async heartbeat(): Promise<void> {
    const intervalMs = this.heartbeatIntervalMs;
    const record: HeartbeatRecord = { id: this.options.nodeId, at: this.isoNow(), intervalMs, offlineAfterMs: this.options.offlineAfterMs ?? heartbeatMissedMax * intervalMs };
    await this.store.put(modelKeys.heartbeat(this.options.nodeId), encodeModelRecord(record));
  }

  startHeartbeat(): void {
    const interval = this.heartbeatIntervalMs;
    this.heartbeatTimer = setInterval(() => {
      this.heartbeat().catch((error: unknown) => this.options.log.warn({ err: error }, "writing the storage router's heartbeat failed"));
    }, interval);
    this.heartbeatTimer.unref();
  }

  stop(): void {
    if (this.heartbeatTimer !== undefined) clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = undefined;
  }

  // ---- Storage routers ----------------------------------------------------------------------------------

  async listStorageRouters(): Promise<StorageRouterView[]> {
    const [routers, heartbeats, drivers, vdisks] = await Promise.all([this.routers.list(modelKeys.storageRouterPrefix), this.heartbeats(), this.allDrivers(), this.vdiskRecords()]);
    const byNode = this.vpoolResolver(routers.map((r) => r.record), vdisks);
    return routers.map(({ record }) => this.routerView(record, heartbeats.get(record.id), drivers, vdisks.filter((v) => v.nodeId === record.id && byNode(v) !== undefined).length));
  }

  async getStorageRouter(id: string): Promise<StorageRouterView> {
    const view = (await this.listStorageRouters()).find((router) => router.id === id);
    if (view === undefined) throw new OvsError("NOT_FOUND", `there is no storage router named ${id}.`);
    return view;
  }

  /** Marks a storage router offline (e.g. a dead node); the node sets itself online again when it starts. */
  async markOffline(id: string, expectedVersion?: number): Promise<StorageRouterView> {
    const loaded = await this.routers.require(id);
    const updated = this.routers.update(loaded, { ...loaded.record, status: "offline", offlineReason: "operator", updatedAt: this.isoNow() }, expectedVersion);
    await commit(this.store, [updated.change], `storage router ${id} changed meanwhile; read it again and retry.`);
    return this.getStorageRouter(id);
  }

  /**
   * The scheduler leader's check (every scheduler tick): a storage router marked online whose heartbeat is
   * older than its offline timeout (the one its heartbeat names: `--offline-after`, default 3 intervals)
   * is marked offline (reason heartbeat); one marked offline for that reason whose heartbeat is recent
   * again is marked online; the queued and running tasks of every offline storage router without a
   * recent heartbeat are marked failed through `failTasks` (the node running them went offline), once
   * per last heartbeat seen (and again after a change of leader, which is harmless). Each
   * change asserts the record it read: a router changed meanwhile is left to the next check. This node
   * never judges itself (it is running this).
   */
  async checkStorageRouters(failTasks: (nodeId: string, reason: string) => Promise<number>): Promise<RouterCheck> {
    const [routers, heartbeats] = await Promise.all([this.routers.list(modelKeys.storageRouterPrefix), this.heartbeats()]);
    const result: RouterCheck = { markedOffline: [], markedOnline: [], tasksFailed: 0 };
    for (const loaded of routers) {
      const { record } = loaded;
      if (record.id === this.options.nodeId) continue;
      const heartbeat = heartbeats.get(record.id);
      const alive = this.isAlive(heartbeat);
      let status = record.status;
      try {
        if (record.status === "online" && !alive) {
          const updated = this.routers.update(loaded, { ...record, status: "offline", offlineReason: "heartbeat", updatedAt: this.isoNow() });
          await commit(this.store, [updated.change], `storage router ${record.id} changed meanwhile.`);
          status = "offline";
          result.markedOffline.push(record.id);
          this.options.log.warn({ storageRouter: record.id, lastHeartbeat: heartbeat?.at ?? null }, "storage router marked offline: no recent heartbeat");
        } else if (record.status === "offline" && record.offlineReason === "heartbeat" && alive) {
          const { offlineReason: _reason, ...rest } = record;
          const updated = this.routers.update(loaded, { ...rest, status: "online", updatedAt: this.isoNow() });
          await commit(this.store, [updated.change], `storage router ${record.id} changed meanwhile.`);
          status = "online";
          result.markedOnline.push(record.id);
          this.options.log.info({ storageRouter: record.id, lastHeartbeat: heartbeat?.at ?? null }, "storage router marked online again: its heartbeat is recent");
        }
      } catch (error) {
        if (!isOvsError(error, "CONFLICT")) throw error;
        continue;
      }
      // Once per silence (per last heartbeat seen): a node without a heartbeat records no new task.
      if (status === "offline" && !alive && this.tasksFailedFor.get(record.id) !== (heartbeat?.at ?? "")) {
        const since = heartbeat === undefined ? "it never wrote a heartbeat" : `its last heartbeat was at ${heartbeat.at}`;
        result.tasksFailed += await failTasks(record.id, `storage router ${record.id} is offline; ${since}`);
        this.tasksFailedFor.set(record.id, heartbeat?.at ?? "");
      }
    }
    return result;
  }

  /** The heartbeat is within its node's offline timeout. */
  private isAlive(heartbeat: HeartbeatRecord | undefined): boolean {
    const at = heartbeat === undefined ? NaN : Date.parse(heartbeat.at);
    if (!Number.isFinite(at)) return false;
    const timeout = heartbeat!.offlineAfterMs ?? heartbeatMissedMax * (heartbeat!.intervalMs ?? heartbeatIntervalMsDefault);
    return this.now() - at <= timeout;
  }

  private routerView(record: StorageRouterRecord, heartbeat: HeartbeatRecord | undefined, drivers: StorageDriverRecord[], vdiskCount: number): StorageRouterView {
    return {
      ...record,
      lastHeartbeat: heartbeat?.at ?? null,
      alive: this.isAlive(heartbeat),
      vpools: drivers.filter((driver) => driver.storageRouterId === record.id).map((driver) => driver.vpool).sort(),
      vdiskCount,
    };
  }

  private async heartbeats(): Promise<Map<string, HeartbeatRecord>> {
    const out = new Map<string, HeartbeatRecord>();
    for (const { record } of await new Repository<HeartbeatRecord & { version: number }>(this.store, "heartbeat", modelKeys.heartbeat, checks.heartbeat).list(modelKeys.heartbeatPrefix)) out.set(record.id, record);
    return out;
  }

  // ---- vPools --------------------------------------------------------------------------------------------

  async listVPools(): Promise<VPoolView[]> {
    const [pools, drivers, routers, vdisks] = await Promise.all([this.vpools.list(modelKeys.vpoolPrefix), this.allDrivers(), this.routers.list(modelKeys.storageRouterPrefix), this.vdiskRecords()]);
    const vpoolOf = this.vpoolResolver(routers.map((r) => r.record), vdisks);
    return pools.map(({ record }) => this.vpoolView(record, drivers, vdisks.filter((v) => vpoolOf(v) === record.name).length));
  }

  async getVPool(name: string): Promise<VPoolView> {
    const view = (await this.listVPools()).find((pool) => pool.name === name);
    if (view === undefined) throw new OvsError("NOT_FOUND", `there is no vPool named ${name}.`);
    return view;
  }

  private vpoolView(record: VPoolRecord, drivers: StorageDriverRecord[], vdiskCount: number): VPoolView {
    return {
      ...record,
      backendName: backendName(record.backend),
      writeBufferBytes: Math.floor(record.settings.scoSizeBytes * record.settings.tlogMultiplier * 1.5),
      storageDrivers: drivers.filter((d) => d.vpool === record.name).map((d) => ({ storageRouterId: d.storageRouterId, status: d.status, createdAt: d.createdAt })),
      vdiskCount,
    };
  }

  /** Creates a vPool on a backend (and ALBA preset) with its vDisk defaults, on the given storage routers. */
  async createVPool(spec: VPoolSpec): Promise<VPoolView> {
    const name = checkModelName(spec.name, "vPool name");
    const backend = spec.backend === undefined ? this.ownBackend() : await this.backendByName(spec.backend);
    let preset: string | undefined;
    if (backend.kind === "local") {
      if (spec.preset !== undefined) throw new OvsError("INVALID_ARGUMENT", `backend ${backendName(backend)} is a local backend, which has no presets; leave out the preset.`);
    } else {
      const manager = this.albaManager(backend);
      preset = spec.preset ?? (await manager.defaultPresetName());
      if (preset === undefined || (await manager.getPreset(preset)) === undefined) throw new OvsError("NOT_FOUND", `backend ${backendName(backend)} has no preset named ${preset ?? "(default)"}.`);
    }
    const settings = vpoolSettings(vpoolSettingsDefault, spec);
    const routerIds = [...new Set(spec.storageRouters ?? [this.options.nodeId])];
    if (routerIds.length > assignTargetsMax) throw new OvsError("INVALID_ARGUMENT", `a vPool is created on at most ${assignTargetsMax} storage routers at once; extend it to the others afterwards.`);
    const changes: Change[] = [];
    for (const id of routerIds) {
      const router = await this.routers.require(id);
      checkReachable(name, backend, router.record);
      changes.push({ asserts: [{ kind: "exists", key: router.key }], operations: [] });
      changes.push(this.drivers.create(`${name}@${id}`, { vpool: name, storageRouterId: id, status: "running", createdAt: this.isoNow() }).change);
    }
    if (await this.vpools.get(name)) throw new OvsError("ALREADY_EXISTS", `a vPool named ${name} already exists.`);
    const created = this.vpools.create(name, { name, backend, ...(preset === undefined ? {} : { preset }), settings, status: "running", createdAt: this.isoNow(), updatedAt: this.isoNow() });
    try {
      await commit(this.store, [created.change, ...changes], `a vPool named ${name} was created meanwhile, or a storage router changed.`);
    } catch (error) {
      if (isOvsError(error, "CONFLICT") && (await this.vpools.get(name)) !== undefined) throw new OvsError("ALREADY_EXISTS", `a vPool named ${name} already exists.`);
      throw error;
    }
    this.options.log.info({ vpool: name, backend: backendName(backend), preset }, "vPool created");
    return this.getVPool(name);
  }

  /** Changes the defaults new vDisks of the vPool get (existing vDisks keep theirs). */
  async updateVPool(name: string, change: VPoolChange, expectedVersion?: number): Promise<VPoolView> {
    const loaded = await this.vpools.require(name);
    const settings = vpoolSettings(loaded.record.settings, change);
    const updated = this.vpools.update(loaded, { ...loaded.record, settings, updatedAt: this.isoNow() }, expectedVersion);
    await commit(this.store, [updated.change], `vPool ${name} changed meanwhile; read it again and retry.`);
    return this.getVPool(name);
  }

  /** Puts the vPool on another storage router (a storage driver), so that node can create its vDisks. */
  async extendVPool(name: string, routerId: string, expectedVersion?: number): Promise<VPoolView> {
    const pool = await this.vpools.require(name);
    if (pool.record.status !== "running") throw new OvsError("CONFLICT", `vPool ${name} is being deleted.`);
    const router = await this.routers.require(routerId);
    checkReachable(name, pool.record.backend, router.record);
    if ((await this.drivers.get(`${name}@${routerId}`)) !== undefined) throw new OvsError("ALREADY_EXISTS", `vPool ${name} is already on storage router ${routerId}.`);
    const updated = this.vpools.update(pool, { ...pool.record, updatedAt: this.isoNow() }, expectedVersion);
    const driver = this.drivers.create(`${name}@${routerId}`, { vpool: name, storageRouterId: routerId, status: "running", createdAt: this.isoNow() });
    await commit(this.store, [updated.change, driver.change, this.routers.unchanged(router)], `vPool ${name} or storage router ${routerId} changed meanwhile; read it again and retry.`);
    return this.getVPool(name);
  }

  /** Takes the vPool off a storage router; IN_USE while that node serves vDisks of the vPool. */
  async shrinkVPool(name: string, routerId: string, expectedVersion?: number): Promise<VPoolView> {
    const pool = await this.vpools.require(name);
    const driver = await this.drivers.get(`${name}@${routerId}`);
    if (driver === undefined) throw new OvsError("NOT_FOUND", `vPool ${name} is not on storage router ${routerId}.`);
    if (driver.record.status !== "running") throw new OvsError("CONFLICT", `vPool ${name} is already being removed from storage router ${routerId}.`);
    checkVersionOf("vPool", pool.record.version, expectedVersion);
    // Phase 1: mark the storage driver removing (a vDisk create on that node now fails its assert).
    const marking = this.drivers.update(driver, { ...driver.record, status: "removing" });
    await commit(this.store, [marking.change, this.vpools.unchanged(pool)], `vPool ${name} changed meanwhile; read it again and retry.`);
    const marked = (await this.drivers.require(`${name}@${routerId}`)) as Loaded<StorageDriverRecord>;
    try {
      const users = await this.vdisksOf(name, routerId);
      if (users.length > 0) throw new OvsError("IN_USE", `storage router ${routerId} serves ${users.length} vDisk${users.length === 1 ? "" : "s"} of vPool ${name} (${users.slice(0, 5).join(", ")}${users.length > 5 ? ", …" : ""}); delete or move them first.`);
      const current = await this.vpools.require(name);
      const updated = this.vpools.update(current, { ...current.record, updatedAt: this.isoNow() });
      await commit(this.store, [this.drivers.remove(marked), updated.change], `vPool ${name} changed meanwhile; read it again and retry.`);
    } catch (error) {
      await this.store.testAndSet(marked.key, marked.bytes, driver.bytes);
      throw error;
    }
    return this.getVPool(name);
  }

  /** Deletes an empty vPool with its storage drivers; IN_USE while any vDisk belongs to it. */
  async deleteVPool(name: string, expectedVersion?: number): Promise<void> {
    const pool = await this.vpools.require(name);
    if (pool.record.status !== "running") throw new OvsError("CONFLICT", `vPool ${name} is already being deleted.`);
    const drivers = await this.drivers.list(modelKeys.storageDriverPrefix(name));
    if (drivers.some((driver) => driver.record.status !== "running")) throw new OvsError("CONFLICT", `vPool ${name} is being shrunk; retry once that is done.`);
    // Phase 1: mark the vPool deleting and every storage driver removing (a vDisk create asserts its
    // storage driver's bytes, so from now on none can commit in this vPool).
    const marking = [
      this.vpools.update(pool, { ...pool.record, status: "deleting", updatedAt: this.isoNow() }, expectedVersion).change,
      ...drivers.map((driver) => this.drivers.update(driver, { ...driver.record, status: "removing" }).change),
    ];
    await commit(this.store, marking, `vPool ${name} changed meanwhile; read it again and retry.`);
    const marked = await this.vpools.require(name);
    const markedDrivers = await this.drivers.list(modelKeys.storageDriverPrefix(name));
    try {
      const users = await this.vdisksOf(name);
      if (users.length > 0) throw new OvsError("IN_USE", `vPool ${name} has ${users.length} vDisk${users.length === 1 ? "" : "s"} (${users.slice(0, 5).join(", ")}${users.length > 5 ? ", …" : ""}); delete them first.`);
      await commit(this.store, [this.vpools.remove(marked), ...markedDrivers.map((driver) => this.drivers.remove(driver))], `vPool ${name} changed meanwhile; read it again and retry.`);
    } catch (error) {
      // Put back what was there (the same bytes: a create that read them before may still commit).
      await this.store.testAndSet(marked.key, marked.bytes, pool.bytes);
      for (const driver of markedDrivers) {
        const original = drivers.find((d) => d.key === driver.key);
        if (original !== undefined) await this.store.testAndSet(driver.key, driver.bytes, original.bytes);
      }
      throw error;
    }
    this.options.log.info({ vpool: name }, "vPool deleted");
  }

  // ---- vDisks --------------------------------------------------------------------------------------------

  /**
   * Creates a vDisk on this node in a vPool (default: this node's default vPool) with the vPool's defaults:
   * SCO size, TLog multiplier, SCO cache cap and read cache mode (the last two unless given).
   */
  async createVDisk(name: string, sizeBytes: number, options: { vpool?: string; scoCacheMaxBytes?: number; cacheMode?: string; scoSizeBytes?: number; tlogMultiplier?: number } = {}): Promise<VDiskInfo> {
    validateVDiskName(name);
    const cacheMode = options.cacheMode === undefined ? undefined : checkCacheMode(options.cacheMode);
    const nodeId = this.options.nodeId;
    const router = await this.routers.get(nodeId);
    const vpoolName = options.vpool ?? router?.record.defaultVPool ?? defaultVPoolName;
    const pool = await this.vpools.require(vpoolName);
    if (pool.record.status !== "running") throw new OvsError("CONFLICT", `vPool ${vpoolName} is being deleted.`);
    const driver = await this.drivers.get(`${vpoolName}@${nodeId}`);
    if (driver === undefined || driver.record.status !== "running") {
      throw new OvsError("CONFLICT", `vPool ${vpoolName} is not on this storage router (${nodeId}); extend it first: ovs vpool extend ${vpoolName} ${nodeId}.`);
    }
    const { settings } = pool.record;
    try {
      return await withNamespacePreset(pool.record.backend.kind === "alba" ? pool.record.preset : undefined, () =>
        this.options.vdisks.create(name, sizeBytes, {
          scoSizeBytes: options.scoSizeBytes ?? settings.scoSizeBytes, tlogMultiplier: options.tlogMultiplier ?? settings.tlogMultiplier,
          scoCacheMaxBytes: options.scoCacheMaxBytes ?? settings.scoCacheMaxBytes,
          cache: { mode: cacheMode ?? settings.cacheMode }, vpool: vpoolName, asserts: [{ kind: "equals", key: driver.key, value: driver.bytes }],
        }),
      );
    } catch (error) {
      if (!isOvsError(error, "ASSERT_FAILED")) throw error;
      if (await this.store.exists(registryPrefix + name)) throw new OvsError("ALREADY_EXISTS", `a vDisk named ${name} already exists.`);
      throw new OvsError("CONFLICT", `vPool ${vpoolName} is being deleted or shrunk off this storage router; vDisk ${name} was not created.`);
    }
  }

  /**
   * One vDisk: served here, its live information with its vPool and storage router; served by another
   * storage router, what the registry says (state "remote"); NOT_FOUND otherwise.
   */
  async getVDisk(name: string): Promise<(VDiskInfo & { vpool: string; storageRouterId: string }) | VDiskListItem> {
    const [routers, records] = await Promise.all([this.routers.list(modelKeys.storageRouterPrefix), this.vdiskRecords()]);
    const record = records.find((candidate) => candidate.name === name);
    const vpool = record === undefined ? undefined : this.vpoolResolver(routers.map((r) => r.record), records)(record);
    try {
      const info = this.options.vdisks.info(name);
      return { ...info, vpool: vpool ?? defaultVPoolName, storageRouterId: info.nodeId };
    } catch (error) {
      if (!isOvsError(error, "NOT_FOUND") || record === undefined) throw error;
      return this.vdiskItem(record, vpool ?? defaultVPoolName);
    }
  }

  /**
   * vDisks of the whole cluster with filter, sort and paging; live statistics for those this node serves.
   * Paging by offset, or by cursor: `after` (a page's `next`) names the last item seen by its sort key and
   * name, so the next page starts right after it even when vDisks were created or deleted meanwhile.
   */
  async listVDisks(query: VDiskListQuery = {}): Promise<VDiskPage> {
    const sort = query.sort ?? "name";
    const descending = sort.startsWith("-");
    const sortKey = descending ? sort.slice(1) : sort;
    if (!(sortKeys as readonly string[]).includes(sortKey)) throw new OvsError("INVALID_ARGUMENT", `cannot sort by "${sort}": use name, size or created, with a leading - for descending order.`);
    if (query.after !== undefined && query.offset !== undefined) throw new OvsError("INVALID_ARGUMENT", "page with offset or with after (a cursor), not both.");
    const cursor = query.after === undefined ? undefined : decodeCursor(query.after, sort);
    const limit = query.limit ?? vdiskPageMax;
    if (query.vpool !== undefined && (await this.vpools.get(query.vpool)) === undefined) throw new OvsError("NOT_FOUND", `there is no vPool named ${query.vpool}.`);
    const [routers, records] = await Promise.all([this.routers.list(modelKeys.storageRouterPrefix), this.vdiskRecords()]);
    const vpoolOf = this.vpoolResolver(routers.map((r) => r.record), records);
    let items = records.map((record) => this.vdiskItem(record, vpoolOf(record) ?? defaultVPoolName));
    if (query.vpool !== undefined) items = items.filter((item) => item.vpool === query.vpool);
    if (query.name !== undefined) items = items.filter((item) => item.name.startsWith(query.name!));
    if (query.storageRouter !== undefined) items = items.filter((item) => item.storageRouterId === query.storageRouter);
    if (query.template !== undefined) items = items.filter((item) => item.template === query.template);
    const value = (item: VDiskListItem): string | number => (sortKey === "size" ? item.sizeBytes : sortKey === "created" ? item.createdAt : item.name);
    const compare = (x: string | number, xName: string, y: string | number, yName: string): number => {
      const order = x < y ? -1 : x > y ? 1 : xName < yName ? -1 : xName > yName ? 1 : 0;
      return descending ? -order : order;
    };
    items.sort((a, b) => compare(value(a), a.name, value(b), b.name));
    let offset = query.offset ?? 0;
    if (cursor !== undefined) {
      if (typeof cursor.key !== (sortKey === "size" ? "number" : "string")) throw new OvsError("INVALID_ARGUMENT", "the cursor does not fit this sort: pass the \"next\" of a previous page as after.");
      const index = items.findIndex((item) => compare(value(item), item.name, cursor.key, cursor.name) > 0);
      offset = index === -1 ? items.length : index;
    }
    const page = items.slice(offset, offset + limit);
    const last = page.at(-1);
    const next = last !== undefined && offset + page.length < items.length ? encodeCursor({ sort, key: value(last), name: last.name }) : null;
    return { vdisks: page, total: items.length, offset, limit, next };
  }

  private vdiskItem(record: VDiskRecord, vpool: string): VDiskListItem {
    const base = {
      name: record.name, id: record.id, namespace: record.namespace, vpool, storageRouterId: record.nodeId, sizeBytes: record.sizeBytes, size: formatBytes(record.sizeBytes), createdAt: record.createdAt,
      ...(record.parent ? { parent: record.parent } : {}),
    };
    if (record.nodeId === this.options.nodeId && !record.deleting) {
      try {
        const info = this.options.vdisks.info(record.name);
        return { ...base, sizeBytes: info.sizeBytes, size: info.size, state: info.state, template: info.template, connectionCount: info.connectionCount, snapshotCount: info.snapshotCount, stats: info.stats };
      } catch (error) {
        if (!isOvsError(error, "NOT_FOUND")) throw error; // being created or deleted right now
      }
    }
    return { ...base, state: record.deleting ? "deleting" : "remote", template: null, connectionCount: null, snapshotCount: null, stats: null };
  }

  /** Names of the vDisks of a vPool (on one storage router when given). */
  private async vdisksOf(vpool: string, routerId?: string): Promise<string[]> {
    const [routers, records] = await Promise.all([this.routers.list(modelKeys.storageRouterPrefix), this.vdiskRecords()]);
    const vpoolOf = this.vpoolResolver(routers.map((r) => r.record), records);
    return records.filter((record) => vpoolOf(record) === vpool && (routerId === undefined || record.nodeId === routerId)).map((record) => record.name);
  }

  /** A vDisk's vPool: its own field, else its parent's (a clone), else its node's default vPool. */
  private vpoolResolver(routers: StorageRouterRecord[], records: VDiskRecord[]): (record: VDiskRecord) => string | undefined {
    const defaults = new Map(routers.map((router) => [router.id, router.defaultVPool]));
    const byName = new Map(records.map((record) => [record.name, record]));
    return (record) => {
      let current: VDiskRecord | undefined = record;
      for (let depth = 0; current !== undefined && depth <= 64; depth++) {
        if (current.vpool !== undefined) return current.vpool;
        if (current.parent === undefined) return defaults.get(current.nodeId) ?? defaultVPoolName;
        current = byName.get(current.parent.name);
      }
      return defaults.get(record.nodeId) ?? defaultVPoolName;
    };
  }

  private async vdiskRecords(): Promise<VDiskRecord[]> {
    const records: VDiskRecord[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await this.store.prefix(registryPrefix, { limit: rangeLimitMax, ...(after === undefined ? {} : { after }) });
      for (const entry of page.entries) records.push(JSON.parse(entry.value.toString("utf8")) as VDiskRecord);
      if (!page.more || page.entries.length === 0) return records;
      after = page.entries.at(-1)!.key;
    }
  }

  private async allDrivers(): Promise<StorageDriverRecord[]> {
    return (await this.drivers.list(modelKeys.storageDriverAllPrefix)).map((loaded) => loaded.record);
  }

  // ---- Backends, presets, ASD nodes, ASDs ----------------------------------------------------------------

  async listBackends(): Promise<BackendView[]> {
    const [routers, pools] = await Promise.all([this.routers.list(modelKeys.storageRouterPrefix), this.vpools.list(modelKeys.vpoolPrefix)]);
    const views = new Map<string, BackendView>();
    const add = (ref: BackendRef): BackendView => {
      const name = backendName(ref);
      let view = views.get(name);
      if (view === undefined) views.set(name, (view = { name, kind: ref.kind, storageRouters: [], vpools: [] }));
      return view;
    };
    add(this.ownBackend());
    for (const { record } of routers) add(record.backend).storageRouters.push(record.id);
    for (const { record } of pools) add(record.backend).vpools.push(record.name);
    return [...views.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  /** A backend with its usage, presets (with the safety of each policy), ASD nodes and ASDs. */
  async getBackend(name: string): Promise<BackendDetail> {
    const view = (await this.listBackends()).find((backend) => backend.name === name);
    if (view === undefined) throw new OvsError("NOT_FOUND", `there is no backend named ${name}.`);
    if (view.kind === "local") {
      let usage: BackendDetail["usage"] = null;
      if (name === backendName(this.ownBackend()) && this.options.localBackendDir !== undefined) {
        const stats = await fsp.statfs(this.options.localBackendDir);
        const capacityBytes = stats.blocks * stats.bsize;
        const freeBytes = stats.bavail * stats.bsize;
        usage = { capacityBytes, usedBytes: capacityBytes - stats.bfree * stats.bsize, freeBytes };
      }
      return { ...view, usage, presets: [], asdNodes: [], asds: [] };
    }
    const alba = this.options.alba;
    if (alba?.manager === undefined || name !== backendName(this.ownBackend())) throw new OvsError("UNAVAILABLE", `backend ${name} is not reachable from this node; ask a node that runs it.`);
    const [asds, presets, overlays] = await Promise.all([alba.listAsds(), alba.listPresets(), this.asdDomains.list(modelKeys.asdPrefix)]);
    const domainOf = new Map(overlays.map(({ record }) => [record.asdId, record.domain]));
    const claimed = asds.filter((asd) => asd.state === "claimed");
    const safetyAsds: SafetyAsd[] = claimed.map((asd) => ({
      asdId: asd.asdId, nodeId: asd.nodeId, usable: asd.health === "ok" && (asd.capacityBytes === 0 || asd.usedBytes < 0.99 * asd.capacityBytes),
      ...(domainOf.has(asd.asdId) ? { domain: domainOf.get(asd.asdId)! } : {}),
    }));
    const capacityBytes = claimed.reduce((sum, asd) => sum + asd.capacityBytes, 0);
    const usedBytes = claimed.reduce((sum, asd) => sum + asd.usedBytes, 0);
    const nodes = new Map<string, { nodeId: string; asdCount: number; capacityBytes: number; usedBytes: number }>();
    for (const asd of claimed) {
      const node = nodes.get(asd.nodeId) ?? { nodeId: asd.nodeId, asdCount: 0, capacityBytes: 0, usedBytes: 0 };
      node.asdCount++;
      node.capacityBytes += asd.capacityBytes;
      node.usedBytes += asd.usedBytes;
      nodes.set(asd.nodeId, node);
    }
    return {
      ...view,
      usage: { capacityBytes, usedBytes, freeBytes: Math.max(0, capacityBytes - usedBytes) },
      presets: presets.map((preset) => ({
        name: preset.name, isDefault: preset.isDefault, compression: preset.compression, encryption: preset.encryption, fragmentChecksum: preset.fragmentChecksum,
        policies: preset.policies.map((policy) => policySafety(policy, safetyAsds)),
      })),
      asdNodes: [...nodes.values()].sort((a, b) => (a.nodeId < b.nodeId ? -1 : 1)),
      asds: asds.map((asd) => ({
        asdId: asd.asdId, nodeId: asd.nodeId, host: asd.host, port: asd.port, state: asd.state, health: asd.health, domain: domainOf.get(asd.asdId) ?? null,
        capacityBytes: asd.capacityBytes, usedBytes: asd.usedBytes,
      })),
    };
  }

  private async backendByName(name: string): Promise<BackendRef> {
    const view = (await this.listBackends()).find((backend) => backend.name === name);
    if (view === undefined) throw new OvsError("NOT_FOUND", `there is no backend named ${name}.`);
    return view.kind === "alba" ? { kind: "alba", backendId: name } : { kind: "local", storageRouterId: name.slice("local-".length) };
  }

  private albaManager(backend: BackendRef): NonNullable<AlbaService["manager"]> {
    const manager = this.options.alba?.manager;
    if (manager === undefined || backend.kind !== "alba" || manager.backendId !== backend.backendId) {
      throw new OvsError("UNAVAILABLE", `backend ${backendName(backend)} is not reachable from this node; ask a node that runs it.`);
    }
    return manager;
  }

  // ---- Domains -------------------------------------------------------------------------------------------

  async listDomains(): Promise<DomainView[]> {
    const [domains, routers, overlays] = await Promise.all([this.domains.list(modelKeys.domainPrefix), this.routers.list(modelKeys.storageRouterPrefix), this.asdDomains.list(modelKeys.asdPrefix)]);
    return domains.map(({ record }) => ({
      ...record,
      storageRouters: routers.filter((r) => r.record.domains.includes(record.name)).map((r) => r.record.id),
      asds: overlays.filter((o) => o.record.domain === record.name).map((o) => o.record.asdId),
    }));
  }

  async getDomain(name: string): Promise<DomainView> {
    const view = (await this.listDomains()).find((domain) => domain.name === name);
    if (view === undefined) throw new OvsError("NOT_FOUND", `there is no domain named ${name}.`);
    return view;
  }

  async createDomain(name: string): Promise<DomainView> {
    checkModelName(name, "domain name");
    const created = this.domains.create(name, { name, createdAt: this.isoNow() });
    try {
      await commit(this.store, [created.change], "");
    } catch (error) {
      if (isOvsError(error, "CONFLICT")) throw new OvsError("ALREADY_EXISTS", `a domain named ${name} already exists.`);
      throw error;
    }
    return this.getDomain(name);
  }

  /** Deletes an unused domain; IN_USE while storage routers or ASDs are in it. */
  async deleteDomain(name: string, expectedVersion?: number): Promise<void> {
    const loaded = await this.domains.require(name);
    const view = await this.getDomain(name);
    const users = [...view.storageRouters.map((id) => `storage router ${id}`), ...view.asds.map((id) => `ASD ${id}`)];
    if (users.length > 0) throw new OvsError("IN_USE", `domain ${name} is assigned to ${users.slice(0, 5).join(", ")}${users.length > 5 ? ", …" : ""}; unassign them first.`);
    await commit(this.store, [this.domains.remove(loaded, expectedVersion)], `domain ${name} changed meanwhile; read it again and retry.`);
  }

  /**
   * Puts storage routers and ASDs into a domain (assign) or takes them out (unassign), in one sequence
   * that also raises the domain's version. An ASD is in at most one domain: assigning moves it.
   */
  async assignDomain(name: string, targets: { storageRouters?: string[]; asds?: string[] }, assign: boolean, expectedVersion?: number): Promise<DomainView> {
    const routerIds = [...new Set(targets.storageRouters ?? [])];
    const asdIds = [...new Set(targets.asds ?? [])];
    if (routerIds.length + asdIds.length === 0) throw new OvsError("INVALID_ARGUMENT", "name at least one storage router or ASD.");
    if (routerIds.length + asdIds.length > assignTargetsMax) throw new OvsError("INVALID_ARGUMENT", `at most ${assignTargetsMax} storage routers and ASDs at once.`);
    const domain = await this.domains.require(name);
    const changes: Change[] = [this.domains.update(domain, { ...domain.record }, expectedVersion).change];
    for (const id of routerIds) {
      const router = await this.routers.require(id);
      const has = router.record.domains.includes(name);
      if (!assign && !has) throw new OvsError("INVALID_ARGUMENT", `storage router ${id} is not in domain ${name}.`);
      if (assign === has) continue;
      const domains = assign ? [...router.record.domains, name].sort() : router.record.domains.filter((d) => d !== name);
      changes.push(this.routers.update(router, { ...router.record, domains, updatedAt: this.isoNow() }).change);
    }
    for (const asdId of asdIds) {
      if (!/^[0-9a-f]{32}$/.test(asdId)) throw new OvsError("INVALID_ARGUMENT", `"${asdId}" is not an ASD id: an ASD id is 32 lowercase hex digits.`);
      const overlay = await this.asdDomains.get(asdId);
      if (assign) {
        const manager = this.options.alba?.manager;
        if (manager === undefined) throw new OvsError("UNAVAILABLE", "this node runs no ALBA backend; assign ASDs through a node that does.");
        if ((await manager.getAsd(asdId)) === undefined) throw new OvsError("NOT_FOUND", `there is no ASD ${asdId} in backend ${manager.backendId}.`);
        if (overlay === undefined) changes.push(this.asdDomains.create(asdId, { asdId, domain: name }).change);
        else if (overlay.record.domain !== name) changes.push(this.asdDomains.update(overlay, { ...overlay.record, domain: name }).change);
      } else {
        if (overlay?.record.domain !== name) throw new OvsError("INVALID_ARGUMENT", `ASD ${asdId} is not in domain ${name}.`);
        changes.push(this.asdDomains.remove(overlay));
      }
    }
    await commit(this.store, changes, `domain ${name} or one of the storage routers or ASDs changed meanwhile; read them again and retry.`);
    return this.getDomain(name);
  }
}

// ---- Helpers ----------------------------------------------------------------------------------------------

export function backendName(ref: BackendRef): string {
  return ref.kind === "alba" ? ref.backendId : `local-${ref.storageRouterId}`;
}

function sameBackend(a: BackendRef, b: BackendRef): boolean {
  return backendName(a) === backendName(b);
}

function checkReachable(vpool: string, backend: BackendRef, router: StorageRouterRecord): void {
  if (!sameBackend(backend, router.backend)) {
    throw new OvsError("CONFLICT", `storage router ${router.id} cannot reach backend ${backendName(backend)} of vPool ${vpool} (it uses ${backendName(router.backend)}).`);
  }
}

function checkVersionOf(kind: string, version: number, expectedVersion: number | undefined): void {
  if (expectedVersion !== undefined && expectedVersion !== version) {
    throw new OvsError("CONFLICT", `the ${kind} changed since version ${expectedVersion} (it is at version ${version}); read it again and retry.`);
  }
}

/** A cache mode given to the API (INVALID_ARGUMENT naming the accepted ones; an old name says its new one). */
export function checkCacheMode(mode: string): CacheMode {
  if ((cacheModes as readonly string[]).includes(mode)) return mode as CacheMode;
  const renamed = Object.hasOwn(legacyCacheModes, mode) ? ` ("${mode}" is now called ${legacyCacheModes[mode]})` : "";
  throw new OvsError("INVALID_ARGUMENT", `"${mode}" is not a cache mode: use ${cacheModes.join(", ")}${renamed}.`);
}

/** New settings from `base` and a change, validated as a whole (INVALID_ARGUMENT, nothing changed). */
export function vpoolSettings(base: VPoolSettings, change: VPoolChange): VPoolSettings {
  const settings = { ...base };
  if (change.scoSizeBytes !== undefined) settings.scoSizeBytes = change.scoSizeBytes;
  if (change.tlogMultiplier !== undefined) settings.tlogMultiplier = change.tlogMultiplier;
  if (change.scoCacheMaxBytes !== undefined) settings.scoCacheMaxBytes = change.scoCacheMaxBytes;
  if (change.cacheMode !== undefined) {
    settings.cacheMode = checkCacheMode(change.cacheMode);
  }
  const { scoSizeBytesMin, scoSizeBytesMax } = volumeLimits;
  if (!Number.isSafeInteger(settings.scoSizeBytes) || settings.scoSizeBytes < scoSizeBytesMin || settings.scoSizeBytes > scoSizeBytesMax || settings.scoSizeBytes % 4096 !== 0) {
    throw new OvsError("INVALID_ARGUMENT", `the SCO size must be a multiple of 4 KiB from ${formatBytes(scoSizeBytesMin)} to ${formatBytes(scoSizeBytesMax)}.`);
  }
  if (change.writeBufferBytes !== undefined) {
    const multiplier = Math.round(change.writeBufferBytes / (1.5 * settings.scoSizeBytes));
    if (change.tlogMultiplier !== undefined && change.tlogMultiplier !== multiplier) {
      throw new OvsError("INVALID_ARGUMENT", `a write buffer of ${formatBytes(change.writeBufferBytes)} means a TLog multiplier of ${multiplier}, not ${change.tlogMultiplier}; give one of the two.`);
    }
    settings.tlogMultiplier = multiplier;
  }
  if (!Number.isInteger(settings.tlogMultiplier) || settings.tlogMultiplier < 1 || settings.tlogMultiplier > 1024) {
    throw new OvsError("INVALID_ARGUMENT", `the TLog multiplier must be from 1 to 1024 (write buffer from ${formatBytes(1.5 * settings.scoSizeBytes)} to ${formatBytes(1536 * settings.scoSizeBytes)} with this SCO size).`);
  }
  if (!Number.isSafeInteger(settings.scoCacheMaxBytes) || settings.scoCacheMaxBytes < 0) throw new OvsError("INVALID_ARGUMENT", "the SCO cache cap must be a size of 0 (none) or more.");
  return settings;
}

