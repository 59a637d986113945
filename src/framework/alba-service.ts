// AlbaService: the ALBA backend of a node, wired: the local ASD processes (AsdSupervisor), the manager on
// the cluster store, the AlbaBackend client that serves the vDisks, and the MaintenanceAgent running in
// this process (AlbaBackend.onBadFragment → agent.reportBadFragment). It also holds what the
// /api/v1/alba routes need: ASDs (local, registered and discovered), presets, namespaces, objects with
// their manifests, maintenance. Imported by node.ts and alba-api.ts.
//
// start(): ASDs up → manager → agent → backend → claim the local ASDs (those not registered at their
// address yet) → the default preset (DESIGN.md §6) if absent → maintenance loop. stop(): maintenance,
// then (after the caller synced the vDisks) the backend, then the ASD children.
// Invariants: a local ASD is claimed by this backend or the node does not start (CONFLICT); a discovered
// (added) ASD is only claimed on request; bad input changes nothing (checked before any write).
// Limits: object listings are paged (objectPageMax); discovered ASDs are bounded by discoveredAsdsMax.

import { OvsError, isOvsError, type Logger } from "../base/index.js";
import { rangeLimitMax, type ClusterStore } from "../store/index.js";
import {
  AlbaBackend, AlbaManager, AsdClient, MaintenanceAgent, singleNodePreset, validatePreset, checkAsdId,
  type AsdRecord, type Manifest, type MaintenanceStatus, type PresetRecord, type VerifyReport,
} from "../alba/index.js";
import { AsdSupervisor, type AsdCommand, type LocalAsdInfo } from "./asd-supervisor.js";

export const defaultPresetName = "default";
export const objectPageMax = 1000;
export const discoveredAsdsMax = 1024;
/** A drain fails after this many maintenance passes in a row that moved none of the ASD's fragments. */
export const drainStallPassesMax = 3;

/** The result of a decommission task: the ASD drained. */
export interface DrainReport {
  asdId: string;
  /** Fragments the ASD held when the drain started (all moved away). */
  fragmentsMoved: number;
  remainingFragments: number;
  /** Maintenance passes run. */
  passes: number;
  durationMs: number;
}
/** Cluster-store prefix of ASDs added by address but not claimed (docs/formats/asd-layout.md). */
export const discoveredPrefix = "ovs/alba-discovered/";

export interface AlbaServiceOptions {
  dataDir: string;
  store: ClusterStore;
  nodeId: string;
  log: Logger;
  asdCommand: AsdCommand;
  asdCount?: number;
  asdCapacityBytes?: number;
  /** Maintenance pass interval (default: the agent's, 60 s). */
  maintenancePassIntervalMs?: number;
}

export interface AsdView {
  asdId: string;
  host: string;
  port: number;
  nodeId: string;
  /** claimed / decommissioned (registry), or available (added, not claimed). */
  state: "claimed" | "decommissioned" | "available";
  /** Maintenance's view: ok, unreachable, failed, decommissioned, unknown. */
  health: string;
  capacityBytes: number;
  usedBytes: number;
  /** Local ASDs of this node: the child process. */
  local?: { index: number; dir: string; pid: number | null; process: string; restarts: number; lastExit: string | null };
}

export interface ObjectSummary {
  name: string;
  sizeBytes: number;
  objectId: string;
  policy: { k: number; m: number; c: number; x: number };
  policyIndex: number;
  chunkCount: number;
  fragmentCount: number;
  holeCount: number;
  /** Below full redundancy: not the preset's best policy, holes, or fragments on ASDs not claimed and answering. */
  degraded: boolean;
}

