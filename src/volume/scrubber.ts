// The scrubber: gives back the backend space of clusters nobody can read any more (overwritten,
// trimmed, or seen only by deleted snapshots), while the volume keeps serving I/O
// (docs/ARCHITECTURE.md, "Scrubbing"; formats: docs/formats/tlog.md, snapshots.md, volume-metadata.md).
//
// One round, over the TLogs listed by the backend's snapshots.json (TLogs 1..B; later ones are left alone):
// 1. Examine: read every listed TLog; a Location entry is live if it is the last one of its address in
//    its TLog and its location is the map's value or a history value a snapshot sees, or the map's
//    value comes from a TLog after B (MetadataStore.isLocationLive): a write not yet on the backend
//    does not make the backend's copy garbage — after a node loss, a restart from the backend reads
//    the address from TLogs 1..B, and dropping the entry there lost the old and the new data (found by
//    the model test on the local backend). Per SCO: live clusters / clusters = its live fraction.
// 2. Choose the SCOs under the threshold (at most victimScoCountPerRoundMax per round, which bounds the
//    memory of the round) and plan: their live clusters, in (SCO, offset) order, go to new SCOs with new
//    numbers (never an existing name); every TLog naming a chosen SCO is rewritten under a new name with
//    the same seq (so snapshot cuts and map seqs do not move): live entries kept (moved ones pointing at
//    the new SCOs), dead entries dropped, Trim entries kept, SCO CRC entries of chosen SCOs dropped and
//    those of the new SCOs added to the last rewritten TLog.
// 3. Record the intent durably (metadata value `scrub`, phase "prepared": what it creates and replaces).
// 4. Copy: read the live clusters (local SCO file, else the backend), verify every CRC, write the new
//    SCOs, then the new TLogs (fenced puts, throttled to a bandwidth).
// 5. Commit locally, in one LMDB transaction: the moves in the map and the history, the TLog records'
//    new names, and the intent's phase "committed". Reads started after it use the new locations.
// 6. Publish: rewrite snapshots.json with the new TLog names: the backend's commit point. Before it a
//    restart from the backend sees the old state (whole: nothing old is deleted yet), after it the new.
// 7. Wait until no read that may still use an old location is in flight, delete the old SCOs and TLogs
//    (fenced), drop the intent.
// A crash leaves the intent: the next open undoes a "prepared" scrub (deletes what it created; nothing
// names it) and finishes a "committed" one (publish again, delete the old objects); see
// finishInterruptedScrub. A restart from the backend needs no intent: it rebuilds from whichever
// snapshots.json is there and deletes what that one does not reach.
//
// Why live is judged from the metadata and not by replaying every TLog: the map and history already
// answer "who can read this location" with one LMDB lookup, and memory stays bounded by one TLog and one
// round's plan, not by the volume's size. Clones read their parent as of a parent snapshot, through the
// parent's history: a value a clone can see is a value a snapshot sees, hence live.
//
// Imported by volume.ts only; it drives the volume through the ScrubHost it is given.

import fsp from "node:fs/promises";
import path from "node:path";
import { randomUUID } from "node:crypto";
import { Crc32cCombiner, crc32cBlocks, OvsError, systemErrorCode, type Logger } from "../base/index.js";
import type { ObjectBackend, ObjectUpdate } from "../backend/index.js";
import type { MetadataStore, Relocation } from "./metadata-store.js";
import { EntryKind, parseTlog, type TlogEntry } from "./tlog-format.js";
import { TlogWriter } from "./tlog-writer.js";
import { parseScoName, scoName } from "./sco-name.js";
import type { SnapshotsObjectTlog } from "./snapshots-object.js";

export const scrubLimits = {
  /** SCOs with a smaller live fraction are rewritten. */
  thresholdDefault: 0.5,
  /** Backend bytes read and written per second by a scrub (0 = no limit). */
  bandwidthBytesPerSecondDefault: 64 * 1024 * 1024,
  /** Bytes a scrub may move at once before the bandwidth limit makes it wait. */
  burstBytesMax: 8 * 1024 * 1024,
  /** SCOs rewritten per round: bounds a round's plan (relocations ≤ this × clusters per SCO). */
  victimScoCountPerRoundMax: 256,
  /** Rounds per scrub (each examines every TLog again). */
  roundCountMax: 64,
  /** New SCOs being uploaded at once (each holds a SCO-sized buffer). */
  uploadsInFlightMax: 4,
  /** Objects per fenced delete (one apply: a few fsyncs on the local backend, whatever its size). */
  deleteBatchCountMax: 256,
  /** Waiting for the TLogs written before the scrub to reach the backend. */
  storeWaitMsMax: 10 * 60 * 1000,
} as const;

