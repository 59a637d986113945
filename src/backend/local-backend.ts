// LocalBackend: an ObjectBackend on a local directory (the original Open vStorage's LOCAL backend), for
// single-node set-ups, tests and development. Format and protocol: docs/formats/local-backend.md; the
// byte-level codecs live in local-backend-format.ts. Imported through backend/index.ts.
//
// Layout: <dir>/.ovs-local-backend (marker), <dir>/<namespace>/ (one directory per namespace),
// <dir>/<namespace>/<name> (one object file per object). Files whose name starts with "." are ours
// (temporary files, staged apply objects, apply journals) and never listed; valid names cannot start
// with ".", so they never collide with objects.
//
// Invariants:
// - An object file is complete and fsynced before it gets its name (temp file, fdatasync, rename, then
//   fsync of the directory before the call returns), so a crash leaves the old or the new object.
// - Every read verifies what it returns: get checks the header and every block; getRanges checks the
//   header and only the 4 KiB blocks its ranges touch. A failure is CHECKSUM_MISMATCH, never bytes.
// - apply: asserts are checked and updates applied under the namespace's exclusive lock; a fsynced
//   journal is the commit point. Open replays a journal left by a crash (the apply then happened) or,
//   if there is none, deletes staged objects (the apply did not happen). After a commit-point failure
//   inside a running process the backend stops (IO_ERROR) until reopened, which finishes the apply.
// - An apply of exactly one put whose asserts name other objects (a fenced upload) needs no journal: it
//   holds the namespace's lock shared, the asserted objects' locks shared and the written object's lock
//   exclusive, checks the asserts, then puts (one rename), so fenced uploads run in parallel.
// - Other operations hold the namespace's lock shared (put and delete also their object's lock
//   exclusive), so in this process nobody sees half an apply.
// - One process per directory (not enforced across processes).
// - getRanges reuses open files from a bounded handle cache (see "handle cache" below); every change
//   of a name in this process evicts it, so a cached file always has the object's current name. Small
//   objects read by equals-asserts (owner tags) are cached the same way (assertValues).
// Limits: objectSizeBytesMax (1 GiB) per object, rangeCountMax ranges per getRanges, handleCacheCountMax
//   open files and handleCacheTableBytesMax of cached checksum tables,
//   applyAssertCountMax / applyUpdateCountMax per apply; listing reads the whole namespace directory
//   and open reads every namespace directory (fine for the tens of thousands of objects of a volume).
// Buffers: every Buffer returned is newly allocated and owned by the caller (an unaligned getRanges
//   range is a view into its enclosing blocks, also the caller's); Buffers passed in are only read,
//   and only until the call's promise settles.

import { randomBytes } from "node:crypto";
import { close as fsClose, constants as fsConstants, fdatasync as fsFdatasync, open as fsOpen, read as fsRead, writev as fsWritev } from "node:fs";
import { promisify } from "node:util";
import { mkdir, open, readdir, readFile, rename, rm, stat, unlink, type FileHandle } from "node:fs/promises";
import { dirname, join } from "node:path";

import { assert, DirSync, isOvsError, MiB, OvsError, systemErrorCode, WorkerPool } from "../base/index.js";
import {
  decodeJournal,
  decodeObjectHeader,
  encodeJournal,
  encodeObjectPrefix,
  findBadBlock,
  journalFileName,
  linkedDataFileName,
  linkedNameBytesMax,
  objectBlockBytes,
  objectBlockCount,
  objectChecksumBytes,
  objectDataOffsetBytes,
  objectHeaderBytes,
  objectSizeBytesMax,
  parseLinkedDataFileName,
  stagedObjectName,
  type Journal,
  type JournalUpdate,
} from "./local-backend-format.js";
import { checkListOptions, selectPage, validateName, validateRanges } from "./names.js";
import type { ByteRange, ListOptions, ListPage, ObjectAssert, ObjectBackend, ObjectUpdate } from "./object-backend.js";
import type { PutJob, PutOutcome } from "./local-put-worker.js";
import { LockTable } from "./rw-lock.js";

export const rangeCountMax = 4096;
export const handleCacheCountMaxDefault = 256;
export const handleCacheTableBytesMaxDefault = 4 * MiB;
export const applyAssertCountMax = 1000;
export const applyUpdateCountMax = 1000;
/** Workers running puts (local-put-worker.ts): about the uploads a volume keeps in flight, plus one. */
export const putWorkerCountMax = 4;
/** A plain put copies its bytes for the worker up to this size; larger ones run from the event loop. */
export const putCopyBytesMax = 16 * MiB;

// The worker runs compiled JavaScript: from dist/ when this module is itself the TypeScript source
// (vitest), which the test command builds first.
const putWorkerFile = import.meta.url.endsWith(".ts")
  ? new URL("../../dist/src/backend/local-put-worker.js", import.meta.url)
  : new URL("./local-put-worker.js", import.meta.url);
/** Objects up to this size read by equals-asserts are cached (see assertValues), at most this many. */
const assertValueBytesMax = 4096;
const assertValueCountMax = 1024;

/** Checksum-table entries read together with the header on a handle-cache miss: an 8 MiB SCO's table. */
const speculativeTableEntryCount = 2048;
const speculativeReadBytes = objectHeaderBytes + objectChecksumBytes * speculativeTableEntryCount;

interface ObjectHandle {
  key: string;
  fh: FileHandle;
  /** A linked object's data file (its bytes start at offset 0); undefined: the bytes follow the table in fh. */
  dataFh: FileHandle | undefined;
  dataBytes: number;
  /** The whole checksum table, verified against each block read. */
  table: Buffer;
  /** getRanges calls using the handle now; it is closed when this is 0 and it is not cached. */
  useCount: number;
  cached: boolean;
}

function handleKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}
/** Scratch buffers of speculativeReadBytes kept for reuse; more in flight are allocated and dropped. */
const scratchBufferCountMax = 64;

const markerFileName = ".ovs-local-backend";
const markerContent = `${JSON.stringify({ format: "ovs-local-backend", version: 1 })}\n`;
const tempPrefix = ".tmp-";
const stagedPrefix = ".apply-";
const journalPrefix = ".journal-";
const deletingPrefix = ".deleting-";

/** Named points inside apply where a test may simulate a crash (throw, or hang and be killed). */
export type ApplyCrashPoint =
  | "staged" // staged objects written and fsynced, journal not yet written: the apply did not happen
  | "committed" // journal fsynced: the apply happened, no update applied yet
  | "update-applied" // after each update is applied (index passed)
  | "updates-synced"; // every update applied and the directory fsynced, journal not yet removed

export interface LocalBackendOptions {
  /** The backend directory; created if missing. Must be empty or a local backend already. */
  dir: string;
  /** Open object files kept for getRanges (default 256; 0 disables the cache). Each holds a file descriptor. */
  handleCacheCountMax?: number;
  /** Bytes of checksum tables the handle cache may hold (default 4 MiB: 512 tables of 8 MiB SCOs). */
  handleCacheTableBytesMax?: number;
  /** Test seam: called at each crash point of apply. Production leaves it undefined. */
  crashPoint?: (point: ApplyCrashPoint, updateIndex: number) => void | Promise<void>;
}