/** Where one fragment of an object is (GET /api/v1/alba/namespaces/{ns}/objects/{name}). */
export type FragmentLocation =
  | { chunkIndex: number; fragmentIndex: number; hole: true }
  | {
      chunkIndex: number; fragmentIndex: number; kind: "data" | "parity"; asdId: string; version: number; packedSizeBytes: number; checksumValue: number;
      /** host:port from the registry; null when the ASD is not registered. */
      address: string | null; nodeId: string | null; asdState: string;
      /** The ASD's directory when it is one of this node's local ASDs. */
      localDir: string | null;
    };

interface DiscoveredRecord {
  asdId: string;
  host: string;
  port: number;
  nodeId: string;
  addedAtMs: number;
}

export class AlbaService {
  supervisor: AsdSupervisor | undefined;
  manager: AlbaManager | undefined;
  backend: AlbaBackend | undefined;
  agent: MaintenanceAgent | undefined;

  constructor(private readonly options: AlbaServiceOptions) {}

  async start(): Promise<AlbaBackend> {
    const { log, store } = this.options;
    this.supervisor = await AsdSupervisor.open({
      dataDir: this.options.dataDir, count: this.options.asdCount, command: this.options.asdCommand, log, capacityBytes: this.options.asdCapacityBytes,
      onAddressChanged: (asd) => void this.claimLocal(asd).catch((error: unknown) => log.error({ err: error, asd: asd.index }, "re-registering a moved local ASD failed")),
    });
    await this.supervisor.start();
    this.manager = await AlbaManager.open({ store });
    const secret = this.supervisor.clusterSecret;
    this.agent = new MaintenanceAgent({ manager: this.manager, clusterSecret: secret, logger: log, passIntervalMs: this.options.maintenancePassIntervalMs });
    const agent = this.agent;
    this.backend = await AlbaBackend.open({ manager: this.manager, clusterSecret: secret, logger: log, onBadFragment: (report) => agent.reportBadFragment(report) });
    for (const asd of this.supervisor.list()) await this.claimLocal(asd);
    if ((await this.manager.getPreset(defaultPresetName)) === undefined) {
      try {
        await this.manager.createPreset(singleNodePreset(defaultPresetName));
      } catch (error) {
        if (!isOvsError(error, "ALREADY_EXISTS")) throw error; // another node made it meanwhile
      }
    }
    await this.backend.refresh();
    this.agent.start();
    return this.backend;
  }

  /** Claims a local ASD unless the registry already has it at this address (a decommissioned one stays so). */
  private async claimLocal(asd: LocalAsdInfo): Promise<void> {
    if (asd.asdId === null) return;
    const record = await this.manager!.getAsd(asd.asdId);
    if (record !== undefined && (record.state === "decommissioned" || (record.host === asd.host && record.port === asd.port))) return;
    await this.backend!.claimAsd({ host: asd.host, port: asd.port, nodeId: this.options.nodeId }, this.supervisor!.clusterSecret);
  }

  /** Stops maintenance (first, so that nothing it does races the vDisks' last uploads). */
  async stopMaintenance(): Promise<void> {
    await this.agent?.close();
  }

  /** Closes the client, then stops the ASD children. */
  async stop(): Promise<void> {
    const { log } = this.options;
    await this.agent?.close();
    try {
      await this.backend?.close();
    } catch (error) {
      log.error({ err: error }, "closing the ALBA client failed");
    }
    await this.supervisor?.stop();
  }

  /** The cluster secret of the local ASDs (for the health check's and the metrics' ASD probes). */
  get clusterSecret(): string | undefined {
    return this.supervisor?.clusterSecret;
  }

  description(): string {
    return this.backend?.description ?? "alba";
  }

  localAsds(): LocalAsdInfo[] {
    return this.supervisor?.list() ?? [];
  }

  // ---- ASDs ----------------------------------------------------------------------------------------