export interface ScrubProgress {
  /** examine: TLogs read; rewrite: SCOs rewritten; delete: old objects deleted. */
  phase: "examine" | "rewrite" | "delete";
  done: number;
  total: number;
  round: number;
}

/** Where a test stops a scrub as a crash would (nothing cleaned up); see scrub.test.ts. */
export type ScrubStopPoint = "prepared" | "uploaded" | "committed" | "published" | "deleting";

export interface ScrubOptions {
  /** SCOs whose live fraction is below it are rewritten; (0, 1], default 0.5. */
  threshold?: number;
  /** Backend bytes per second (read and written); 0 = no limit; default 64 MiB/s. */
  bandwidthBytesPerSecond?: number;
  onProgress?: (progress: ScrubProgress) => void;
  /** Tests only: stop at this point as a crash would. */
  stopAt?: ScrubStopPoint;
  /** Tests only: awaited in each round after the examine step, before the plan (writes land there). */
  afterExamineForTest?: () => Promise<void>;
}

export interface ScrubReport {
  threshold: number;
  bandwidthBytesPerSecond: number;
  rounds: number;
  tlogsExamined: number;
  scosExamined: number;
  /** SCOs whose live clusters were moved and which were deleted. */
  scosRewritten: number;
  /** New SCOs written. */
  scosWritten: number;
  tlogsRewritten: number;
  liveBytesRewritten: number;
  /** Bytes of old SCOs and TLogs deleted from the backend. */
  garbageBytesDeleted: number;
  /** garbageBytesDeleted minus the bytes of the new SCOs and TLogs. */
  bytesReclaimed: number;
  durationMs: number;
}

/** What the scrubber needs from its volume (built by Volume.scrubHost). */
export interface ScrubHost {
  readonly name: string;
  readonly namespace: string;
  readonly clusterSizeBytes: number;
  readonly scoSizeBytes: number;
  readonly backend: ObjectBackend;
  readonly log: Logger;
  readonly metadata: MetadataStore;
  readonly scoDir: string;
  readonly tlogDir: string;
  /** Closes the open SCO and TLog; resolves once everything written before is listed on the backend. */
  storeWrittenSoFar(timeoutMs: number): Promise<void>;
  /** The TLogs snapshots.json lists (or is being rewritten to list), in order. */
  backendTlogs(): readonly SnapshotsObjectTlog[];
  /** Renames listed TLogs (seq → new object name) in the in-memory list snapshots.json is written from. */
  renameBackendTlogs(ids: ReadonlyMap<number, string>): void;
  /** Last TLog seqs of the current snapshots, ascending. */
  snapshotSeqs(): number[];
  writeSnapshotsObject(): Promise<void>;
  fencedApply(updates: ObjectUpdate[]): Promise<void>;
  /** Runs after every metadata transaction queued before it. */
  enqueueCommit(work: () => Promise<void>): Promise<void>;
  /** A new SCO number, durably reserved (never reused). */
  allocateScoNumber(): Promise<number>;
  /** Resolves when every read in flight at the call has finished. */
  drainReads(): Promise<void>;
  /** Drops a local copy of a SCO (its backend object is going). */
  forgetLocalSco(scoNumber: number): Promise<void>;
  /** True once the volume closes, halts or is fenced: the scrub stops. */
  stopping(): boolean;
}

// -----------------------------------------------------------------------------------------------------
// The intent record (metadata value `scrub`; docs/formats/volume-metadata.md)

export const scrubIntentKey = "scrub";
export const scrubIntentFormat = "ovs-scrub-intent";

export interface ScrubIntent {
  /** prepared: new objects may exist, nothing names them; committed: the metadata names them. */
  phase: "prepared" | "committed";
  /** Objects the scrub writes: new SCOs, then new TLogs. */
  created: string[];
  /** Objects it replaces: the rewritten SCOs, then the old TLogs. */
  replaced: string[];
}

