// AlbaManager: the ALBA backend's manager (the original's albamgr) on a ClusterStore: the backend's
// identity, the ASD registry, presets, NSM hosts and namespaces. It never calls out to ASDs; the client
// and maintenance do. Works on any ClusterStore (embedded or etcd). Keys: docs/formats/alba-keys.md.
// Imported by the client and (later) maintenance and the framework through src/alba/manager/index.ts.
//
// Invariants:
// - Every multi-key change is one `sequence` with asserts on what was read, so concurrent managers on
//   one store (several nodes on etcd) never lose an update: read-modify-write loops retry on
//   ASSERT_FAILED at most casRetriesMax times, then fail with CONFLICT.
// - Namespace ids come from one counter and are never reused (fragment keys start with them), so a
//   namespace deleted and created again never sees the old one's fragments.
// - A namespace is usable only in state active; creating goes creating → active, deleting goes active →
//   removing (with a deleted-namespace record for garbage collection) → gone.
// - A namespace lives on one NSM host, chosen as the active host with the fewest namespaces.
// Limits: listings page through the store (rangeLimitMax); casRetriesMax.

import { randomBytes } from "node:crypto";
import { OvsError, isOvsError } from "../../base/index.js";
import { rangeLimitMax, type ClusterStore } from "../../store/index.js";
import { managerKeys, type ManagerKeys } from "./keys.js";
import { NsmStore } from "./nsm.js";
import {
  checkAsdId, checkAsdRecord, checkNamespaceRecord, checkNsmRecord, checkRecordName, decodeRecord, encodeRecord, validatePreset,
  type AsdErrorCounts, type AsdRecord, type DeletedNamespaceRecord, type NamespaceRecord, type NsmRecord, type PresetRecord,
} from "./records.js";

/** How often a read-modify-write retries when someone else changed the record meanwhile. */
export const casRetriesMax = 32;
/** The NSM host every backend starts with: on the manager's own store. */
export const localNsmId = "nsm-0";

/** Opens the ClusterStore of an NSM host that does not live on the manager's store. */
export type NsmResolver = (record: NsmRecord) => ClusterStore;

export interface AlbaManagerOptions {
  store: ClusterStore;
  /** Key root of this backend on the store, ending with "/" (default "ovs/alba/"). */
  root?: string;
  /** For NSM hosts whose location is not "manager". */
  nsmResolver?: NsmResolver;
  /** The clock (tests pass a fake one). */
  nowMs?: () => number;
}

export interface BackendRecord {
  /** Sent to ASDs as the backend id (claims are per backend). */
  backendId: string;
  createdAtMs: number;
}

export interface AsdRegistration {
  asdId: string;
  nodeId: string;
  host: string;
  port: number;
  rack?: string;
  site?: string;
  capacityBytes?: number;
  usedBytes?: number;
}

export interface AsdObservation {
  asdId: string;
  lastSeenMs?: number;
  capacityBytes?: number;
  usedBytes?: number;
  /** Added to the stored counts. */
  errors?: Partial<AsdErrorCounts>;
}

export class AlbaManager {
  readonly store: ClusterStore;
  readonly root: string;
  readonly keys: ManagerKeys;
  private readonly nsmResolver: NsmResolver | undefined;
  private readonly nowMs: () => number;
  private readonly nsmStores = new Map<string, NsmStore>();
  private backendRecord: BackendRecord | undefined;

  private constructor(options: AlbaManagerOptions) {
    this.store = options.store;
    this.root = options.root ?? "ovs/alba/";
    this.keys = managerKeys(this.root);
    this.nsmResolver = options.nsmResolver;
    this.nowMs = options.nowMs ?? Date.now;
  }

  /** Opens (initialising on first use: backend id, the local NSM host) the manager under `root`. */
  static async open(options: AlbaManagerOptions): Promise<AlbaManager> {
    const manager = new AlbaManager(options);
    await manager.initialise();
    return manager;
  }