  async listAsds(): Promise<AsdView[]> {
    const manager = this.ready();
    const status = this.agent!.status();
    const health = new Map(status.asds.map((asd) => [asd.asdId, asd]));
    const local = new Map(this.localAsds().filter((asd) => asd.asdId !== null).map((asd) => [asd.asdId!, asd]));
    const views: AsdView[] = (await manager.listAsds()).map((record) => this.view(record, health.get(record.asdId)?.health ?? "unknown", local.get(record.asdId)));
    const known = new Set(views.map((view) => view.asdId));
    for (const discovered of await this.listDiscovered()) {
      if (known.has(discovered.asdId)) continue;
      views.push({ asdId: discovered.asdId, host: discovered.host, port: discovered.port, nodeId: discovered.nodeId, state: "available", health: "unknown", capacityBytes: 0, usedBytes: 0 });
    }
    for (const view of views) {
      const usage = health.get(view.asdId);
      if (usage?.capacityBytes !== undefined) view.capacityBytes = usage.capacityBytes;
      if (usage?.usedBytes !== undefined) view.usedBytes = usage.usedBytes;
    }
    return views.sort((a, b) => (a.nodeId === b.nodeId ? (a.asdId < b.asdId ? -1 : 1) : a.nodeId < b.nodeId ? -1 : 1));
  }

  private view(record: AsdRecord, health: string, local: LocalAsdInfo | undefined): AsdView {
    const view: AsdView = {
      asdId: record.asdId, host: record.host, port: record.port, nodeId: record.nodeId, state: record.state, health, capacityBytes: record.capacityBytes, usedBytes: record.usedBytes,
    };
    if (local !== undefined) view.local = { index: local.index, dir: local.dir, pid: local.pid, process: local.state, restarts: local.restarts, lastExit: local.lastExit };
    return view;
  }

  /**
   * Adds an ASD by address: connects with the cluster secret, learns its id and records it as available
   * (not claimed). CONFLICT if another backend claimed it; UNAVAILABLE if it cannot be reached.
   */
  async addAsd(host: string, port: number, nodeId: string | undefined): Promise<AsdView> {
    const manager = this.ready();
    let client: AsdClient;
    try {
      client = await AsdClient.connect({ host, port, clusterSecret: this.supervisor!.clusterSecret, backendId: manager.backendId, reconnect: false, connectTimeoutMs: 5_000 });
    } catch (error) {
      if (isOvsError(error, "CONFLICT")) throw new OvsError("CONFLICT", `The ASD at ${host}:${port} is claimed by another backend.`);
      const reason = (error as Error).message.replace(/\.$/, "");
      throw new OvsError("UNAVAILABLE", `No ASD with this backend's cluster secret answers at ${host}:${port} (${reason}).`);
    }
    try {
      const asdId = client.asdId;
      const usage = await client.diskUsage();
      const existing = await manager.getAsd(asdId);
      if (existing !== undefined) throw new OvsError("ALREADY_EXISTS", `ASD ${asdId} at ${host}:${port} is already ${existing.state} by this backend.`);
      if ((await this.listDiscovered()).length >= discoveredAsdsMax) throw new OvsError("NO_SPACE", `At most ${discoveredAsdsMax} ASDs can wait to be claimed.`);
      const record: DiscoveredRecord = { asdId, host, port, nodeId: nodeId ?? `${host}:${port}`, addedAtMs: Date.now() };
      await this.options.store.put(discoveredPrefix + asdId, Buffer.from(JSON.stringify(record)));
      return { asdId, host, port, nodeId: record.nodeId, state: "available", health: "unknown", capacityBytes: usage.totalBytes, usedBytes: usage.usedBytes };
    } finally {
      await client.close();
    }
  }