export class LocalBackend implements ObjectBackend {
  readonly description: string;
  /** Data buffers are only read until the call settles (written to the file, then never again). */
  readonly releasesDataOnReturn = true;
  /** Put updates with a `file` on this file system are stored linked (docs/formats/local-backend.md). */
  readonly linksFiles = true;
  private readonly dir: string;
  private readonly crashPoint: LocalBackendOptions["crashPoint"];
  private readonly locks = new LockTable();
  /**
   * Per-object locks (key "namespace/name"), taken inside a shared namespace lock by put, delete and
   * the single-put apply: writers of one object are serialised, and an asserted object cannot change
   * between the check and the write. Exclusive namespace holders (general applies) need none.
   */
  private readonly objectLocks = new LockTable();
  private readonly dirSyncs = new Map<string, DirSync>();
  private readonly scratchBuffers: Buffer[] = [];
  private readonly handles = new Map<string, ObjectHandle>();
  private readonly handleCacheCountMax: number;
  private readonly handleCacheTableBytesMax: number;
  private handleCacheTableBytes = 0;
  private mutationEpoch = 0;
  /**
   * Verified contents of small objects that equals-asserts read (a volume's owner tag, asserted by every
   * SCO and TLog upload), so a fenced upload does not open and read it each time. Kept coherent like
   * the handle cache: filled only if no name changed during the read, and every change of a name in
   * this process (nameChanged, namespaceChanged) drops it. Oldest first beyond assertValueCountMax.
   */
  private readonly assertValues = new Map<string, Buffer>();
  /**
   * Namespaces that may hold linked objects (data files found at open, or linked since): only there do
   * put, delete and apply look for the data file of the object they replace or remove.
   */
  private readonly linkedNamespaces = new Set<string>();
  /** Directories whose files cannot be linked into the backend (another file system): puts copy them. */
  private readonly unlinkableDirs = new Set<string>();
  private readonly putWorkers = new WorkerPool<PutJob, PutOutcome>(putWorkerFile, putWorkerCountMax, "local-backend-put");
  private closed = false;
  /** Set when an apply failed after its commit point: the directory holds an unfinished journal. */
  private stoppedBy: unknown = undefined;

  private constructor(options: LocalBackendOptions) {
    this.dir = options.dir;
    this.crashPoint = options.crashPoint;
    this.handleCacheCountMax = options.handleCacheCountMax ?? handleCacheCountMaxDefault;
    this.handleCacheTableBytesMax = options.handleCacheTableBytesMax ?? handleCacheTableBytesMaxDefault;
    assert(Number.isSafeInteger(this.handleCacheCountMax) && this.handleCacheCountMax >= 0, "handleCacheCountMax must be >= 0");
    assert(Number.isSafeInteger(this.handleCacheTableBytesMax) && this.handleCacheTableBytesMax >= 0, "handleCacheTableBytesMax must be >= 0");
    this.description = `local:${options.dir}`;
  }

  /** Opens (creating if needed) the backend in `options.dir`, finishing or undoing any apply a crash interrupted. */
  static async open(options: LocalBackendOptions): Promise<LocalBackend> {
    assert(typeof options.dir === "string" && options.dir.length > 0, "LocalBackend.open needs a directory");
    const backend = new LocalBackend(options);
    await backend.recover();
    return backend;
  }

  // ---- namespaces ----

  async createNamespace(namespace: string): Promise<void> {
    this.checkOpen();
    validateName(namespace, "namespace");
    try {
      await mkdir(this.namespaceDir(namespace));
    } catch (error) {
      if (systemErrorCode(error) === "EEXIST") {
        throw new OvsError("ALREADY_EXISTS", `namespace "${namespace}" already exists.`, { namespace });
      }
      throw ioError(error, `create namespace "${namespace}"`, { namespace });
    }
    await this.syncDir(this.dir);
  }

  async deleteNamespace(namespace: string): Promise<void> {
    this.checkOpen();
    validateName(namespace, "namespace");
    await this.locks.withExclusive(namespace, async () => {
      // Rename first, so that the namespace disappears at once; the files go after.
      const doomed = join(this.dir, `${deletingPrefix}${randomHex()}`);
      try {
        await rename(this.namespaceDir(namespace), doomed);
        this.namespaceChanged(namespace);
      } catch (error) {
        if (systemErrorCode(error) === "ENOENT") throw namespaceNotFound(namespace);
        throw ioError(error, `delete namespace "${namespace}"`, { namespace });
      }
      await this.syncDir(this.dir);
      await rm(doomed, { recursive: true, force: true }).catch(() => undefined); // open retries it
      this.dirSyncs.get(this.namespaceDir(namespace))?.close(); // a new namespace of that name is another directory
      this.dirSyncs.delete(this.namespaceDir(namespace));
    });
  }

  async namespaceExists(namespace: string): Promise<boolean> {
    this.checkOpen();
    validateName(namespace, "namespace");
    return this.isNamespaceDir(namespace);
  }

  async listNamespaces(options?: ListOptions): Promise<ListPage> {
    this.checkOpen();
    const checked = checkListOptions(options);
    let entries;
    try {
      entries = await readdir(this.dir, { withFileTypes: true });
    } catch (error) {
      throw ioError(error, "list namespaces", {});
    }
    const names = entries.filter((entry) => entry.isDirectory() && !entry.name.startsWith(".")).map((entry) => entry.name);
    return selectPage(names, checked);
  }

  // ---- objects ----

  async put(namespace: string, name: string, data: Uint8Array): Promise<void> {
    this.checkOpen();
    validateName(namespace, "namespace");
    validateName(name, "object name");
    checkData(data, name);
    await this.locks.withShared(namespace, () => this.objectLocks.withExclusive(`${namespace}/${name}`, () => this.putLocked(namespace, name, data)));
  }