  private async initialise(): Promise<void> {
    const fresh: BackendRecord = { backendId: `alba-${randomBytes(8).toString("hex")}`, createdAtMs: this.nowMs() };
    const localNsm: NsmRecord = { nsmId: localNsmId, location: "manager", prefix: this.keys.localNsmPrefix(localNsmId), namespaceCount: 0, state: "active" };
    try {
      await this.store.sequence(
        [{ kind: "absent", key: this.keys.backend }],
        [
          { kind: "put", key: this.keys.backend, value: encodeRecord(fresh) },
          { kind: "put", key: this.keys.nsm(localNsmId), value: encodeRecord(localNsm) },
          { kind: "put", key: this.keys.namespaceIdNext, value: Buffer.from("1") },
        ],
      );
    } catch (error) {
      if (!isOvsError(error, "ASSERT_FAILED")) throw error;
    }
    const bytes = await this.store.get(this.keys.backend);
    if (bytes === undefined) throw new OvsError("CONFLICT", "The ALBA backend record vanished while opening the manager.");
    this.backendRecord = decodeRecord<BackendRecord>(bytes, this.keys.backend, (record) => {
      if (typeof record.backendId !== "string") throw new Error("backendId");
    });
  }

  get backendId(): string {
    return this.backendRecord!.backendId;
  }

  // ---- ASD registry --------------------------------------------------------------------------------

  /** Registers a claimed ASD (or updates its address and labels); returns the stored record. */
  async registerAsd(registration: AsdRegistration): Promise<AsdRecord> {
    checkAsdId(registration.asdId);
    if (typeof registration.nodeId !== "string" || registration.nodeId.length === 0) throw new OvsError("INVALID_ARGUMENT", "An ASD needs a node id.");
    if (!Number.isInteger(registration.port) || registration.port < 1 || registration.port > 65535) throw new OvsError("INVALID_ARGUMENT", "An ASD port is 1..65535.");
    return this.updateRecord<AsdRecord>(this.keys.asd(registration.asdId), checkAsdRecord, (old) => {
      const record: AsdRecord = {
        asdId: registration.asdId,
        nodeId: registration.nodeId,
        host: registration.host,
        port: registration.port,
        state: "claimed",
        capacityBytes: registration.capacityBytes ?? old?.capacityBytes ?? 0,
        usedBytes: registration.usedBytes ?? old?.usedBytes ?? 0,
        lastSeenMs: old?.lastSeenMs ?? this.nowMs(),
        errorCounts: old?.errorCounts ?? { readErrors: 0, writeErrors: 0, checksumErrors: 0 },
        claimedAtMs: old?.claimedAtMs ?? this.nowMs(),
      };
      const rack = registration.rack ?? old?.rack;
      const site = registration.site ?? old?.site;
      if (rack !== undefined) record.rack = rack;
      if (site !== undefined) record.site = site;
      return record;
    });
  }

  async getAsd(asdId: string): Promise<AsdRecord | undefined> {
    const key = this.keys.asd(checkAsdId(asdId));
    const bytes = await this.store.get(key);
    return bytes === undefined ? undefined : decodeRecord<AsdRecord>(bytes, key, checkAsdRecord);
  }

  async listAsds(): Promise<AsdRecord[]> {
    return (await this.listRecords(this.keys.asdPrefix)).map(({ key, value }) => decodeRecord<AsdRecord>(value, key, checkAsdRecord));
  }

  /** Marks an ASD decommissioned: it gets no new fragments; maintenance drains it. */
  async decommissionAsd(asdId: string): Promise<AsdRecord> {
    return this.updateRecord<AsdRecord>(this.keys.asd(checkAsdId(asdId)), checkAsdRecord, (old) => {
      if (old === undefined) throw new OvsError("NOT_FOUND", `No ASD ${asdId} is registered.`);
      return { ...old, state: "decommissioned" };
    });
  }