  /** Claims an added ASD for this backend (it then gets fragments). */
  async claimAsd(asdId: string): Promise<AsdView> {
    checkAsdId(asdId);
    const manager = this.ready();
    const existing = await manager.getAsd(asdId);
    if (existing !== undefined) throw new OvsError("ALREADY_EXISTS", `ASD ${asdId} is already ${existing.state} by this backend.`);
    const bytes = await this.options.store.get(discoveredPrefix + asdId);
    if (bytes === undefined) throw new OvsError("NOT_FOUND", `No ASD ${asdId} was added; add it first with its address (ovs alba asd add HOST:PORT).`);
    const discovered = JSON.parse(bytes.toString("utf8")) as DiscoveredRecord;
    const record = await this.backend!.claimAsd({ host: discovered.host, port: discovered.port, nodeId: discovered.nodeId }, this.supervisor!.clusterSecret);
    await this.options.store.delete(discoveredPrefix + asdId);
    await this.agent!.probe().catch(() => undefined);
    return this.view(record, "ok", undefined);
  }

  /**
   * Refuses what decommissionAsd() would (INVALID_ARGUMENT, UNAVAILABLE, NOT_FOUND, CONFLICT when already
   * decommissioned), so that the API answers at once, before anything changes or a task starts.
   */
  async checkDecommission(asdId: string): Promise<void> {
    checkAsdId(asdId);
    const manager = this.ready();
    const existing = await manager.getAsd(asdId);
    if (existing === undefined) throw new OvsError("NOT_FOUND", `No ASD ${asdId} is claimed by this backend.`);
    if (existing.state === "decommissioned") throw new OvsError("CONFLICT", `ASD ${asdId} is already decommissioned.`);
  }

  /**
   * Marks an ASD decommissioned at once (no new fragments); drainAsd() then moves its fragments away (the
   * maintenance loop also repairs fragments on decommissioned ASDs, so a drain cut short goes on).
   */
  async decommissionAsd(asdId: string): Promise<AsdView> {
    await this.checkDecommission(asdId);
    const record = await this.manager!.decommissionAsd(asdId);
    await this.backend!.refresh();
    return this.view(record, "decommissioned", this.localAsds().find((asd) => asd.asdId === asdId));
  }

  /**
   * Drains a decommissioned ASD: maintenance passes (probe, repair, count) until no manifest places a
   * fragment on it. `onProgress` hears fragments moved of those it held at the start; `signal` stops it
   * between passes (CONFLICT "cancelled"; maintenance goes on draining). Fails with UNAVAILABLE after
   * drainStallPassesMax passes that moved nothing (no other ASD can take the fragments).
   */
  async drainAsd(asdId: string, options: { signal?: AbortSignal; onProgress?: (done: number, total: number, detail: string) => void } = {}): Promise<DrainReport> {
    this.ready();
    const agent = this.agent!;
    const startedMs = Date.now();
    const initial = await agent.fragmentsOn(asdId);
    let total = initial;
    let remaining = initial;
    let passes = 0;
    let stalled = 0;
    options.onProgress?.(0, total, `${remaining} fragments to move`);
    while (remaining > 0) {
      if (options.signal?.aborted) throw new OvsError("CONFLICT", `the drain of ASD ${asdId} was cancelled with ${remaining} fragments left; maintenance goes on moving them.`);
      passes++;
      const summary = await agent.decommission(asdId);
      total = Math.max(total, summary.remainingFragments);
      stalled = summary.remainingFragments < remaining ? 0 : stalled + 1;
      remaining = summary.remainingFragments;
      options.onProgress?.(total - remaining, total, `pass ${passes}: ${remaining} fragments left`);
      if (remaining > 0 && stalled >= drainStallPassesMax) {
        throw new OvsError("UNAVAILABLE", `${remaining} fragments of ASD ${asdId} could not be moved in ${drainStallPassesMax} passes (no other ASD can take them?); maintenance keeps trying (ovs alba maintenance status).`);
      }
    }
    this.options.log.info({ asdId, fragmentsMoved: total, passes }, "alba: ASD drained");
    return { asdId, fragmentsMoved: total, remainingFragments: 0, passes, durationMs: Date.now() - startedMs };
  }

