// The vDisk lifecycle on one node: the registry of vDisks in the cluster store (key ovs/vdisks/<name>,
// docs/formats/vdisk-registry.md), their volumes under <dataDir>/volumes/<id>, and their NBD exports.
//
// Invariants:
// - A registry record exists for every volume the node serves; a record marked `deleting` is finished
//   (namespace and local data removed, record deleted) at the next start, so a crash during a delete
//   never leaves a half-deleted vDisk that looks alive.
// - Operations on one vDisk are serialised (a per-name lock), so create/resize/delete never interleave.
// - Bad input (name, size) is refused with INVALID_ARGUMENT before anything changes.

import fsp from "node:fs/promises";
import path from "node:path";
import { randomUUID } from "node:crypto";
import { OvsError, formatBytes, type Logger } from "../base/index.js";
import type { ClusterStore } from "../store/index.js";
import type { ObjectBackend } from "../backend/index.js";
import { Volume, defaultVolumeSettings, validateConfig, type VolumeConfig } from "../volume/index.js";
import { VolumeExport, type NbdExport, type NbdExportProvider } from "../frontend/index.js";
import type { NodeMetrics } from "./metrics/metrics.js";

export interface VDiskRecord {
  id: string;
  name: string;
  /** The node that owns and serves it (its data is in that node's data dir and backend). */
  nodeId: string;
  namespace: string;
  sizeBytes: number;
  createdAt: string;
  deleting?: boolean;
}

export interface VDiskInfo extends VDiskRecord {
  size: string;
  connectionCount: number;
  stats: ReturnType<Volume["stats"]>;
}

const registryPrefix = "ovs/vdisks/";
export const vdiskNameMaxBytes = 64;
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
}

export class VDiskService implements NbdExportProvider {
  private readonly served = new Map<string, Served>();
  private readonly locks = new Map<string, Promise<void>>();
  /** Called to cut NBD connections of a vDisk deleted by force. */
  disconnect: (name: string) => void = () => undefined;

  constructor(
    private readonly options: { dataDir: string; nodeId: string; store: ClusterStore; backend: ObjectBackend; log: Logger; metrics?: NodeMetrics },
  ) {
    options.metrics?.setScrapeSource((name) => {
      const served = this.served.get(name);
      return served && { stats: served.volume.stats(), sizeBytes: served.volume.sizeBytes, connectionCount: served.nbdExport.connectionCount };
    });
  }

  private serve(record: VDiskRecord, volume: Volume): void {
    const nbdExport = new VolumeExport(volume);
    this.served.set(record.name, { record, volume, nbdExport, served: this.options.metrics?.meter(nbdExport) ?? nbdExport });
  }

  /** Opens every registered vDisk (local restart) and finishes interrupted deletes. */
  async start(): Promise<void> {
    for (const record of await this.records()) {
      if (record.nodeId !== this.options.nodeId) continue; // another node's vDisk
      if (record.deleting) {
        await this.finishDelete(record);
        continue;
      }
      const volume = await Volume.open({ dir: this.volumeDir(record), backend: this.options.backend, log: this.options.log });
      this.serve(record, volume);
      this.options.log.info({ vdisk: record.name }, "vDisk started");
    }
  }

  async stop(): Promise<void> {
    for (const served of this.served.values()) {
      try {
        await served.volume.close();
      } catch (error) {
        this.options.log.error({ err: error, vdisk: served.record.name }, "closing a vDisk failed");
      }
    }
    this.served.clear();
  }

  /** settings.scoCacheMaxBytes: a per-vDisk cap on local SCO bytes (0 = none; the default). */
  async create(name: string, sizeBytes: number, settings: { scoCacheMaxBytes?: number } = {}): Promise<VDiskInfo> {
    validateVDiskName(name);
    const id = randomUUID();
    const config: VolumeConfig = { id, name, namespace: `vdisk-${id}`, sizeBytes, createdAt: new Date().toISOString(), ...defaultVolumeSettings() };
    if (settings.scoCacheMaxBytes !== undefined) config.scoCacheMaxBytes = settings.scoCacheMaxBytes;
    validateConfig(config);
    return this.withLock(name, async () => {
      const existing = await this.options.store.get(registryPrefix + name);
      if (this.served.has(name) || existing !== undefined) {
        const owner = existing === undefined ? this.options.nodeId : (JSON.parse(existing.toString("utf8")) as VDiskRecord).nodeId;
        throw new OvsError("ALREADY_EXISTS", `a vDisk named ${name} already exists${owner === this.options.nodeId ? "" : ` (on node ${owner})`}.`);
      }
      const record: VDiskRecord = { id, name, nodeId: this.options.nodeId, namespace: config.namespace, sizeBytes, createdAt: config.createdAt };
      const volume = await Volume.create({ dir: this.volumeDir(record), backend: this.options.backend, config, log: this.options.log });
      try {
        await this.options.store.sequence([{ kind: "absent", key: registryPrefix + name }], [{ kind: "put", key: registryPrefix + name, value: encode(record) }]);
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
    return {
      ...served.record,
      sizeBytes: served.volume.sizeBytes,
      size: formatBytes(served.volume.sizeBytes),
      connectionCount: served.nbdExport.connectionCount,
      stats: served.volume.stats(),
    };
  }

  async resize(name: string, sizeBytes: number): Promise<VDiskInfo> {
    return this.withLock(name, async () => {
      const served = this.get(name);
      await served.volume.resize(sizeBytes);
      served.record = { ...served.record, sizeBytes };
      await this.options.store.put(registryPrefix + name, encode(served.record));
      this.options.log.info({ vdisk: name, sizeBytes }, "vDisk resized");
      return this.info(name);
    });
  }

  async delete(name: string, force: boolean): Promise<void> {
    await this.withLock(name, async () => {
      const served = this.get(name);
      const connections = served.nbdExport.connectionCount;
      if (connections > 0 && !force) {
        throw new OvsError("IN_USE", `vDisk ${name} has ${connections} NBD client${connections === 1 ? "" : "s"} connected; disconnect ${connections === 1 ? "it" : "them"} or delete with --force.`);
      }
      const record = { ...served.record, deleting: true };
      await this.options.store.put(registryPrefix + name, encode(record));
      this.served.delete(name);
      this.options.metrics?.forget(name);
      if (connections > 0) this.disconnect(name);
      await served.volume.close();
      await this.finishDelete(record);
      this.options.log.info({ vdisk: name, force }, "vDisk deleted");
    });
  }

  // NbdExportProvider
  listExports(): Array<{ name: string; description?: string }> {
    return [...this.served.values()].map((s) => ({ name: s.record.name, description: s.nbdExport.description }));
  }

  openExport(name: string): NbdExport | undefined {
    return this.served.get(name)?.served;
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

function encode(record: VDiskRecord): Buffer {
  return Buffer.from(JSON.stringify(record));
}