  /** Folds what a client saw (last answer, disk usage, error counts) into the registry. */
  async recordAsdObservations(observations: readonly AsdObservation[]): Promise<void> {
    for (const observation of observations) {
      const key = this.keys.asd(checkAsdId(observation.asdId));
      await this.updateRecord<AsdRecord>(key, checkAsdRecord, (old) => {
        if (old === undefined) return undefined;
        const errors = observation.errors ?? {};
        return {
          ...old,
          lastSeenMs: Math.max(old.lastSeenMs, observation.lastSeenMs ?? 0),
          capacityBytes: observation.capacityBytes ?? old.capacityBytes,
          usedBytes: observation.usedBytes ?? old.usedBytes,
          errorCounts: {
            readErrors: old.errorCounts.readErrors + (errors.readErrors ?? 0),
            writeErrors: old.errorCounts.writeErrors + (errors.writeErrors ?? 0),
            checksumErrors: old.errorCounts.checksumErrors + (errors.checksumErrors ?? 0),
          },
        };
      });
    }
  }

  // ---- Presets -------------------------------------------------------------------------------------

  /** Creates a preset (version 1); ALREADY_EXISTS if the name is taken. The first preset becomes the default. */
  async createPreset(preset: Omit<PresetRecord, "version">): Promise<PresetRecord> {
    const record: PresetRecord = { ...preset, version: 1, policies: preset.policies.map((policy) => ({ ...policy })) };
    validatePreset(record);
    const key = this.keys.preset(record.name);
    const hasDefault = await this.store.exists(this.keys.defaultPreset);
    try {
      await this.store.sequence(
        [{ kind: "absent", key }, ...(hasDefault ? [] : [{ kind: "absent" as const, key: this.keys.defaultPreset }])],
        [{ kind: "put", key, value: encodeRecord(record) }, ...(hasDefault ? [] : [{ kind: "put" as const, key: this.keys.defaultPreset, value: Buffer.from(record.name) }])],
      );
    } catch (error) {
      if (isOvsError(error, "ASSERT_FAILED")) {
        if (await this.store.exists(key)) throw new OvsError("ALREADY_EXISTS", `A preset named ${record.name} exists.`, { preset: record.name });
        return this.createPreset(preset);
      }
      throw error;
    }
    return record;
  }

  async getPreset(name: string): Promise<PresetRecord | undefined> {
    const key = this.keys.preset(checkRecordName(name, "preset name"));
    const bytes = await this.store.get(key);
    return bytes === undefined ? undefined : decodeRecord<PresetRecord>(bytes, key, validatePreset);
  }

  async listPresets(): Promise<PresetRecord[]> {
    return (await this.listRecords(this.keys.presetPrefix)).map(({ key, value }) => decodeRecord<PresetRecord>(value, key, validatePreset));
  }

  async defaultPresetName(): Promise<string | undefined> {
    return (await this.store.get(this.keys.defaultPreset))?.toString("utf8");
  }

  async setDefaultPreset(name: string): Promise<void> {
    if ((await this.getPreset(name)) === undefined) throw new OvsError("NOT_FOUND", `No preset named ${name}.`);
    await this.store.put(this.keys.defaultPreset, Buffer.from(name));
  }

  /** Changes a preset's policies and/or fragment size (the only mutable parts); the version rises. */
  async updatePreset(name: string, change: { policies?: PresetRecord["policies"]; fragmentSizeMaxBytes?: number }): Promise<PresetRecord> {
    return this.updateRecord<PresetRecord>(this.keys.preset(checkRecordName(name, "preset name")), validatePreset, (old) => {
      if (old === undefined) throw new OvsError("NOT_FOUND", `No preset named ${name}.`);
      const next: PresetRecord = {
        ...old,
        version: old.version + 1,
        policies: (change.policies ?? old.policies).map((policy) => ({ ...policy })),
        fragmentSizeMaxBytes: change.fragmentSizeMaxBytes ?? old.fragmentSizeMaxBytes,
      };
      validatePreset(next);
      return next;
    });
  }

