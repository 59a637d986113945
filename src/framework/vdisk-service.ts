// The vDisk lifecycle on one node: the registry of vDisks in the cluster store (key ovs/vdisks/<name>,
// docs/formats/vdisk-registry.md), their volumes under <dataDir>/volumes/<id>, and their NBD exports.
//
// Invariants:
// - A registry record exists for every volume the node serves; a record marked `deleting` is finished
//   (namespace and local data removed, record deleted) at the next start, so a crash during a delete
//   never leaves a half-deleted vDisk that looks alive.
// - Operations on one vDisk are serialised (a per-name lock), so create/resize/delete never interleave.
// - Long operations (restart, scrub, set-as-template, delete) have a check*() that throws what they would
//   refuse, so that the API answers at once before it starts a task; an accepted delete is reserved
//   (reserveDelete) until it ends, so a second delete or a set-as-template is refused meanwhile.
// - Bad input (name, size) is refused with INVALID_ARGUMENT before anything changes.
// - Clones: a clone's record names its parent vDisk and snapshot. A vDisk with clones cannot be deleted,
//   nor the snapshots its clones were made from (nor rolled back past them); parents are opened before
//   their clones, and a clone finds its open parent through this service.
// - Rollback needs the vDisk to have no NBD client (IN_USE otherwise): the data under a connected
//   client's page cache would change without notice.
// - A vDisk whose local directory is gone (a lost disk, a new node) is restarted from the backend.
// - Every served vDisk (clones too) has one QoS limiter, shared by all its NBD connections and kept
//   across a rollback; its limits are the record's `qos` (none when absent), applied at start.
// - Settings (setSettings) are validated as a whole before anything changes, then persisted, then
//   applied live: QoS limits and the read cache mode and quota in the record, the SCO cache cap in the
//   volume's own configuration.
// - Every served vDisk has one owner in the node's read cache (when the node has one), kept across a
//   rollback like the limiter; a volume that was restarted from the backend (a rollback, a lost local
//   directory) has its namespace's cache entries dropped first (its SCO numbers may be reused), and a
//   deleted vDisk's entries go with it.

import fsp from "node:fs/promises";
import path from "node:path";
import { randomUUID } from "node:crypto";
import { OvsError, formatBytes, type Logger } from "../base/index.js";
import type { ClusterStore, SequenceAssert } from "../store/index.js";
import type { ObjectBackend } from "../backend/index.js";
import {
  QosLimiter, Volume, defaultReadCacheSettings, defaultVolumeSettings, noQosLimits, qosLimitKeys, validateConfig, validateQosLimits,
  validateReadCacheSettings, validateScrubOptions, volumeLimits,
  type QosLimits, type ReadCache, type ReadCacheOwner, type ReadCacheSettings, type ReadCacheStats, type ScrubProgress, type ScrubReport, type SnapshotInfo, type VolumeConfig,
} from "../volume/index.js";
import { VolumeExport, type NbdExport, type NbdExportProvider } from "../frontend/index.js";
import type { NodeMetrics } from "./metrics/metrics.js";

/** An accepted delete not finished yet (reserveDelete). */
export interface DeleteReservation {
  release(): void;
}

export interface VDiskRecord {
  id: string;
  name: string;
  /** The node that owns and serves it (its data is in that node's data dir and backend). */
  nodeId: string;
  namespace: string;
  sizeBytes: number;
  createdAt: string;
  deleting?: boolean;
  /** Clones only: the parent vDisk and the snapshot the clone was made from. */
  parent?: { name: string; snapshot: string };
  /** QoS limits (0 = none); absent when no limit is set. */
  qos?: QosLimits;
  /** Read cache mode and quota; absent = the defaults (cache-on-read, no quota). */
  cache?: ReadCacheSettings;
  /** The vPool it belongs to (model/); absent: its node's default vPool (a clone: its parent's). */
  vpool?: string;
  /**
   * Bumped by every change of its settings or size (absent = 0): a change that names the version it
   * was based on is refused (CONFLICT) if the vDisk changed since, never applied over the other.
   */
  version?: number;
}

/** A vDisk's settings: the changeable ones and, read-only, those fixed at creation. */
export interface VDiskSettings {
  qos: QosLimits;
  /** Cap on the vDisk's local SCO bytes (0 = none); changeable while it serves I/O. */
  scoCacheMaxBytes: number;
  /** Its use of the node's read cache (mode; quota in bytes, 0 = none); changeable while it serves I/O. */
  cache: ReadCacheSettings;
  /** Fixed at creation. */
  scoSizeBytes: number;
  /** Fixed at creation. */
  tlogMultiplier: number;
  /** The vDisk's version (VDiskRecord.version): pass it with a change to refuse it if another landed first. */
  version: number;
}

