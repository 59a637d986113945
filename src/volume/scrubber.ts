// The scrubber: gives back the backend space of clusters nobody can read any more (overwritten,
// trimmed, or seen only by deleted snapshots), while the volume keeps serving I/O
// (docs/ARCHITECTURE.md, "Scrubbing"; formats: docs/formats/tlog.md, snapshots.md, volume-metadata.md).
//
// One round, over the TLogs listed by the backend's snapshots.json (TLogs 1..B; later ones are left alone):
// 1. Examine: read every listed TLog (the scrub's TLog cache, else the local file, else the backend) and
//    scan it in place; a Location entry is live if it is the last one of its address in its TLog and
//    its location is the map's value or a history value a snapshot sees, or the map's value comes from
//    a TLog after B (MetadataStore.isLocationLive): a write not yet on the backend does not make the
//    backend's copy garbage — after a node loss, a restart from the backend reads the address from
//    TLogs 1..B, and dropping the entry there lost the old and the new data (found by the model test on
//    the local backend). The verdict is kept as a bit per entry for the plan. Per SCO: live clusters /
//    clusters = its live fraction.
// 2. Choose the SCOs under the threshold (at most victimScoCountPerRoundMax per round, which bounds the
//    memory of the round) and plan: their live clusters, in (SCO, offset) order, go to new SCOs with new
//    numbers (never an existing name); every TLog naming a chosen SCO is rewritten under a new name with
//    the same seq (so snapshot cuts and map seqs do not move): live entries kept (moved ones pointing at
//    the new SCOs), dead entries dropped, Trim entries kept, SCO CRC entries of chosen SCOs dropped and
//    those of the new SCOs added to the last rewritten TLog. Liveness only goes from live to dead while
//    a scrub runs, so the examine's verdicts stand; one that died since is like a write during step 4.
// 3. Record the intent durably (metadata value `scrub`, phase "prepared": what it creates and replaces).
// 4. Copy: read the live clusters (local SCO file, else the backend; the next SCO while this one is
//    copied), verify every CRC, write the new SCOs, then the new TLogs (fenced puts, a few at once,
//    throttled to a bandwidth).
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
// answer "who can read this location" with one LMDB lookup, and memory stays bounded by the TLog cache,
// the verdict bits (both with a budget, past which they are read or looked up again) and one round's
// plan, not by the volume's size. Clones read their parent as of a parent snapshot, through the
// parent's history: a value a clone can see is a value a snapshot sees, hence live.
//
// Imported by volume.ts only; it drives the volume through the ScrubHost it is given.

import fsp from "node:fs/promises";
import path from "node:path";
import { randomUUID } from "node:crypto";
import { assert, crc32c, crc32cBlocks, OvsError, systemErrorCode, type Logger } from "../base/index.js";
import type { ByteRange, ObjectBackend, ObjectUpdate } from "../backend/index.js";
import type { MetadataStore, Relocation } from "./metadata-store.js";
import {
  checkClosedTlog, decodeTlogEntry, entryAddressAt, entryCloneIdAt, entryCountOrOffsetAt, entryCrcAt, entryKindAt, entryScoNumberAt, entryScoVersionAt,
  EntryKind, tlogEntryOffset,
} from "./tlog-format.js";
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
  /** New SCOs and TLogs being uploaded at once (each SCO holds a SCO-sized buffer). */
  uploadsInFlightMax: 4,
  /** TLog bytes a scrub keeps in memory for its plan and its next rounds (beyond it they are read again). */
  tlogCacheBytesMax: 64 * 1024 * 1024,
  /** The examine's verdicts kept for the plan, a bit per TLog entry (beyond it the plan looks them up again). */
  liveBitsBytesMax: 8 * 1024 * 1024,
  /** Live clusters of an old SCO at most this far apart are read in one range, dead ones between included. */
  readGapBytesMax: 256 * 1024,
  /** Local copies of replaced objects being removed at once. */
  localDeletesInFlightMax: 8,
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
  /** Tests only: smaller limits, to drive several rounds and the paths past the memory budgets. */
  limitsForTest?: Partial<RoundLimits>;
  /** Tests only: awaited in each round once the listed TLogs are known, before the examine judges them. */
  afterListingForTest?: () => Promise<void>;
}

