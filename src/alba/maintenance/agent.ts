// MaintenanceAgent: the ALBA maintenance agent (the original's `alba maintenance`), in-process in the
// node. The thin async shell around the planners (planner.ts, garbage.ts, reachability.ts, throttle.ts):
// it probes ASDs, walks namespaces and manifests on the NSM, reads and writes fragments on ASDs and
// commits manifests; every decision is made by the pure planners. Spec: docs/formats/maintenance.md.
// Imported through src/alba/maintenance/index.ts.
//
// Tasks (run one at a time; start() runs them in a loop, or call them directly):
// - probe: asks every registered ASD for its disk usage; an ASD silent for failAfterMs is failed.
// - repair: objects with holes, fragments on failed / decommissioned ASDs, or bad fragments (reported by
//   verify or by reads) are repaired least safe first: each fragment to replace is copied (when its own
//   copy is still readable and intact: decommission) or rebuilt from the others (pipeline
//   rebuildFragments), written under a higher fragment version to an ASD chosen by the placement rules,
//   and the manifest is committed with an assert on the bytes read. A concurrent overwrite or delete wins:
//   the repair is dropped and its new fragments deleted. Replaced fragments are recorded as strays.
//   Then objects stored under a fallback policy (ASDs were down at upload) are rewritten under the best
//   policy of their preset that the ASDs now hold in full, like an upload (new object id, upload record
//   first) committed with the same assert; the old object becomes garbage.
// - verifyNamespace: re-reads every fragment of every object, checks length, checksum (through the
//   pipeline: CRC32C, AES-GCM tag) and that it is the manifest's; bad ones are reported and queued.
// - collectGarbage: garbage records (abandoned or stale uploads, superseded objects, strays), deleted
//   namespaces, and orphan keys (garbage.ts).
// - rebalance: moves fragments from fuller to emptier ASDs while the fill spread passes the threshold.
// - decommission: marks the ASD decommissioned (no new fragments) and repairs its fragments away.
//
// Invariants: a manifest is only ever changed by a commit asserting the bytes read (repair and rebalance
// keep the object id and raise fragment versions; a policy upgrade is a new upload); GC deletes nothing a
// manifest read in the same pass references; a fragment the agent writes is either committed or deleted (or, after a crash, an orphan that the
// orphan scan removes); fragments are verified before they are copied or used to rebuild; one task at
// a time, and one agent per backend (running two is safe for data but wastes work).
// Throttling: bytes read and written go through a token bucket (bytesPerSecondMax).
// Buffers: nothing is handed out; fragment values read are the agent's only while one object is worked on.
// Limits: limits.ts (queue sizes, batch sizes, report sizes, retries).

import { createHash, randomBytes } from "node:crypto";
import { assert, isOvsError, OvsError, silentLogger, type Logger } from "../../base/index.js";
import { rangeLimitMax } from "../../store/index.js";
import { AsdClient, type AsdDiskUsage } from "../asd/index.js";
import { chunkSizesBytesFor, crc32c, FragmentPipeline, packedFragmentBytes, type CodingPreset } from "../coding/index.js";
import {
  encodeManifest, fragmentKey, namespaceFragmentPrefix, objectFragmentPrefix, parseFragmentKey, prefixEnd, type AlbaManager, type AsdRecord, type GcRecord,
  type Manifest, type ManifestFragment, type ManifestRead, type NamespaceRecord, type NsmStore, type PresetRecord, type StrayFragment,
} from "../manager/index.js";
import type { PlacementCandidate, RandomSource } from "../placement/index.js";
import { gcDecision, OrphanTracker } from "./garbage.js";
import { maintenanceLimits as limits } from "./limits.js";
import {
  assessManifest, fragmentId, orderRepairs, planChunkMove, planChunkTargets, rebalanceClasses, upgradePolicyIndex, type AsdFill, type AsdHealth, type RepairCandidate,
} from "./planner.js";
import { ReachabilityTracker, type AsdReachability } from "./reachability.js";
import { Throttle } from "./throttle.js";

export interface MaintenanceOptions {
  manager: AlbaManager;
  /** The ASDs' cluster secret. */
  clusterSecret?: string;
  /** An ASD silent this long is failed and repaired away (default 900 s). */
  failAfterMs?: number;
  probeIntervalMs?: number;
  passIntervalMs?: number;
  uploadGraceMs?: number;
  orphanGraceMs?: number;
  /** Fill spread (fraction) above which rebalance moves fragments (default 0.1). */
  rebalanceSpreadMax?: number;
  rebalanceMovesMax?: number;
  /** Rewrite objects stored under a fallback policy once the best one fits again (default true). */
  policyUpgradeEnabled?: boolean;
  /** Rebalance in the loop (default true). */
  rebalanceEnabled?: boolean;
  bytesPerSecondMax?: number;
  requestTimeoutMs?: number;
  random?: RandomSource;
  nowMs?: () => number;
  logger?: Logger;
}

export type MaintenanceTask = "probe" | "repair" | "verify" | "gc" | "rebalance" | "decommission";

export interface MaintenanceCounters {
  /** Objects whose repaired manifest was committed. */
  objectsRepaired: number;
  /** Fragments rebuilt from the others (repair, bad fragments). */
  fragmentsRebuilt: number;
  /** Fragments copied intact to another ASD (decommission, rebalance). */
  fragmentsCopied: number;
  /** Objects rewritten under a better policy of their preset (written under a fallback while ASDs were down). */
  objectsUpgraded: number;
  /** Repairs dropped because the object changed meanwhile (the writer wins). */
  repairsDropped: number;
  /** Fragments read and checked by verify. */
  fragmentsVerified: number;
  /** Bad fragments found by verify or reported by reads. */
  badFragmentsFound: number;
  /** Fragment keys deleted by garbage collection (records, deleted namespaces, orphans). */
  fragmentsCollected: number;
  orphansCollected: number;
  gcRecordsCollected: number;
  /** Fragments moved by rebalance. */
  fragmentsMoved: number;
  /** Reports of bad fragments not queued because the repair queue was full. */
  repairQueueOverflows: number;
}

export interface MaintenanceError {
  atMs: number;
  task: MaintenanceTask;
  message: string;
}

/** What `ovs alba maintenance status` shows. */
export interface MaintenanceStatus {
  /** The loop runs (start() called, close() not yet). */
  looping: boolean;
  current: { task: MaintenanceTask; detail: string; startedAtMs: number } | undefined;
  queued: { repairs: number; verifies: string[]; decommissions: string[] };
  asds: Array<AsdReachability & { health: AsdHealth; usedBytes: number | undefined; capacityBytes: number | undefined }>;
  counters: MaintenanceCounters;
  lastErrors: MaintenanceError[];
  /** When each task last finished (ms since the epoch). */
  lastFinishedMs: Partial<Record<MaintenanceTask, number>>;
}

/** Progress of a verify: objects checked of the namespace's, and the object being checked. */
export type VerifyProgress = (doneCount: number, totalCount: number, detail: string) => void;
/** Progress of a maintenance pass: steps done of passStepCount, and the step starting. */
export type PassProgress = (doneCount: number, totalCount: number, step: string) => void;
/** probe, repair, verify, garbage collection, rebalance. */
export const passStepCount = 5;

export interface BadFragmentReport {
  namespace: string;
  name: string;
  objectId: string;
  chunkIndex: number;
  fragmentIndex: number;
  asdId: string;
  version: number;
  reason: string;
}

export interface VerifyReport {
  namespace: string;
  objectCount: number;
  fragmentsChecked: number;
  /** Bad fragments (first verifyReportBadMax); all of them are counted and queued for repair. */
  bad: BadFragmentReport[];
  badCount: number;
  /** Fragments whose ASD did not return them (absent key, or unreachable ASD). */
  missingCount: number;
  unavailableCount: number;
  /** Holes in manifests. */
  holeCount: number;
}

export interface RepairSummary {
  objectsRepaired: number;
  /** Objects rewritten under a better policy (after the repairs). */
  objectsUpgraded: number;
  fragmentsRebuilt: number;
  fragmentsCopied: number;
  dropped: number;
  /** Objects that still need repair after this pass (no target, not enough sources, errors). */
  remaining: number;
}

export interface GcSummary {
  recordsCollected: number;
  recordsWaiting: number;
  fragmentsDeleted: number;
  orphansDeleted: number;
  namespacesPurged: number;
}