/** A change of settings: only the fields given change; qos fields merge into the current limits. */
export interface VDiskSettingsChange {
  qos?: Partial<QosLimits>;
  scoCacheMaxBytes?: number;
  /** Fields given replace the current ones. */
  cache?: Partial<ReadCacheSettings>;
  /** Refused unless equal to the current value (fixed at creation). */
  scoSizeBytes?: number;
  /** Refused unless equal to the current value (fixed at creation). */
  tlogMultiplier?: number;
  /** The version the change is based on: CONFLICT (nothing changed) if the vDisk is at another one. */
  version?: number;
}

export interface VDiskInfo extends Omit<VDiskRecord, "qos"> {
  size: string;
  connectionCount: number;
  /** "running", "halted" (a failed write; restart to recover) or "fenced" (another start owns it). */
  state: "running" | "halted" | "fenced";
  template: boolean;
  /** 0 for a vDisk that is no clone, else the length of its parent chain. */
  cloneDepth: number;
  clones: string[];
  snapshotCount: number;
  stats: ReturnType<Volume["stats"]>;
  /** Set when the vDisk was last started by a restart from the backend. */
  restore?: ReturnType<typeof restoreOf>;
  /** The QoS limits in force (0 = none) and the requests they delayed since the vDisk started. */
  qos: { limits: QosLimits; delayedRequests: number; delayedMsTotal: number };
  /** Non-disposable bytes above which writes wait (SCO size × TLog multiplier × 1.5). */
  writeBufferLimitBytes: number;
}

function restoreOf(volume: Volume): { tlogCount: number; entryCount: number; durationMs: number } | undefined {
  const report = volume.restoreReport;
  return report && { tlogCount: report.tlogCount, entryCount: report.entryCount, durationMs: report.durationMs };
}

/** The registry's key prefix: one record per vDisk under it (docs/formats/vdisk-registry.md). */
export const registryPrefix = "ovs/vdisks/";
export const vdiskNameMaxBytes = 64;
/** The steps restart() reports: disconnect, close, open. */
export const restartSteps = 3;
/** The steps setAsTemplate() reports: snapshot, upload of the write buffer, other snapshots deleted, flag persisted. */
export const templateSteps = 4;
/** The steps delete() reports: marked deleting, volume closed, namespace removed from the backend, local data and record removed. */
export const deleteSteps = 4;
/** How often the upload step of setAsTemplate() reports the uploads still pending. */
export const templateProgressMs = 500;
const namePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function validateVDiskName(name: unknown): string {
  if (typeof name !== "string" || !namePattern.test(name)) {
    throw new OvsError("INVALID_ARGUMENT", `"${String(name)}" is not a valid vDisk name: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit.`);
  }
  return name;
}

interface Served {
  record: VDiskRecord;
  volume: Volume;
  nbdExport: VolumeExport;
  /** What NBD connections use: nbdExport with its I/O counted when the node has metrics. */
  served: NbdExport;
  /** The vDisk's QoS limiter, in front of the volume in nbdExport. */
  qos: QosLimiter;
  /** The vDisk's share of the node's read cache (none when the node has no cache). */
  cache: ReadCacheOwner | undefined;
}

export class VDiskService implements NbdExportProvider {
  private readonly served = new Map<string, Served>();
  private readonly locks = new Map<string, Promise<void>>();
  /** Deletes accepted (reserveDelete) and not finished: another delete or a set-as-template is refused. */
  private readonly deletesPending = new Map<string, DeleteReservation>();
  /** Called to cut NBD connections of a vDisk deleted by force. */
  disconnect: (name: string) => void = () => undefined;

  constructor(
    private readonly options: { dataDir: string; nodeId: string; store: ClusterStore; backend: ObjectBackend; log: Logger; metrics?: NodeMetrics; readCache?: ReadCache },
  ) {
    options.metrics?.setScrapeSource((name) => {
      const served = this.served.get(name);
      return served && {
        stats: served.volume.stats(), sizeBytes: served.volume.sizeBytes, connectionCount: served.nbdExport.connectionCount,
        qos: served.qos.stats(), writeBufferLimitBytes: writeBufferLimitOf(served.volume),
      };
    });
    const readCache = options.readCache;
    if (readCache !== undefined) options.metrics?.setReadCacheSource(() => readCache.stats());
  }

  /**
   * Serves a volume; `qos` and `cache` are the vDisk's limiter and read cache share when it is already
   * served (a rollback keeps them).
   */
  private serve(record: VDiskRecord, volume: Volume, qos = this.limiterFor(record), cache = this.cacheOwnerFor(record)): void {
    // Restarted from the backend: SCO numbers above the last listed one may be reused, so nothing
    // cached for this namespace may be served any more.
    if (volume.restoreReport !== undefined) this.options.readCache?.dropNamespace(record.namespace);
    volume.setReadCache(cache);
    const nbdExport = new VolumeExport(volume, qos);
    this.served.set(record.name, { record, volume, nbdExport, served: this.options.metrics?.meter(nbdExport) ?? nbdExport, qos, cache });
  }