  /**
   * Writes the object durably under a temp name and renames it into place (old or new after a crash).
   * With `file` (see ObjectUpdate), the object may be stored linked: the file is hard-linked as the
   * object's data file and only the header and checksum table are written (docs/formats/local-backend.md).
   * The file-system calls run in a worker, in one go (local-put-worker.ts); a plain put larger than
   * putCopyBytesMax, whose bytes the worker would need a copy of, runs them from here instead.
   */
  private async putLocked(namespace: string, name: string, data: Uint8Array, file?: string, blockCrcs?: Uint32Array): Promise<void> {
    const nsDir = this.namespaceDir(namespace);
    const tempName = `${tempPrefix}${randomHex()}`;
    const replacesLinked = this.linkedNamespaces.has(namespace);
    const prefixBytes = objectDataOffsetBytes(data.length);
    if (file !== undefined && Buffer.byteLength(name) <= linkedNameBytesMax && !this.unlinkableDirs.has(dirname(file))) {
      let linkId = randomHex();
      while (linkId === "0000000000000000") linkId = randomHex();
      const prefix = Buffer.allocUnsafeSlow(prefixBytes); // its own ArrayBuffer, handed to the worker
      encodeObjectPrefix(data, prefix, linkId, blockCrcs !== undefined && blockCrcs.length === objectBlockCount(data.length) ? blockCrcs : undefined);
      this.linkedNamespaces.add(namespace);
      const linked = { file, dataName: linkedDataFileName(linkId, name), sizeBytes: data.length, prefix };
      const outcome = await this.runPut(namespace, name, { nsDir, name, tempName, replacesLinked, linked }, [prefix.buffer]);
      if (outcome.kind === "stored") return;
      if (outcome.kind === "unlinkable" && outcome.permanent) this.unlinkableDirs.add(dirname(file));
      // Not linkable (another file system, a size mismatch, a missing file): written instead.
    }
    if (data.length <= putCopyBytesMax) {
      const bytes = Buffer.allocUnsafeSlow(prefixBytes + data.length);
      encodeObjectPrefix(data, bytes.subarray(0, prefixBytes));
      bytes.set(data, prefixBytes);
      const outcome = await this.runPut(namespace, name, { nsDir, name, tempName, replacesLinked, bytes }, [bytes.buffer]);
      if (outcome.kind === "no-namespace") throw namespaceNotFound(namespace);
      assert(outcome.kind === "stored", "a plain put stores or fails");
      return;
    }
    const replacing = replacesLinked ? readLinkId(nsDir, name) : Promise.resolve(undefined);
    try {
      await this.writeObjectFile(namespace, tempName, data);
    } catch (error) {
      await replacing.catch(() => undefined);
      throw error;
    }
    let replaced: string | undefined;
    try {
      replaced = await replacing;
    } catch (error) {
      await unlink(join(nsDir, tempName)).catch(() => undefined);
      throw error;
    }
    try {
      await rename(join(nsDir, tempName), join(nsDir, name));
      this.nameChanged(namespace, name);
    } catch (error) {
      await unlink(join(nsDir, tempName)).catch(() => undefined);
      throw ioError(error, `put "${namespace}/${name}"`, { namespace, name });
    }
    await this.syncDir(nsDir);
    if (replaced !== undefined) await this.removeDataFile(namespace, replaced, name);
  }

  /** Runs a put job in a worker; the object's name may have changed whatever the outcome. */
  private async runPut(namespace: string, name: string, job: PutJob, transfer: ArrayBuffer[]): Promise<PutOutcome> {
    try {
      return await this.putWorkers.run(job, transfer);
    } catch (error) {
      throw ioError(error, `put "${namespace}/${name}"`, { namespace, name });
    } finally {
      this.nameChanged(namespace, name);
    }
  }

  /**
   * The link id of the object `name` if it is a linked object, read from its header; undefined if it is
   * not linked, is missing, or its header is damaged (an orphaned data file is removed at the next open).
   */
  private async linkIdOf(namespace: string, name: string): Promise<string | undefined> {
    if (!this.linkedNamespaces.has(namespace)) return undefined;
    return readLinkId(this.namespaceDir(namespace), name);
  }

  /** Removes the data file of a linked object that lost its name (best effort: open removes leftovers). */
  private async removeDataFile(namespace: string, linkId: string, name: string): Promise<void> {
    await unlink(join(this.namespaceDir(namespace), linkedDataFileName(linkId, name))).catch(() => undefined);
  }

  async get(namespace: string, name: string): Promise<Buffer> {
    this.checkOpen();
    validateName(namespace, "namespace");
    validateName(name, "object name");
    return this.locks.withShared(namespace, () => this.readObject(namespace, name));
  }

  async getRanges(namespace: string, name: string, ranges: readonly ByteRange[]): Promise<Buffer[]> {
    this.checkOpen();
    validateName(namespace, "namespace");
    validateName(name, "object name");
    validateRanges(ranges, rangeCountMax);
    return this.locks.withShared(namespace, () => this.readRanges(namespace, name, ranges));
  }

  async sizeBytes(namespace: string, name: string): Promise<number | undefined> {
    this.checkOpen();
    validateName(namespace, "namespace");
    validateName(name, "object name");
    return this.locks.withShared(namespace, async () => {
      const fh = await this.openObject(namespace, name, true);
      if (fh === undefined) return undefined;
      const scratch = this.takeScratch();
      try {
        const bytesRead = await readFully(fh, scratch.subarray(0, objectHeaderBytes), 0);
        return verifiedHeader(scratch.subarray(0, bytesRead), namespace, name).dataBytes;
      } catch (error) {
        throw ioError(error, `read "${namespace}/${name}"`, { namespace, name });
      } finally {
        this.returnScratch(scratch);
        await fh.close().catch(() => undefined);
      }
    });
  }

  async exists(namespace: string, name: string): Promise<boolean> {
    this.checkOpen();
    validateName(namespace, "namespace");
    validateName(name, "object name");
    return this.locks.withShared(namespace, () => this.objectExists(namespace, name));
  }

  async delete(namespace: string, name: string): Promise<boolean> {
    this.checkOpen();
    validateName(namespace, "namespace");
    validateName(name, "object name");
    return this.locks.withShared(namespace, () => this.objectLocks.withExclusive(`${namespace}/${name}`, async () => {
      const nsDir = this.namespaceDir(namespace);
      const removed = await this.linkIdOf(namespace, name);
      try {
        await unlink(join(nsDir, name));
        this.nameChanged(namespace, name);
      } catch (error) {
        if (systemErrorCode(error) === "ENOENT") {
          if (!(await this.isNamespaceDir(namespace))) throw namespaceNotFound(namespace);
          return false;
        }
        throw ioError(error, `delete "${namespace}/${name}"`, { namespace, name });
      }
      await this.syncDir(nsDir);
      if (removed !== undefined) await this.removeDataFile(namespace, removed, name);
      return true;
    }));
  }

  async list(namespace: string, options?: ListOptions): Promise<ListPage> {
    this.checkOpen();
    validateName(namespace, "namespace");
    const checked = checkListOptions(options);
    return this.locks.withShared(namespace, async () => {
      let names: string[];
      try {
        names = await readdir(this.namespaceDir(namespace));
      } catch (error) {
        if (systemErrorCode(error) === "ENOENT" || systemErrorCode(error) === "ENOTDIR") throw namespaceNotFound(namespace);
        throw ioError(error, `list namespace "${namespace}"`, { namespace });
      }
      return selectPage(names.filter((entry) => !entry.startsWith(".")), checked);
    });
  }