  // ---- NSM hosts -----------------------------------------------------------------------------------

  /** Adds an NSM host: `location` "manager" keeps it on this store under its own prefix; others go through the resolver. */
  async addNsm(nsmId: string, location = "manager", prefix?: string): Promise<NsmRecord> {
    checkRecordName(nsmId, "NSM id");
    if (location !== "manager" && this.nsmResolver === undefined) throw new OvsError("INVALID_ARGUMENT", "An NSM host elsewhere needs an nsmResolver.");
    const record: NsmRecord = { nsmId, location, prefix: prefix ?? this.keys.localNsmPrefix(nsmId), namespaceCount: 0, state: "active" };
    const ok = await this.store.testAndSet(this.keys.nsm(nsmId), undefined, encodeRecord(record));
    if (!ok) throw new OvsError("ALREADY_EXISTS", `An NSM host ${nsmId} exists.`);
    return record;
  }

  async listNsms(): Promise<NsmRecord[]> {
    return (await this.listRecords(this.keys.nsmPrefix)).map(({ key, value }) => decodeRecord<NsmRecord>(value, key, checkNsmRecord));
  }

  /** The NSM store of a host (cached). */
  async nsm(nsmId: string): Promise<NsmStore> {
    const cached = this.nsmStores.get(nsmId);
    if (cached !== undefined) return cached;
    const key = this.keys.nsm(nsmId);
    const bytes = await this.store.get(key);
    if (bytes === undefined) throw new OvsError("NOT_FOUND", `No NSM host ${nsmId}.`);
    const record = decodeRecord<NsmRecord>(bytes, key, checkNsmRecord);
    const store = record.location === "manager" ? this.store : this.nsmResolver!(record);
    const nsm = new NsmStore(nsmId, store, record.prefix);
    this.nsmStores.set(nsmId, nsm);
    return nsm;
  }

  // ---- Namespaces ----------------------------------------------------------------------------------

  /**
   * Creates a namespace with `presetName` (default: the default preset) on the least-loaded NSM host.
   * ALREADY_EXISTS if the name is taken; NOT_FOUND if the preset is missing.
   */
  async createNamespace(name: string, presetName?: string): Promise<NamespaceRecord> {
    checkRecordName(name, "namespace");
    const preset = presetName ?? (await this.defaultPresetName());
    if (preset === undefined || (await this.getPreset(preset)) === undefined) {
      throw new OvsError("NOT_FOUND", `No preset ${preset ?? "(no default preset)"} to create namespace ${name} with.`);
    }
    const key = this.keys.namespace(name);
    for (let attempt = 0; attempt < casRetriesMax; attempt++) {
      const [existing, nextIdBytes] = await this.store.multiGet([key, this.keys.namespaceIdNext]);
      if (existing !== undefined) {
        const record = decodeRecord<NamespaceRecord>(existing, key, checkNamespaceRecord);
        if (record.state !== "removing") throw new OvsError("ALREADY_EXISTS", `Namespace ${name} exists.`, { namespace: name });
        await this.finishRemoval(record, existing);
        continue;
      }
      if (nextIdBytes === undefined) throw new OvsError("CORRUPT", `The namespace id counter ${this.keys.namespaceIdNext} is missing.`);
      const namespaceId = Number(nextIdBytes.toString("utf8"));
      const nsms = (await this.listNsms()).filter((nsm) => nsm.state === "active");
      if (nsms.length === 0) throw new OvsError("UNAVAILABLE", "No active NSM host to place a namespace on.");
      nsms.sort((a, b) => a.namespaceCount - b.namespaceCount || (a.nsmId < b.nsmId ? -1 : 1));
      const nsmRecord = nsms[0]!;
      const nsmKey = this.keys.nsm(nsmRecord.nsmId);
      const nsmBytes = encodeRecord(nsmRecord);
      const record: NamespaceRecord = { name, namespaceId, state: "creating", presetName: preset, nsmId: nsmRecord.nsmId, createdAtMs: this.nowMs() };
      try {
        await this.store.sequence(
          [{ kind: "absent", key }, { kind: "equals", key: this.keys.namespaceIdNext, value: nextIdBytes }, { kind: "equals", key: nsmKey, value: nsmBytes }],
          [
            { kind: "put", key, value: encodeRecord(record) },
            { kind: "put", key: this.keys.namespaceIdNext, value: Buffer.from(String(namespaceId + 1)) },
            { kind: "put", key: nsmKey, value: encodeRecord({ ...nsmRecord, namespaceCount: nsmRecord.namespaceCount + 1 }) },
          ],
        );
      } catch (error) {
        if (isOvsError(error, "ASSERT_FAILED")) continue;
        throw error;
      }
      await (await this.nsm(nsmRecord.nsmId)).createNamespace({ namespaceId, name });
      const active: NamespaceRecord = { ...record, state: "active" };
      if (!(await this.store.testAndSet(key, encodeRecord(record), encodeRecord(active)))) {
        throw new OvsError("CONFLICT", `Namespace ${name} changed while it was being created.`);
      }
      return active;
    }
    throw new OvsError("CONFLICT", `Could not create namespace ${name}: too many concurrent changes.`);
  }