  /** The vDisk's read cache share with the record's settings (bad ones, edited by hand: the defaults). */
  private cacheOwnerFor(record: VDiskRecord): ReadCacheOwner | undefined {
    const readCache = this.options.readCache;
    if (readCache === undefined) return undefined;
    const settings = { ...defaultReadCacheSettings, ...record.cache };
    try {
      validateReadCacheSettings(settings);
      return readCache.attach(record.name, settings);
    } catch (error) {
      this.options.log.error({ err: error, vdisk: record.name }, "the vDisk's stored read cache settings are invalid; it uses the defaults until they are set again");
      return readCache.attach(record.name);
    }
  }

  /** The node's read cache statistics (undefined when it has none). */
  readCacheStats(): ReadCacheStats | undefined {
    return this.options.readCache?.stats();
  }

  /** A new limiter with the record's limits; a record with bad limits (edited by hand) starts without. */
  private limiterFor(record: VDiskRecord): QosLimiter {
    const limiter = new QosLimiter();
    if (record.qos === undefined) return limiter;
    try {
      limiter.set({ ...noQosLimits, ...record.qos });
    } catch (error) {
      this.options.log.error({ err: error, vdisk: record.name }, "the vDisk's stored QoS limits are invalid; it runs without limits until they are set again");
    }
    return limiter;
  }

  /** Opens every registered vDisk (local restart) and finishes interrupted deletes. */
  async start(): Promise<void> {
    const records = (await this.records()).filter((record) => record.nodeId === this.options.nodeId); // not another node's
    const byName = new Map(records.map((record) => [record.name, record]));
    const depth = (record: VDiskRecord): number => {
      let count = 0;
      for (let r: VDiskRecord | undefined = record; r?.parent && count <= records.length; r = byName.get(r.parent.name)) count++;
      return count;
    };
    // Parents before their clones (a clone's recovery may look through its parent).
    for (const record of records.sort((a, b) => depth(a) - depth(b))) {
      if (record.deleting) {
        await this.finishDelete(record);
        continue;
      }
      const dir = this.volumeDir(record);
      let volume: Volume;
      if (await Volume.hasLocalVolume(dir)) {
        volume = await Volume.open({ dir, backend: this.options.backend, log: this.options.log, resolveParent: this.resolveParent });
      } else {
        // The local data is gone (lost disk, new node): rebuild it from the backend.
        await fsp.rm(dir, { recursive: true, force: true });
        volume = await Volume.openFromBackend({ dir, backend: this.options.backend, namespace: record.namespace, log: this.options.log, resolveParent: this.resolveParent });
      }
      this.serve(record, volume);
      this.options.log.info({ vdisk: record.name, restore: volume.restoreReport }, "vDisk started");
    }
  }

  /** A clone's open parent, by namespace (Volume's ParentResolver). */
  private readonly resolveParent = (namespace: string): Volume | undefined => {
    for (const served of this.served.values()) if (served.record.namespace === namespace) return served.volume;
    return undefined;
  };

  async stop(): Promise<void> {
    // Clones before their parents (a clone's final sync may still look through its parent).
    for (const served of [...this.served.values()].sort((a, b) => b.volume.cloneDepth - a.volume.cloneDepth)) {
      try {
        await served.volume.close();
      } catch (error) {
        this.options.log.error({ err: error, vdisk: served.record.name }, "closing a vDisk failed");
      }
    }
    this.served.clear();
  }