/** Canonical JSON: fixed key order, no whitespace, no newline. */
export function encodeScrubIntent(intent: ScrubIntent): string {
  return JSON.stringify({ format: scrubIntentFormat, version: 1, phase: intent.phase, created: intent.created, replaced: intent.replaced });
}

export function decodeScrubIntent(text: string): { ok: true; value: ScrubIntent } | { ok: false; reason: string } {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return { ok: false, reason: "the scrub intent is not JSON" };
  }
  const o = raw as Record<string, unknown>;
  if (typeof o !== "object" || o === null || o.format !== scrubIntentFormat) return { ok: false, reason: "bad scrub intent format" };
  if (o.version !== 1) return { ok: false, reason: `unsupported scrub intent version ${String(o.version)}` };
  if (o.phase !== "prepared" && o.phase !== "committed") return { ok: false, reason: "bad scrub intent phase" };
  const isObjectName = (name: unknown): name is string => typeof name === "string" && (parseScoName(name) !== undefined || /^tlog_[0-9a-f-]{36}$/.test(name));
  if (!Array.isArray(o.created) || !o.created.every(isObjectName) || !Array.isArray(o.replaced) || !o.replaced.every(isObjectName)) {
    return { ok: false, reason: "bad object names in the scrub intent" };
  }
  return { ok: true, value: { phase: o.phase, created: o.created, replaced: o.replaced } };
}

// -----------------------------------------------------------------------------------------------------

/** Thrown at a test's stop point: the scrub ends as a crash would, without cleaning up. */
export class ScrubStoppedForTest extends Error {}

/** Token bucket over bytes; 0 = no limit. */
class Throttle {
  private nextFreeMs = 0;
  constructor(private readonly bytesPerSecond: number, private readonly stopping: () => boolean) {}

  async take(bytes: number): Promise<void> {
    if (this.bytesPerSecond === 0 || bytes === 0) return;
    const now = performance.now();
    this.nextFreeMs = Math.max(this.nextFreeMs, now - (scrubLimits.burstBytesMax / this.bytesPerSecond) * 1000) + (bytes / this.bytesPerSecond) * 1000;
    // Sleep in slices so that a closing volume does not wait for a long throttle.
    while (!this.stopping() && performance.now() < this.nextFreeMs) {
      await new Promise((resolve) => setTimeout(resolve, Math.min(100, this.nextFreeMs - performance.now())));
    }
  }
}

export function validateScrubOptions(options: ScrubOptions): { threshold: number; bandwidthBytesPerSecond: number } {
  const threshold = options.threshold ?? scrubLimits.thresholdDefault;
  if (typeof threshold !== "number" || !Number.isFinite(threshold) || threshold <= 0 || threshold > 1) {
    throw new OvsError("INVALID_ARGUMENT", "the scrub threshold is a live fraction above 0 and at most 1 (SCOs less live than it are rewritten)");
  }
  const bandwidthBytesPerSecond = options.bandwidthBytesPerSecond ?? scrubLimits.bandwidthBytesPerSecondDefault;
  if (!Number.isSafeInteger(bandwidthBytesPerSecond) || bandwidthBytesPerSecond < 0) {
    throw new OvsError("INVALID_ARGUMENT", "the scrub bandwidth is a whole number of bytes per second (0 = no limit)");
  }
  return { threshold, bandwidthBytesPerSecond };
}

/** Runs a scrub of the host's volume (see the file header). */
export async function runScrub(host: ScrubHost, options: ScrubOptions): Promise<ScrubReport> {
  const { threshold, bandwidthBytesPerSecond } = validateScrubOptions(options);
  const startedAt = performance.now();
  const report: ScrubReport = {
    threshold, bandwidthBytesPerSecond, rounds: 0, tlogsExamined: 0, scosExamined: 0, scosRewritten: 0, scosWritten: 0, tlogsRewritten: 0,
    liveBytesRewritten: 0, garbageBytesDeleted: 0, bytesReclaimed: 0, durationMs: 0,
  };
  await finishInterruptedScrub(host); // one that failed earlier (e.g. the backend was away)
  await host.storeWrittenSoFar(scrubLimits.storeWaitMsMax);
  const throttle = new Throttle(bandwidthBytesPerSecond, () => host.stopping());
  for (let round = 1; round <= scrubLimits.roundCountMax; round++) {
    report.rounds = round;
    const more = await scrubRound(host, { threshold, round, onProgress: options.onProgress, stopAt: options.stopAt, afterExamineForTest: options.afterExamineForTest }, throttle, report);
    if (!more) break;
  }
  report.durationMs = Math.round((performance.now() - startedAt) * 1000) / 1000;
  host.log.info(report, "scrub finished");
  return report;
}