  async apply(namespace: string, asserts: readonly ObjectAssert[], updates: readonly ObjectUpdate[]): Promise<void> {
    this.checkOpen();
    validateName(namespace, "namespace");
    checkApplyArguments(asserts, updates);
    const single = singlePutOnOtherObjects(asserts, updates);
    if (single !== undefined) {
      // The common fenced write (a volume's SCO or TLog upload asserting its owner tag): one put whose
      // asserts name other objects. It runs beside other puts under object locks and, being one rename,
      // needs no journal. Lock order: object names sorted, so two such applies never deadlock.
      const keys = [...new Set([single.name, ...asserts.map((check) => check.name)])].sort();
      const run = (index: number): Promise<void> => {
        if (index === keys.length) {
          return (async () => {
            this.checkOpen();
            // No separate check that the namespace exists (one event-loop trip fewer per fenced put): an
            // assert that reads the disk reports a missing namespace, and so does the put.
            for (const check of asserts) await this.checkAssert(namespace, check);
            await this.putLocked(namespace, single.name, single.data, single.file, single.blockCrcs);
          })();
        }
        const key = `${namespace}/${keys[index]!}`;
        return keys[index] === single.name ? this.objectLocks.withExclusive(key, () => run(index + 1)) : this.objectLocks.withShared(key, () => run(index + 1));
      };
      await this.locks.withShared(namespace, () => run(0));
      return;
    }
    await this.locks.withExclusive(namespace, async () => {
      this.checkOpen();
      if (!(await this.isNamespaceDir(namespace))) throw namespaceNotFound(namespace);
      for (const check of asserts) await this.checkAssert(namespace, check);

      // The last update of a name wins; the journal then has one update per name, which keeps replay
      // idempotent (a replayed delete can never remove what a later put of the same apply wrote).
      const lastByName = new Map<string, ObjectUpdate>();
      for (const update of updates) {
        lastByName.delete(update.name);
        lastByName.set(update.name, update);
      }
      if (lastByName.size === 0) return;
      const collapsed = [...lastByName.values()];
      const journal: Journal = {
        applyId: randomHex(),
        updates: collapsed.map((update): JournalUpdate => ({ kind: update.kind, name: update.name })),
      };
      await this.commitApply(namespace, journal, collapsed);
      await this.finishApply(namespace, journal);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    this.assertValues.clear();
    for (const sync of this.dirSyncs.values()) sync.close();
    this.dirSyncs.clear();
    for (const handle of [...this.handles.values()]) this.evictHandle(handle);
    await this.putWorkers.close();
  }

  // ---- apply ----

  private async checkAssert(namespace: string, check: ObjectAssert): Promise<void> {
    if (check.kind === "absent") {
      if (await this.objectExists(namespace, check.name)) {
        throw new OvsError("ASSERT_FAILED", `assert failed: "${namespace}/${check.name}" exists.`, { namespace, name: check.name });
      }
      return;
    }
    let current: Buffer;
    const key = handleKey(namespace, check.name);
    try {
      const cached = this.assertValues.get(key);
      if (cached !== undefined) {
        current = cached;
      } else {
        const epoch = this.mutationEpoch;
        current = await this.readObject(namespace, check.name);
        if (epoch === this.mutationEpoch && !this.closed && current.length <= assertValueBytesMax) {
          if (this.assertValues.size >= assertValueCountMax) this.assertValues.delete(this.assertValues.keys().next().value!);
          this.assertValues.set(key, current);
        }
      }
    } catch (error) {
      if (isOvsError(error, "NOT_FOUND")) {
        throw new OvsError("ASSERT_FAILED", `assert failed: "${namespace}/${check.name}" does not exist.`, { namespace, name: check.name });
      }
      throw error;
    }
    if (!current.equals(check.value)) {
      throw new OvsError("ASSERT_FAILED", `assert failed: "${namespace}/${check.name}" has other contents.`, { namespace, name: check.name });
    }
  }

  /** Stages the puts, then writes and fsyncs the journal: on return the apply has happened. */
  private async commitApply(namespace: string, journal: Journal, updates: readonly ObjectUpdate[]): Promise<void> {
    const nsDir = this.namespaceDir(namespace);
    const tempJournal = `${tempPrefix}${randomHex()}`;
    try {
      // allSettled, so that no staged write is still running when the failure path removes them.
      settledOrThrow(await Promise.allSettled(updates.map((update, index) =>
        update.kind === "put" ? this.writeObjectFile(namespace, stagedObjectName(journal.applyId, index), update.data) : undefined)));
      // The staged names must be durable before the journal that refers to them.
      if (updates.some((update) => update.kind === "put")) await this.syncDir(nsDir);
      await this.crashPoint?.("staged", -1);
      await writeDurably(join(nsDir, tempJournal), encodeJournal(journal));
      await rename(join(nsDir, tempJournal), join(nsDir, journalFileName(journal.applyId)));
      await this.syncDir(nsDir);
    } catch (error) {
      // Not committed: the journal is absent or, if the rename reached the disk, open replays it. Either
      // way we may only remove what is certainly not part of a committed apply: the temp journal and,
      // when the journal name is absent, the staged objects.
      await unlink(join(nsDir, tempJournal)).catch(() => undefined);
      const journalPresent = await stat(join(nsDir, journalFileName(journal.applyId))).then(() => true, () => false);
      if (journalPresent) {
        this.stoppedBy = error;
        throw new OvsError("IO_ERROR", `apply in "${namespace}" failed at its commit point; reopen the backend to finish it.`,
          { namespace }, { cause: error });
      }
      await Promise.all(updates.map((_update, index) => unlink(join(nsDir, stagedObjectName(journal.applyId, index))).catch(() => undefined)));
      throw ioError(error, `apply in "${namespace}"`, { namespace });
    }
  }

  /** Applies a committed journal's updates, fsyncs, and removes the journal. */
  private async finishApply(namespace: string, journal: Journal): Promise<void> {
    try {
      await this.crashPoint?.("committed", -1);
      // Linked objects this apply replaces or deletes: their data files go once the apply is durable.
      const replaced: Array<{ linkId: string; name: string }> = [];
      for (const update of journal.updates) {
        const linkId = await this.linkIdOf(namespace, update.name);
        if (linkId !== undefined) replaced.push({ linkId, name: update.name });
      }
      try {
        await replayJournal(this.namespaceDir(namespace), journal, this.crashPoint);
      } finally {
        for (const update of journal.updates) this.nameChanged(namespace, update.name);
      }
      await this.syncDir(this.namespaceDir(namespace));
      for (const { linkId, name } of replaced) await this.removeDataFile(namespace, linkId, name);
      await this.crashPoint?.("updates-synced", -1);
      // No fsync needed: every later mutation of this namespace fsyncs the directory, which persists
      // this unlink first; until then a replay after a crash is idempotent.
      await unlink(join(this.namespaceDir(namespace), journalFileName(journal.applyId)));
    } catch (error) {
      this.stoppedBy = error;
      throw new OvsError("IO_ERROR", `apply in "${namespace}" committed but did not finish; reopen the backend to finish it.`,
        { namespace }, { cause: error });
    }
  }

  // ---- recovery ----

  private async recover(): Promise<void> {
    await mkdir(this.dir, { recursive: true }).catch((error: unknown) => {
      throw ioError(error, `create backend directory ${this.dir}`, {});
    });
    const entries = await readdir(this.dir, { withFileTypes: true }).catch((error: unknown) => {
      throw ioError(error, `read backend directory ${this.dir}`, {});
    });
    const marker = await readFile(join(this.dir, markerFileName), "utf8").catch((error: unknown) => {
      if (systemErrorCode(error) === "ENOENT") return undefined;
      throw ioError(error, `read ${join(this.dir, markerFileName)}`, {});
    });
    if (marker === undefined) {
      if (entries.some((entry) => !entry.name.startsWith("."))) {
        throw new OvsError("INVALID_ARGUMENT", `${this.dir} is not empty and not a local backend (no ${markerFileName}).`, { dir: this.dir });
      }
      const tempMarker = join(this.dir, `${tempPrefix}${randomHex()}`);
      await writeDurably(tempMarker, Buffer.from(markerContent));
      await rename(tempMarker, join(this.dir, markerFileName));
      await this.syncDir(this.dir);
    } else if (marker !== markerContent) {
      throw new OvsError("CORRUPT", `${join(this.dir, markerFileName)} names an unknown format or version.`, { dir: this.dir });
    }
    for (const entry of entries) {
      const path = join(this.dir, entry.name);
      if (entry.name.startsWith(deletingPrefix)) await rm(path, { recursive: true, force: true });
      else if (entry.name.startsWith(tempPrefix)) await unlink(path).catch(() => undefined);
      else if (!entry.name.startsWith(".") && entry.isDirectory()) await this.recoverNamespace(entry.name);
    }
  }

  /** Replays a journal left by a crash, then removes stale temporary and staged files. */
  private async recoverNamespace(namespace: string): Promise<void> {
    const nsDir = this.namespaceDir(namespace);
    const hidden = (await readdir(nsDir)).filter((entry) => entry.startsWith("."));
    const journals = hidden.filter((entry) => entry.startsWith(journalPrefix));
    if (journals.length > 1) {
      throw new OvsError("CORRUPT", `namespace "${namespace}" holds ${journals.length} apply journals; at most one is possible.`, { namespace });
    }
    if (journals.length === 1) {
      const journalPath = join(nsDir, journals[0]!);
      const decoded = decodeJournal(await readFile(journalPath));
      if (!decoded.ok || journalFileName(decoded.journal.applyId) !== journals[0]) {
        throw new OvsError("CORRUPT", `apply journal ${journalPath} is damaged (${decoded.ok ? "name mismatch" : decoded.reason}).`,
          { namespace, path: journalPath });
      }
      await replayJournal(nsDir, decoded.journal, undefined);
      await this.syncDir(nsDir);
      await unlink(journalPath);
    }
    let removedCount = 0;
    for (const entry of hidden) {
      if (entry.startsWith(tempPrefix) || entry.startsWith(stagedPrefix)) {
        await unlink(join(nsDir, entry)).catch(() => undefined);
        removedCount += 1;
        continue;
      }
      // A linked object's data file: kept only while the object's header names it (a crash can leave one
      // behind between the link and the rename of a put, or after the object was replaced or deleted).
      const linked = parseLinkedDataFileName(entry);
      if (linked === undefined) continue;
      if ((await readLinkId(nsDir, linked.name)) === linked.linkId) {
        this.linkedNamespaces.add(namespace);
      } else {
        await unlink(join(nsDir, entry)).catch(() => undefined);
        removedCount += 1;
      }
    }
    if (removedCount > 0 || journals.length > 0) await this.syncDir(nsDir);
  }

  // ---- file helpers ----

  private namespaceDir(namespace: string): string {
    return join(this.dir, namespace);
  }

  private checkOpen(): void {
    if (this.closed) throw new OvsError("CLOSED", `backend ${this.description} is closed.`);
    if (this.stoppedBy !== undefined) {
      throw new OvsError("IO_ERROR", `backend ${this.description} stopped after a failed apply; reopen it.`, {}, { cause: this.stoppedBy });
    }
  }

  private async isNamespaceDir(namespace: string): Promise<boolean> {
    try {
      return (await stat(this.namespaceDir(namespace))).isDirectory();
    } catch (error) {
      if (systemErrorCode(error) === "ENOENT") return false;
      throw ioError(error, `stat namespace "${namespace}"`, { namespace });
    }
  }

  private async objectExists(namespace: string, name: string): Promise<boolean> {
    try {
      await stat(join(this.namespaceDir(namespace), name));
      return true;
    } catch (error) {
      if (systemErrorCode(error) !== "ENOENT") throw ioError(error, `stat "${namespace}/${name}"`, { namespace, name });
      if (!(await this.isNamespaceDir(namespace))) throw namespaceNotFound(namespace);
      return false;
    }
  }

  /** Opens an object for reading; NOT_FOUND (or undefined if `missingOk`) when it or its namespace is missing. */
  private async openObject(namespace: string, name: string, missingOk: true): Promise<FileHandle | undefined>;
  private async openObject(namespace: string, name: string, missingOk: false): Promise<FileHandle>;
  private async openObject(namespace: string, name: string, missingOk: boolean): Promise<FileHandle | undefined> {
    try {
      return await open(join(this.namespaceDir(namespace), name), fsConstants.O_RDONLY);
    } catch (error) {
      if (systemErrorCode(error) !== "ENOENT") throw ioError(error, `open "${namespace}/${name}"`, { namespace, name });
      if (!(await this.isNamespaceDir(namespace))) throw namespaceNotFound(namespace);
      if (missingOk) return undefined;
      throw new OvsError("NOT_FOUND", `object "${namespace}/${name}" does not exist.`, { namespace, name });
    }
  }

  /**
   * Writes `data` as a complete object file named `fileName` in the namespace and fdatasyncs it. The
   * header and table go in one small buffer; the data is written from the caller's buffer (no copy).
   */
  private async writeObjectFile(namespace: string, fileName: string, data: Uint8Array): Promise<void> {
    const path = join(this.namespaceDir(namespace), fileName);
    const prefixBytes = objectDataOffsetBytes(data.length);
    const scratch = prefixBytes <= speculativeReadBytes ? this.takeScratch() : Buffer.allocUnsafe(prefixBytes);
    let fd: number;
    try {
      fd = await fdOpen(path, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o644);
    } catch (error) {
      this.returnScratch(scratch);
      if (systemErrorCode(error) === "ENOENT") throw namespaceNotFound(namespace);
      throw ioError(error, `write "${namespace}/${fileName}"`, { namespace });
    }
    try {
      const prefix = scratch.subarray(0, prefixBytes);
      encodeObjectPrefix(data, prefix);
      await fdWritevFully(fd, [prefix, data], 0);
      await fdDatasync(fd);
    } catch (error) {
      fsClose(fd, noop);
      await unlink(path).catch(() => undefined);
      throw ioError(error, `write "${namespace}/${fileName}"`, { namespace });
    } finally {
      this.returnScratch(scratch);
    }
    // Durable (fdatasync returned): the descriptor closes in the background, one event-loop trip fewer.
    fsClose(fd, noop);
  }

  /** Opens the data file of a linked object; a missing one is damage (CHECKSUM_MISMATCH), like a cut file. */
  private async openDataFile(namespace: string, name: string, linkId: string): Promise<FileHandle> {
    try {
      return await open(join(this.namespaceDir(namespace), linkedDataFileName(linkId, name)), fsConstants.O_RDONLY);
    } catch (error) {
      if (systemErrorCode(error) === "ENOENT") throw checksumMismatch(namespace, name, "its data file is missing", { linkId });
      throw error;
    }
  }

  /** Reads and verifies a whole object (one read for header, one for table + data). */
  private async readObject(namespace: string, name: string): Promise<Buffer> {
    const fh = await this.openObject(namespace, name, false);
    const scratch = this.takeScratch();
    try {
      const headerRead = await readFully(fh, scratch.subarray(0, objectHeaderBytes), 0);
      const { dataBytes, linkId } = verifiedHeader(scratch.subarray(0, headerRead), namespace, name);
      const tableBytes = objectChecksumBytes * objectBlockCount(dataBytes);
      const table = tableBytes <= scratch.length - objectHeaderBytes
        ? scratch.subarray(objectHeaderBytes, objectHeaderBytes + tableBytes)
        : Buffer.allocUnsafe(tableBytes);
      const data = Buffer.allocUnsafe(dataBytes);
      // One byte more than the file should hold, to notice a file longer than its header says. It
      // reuses the header's bytes, which are decoded already and lie before the table.
      const probe = scratch.subarray(0, 1);
      if (linkId === undefined) {
        const bytesRead = await readvFully(fh, [table, data, probe], objectHeaderBytes);
        if (bytesRead !== tableBytes + dataBytes) {
          throw checksumMismatch(namespace, name, bytesRead < tableBytes + dataBytes
            ? "the file is shorter than its header says" : "the file is longer than its header says", {});
        }
      } else {
        const tableRead = await readvFully(fh, [table, probe], objectHeaderBytes);
        if (tableRead !== tableBytes) {
          throw checksumMismatch(namespace, name, tableRead < tableBytes
            ? "the checksum table is cut short" : "the file is longer than its header says", {});
        }
        const dataFh = await this.openDataFile(namespace, name, linkId);
        try {
          const bytesRead = await readvFully(dataFh, [data, probe], 0);
          if (bytesRead !== dataBytes) {
            throw checksumMismatch(namespace, name, bytesRead < dataBytes
              ? "its data file is shorter than its header says" : "its data file is longer than its header says", {});
          }
        } finally {
          await dataFh.close().catch(() => undefined);
        }
      }
      const badBlock = findBadBlock(data, 0, dataBytes, table, 0);
      if (badBlock >= 0) throw checksumMismatch(namespace, name, `block ${badBlock} fails its crc32c`, { blockIndex: badBlock });
      return data;
    } catch (error) {
      throw ioError(error, `read "${namespace}/${name}"`, { namespace, name });
    } finally {
      this.returnScratch(scratch);
      await fh.close().catch(() => undefined);
    }
  }

  /**
   * Reads byte ranges, verifying only the blocks they touch: one read per range, straight into the
   * returned Buffer when the range lies on block boundaries (or ends at the object's end); otherwise the
   * returned Buffer is a view into the enclosing blocks. The handle, the verified header and the
   * checksum table come from the handle cache, so a cache hit costs one pread per range.
   */
  private async readRanges(namespace: string, name: string, ranges: readonly ByteRange[]): Promise<Buffer[]> {
    const handle = await this.acquireHandle(namespace, name);
    try {
      const { dataBytes, table } = handle;
      const fh = handle.dataFh ?? handle.fh;
      for (const range of ranges) {
        if (range.offsetBytes + range.lengthBytes > dataBytes) {
          throw new OvsError("OUT_OF_RANGE",
            `range [${range.offsetBytes}, +${range.lengthBytes}) passes the end of "${namespace}/${name}" (${dataBytes} bytes).`,
            { namespace, name, offsetBytes: range.offsetBytes, lengthBytes: range.lengthBytes, sizeBytes: dataBytes });
        }
      }
      const dataOffsetBytes = handle.dataFh === undefined ? objectDataOffsetBytes(dataBytes) : 0;
      return await Promise.all(ranges.map(async (range) => {
        if (range.lengthBytes === 0) return Buffer.alloc(0);
        const blockIndex = Math.floor(range.offsetBytes / objectBlockBytes);
        const readStart = blockIndex * objectBlockBytes;
        const readEnd = Math.min(Math.ceil((range.offsetBytes + range.lengthBytes) / objectBlockBytes) * objectBlockBytes, dataBytes);
        const blocks = Buffer.allocUnsafe(readEnd - readStart);
        const bytesRead = await readFully(fh, blocks, dataOffsetBytes + readStart);
        if (bytesRead !== blocks.length) throw checksumMismatch(namespace, name, "the file is shorter than its header says", {});
        const badBlock = findBadBlock(blocks, blockIndex, dataBytes, table, 0);
        if (badBlock >= 0) throw checksumMismatch(namespace, name, `block ${badBlock} fails its crc32c`, { blockIndex: badBlock });
        const skipBytes = range.offsetBytes - readStart;
        return skipBytes === 0 && blocks.length === range.lengthBytes ? blocks : blocks.subarray(skipBytes, skipBytes + range.lengthBytes);
      }));
    } catch (error) {
      throw ioError(error, `read "${namespace}/${name}"`, { namespace, name });
    } finally {
      this.releaseHandle(handle);
    }
  }

  // ---- handle cache ----
  //
  // Open object files with their verified header and checksum table, for getRanges. Invariant: a
  // cached handle is the file that has the object's name now. Every change of a name in this process
  // (put, delete, apply, deleteNamespace) bumps mutationEpoch and evicts the name after its rename or
  // unlink; a miss caches its handle only if no change happened while it was opening, so it can never
  // cache a file that lost its name meanwhile. A handle is closed once evicted and no longer in use.
  // The table was read from disk (and the header verified) on the miss; every block read is checked
  // against it. Limits: handleCacheCountMax handles and handleCacheTableBytesMax of tables.

  private async acquireHandle(namespace: string, name: string): Promise<ObjectHandle> {
    const key = handleKey(namespace, name);
    const cached = this.handles.get(key);
    if (cached !== undefined) {
      this.handles.delete(key); // re-insert: Map order is the LRU order
      this.handles.set(key, cached);
      cached.useCount += 1;
      return cached;
    }
    const epoch = this.mutationEpoch;
    const fh = await this.openObject(namespace, name, false);
    let handle: ObjectHandle;
    const scratch = this.takeScratch();
    try {
      const firstReadBytes = await readFully(fh, scratch, 0);
      const { dataBytes, linkId } = verifiedHeader(scratch.subarray(0, firstReadBytes), namespace, name);
      const tableBytes = objectChecksumBytes * objectBlockCount(dataBytes);
      const table = Buffer.allocUnsafeSlow(tableBytes);
      if (objectHeaderBytes + tableBytes <= firstReadBytes) {
        scratch.copy(table, 0, objectHeaderBytes, objectHeaderBytes + tableBytes);
      } else if ((await readFully(fh, table, objectHeaderBytes)) !== tableBytes) {
        throw checksumMismatch(namespace, name, "the checksum table is cut short", {});
      }
      const dataFh = linkId === undefined ? undefined : await this.openDataFile(namespace, name, linkId);
      handle = { key, fh, dataFh, dataBytes, table, useCount: 1, cached: false };
    } catch (error) {
      await fh.close().catch(() => undefined);
      throw ioError(error, `read "${namespace}/${name}"`, { namespace, name });
    } finally {
      this.returnScratch(scratch);
    }
    const fits = handle.table.length <= this.handleCacheTableBytesMax && this.handleCacheCountMax > 0;
    if (fits && epoch === this.mutationEpoch && !this.closed && !this.handles.has(key)) {
      this.handles.set(key, handle);
      handle.cached = true;
      this.handleCacheTableBytes += handle.table.length;
      for (const oldest of this.handles.values()) {
        if (this.handles.size <= this.handleCacheCountMax && this.handleCacheTableBytes <= this.handleCacheTableBytesMax) break;
        this.evictHandle(oldest);
      }
    }
    return handle;
  }

  private releaseHandle(handle: ObjectHandle): void {
    assert(handle.useCount > 0, "handle released more often than acquired");
    handle.useCount -= 1;
    if (handle.useCount === 0 && !handle.cached) closeHandleFiles(handle);
  }

  private evictHandle(handle: ObjectHandle): void {
    assert(handle.cached && this.handles.get(handle.key) === handle, "evicting a handle that is not cached");
    this.handles.delete(handle.key);
    handle.cached = false;
    this.handleCacheTableBytes -= handle.table.length;
    if (handle.useCount === 0) closeHandleFiles(handle);
  }

  /** Called after a name changed on disk (synchronously after the rename or unlink resolved). */
  private nameChanged(namespace: string, name: string): void {
    this.mutationEpoch += 1;
    this.assertValues.delete(handleKey(namespace, name));
    const handle = this.handles.get(handleKey(namespace, name));
    if (handle !== undefined) this.evictHandle(handle);
  }

  private namespaceChanged(namespace: string): void {
    this.mutationEpoch += 1;
    const prefix = handleKey(namespace, "");
    for (const key of [...this.assertValues.keys()]) if (key.startsWith(prefix)) this.assertValues.delete(key);
    for (const handle of [...this.handles.values()]) if (handle.key.startsWith(prefix)) this.evictHandle(handle);
  }

  private takeScratch(): Buffer {
    return this.scratchBuffers.pop() ?? Buffer.allocUnsafeSlow(speculativeReadBytes);
  }

  private returnScratch(buffer: Buffer): void {
    if (buffer.length === speculativeReadBytes && this.scratchBuffers.length < scratchBufferCountMax) this.scratchBuffers.push(buffer);
  }

  private syncDir(path: string): Promise<void> {
    let sync = this.dirSyncs.get(path);
    if (sync === undefined) {
      sync = new DirSync(path, (error, action) => ioError(error, action, {}));
      this.dirSyncs.set(path, sync);
    }
    return sync.sync();
  }
}

function noop(): void {}

/** The values of settled promises, or the first rejection's reason thrown. */
function settledOrThrow<T>(results: PromiseSettledResult<T>[]): T[] {
  const failed = results.find((result) => result.status === "rejected");
  if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
  return results.map((result) => (result as PromiseFulfilledResult<T>).value);
}

/** Writes a new file and fdatasyncs it (the caller renames it into place and fsyncs the directory). */
async function writeDurably(path: string, bytes: Uint8Array): Promise<void> {
  const fh = await open(path, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o644);
  try {
    await writevFully(fh, [bytes], 0);
    await fh.datasync();
  } finally {
    await fh.close();
  }
}

function closeHandleFiles(handle: ObjectHandle): void {
  void handle.fh.close().catch(() => undefined);
  void handle.dataFh?.close().catch(() => undefined);
}

/** The link id in the header of object file `name` in `nsDir`; undefined if missing, not linked or damaged. */
async function readLinkId(nsDir: string, name: string): Promise<string | undefined> {
  let fd: number;
  try {
    fd = await fdOpen(join(nsDir, name), fsConstants.O_RDONLY);
  } catch (error) {
    if (systemErrorCode(error) === "ENOENT") return undefined;
    throw ioError(error, `open "${join(nsDir, name)}"`, {});
  }
  try {
    const header = Buffer.allocUnsafe(objectHeaderBytes);
    const bytesRead = await fdRead(fd, header, 0, objectHeaderBytes, 0);
    const decoded = decodeObjectHeader(header.subarray(0, bytesRead));
    return decoded.ok ? decoded.linkId : undefined;
  } catch (error) {
    throw ioError(error, `read "${join(nsDir, name)}"`, {});
  } finally {
    fsClose(fd, noop); // read-only: nothing to wait for
  }
}

/** Applies a committed journal's updates; idempotent, so a crash during it is followed by a full replay. */
async function replayJournal(nsDir: string, journal: Journal, crashPoint: LocalBackendOptions["crashPoint"]): Promise<void> {
  for (const [index, update] of journal.updates.entries()) {
    try {
      if (update.kind === "put") await rename(join(nsDir, stagedObjectName(journal.applyId, index)), join(nsDir, update.name));
      else await unlink(join(nsDir, update.name));
    } catch (error) {
      // ENOENT: a put already renamed by an earlier replay, or a delete of an absent object.
      if (systemErrorCode(error) !== "ENOENT") throw error;
    }
    await crashPoint?.("update-applied", index);
  }
}

async function readFully(fh: FileHandle, buffer: Uint8Array, positionBytes: number): Promise<number> {
  let doneBytes = 0;
  while (doneBytes < buffer.length) {
    const { bytesRead } = await fh.read(buffer, doneBytes, buffer.length - doneBytes, positionBytes + doneBytes);
    if (bytesRead === 0) break;
    doneBytes += bytesRead;
  }
  return doneBytes;
}

/** Reads into `buffers` in order until all are full or the file ends; returns the bytes read. */
async function readvFully(fh: FileHandle, buffers: Uint8Array[], positionBytes: number): Promise<number> {
  let pending = buffers.filter((buffer) => buffer.length > 0);
  let doneBytes = 0;
  while (pending.length > 0) {
    const { bytesRead } = await fh.readv(pending, positionBytes + doneBytes);
    if (bytesRead === 0) break;
    doneBytes += bytesRead;
    pending = advance(pending, bytesRead);
  }
  return doneBytes;
}

async function writevFully(fh: FileHandle, buffers: Uint8Array[], positionBytes: number): Promise<void> {
  let pending = buffers.filter((buffer) => buffer.length > 0);
  let doneBytes = 0;
  while (pending.length > 0) {
    const { bytesWritten } = await fh.writev(pending, positionBytes + doneBytes);
    assert(bytesWritten > 0, "writev wrote nothing");
    doneBytes += bytesWritten;
    pending = advance(pending, bytesWritten);
  }
}

// The write path (one object file and a directory fsync per put) uses plain descriptors: FileHandle's
// open and close were among the top native frames of a sequential vDisk write's profile.
const fdOpen = promisify(fsOpen);
const fdDatasync = promisify(fsFdatasync);
const fdWritev = promisify(fsWritev);
const fdRead = (fd: number, buffer: Buffer, offset: number, length: number, position: number): Promise<number> =>
  new Promise((resolve, reject) => fsRead(fd, buffer, offset, length, position, (error, bytesRead) => (error ? reject(error) : resolve(bytesRead))));

async function fdWritevFully(fd: number, buffers: Uint8Array[], positionBytes: number): Promise<void> {
  let pending = buffers.filter((buffer) => buffer.length > 0);
  let doneBytes = 0;
  while (pending.length > 0) {
    const { bytesWritten } = await fdWritev(fd, pending as NodeJS.ArrayBufferView[], positionBytes + doneBytes);
    assert(bytesWritten > 0, "writev wrote nothing");
    doneBytes += bytesWritten;
    pending = advance(pending, bytesWritten);
  }
}

/** Drops the first `bytes` bytes from a list of buffers (views, no copy). */
function advance(buffers: Uint8Array[], bytes: number): Uint8Array[] {
  let remaining = bytes;
  let index = 0;
  while (index < buffers.length && remaining >= buffers[index]!.length) {
    remaining -= buffers[index]!.length;
    index += 1;
  }
  const rest = buffers.slice(index);
  if (remaining > 0) rest[0] = rest[0]!.subarray(remaining);
  return rest;
}

function verifiedHeader(bytes: Uint8Array, namespace: string, name: string): { dataBytes: number; linkId: string | undefined } {
  const decoded = decodeObjectHeader(bytes);
  if (decoded.ok) return decoded;
  if (decoded.code === "CHECKSUM_MISMATCH") throw checksumMismatch(namespace, name, decoded.reason, {});
  throw new OvsError("CORRUPT", `object "${namespace}/${name}" cannot be read: ${decoded.reason}.`, { namespace, name });
}

function checksumMismatch(namespace: string, name: string, reason: string, details: Record<string, unknown>): OvsError {
  return new OvsError("CHECKSUM_MISMATCH", `object "${namespace}/${name}" failed verification: ${reason}.`, { namespace, name, ...details });
}

function namespaceNotFound(namespace: string): OvsError {
  return new OvsError("NOT_FOUND", `namespace "${namespace}" does not exist.`, { namespace });
}

/** Passes OvsErrors through; maps ENOSPC/EDQUOT to NO_SPACE and other system errors to IO_ERROR. */
function ioError(error: unknown, action: string, details: Record<string, unknown>): OvsError {
  if (error instanceof OvsError) return error;
  if (error instanceof Error && error.name === "AssertionError") throw error;
  const code = systemErrorCode(error);
  if (code === "ENOSPC" || code === "EDQUOT") {
    return new OvsError("NO_SPACE", `cannot ${action}: no space left on the backend.`, details, { cause: error });
  }
  return new OvsError("IO_ERROR", `cannot ${action}: ${error instanceof Error ? error.message : String(error)}.`, details, { cause: error });
}

function checkData(data: Uint8Array, name: string): void {
  if (!(data instanceof Uint8Array)) throw new OvsError("INVALID_ARGUMENT", `data of "${name}" must be a Uint8Array.`, { name });
  if (data.length > objectSizeBytesMax) {
    throw new OvsError("INVALID_ARGUMENT", `object "${name}" is ${data.length} bytes; the local backend stores at most ${objectSizeBytesMax}.`,
      { name, sizeBytes: data.length });
  }
}

function checkApplyArguments(asserts: readonly ObjectAssert[], updates: readonly ObjectUpdate[]): void {
  if (!Array.isArray(asserts) || !Array.isArray(updates)) throw new OvsError("INVALID_ARGUMENT", "asserts and updates must be arrays.");
  if (asserts.length > applyAssertCountMax || updates.length > applyUpdateCountMax) {
    throw new OvsError("INVALID_ARGUMENT",
      `apply has ${asserts.length} asserts and ${updates.length} updates; at most ${applyAssertCountMax} and ${applyUpdateCountMax}.`);
  }
  for (const check of asserts) {
    validateName(check?.name, "object name");
    if (check.kind === "equals") checkData(check.value, check.name);
    else if (check.kind !== "absent") throw new OvsError("INVALID_ARGUMENT", `unknown assert kind ${JSON.stringify(String((check as { kind: unknown }).kind))}.`);
  }
  for (const update of updates) {
    validateName(update?.name, "object name");
    if (update.kind === "put") {
      checkData(update.data, update.name);
      if (update.file !== undefined && typeof update.file !== "string") throw new OvsError("INVALID_ARGUMENT", `file of "${update.name}" must be a path.`, { name: update.name });
      if (update.blockCrcs !== undefined && !(update.blockCrcs instanceof Uint32Array)) {
        throw new OvsError("INVALID_ARGUMENT", `blockCrcs of "${update.name}" must be a Uint32Array.`, { name: update.name });
      }
    }
    else if (update.kind !== "delete") throw new OvsError("INVALID_ARGUMENT", `unknown update kind ${JSON.stringify(String((update as { kind: unknown }).kind))}.`);
  }
}

function randomHex(): string {
  return randomBytes(8).toString("hex");
}

/** The put of an apply made of exactly one put (after collapsing) whose asserts all name other objects. */
function singlePutOnOtherObjects(asserts: readonly ObjectAssert[], updates: readonly ObjectUpdate[]):
  { name: string; data: Uint8Array; file: string | undefined; blockCrcs: Uint32Array | undefined } | undefined {
  if (updates.length === 0) return undefined;
  const name = updates[0]!.name;
  if (!updates.every((update) => update.name === name)) return undefined;
  const last = updates[updates.length - 1]!;
  if (last.kind !== "put") return undefined;
  if (asserts.some((check) => check.name === name)) return undefined;
  return { name, data: last.data, file: last.file, blockCrcs: last.blockCrcs };
}