  /**
   * settings.scoCacheMaxBytes: a per-vDisk cap on local SCO bytes (0 = none; the default); settings.cache:
   * its read cache mode and quota (default cache-on-read, no quota). The vPool (model/) passes its defaults
   * (SCO size, TLog multiplier, cache mode), its name for the record and the asserts
   * that make the registry put fail (ASSERT_FAILED, nothing left behind) if the vPool changed meanwhile.
   */
  async create(
    name: string,
    sizeBytes: number,
    settings: { scoCacheMaxBytes?: number; scoSizeBytes?: number; tlogMultiplier?: number; cache?: Partial<ReadCacheSettings>; vpool?: string; asserts?: readonly SequenceAssert[] } = {},
  ): Promise<VDiskInfo> {
    validateVDiskName(name);
    const cache: ReadCacheSettings = { ...defaultReadCacheSettings, ...settings.cache };
    validateReadCacheSettings(cache);
    const id = randomUUID();
    const config: VolumeConfig = { id, name, namespace: `vdisk-${id}`, sizeBytes, createdAt: new Date().toISOString(), ...defaultVolumeSettings() };
    if (settings.scoCacheMaxBytes !== undefined) config.scoCacheMaxBytes = settings.scoCacheMaxBytes;
    if (settings.scoSizeBytes !== undefined) config.scoSizeBytes = settings.scoSizeBytes;
    if (settings.tlogMultiplier !== undefined) config.tlogMultiplier = settings.tlogMultiplier;
    validateConfig(config);
    return this.withLock(name, async () => {
      const existing = await this.options.store.get(registryPrefix + name);
      if (this.served.has(name) || existing !== undefined) {
        const owner = existing === undefined ? this.options.nodeId : (JSON.parse(existing.toString("utf8")) as VDiskRecord).nodeId;
        throw new OvsError("ALREADY_EXISTS", `a vDisk named ${name} already exists${owner === this.options.nodeId ? "" : ` (on node ${owner})`}.`);
      }
      const record: VDiskRecord = { id, name, nodeId: this.options.nodeId, namespace: config.namespace, sizeBytes, createdAt: config.createdAt };
      if (settings.vpool !== undefined) record.vpool = settings.vpool;
      if (cache.mode !== defaultReadCacheSettings.mode || cache.quotaBytes !== defaultReadCacheSettings.quotaBytes) record.cache = cache;
      const volume = await Volume.create({ dir: this.volumeDir(record), backend: this.options.backend, config, log: this.options.log });
      try {
        await this.options.store.sequence([{ kind: "absent", key: registryPrefix + name }, ...(settings.asserts ?? [])], [{ kind: "put", key: registryPrefix + name, value: encode(record) }]);
      } catch (error) {
        await volume.close();
        await this.removeVolumeData(record);
        throw error;
      }
      this.serve(record, volume);
      this.options.log.info({ vdisk: name, sizeBytes }, "vDisk created");
      return this.info(name);
    });
  }

  list(): VDiskInfo[] {
    return [...this.served.keys()].sort().map((name) => this.info(name));
  }

  info(name: string): VDiskInfo {
    const served = this.get(name);
    const stats = served.volume.stats();
    const restore = restoreOf(served.volume);
    return {
      ...served.record,
      sizeBytes: served.volume.sizeBytes,
      size: formatBytes(served.volume.sizeBytes),
      connectionCount: served.nbdExport.connectionCount,
      state: stats.fenced ? "fenced" : stats.halted ? "halted" : "running",
      template: served.volume.isTemplate,
      cloneDepth: served.volume.cloneDepth,
      clones: this.clonesOf(name).map((clone) => clone.name),
      snapshotCount: stats.snapshotCount,
      stats,
      ...(restore ? { restore } : {}),
      qos: { limits: served.qos.current, ...served.qos.stats() },
      writeBufferLimitBytes: writeBufferLimitOf(served.volume),
    };
  }

  // ---------------------------------------------------------------------------------------------------
  // Settings and QoS

  settings(name: string): VDiskSettings {
    const served = this.get(name);
    const config = served.volume.config;
    return {
      qos: served.qos.current, scoCacheMaxBytes: config.scoCacheMaxBytes, cache: served.cache?.settings ?? { ...defaultReadCacheSettings, ...served.record.cache },
      scoSizeBytes: config.scoSizeBytes, tlogMultiplier: config.tlogMultiplier, version: served.record.version ?? 0,
    };
  }