interface ScoStats {
  clusterCount: number;
  liveCount: number;
  tlogSeqs: Set<number>;
}

/** A live cluster of a rewritten SCO: where it is, where it goes, and its CRC. */
interface Move {
  address: number;
  fromScoNumber: number;
  fromOffsetClusters: number;
  dataCrc: number;
  toIndex: number; // index of the new SCO in the round's plan
  toOffsetClusters: number;
}

/** One round; true if it hit the per-round limit and another round may find more. */
async function scrubRound(
  host: ScrubHost,
  options: { threshold: number; round: number; onProgress: ScrubOptions["onProgress"]; stopAt: ScrubStopPoint | undefined; afterExamineForTest: ScrubOptions["afterExamineForTest"] },
  throttle: Throttle,
  report: ScrubReport,
): Promise<boolean> {
  const { metadata, clusterSizeBytes } = host;
  const clustersPerSco = host.scoSizeBytes / clusterSizeBytes;
  const checkStopping = (): void => {
    if (host.stopping()) throw new OvsError("CLOSED", `volume ${host.name} is closing or halted; the scrub stopped`);
  };
  const stopPoint = (point: ScrubStopPoint): void => {
    if (options.stopAt === point) throw new ScrubStoppedForTest(`scrub stopped at ${point} (test)`);
  };
  await host.enqueueCommit(async () => undefined); // the map commits of every listed TLog have landed
  const tlogs = [...host.backendTlogs()];
  if (tlogs.length === 0) return false;
  const lastSeq = tlogs.at(-1)!.seq;
  const snapshotSeqs = host.snapshotSeqs();

  // 1. Examine.
  const scos = new Map<number, ScoStats>();
  const statsOf = (scoNumber: number): ScoStats => {
    let stats = scos.get(scoNumber);
    if (!stats) scos.set(scoNumber, (stats = { clusterCount: 0, liveCount: 0, tlogSeqs: new Set() }));
    return stats;
  };
  for (const [index, tlog] of tlogs.entries()) {
    checkStopping();
    const entries = await readTlog(host, tlog, throttle);
    const last = lastLocationIndexes(entries);
    for (const [entryIndex, entry] of entries.entries()) {
      if (entry.kind === EntryKind.Location) {
        const stats = statsOf(entry.scoNumber);
        stats.tlogSeqs.add(tlog.seq);
        if (last.get(entry.clusterAddress) === entryIndex && metadata.isLocationLive(entry.clusterAddress, entry.scoNumber, entry.offsetClusters, snapshotSeqs, lastSeq)) stats.liveCount++;
      } else if (entry.kind === EntryKind.ScoCrc) {
        const stats = statsOf(entry.scoNumber);
        stats.tlogSeqs.add(tlog.seq);
        stats.clusterCount = entry.clusterCount;
      }
    }
    options.onProgress?.({ phase: "examine", done: index + 1, total: tlogs.length, round: options.round });
  }
  report.tlogsExamined += tlogs.length;
  if (options.round === 1) report.scosExamined = scos.size;
  await options.afterExamineForTest?.();

  // 2. Choose and plan.
  const chosen = [...scos]
    .filter(([, stats]) => stats.clusterCount > 0 && stats.liveCount / stats.clusterCount < options.threshold)
    .map(([scoNumber]) => scoNumber)
    .sort((a, b) => a - b);
  const limited = chosen.length > scrubLimits.victimScoCountPerRoundMax;
  const victims = new Set(chosen.slice(0, scrubLimits.victimScoCountPerRoundMax));
  if (victims.size === 0) return false;
  const rewriteSeqs = new Set<number>();
  for (const scoNumber of victims) for (const seq of scos.get(scoNumber)!.tlogSeqs) rewriteSeqs.add(seq);
  const rewritten: Array<{ seq: number; oldId: string; newId: string; entries: TlogEntry[] }> = [];
  const moves: Move[] = [];
  for (const tlog of tlogs) {
    if (!rewriteSeqs.has(tlog.seq)) continue;
    checkStopping();
    const entries = await readTlog(host, tlog, throttle);
    const last = lastLocationIndexes(entries);
    const kept: TlogEntry[] = [];
    for (const [entryIndex, entry] of entries.entries()) {
      if (entry.kind === EntryKind.Location) {
        const live = last.get(entry.clusterAddress) === entryIndex && metadata.isLocationLive(entry.clusterAddress, entry.scoNumber, entry.offsetClusters, snapshotSeqs, lastSeq);
        if (!live) continue; // nobody reads it: dropping it changes no state a snapshot or the volume shows
        if (victims.has(entry.scoNumber)) {
          moves.push({ address: entry.clusterAddress, fromScoNumber: entry.scoNumber, fromOffsetClusters: entry.offsetClusters, dataCrc: entry.dataCrc, toIndex: 0, toOffsetClusters: 0 });
        }
        kept.push(entry);
      } else if (entry.kind === EntryKind.Trim) {
        kept.push(entry);
      } else if (entry.kind === EntryKind.ScoCrc) {
        if (!victims.has(entry.scoNumber)) kept.push(entry);
      }
    }
    rewritten.push({ seq: tlog.seq, oldId: tlog.id, newId: `tlog_${randomUUID()}`, entries: kept });
  }
  // New places in (SCO, offset) order: each old SCO is read once, each new SCO filled in turn.
  moves.sort((a, b) => a.fromScoNumber - b.fromScoNumber || a.fromOffsetClusters - b.fromOffsetClusters);
  const combiner = Crc32cCombiner.forLength(clusterSizeBytes);
  const newScos: Array<{ scoNumber: number; clusterCount: number; crc: number }> = [];
  for (const [index, move] of moves.entries()) {
    move.toIndex = Math.floor(index / clustersPerSco);
    move.toOffsetClusters = index % clustersPerSco;
    if (move.toOffsetClusters === 0) newScos.push({ scoNumber: 0, clusterCount: 0, crc: 0 });
    const sco = newScos[move.toIndex]!;
    sco.clusterCount++;
    sco.crc = combiner.combine(sco.crc, move.dataCrc);
  }
  for (const sco of newScos) sco.scoNumber = await host.allocateScoNumber();
  const moveByLocation = new Map<number, Move>(moves.map((move) => [locationKey(move.fromScoNumber, move.fromOffsetClusters), move]));
  const lastRewritten = rewritten.at(-1)!;
  for (const tlog of rewritten) {
    tlog.entries = tlog.entries.map((entry) => {
      if (entry.kind !== EntryKind.Location || !victims.has(entry.scoNumber)) return entry;
      const move = moveByLocation.get(locationKey(entry.scoNumber, entry.offsetClusters))!;
      return { ...entry, scoNumber: newScos[move.toIndex]!.scoNumber, scoVersion: 0, offsetClusters: move.toOffsetClusters };
    });
  }
  for (const sco of newScos) {
    lastRewritten.entries.push({ kind: EntryKind.ScoCrc, cloneId: 0, scoNumber: sco.scoNumber, scoVersion: 0, clusterCount: sco.clusterCount, scoCrc: sco.crc });
  }
  const victimNames = [...victims].map((scoNumber) => scoName({ cloneId: 0, scoNumber, version: 0 }));
  const intent: ScrubIntent = {
    phase: "prepared",
    created: [...newScos.map((sco) => scoName({ cloneId: 0, scoNumber: sco.scoNumber, version: 0 })), ...rewritten.map((tlog) => tlog.newId)],
    replaced: [...victimNames, ...rewritten.map((tlog) => tlog.oldId)],
  };

  // 3. Intent, durably, before anything is written.
  await host.enqueueCommit(async () => {
    await metadata.commit({ values: { [scrubIntentKey]: encodeScrubIntent(intent) } });
    await metadata.flushed();
  });
  stopPoint("prepared");
  let createdBytes = 0;
  let committed = false;
  const uploads = new Set<Promise<void>>(); // never reject: failures land in uploadFailure
  try {
    // 4. Copy the live clusters into the new SCOs (uploadsInFlightMax puts at once, overlapping the
    //    reads of the next old SCOs), then write the new TLogs.
    let buffer = Buffer.allocUnsafe(host.scoSizeBytes);
    let filling = 0; // index of the new SCO being filled
    let uploadFailure: unknown;
    const flushSco = async (): Promise<void> => {
      const sco = newScos[filling]!;
      const data = buffer.subarray(0, sco.clusterCount * clusterSizeBytes);
      await throttle.take(data.length);
      checkStopping();
      while (uploads.size >= scrubLimits.uploadsInFlightMax) await Promise.race(uploads);
      if (uploadFailure !== undefined) throw uploadFailure;
      const upload = host.fencedApply([{ kind: "put", name: scoName({ cloneId: 0, scoNumber: sco.scoNumber, version: 0 }), data }]).then(
        () => void (createdBytes += data.length),
        (error: unknown) => void (uploadFailure ??= error),
      );
      uploads.add(upload);
      void upload.finally(() => uploads.delete(upload));
      buffer = Buffer.allocUnsafe(host.scoSizeBytes); // the put owns the last one until it resolves
      filling++;
    };
    let moveIndex = 0;
    for (const [victimIndex, scoNumber] of [...victims].entries()) {
      checkStopping();
      let end = moveIndex;
      while (end < moves.length && moves[end]!.fromScoNumber === scoNumber) end++;
      const own = moves.slice(moveIndex, end);
      moveIndex = end;
      if (own.length > 0) {
        const data = await readLiveClusters(host, scoNumber, own, throttle);
        for (const [i, move] of own.entries()) {
          if (move.toIndex !== filling) await flushSco();
          data.copy(buffer, move.toOffsetClusters * clusterSizeBytes, i * clusterSizeBytes, (i + 1) * clusterSizeBytes);
        }
      }
      options.onProgress?.({ phase: "rewrite", done: victimIndex + 1, total: victims.size, round: options.round });
    }
    if (filling < newScos.length) await flushSco();
    await Promise.all(uploads);
    if (uploadFailure !== undefined) throw uploadFailure;
    for (const tlog of rewritten) {
      const writer = new TlogWriter({ seq: tlog.seq, id: tlog.newId, clusterSizeBytes });
      for (const entry of tlog.entries) writer.append(entry);
      writer.close();
      const bytes = Buffer.from(writer.takePending().bytes);
      await throttle.take(bytes.length);
      checkStopping();
      while (uploads.size >= scrubLimits.uploadsInFlightMax) await Promise.race(uploads);
      if (uploadFailure !== undefined) throw uploadFailure;
      const upload = host.fencedApply([{ kind: "put", name: tlog.newId, data: bytes }]).then(
        () => void (createdBytes += bytes.length),
        (error: unknown) => void (uploadFailure ??= error),
      );
      uploads.add(upload);
      void upload.finally(() => uploads.delete(upload));
    }
    await Promise.all(uploads);
    if (uploadFailure !== undefined) throw uploadFailure;
    stopPoint("uploaded");

    // 5. The local commit: moves, TLog names and the intent's new phase in one transaction.
    const relocations: Relocation[] = moves.map((move) => ({
      address: move.address, fromScoNumber: move.fromScoNumber, fromOffsetClusters: move.fromOffsetClusters,
      toScoNumber: newScos[move.toIndex]!.scoNumber, toOffsetClusters: move.toOffsetClusters,
    }));
    await host.enqueueCommit(async () => {
      checkStopping();
      const cork = metadata.getCork();
      await metadata.commit({
        relocations,
        tlogs: rewritten.map((tlog) => ({ seq: tlog.seq, id: tlog.newId, closed: true, stored: true })),
        // Every entry of the listed TLogs is in the map; a cork inside one would count old entries.
        ...(cork.seq <= lastSeq ? { cork: { ...cork, seq: lastSeq + 1, entryCount: 0 } } : {}),
        values: { [scrubIntentKey]: encodeScrubIntent({ ...intent, phase: "committed" }) },
      });
      await metadata.flushed();
      committed = true;
    });
    host.renameBackendTlogs(new Map(rewritten.map((tlog) => [tlog.seq, tlog.newId])));
  } catch (error) {
    await Promise.all(uploads); // an upload landing after the undo would leave an object nothing names
    if (!committed && !(error instanceof ScrubStoppedForTest)) await undo(host, intent);
    throw error;
  }
  stopPoint("committed");
  report.tlogsRewritten += rewritten.length;
  report.scosRewritten += victims.size;
  report.scosWritten += newScos.length;
  report.liveBytesRewritten += moves.length * clusterSizeBytes;

  // 6. Publish (the backend's commit point), 7. delete what nothing names any more.
  await host.writeSnapshotsObject();
  stopPoint("published");
  const deletedBytes = await deleteReplaced(host, intent, options);
  report.garbageBytesDeleted += deletedBytes;
  report.bytesReclaimed += deletedBytes - createdBytes;
  return limited;
}