export interface RebalanceSummary {
  spreadBefore: number;
  moved: number;
}

export interface DrainSummary {
  asdId: string;
  /** Fragments still referenced on the ASD after the drain (0 when drained). */
  remainingFragments: number;
}

interface NamespaceContext {
  record: NamespaceRecord;
  nsm: NsmStore;
}

type FetchResult = { status: "ok"; value: Buffer } | { status: "bad"; reason: string } | { status: "missing" } | { status: "unavailable"; reason: string };

interface FragmentChange {
  fragmentIndex: number;
  fragment: ManifestFragment;
  copied: boolean;
}

export class MaintenanceAgent {
  readonly manager: AlbaManager;
  private readonly logger: Logger;
  private readonly nowMs: () => number;
  private readonly random: RandomSource;
  private readonly settings: {
    clusterSecret: string; probeIntervalMs: number; passIntervalMs: number; uploadGraceMs: number; rebalanceSpreadMax: number; rebalanceMovesMax: number;
    rebalanceEnabled: boolean; policyUpgradeEnabled: boolean; requestTimeoutMs: number;
  };
  private readonly tracker: ReachabilityTracker;
  private readonly throttle: Throttle;
  private readonly orphans: OrphanTracker;
  private records = new Map<string, AsdRecord>();
  private readonly usage = new Map<string, AsdDiskUsage>();
  private readonly clients = new Map<string, AsdClient>();
  private readonly presets = new Map<string, PresetRecord>();
  private readonly pipelines = new Map<string, FragmentPipeline>();
  /** Objects reported bad (by name; with the object id when known, so an overwrite makes the report void). */
  private readonly repairQueue = new Map<string, { namespace: string; name: string; objectId: string | undefined; bad: Set<string> }>();
  private readonly verifyQueue: string[] = [];
  private readonly draining = new Set<string>();
  private readonly counters: MaintenanceCounters = {
    objectsRepaired: 0, objectsUpgraded: 0, fragmentsRebuilt: 0, fragmentsCopied: 0, repairsDropped: 0, fragmentsVerified: 0, badFragmentsFound: 0, fragmentsCollected: 0,
    orphansCollected: 0, gcRecordsCollected: 0, fragmentsMoved: 0, repairQueueOverflows: 0,
  };
  private readonly lastErrors: MaintenanceError[] = [];
  private readonly lastFinishedMs: Partial<Record<MaintenanceTask, number>> = {};
  private current: MaintenanceStatus["current"];
  private chain: Promise<unknown> = Promise.resolve();
  private loop: Promise<void> | undefined;
  private looping = false;
  private wakeLoop: (() => void) | undefined;
  private closed = false;
  private probed = false;

  constructor(options: MaintenanceOptions) {
    this.manager = options.manager;
    this.logger = options.logger ?? silentLogger();
    this.nowMs = options.nowMs ?? Date.now;
    this.random = options.random ?? Math.random;
    this.settings = {
      clusterSecret: options.clusterSecret ?? "",
      probeIntervalMs: options.probeIntervalMs ?? limits.probeIntervalMsDefault,
      passIntervalMs: options.passIntervalMs ?? limits.passIntervalMsDefault,
      uploadGraceMs: options.uploadGraceMs ?? limits.uploadGraceMsDefault,
      rebalanceSpreadMax: options.rebalanceSpreadMax ?? limits.rebalanceSpreadMaxDefault,
      rebalanceMovesMax: options.rebalanceMovesMax ?? limits.rebalanceMovesMaxDefault,
      rebalanceEnabled: options.rebalanceEnabled ?? true,
      policyUpgradeEnabled: options.policyUpgradeEnabled ?? true,
      requestTimeoutMs: options.requestTimeoutMs ?? limits.requestTimeoutMsDefault,
    };
    this.tracker = new ReachabilityTracker(options.failAfterMs ?? limits.failAfterMsDefault);
    this.throttle = new Throttle(options.bytesPerSecondMax ?? limits.bytesPerSecondMaxDefault);
    this.orphans = new OrphanTracker(options.orphanGraceMs ?? limits.orphanGraceMsDefault, limits.orphanTrackedMax);
  }

  // ---- Loop ----------------------------------------------------------------------------------------