  /**
   * Changes settings while the vDisk serves I/O: validates the whole change first (INVALID_ARGUMENT,
   * nothing changed), then persists and applies the QoS limits (record, then limiter: requests already
   * waiting keep their start), then the SCO cache cap (volume configuration, then eviction).
   */
  async setSettings(name: string, change: VDiskSettingsChange): Promise<VDiskSettings> {
    return this.withLock(name, async () => {
      const served = this.get(name);
      const config = served.volume.config;
      const fixed = (what: string, given: number | undefined, current: number, shown: string): void => {
        if (given !== undefined && given !== current) {
          throw new OvsError("INVALID_ARGUMENT", `${what} of vDisk ${name} is fixed at creation (${shown}); create a new vDisk to use another.`);
        }
      };
      checkVersion(name, served.record, change.version);
      fixed("the SCO size", change.scoSizeBytes, config.scoSizeBytes, formatBytes(config.scoSizeBytes));
      fixed("the TLog multiplier", change.tlogMultiplier, config.tlogMultiplier, String(config.tlogMultiplier));
      let qos: QosLimits | undefined;
      if (change.qos !== undefined) {
        for (const key of Object.keys(change.qos)) {
          if (!(qosLimitKeys as string[]).includes(key)) throw new OvsError("INVALID_ARGUMENT", `"${key}" is not a QoS limit; use ${qosLimitKeys.join(", ")}.`);
        }
        qos = { ...served.qos.current, ...change.qos };
        validateQosLimits(qos);
      }
      if (change.scoCacheMaxBytes !== undefined) validateConfig({ ...config, scoCacheMaxBytes: change.scoCacheMaxBytes });
      let cache: ReadCacheSettings | undefined;
      if (change.cache !== undefined) {
        for (const key of Object.keys(change.cache)) {
          if (key !== "mode" && key !== "quotaBytes") throw new OvsError("INVALID_ARGUMENT", `"${key}" is not a read cache setting; use mode, quotaBytes.`);
        }
        cache = { ...defaultReadCacheSettings, ...served.record.cache, ...change.cache };
        validateReadCacheSettings(cache);
      }

      const scoCacheChanges = change.scoCacheMaxBytes !== undefined && change.scoCacheMaxBytes !== config.scoCacheMaxBytes;
      if (qos !== undefined || cache !== undefined || scoCacheChanges) {
        const record: VDiskRecord = { ...served.record, version: (served.record.version ?? 0) + 1 };
        if (qos !== undefined) {
          if (qosLimitKeys.some((key) => qos[key] > 0)) record.qos = qos;
          else delete record.qos;
        }
        if (cache !== undefined) {
          if (cache.mode === defaultReadCacheSettings.mode && cache.quotaBytes === defaultReadCacheSettings.quotaBytes) delete record.cache;
          else record.cache = cache;
        }
        await this.options.store.put(registryPrefix + name, encode(record));
        served.record = record;
        if (qos !== undefined) served.qos.set(qos);
        if (cache !== undefined) served.cache?.set(cache);
      }
      if (scoCacheChanges) await served.volume.setScoCacheMax(change.scoCacheMaxBytes!);
      this.options.log.info({ vdisk: name, change }, "vDisk settings changed");
      return this.settings(name);
    });
  }

  // ---------------------------------------------------------------------------------------------------
  // Snapshots, rollback, clones, templates

  async createSnapshot(name: string, snapshot: string, options: { sticky?: boolean; metadata?: string } = {}): Promise<SnapshotInfo> {
    return this.withLock(name, async () => {
      const info = await this.get(name).volume.createSnapshot(snapshot, options);
      this.options.log.info({ vdisk: name, snapshot }, "snapshot created");
      return info;
    });
  }

  listSnapshots(name: string): SnapshotInfo[] {
    return this.get(name).volume.listSnapshots();
  }

  async deleteSnapshot(name: string, snapshot: string): Promise<void> {
    await this.withLock(name, async () => {
      const served = this.get(name);
      const users = this.clonesOf(name).filter((clone) => clone.parent!.snapshot === snapshot);
      if (users.length > 0) throw new OvsError("IN_USE", `snapshot ${snapshot} of vDisk ${name} has clones (${users.map((c) => c.name).join(", ")}); delete them first.`);
      await served.volume.deleteSnapshot(snapshot);
      this.options.log.info({ vdisk: name, snapshot }, "snapshot deleted");
    });
  }

  /**
   * Throws what rollback would refuse right now (NOT_FOUND, IN_USE, CONFLICT for a snapshot not yet
   * stored), so that the API can answer at once before it starts the rollback as a task.
   */
  checkRollback(name: string, snapshot: string): void {
    const served = this.get(name);
    const connections = served.nbdExport.connectionCount;
    if (connections > 0) {
      throw new OvsError("IN_USE", `vDisk ${name} has ${connections} NBD client${connections === 1 ? "" : "s"} connected; disconnect before a rollback (the data would change under ${connections === 1 ? "it" : "them"}).`);
    }
    const snapshots = served.volume.listSnapshots();
    const target = snapshots.find((s) => s.name === snapshot);
    if (!target) throw new OvsError("NOT_FOUND", `volume ${name} has no snapshot named ${snapshot}`);
    if (target.state !== "stored") throw new OvsError("CONFLICT", `snapshot ${snapshot} of volume ${name} is not on the backend yet; retry once its state is "stored"`);
    const dropped = new Set(snapshots.filter((s) => s.tlogSeq > target.tlogSeq).map((s) => s.name));
    const users = this.clonesOf(name).filter((clone) => dropped.has(clone.parent!.snapshot));
    if (users.length > 0) throw new OvsError("IN_USE", `rolling vDisk ${name} back to ${snapshot} would drop snapshots that clones use (${users.map((c) => c.name).join(", ")}).`);
  }

  /** Rolls a vDisk back to a stored snapshot. Refused while an NBD client is connected. */
  async rollback(name: string, snapshot: string): Promise<VDiskInfo> {
    return this.withLock(name, async () => {
      const served = this.get(name);
      this.checkRollback(name, snapshot);
      const volume = await served.volume.rollback(snapshot);
      this.serve(served.record, volume, served.qos, served.cache);
      this.options.log.info({ vdisk: name, snapshot, restore: volume.restoreReport }, "vDisk rolled back");
      return this.info(name);
    });
  }