/** The limits a round works within (scrubLimits, unless a test gives smaller ones). */
type RoundLimits = { [key in "victimScoCountPerRoundMax" | "tlogCacheBytesMax" | "liveBitsBytesMax" | "readGapBytesMax"]: number };

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
  /**
   * Wall time per phase, summed over the rounds: examine (read every listed TLog, judge its entries),
   * plan (choose, place, record the intent), copy (read the live clusters, put the new SCOs, encode and
   * put the new TLogs), commit (the local transaction), publish (snapshots.json), delete (wait for
   * reads in flight, delete the old objects and their local copies, drop the intent).
   */
  phaseMs: { examine: number; plan: number; copy: number; commit: number; publish: number; delete: number };
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
    phaseMs: { examine: 0, plan: 0, copy: 0, commit: 0, publish: 0, delete: 0 },
  };
  await finishInterruptedScrub(host); // one that failed earlier (e.g. the backend was away)
  await host.storeWrittenSoFar(scrubLimits.storeWaitMsMax);
  const limits: RoundLimits = { ...scrubLimits, ...options.limitsForTest };
  const context: ScrubContext = {
    limits,
    throttle: new Throttle(bandwidthBytesPerSecond, () => host.stopping()),
    tlogCache: new TlogCache(limits.tlogCacheBytesMax),
    readBuffers: [Buffer.allocUnsafe(host.scoSizeBytes), Buffer.allocUnsafe(host.scoSizeBytes)],
    crcScratch: new Uint32Array(host.scoSizeBytes / host.clusterSizeBytes),
    scoBuffers: [],
  };
  for (let round = 1; round <= scrubLimits.roundCountMax; round++) {
    report.rounds = round;
    const more = await scrubRound(host, { threshold, round, onProgress: options.onProgress, stopAt: options.stopAt, afterListingForTest: options.afterListingForTest }, context, report);
    if (!more) break;
  }
  report.durationMs = Math.round((performance.now() - startedAt) * 1000) / 1000;
  host.log.info(report, "scrub finished");
  return report;
}

/** What one scrub keeps from round to round. */
interface ScrubContext {
  limits: RoundLimits;
  throttle: Throttle;
  tlogCache: TlogCache;
  /** The live clusters of the old SCO being copied and of the next one, at their offsets in it. */
  readBuffers: [Buffer, Buffer];
  crcScratch: Uint32Array;
  /** SCO-sized buffers of new SCOs whose puts have returned (reused only if the backend releasesDataOnReturn). */
  scoBuffers: Buffer[];
}

/** A listed TLog's bytes, checked: entry i is at tlogEntryOffset(i) for i < entryCount. */
interface CheckedTlog {
  bytes: Buffer;
  entryCount: number;
}

/**
 * Checked TLogs by object name, most recently used last, up to a byte budget: the plan reads again the
 * TLogs the examine just read, and the next round every TLog. A name never gets other content (a
 * rewritten TLog gets a new name), so an entry is never stale.
 */
class TlogCache {
  private readonly byName = new Map<string, CheckedTlog>();
  private bytes = 0;
  constructor(private readonly bytesMax: number) {}

  get(name: string): CheckedTlog | undefined {
    const tlog = this.byName.get(name);
    if (tlog !== undefined) {
      this.byName.delete(name);
      this.byName.set(name, tlog);
    }
    return tlog;
  }

  set(name: string, tlog: CheckedTlog): void {
    this.delete(name);
    if (tlog.bytes.length > this.bytesMax) return;
    for (const [oldest] of this.byName) {
      if (this.bytes + tlog.bytes.length <= this.bytesMax) break;
      this.delete(oldest);
    }
    this.byName.set(name, tlog);
    this.bytes += tlog.bytes.length;
  }