  /** Runs probe every probeIntervalMs and a full pass every passIntervalMs until close(). */
  start(): void {
    this.checkOpen();
    if (this.loop !== undefined) return;
    this.looping = true;
    this.loop = (async () => {
      let nextPassMs = 0;
      while (!this.closed) {
        try {
          if (this.nowMs() >= nextPassMs) {
            await this.runPass();
            nextPassMs = this.nowMs() + this.settings.passIntervalMs;
          } else {
            await this.probe();
          }
        } catch (error) {
          if (this.closed) break;
          this.logger.warn({ err: error }, "alba maintenance: a task failed; continuing");
        }
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, Math.min(this.settings.probeIntervalMs, Math.max(0, nextPassMs - this.nowMs())));
          this.wakeLoop = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.wakeLoop = undefined;
      }
    })();
  }

  /**
   * One pass: probe, queued repairs and a repair scan, queued verifies, garbage collection, rebalance.
   * `onProgress` hears each step as it starts (done steps of passStepCount, and its name); `signal`
   * stops the pass between steps (CONFLICT "cancelled").
   */
  async runPass(options: { onProgress?: PassProgress; signal?: AbortSignal } = {}): Promise<void> {
    let step = 0;
    const next = (name: string): void => {
      if (options.signal?.aborted) throw new OvsError("CONFLICT", "the maintenance pass was cancelled.");
      options.onProgress?.(step++, passStepCount, name);
    };
    next("probe");
    await this.probe();
    next("repair");
    await this.repair();
    next("verify");
    while (this.verifyQueue.length > 0 && !this.closed) {
      const namespace = this.verifyQueue[0]!;
      try {
        await this.verifyNamespace(namespace);
      } finally {
        this.verifyQueue.shift();
      }
      await this.repair();
    }
    next("garbage collection");
    await this.collectGarbage();
    next("rebalance");
    if (this.settings.rebalanceEnabled) await this.rebalance();
    options.onProgress?.(passStepCount, passStepCount, "done");
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.looping = false;
    this.wakeLoop?.();
    await this.loop?.catch(() => undefined);
    await this.chain.catch(() => undefined);
    await Promise.all([...this.clients.values()].map((client) => client.close()));
    this.clients.clear();
  }

  // ---- Status and reports --------------------------------------------------------------------------

  status(): MaintenanceStatus {
    const nowMs = this.nowMs();
    const reach = new Map(this.tracker.view(nowMs).map((item) => [item.asdId, item]));
    const asds = [...this.records.values()]
      .sort((a, b) => (a.asdId < b.asdId ? -1 : 1))
      .map((record) => {
        const seen = reach.get(record.asdId) ?? { asdId: record.asdId, state: "unreachable" as const, lastSeenMs: record.lastSeenMs, consecutiveErrorCount: 0, lastError: undefined };
        const usage = this.usage.get(record.asdId);
        return { ...seen, health: this.healthOf(record.asdId), usedBytes: usage?.usedBytes, capacityBytes: usage?.totalBytes };
      });
    return {
      looping: this.looping,
      current: this.current === undefined ? undefined : { ...this.current },
      queued: { repairs: this.repairQueue.size, verifies: [...this.verifyQueue], decommissions: [...this.draining].sort() },
      asds,
      counters: { ...this.counters },
      lastErrors: this.lastErrors.map((error) => ({ ...error })),
      lastFinishedMs: { ...this.lastFinishedMs },
    };
  }

  /** Queues a verify of `namespace` for the loop's next pass. */
  queueVerify(namespace: string): void {
    if (!this.verifyQueue.includes(namespace)) this.verifyQueue.push(namespace);
    this.wakeLoop?.();
  }

  /** A bad fragment seen by a reader (or verify): its object is queued for repair. */
  reportBadFragment(report: Omit<BadFragmentReport, "reason" | "objectId"> & { objectId?: string; reason?: string }): void {
    const key = `${report.namespace}\u0000${report.name}`;
    let entry = this.repairQueue.get(key);
    if (entry === undefined) {
      if (this.repairQueue.size >= limits.repairQueueMax) {
        this.counters.repairQueueOverflows++;
        return;
      }
      entry = { namespace: report.namespace, name: report.name, objectId: report.objectId, bad: new Set() };
      this.repairQueue.set(key, entry);
    } else if (report.objectId !== undefined && entry.objectId !== report.objectId) {
      entry.objectId = report.objectId;
      entry.bad.clear(); // reports of an older version of the object are void
    }
    entry.bad.add(fragmentId(report.chunkIndex, report.fragmentIndex, report));
  }

  // ---- Probe (failure detection) -------------------------------------------------------------------

  /** Reloads the registry and asks every ASD for its disk usage; returns each ASD's reachability. */
  async probe(): Promise<AsdReachability[]> {
    return this.exclusive("probe", "all ASDs", () => this.probeNow());
  }

  private async ensureProbed(): Promise<void> {
    if (!this.probed) await this.probeNow();
  }

  private async probeNow(): Promise<AsdReachability[]> {
    {
      const records = await this.manager.listAsds();
      const nowMs = this.nowMs();
      this.records = new Map(records.map((record) => [record.asdId, record]));
      this.tracker.retain(new Set(this.records.keys()));
      for (const record of records) this.tracker.noteLastSeen(record.asdId, record.lastSeenMs, nowMs);
      for (const [asdId, client] of this.clients) {
        const record = this.records.get(asdId);
        if (record === undefined) {
          this.clients.delete(asdId);
          void client.close();
        }
      }
      const observations = await Promise.all(
        records.map(async (record) => {
          try {
            const usage = await this.call(record.asdId, (client) => client.diskUsage());
            this.usage.set(record.asdId, usage);
            return { asdId: record.asdId, lastSeenMs: this.nowMs(), capacityBytes: usage.totalBytes, usedBytes: usage.usedBytes };
          } catch (error) {
            if (isOvsError(error, "CLOSED")) throw error;
            return undefined;
          }
        }),
      );
      await this.manager.recordAsdObservations(observations.filter((item) => item !== undefined));
      const view = this.tracker.view(this.nowMs());
      for (const item of view) if (item.state === "failed") this.logger.warn({ asdId: item.asdId, lastSeenMs: item.lastSeenMs }, "alba maintenance: ASD failed; repairing it away");
      this.probed = true;
      return view;
    }
  }

  // ---- Repair --------------------------------------------------------------------------------------

  /** Repairs the queued objects and every object the scan finds below full redundancy, least safe first. */
  async repair(): Promise<RepairSummary> {
    return this.exclusive("repair", "scanning", async () => {
      await this.ensureProbed();
      const summary: RepairSummary = { objectsRepaired: 0, objectsUpgraded: 0, fragmentsRebuilt: 0, fragmentsCopied: 0, dropped: 0, remaining: 0 };
      type Candidate = RepairCandidate & { context: NamespaceContext; objectId: string; bad: Set<string> };
      const candidates: Candidate[] = [];
      const queued = new Map(this.repairQueue);
      this.repairQueue.clear();
      const presets = new Map((await this.manager.listPresets()).map((preset) => [preset.name, preset]));
      const upgrades: Array<{ context: NamespaceContext; name: string; objectId: string; policyIndex: number; preset: PresetRecord }> = [];
      for (const context of await this.namespaces()) {
        await this.forEachManifest(context, (name, read) => {
          const preset = presets.get(read.manifest.presetName);
          if (this.settings.policyUpgradeEnabled && read.manifest.policyIndex > 0 && preset !== undefined && upgrades.length < limits.upgradeBatchMax) {
            const sizeBytes = Math.min(read.manifest.sizeBytes, preset.fragmentSizeMaxBytes);
            const policyIndex = upgradePolicyIndex(read.manifest, preset.policies, this.candidates(sizeBytes));
            if (policyIndex !== undefined && read.manifest.sizeBytes <= limits.upgradeObjectBytesMax) upgrades.push({ context, name, objectId: read.manifest.objectId, policyIndex, preset });
          }
          const entry = queued.get(`${context.record.name}\u0000${name}`);
          const bad = entry !== undefined && (entry.objectId === undefined || entry.objectId === read.manifest.objectId) ? entry.bad : new Set<string>();
          const assessment = assessManifest(read.manifest, (asdId) => this.healthOf(asdId), bad);
          if (assessment.replaceCount > 0) candidates.push({ namespace: context.record.name, name, safety: assessment.safety, replaceCount: assessment.replaceCount, context, objectId: read.manifest.objectId, bad });
        });
      }
      const ordered = orderRepairs(candidates, limits.repairBatchMax);
      summary.remaining = candidates.length - ordered.length;
      for (const candidate of ordered) {
        if (this.closed) break;
        this.setDetail(`${candidate.namespace}/${candidate.name} (safety ${candidate.safety})`);
        try {
          const outcome = await this.repairObject(candidate.context, candidate.name, candidate.objectId, candidate.bad);
          if (outcome === "dropped") summary.dropped++;
          else if (outcome === "stuck") {
            summary.remaining++;
            for (const id of candidate.bad) this.requeue(candidate.namespace, candidate.name, candidate.objectId, id);
          } else if (outcome !== undefined) {
            summary.objectsRepaired++;
            summary.fragmentsRebuilt += outcome.rebuilt;
            summary.fragmentsCopied += outcome.copied;
            if (outcome.incomplete) summary.remaining++;
          }
        } catch (error) {
          if (isOvsError(error, "CLOSED")) throw error;
          summary.remaining++;
          this.noteError("repair", error);
          for (const id of candidate.bad) this.requeue(candidate.namespace, candidate.name, candidate.objectId, id);
        }
      }
      for (const upgrade of upgrades) {
        if (this.closed) break;
        if (ordered.some((candidate) => candidate.namespace === upgrade.context.record.name && candidate.name === upgrade.name)) continue; // repaired first; next pass
        this.setDetail(`${upgrade.context.record.name}/${upgrade.name}: policy ${upgrade.policyIndex}`);
        try {
          if (await this.upgradeObject(upgrade.context, upgrade.name, upgrade.objectId, upgrade.policyIndex, upgrade.preset)) summary.objectsUpgraded++;
          else summary.dropped++;
        } catch (error) {
          if (isOvsError(error, "CLOSED")) throw error;
          summary.remaining++;
          this.noteError("repair", error);
        }
      }
      return summary;
    });
  }

  /**
   * Repairs one object: undefined when it needs nothing, "stuck" when nothing could be done (no target,
   * too few sources), "dropped" when it changed meanwhile.
   */
  private async repairObject(context: NamespaceContext, name: string, scannedObjectId: string, scannedBad: ReadonlySet<string>): Promise<{ rebuilt: number; copied: number; incomplete: boolean } | "dropped" | "stuck" | undefined> {
    const namespaceId = context.record.namespaceId;
    const read = await context.nsm.getManifest(namespaceId, name);
    if (read === undefined) return "dropped";
    const manifest = read.manifest;
    const bad = manifest.objectId === scannedObjectId ? scannedBad : new Set<string>(); // overwritten since: the reports are void
    const assessment = assessManifest(manifest, (asdId) => this.healthOf(asdId), bad);
    if (assessment.replaceCount === 0) return undefined;
    const pipeline = await this.pipelineFor(manifest);
    const changes = new Map<number, FragmentChange[]>();
    let incomplete = false;
    for (const chunkAssessment of assessment.chunks) {
      if (chunkAssessment.replace.length === 0) continue;
      const chunkIndex = chunkAssessment.chunkIndex;
      const chunk = manifest.chunks[chunkIndex]!;
      const targets = planChunkTargets(manifest.policy, chunk.fragments, chunkAssessment.replace, this.candidates(chunk.fragments.find((f) => f !== undefined)?.packedSizeBytes ?? 0), this.random);
      if (targets.size < chunkAssessment.replace.length) incomplete = true;
      if (targets.size === 0) continue;
      try {
        const written = await this.rewriteChunk(context, manifest, chunkIndex, targets, bad, pipeline);
        if (written.length < chunkAssessment.replace.length) incomplete = true;
        if (written.length > 0) changes.set(chunkIndex, written);
      } catch (error) {
        if (isOvsError(error, "CLOSED")) throw error;
        this.noteError("repair", error);
        incomplete = true;
      }
    }
    if (changes.size === 0) return incomplete ? "stuck" : undefined;
    const committed = await this.commitChanges(context, read, changes);
    if (!committed) return "dropped";
    let rebuilt = 0;
    let copied = 0;
    for (const list of changes.values()) for (const change of list) {
      if (change.copied) copied++;
      else rebuilt++;
    }
    this.counters.objectsRepaired++;
    this.counters.fragmentsRebuilt += rebuilt;
    this.counters.fragmentsCopied += copied;
    return { rebuilt, copied, incomplete };
  }

  /**
   * Rewrites an object under the better policy `policyIndex` of its preset, as an upload would (new object
   * id, an upload record first, every fragment placed), and commits it asserting the manifest read: the
   * old object becomes garbage. False when the object changed meanwhile (the new upload is abandoned).
   */
  private async upgradeObject(context: NamespaceContext, name: string, scannedObjectId: string, policyIndex: number, preset: PresetRecord): Promise<boolean> {
    const namespaceId = context.record.namespaceId;
    const read = await context.nsm.getManifest(namespaceId, name);
    if (read === undefined || read.manifest.objectId !== scannedObjectId) return false;
    const old = read.manifest;
    const data = await this.readObject(context, old);
    const policy = preset.policies[policyIndex]!;
    const coding: CodingPreset = {
      k: policy.k, m: policy.m, fragmentSizeMaxBytes: preset.fragmentSizeMaxBytes, compression: preset.compression, encryption: preset.encryption, checksum: preset.fragmentChecksum,
    };
    if (preset.encryptionKeyHex !== undefined) coding.encryptionKey = Buffer.from(preset.encryptionKeyHex, "hex");
    const pipeline = this.pipeline(coding, preset.encryptionKeyHex);
    const objectId = randomBytes(16).toString("hex");
    await context.nsm.beginUpload(namespaceId, objectId, this.nowMs());
    try {
      const chunks: Manifest["chunks"] = [];
      let offsetBytes = 0;
      for (const [chunkIndex, sizeBytes] of chunkSizesBytesFor(data.length, pipeline.chunkSizeMaxBytes).entries()) {
        const encoded = pipeline.encodeChunk(data.subarray(offsetBytes, offsetBytes + sizeBytes));
        offsetBytes += sizeBytes;
        const slots = new Array<undefined>(policy.k + policy.m).fill(undefined);
        const targets = planChunkTargets(policy, slots, slots.map((_slot, index) => index), this.candidates(encoded.fragmentSizeBytes), this.random);
        if (targets.size < policy.k + policy.m) throw new OvsError("UNAVAILABLE", `Only ${targets.size} of ${policy.k + policy.m} fragments of ${name} could be placed under the better policy.`);
        const fragments = await Promise.all(
          encoded.fragments.map(async (fragment, fragmentIndex) => {
            const asdId = targets.get(fragmentIndex)!;
            const version = await this.writeFragment(asdId, namespaceId, objectId, chunkIndex, fragmentIndex, 0, packedFragmentBytes(fragment));
            return { asdId, version, checksumValue: fragment.checksumValue, packedSizeBytes: fragment.packedSizeBytes };
          }),
        );
        chunks.push({ chunkSizeBytes: encoded.chunkSizeBytes, fragments });
      }
      const next: Manifest = {
        ...old, objectId, presetVersion: preset.version, policy: { ...policy }, policyIndex, fragmentSizeMaxBytes: preset.fragmentSizeMaxBytes, compression: preset.compression,
        encryption: preset.encryption, fragmentChecksum: preset.fragmentChecksum, timestampMs: this.nowMs(), chunks,
      };
      delete next.encryptionKeySha256;
      if (preset.encryptionKeyHex !== undefined) next.encryptionKeySha256 = createHash("sha256").update(Buffer.from(preset.encryptionKeyHex, "hex")).digest("hex");
      await context.nsm.commit(namespaceId, [{ name, previous: read, next: { bytes: encodeManifest(next), manifest: next, strays: [] } }], this.nowMs());
      this.counters.objectsUpgraded++;
      return true;
    } catch (error) {
      await context.nsm.abandonUpload(namespaceId, objectId, this.nowMs()).catch(() => undefined);
      if (!isOvsError(error, "ASSERT_FAILED") && !isOvsError(error, "NOT_FOUND")) throw error;
      this.counters.repairsDropped++;
      return false;
    }
  }

  /** The whole object, decoded from verified fragments and checked against its CRC32C. */
  private async readObject(context: NamespaceContext, manifest: Manifest): Promise<Buffer> {
    const pipeline = await this.pipelineFor(manifest);
    const parts: Buffer[] = [];
    for (let chunkIndex = 0; chunkIndex < manifest.chunks.length; chunkIndex++) {
      const chunk = manifest.chunks[chunkIndex]!;
      const packed = await Promise.all(
        chunk.fragments.map(async (fragment, fragmentIndex) => {
          if (fragment === undefined) return undefined;
          const result = await this.fetchFragment(context.record.namespaceId, manifest, chunkIndex, fragmentIndex, pipeline);
          return result.status === "ok" ? result.value : undefined;
        }),
      );
      parts.push(pipeline.decodeChunk(packed).data);
    }
    const data = Buffer.concat(parts);
    if (data.length !== manifest.sizeBytes || crc32c(data) !== manifest.objectCrc32c) {
      throw new OvsError("CHECKSUM_MISMATCH", `Object ${manifest.name} fails its CRC32C after decoding.`, { name: manifest.name });
    }
    return data;
  }

  /**
   * Writes new copies of the fragments `targets` (fragment index → ASD) of one chunk: copied when their
   * own copy reads back intact, else rebuilt from the chunk's other fragments. Returns what was written.
   */
  private async rewriteChunk(
    context: NamespaceContext,
    manifest: Manifest,
    chunkIndex: number,
    targets: ReadonlyMap<number, string>,
    bad: ReadonlySet<string>,
    pipeline: FragmentPipeline,
  ): Promise<FragmentChange[]> {
    const { k, m } = manifest.policy;
    const chunk = manifest.chunks[chunkIndex]!;
    const packed: Array<Buffer | undefined> = new Array<Buffer | undefined>(k + m).fill(undefined);
    const fetched = new Set<number>();
    const fetch = (indices: readonly number[]) => Promise.all(
      indices.map(async (fragmentIndex) => {
        const fragment = chunk.fragments[fragmentIndex];
        if (fetched.has(fragmentIndex)) return;
        fetched.add(fragmentIndex);
        if (fragment === undefined || bad.has(fragmentId(chunkIndex, fragmentIndex, fragment))) return;
        const health = this.healthOf(fragment.asdId);
        if (health === "failed" || health === "unknown") return;
        const result = await this.fetchFragment(context.record.namespaceId, manifest, chunkIndex, fragmentIndex, pipeline);
        if (result.status === "ok") packed[fragmentIndex] = result.value;
        else if (result.status === "bad") this.counters.badFragmentsFound++;
      }),
    );
    // The targets' own copies first (a move or a drain copies them); the others only to rebuild.
    await fetch([...targets.keys()]);
    if ([...targets.keys()].some((fragmentIndex) => packed[fragmentIndex] === undefined)) await fetch(chunk.fragments.map((_fragment, index) => index));
    const values = new Map<number, { value: Buffer; checksumValue: number; copied: boolean }>();
    const rebuildIndices: number[] = [];
    for (const fragmentIndex of targets.keys()) {
      const own = packed[fragmentIndex];
      if (own !== undefined) values.set(fragmentIndex, { value: own, checksumValue: chunk.fragments[fragmentIndex]!.checksumValue, copied: true });
      else rebuildIndices.push(fragmentIndex);
    }
    if (rebuildIndices.length > 0) {
      const sources = packed.map((value, index) => (rebuildIndices.includes(index) ? undefined : value));
      if (sources.filter((value) => value !== undefined).length < k) {
        throw new OvsError("UNAVAILABLE", `Chunk ${chunkIndex} of ${manifest.name} has fewer than ${k} intact fragments to rebuild from.`, { name: manifest.name, chunkIndex });
      }
      const rebuilt = pipeline.rebuildFragments(sources, rebuildIndices);
      assert(rebuilt.fragments.length === rebuildIndices.length, "one rebuilt fragment per target");
      rebuilt.fragments.forEach((fragment, position) => {
        const value = Buffer.concat([fragment.header, fragment.payload], fragment.packedSizeBytes);
        values.set(rebuildIndices[position]!, { value, checksumValue: fragment.checksumValue, copied: false });
      });
    }
    const changes: FragmentChange[] = [];
    for (const [fragmentIndex, item] of values) {
      const asdId = targets.get(fragmentIndex)!;
      const versionBase = (chunk.fragments[fragmentIndex]?.version ?? 0) + 1;
      try {
        const version = await this.writeFragment(asdId, context.record.namespaceId, manifest.objectId, chunkIndex, fragmentIndex, versionBase, item.value);
        changes.push({ fragmentIndex, copied: item.copied, fragment: { asdId, version, checksumValue: item.checksumValue, packedSizeBytes: item.value.length } });
      } catch (error) {
        if (isOvsError(error, "CLOSED")) throw error;
        this.noteError("repair", error);
      }
    }
    return changes.sort((a, b) => a.fragmentIndex - b.fragmentIndex);
  }

  /** Writes a fragment under the first free version ≥ versionBase (asserting the key absent); returns the version. */
  private async writeFragment(asdId: string, namespaceId: number, objectId: string, chunkIndex: number, fragmentIndex: number, versionBase: number, value: Buffer): Promise<number> {
    await this.spend(value.length);
    for (let attempt = 0; attempt < limits.versionAttemptsMax; attempt++) {
      const version = versionBase + attempt;
      const key = fragmentKey(namespaceId, objectId, chunkIndex, fragmentIndex, version);
      try {
        await this.call(asdId, (client) => client.apply([{ kind: "absent", key }], [{ kind: "set", key, value }]));
        return version;
      } catch (error) {
        if (!isOvsError(error, "ASSERT_FAILED")) throw error;
      }
    }
    throw new OvsError("CONFLICT", `No free fragment version from ${versionBase} on ASD ${asdId}.`, { asdId });
  }

  /**
   * Commits the changed fragments into the manifest read, asserting it is unchanged; the replaced
   * fragments become strays. False (and the new fragments deleted) when the object changed meanwhile.
   */
  private async commitChanges(context: NamespaceContext, read: ManifestRead, changes: ReadonlyMap<number, FragmentChange[]>): Promise<boolean> {
    const namespaceId = context.record.namespaceId;
    const manifest = read.manifest;
    const next: Manifest = { ...manifest, policy: { ...manifest.policy }, chunks: manifest.chunks.map((chunk) => ({ chunkSizeBytes: chunk.chunkSizeBytes, fragments: [...chunk.fragments] })) };
    const replaced: StrayFragment[] = [];
    const written: StrayFragment[] = [];
    for (const [chunkIndex, list] of changes) {
      for (const change of list) {
        const old = next.chunks[chunkIndex]!.fragments[change.fragmentIndex];
        if (old !== undefined) replaced.push({ asdId: old.asdId, chunkIndex, fragmentIndex: change.fragmentIndex, version: old.version });
        written.push({ asdId: change.fragment.asdId, chunkIndex, fragmentIndex: change.fragmentIndex, version: change.fragment.version });
        next.chunks[chunkIndex]!.fragments[change.fragmentIndex] = { ...change.fragment };
      }
    }
    const strays = [...(await this.existingStrays(context, manifest.objectId)), ...replaced];
    try {
      await context.nsm.commit(namespaceId, [{ name: manifest.name, previous: read, next: { bytes: encodeManifest(next), manifest: next, strays } }], this.nowMs());
      return true;
    } catch (error) {
      if (!isOvsError(error, "ASSERT_FAILED") && !isOvsError(error, "NOT_FOUND")) throw error;
      this.counters.repairsDropped++;
      this.logger.info({ name: manifest.name }, "alba maintenance: the object changed during its repair; the repair is dropped");
      await this.deleteStrays(namespaceId, manifest.objectId, written);
      return false;
    }
  }

  private async existingStrays(context: NamespaceContext, objectId: string): Promise<StrayFragment[]> {
    const bytes = await context.nsm.store.get(context.nsm.keys.gcStrays(context.record.namespaceId, objectId));
    if (bytes === undefined) return [];
    const record = parseGcRecord(bytes, "strays");
    return record?.kind === "strays" ? record.fragments : [];
  }

  // ---- Verify --------------------------------------------------------------------------------------

  /**
   * Re-reads and checks every fragment of every object of `namespace`; bad ones are queued for repair.
   * `onProgress` hears (objects checked, objects in the namespace, current object) after each object;
   * `signal` stops the verify between objects (CONFLICT "cancelled"; what was found is queued already).
   */
  async verifyNamespace(namespace: string, options: { onProgress?: VerifyProgress; signal?: AbortSignal } = {}): Promise<VerifyReport> {
    return this.exclusive("verify", namespace, async () => {
      await this.ensureProbed();
      const record = await this.manager.getNamespace(namespace);
      if (record === undefined) throw new OvsError("NOT_FOUND", `Namespace ${namespace} does not exist.`, { namespace });
      const context = { record, nsm: await this.manager.nsm(record.nsmId) };
      const report: VerifyReport = { namespace, objectCount: 0, fragmentsChecked: 0, bad: [], badCount: 0, missingCount: 0, unavailableCount: 0, holeCount: 0 };
      const names: string[] = [];
      await this.forEachManifest(context, (name) => void names.push(name));
      options.onProgress?.(0, names.length, namespace);
      for (const [index, name] of names.entries()) {
        if (this.closed) break;
        if (options.signal?.aborted) throw new OvsError("CONFLICT", `the verify of namespace ${namespace} was cancelled after ${index} of ${names.length} objects.`);
        if (index > 0) options.onProgress?.(index, names.length, `${namespace}/${name}`);
        const read = await context.nsm.getManifest(record.namespaceId, name);
        if (read === undefined) continue;
        report.objectCount++;
        this.setDetail(`${namespace}/${name}`);
        const manifest = read.manifest;
        const pipeline = await this.pipelineFor(manifest);
        for (let chunkIndex = 0; chunkIndex < manifest.chunks.length; chunkIndex++) {
          const chunk = manifest.chunks[chunkIndex]!;
          await Promise.all(
            chunk.fragments.map(async (fragment, fragmentIndex) => {
              if (fragment === undefined) {
                report.holeCount++;
                return;
              }
              const result = await this.fetchFragment(record.namespaceId, manifest, chunkIndex, fragmentIndex, pipeline);
              if (result.status === "unavailable") {
                report.unavailableCount++;
                return;
              }
              report.fragmentsChecked++;
              this.counters.fragmentsVerified++;
              if (result.status === "ok") return;
              const reason = result.status === "missing" ? "missing" : result.reason;
              if (result.status === "missing") report.missingCount++;
              report.badCount++;
              this.counters.badFragmentsFound++;
              const bad: BadFragmentReport = { namespace, name, objectId: manifest.objectId, chunkIndex, fragmentIndex, asdId: fragment.asdId, version: fragment.version, reason };
              if (report.bad.length < limits.verifyReportBadMax) report.bad.push(bad);
              this.reportBadFragment(bad);
            }),
          );
        }
      }
      options.onProgress?.(names.length, names.length, namespace);
      report.bad.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.chunkIndex - b.chunkIndex || a.fragmentIndex - b.fragmentIndex));
      return report;
    });
  }

  // ---- Garbage collection --------------------------------------------------------------------------

  /** Collects garbage records that are due, deleted namespaces and orphan keys (see garbage.ts). */
  async collectGarbage(): Promise<GcSummary> {
    return this.exclusive("gc", "garbage records", async () => {
      await this.ensureProbed();
      const summary: GcSummary = { recordsCollected: 0, recordsWaiting: 0, fragmentsDeleted: 0, orphansDeleted: 0, namespacesPurged: 0 };
      // 1. The orphan scan lists ASD keys first (before manifests and records are read: garbage.ts).
      const scan = await this.listFragmentKeys();
      const namespaces = await this.namespaces();
      // 2. Every manifest: the fragment keys they reference, and the live object ids.
      this.setDetail("manifest scan");
      const covered = new Set<string>();
      const live = new Set<string>();
      for (const context of namespaces) {
        const namespaceId = context.record.namespaceId;
        const complete = await this.forEachManifest(context, (_name, read) => {
          live.add(`${namespaceId}/${read.manifest.objectId}`);
          read.manifest.chunks.forEach((chunk, chunkIndex) =>
            chunk.fragments.forEach((fragment, fragmentIndex) => {
              if (fragment !== undefined) covered.add(orphanId(fragment.asdId, fragmentKey(namespaceId, read.manifest.objectId, chunkIndex, fragmentIndex, fragment.version)));
            }),
          );
        });
        // A manifest that does not decode: its fragments must stay for a recovery (no orphans here this pass).
        if (!complete) covered.add(`${namespaceId}/*`);
      }
      // 3. Garbage records.
      for (const context of namespaces) {
        const prefix = context.nsm.keys.gcPrefix(context.record.namespaceId);
        let after: string | undefined;
        for (;;) {
          const page = await context.nsm.store.prefix(prefix, { limit: rangeLimitMax, ...(after === undefined ? {} : { after }) });
          for (const entry of page.entries) {
            const record = parseGcRecord(entry.value, entry.key);
            if (record === undefined) continue;
            if (gcDecision(record, this.nowMs(), this.settings.uploadGraceMs) === "wait") {
              summary.recordsWaiting++;
              continue;
            }
            this.setDetail(`${context.record.name} ${record.kind} ${record.objectId}`);
            if (record.kind !== "strays" && live.has(`${context.record.namespaceId}/${record.objectId}`)) {
              // A manifest references the object: an upload marked abandoned whose commit did land (a
              // reply lost after the store applied it), or a record that is wrong. Never delete live data.
              this.noteError("gc", new OvsError("CONFLICT", `Garbage record ${entry.key} names a live object; its fragments are kept.`, { key: entry.key }));
              if (record.kind === "upload" && (await context.nsm.forgetGarbage(entry.key, entry.value))) summary.recordsCollected++;
              else summary.recordsWaiting++;
              continue;
            }
            const outcome = await this.collectRecord(context.record.namespaceId, record, covered);
            summary.fragmentsDeleted += outcome.deleted;
            if (!outcome.complete) {
              summary.recordsWaiting++;
              continue;
            }
            if (await context.nsm.forgetGarbage(entry.key, entry.value)) {
              summary.recordsCollected++;
              this.counters.gcRecordsCollected++;
            }
          }
          if (!page.more || page.entries.length === 0) break;
          after = page.entries[page.entries.length - 1]!.key;
        }
      }
      // 4. Deleted namespaces: every key under their id on every ASD.
      for (const deleted of await this.manager.listDeletedNamespaces()) {
        this.setDetail(`deleted namespace ${deleted.name}`);
        const prefix = namespaceFragmentPrefix(deleted.namespaceId);
        const outcome = await this.deleteRangeEverywhere(prefix, [...this.records.keys()]);
        summary.fragmentsDeleted += outcome.deleted;
        if (outcome.complete) {
          await this.manager.forgetDeletedNamespace(deleted.namespaceId);
          summary.namespacesPurged++;
        }
      }
      // 5. Orphans: keys of the ASD scan that no manifest (step 2) references and no record left covers.
      if (scan !== undefined) {
        this.setDetail("orphan scan");
        const liveNamespaces = new Map(namespaces.map((context) => [context.record.namespaceId, context]));
        const pendingNamespaceIds = new Set((await this.manager.listDeletedNamespaces()).map((item) => item.namespaceId));
        for (const context of namespaces) {
          const records = await context.nsm.store.prefix(context.nsm.keys.gcPrefix(context.record.namespaceId), { limit: rangeLimitMax });
          for (const entry of records.entries) {
            const record = parseGcRecord(entry.value, entry.key);
            if (record !== undefined) covered.add(`${context.record.namespaceId}/${record.objectId}`);
          }
          if (records.more) covered.add(`${context.record.namespaceId}/*`); // too many records to tell: none this pass
        }
        const orphans: string[] = [];
        for (const [asdId, keys] of scan) {
          for (const keyHex of keys) {
            const parsed = parseFragmentKey(Buffer.from(keyHex, "hex"))!;
            if (pendingNamespaceIds.has(parsed.namespaceId)) continue;
            if (liveNamespaces.has(parsed.namespaceId) && (covered.has(`${parsed.namespaceId}/*`) || covered.has(`${parsed.namespaceId}/${parsed.objectId}`))) continue;
            const id = `${asdId}:${keyHex}`;
            if (!covered.has(id)) orphans.push(id);
          }
        }
        const due = this.orphans.update(orphans, this.nowMs());
        const byAsd = new Map<string, Buffer[]>();
        for (const id of due) {
          const [asdId, keyHex] = id.split(":") as [string, string];
          let list = byAsd.get(asdId);
          if (list === undefined) byAsd.set(asdId, (list = []));
          list.push(Buffer.from(keyHex, "hex"));
        }
        for (const [asdId, keys] of byAsd) {
          try {
            const deleted = await this.deleteKeys(asdId, keys);
            summary.orphansDeleted += deleted;
            this.counters.orphansCollected += deleted;
            this.counters.fragmentsCollected += deleted;
            this.orphans.forget(keys.map((key) => orphanId(asdId, key)));
          } catch (error) {
            if (isOvsError(error, "CLOSED")) throw error;
            this.noteError("gc", error);
          }
        }
      }
      return summary;
    });
  }

  /** Deletes a record's fragments; complete when none can be left on an ASD that is not failed. */
  private async collectRecord(namespaceId: number, record: GcRecord, covered: ReadonlySet<string>): Promise<{ deleted: number; complete: boolean }> {
    if (record.kind === "strays") {
      // A stray key a manifest references again is kept (never the case through this agent: versions rise).
      const strays = record.fragments.filter(
        (fragment) => !covered.has(orphanId(fragment.asdId, fragmentKey(namespaceId, record.objectId, fragment.chunkIndex, fragment.fragmentIndex, fragment.version))),
      );
      return this.deleteStrays(namespaceId, record.objectId, strays);
    }
    const asdIds = record.kind === "object" ? record.asdIds : [...this.records.keys()];
    return this.deleteRangeEverywhere(objectFragmentPrefix(namespaceId, record.objectId), asdIds);
  }

  private async deleteStrays(namespaceId: number, objectId: string, fragments: readonly StrayFragment[]): Promise<{ deleted: number; complete: boolean }> {
    const byAsd = new Map<string, Buffer[]>();
    for (const fragment of fragments) {
      let list = byAsd.get(fragment.asdId);
      if (list === undefined) byAsd.set(fragment.asdId, (list = []));
      list.push(fragmentKey(namespaceId, objectId, fragment.chunkIndex, fragment.fragmentIndex, fragment.version));
    }
    let deleted = 0;
    let complete = true;
    for (const [asdId, keys] of byAsd) {
      if (this.skippable(asdId)) continue;
      try {
        deleted += await this.deleteKeys(asdId, keys);
      } catch (error) {
        if (isOvsError(error, "CLOSED")) throw error;
        complete = false;
      }
    }
    this.counters.fragmentsCollected += deleted;
    return { deleted, complete };
  }

  private async deleteRangeEverywhere(prefix: Buffer, asdIds: readonly string[]): Promise<{ deleted: number; complete: boolean }> {
    let deleted = 0;
    let complete = true;
    for (const asdId of new Set(asdIds)) {
      if (this.skippable(asdId)) continue;
      try {
        for (;;) {
          const page = await this.call(asdId, (client) => client.range({ first: prefix, end: prefixEnd(prefix), limit: limits.asdBatchKeysMax }));
          if (page.keys.length === 0) break;
          deleted += await this.deleteKeys(asdId, page.keys);
          if (!page.more) break;
        }
      } catch (error) {
        if (isOvsError(error, "CLOSED")) throw error;
        complete = false;
      }
    }
    this.counters.fragmentsCollected += deleted;
    return { deleted, complete };
  }

  /** Whether garbage on this ASD can be given up: it is failed, or no longer registered. */
  private skippable(asdId: string): boolean {
    const health = this.healthOf(asdId);
    return health === "failed" || health === "unknown";
  }

  private async deleteKeys(asdId: string, keys: readonly Buffer[]): Promise<number> {
    for (let start = 0; start < keys.length; start += limits.asdBatchKeysMax) {
      const batch = keys.slice(start, start + limits.asdBatchKeysMax);
      await this.call(asdId, (client) => client.apply([], batch.map((key) => ({ kind: "delete" as const, key }))));
    }
    return keys.length;
  }

  /** Every fragment key on every reachable ASD (hex), or undefined when an ASD could not be listed fully. */
  private async listFragmentKeys(): Promise<Map<string, string[]> | undefined> {
    const scan = new Map<string, string[]>();
    const first = Buffer.from([0x46]);
    for (const record of this.records.values()) {
      if (this.healthOf(record.asdId) !== "ok" && this.healthOf(record.asdId) !== "decommissioned") continue;
      const keys: string[] = [];
      let from: Buffer = first;
      try {
        for (;;) {
          const page = await this.call(record.asdId, (client) => client.range({ first: from, end: prefixEnd(first), limit: limits.asdBatchKeysMax }));
          for (const key of page.keys) if (parseFragmentKey(key) !== undefined) keys.push(key.toString("hex"));
          if (!page.more || page.keys.length === 0) break;
          if (keys.length >= limits.orphanScanKeysMax) return undefined;
          from = Buffer.concat([page.keys[page.keys.length - 1]!, Buffer.from([0])]);
        }
      } catch (error) {
        if (isOvsError(error, "CLOSED")) throw error;
        continue; // not listed: its keys are simply not candidates this pass
      }
      scan.set(record.asdId, keys);
    }
    return scan;
  }

  // ---- Rebalance and decommission ------------------------------------------------------------------

  /** Moves fragments from fuller to emptier ASDs while the fill spread passes rebalanceSpreadMax. */
  async rebalance(): Promise<RebalanceSummary> {
    return this.exclusive("rebalance", "planning", async () => {
      await this.ensureProbed();
      const fills = new Map<string, AsdFill>();
      for (const record of this.records.values()) {
        const usage = this.usage.get(record.asdId);
        if (record.state !== "claimed" || this.healthOf(record.asdId) !== "ok" || usage === undefined) continue;
        fills.set(record.asdId, { asdId: record.asdId, nodeId: record.nodeId, usedBytes: usage.usedBytes, capacityBytes: usage.totalBytes });
      }
      let classes = rebalanceClasses([...fills.values()], this.settings.rebalanceSpreadMax);
      const summary: RebalanceSummary = { spreadBefore: classes?.spread ?? 0, moved: 0 };
      if (classes === undefined) return summary;
      for (const context of await this.namespaces()) {
        const names: string[] = [];
        await this.forEachManifest(context, (name) => void names.push(name));
        for (const name of names) {
          if (classes === undefined || summary.moved >= this.settings.rebalanceMovesMax || this.closed) return summary;
          const read = await context.nsm.getManifest(context.record.namespaceId, name);
          if (read === undefined) continue;
          const manifest = read.manifest;
          const moves = new Map<number, string>();
          const chunkMoves: Array<{ chunkIndex: number; fragmentIndex: number; toAsdId: string }> = [];
          for (let chunkIndex = 0; chunkIndex < manifest.chunks.length && summary.moved + chunkMoves.length < this.settings.rebalanceMovesMax; chunkIndex++) {
            const chunk = manifest.chunks[chunkIndex]!;
            const sizeBytes = chunk.fragments.find((fragment) => fragment !== undefined)?.packedSizeBytes ?? 0;
            const move = planChunkMove(manifest.policy, chunk.fragments, classes, fills, this.candidates(sizeBytes), this.random);
            if (move === undefined) continue;
            chunkMoves.push({ chunkIndex, fragmentIndex: move.fragmentIndex, toAsdId: move.toAsdId });
            // Project the fill change so that the plan converges within this pass.
            const from = fills.get(move.fromAsdId)!;
            const to = fills.get(move.toAsdId)!;
            from.usedBytes = Math.max(0, from.usedBytes - sizeBytes);
            to.usedBytes += sizeBytes;
          }
          if (chunkMoves.length === 0) continue;
          this.setDetail(`${context.record.name}/${name}: ${chunkMoves.length} fragments`);
          const pipeline = await this.pipelineFor(manifest);
          const changes = new Map<number, FragmentChange[]>();
          for (const item of chunkMoves) {
            moves.clear();
            moves.set(item.fragmentIndex, item.toAsdId);
            try {
              const written = await this.rewriteChunk(context, manifest, item.chunkIndex, moves, new Set(), pipeline);
              if (written.length > 0) changes.set(item.chunkIndex, written);
            } catch (error) {
              if (isOvsError(error, "CLOSED")) throw error;
              this.noteError("rebalance", error);
            }
          }
          if (changes.size > 0 && (await this.commitChanges(context, read, changes))) {
            const count = [...changes.values()].reduce((sum, list) => sum + list.length, 0);
            summary.moved += count;
            this.counters.fragmentsMoved += count;
          }
          classes = rebalanceClasses([...fills.values()], this.settings.rebalanceSpreadMax);
        }
      }
      return summary;
    });
  }

  /** How many fragments the manifests of every namespace place on the ASD (a scan, one task at a time). */
  async fragmentsOn(asdId: string): Promise<number> {
    return this.exclusive("decommission", asdId, async () => {
      let count = 0;
      for (const context of await this.namespaces()) {
        await this.forEachManifest(context, (_name, read) => {
          for (const chunk of read.manifest.chunks) for (const fragment of chunk.fragments) if (fragment?.asdId === asdId) count++;
        });
      }
      return count;
    });
  }

  /** Marks the ASD decommissioned (it gets no new fragments) and moves every fragment it holds elsewhere. */
  async decommission(asdId: string): Promise<DrainSummary> {
    this.checkOpen();
    this.draining.add(asdId);
    try {
      await this.manager.decommissionAsd(asdId);
      await this.probe();
      await this.repair();
      const remainingFragments = await this.fragmentsOn(asdId);
      if (remainingFragments === 0) this.draining.delete(asdId);
      return { asdId, remainingFragments };
    } catch (error) {
      this.draining.delete(asdId);
      throw error;
    }
  }

  // ---- Helpers -------------------------------------------------------------------------------------

  private healthOf(asdId: string): AsdHealth {
    const record = this.records.get(asdId);
    if (record === undefined) return "unknown";
    if (record.state === "decommissioned") return "decommissioned";
    return this.tracker.state(asdId, this.nowMs());
  }

  private candidates(fragmentSizeBytes: number): PlacementCandidate[] {
    return [...this.records.values()].map((record) => {
      const usage = this.usage.get(record.asdId);
      const freeBytes = usage?.freeBytes ?? 0;
      const candidate: PlacementCandidate = {
        asdId: record.asdId,
        nodeId: record.nodeId,
        freeBytes,
        usable: record.state === "claimed" && this.healthOf(record.asdId) === "ok" && usage !== undefined && !usage.refusingWrites && freeBytes > fragmentSizeBytes,
      };
      if (record.rack !== undefined) candidate.rack = record.rack;
      if (record.site !== undefined) candidate.site = record.site;
      return candidate;
    });
  }

  /** Reads one fragment and checks it (length, checksum through the pipeline, the manifest's checksum value). */
  private async fetchFragment(namespaceId: number, manifest: Manifest, chunkIndex: number, fragmentIndex: number, pipeline: FragmentPipeline): Promise<FetchResult> {
    const chunk = manifest.chunks[chunkIndex]!;
    const fragment = chunk.fragments[fragmentIndex];
    assert(fragment !== undefined, "only present fragments are fetched");
    const health = this.healthOf(fragment.asdId);
    if (health === "failed" || health === "unknown") return { status: "unavailable", reason: health };
    let result;
    try {
      [result] = await this.call(fragment.asdId, (client) => client.multiGet([fragmentKey(namespaceId, manifest.objectId, chunkIndex, fragmentIndex, fragment.version)]));
    } catch (error) {
      if (isOvsError(error, "CLOSED")) throw error;
      return { status: "unavailable", reason: error instanceof Error ? error.message : String(error) };
    }
    assert(result !== undefined, "one result per key");
    if (result.status === "absent") return { status: "missing" };
    if (result.status === "corrupt") return { status: "bad", reason: "the ASD's checksum of the stored value fails" };
    if (result.status !== "ok") return { status: "bad", reason: `the ASD returned ${result.status}` };
    await this.spend(result.value.length);
    if (result.value.length !== fragment.packedSizeBytes) return { status: "bad", reason: `length ${result.value.length}, the manifest says ${fragment.packedSizeBytes}` };
    try {
      const unpacked = pipeline.unpackFragment(result.value, fragmentIndex);
      if (unpacked.header.checksumValue !== fragment.checksumValue) return { status: "bad", reason: "not the fragment the manifest names (checksum value differs)" };
      if (unpacked.header.chunkSizeBytes !== chunk.chunkSizeBytes) return { status: "bad", reason: "its chunk size is not the manifest's" };
    } catch (error) {
      if (!isOvsError(error)) throw error;
      return { status: "bad", reason: error.message };
    }
    return { status: "ok", value: result.value };
  }

  /** Runs `work` on the ASD's connection; notes success or an unreachable ASD with the failure detector. */
  private async call<T>(asdId: string, work: (client: AsdClient) => Promise<T>): Promise<T> {
    this.checkOpen();
    const record = this.records.get(asdId);
    if (record === undefined) throw new OvsError("UNAVAILABLE", `ASD ${asdId} is not in the registry.`, { asdId });
    try {
      let client = this.clients.get(asdId);
      if (client === undefined) {
        client = await AsdClient.connect({
          host: record.host, port: record.port, clusterSecret: this.settings.clusterSecret, backendId: this.manager.backendId, expectedAsdId: asdId,
          requestTimeoutMs: this.settings.requestTimeoutMs, connectTimeoutMs: Math.min(this.settings.requestTimeoutMs, 5_000), logger: this.logger,
        });
        if (this.closed) {
          await client.close();
          throw new OvsError("CLOSED", "The maintenance agent is closed.");
        }
        this.clients.set(asdId, client);
      }
      const result = await work(client);
      this.tracker.noteSuccess(asdId, this.nowMs());
      return result;
    } catch (error) {
      if (isOvsError(error, "UNAVAILABLE") || isOvsError(error, "TIMEOUT") || !isOvsError(error)) {
        this.tracker.noteFailure(asdId, this.nowMs(), error instanceof Error ? error.message : String(error));
      } else if (!isOvsError(error, "CLOSED")) {
        this.tracker.noteSuccess(asdId, this.nowMs()); // it answered, with an error
      }
      throw error;
    }
  }

  private async spend(bytes: number): Promise<void> {
    const waitMs = this.throttle.spend(bytes, this.nowMs());
    if (waitMs > 0) await new Promise((resolve) => setTimeout(resolve, waitMs));
  }

  private async namespaces(): Promise<NamespaceContext[]> {
    const contexts: NamespaceContext[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await this.manager.listNamespaces({ prefix: "", after, limit: 1000 });
      for (const record of page.records) contexts.push({ record, nsm: await this.manager.nsm(record.nsmId) });
      if (!page.more || page.records.length === 0) return contexts;
      after = page.records[page.records.length - 1]!.name;
    }
  }

  /**
   * Calls `visit` for every manifest of the namespace (paged). A manifest that fails to decode is noted
   * in lastErrors and skipped; the result is false then, so that callers (the orphan scan) know they did
   * not see every live fragment.
   */
  private async forEachManifest(context: NamespaceContext, visit: (name: string, read: ManifestRead) => void): Promise<boolean> {
    const namespaceId = context.record.namespaceId;
    let complete = true;
    let after: string | undefined;
    for (;;) {
      const page = await context.nsm.listNames(namespaceId, { prefix: "", after, limit: 1000 });
      for (let start = 0; start < page.names.length; start += limits.manifestBatchMax) {
        const batch = page.names.slice(start, start + limits.manifestBatchMax);
        let reads: Array<ManifestRead | undefined>;
        try {
          reads = await context.nsm.getManifests(namespaceId, batch);
        } catch (error) {
          if (!isOvsError(error, "CORRUPT")) throw error;
          // One bad manifest spoils the batch: read them one by one.
          reads = [];
          for (const name of batch) {
            try {
              reads.push(await context.nsm.getManifest(namespaceId, name));
            } catch (single) {
              if (!isOvsError(single, "CORRUPT")) throw single;
              this.noteError("repair", single);
              complete = false;
              reads.push(undefined);
            }
          }
        }
        reads.forEach((read, index) => {
          if (read !== undefined) visit(batch[index]!, read);
        });
      }
      if (!page.more || page.names.length === 0) return complete;
      after = page.names[page.names.length - 1]!;
    }
  }

  private async pipelineFor(manifest: Manifest): Promise<FragmentPipeline> {
    let preset = this.presets.get(manifest.presetName);
    if (preset === undefined || preset.version < manifest.presetVersion) {
      preset = await this.manager.getPreset(manifest.presetName);
      if (preset === undefined) throw new OvsError("NOT_FOUND", `The preset ${manifest.presetName} of ${manifest.name} does not exist.`);
      this.presets.set(manifest.presetName, preset);
    }
    const coding: CodingPreset = {
      k: manifest.policy.k, m: manifest.policy.m, fragmentSizeMaxBytes: manifest.fragmentSizeMaxBytes, compression: manifest.compression,
      encryption: manifest.encryption, checksum: manifest.fragmentChecksum,
    };
    if (manifest.encryption !== "none") {
      if (preset.encryptionKeyHex === undefined) throw new OvsError("NOT_FOUND", `The preset ${preset.name} has no key for ${manifest.name}.`);
      coding.encryptionKey = Buffer.from(preset.encryptionKeyHex, "hex");
    }
    return this.pipeline(coding, preset.encryptionKeyHex);
  }

  private pipeline(coding: CodingPreset, keyHex: string | undefined): FragmentPipeline {
    const id = `${coding.k}/${coding.m}/${coding.fragmentSizeMaxBytes}/${coding.compression}/${coding.encryption}/${coding.checksum}/${coding.encryption === "none" ? "" : (keyHex ?? "")}`;
    let pipeline = this.pipelines.get(id);
    if (pipeline === undefined) {
      pipeline = new FragmentPipeline(coding);
      this.pipelines.set(id, pipeline);
    }
    return pipeline;
  }

  private requeue(namespace: string, name: string, objectId: string, id: string): void {
    const [chunk, fragment, rest] = id.split("/") as [string, string, string];
    const [version, asdId] = rest.split("@") as [string, string];
    this.reportBadFragment({ namespace, name, objectId, chunkIndex: Number(chunk), fragmentIndex: Number(fragment), version: Number(version), asdId });
  }

  /** Runs tasks one at a time, recording the current one, its errors and when it finished. */
  private exclusive<T>(task: MaintenanceTask, detail: string, work: () => Promise<T>): Promise<T> {
    this.checkOpen();
    const run = async (): Promise<T> => {
      this.checkOpen();
      this.current = { task, detail, startedAtMs: this.nowMs() };
      try {
        const result = await work();
        this.lastFinishedMs[task] = this.nowMs();
        return result;
      } catch (error) {
        this.noteError(task, error);
        throw error;
      } finally {
        this.current = undefined;
      }
    };
    const result = this.chain.then(run, run);
    this.chain = result.catch(() => undefined);
    return result;
  }

  private setDetail(detail: string): void {
    if (this.current !== undefined) this.current.detail = detail;
  }

  private noteError(task: MaintenanceTask, error: unknown): void {
    this.lastErrors.push({ atMs: this.nowMs(), task, message: error instanceof Error ? error.message : String(error) });
    if (this.lastErrors.length > limits.lastErrorsMax) this.lastErrors.shift();
  }

  private checkOpen(): void {
    if (this.closed) throw new OvsError("CLOSED", "The maintenance agent is closed.");
  }
}

function orphanId(asdId: string, key: Buffer): string {
  return `${asdId}:${key.toString("hex")}`;
}

/** A garbage record, or undefined (noted nowhere: the manager's checks own the format) when malformed. */
function parseGcRecord(bytes: Buffer, _key: string): GcRecord | undefined {
  try {
    const record = JSON.parse(bytes.toString("utf8")) as GcRecord;
    if (typeof record !== "object" || record === null || typeof record.objectId !== "string" || !/^[0-9a-f]{32}$/.test(record.objectId)) return undefined;
    if (record.kind !== "upload" && record.kind !== "object" && record.kind !== "strays") return undefined;
    return record;
  } catch {
    return undefined;
  }
}