  /** The namespace's record if it is active, else undefined. */
  async getNamespace(name: string): Promise<NamespaceRecord | undefined> {
    const key = this.keys.namespace(checkRecordName(name, "namespace"));
    const bytes = await this.store.get(key);
    if (bytes === undefined) return undefined;
    const record = decodeRecord<NamespaceRecord>(bytes, key, checkNamespaceRecord);
    return record.state === "active" ? record : undefined;
  }

  /** One page of active namespace records, by name. */
  async listNamespaces(options: { prefix: string; after: string | undefined; limit: number }): Promise<{ records: NamespaceRecord[]; more: boolean }> {
    const records: NamespaceRecord[] = [];
    let after = options.after === undefined ? undefined : this.keys.namespacePrefix + options.after;
    for (;;) {
      const page = await this.store.prefix(this.keys.namespacePrefix + options.prefix, { limit: Math.min(rangeLimitMax, options.limit + 1), ...(after === undefined ? {} : { after }) });
      for (const entry of page.entries) {
        const record = decodeRecord<NamespaceRecord>(entry.value, entry.key, checkNamespaceRecord);
        if (record.state !== "active") continue;
        if (records.length === options.limit) return { records, more: true };
        records.push(record);
      }
      if (!page.more || page.entries.length === 0) return { records, more: false };
      after = page.entries[page.entries.length - 1]!.key;
    }
  }

  /** Deletes a namespace: its manifests go at once, its fragments are recorded for garbage collection. */
  async deleteNamespace(name: string): Promise<void> {
    const key = this.keys.namespace(checkRecordName(name, "namespace"));
    for (let attempt = 0; attempt < casRetriesMax; attempt++) {
      const bytes = await this.store.get(key);
      if (bytes === undefined) throw new OvsError("NOT_FOUND", `Namespace ${name} does not exist.`, { namespace: name });
      const record = decodeRecord<NamespaceRecord>(bytes, key, checkNamespaceRecord);
      if (record.state !== "active") throw new OvsError("NOT_FOUND", `Namespace ${name} does not exist (it is ${record.state}).`, { namespace: name });
      const removing: NamespaceRecord = { ...record, state: "removing" };
      const removingBytes = encodeRecord(removing);
      const deleted: DeletedNamespaceRecord = { namespaceId: record.namespaceId, name, deletedAtMs: this.nowMs() };
      try {
        await this.store.sequence(
          [{ kind: "equals", key, value: bytes }],
          [{ kind: "put", key, value: removingBytes }, { kind: "put", key: this.keys.deletedNamespace(record.namespaceId), value: encodeRecord(deleted) }],
        );
      } catch (error) {
        if (isOvsError(error, "ASSERT_FAILED")) continue;
        throw error;
      }
      await this.finishRemoval(removing, removingBytes);
      return;
    }
    throw new OvsError("CONFLICT", `Could not delete namespace ${name}: too many concurrent changes.`);
  }

