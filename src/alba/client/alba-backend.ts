// AlbaBackend: the ALBA client (the original's proxy role, in-process for the node) implementing
// ObjectBackend on an AlbaManager (cluster store) and the ASDs it registers. Passes the ObjectBackend
// contract suite (alba-backend.test.ts). Imported through src/alba/client/index.ts.
//
// Upload: the object is cut into chunks of k × the preset's fragment size; the first satisfiable policy
// is chosen for the object; each chunk is encoded by the fragment pipeline and its k+m fragments are
// written in parallel (AsdClient.apply) to the ASDs placement picks, under keys unique to the upload's
// random object id (docs/formats/alba-keys.md), so an overwrite never touches live fragments. A failed
// fragment write is re-placed on another ASD (fragmentRetriesMax). A chunk is done once c fragments are
// durable plus a slack for stragglers; what is still missing becomes a hole, and late writes are
// recorded as strays. If a chunk cannot reach c, the attempt is abandoned (its fragments are garbage)
// and the upload retried with what was learnt (down or full ASDs, maybe a fallback policy). The manifest
// is then committed in one asserted sequence (nsm.ts). Before the first fragment a garbage record of the
// upload is written, so a crash at any point leaves only recorded garbage.
// Download: every located fragment of a chunk is asked for at once (cached data fragments first); the
// chunk is decoded from the first k that arrive and verify (a copy when they are the data fragments, a
// Reed-Solomon rebuild otherwise); bad fragments are counted against their ASD. The object's CRC32C is
// checked before bytes are returned.
// Partial reads: with compression and encryption none, the bytes of each range are read straight from
// the data fragments (AsdClient.partialGet, or the cache) without decoding; any problem with a chunk
// (hole, down ASD, error, a value the ASD finds corrupt) falls back to a full fetch and decode of that
// chunk. Limit: a partial read is verified by the ASD's checksum of the stored value (bit rot, torn
// writes), not by the fragment's CRC32C, so a value replaced through the protocol by a client holding the
// cluster secret would not be noticed by a partial read (whole reads do notice it).
// Apply: puts are uploaded first, then one commit asserts, per touched name, the manifest read (and the
// caller's asserts: absent, or equal contents: same size and CRC32C, and the same bytes for objects up
// to equalsFetchBytesMax). Racing writers retry their commit (the fragments stay valid), so a plain put
// never fails because of a concurrent put; an assert that no longer holds is ASSERT_FAILED.
//
// Invariants: bytes returned always passed a fragment checksum (or the ASD's value checksum for partial
// reads) and, for whole objects, the object CRC32C; an upload is acknowledged only with ≥ c fragments per
// chunk durable and its manifest committed; every fragment written is referenced by a manifest or by a
// garbage record.
// Buffers: results are owned by the caller. put/apply read the caller's data until they return (data
// fragments are views of it while they are encoded and sent) and keep no reference afterwards.
// Limits: objects up to manifestBytesMax of manifest (about 5.7 GiB with 4+2 and 1 MiB fragments);
// rangeCountMax ranges per getRanges; commitItemsMax updates and assertOnlyItemsMax asserts per
// apply; chunksInFlightMax chunks per object in flight; fragmentCacheBytes; ASD requests are bounded by
// AsdClient; uploadAttemptsMax and commitRetriesMax bound the retry loops.

import { createHash, randomBytes } from "node:crypto";
import { assert, isOvsError, MiB, OvsError, silentLogger, SizeClassPool, type Logger } from "../../base/index.js";
import { validateName, type ByteRange, type ListOptions, type ListPage, type ObjectAssert, type ObjectBackend, type ObjectUpdate } from "../../backend/index.js";
import { AsdClient } from "../asd/index.js";
import { chunkSizesBytesFor, crc32c, FragmentPipeline, packedFragmentBytesFrom, planPartialRead, type CodingPreset, type FragmentSlice } from "../coding/index.js";
import {
  assertOnlyItemsMax, chunkCountMax, commitItemsMax, encodeManifest, fragmentKey, type AlbaManager, type AsdRecord, type CommitItem, type Manifest, type ManifestChunk,
  type ManifestFragment, type ManifestRead, type NamespaceRecord, type NsmStore, type PresetRecord, type StrayFragment,
} from "../manager/index.js";
import { chooseFirstSatisfiable, placeChunk, placeMore, type PlacementCandidate, type Policy, type RandomSource } from "../placement/index.js";
import { AsdPool } from "./asd-pool.js";
import { FragmentCache, type FragmentCacheStatistics } from "./fragment-cache.js";
import { checkListOptions, validateAsserts, validateRanges, validateUpdates } from "./validation.js";

/** Most ranges per getRanges call. */
export const rangeCountMax = 4096;
/** Chunks of one object encoded and in flight at once. */
export const chunksInFlightMax = 4;
/** How often one fragment write is moved to another ASD after a failure. */
export const fragmentRetriesMax = 2;
/** Upload attempts (new object id each) when a chunk cannot reach c fragments. */
export const uploadAttemptsMax = 3;
/** Commit attempts when other writers change the same names meanwhile. */
export const commitRetriesMax = 64;
/** An equals assert compares the bytes of objects up to this size (larger ones: size and CRC32C). */
export const equalsFetchBytesMax = 1 * MiB;
/** Largest encoded manifest: two of them (old and new) must fit one store sequence. */
export const manifestBytesMax = 256 * 1024;
/** A partialGet request carries at most this many items / ranges / bytes. */
/**
 * Packed fragments of uploads (parity, and data fragments with their header in front): reused across
 * chunks instead of allocated per chunk (six 1 MiB Buffers per 4 MiB SCO made V8 run several full GCs a
 * second under sequential writes).
 */
const fragmentPool = new SizeClassPool(64 * 1024, 16 * 1024 * 1024, 32 * 1024 * 1024); // at most 32 MiB idle
const takeFragment = (byteCount: number): Buffer => fragmentPool.take(byteCount);

const partialItemsMax = 512;
const partialBytesMax = 32 * MiB;
/** Offset of the checksum value in a packed fragment header (docs/formats/fragment.md). */
const headerChecksumOffset = 52;