  delete(name: string): void {
    const tlog = this.byName.get(name);
    if (tlog === undefined) return;
    this.byName.delete(name);
    this.bytes -= tlog.bytes.length;
  }
}

interface ScoStats {
  clusterCount: number;
  liveCount: number;
  tlogSeqs: Set<number>;
}

/** A live cluster of a rewritten SCO: where it is, where it goes, and its CRC (a Relocation once placed). */
interface Move extends Relocation {
  dataCrc: number;
  toIndex: number; // index of the new SCO in the round's plan
}

/** A TLog the round rewrites under a new name, same seq. */
interface RewrittenTlog {
  seq: number;
  oldId: string;
  newId: string;
  /** The old TLog (until the new one is encoded) and the indexes of the entries it keeps, in order. */
  source: CheckedTlog | undefined;
  kept: number[];
  /** The moves of its kept entries that name a rewritten SCO, in entry order. */
  moves: Move[];
  /** The new TLog's bytes, once the new places are known. */
  bytes: Buffer;
}

interface NewSco {
  scoNumber: number;
  clusterCount: number;
  crc: number;
}

/** One round; true if it hit the per-round limit and another round may find more. */
async function scrubRound(
  host: ScrubHost,
  options: { threshold: number; round: number; onProgress: ScrubOptions["onProgress"]; stopAt: ScrubStopPoint | undefined; afterListingForTest: ScrubOptions["afterListingForTest"] },
  context: ScrubContext,
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
  let phaseStartedAt = performance.now();
  const endPhase = (phase: keyof ScrubReport["phaseMs"]): void => {
    const now = performance.now();
    report.phaseMs[phase] = Math.round((report.phaseMs[phase] + now - phaseStartedAt) * 1000) / 1000;
    phaseStartedAt = now;
  };
  await host.enqueueCommit(async () => undefined); // the map commits of every listed TLog have landed
  const tlogs = [...host.backendTlogs()];
  if (tlogs.length === 0) return false;
  const lastSeq = tlogs.at(-1)!.seq;
  const snapshotSeqs = host.snapshotSeqs();
  await options.afterListingForTest?.();

  // 1. Examine: each listed TLog scanned once, one metadata lookup per entry that may be live; the
  //    verdicts are kept (a bit per entry) for the plan.
  const scos = new Map<number, ScoStats>();
  const examined: Array<{ tlog: SnapshotsObjectTlog; live: Uint8Array | undefined }> = [];
  const seen = new Set<number>();
  let liveBitsBytes = 0;
  const prefetch = (index: number): Promise<CheckedTlog> | undefined => {
    if (index >= tlogs.length) return undefined;
    const reading = readCheckedTlog(host, tlogs[index]!, context);
    reading.catch(() => undefined); // awaited in turn; this only keeps a failure met early from being unhandled
    return reading;
  };
  let reading = prefetch(0);
  for (const [index, tlog] of tlogs.entries()) {
    checkStopping();
    const current = reading!;
    reading = prefetch(index + 1); // the next TLog is read while this one is judged
    const { bytes, entryCount } = await current;
    const live = markLive(metadata, bytes, entryCount, snapshotSeqs, seen, lastSeq);
    let statsScoNumber = -1;
    let stats: ScoStats | undefined;
    for (let i = 0; i < entryCount; i++) {
      const at = tlogEntryOffset(i);
      const kind = entryKindAt(bytes, at);
      if (kind !== EntryKind.Location && kind !== EntryKind.ScoCrc) continue;
      const scoNumber = entryScoNumberAt(bytes, at);
      if (scoNumber !== statsScoNumber || stats === undefined) {
        stats = scos.get(scoNumber);
        if (stats === undefined) scos.set(scoNumber, (stats = { clusterCount: 0, liveCount: 0, tlogSeqs: new Set() }));
        stats.tlogSeqs.add(tlog.seq);
        statsScoNumber = scoNumber;
      }
      if (kind === EntryKind.ScoCrc) stats.clusterCount = entryCountOrOffsetAt(bytes, at);
      else if (isMarked(live, i)) stats.liveCount++;
    }
    const keep = liveBitsBytes + live.length <= context.limits.liveBitsBytesMax;
    if (keep) liveBitsBytes += live.length;
    examined.push({ tlog, live: keep ? live : undefined });
    options.onProgress?.({ phase: "examine", done: index + 1, total: tlogs.length, round: options.round });
  }
  report.tlogsExamined += tlogs.length;
  if (options.round === 1) report.scosExamined = scos.size;
  endPhase("examine");

  // 2. Choose and plan. The examine's verdicts stand: while a scrub runs a location only ever goes from
  //    live to dead (no rollback; a snapshot taken now sees values current at B or later), and one
  //    judged live that died since is handled like a write landing during the copy: its relocation
  //    finds nothing to move.
  const chosen = [...scos]
    .filter(([, stats]) => stats.clusterCount > 0 && stats.liveCount / stats.clusterCount < options.threshold)
    .map(([scoNumber]) => scoNumber)
    .sort((a, b) => a - b);
  const limited = chosen.length > context.limits.victimScoCountPerRoundMax;
  const victims = new Set(chosen.slice(0, context.limits.victimScoCountPerRoundMax));
  if (victims.size === 0) return false;
  const rewriteSeqs = new Set<number>();
  for (const scoNumber of victims) for (const seq of scos.get(scoNumber)!.tlogSeqs) rewriteSeqs.add(seq);
  scos.clear();
  const rewritten: RewrittenTlog[] = [];
  const moves: Move[] = [];
  for (const { tlog, live: examinedLive } of examined) {
    if (!rewriteSeqs.has(tlog.seq)) continue;
    checkStopping();
    const source = await readCheckedTlog(host, tlog, context);
    const { bytes, entryCount } = source;
    const live = examinedLive ?? markLive(metadata, bytes, entryCount, snapshotSeqs, seen, lastSeq);
    const target: RewrittenTlog = { seq: tlog.seq, oldId: tlog.id, newId: `tlog_${randomUUID()}`, source, kept: [], moves: [], bytes: Buffer.alloc(0) };
    for (let i = 0; i < entryCount; i++) {
      const at = tlogEntryOffset(i);
      const kind = entryKindAt(bytes, at);
      if (kind === EntryKind.Location) {
        if (!isMarked(live, i)) continue; // nobody reads it: dropping it changes no state a snapshot or the volume shows
        const scoNumber = entryScoNumberAt(bytes, at);
        if (victims.has(scoNumber)) {
          const move: Move = {
            address: entryAddressAt(bytes, at), fromScoNumber: scoNumber, fromOffsetClusters: entryCountOrOffsetAt(bytes, at), dataCrc: entryCrcAt(bytes, at),
            toIndex: 0, toScoNumber: 0, toOffsetClusters: 0,
          };
          target.moves.push(move);
          moves.push(move);
        }
        target.kept.push(i);
      } else if (kind === EntryKind.Trim || (kind === EntryKind.ScoCrc && !victims.has(entryScoNumberAt(bytes, at)))) {
        target.kept.push(i);
      }
    }
    rewritten.push(target);
  }
  examined.length = 0;
  // New places in (SCO, offset) order: each old SCO is read once, each new SCO filled in turn. (The
  // new SCOs' CRCs are taken from their buffers, made of verified clusters, once filled.)
  moves.sort((a, b) => a.fromScoNumber - b.fromScoNumber || a.fromOffsetClusters - b.fromOffsetClusters);
  const newScos: NewSco[] = [];
  for (const [index, move] of moves.entries()) {
    move.toIndex = Math.floor(index / clustersPerSco);
    move.toOffsetClusters = index % clustersPerSco;
    if (move.toOffsetClusters === 0) newScos.push({ scoNumber: 0, clusterCount: 0, crc: 0 });
    newScos[move.toIndex]!.clusterCount++;
  }
  for (const sco of newScos) sco.scoNumber = await host.allocateScoNumber();
  for (const move of moves) move.toScoNumber = newScos[move.toIndex]!.scoNumber;
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
  endPhase("plan");
  let committed = false;
  const uploads = new Uploads(host, context.throttle, checkStopping);
  try {
    // 4. Copy the live clusters into the new SCOs, then put the new TLogs: uploadsInFlightMax puts at
    //    once, and the read of the next old SCO, overlap the copy of this one.
    const pooled = host.backend.releasesDataOnReturn === true;
    const takeBuffer = (): Buffer => context.scoBuffers.pop() ?? Buffer.allocUnsafe(host.scoSizeBytes);
    let buffer = takeBuffer();
    let filling = 0; // index of the new SCO being filled
    const flushSco = async (): Promise<void> => {
      const sco = newScos[filling]!;
      const full = buffer;
      const data = full.subarray(0, sco.clusterCount * clusterSizeBytes);
      sco.crc = crc32c(data);
      // The put owns the buffer until it returns; then it serves a later SCO.
      await uploads.put(scoName({ cloneId: 0, scoNumber: sco.scoNumber, version: 0 }), data, pooled ? () => void context.scoBuffers.push(full) : undefined);
      buffer = takeBuffer();
      filling++;
    };
    const victimList = [...victims];
    const spans: Array<{ start: number; end: number }> = []; // each victim's moves[start, end)
    for (const scoNumber of victimList) {
      const start = spans.at(-1)?.end ?? 0;
      let end = start;
      while (end < moves.length && moves[end]!.fromScoNumber === scoNumber) end++;
      spans.push({ start, end });
    }
    const read = (index: number): Promise<Buffer> | undefined => {
      const { start, end } = spans[index]!;
      if (end === start) return undefined;
      const reading = readLiveClusters(host, victimList[index]!, moves, start, end, context, index % 2);
      reading.catch(() => undefined); // awaited in turn; this only keeps a failure met early from being unhandled
      return reading;
    };
    let reading = victimList.length > 0 ? read(0) : undefined;
    for (const [victimIndex, { start, end }] of spans.entries()) {
      checkStopping();
      const current = reading;
      reading = victimIndex + 1 < spans.length ? read(victimIndex + 1) : undefined;
      if (current !== undefined) {
        const source = await current;
        // Runs of clusters consecutive in the old SCO and in the same new SCO: one copy each.
        for (let i = start; i < end; ) {
          const move = moves[i]!;
          if (move.toIndex !== filling) await flushSco();
          let next = i + 1;
          while (next < end && moves[next]!.toIndex === move.toIndex && moves[next]!.fromOffsetClusters === moves[next - 1]!.fromOffsetClusters + 1) next++;
          source.copy(buffer, move.toOffsetClusters * clusterSizeBytes, move.fromOffsetClusters * clusterSizeBytes, (move.fromOffsetClusters + next - i) * clusterSizeBytes);
          i = next;
        }
      }
      options.onProgress?.({ phase: "rewrite", done: victimIndex + 1, total: victims.size, round: options.round });
    }
    if (filling < newScos.length) await flushSco();
    context.scoBuffers.push(buffer);
    for (const [index, tlog] of rewritten.entries()) {
      // The last rewritten TLog gets the new SCOs' CRC entries.
      tlog.bytes = encodeRewrittenTlog(tlog, victims, clusterSizeBytes, index === rewritten.length - 1 ? newScos : []);
      tlog.source = undefined;
      await uploads.put(tlog.newId, tlog.bytes);
    }
    await uploads.drain();
    stopPoint("uploaded");
    endPhase("copy");

    // 5. The local commit: moves, TLog names and the intent's new phase in one transaction.
    await host.enqueueCommit(async () => {
      checkStopping();
      const cork = metadata.getCork();
      await metadata.commit({
        relocations: [...moves].sort((a, b) => a.address - b.address), // B-tree order: neighbouring pages
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
    await uploads.settle(); // an upload landing after the undo would leave an object nothing names
    if (!committed && !(error instanceof ScrubStoppedForTest)) await undo(host, intent);
    throw error;
  }
  for (const tlog of rewritten) {
    context.tlogCache.delete(tlog.oldId);
    const checked = checkClosedTlog(tlog.bytes);
    if (checked.ok) context.tlogCache.set(tlog.newId, { bytes: tlog.bytes, entryCount: checked.entryCount });
  }
  endPhase("commit");
  stopPoint("committed");
  report.tlogsRewritten += rewritten.length;
  report.scosRewritten += victims.size;
  report.scosWritten += newScos.length;
  report.liveBytesRewritten += moves.length * clusterSizeBytes;

  // 6. Publish (the backend's commit point), 7. delete what nothing names any more.
  await host.writeSnapshotsObject();
  endPhase("publish");
  stopPoint("published");
  const deletedBytes = await deleteReplaced(host, intent, options);
  endPhase("delete");
  report.garbageBytesDeleted += deletedBytes;
  report.bytesReclaimed += deletedBytes - uploads.storedBytes;
  return limited;
}

/** Fenced puts, at most uploadsInFlightMax at once, through the throttle; the first failure is thrown by a later put or by drain. */
class Uploads {
  /** Bytes of the objects stored so far. */
  storedBytes = 0;
  private readonly inFlight = new Set<Promise<void>>(); // never reject: a failure lands in `failure`
  private failure: unknown;

  constructor(private readonly host: ScrubHost, private readonly throttle: Throttle, private readonly checkStopping: () => void) {}

  /** Returns once the put has started; `settled` runs when it has returned (the data is not used after). */
  async put(name: string, data: Buffer, settled?: () => void): Promise<void> {
    await this.throttle.take(data.length);
    this.checkStopping();
    while (this.inFlight.size >= scrubLimits.uploadsInFlightMax) await Promise.race(this.inFlight);
    if (this.failure !== undefined) throw this.failure;
    const upload: Promise<void> = this.host.fencedApply([{ kind: "put", name, data }]).then(
      () => void (this.storedBytes += data.length),
      (error: unknown) => void (this.failure ??= error),
    ).finally(() => {
      this.inFlight.delete(upload);
      settled?.();
    });
    this.inFlight.add(upload);
  }

  /** Waits for every put; throws the first failure. */
  async drain(): Promise<void> {
    await this.settle();
    if (this.failure !== undefined) throw this.failure;
  }

  /** Waits for every put; never throws. */
  async settle(): Promise<void> {
    await Promise.all([...this.inFlight]);
  }
}

/** The bytes of a rewritten TLog: its kept entries (moved ones pointing at their new places), then `newScos`' CRC entries. */
function encodeRewrittenTlog(tlog: RewrittenTlog, victims: ReadonlySet<number>, clusterSizeBytes: number, newScos: readonly NewSco[]): Buffer {
  const writer = new TlogWriter({ seq: tlog.seq, id: tlog.newId, clusterSizeBytes });
  const source = tlog.source!.bytes;
  let moveIndex = 0;
  for (const index of tlog.kept) {
    const at = tlogEntryOffset(index);
    if (entryKindAt(source, at) !== EntryKind.Location) {
      const decoded = decodeTlogEntry(source, at);
      assert(decoded.ok, "a checked TLog entry decodes");
      writer.append(decoded.entry);
      continue;
    }
    const cloneId = entryCloneIdAt(source, at);
    let scoNumber = entryScoNumberAt(source, at);
    let scoVersion = entryScoVersionAt(source, at);
    let offsetClusters = entryCountOrOffsetAt(source, at);
    if (victims.has(scoNumber)) {
      const move = tlog.moves[moveIndex++]!;
      scoNumber = move.toScoNumber;
      scoVersion = 0;
      offsetClusters = move.toOffsetClusters;
    }
    const clusterAddress = entryAddressAt(source, at);
    const dataCrc = entryCrcAt(source, at);
    if (cloneId === 0 && scoVersion === 0) writer.appendLocation(clusterAddress, scoNumber, offsetClusters, dataCrc);
    else writer.append({ kind: EntryKind.Location, clusterAddress, cloneId, scoNumber, scoVersion, offsetClusters, dataCrc });
  }
  assert(moveIndex === tlog.moves.length, "every move of a rewritten TLog is placed");
  for (const sco of newScos) writer.append({ kind: EntryKind.ScoCrc, cloneId: 0, scoNumber: sco.scoNumber, scoVersion: 0, clusterCount: sco.clusterCount, scoCrc: sco.crc });
  writer.close();
  return Buffer.from(writer.takePending().bytes);
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
  // Local copies go beside the backend's deletes (nothing reads them any more), a few at once.
  const local = (async () => {
    for (let index = 0; index < total; index += scrubLimits.localDeletesInFlightMax) {
      await Promise.all(intent.replaced.slice(index, index + scrubLimits.localDeletesInFlightMax).map(async (name) => {
        const id = parseScoName(name);
        if (id) await host.forgetLocalSco(id.scoNumber);
        else await fsp.rm(path.join(host.tlogDir, name), { force: true });
      }));
    }
  })();
  try {
    for (let index = 0; index < total; index += scrubLimits.deleteBatchCountMax) {
      const batch = intent.replaced.slice(index, index + scrubLimits.deleteBatchCountMax);
      for (const size of await Promise.all(batch.map((name) => host.backend.sizeBytes(host.namespace, name)))) deletedBytes += size ?? 0;
      await host.fencedApply(batch.map((name) => ({ kind: "delete", name })));
      options.onProgress?.({ phase: "delete", done: Math.min(total, index + batch.length), total, round: options.round });
      if (options.stopAt === "deleting") throw new ScrubStoppedForTest("scrub stopped while deleting (test)");
    }
  } finally {
    await local.catch(() => undefined); // settled before the scrub returns or throws
  }
  await local;
  // Not waited to be durable: if a crash loses it, the next open finishes the committed scrub again,
  // which is idempotent (the objects are gone, snapshots.json is rewritten as it is).
  await host.enqueueCommit(() => host.metadata.commit({ values: { [scrubIntentKey]: undefined } }));
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

/**
 * A bit per entry of a checked TLog, set for its live Location entries: the last one of its address in
 * the TLog (only that one can be seen at a cut) whose location the map or a snapshot's history value
 * still holds (MetadataStore.isLocationLive).
 */
function markLive(metadata: MetadataStore, bytes: Buffer, entryCount: number, snapshotSeqs: readonly number[], seen: Set<number>, storedThroughSeq: number): Uint8Array {
  const live = new Uint8Array((entryCount + 7) >>> 3);
  seen.clear();
  for (let i = entryCount - 1; i >= 0; i--) {
    const at = tlogEntryOffset(i);
    if (entryKindAt(bytes, at) !== EntryKind.Location) continue;
    const address = entryAddressAt(bytes, at);
    if (seen.has(address)) continue;
    seen.add(address);
    if (metadata.isLocationLive(address, entryScoNumberAt(bytes, at), entryCountOrOffsetAt(bytes, at), snapshotSeqs, storedThroughSeq)) live[i >>> 3]! |= 1 << (i & 7);
  }
  seen.clear();
  return live;
}

function isMarked(bits: Uint8Array, index: number): boolean {
  return (bits[index >>> 3]! & (1 << (index & 7))) !== 0;
}

/** A listed TLog, checked: from the scrub's cache, else the local file while it is there, else the backend. */
async function readCheckedTlog(host: ScrubHost, tlog: SnapshotsObjectTlog, context: ScrubContext): Promise<CheckedTlog> {
  const cached = context.tlogCache.get(tlog.id);
  if (cached !== undefined) return cached;
  let bytes: Buffer;
  try {
    bytes = await fsp.readFile(path.join(host.tlogDir, tlog.id));
  } catch (error) {
    if (systemErrorCode(error) !== "ENOENT") throw error;
    bytes = await host.backend.get(host.namespace, tlog.id);
    await context.throttle.take(bytes.length);
  }
  const checked = checkClosedTlog(bytes);
  if (!checked.ok) throw new OvsError("CORRUPT", `TLog ${tlog.id} of volume ${host.name} is damaged: ${checked.reason}`);
  const result = { bytes, entryCount: checked.entryCount };
  context.tlogCache.set(tlog.id, result);
  return result;
}

/**
 * The clusters of moves[start, end) (one SCO, ascending offsets), verified against their CRCs, at their
 * offsets in the SCO in context.readBuffers[slot] (what lies between them is undefined): from the local SCO
 * file if there is one and it verifies, else by partial gets from the backend. Live clusters less than
 * readGapBytesMax apart are read in one range with the dead ones between (one request instead of
 * many). Bytes that fail their CRC are never copied (CHECKSUM_MISMATCH stops the scrub, which then
 * undoes itself).
 */
async function readLiveClusters(host: ScrubHost, scoNumber: number, moves: readonly Move[], start: number, end: number, context: ScrubContext, slot: number): Promise<Buffer> {
  const clusterSize = host.clusterSizeBytes;
  const name = scoName({ cloneId: 0, scoNumber, version: 0 });
  const ranges: ByteRange[] = [];
  for (let i = start; i < end; i++) {
    const offsetBytes = moves[i]!.fromOffsetClusters * clusterSize;
    const last = ranges.at(-1);
    if (last !== undefined && offsetBytes - (last.offsetBytes + last.lengthBytes) <= context.limits.readGapBytesMax) last.lengthBytes = offsetBytes + clusterSize - last.offsetBytes;
    else ranges.push({ offsetBytes, lengthBytes: clusterSize });
  }
  const last = ranges.at(-1)!;
  if (context.readBuffers[slot]!.length < last.offsetBytes + last.lengthBytes) context.readBuffers[slot] = Buffer.allocUnsafe(last.offsetBytes + last.lengthBytes);
  const data = context.readBuffers[slot]!;
  const verified = (): boolean => {
    // One CRC call per run of consecutive clusters.
    for (let i = start; i < end; ) {
      let next = i + 1;
      while (next < end && moves[next]!.fromOffsetClusters === moves[next - 1]!.fromOffsetClusters + 1) next++;
      const first = moves[i]!.fromOffsetClusters;
      if (context.crcScratch.length < next - i) context.crcScratch = new Uint32Array(next - i);
      crc32cBlocks(data.subarray(first * clusterSize, (first + next - i) * clusterSize), clusterSize, context.crcScratch);
      for (let k = i; k < next; k++) if (context.crcScratch[k - i] !== moves[k]!.dataCrc) return false;
      i = next;
    }
    return true;
  };
  try {
    const file = await fsp.open(path.join(host.scoDir, name), "r");
    try {
      for (const range of ranges) {
        const { bytesRead } = await file.read(data, range.offsetBytes, range.lengthBytes, range.offsetBytes);
        if (bytesRead !== range.lengthBytes) throw new OvsError("IO_ERROR", `local SCO ${name} is short`);
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
  let bytes = 0;
  for (const [index, part] of parts.entries()) {
    const range = ranges[index]!;
    if (part.length !== range.lengthBytes) throw new OvsError("IO_ERROR", `the backend returned ${part.length} bytes instead of ${range.lengthBytes} of SCO ${name}`);
    part.copy(data, range.offsetBytes);
    bytes += part.length;
  }
  await context.throttle.take(bytes);
  if (!verified()) throw new OvsError("CHECKSUM_MISMATCH", `SCO ${name} of volume ${host.name} failed its checksum on the backend; the scrub stopped and changed nothing`);
  return data;
}