  /**
   * Creates a linked clone `cloneName` of a stored snapshot of `name` (for a template, its snapshot
   * when none is named).
   */
  async clone(name: string, snapshot: string | undefined, cloneName: string): Promise<VDiskInfo> {
    validateVDiskName(cloneName);
    const parent = this.get(name);
    let snapshotName = snapshot;
    if (snapshotName === undefined) {
      if (!parent.volume.isTemplate) throw new OvsError("INVALID_ARGUMENT", `name the snapshot of vDisk ${name} to clone (--snapshot NAME); only a template's is implied.`);
      snapshotName = parent.volume.listSnapshots()[0]!.name;
    }
    const chosen = snapshotName;
    // Parent first, then the clone (always this order): the parent cannot be deleted meanwhile.
    return this.withLock(name, () => this.withLock(cloneName, async () => {
      const existing = await this.options.store.get(registryPrefix + cloneName);
      if (this.served.has(cloneName) || existing !== undefined) throw new OvsError("ALREADY_EXISTS", `a vDisk named ${cloneName} already exists.`);
      const id = randomUUID();
      const record: VDiskRecord = {
        id, name: cloneName, nodeId: this.options.nodeId, namespace: `vdisk-${id}`, sizeBytes: parent.volume.sizeBytes,
        createdAt: new Date().toISOString(), parent: { name, snapshot: chosen },
      };
      const volume = await Volume.createClone({
        dir: this.volumeDir(record), backend: this.options.backend, parent: this.get(name).volume, snapshot: chosen,
        identity: { id, name: cloneName, namespace: record.namespace, createdAt: record.createdAt }, log: this.options.log, resolveParent: this.resolveParent,
      }).catch(async (error: unknown) => {
        await this.removeVolumeData(record);
        throw error;
      });
      try {
        await this.options.store.sequence([{ kind: "absent", key: registryPrefix + cloneName }], [{ kind: "put", key: registryPrefix + cloneName, value: encode(record) }]);
      } catch (error) {
        await volume.close();
        await this.removeVolumeData(record);
        throw error;
      }
      this.serve(record, volume);
      this.options.log.info({ vdisk: cloneName, parent: name, snapshot: chosen }, "vDisk cloned");
      return this.info(cloneName);
    }));
  }

  /**
   * Throws what setAsTemplate() would refuse right now (NOT_FOUND; IN_USE with clones; CONFLICT when it is
   * a template already, halted, or being deleted), so that the API answers at once before it starts the task.
   */
  checkSetAsTemplate(name: string): void {
    const served = this.get(name);
    if (this.deletesPending.has(name)) throw new OvsError("CONFLICT", `vDisk ${name} is being deleted.`);
    const clones = this.clonesOf(name);
    if (clones.length > 0) throw new OvsError("IN_USE", `vDisk ${name} has clones (${clones.map((c) => c.name).join(", ")}); a template keeps one snapshot only, so delete them first.`);
    if (served.volume.isTemplate) throw new OvsError("CONFLICT", `vDisk ${name} is a template already.`);
    const halted = served.volume.stats().halted;
    if (halted !== undefined) throw new OvsError("CONFLICT", `vDisk ${name} is halted (${halted.replace(/\.$/, "")}); restart it first (ovs vdisk restart ${name}).`);
  }

  /**
   * Makes a vDisk a template: read-only, one snapshot kept, its write buffer on the backend. Refused while
   * it has clones. `onStep` sees each of templateSteps steps begin (the upload's detail counts the
   * uploads still pending, every templateProgressMs).
   */
  async setAsTemplate(name: string, onStep?: (step: number, detail: string) => void): Promise<VDiskInfo> {
    return this.withLock(name, async () => {
      const served = this.get(name);
      this.checkSetAsTemplate(name);
      let timer: NodeJS.Timeout | undefined;
      try {
        await served.volume.setAsTemplate((step, detail) => {
          clearInterval(timer);
          onStep?.(step, detail);
          if (step === 1 && onStep !== undefined) {
            timer = setInterval(() => onStep(step, `${detail}: ${served.volume.stats().pendingUploads} uploads pending`), templateProgressMs);
          }
        });
      } finally {
        clearInterval(timer);
      }
      this.options.log.info({ vdisk: name }, "vDisk set as template");
      return this.info(name);
    });
  }