/** Undoes a scrub that did not reach its local commit: deletes what it created (nothing names it). */
async function undo(host: ScrubHost, intent: ScrubIntent): Promise<void> {
  try {
    for (let index = 0; index < intent.created.length; index += scrubLimits.deleteBatchCountMax) {
      await host.fencedApply(intent.created.slice(index, index + scrubLimits.deleteBatchCountMax).map((name) => ({ kind: "delete", name })));
    }
    await host.enqueueCommit(async () => {
      await host.metadata.commit({ values: { [scrubIntentKey]: undefined } });
      await host.metadata.flushed();
    });
  } catch (error) {
    host.log.warn({ err: error }, "undoing a failed scrub stopped; the next open or scrub finishes it");
  }
}

/** Step 7: waits out reads of old locations, deletes the replaced objects and local copies, drops the intent. */
async function deleteReplaced(host: ScrubHost, intent: ScrubIntent, options: { round: number; onProgress: ScrubOptions["onProgress"]; stopAt?: ScrubStopPoint }): Promise<number> {
  await host.drainReads();
  let deletedBytes = 0;
  const total = intent.replaced.length;
  for (let index = 0; index < total; index += scrubLimits.deleteBatchCountMax) {
    const batch = intent.replaced.slice(index, index + scrubLimits.deleteBatchCountMax);
    for (const size of await Promise.all(batch.map((name) => host.backend.sizeBytes(host.namespace, name)))) deletedBytes += size ?? 0;
    await host.fencedApply(batch.map((name) => ({ kind: "delete", name })));
    options.onProgress?.({ phase: "delete", done: Math.min(total, index + batch.length), total, round: options.round });
    if (options.stopAt === "deleting") throw new ScrubStoppedForTest("scrub stopped while deleting (test)");
  }
  for (const name of intent.replaced) {
    const id = parseScoName(name);
    if (id) await host.forgetLocalSco(id.scoNumber);
    else await fsp.rm(path.join(host.tlogDir, name), { force: true });
  }
  await host.enqueueCommit(async () => {
    await host.metadata.commit({ values: { [scrubIntentKey]: undefined } });
    await host.metadata.flushed();
  });
  return deletedBytes;
}