  private async listDiscovered(): Promise<DiscoveredRecord[]> {
    const page = await this.options.store.prefix(discoveredPrefix, { limit: Math.min(rangeLimitMax, discoveredAsdsMax) });
    return page.entries.map((entry) => JSON.parse(entry.value.toString("utf8")) as DiscoveredRecord);
  }

  // ---- Presets -------------------------------------------------------------------------------------

  async listPresets(): Promise<Array<PresetRecord & { isDefault: boolean }>> {
    const manager = this.ready();
    const defaultName = await manager.defaultPresetName();
    return (await manager.listPresets()).map((preset) => ({ ...redact(preset), isDefault: preset.name === defaultName }));
  }

  async addPreset(preset: Omit<PresetRecord, "version">): Promise<PresetRecord> {
    const manager = this.ready();
    validatePreset({ ...preset, version: 1 });
    return redact(await manager.createPreset(preset));
  }

  // ---- Namespaces and objects ----------------------------------------------------------------------

  async listNamespaces(): Promise<Array<{ name: string; namespaceId: number; presetName: string; nsmId: string; createdAtMs: number }>> {
    const manager = this.ready();
    const out: Array<{ name: string; namespaceId: number; presetName: string; nsmId: string; createdAtMs: number }> = [];
    let after: string | undefined;
    for (;;) {
      const page = await manager.listNamespaces({ prefix: "", after, limit: rangeLimitMax });
      for (const record of page.records) out.push({ name: record.name, namespaceId: record.namespaceId, presetName: record.presetName, nsmId: record.nsmId, createdAtMs: record.createdAtMs });
      if (!page.more || page.records.length === 0) return out;
      after = page.records.at(-1)!.name;
    }
  }

  async listObjects(namespace: string, options: { after?: string; limit: number }): Promise<{ objects: ObjectSummary[]; more: boolean }> {
    const manager = this.ready();
    const record = await manager.getNamespace(namespace);
    if (record === undefined) throw new OvsError("NOT_FOUND", `There is no namespace ${namespace}.`);
    const nsm = await manager.nsm(record.nsmId);
    const page = await nsm.listNames(record.namespaceId, { prefix: "", after: options.after, limit: options.limit });
    const presets = new Map((await manager.listPresets()).map((preset) => [preset.name, preset]));
    const claimed = await this.healthyAsds();
    const objects: ObjectSummary[] = [];
    for (let start = 0; start < page.names.length; start += 128) {
      const reads = await nsm.getManifests(record.namespaceId, page.names.slice(start, start + 128));
      for (const read of reads) if (read !== undefined) objects.push(summarize(read.manifest, presets.get(read.manifest.presetName), claimed));
    }
    return { objects, more: page.more };
  }

  /** An object's manifest with, per fragment, where it is (ASD address, node, local directory). */
  async objectManifest(namespace: string, name: string): Promise<{ summary: ObjectSummary; manifest: Manifest; fragments: FragmentLocation[] }> {
    const manager = this.ready();
    const record = await manager.getNamespace(namespace);
    if (record === undefined) throw new OvsError("NOT_FOUND", `There is no namespace ${namespace}.`);
    const nsm = await manager.nsm(record.nsmId);
    const read = await nsm.getManifest(record.namespaceId, name);
    if (read === undefined) throw new OvsError("NOT_FOUND", `There is no object ${name} in namespace ${namespace}.`);
    const asds = new Map((await manager.listAsds()).map((asd) => [asd.asdId, asd]));
    const local = new Map(this.localAsds().filter((asd) => asd.asdId !== null).map((asd) => [asd.asdId!, asd]));
    const fragments: FragmentLocation[] = [];
    read.manifest.chunks.forEach((chunk, chunkIndex) =>
      chunk.fragments.forEach((fragment, fragmentIndex) => {
        if (fragment === undefined) {
          fragments.push({ chunkIndex, fragmentIndex, hole: true });
          return;
        }
        const asd = asds.get(fragment.asdId);
        fragments.push({
          chunkIndex, fragmentIndex, kind: fragmentIndex < read.manifest.policy.k ? "data" : "parity", asdId: fragment.asdId, version: fragment.version,
          packedSizeBytes: fragment.packedSizeBytes, checksumValue: fragment.checksumValue,
          address: asd === undefined ? null : `${asd.host}:${asd.port}`, nodeId: asd?.nodeId ?? null, asdState: asd?.state ?? "unregistered",
          localDir: local.get(fragment.asdId)?.dir ?? null,
        });
      }),
    );
    const claimed = await this.healthyAsds();
    return { summary: summarize(read.manifest, (await manager.getPreset(read.manifest.presetName)) ?? undefined, claimed), manifest: read.manifest, fragments };
  }