  /**
   * Throws what restart() would refuse right now (NOT_FOUND; CONFLICT while a scrub runs; IN_USE while NBD
   * clients are connected, unless force), so that the API answers at once before it starts the task.
   */
  checkRestart(name: string, force: boolean): void {
    const served = this.get(name);
    if (served.volume.scrubbing) throw new OvsError("CONFLICT", `vDisk ${name} is being scrubbed; retry the restart when the scrub has finished.`);
    const connections = served.nbdExport.connectionCount;
    if (connections > 0 && !force) {
      throw new OvsError("IN_USE", `vDisk ${name} has ${connections} NBD client${connections === 1 ? "" : "s"} connected; disconnect ${connections === 1 ? "it" : "them"} or restart with --force.`);
    }
  }

  /**
   * Restarts a vDisk's volume on this node (the original's restart: e.g. after a halt): closes it and
   * opens it again from its local data (or from the backend when that is gone). Refused while NBD
   * clients are connected unless force, which disconnects them first, and while a scrub runs (CONFLICT).
   * The QoS limiter and the read cache share are kept. `onStep` sees each of restartSteps steps begin.
   */
  async restart(name: string, force: boolean, onStep?: (step: number, detail: string) => void): Promise<VDiskInfo> {
    return this.withLock(name, async () => {
      const served = this.get(name);
      this.checkRestart(name, force);
      onStep?.(0, "disconnecting NBD clients");
      if (served.nbdExport.connectionCount > 0) this.disconnect(name);
      onStep?.(1, "closing the volume");
      try {
        await served.volume.close();
      } catch (error) {
        this.options.log.warn({ err: error, vdisk: name }, "closing the vDisk before its restart failed; reopening from what is durable");
      }
      const dir = this.volumeDir(served.record);
      const local = await Volume.hasLocalVolume(dir);
      onStep?.(2, local ? "opening the volume from its local data" : "restoring the volume from the backend");
      const volume = local
        ? await Volume.open({ dir, backend: this.options.backend, log: this.options.log, resolveParent: this.resolveParent })
        : await Volume.openFromBackend({ dir, backend: this.options.backend, namespace: served.record.namespace, log: this.options.log, resolveParent: this.resolveParent });
      this.serve(served.record, volume, served.qos, served.cache);
      this.options.log.info({ vdisk: name, force }, "vDisk restarted");
      return this.info(name);
    });
  }

  /**
   * Scrubs a vDisk while it serves I/O (not under the vDisk's lock: snapshots may be taken meanwhile;
   * the volume refuses a rollback or a second scrub until it is done). Bad options are refused before
   * anything changes. `onProgress` sees each phase's done/total.
   */
  /** Refuses (INVALID_ARGUMENT, NOT_FOUND) what scrub() would, before a task is started for it. */
  checkScrub(name: string, options: { threshold?: number; bandwidthBytesPerSecond?: number }): void {
    validateScrubOptions(options);
    this.get(name);
  }

  async scrub(name: string, options: { threshold?: number; bandwidthBytesPerSecond?: number }, onProgress?: (progress: ScrubProgress) => void): Promise<ScrubReport> {
    validateScrubOptions(options);
    const served = this.get(name);
    const report = await served.volume.scrub({ ...options, ...(onProgress ? { onProgress } : {}) });
    this.options.log.info({ vdisk: name, report }, "vDisk scrubbed");
    return report;
  }

  async resize(name: string, sizeBytes: number, version?: number): Promise<VDiskInfo> {
    return this.withLock(name, async () => {
      const served = this.get(name);
      checkVersion(name, served.record, version);
      await served.volume.resize(sizeBytes);
      served.record = { ...served.record, sizeBytes, version: (served.record.version ?? 0) + 1 };
      await this.options.store.put(registryPrefix + name, encode(served.record));
      this.options.log.info({ vdisk: name, sizeBytes }, "vDisk resized");
      return this.info(name);
    });
  }

  /**
   * Throws what delete() would refuse right now (NOT_FOUND; IN_USE with clones, or while NBD clients are
   * connected unless force; CONFLICT while another accepted delete of it is pending), so that the API
   * answers at once. `reservation`: the one of the delete being checked (reserveDelete).
   */
  checkDelete(name: string, force: boolean, reservation?: DeleteReservation): void {
    const served = this.get(name);
    const pending = this.deletesPending.get(name);
    if (pending !== undefined && pending !== reservation) throw new OvsError("CONFLICT", `vDisk ${name} is being deleted already.`);
    const clones = this.clonesOf(name);
    if (clones.length > 0) throw new OvsError("IN_USE", `vDisk ${name} has clones (${clones.map((c) => c.name).join(", ")}); delete them first.`);
    const connections = served.nbdExport.connectionCount;
    if (connections > 0 && !force) {
      throw new OvsError("IN_USE", `vDisk ${name} has ${connections} NBD client${connections === 1 ? "" : "s"} connected; disconnect ${connections === 1 ? "it" : "them"} or delete with --force.`);
    }
  }