  /** Deleted namespaces whose fragments garbage collection has not removed yet. */
  async listDeletedNamespaces(): Promise<DeletedNamespaceRecord[]> {
    return (await this.listRecords(this.keys.deletedNamespacePrefix)).map(({ key, value }) =>
      decodeRecord<DeletedNamespaceRecord>(value, key, (record) => {
        if (!Number.isSafeInteger(record.namespaceId)) throw new Error("namespaceId");
      }),
    );
  }

  /** Called by garbage collection once every fragment of a deleted namespace is gone. */
  async forgetDeletedNamespace(namespaceId: number): Promise<void> {
    await this.store.delete(this.keys.deletedNamespace(namespaceId));
  }

  private async finishRemoval(record: NamespaceRecord, recordBytes: Buffer): Promise<void> {
    const nsm = await this.nsm(record.nsmId);
    await nsm.dropNamespace(record.namespaceId);
    const key = this.keys.namespace(record.name);
    const nsmKey = this.keys.nsm(record.nsmId);
    for (let attempt = 0; attempt < casRetriesMax; attempt++) {
      const nsmBytes = await this.store.get(nsmKey);
      const asserts = [{ kind: "equals" as const, key, value: recordBytes }];
      const operations: Array<{ kind: "delete"; key: string } | { kind: "put"; key: string; value: Buffer }> = [{ kind: "delete", key }];
      if (nsmBytes !== undefined) {
        const nsmRecord = decodeRecord<NsmRecord>(nsmBytes, nsmKey, checkNsmRecord);
        asserts.push({ kind: "equals", key: nsmKey, value: nsmBytes });
        operations.push({ kind: "put", key: nsmKey, value: encodeRecord({ ...nsmRecord, namespaceCount: Math.max(0, nsmRecord.namespaceCount - 1) }) });
      }
      try {
        await this.store.sequence(asserts, operations);
        return;
      } catch (error) {
        if (!isOvsError(error, "ASSERT_FAILED")) throw error;
        if (!(await this.store.exists(key))) return; // someone else finished it
      }
    }
    throw new OvsError("CONFLICT", `Could not finish removing namespace ${record.name}: too many concurrent changes.`);
  }

  // ---- Helpers -------------------------------------------------------------------------------------

  /** Read-modify-write of one JSON record with an asserted commit; `change` returning undefined leaves it. */
  private async updateRecord<T extends object>(key: string, check: (record: T) => void, change: (old: T | undefined) => T | undefined): Promise<T> {
    for (let attempt = 0; attempt < casRetriesMax; attempt++) {
      const bytes = await this.store.get(key);
      const old = bytes === undefined ? undefined : decodeRecord<T>(bytes, key, check);
      const next = change(old);
      if (next === undefined) return old as T;
      if (await this.store.testAndSet(key, bytes, encodeRecord(next))) return next;
    }
    throw new OvsError("CONFLICT", `Could not update ${key}: too many concurrent changes.`, { key });
  }

  private async listRecords(prefix: string): Promise<Array<{ key: string; value: Buffer }>> {
    const entries: Array<{ key: string; value: Buffer }> = [];
    let after: string | undefined;
    for (;;) {
      const page = await this.store.prefix(prefix, { limit: rangeLimitMax, ...(after === undefined ? {} : { after }) });
      entries.push(...page.entries);
      if (!page.more || page.entries.length === 0) return entries;
      after = page.entries[page.entries.length - 1]!.key;
    }
  }
}