export interface AlbaBackendOptions {
  manager: AlbaManager;
  /** The ASDs' cluster secret. */
  clusterSecret?: string;
  /** Preset of namespaces created through createNamespace (default: the manager's default preset). */
  presetName?: string;
  /** Local fragment cache size (default 64 MiB; 0 turns it off). */
  fragmentCacheBytes?: number;
  /** Also cache data fragments on upload (default false). */
  cacheOnWrite?: boolean;
  requestTimeoutMs?: number;
  connectTimeoutMs?: number;
  /** An ASD that failed a call is left out of placement this long (default 5 s). */
  asdDownMs?: number;
  /** The registry and disk usage are refreshed when older than this (default 10 s). */
  asdRefreshMs?: number;
  /** Error counts and last-seen times go to the manager this often (default 30 s; 0 = only on close). */
  observationsFlushMs?: number;
  /**
   * Which fragments a download asks for: "all" (default, the original's AllFragments: every located
   * fragment at once, decode from the first k) or "data-first" (the k data fragments, parity only after
   * a failure, a bad fragment, or readHedgeMs without an answer): half the I/O of 4+2 when all is well.
   */
  readStrategy?: "all" | "data-first";
  /** data-first: ask the remaining fragments after this long (default 100 ms). */
  readHedgeMs?: number;
  /**
   * Wait for straggling fragment writes once c are durable: 0.5 × the time so far, within [min, max]
   * (default 100, 1000 ms). A write that has not finished by then leaves a hole (less redundancy until
   * repair), so the floor is well above the fsync latency spread of local disks; a dead ASD fails fast
   * and costs no wait.
   */
  uploadSlackMsMin?: number;
  uploadSlackMsMax?: number;
  random?: RandomSource;
  nowMs?: () => number;
  logger?: Logger;
  /** Told of every fragment a read found bad (for maintenance to repair: MaintenanceAgent.reportBadFragment). */
  onBadFragment?: (report: BadFragmentSeen) => void;
}

/** A fragment that came back but failed verification during a read. */
export interface BadFragmentSeen {
  namespace: string;
  name: string;
  objectId: string;
  chunkIndex: number;
  fragmentIndex: number;
  asdId: string;
  version: number;
}

export interface UploadReport {
  objectId: string;
  policyIndex: number;
  policy: Policy;
  /** Fragments not stored (placement found no ASD or the write failed), over all chunks. */
  holeCount: number;
  /** Upload attempts made (1 unless a chunk could not reach c). */
  attemptCount: number;
}

export interface AlbaStatistics {
  uploads: number;
  uploadsWithFallbackPolicy: number;
  uploadsWithHoles: number;
  uploadRetries: number;
  fragmentWriteRetries: number;
  downloads: number;
  /** Chunks decoded from parity because data fragments were missing or bad. */
  chunkRebuilds: number;
  /** Fragments that came back but failed verification (checksum, ASD corrupt, wrong header). */
  badFragments: number;
  partialReads: number;
  partialReadFallbacks: number;
  commitRetries: number;
  cache: FragmentCacheStatistics;
}

interface NamespaceContext {
  record: NamespaceRecord;
  nsm: NsmStore;
}

interface UploadedObject {
  manifest: Manifest;
  bytes: Buffer;
  strays: StrayFragment[];
  report: UploadReport;
}

interface ChunkUpload {
  chunk: ManifestChunk;
  strays: StrayFragment[];
}

export class AlbaBackend implements ObjectBackend {
  readonly description: string;
  readonly manager: AlbaManager;
  private readonly pool: AsdPool;
  private readonly cache: FragmentCache;
  private readonly options: Required<Omit<AlbaBackendOptions, "manager" | "presetName" | "logger" | "clusterSecret" | "onBadFragment">> & { presetName: string | undefined };
  private readonly onBadFragment: ((report: BadFragmentSeen) => void) | undefined;
  private readonly logger: Logger;
  private readonly presets = new Map<string, { record: PresetRecord; loadedAtMs: number }>();
  private readonly pipelines = new Map<string, FragmentPipeline>();
  private lastRefreshMs = 0;
  private refreshing: Promise<void> | undefined;
  private flushTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly counters = {
    uploads: 0, uploadsWithFallbackPolicy: 0, uploadsWithHoles: 0, uploadRetries: 0, fragmentWriteRetries: 0, downloads: 0, chunkRebuilds: 0,
    badFragments: 0, partialReads: 0, partialReadFallbacks: 0, commitRetries: 0,
  };

  private constructor(options: AlbaBackendOptions) {
    this.manager = options.manager;
    this.logger = options.logger ?? silentLogger();
    this.onBadFragment = options.onBadFragment;
    this.options = {
      presetName: options.presetName,
      fragmentCacheBytes: options.fragmentCacheBytes ?? 64 * MiB,
      cacheOnWrite: options.cacheOnWrite ?? false,
      requestTimeoutMs: options.requestTimeoutMs ?? 10_000,
      connectTimeoutMs: options.connectTimeoutMs ?? 2_000,
      asdDownMs: options.asdDownMs ?? 5_000,
      asdRefreshMs: options.asdRefreshMs ?? 10_000,
      observationsFlushMs: options.observationsFlushMs ?? 30_000,
      readStrategy: options.readStrategy ?? "all",
      readHedgeMs: options.readHedgeMs ?? 100,
      uploadSlackMsMin: options.uploadSlackMsMin ?? 100,
      uploadSlackMsMax: Math.max(options.uploadSlackMsMax ?? 1000, options.uploadSlackMsMin ?? 100),
      random: options.random ?? Math.random,
      nowMs: options.nowMs ?? Date.now,
    };
    this.description = `alba:${this.manager.backendId}@${this.manager.store.description}`;
    this.cache = new FragmentCache(this.options.fragmentCacheBytes);
    this.pool = new AsdPool({
      backendId: this.manager.backendId,
      clusterSecret: options.clusterSecret ?? "",
      requestTimeoutMs: this.options.requestTimeoutMs,
      connectTimeoutMs: this.options.connectTimeoutMs,
      downMs: this.options.asdDownMs,
      nowMs: this.options.nowMs,
      logger: this.logger,
    });
  }

  /** Opens the client: loads the ASD registry and asks every ASD for its disk usage. */
  static async open(options: AlbaBackendOptions): Promise<AlbaBackend> {
    const backend = new AlbaBackend(options);
    await backend.refresh();
    if (backend.options.observationsFlushMs > 0) {
      backend.flushTimer = setInterval(() => void backend.flushObservations().catch((error: unknown) => backend.logger.warn({ err: error }, "alba: flushing ASD observations failed")), backend.options.observationsFlushMs);
      backend.flushTimer.unref();
    }
    return backend;
  }

  /**
   * Claims the ASD at host:port for this backend (exclusive: CONFLICT if another backend has it) and
   * registers it in the manager with its node (failure domain) and optional rack/site labels.
   */
  async claimAsd(target: { host: string; port: number; nodeId: string; rack?: string; site?: string }, clusterSecret = ""): Promise<AsdRecord> {
    this.checkOpen();
    const client = await AsdClient.connect({ host: target.host, port: target.port, clusterSecret, backendId: this.manager.backendId, requestTimeoutMs: this.options.requestTimeoutMs });
    try {
      await client.claim();
      const usage = await client.diskUsage();
      const record = await this.manager.registerAsd({ asdId: client.asdId, ...target, capacityBytes: usage.totalBytes, usedBytes: usage.usedBytes });
      this.pool.setRecords([record]);
      return record;
    } finally {
      await client.close();
    }
  }