  /**
   * Checks a delete (checkDelete) and reserves it: other deletes and set-as-template are refused
   * (CONFLICT) until delete() with this reservation ends, or release() (its task did not start).
   */
  reserveDelete(name: string, force: boolean): DeleteReservation {
    this.checkDelete(name, force);
    const reservation: DeleteReservation = { release: () => {
      if (this.deletesPending.get(name) === reservation) this.deletesPending.delete(name);
    } };
    this.deletesPending.set(name, reservation);
    return reservation;
  }

  /**
   * Deletes a vDisk: its record is marked deleting, its volume closed, its namespace removed from the
   * backend, then its local data and record. Refused with clones, and while NBD clients are connected
   * unless force (which disconnects them). `onStep` sees each of deleteSteps steps begin.
   */
  async delete(
    name: string, force: boolean, options: { onStep?: (step: number, detail: string) => void; reservation?: DeleteReservation } = {},
  ): Promise<{ name: string; namespace: string; disconnectedClients: number }> {
    const { onStep, reservation } = options;
    try {
      return await this.withLock(name, async () => {
        const served = this.get(name);
        this.checkDelete(name, force, reservation);
        const connections = served.nbdExport.connectionCount;
        onStep?.(0, "marking the vDisk deleting");
        const record = { ...served.record, deleting: true };
        await this.options.store.put(registryPrefix + name, encode(record));
        this.served.delete(name);
        this.options.metrics?.forget(name);
        if (connections > 0) this.disconnect(name);
        onStep?.(1, "closing the volume");
        await served.volume.close();
        if (served.cache !== undefined) this.options.readCache?.detach(served.cache);
        this.options.readCache?.dropNamespace(record.namespace);
        onStep?.(2, `removing namespace ${record.namespace} from the backend`);
        if (await this.options.backend.namespaceExists(record.namespace)) await this.options.backend.deleteNamespace(record.namespace);
        onStep?.(3, "removing the local data and the registry record");
        await this.finishDelete(record);
        this.options.log.info({ vdisk: name, force }, "vDisk deleted");
        return { name, namespace: record.namespace, disconnectedClients: connections };
      });
    } finally {
      reservation?.release();
    }
  }

  // NbdExportProvider
  listExports(): Array<{ name: string; description?: string }> {
    return [...this.served.values()].map((s) => ({ name: s.record.name, description: s.nbdExport.description }));
  }

  openExport(name: string): NbdExport | undefined {
    return this.served.get(name)?.served;
  }

  private clonesOf(name: string): VDiskRecord[] {
    return [...this.served.values()].map((s) => s.record).filter((record) => record.parent?.name === name);
  }

  private get(name: string): Served {
    const served = this.served.get(name);
    if (!served) throw new OvsError("NOT_FOUND", `there is no vDisk named ${name}.`);
    return served;
  }

  private async records(): Promise<VDiskRecord[]> {
    const records: VDiskRecord[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await this.options.store.prefix(registryPrefix, { after, limit: 1000 });
      for (const entry of page.entries) records.push(JSON.parse(entry.value.toString("utf8")) as VDiskRecord);
      if (!page.more || page.entries.length === 0) return records;
      after = page.entries.at(-1)!.key;
    }
  }

  private async finishDelete(record: VDiskRecord): Promise<void> {
    await this.removeVolumeData(record);
    await this.options.store.delete(registryPrefix + record.name);
  }

  private async removeVolumeData(record: VDiskRecord): Promise<void> {
    if (await this.options.backend.namespaceExists(record.namespace)) await this.options.backend.deleteNamespace(record.namespace);
    await fsp.rm(this.volumeDir(record), { recursive: true, force: true });
  }

  private volumeDir(record: VDiskRecord): string {
    return path.join(this.options.dataDir, "volumes", record.id);
  }

  private async withLock<T>(name: string, work: () => Promise<T>): Promise<T> {
    while (this.locks.has(name)) await this.locks.get(name);
    let release!: () => void;
    this.locks.set(name, new Promise<void>((resolve) => (release = resolve)));
    try {
      return await work();
    } finally {
      this.locks.delete(name);
      release();
    }
  }
}

function writeBufferLimitOf(volume: Volume): number {
  return volume.config.scoSizeBytes * volume.config.tlogMultiplier * volumeLimits.nonDisposableFactor;
}

function encode(record: VDiskRecord): Buffer {
  return Buffer.from(JSON.stringify(record));
}

/** CONFLICT, nothing changed, when a change based on `version` meets a vDisk at another version. */
function checkVersion(name: string, record: VDiskRecord, version: number | undefined): void {
  const current = record.version ?? 0;
  if (version !== undefined && version !== current) {
    throw new OvsError("CONFLICT", `vDisk ${name} changed since version ${version} (it is at version ${current}); read it again and retry.`);
  }
}