  /** ASDs claimed (not decommissioned) that maintenance last saw answering. */
  private async healthyAsds(): Promise<Set<string>> {
    const health = new Map(this.agent!.status().asds.map((asd) => [asd.asdId, asd.health]));
    return new Set((await this.manager!.listAsds()).filter((asd) => asd.state === "claimed" && health.get(asd.asdId) === "ok").map((asd) => asd.asdId));
  }

  // ---- Maintenance ---------------------------------------------------------------------------------

  maintenanceStatus(): MaintenanceStatus {
    this.ready();
    return this.agent!.status();
  }

  /** Runs one maintenance pass now (probe, repair, verifies, GC, rebalance) and returns the status. */
  async runMaintenancePass(options: Parameters<MaintenanceAgent["runPass"]>[0] = {}): Promise<MaintenanceStatus> {
    this.ready();
    await this.agent!.runPass(options);
    return this.agent!.status();
  }

  /** NOT_FOUND unless the namespace exists (UNAVAILABLE without the ALBA backend). */
  async requireNamespace(namespace: string): Promise<void> {
    const manager = this.ready();
    if ((await manager.getNamespace(namespace)) === undefined) throw new OvsError("NOT_FOUND", `There is no namespace ${namespace}.`);
  }

  async verifyNamespace(namespace: string, options: Parameters<MaintenanceAgent["verifyNamespace"]>[1] = {}): Promise<VerifyReport> {
    await this.requireNamespace(namespace);
    return this.agent!.verifyNamespace(namespace, options);
  }

  /** Makes sure the backend runs here (UNAVAILABLE otherwise), before a task is started for it. */
  requireReady(): void {
    this.ready();
  }

  private ready(): AlbaManager {
    if (this.manager === undefined || this.agent === undefined || this.backend === undefined) throw new OvsError("UNAVAILABLE", "The ALBA backend is not running on this node.");
    return this.manager;
  }
}

function redact(preset: PresetRecord): PresetRecord {
  const copy = { ...preset };
  if (copy.encryptionKeyHex !== undefined) copy.encryptionKeyHex = "(set)";
  return copy;
}

function summarize(manifest: Manifest, preset: PresetRecord | undefined, claimed: ReadonlySet<string>): ObjectSummary {
  let fragmentCount = 0;
  let holeCount = 0;
  let offClaimed = 0;
  for (const chunk of manifest.chunks) {
    for (const fragment of chunk.fragments) {
      if (fragment === undefined) holeCount++;
      else {
        fragmentCount++;
        if (!claimed.has(fragment.asdId)) offClaimed++;
      }
    }
  }
  const best = preset?.policies[0];
  const atBest = manifest.policyIndex === 0 || (best !== undefined && best.k === manifest.policy.k && best.m === manifest.policy.m);
  return {
    name: manifest.name, sizeBytes: manifest.sizeBytes, objectId: manifest.objectId, policy: { ...manifest.policy }, policyIndex: manifest.policyIndex,
    chunkCount: manifest.chunks.length, fragmentCount, holeCount, degraded: holeCount > 0 || offClaimed > 0 || !atBest,
  };
}