  /** Reloads the ASD registry and every reachable ASD's disk usage. */
  async refresh(): Promise<void> {
    this.refreshing ??= (async () => {
      try {
        this.pool.setRecords(await this.manager.listAsds());
        await this.pool.refreshUsage();
        this.lastRefreshMs = this.options.nowMs();
      } finally {
        this.refreshing = undefined;
      }
    })();
    return this.refreshing;
  }

  /** Folds error counts, last-seen times and disk usage into the manager's ASD registry. */
  async flushObservations(): Promise<void> {
    const observations = this.pool.takeObservations();
    if (observations.length > 0) await this.manager.recordAsdObservations(observations);
  }

  statistics(): AlbaStatistics {
    return { ...this.counters, cache: this.cache.statistics() };
  }

  // ---- Namespaces ----------------------------------------------------------------------------------

  async createNamespace(namespace: string): Promise<void> {
    this.checkOpen();
    validateName(namespace, "namespace");
    await this.manager.createNamespace(namespace, this.options.presetName);
  }

  async deleteNamespace(namespace: string): Promise<void> {
    this.checkOpen();
    validateName(namespace, "namespace");
    await this.manager.deleteNamespace(namespace);
  }

  async namespaceExists(namespace: string): Promise<boolean> {
    this.checkOpen();
    validateName(namespace, "namespace");
    return (await this.manager.getNamespace(namespace)) !== undefined;
  }

  async listNamespaces(options?: ListOptions): Promise<ListPage> {
    this.checkOpen();
    const checked = checkListOptions(options);
    const page = await this.manager.listNamespaces(checked);
    return { names: page.records.map((record) => record.name), more: page.more };
  }

  // ---- Objects -------------------------------------------------------------------------------------

  async put(namespace: string, name: string, data: Uint8Array): Promise<void> {
    await this.putWithReport(namespace, name, data);
  }

  /** put() that also says which policy the upload used and how many holes it left. */
  async putWithReport(namespace: string, name: string, data: Uint8Array): Promise<UploadReport> {
    this.checkOpen();
    validateName(namespace, "namespace");
    validateName(name, "object name");
    if (!(data instanceof Uint8Array)) throw new OvsError("INVALID_ARGUMENT", "put needs Uint8Array data.");
    const context = await this.namespace(namespace);
    const uploaded = await this.upload(context, name, data);
    await this.commitUpdates(context, [], [{ name, uploaded }]);
    return uploaded.report;
  }

  async get(namespace: string, name: string): Promise<Buffer> {
    this.checkOpen();
    validateName(namespace, "namespace");
    validateName(name, "object name");
    const context = await this.namespace(namespace);
    return this.withFreshManifest(context, namespace, name, (manifest) => this.download(context, manifest));
  }

  /**
   * Runs `read` on the object's manifest; if it fails for want of fragments and the manifest changed
   * meanwhile (repair or rebalance moved fragments, or the object was overwritten), runs it once more on
   * the new manifest. NOT_FOUND if the object does not exist.
   */
  private async withFreshManifest<T>(context: NamespaceContext, namespace: string, name: string, read: (manifest: Manifest) => Promise<T>): Promise<T> {
    let current = await context.nsm.getManifest(context.record.namespaceId, name);
    for (let attempt = 0; ; attempt++) {
      if (current === undefined) throw new OvsError("NOT_FOUND", `Object ${name} does not exist in namespace ${namespace}.`, { namespace, name });
      try {
        return await read(current.manifest);
      } catch (error) {
        if (attempt >= 1 || !(isOvsError(error, "UNAVAILABLE") || isOvsError(error, "CHECKSUM_MISMATCH"))) throw error;
        const again = await context.nsm.getManifest(context.record.namespaceId, name);
        if (again !== undefined && again.bytes.equals(current.bytes)) throw error;
        current = again;
      }
    }
  }

  async getRanges(namespace: string, name: string, ranges: readonly ByteRange[]): Promise<Buffer[]> {
    this.checkOpen();
    validateName(namespace, "namespace");
    validateName(name, "object name");
    validateRanges(ranges, rangeCountMax);
    const context = await this.namespace(namespace);
    return this.withFreshManifest(context, namespace, name, (manifest) => this.readRanges(context, manifest, ranges));
  }

  async sizeBytes(namespace: string, name: string): Promise<number | undefined> {
    this.checkOpen();
    validateName(namespace, "namespace");
    validateName(name, "object name");
    const context = await this.namespace(namespace);
    return (await context.nsm.getManifest(context.record.namespaceId, name))?.manifest.sizeBytes;
  }

  async exists(namespace: string, name: string): Promise<boolean> {
    return (await this.sizeBytes(namespace, name)) !== undefined;
  }

  /** The stored manifest of an object (for tools and tests), or undefined. */
  async manifest(namespace: string, name: string): Promise<Manifest | undefined> {
    this.checkOpen();
    const context = await this.namespace(namespace);
    return (await context.nsm.getManifest(context.record.namespaceId, name))?.manifest;
  }

  async delete(namespace: string, name: string): Promise<boolean> {
    this.checkOpen();
    validateName(namespace, "namespace");
    validateName(name, "object name");
    const context = await this.namespace(namespace);
    for (let attempt = 0; attempt < commitRetriesMax; attempt++) {
      const read = await context.nsm.getManifest(context.record.namespaceId, name);
      if (read === undefined) return false;
      try {
        await context.nsm.commit(context.record.namespaceId, [{ name, previous: read, next: undefined }], this.options.nowMs());
        return true;
      } catch (error) {
        if (!isOvsError(error, "ASSERT_FAILED")) throw error;
        this.counters.commitRetries++;
      }
    }
    throw new OvsError("CONFLICT", `Could not delete ${name}: it kept changing.`, { namespace, name });
  }

  async list(namespace: string, options?: ListOptions): Promise<ListPage> {
    this.checkOpen();
    validateName(namespace, "namespace");
    const checked = checkListOptions(options);
    const context = await this.namespace(namespace);
    return context.nsm.listNames(context.record.namespaceId, checked);
  }