/**
 * At open (and before a scrub): a "prepared" intent is undone (the objects it created are deleted:
 * nothing names them), a "committed" one finished (snapshots.json written from the metadata, which names
 * the new TLogs; then the old objects deleted). Both are idempotent.
 */
export async function finishInterruptedScrub(host: ScrubHost): Promise<void> {
  const text = host.metadata.getValue(scrubIntentKey);
  if (text === undefined) return;
  const decoded = decodeScrubIntent(text);
  if (!decoded.ok) throw new OvsError("CORRUPT", `the scrub intent of volume ${host.name} is unreadable: ${decoded.reason}`);
  const intent = decoded.value;
  host.log.info({ phase: intent.phase, created: intent.created.length, replaced: intent.replaced.length }, "finishing an interrupted scrub");
  if (intent.phase === "prepared") {
    for (let index = 0; index < intent.created.length; index += scrubLimits.deleteBatchCountMax) {
      await host.fencedApply(intent.created.slice(index, index + scrubLimits.deleteBatchCountMax).map((name) => ({ kind: "delete", name })));
    }
    await host.enqueueCommit(async () => {
      await host.metadata.commit({ values: { [scrubIntentKey]: undefined } });
      await host.metadata.flushed();
    });
    return;
  }
  await host.writeSnapshotsObject();
  await deleteReplaced(host, intent, { round: 0, onProgress: undefined });
}