  async apply(namespace: string, asserts: readonly ObjectAssert[], updates: readonly ObjectUpdate[]): Promise<void> {
    this.checkOpen();
    validateName(namespace, "namespace");
    validateAsserts(asserts);
    validateUpdates(updates);
    const last = new Map<string, ObjectUpdate>();
    for (const update of updates) {
      last.delete(update.name);
      last.set(update.name, update);
    }
    if (last.size > commitItemsMax) throw new OvsError("INVALID_ARGUMENT", `An apply changes at most ${commitItemsMax} objects; this one ${last.size}.`);
    const assertOnlyCount = new Set(asserts.map((item) => item.name).filter((name) => !last.has(name))).size;
    if (assertOnlyCount > assertOnlyItemsMax) throw new OvsError("INVALID_ARGUMENT", `An apply asserts at most ${assertOnlyItemsMax} objects it does not change.`);
    const context = await this.namespace(namespace);
    const uploads = await Promise.allSettled(
      [...last.values()].map(async (update) => ({ name: update.name, uploaded: update.kind === "put" ? await this.upload(context, update.name, update.data) : undefined })),
    );
    const changes = uploads.flatMap((outcome) => (outcome.status === "fulfilled" ? [outcome.value] : []));
    const failed = uploads.find((outcome) => outcome.status === "rejected");
    if (failed !== undefined) {
      await this.abandon(context, changes);
      throw (failed as PromiseRejectedResult).reason;
    }
    await this.commitUpdates(context, asserts, changes);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.flushTimer !== undefined) clearInterval(this.flushTimer);
    try {
      await this.flushObservations();
    } catch (error) {
      this.logger.warn({ err: error }, "alba: flushing ASD observations on close failed");
    }
    await this.pool.close();
    this.cache.clear();
  }

  // ---- Commit --------------------------------------------------------------------------------------

  private async commitUpdates(
    context: NamespaceContext,
    asserts: readonly ObjectAssert[],
    changes: ReadonlyArray<{ name: string; uploaded: UploadedObject | undefined }>,
  ): Promise<void> {
    const namespaceId = context.record.namespaceId;
    const changed = new Set(changes.map((change) => change.name));
    const names = [...new Set([...changes.map((change) => change.name), ...asserts.map((item) => item.name)])];
    try {
      for (let attempt = 0; attempt < commitRetriesMax; attempt++) {
        const reads = new Map<string, ManifestRead | undefined>();
        for (let index = 0; index < names.length; index += 128) {
          const batch = names.slice(index, index + 128);
          const values = await context.nsm.getManifests(namespaceId, batch);
          batch.forEach((name, position) => reads.set(name, values[position]));
        }
        for (const item of asserts) {
          const read = reads.get(item.name);
          const holds = item.kind === "absent" ? read === undefined : read !== undefined && (await this.contentEquals(context, read.manifest, item.value));
          if (!holds) {
            throw new OvsError("ASSERT_FAILED", `The assert that ${item.name} is ${item.kind === "absent" ? "absent" : "equal to the given value"} does not hold.`, { name: item.name });
          }
        }
        const items: CommitItem[] = changes.map((change) => ({
          name: change.name,
          previous: reads.get(change.name),
          next: change.uploaded === undefined ? undefined : { bytes: change.uploaded.bytes, manifest: change.uploaded.manifest, strays: change.uploaded.strays },
        }));
        const assertOnly = names.filter((name) => !changed.has(name)).map((name) => ({ name, previous: reads.get(name) }));
        try {
          await context.nsm.commit(namespaceId, items, this.options.nowMs(), assertOnly);
          return;
        } catch (error) {
          if (!isOvsError(error, "ASSERT_FAILED")) throw error;
          this.counters.commitRetries++;
        }
      }
      throw new OvsError("CONFLICT", `The objects ${names.slice(0, 4).join(", ")} kept changing; gave up after ${commitRetriesMax} attempts.`);
    } catch (error) {
      await this.abandon(context, changes);
      throw error;
    }
  }

  private async abandon(context: NamespaceContext, changes: ReadonlyArray<{ uploaded: UploadedObject | undefined }>): Promise<void> {
    for (const change of changes) {
      if (change.uploaded === undefined || change.uploaded.manifest.chunks.length === 0) continue;
      try {
        await context.nsm.abandonUpload(context.record.namespaceId, change.uploaded.manifest.objectId, this.options.nowMs());
      } catch (error) {
        this.logger.warn({ err: error }, "alba: marking an upload abandoned failed (its garbage record ages out instead)");
      }
    }
  }

  /** Whether the object of `manifest` has exactly the bytes `value`. */
  private async contentEquals(context: NamespaceContext, manifest: Manifest, value: Uint8Array): Promise<boolean> {
    if (manifest.sizeBytes !== value.length) return false;
    if (crc32c(value) !== manifest.objectCrc32c) return false;
    if (manifest.sizeBytes > equalsFetchBytesMax) return true;
    const stored = await this.download(context, manifest);
    return stored.equals(value);
  }

  // ---- Upload --------------------------------------------------------------------------------------

  private async upload(context: NamespaceContext, name: string, data: Uint8Array): Promise<UploadedObject> {
    const bytes = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    const objectCrc32c = crc32c(bytes);
    for (let attempt = 1; ; attempt++) {
      await this.refreshIfStale();
      const preset = await this.preset(context.record.presetName);
      const candidates = this.candidates(preset.fragmentSizeMaxBytes);
      let policyIndex = chooseFirstSatisfiable(preset.policies, candidates);
      if (bytes.length === 0) policyIndex = Math.max(0, policyIndex);
      if (policyIndex < 0) placeChunk(preset.policies, candidates, this.options.random); // throws the noSatisfiablePolicy error
      const policy = preset.policies[policyIndex]!;
      const pipeline = this.pipeline(this.codingPreset(preset, policy.k, policy.m, preset.fragmentSizeMaxBytes));
      const objectId = randomBytes(16).toString("hex");
      const chunkSizes = chunkSizesBytesFor(bytes.length, pipeline.chunkSizeMaxBytes);
      const manifestBytesEstimate = 512 + chunkSizes.length * (4 + (policy.k + policy.m) * 29);
      if (chunkSizes.length > chunkCountMax || manifestBytesEstimate > manifestBytesMax) {
        const chunkCountLimit = Math.min(chunkCountMax, Math.floor((manifestBytesMax - 512) / (4 + (policy.k + policy.m) * 29)));
        throw new OvsError("INVALID_ARGUMENT", `An object of ${bytes.length} bytes is too large for preset ${preset.name}: at most ${chunkCountLimit} chunks of ${pipeline.chunkSizeMaxBytes} bytes.`, {
          sizeBytes: bytes.length,
          sizeBytesMax: chunkCountLimit * pipeline.chunkSizeMaxBytes,
        });
      }
      if (chunkSizes.length > 0) await context.nsm.beginUpload(context.record.namespaceId, objectId, this.options.nowMs());
      try {
        const chunkUploads = await mapWindow(chunkSizes, chunksInFlightMax, (sizeBytes, chunkIndex) => {
          const offsetBytes = chunkIndex * pipeline.chunkSizeMaxBytes;
          return this.uploadChunk(context, objectId, chunkIndex, bytes.subarray(offsetBytes, offsetBytes + sizeBytes), pipeline, policy);
        });
        const manifest: Manifest = {
          name, objectId, sizeBytes: bytes.length, objectCrc32c, presetName: preset.name, presetVersion: preset.version, policy: { ...policy }, policyIndex,
          fragmentSizeMaxBytes: preset.fragmentSizeMaxBytes, compression: preset.compression, encryption: preset.encryption, fragmentChecksum: preset.fragmentChecksum,
          timestampMs: this.options.nowMs(), chunks: chunkUploads.map((upload) => upload.chunk),
        };
        if (preset.encryptionKeyHex !== undefined) manifest.encryptionKeySha256 = createHash("sha256").update(Buffer.from(preset.encryptionKeyHex, "hex")).digest("hex");
        const holeCount = manifest.chunks.reduce((sum, chunk) => sum + chunk.fragments.filter((fragment) => fragment === undefined).length, 0);
        this.counters.uploads++;
        if (policyIndex > 0) this.counters.uploadsWithFallbackPolicy++;
        if (holeCount > 0) this.counters.uploadsWithHoles++;
        return {
          manifest,
          bytes: encodeManifest(manifest),
          strays: chunkUploads.flatMap((upload) => upload.strays),
          report: { objectId, policyIndex, policy: { ...policy }, holeCount, attemptCount: attempt },
        };
      } catch (error) {
        if (chunkSizes.length > 0) {
          await context.nsm.abandonUpload(context.record.namespaceId, objectId, this.options.nowMs()).catch(() => undefined);
        }
        if (attempt >= uploadAttemptsMax || !isOvsError(error, "UNAVAILABLE") || error.details?.reason !== "belowMinimum") throw error;
        this.counters.uploadRetries++;
        this.logger.info({ err: error, attempt }, "alba: upload attempt fell short of c fragments; retrying with fresh placement");
      }
    }
  }

  /** Writes one chunk's fragments; resolves once ≥ c are durable (plus slack), rejects if c cannot be reached. */
  private uploadChunk(context: NamespaceContext, objectId: string, chunkIndex: number, chunk: Buffer, pipeline: FragmentPipeline, policy: Policy): Promise<ChunkUpload> {
    // The packed fragments that are not views of `chunk` (the parity, and data fragments with their
    // header copied in front) come from the process's pool and go back once every write has copied
    // them into its request frame (a write encodes its frame synchronously when it calls apply) and the
    // chunk is settled. Not with cache-on-write: the cache keeps the data fragments.
    const pooled = !this.options.cacheOnWrite;
    const allocate = pooled ? takeFragment : undefined;
    const encoded = pipeline.encodeChunk(chunk, allocate ? { allocate } : {});
    const fragmentSizeBytes = encoded.fragmentSizeBytes;
    const candidates = this.candidates(fragmentSizeBytes);
    const placement = placeChunk([policy], candidates, this.options.random);
    const namespaceId = context.record.namespaceId;
    const startMs = performance.now();
    type Slot = { asdId: string | undefined; status: "idle" | "pending" | "ok" | "failed"; retries: number; uncertain: string[] };
    const slots: Slot[] = placement.asdIds.map((asdId) => ({ asdId, status: "idle", retries: 0, uncertain: [] }));
    const tried = new Set<string>(placement.asdIds.filter((asdId): asdId is string => asdId !== undefined));
    const key = (fragmentIndex: number) => fragmentKey(namespaceId, objectId, chunkIndex, fragmentIndex, 0);
    const values = encoded.fragments.map((fragment) => packedFragmentBytesFrom(fragment, allocate));
    const valueCrcs = values.map((value) => crc32c(value));
    let writesNotYetSent = 0;
    let valuesReleased = false;
    const releaseValuesWhenDone = () => {
      if (!pooled || valuesReleased || !settled || writesNotYetSent > 0) return;
      valuesReleased = true;
      for (const value of values) fragmentPool.release(value); // ignores views of the chunk
    };
    const nodeOf = new Map(this.pool.all().map((state) => [state.record.asdId, state.record.nodeId]));

    let settled = false;
    return new Promise<ChunkUpload>((resolve, reject) => {
      let durable = 0;
      let slackTimer: NodeJS.Timeout | undefined;
      const finish = () => {
        if (settled) return;
        settled = true;
        if (slackTimer !== undefined) clearTimeout(slackTimer);
        const strays: StrayFragment[] = [];
        const fragments: Array<ManifestFragment | undefined> = slots.map((slot, fragmentIndex) => {
          for (const asdId of slot.uncertain) strays.push({ asdId, chunkIndex, fragmentIndex, version: 0 });
          if (slot.status === "pending" && slot.asdId !== undefined) strays.push({ asdId: slot.asdId, chunkIndex, fragmentIndex, version: 0 });
          if (slot.status !== "ok") return undefined;
          const fragment = encoded.fragments[fragmentIndex]!;
          return { asdId: slot.asdId!, version: 0, checksumValue: fragment.checksumValue, packedSizeBytes: fragment.packedSizeBytes };
        });
        resolve({ chunk: { chunkSizeBytes: encoded.chunkSizeBytes, fragments }, strays });
        releaseValuesWhenDone();
      };
      const check = () => {
        if (settled) return;
        const pendingCount = slots.filter((slot) => slot.status === "pending").length;
        if (durable >= policy.c) {
          if (pendingCount === 0) return finish();
          if (slackTimer === undefined) {
            const slackMs = Math.min(this.options.uploadSlackMsMax, Math.max(this.options.uploadSlackMsMin, 0.5 * (performance.now() - startMs)));
            slackTimer = setTimeout(finish, slackMs);
          }
          return;
        }
        if (pendingCount === 0) {
          settled = true;
          reject(new OvsError("UNAVAILABLE", `Only ${durable} of the ${policy.c} fragments needed of chunk ${chunkIndex} could be stored.`, { reason: "belowMinimum", durable, c: policy.c }));
          releaseValuesWhenDone();
        }
      };
      const write = (fragmentIndex: number) => {
        const slot = slots[fragmentIndex]!;
        const asdId = slot.asdId!;
        slot.status = "pending";
        const value = values[fragmentIndex]!;
        writesNotYetSent++;
        this.pool
          .client(asdId)
          .then(
            (client) => {
              // apply() copies the value into its request frame before it returns its promise.
              const applied = client.apply([], [{ kind: "set", key: key(fragmentIndex), value, crc32c: valueCrcs[fragmentIndex]! }]);
              writesNotYetSent--;
              releaseValuesWhenDone();
              return applied;
            },
            (error: unknown) => {
              writesNotYetSent--;
              releaseValuesWhenDone();
              throw error;
            },
          )
          .then(
            () => {
              this.pool.markSeen(asdId);
              if (settled) return;
              slot.status = "ok";
              durable++;
              if (this.options.cacheOnWrite && fragmentIndex < policy.k) this.cache.put(cacheKey(namespaceId, objectId, chunkIndex, fragmentIndex, 0), value);
              check();
            },
            (error: unknown) => {
              this.pool.markFailure(asdId, error, "write");
              if (isOvsError(error, "TIMEOUT") || (isOvsError(error, "UNAVAILABLE") && this.pool.get(asdId)?.client !== undefined)) slot.uncertain.push(asdId);
              if (settled) return;
              slot.status = "failed";
              if (slot.retries < fragmentRetriesMax) {
                const nodeLoad = new Map<string, number>();
                for (const other of slots) {
                  if (other.asdId === undefined || (other.status !== "ok" && other.status !== "pending")) continue;
                  const nodeId = nodeOf.get(other.asdId) ?? "";
                  nodeLoad.set(nodeId, (nodeLoad.get(nodeId) ?? 0) + 1);
                }
                const [next] = placeMore(policy, this.candidates(fragmentSizeBytes), 1, nodeLoad, tried, this.options.random);
                if (next !== undefined) {
                  slot.retries++;
                  slot.asdId = next;
                  tried.add(next);
                  this.counters.fragmentWriteRetries++;
                  write(fragmentIndex);
                  return;
                }
              }
              check();
            },
          );
      };
      slots.forEach((slot, fragmentIndex) => {
        if (slot.asdId !== undefined) write(fragmentIndex);
      });
      check();
    });
  }

  // ---- Download ------------------------------------------------------------------------------------

  private async download(context: NamespaceContext, manifest: Manifest): Promise<Buffer> {
    this.counters.downloads++;
    if (manifest.sizeBytes === 0) return Buffer.alloc(0);
    const pipeline = await this.pipelineForManifest(manifest);
    let result: Buffer;
    if (manifest.chunks.length === 1) {
      result = await this.fetchChunk(context, manifest, 0, pipeline);
    } else {
      result = Buffer.allocUnsafe(manifest.sizeBytes);
      const chunkStarts: number[] = [];
      let offset = 0;
      for (const chunk of manifest.chunks) {
        chunkStarts.push(offset);
        offset += chunk.chunkSizeBytes;
      }
      await mapWindow(manifest.chunks, chunksInFlightMax, async (_chunk, chunkIndex) => {
        const data = await this.fetchChunk(context, manifest, chunkIndex, pipeline);
        data.copy(result, chunkStarts[chunkIndex]!);
      });
    }
    assert(result.length === manifest.sizeBytes, "a downloaded object has its manifest's size");
    if (crc32c(result) !== manifest.objectCrc32c) {
      throw new OvsError("CHECKSUM_MISMATCH", `Object ${manifest.name} fails its CRC32C after decoding.`, { name: manifest.name });
    }
    return result;
  }

  /** One chunk's bytes: from the first k fragments that arrive and verify (see the header). */
  private fetchChunk(context: NamespaceContext, manifest: Manifest, chunkIndex: number, pipeline: FragmentPipeline): Promise<Buffer> {
    const { k, m } = manifest.policy;
    const chunk = manifest.chunks[chunkIndex]!;
    const namespaceId = context.record.namespaceId;
    const slots: Array<Buffer | undefined> = new Array<Buffer | undefined>(k + m).fill(undefined);
    const bad = new Set<number>();
    let cachedDataCount = 0;
    for (let fragmentIndex = 0; fragmentIndex < k; fragmentIndex++) {
      if (chunk.fragments[fragmentIndex] === undefined) continue;
      const cached = this.cache.get(cacheKey(namespaceId, manifest.objectId, chunkIndex, fragmentIndex, chunk.fragments[fragmentIndex]!.version));
      if (cached !== undefined) {
        slots[fragmentIndex] = cached;
        cachedDataCount++;
      }
    }
    return new Promise<Buffer>((resolve, reject) => {
      let settled = false;
      let outstanding = 0;
      let requestMore: (count: number) => void = () => undefined;
      const fromCache = new Set(slots.flatMap((slot, index) => (slot === undefined ? [] : [index])));
      const tryDecode = (): void => {
        if (settled) return;
        const present = slots.filter((slot, index) => slot !== undefined && !bad.has(index)).length;
        if (present >= k) {
          try {
            const decoded = pipeline.decodeChunk(slots.map((slot, index) => (bad.has(index) ? undefined : slot)));
            for (const item of decoded.badFragments) markBad(item.fragmentIndex);
            settled = true;
            let rebuilt = false;
            for (let fragmentIndex = 0; fragmentIndex < k; fragmentIndex++) {
              const slot = slots[fragmentIndex];
              if (slot === undefined || bad.has(fragmentIndex)) {
                rebuilt = true;
                continue;
              }
              if (!fromCache.has(fragmentIndex)) this.cache.put(cacheKey(namespaceId, manifest.objectId, chunkIndex, fragmentIndex, chunk.fragments[fragmentIndex]!.version), slot);
            }
            if (rebuilt) this.counters.chunkRebuilds++;
            resolve(decoded.data);
            return;
          } catch (error) {
            if (!isOvsError(error, "UNAVAILABLE")) {
              settled = true;
              reject(error);
              return;
            }
            const badList = (error.details?.badFragments ?? []) as Array<{ fragmentIndex: number }>;
            for (const item of badList) markBad(item.fragmentIndex);
          }
        }
        if (!settled) {
          // Keep enough requests in flight to reach k good fragments (after failures and bad ones).
          const good = slots.filter((slot, index) => slot !== undefined && !bad.has(index)).length;
          if (good + outstanding < k) requestMore(k - good - outstanding);
        }
        if (outstanding === 0 && !settled) {
          settled = true;
          reject(new OvsError("UNAVAILABLE", `Chunk ${chunkIndex} of ${manifest.name} cannot be read: fewer than ${k} of its fragments are available and intact.`, { name: manifest.name, chunkIndex }));
        }
      };
      const markBad = (fragmentIndex: number): void => {
        if (bad.has(fragmentIndex)) return;
        bad.add(fragmentIndex);
        this.counters.badFragments++;
        const fragment = chunk.fragments[fragmentIndex];
        if (fragment !== undefined) {
          this.pool.markBadFragment(fragment.asdId);
          this.onBadFragment?.({ namespace: context.record.name, name: manifest.name, objectId: manifest.objectId, chunkIndex, fragmentIndex, asdId: fragment.asdId, version: fragment.version });
        }
        slots[fragmentIndex] = undefined;
      };
      if (cachedDataCount === k) {
        try {
          const decoded = pipeline.decodeChunk(slots);
          if (decoded.badFragments.length === 0) {
            settled = true;
            resolve(decoded.data);
            return;
          }
        } catch (error) {
          if (!isOvsError(error)) throw error;
        }
        // A cached fragment failed verification: forget the cache's copies and fetch everything.
        for (let fragmentIndex = 0; fragmentIndex < k; fragmentIndex++) slots[fragmentIndex] = undefined;
        fromCache.clear();
      }
      const fetchFragment = (fragmentIndex: number): void => {
        const fragment = chunk.fragments[fragmentIndex]!;
        outstanding++;
        const key = fragmentKey(namespaceId, manifest.objectId, chunkIndex, fragmentIndex, fragment.version);
        this.pool
          .client(fragment.asdId)
          .then((client) => client.multiGet([key]))
          .then(
            ([result]) => {
              this.pool.markSeen(fragment.asdId);
              outstanding--;
              if (result?.status === "ok") {
                const value = result.value;
                const checksumOk = value.length === fragment.packedSizeBytes && value.length >= headerChecksumOffset + 4 && value.readUInt32LE(headerChecksumOffset) === fragment.checksumValue;
                if (!checksumOk) {
                  if (!settled) markBad(fragmentIndex);
                  else this.pool.markBadFragment(fragment.asdId);
                } else if (!settled) {
                  slots[fragmentIndex] = value;
                } else if (fragmentIndex < k) {
                  this.cacheLateFragment(pipeline, value, fragmentIndex, cacheKey(namespaceId, manifest.objectId, chunkIndex, fragmentIndex, fragment.version), fragment.asdId);
                }
              } else if (result?.status === "corrupt") {
                if (!settled) markBad(fragmentIndex);
                else this.pool.markBadFragment(fragment.asdId);
              } else {
                this.pool.markFailure(fragment.asdId, new OvsError("IO_ERROR", `fragment ${result?.status ?? "missing"}`), "read");
              }
              tryDecode();
            },
            (error: unknown) => {
              outstanding--;
              this.pool.markFailure(fragment.asdId, error, "read");
              tryDecode();
            },
          );
      };
      // Data fragments first, then parity; within each, ASDs not marked down first.
      const order = chunk.fragments
        .flatMap((fragment, fragmentIndex) => (fragment === undefined || slots[fragmentIndex] !== undefined ? [] : [fragmentIndex]))
        .sort((a, b) => Number(a >= k) - Number(b >= k) || Number(this.pool.isDown(chunk.fragments[a]!.asdId)) - Number(this.pool.isDown(chunk.fragments[b]!.asdId)) || a - b);
      let nextToRequest = 0;
      requestMore = (count: number): void => {
        while (count > 0 && nextToRequest < order.length) {
          fetchFragment(order[nextToRequest++]!);
          count--;
        }
      };
      if (this.options.readStrategy === "all") {
        requestMore(order.length);
      } else {
        requestMore(k - slots.filter((slot) => slot !== undefined).length);
        const hedgeTimer = setTimeout(() => {
          if (!settled) requestMore(order.length);
        }, this.options.readHedgeMs);
        hedgeTimer.unref();
      }
      tryDecode();
    });
  }

  /** Caches a data fragment that arrived after its chunk was decoded, once it verifies. */
  private cacheLateFragment(pipeline: FragmentPipeline, value: Buffer, fragmentIndex: number, key: string, asdId: string): void {
    if (this.cache.capacityBytes === 0) return;
    try {
      pipeline.unpackFragment(value, fragmentIndex);
    } catch (error) {
      if (!isOvsError(error)) throw error;
      this.counters.badFragments++;
      this.pool.markBadFragment(asdId);
      return;
    }
    this.cache.put(key, value);
  }

  // ---- Partial reads -------------------------------------------------------------------------------

  private async readRanges(context: NamespaceContext, manifest: Manifest, ranges: readonly ByteRange[]): Promise<Buffer[]> {
    const k = manifest.policy.k;
    const chunkSizes = manifest.chunks.map((chunk) => chunk.chunkSizeBytes);
    const slices = planPartialRead(chunkSizes, k, ranges); // OUT_OF_RANGE past the end
    const outputs = ranges.map((range) => Buffer.allocUnsafe(range.lengthBytes));
    if (slices.length === 0) return outputs;
    const pipeline = await this.pipelineForManifest(manifest);
    const byChunk = new Map<number, FragmentSlice[]>();
    for (const slice of slices) {
      const list = byChunk.get(slice.chunkIndex);
      if (list === undefined) byChunk.set(slice.chunkIndex, [slice]);
      else list.push(slice);
    }
    const direct = manifest.compression === "none" && manifest.encryption === "none";
    await mapWindow([...byChunk.entries()], chunksInFlightMax, async ([chunkIndex, chunkSlices]) => {
      if (direct && (await this.readSlicesDirect(context, manifest, chunkIndex, chunkSlices, outputs))) {
        this.counters.partialReads++;
        return;
      }
      if (direct) this.counters.partialReadFallbacks++;
      const data = await this.fetchChunk(context, manifest, chunkIndex, pipeline);
      const fragmentSizeBytes = Math.ceil(manifest.chunks[chunkIndex]!.chunkSizeBytes / k);
      for (const slice of chunkSlices) {
        const start = slice.fragmentIndex * fragmentSizeBytes + slice.fragmentOffsetBytes;
        data.copy(outputs[slice.rangeIndex]!, slice.rangeOffsetBytes, start, start + slice.lengthBytes);
      }
    });
    return outputs;
  }

  /** Reads a chunk's slices from its data fragments (cache or partialGet); false when it must fall back. */
  private async readSlicesDirect(context: NamespaceContext, manifest: Manifest, chunkIndex: number, slices: readonly FragmentSlice[], outputs: Buffer[]): Promise<boolean> {
    const chunk = manifest.chunks[chunkIndex]!;
    const namespaceId = context.record.namespaceId;
    const byAsd = new Map<string, Array<{ fragmentIndex: number; version: number; slices: FragmentSlice[] }>>();
    const cached = new Map<number, Buffer | undefined>();
    for (const slice of slices) {
      const fragment = chunk.fragments[slice.fragmentIndex];
      if (fragment === undefined) return false;
      if (!cached.has(slice.fragmentIndex)) cached.set(slice.fragmentIndex, this.cache.get(cacheKey(namespaceId, manifest.objectId, chunkIndex, slice.fragmentIndex, fragment.version)));
      const hit = cached.get(slice.fragmentIndex);
      if (hit !== undefined) {
        if (hit.length < slice.packedOffsetBytes + slice.lengthBytes) return false;
        hit.copy(outputs[slice.rangeIndex]!, slice.rangeOffsetBytes, slice.packedOffsetBytes, slice.packedOffsetBytes + slice.lengthBytes);
        continue;
      }
      if (this.pool.isDown(fragment.asdId)) return false;
      let items = byAsd.get(fragment.asdId);
      if (items === undefined) byAsd.set(fragment.asdId, (items = []));
      let item = items.find((candidate) => candidate.fragmentIndex === slice.fragmentIndex);
      if (item === undefined) items.push((item = { fragmentIndex: slice.fragmentIndex, version: fragment.version, slices: [] }));
      item.slices.push(slice);
    }
    try {
      await Promise.all(
        [...byAsd.entries()].map(async ([asdId, items]) => {
          const client = await this.pool.client(asdId);
          // One request per batch of slices within the protocol's limits.
          let batch: Array<{ key: Buffer; slices: FragmentSlice[] }> = [];
          let batchRanges = 0;
          let batchBytes = 0;
          const send = async () => {
            if (batch.length === 0) return;
            const current = batch;
            batch = [];
            batchRanges = 0;
            batchBytes = 0;
            const results = await client.partialGet(current.map((entry) => ({ key: entry.key, ranges: entry.slices.map((slice) => ({ offsetBytes: slice.packedOffsetBytes, lengthBytes: slice.lengthBytes })) })));
            results.forEach((result, index) => {
              if (result.status !== "ok") {
                if (result.status === "corrupt") {
                  this.pool.markBadFragment(asdId);
                  this.counters.badFragments++;
                }
                throw new OvsError("IO_ERROR", `partial read of a fragment on ASD ${asdId}: ${result.status}`);
              }
              let position = 0;
              for (const slice of current[index]!.slices) {
                result.value.copy(outputs[slice.rangeIndex]!, slice.rangeOffsetBytes, position, position + slice.lengthBytes);
                position += slice.lengthBytes;
              }
              if (position !== result.value.length) throw new OvsError("CORRUPT", `partial read returned ${result.value.length} bytes, expected ${position}`);
            });
          };
          for (const item of items) {
            for (let start = 0; start < item.slices.length; start += 64) {
              const part = item.slices.slice(start, start + 64);
              const partBytes = part.reduce((sum, slice) => sum + slice.lengthBytes, 0);
              if (batch.length >= partialItemsMax || batchRanges + part.length > 4096 || (batch.length > 0 && batchBytes + partBytes > partialBytesMax)) await send();
              batch.push({ key: fragmentKey(namespaceId, manifest.objectId, chunkIndex, item.fragmentIndex, item.version), slices: part });
              batchRanges += part.length;
              batchBytes += partBytes;
            }
          }
          await send();
          this.pool.markSeen(asdId);
        }),
      );
      return true;
    } catch (error) {
      if (isOvsError(error, "CLOSED")) throw error;
      for (const asdId of byAsd.keys()) if (!isOvsError(error, "IO_ERROR")) this.pool.markFailure(asdId, error, "read");
      return false;
    }
  }

  // ---- Helpers -------------------------------------------------------------------------------------

  private checkOpen(): void {
    if (this.closed) throw new OvsError("CLOSED", "The ALBA backend is closed.");
  }

  private async namespace(name: string): Promise<NamespaceContext> {
    const record = await this.manager.getNamespace(name);
    if (record === undefined) throw new OvsError("NOT_FOUND", `Namespace ${name} does not exist.`, { namespace: name });
    return { record, nsm: await this.manager.nsm(record.nsmId) };
  }

  private async refreshIfStale(): Promise<void> {
    if (this.options.nowMs() - this.lastRefreshMs < this.options.asdRefreshMs) return;
    if (this.refreshing !== undefined) return; // one is under way; use what is known
    void this.refresh().catch((error: unknown) => this.logger.warn({ err: error }, "alba: refreshing the ASD registry failed"));
  }

  private candidates(fragmentSizeBytes: number): PlacementCandidate[] {
    return this.pool.all().map((state) => {
      const record = state.record;
      const freeBytes = state.usage?.freeBytes ?? Math.max(1, record.capacityBytes - record.usedBytes);
      const candidate: PlacementCandidate = {
        asdId: record.asdId,
        nodeId: record.nodeId,
        freeBytes,
        usable: record.state === "claimed" && !this.pool.isDown(record.asdId) && !state.full && (state.usage === undefined || freeBytes > fragmentSizeBytes),
      };
      if (record.rack !== undefined) candidate.rack = record.rack;
      if (record.site !== undefined) candidate.site = record.site;
      return candidate;
    });
  }

  private async preset(name: string): Promise<PresetRecord> {
    const cached = this.presets.get(name);
    if (cached !== undefined && this.options.nowMs() - cached.loadedAtMs < this.options.asdRefreshMs) return cached.record;
    const record = await this.manager.getPreset(name);
    if (record === undefined) throw new OvsError("NOT_FOUND", `The preset ${name} does not exist.`, { preset: name });
    this.presets.set(name, { record, loadedAtMs: this.options.nowMs() });
    return record;
  }

  private codingPreset(preset: PresetRecord, k: number, m: number, fragmentSizeMaxBytes: number): CodingPreset {
    const coding: CodingPreset = { k, m, fragmentSizeMaxBytes, compression: preset.compression, encryption: preset.encryption, checksum: preset.fragmentChecksum };
    if (preset.encryptionKeyHex !== undefined) coding.encryptionKey = Buffer.from(preset.encryptionKeyHex, "hex");
    return coding;
  }

  private async pipelineForManifest(manifest: Manifest): Promise<FragmentPipeline> {
    const preset = await this.preset(manifest.presetName);
    const coding = this.codingPreset(preset, manifest.policy.k, manifest.policy.m, manifest.fragmentSizeMaxBytes);
    coding.compression = manifest.compression;
    coding.encryption = manifest.encryption;
    coding.checksum = manifest.fragmentChecksum;
    if (manifest.encryption === "none") delete coding.encryptionKey;
    return this.pipeline(coding);
  }

  private pipeline(coding: CodingPreset): FragmentPipeline {
    const id = `${coding.k}/${coding.m}/${coding.fragmentSizeMaxBytes}/${coding.compression}/${coding.encryption}/${coding.checksum}/${Buffer.from(coding.encryptionKey ?? new Uint8Array(0)).toString("hex") ?? ""}`;
    let pipeline = this.pipelines.get(id);
    if (pipeline === undefined) {
      pipeline = new FragmentPipeline(coding);
      this.pipelines.set(id, pipeline);
    }
    return pipeline;
  }
}

function cacheKey(namespaceId: number, objectId: string, chunkIndex: number, fragmentIndex: number, version: number): string {
  return `${namespaceId}/${objectId}/${chunkIndex}/${fragmentIndex}/${version}`;
}

/** Maps `items` through `work` with at most `windowSize` in flight; results in order; the first error wins. */
async function mapWindow<T, R>(items: readonly T[], windowSize: number, work: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.min(windowSize, items.length) }, async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await work(items[index]!, index);
    }
  });
  await Promise.all(workers);
  return results;
}