function locationKey(scoNumber: number, offsetClusters: number): number {
  return scoNumber * 65536 + offsetClusters;
}

/** Index of the last Location entry of each address in a TLog (only that one can be seen at a cut). */
function lastLocationIndexes(entries: TlogEntry[]): Map<number, number> {
  const last = new Map<number, number>();
  for (const [index, entry] of entries.entries()) if (entry.kind === EntryKind.Location) last.set(entry.clusterAddress, index);
  return last;
}

/** A listed TLog's entries: from the local file while it is there, else from the backend. */
async function readTlog(host: ScrubHost, tlog: SnapshotsObjectTlog, throttle: Throttle): Promise<TlogEntry[]> {
  let bytes: Buffer;
  try {
    bytes = await fsp.readFile(path.join(host.tlogDir, tlog.id));
  } catch (error) {
    if (systemErrorCode(error) !== "ENOENT") throw error;
    bytes = await host.backend.get(host.namespace, tlog.id);
    await throttle.take(bytes.length);
  }
  const parsed = parseTlog(bytes);
  if (parsed.tailReason !== undefined || !parsed.closed) throw new OvsError("CORRUPT", `TLog ${tlog.id} of volume ${host.name} is damaged: ${parsed.tailReason ?? "not closed"}`);
  return parsed.entries.filter((entry) => entry.kind !== EntryKind.TlogCrc);
}

/**
 * The clusters of `moves` (one SCO, ascending offsets), verified against their CRCs: from the local SCO
 * file if there is one and it verifies, else by partial gets from the backend. Bytes that fail their CRC
 * are never copied (CHECKSUM_MISMATCH stops the scrub, which then undoes itself).
 */
async function readLiveClusters(host: ScrubHost, scoNumber: number, moves: Move[], throttle: Throttle): Promise<Buffer> {
  const clusterSize = host.clusterSizeBytes;
  const name = scoName({ cloneId: 0, scoNumber, version: 0 });
  const ranges: Array<{ offsetBytes: number; lengthBytes: number }> = [];
  for (const move of moves) {
    const last = ranges.at(-1);
    if (last && last.offsetBytes + last.lengthBytes === move.fromOffsetClusters * clusterSize) last.lengthBytes += clusterSize;
    else ranges.push({ offsetBytes: move.fromOffsetClusters * clusterSize, lengthBytes: clusterSize });
  }
  const data = Buffer.allocUnsafe(moves.length * clusterSize);
  const crcs = new Uint32Array(moves.length);
  const verified = (): boolean => {
    crc32cBlocks(data, clusterSize, crcs);
    return moves.every((move, i) => crcs[i] === move.dataCrc);
  };
  try {
    const file = await fsp.open(path.join(host.scoDir, name), "r");
    try {
      let at = 0;
      for (const range of ranges) {
        const { bytesRead } = await file.read(data, at, range.lengthBytes, range.offsetBytes);
        if (bytesRead !== range.lengthBytes) throw new OvsError("IO_ERROR", `local SCO ${name} is short`);
        at += range.lengthBytes;
      }
    } finally {
      await file.close();
    }
    if (verified()) return data;
    host.log.warn({ sco: name }, "scrub: the local SCO copy failed its checksum; reading from the backend");
  } catch (error) {
    if (systemErrorCode(error) !== "ENOENT") host.log.warn({ sco: name, err: error }, "scrub: local SCO read failed; reading from the backend");
  }
  const parts = await host.backend.getRanges(host.namespace, name, ranges);
  let at = 0;
  for (const part of parts) {
    part.copy(data, at);
    at += part.length;
  }
  if (at !== data.length) throw new OvsError("IO_ERROR", `the backend returned ${at} bytes instead of ${data.length} for SCO ${name}`);
  await throttle.take(data.length);
  if (!verified()) throw new OvsError("CHECKSUM_MISMATCH", `SCO ${name} of volume ${host.name} failed its checksum on the backend; the scrub stopped and changed nothing`);
  return data;
}
