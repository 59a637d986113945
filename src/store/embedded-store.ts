// EmbeddedStore: the ClusterStore of a single node, persisted with lmdb (lmdb-js) in one directory.
// On-disk layout and evolution: docs/formats/embedded-store.md. Imported through store/index.ts.
//
// Invariants:
// - Durable on return: lmdb runs with overlappingSync off, so a commit is fdatasync'ed (data pages, then
//   the meta page written through an O_DSYNC descriptor) before any call in it resolves. lmdb is
//   copy-on-write with two meta pages, so a kill -9 (or power loss) at any moment leaves the last
//   committed transaction intact.
// - Group commit: every mutating call is an lmdb child transaction; lmdb-js runs all child transactions
//   queued in one event turn inside one write transaction and commits them with one fsync. A child
//   transaction that throws (a failed assert) is rolled back alone and changes nothing.
// - Asserts are checked inside the write transaction, so nothing can slip in between check and write.
// - Mutating calls take effect in the order they were made (lmdb-js runs transaction callbacks in order).
// - Watch events are delivered after the commit that holds them is durable, in commit order, before the
//   mutating call resolves. A listener that throws is logged and does not disturb the store.
// - One process per directory: an abstract unix socket named after the directory's device and inode is
//   the lock (the kernel drops it when the process dies, even by kill -9); DIR/LOCK names the holder.
// - Buffers returned by reads are fresh copies owned by the caller.
// - Elections and locks live in this process (the store is single-process): candidates lead in the order
//   they registered; a lease cannot expire while the process lives, and dies with it (or with close()).
//
// Limits: those of cluster-store.ts, plus mutationsInFlightMax (backpressure on callers).

import { mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { open as openLmdb, type Database, type RootDatabase } from "lmdb";
import { OvsError, assert, silentLogger, systemErrorCode, type Logger } from "../base/index.js";
import {
  bytesStartWith,
  campaignsMax,
  checkCampaign,
  checkLimit,
  checkName,
  electionNameBytesMax,
  lockByCampaign,
  checkSequence,
  checkValue,
  keyBytes,
  multiGetKeysMax,
  prefixBytes,
  prefixEndBytes,
  rangeResultBytesMax,
  shortKey,
  testAndSetBySequence,
  watchesMax,
  type Campaign,
  type CheckedSequence,
  type ClusterStore,
  type StoreLock,
  type StoreStatus,
  type Entry,
  type Page,
  type PrefixOptions,
  type RangeOptions,
  type SequenceAssert,
  type SequenceOperation,
  type Watch,
  type WatchEvent,
  type WatchListener,
} from "./cluster-store.js";

/** Mutating calls admitted at once; later calls wait (in order) for a slot. */
export const mutationsInFlightMax = 4096;
/** lmdb page size: 8 KiB pages allow keys of up to 4026 bytes (keyBytesMax is 4000). */
export const lmdbPageBytes = 8192;
/** The value of the "format" key in the meta database. */
export const embeddedStoreFormat = "openvstorage-embedded-store 1";
/** Name of the informational lock file in the store directory. */
export const lockFileName = "LOCK";

const kvDatabaseName = "kv";
const metaDatabaseName = "meta";
const formatKey = Buffer.from("format", "utf8");

export interface EmbeddedStoreOptions {
  /** The store directory; created if missing. */
  dir: string;
  logger?: Logger;
}

interface WatchRecord {
  prefixBytes: Buffer;
  listener: WatchListener;
  /** The first commit number this watch may see (changes committed before watch() are not its). */
  firstCommitNumber: number;
  open: boolean;
}

interface PendingCommit {
  commitNumber: number;
  events: Array<{ event: WatchEvent; keyBytes: Buffer }>;
}

type Binary = Buffer;

/** One candidacy of an in-process election. */
interface CandidateRecord {
  candidateId: string;
  leading: boolean;
  listeners: Set<(isLeader: boolean) => void>;
}

export class EmbeddedStore implements ClusterStore {
  readonly description: string;
  readonly dir: string;

  private readonly root: RootDatabase<Binary, Binary>;
  private readonly kv: Database<Binary, Binary>;
  private readonly lockServer: net.Server;
  private readonly logger: Logger;

  private closed = false;
  private closing: Promise<void> | undefined;
  private failure: OvsError | undefined;
  private readonly watches = new Set<WatchRecord>();
  /** Commit number given to the next mutation that reaches its transaction callback. */
  private nextCommitNumber = 0;
  /** Changes applied in a transaction callback, waiting for their commit to be durable, in commit order. */
  private readonly pendingCommits: PendingCommit[] = [];
  private mutationsInFlight = 0;
  private readonly slotWaiters: Array<() => void> = [];
  private readonly inFlight = new Set<Promise<unknown>>();
  /** Election name → candidates in registration order; the first one leads. */
  private readonly elections = new Map<string, CandidateRecord[]>();
  private campaignCount = 0;

  private constructor(dir: string, root: RootDatabase<Binary, Binary>, kv: Database<Binary, Binary>, lockServer: net.Server, logger: Logger) {
    this.dir = dir;
    this.description = `embedded:${dir}`;
    this.root = root;
    this.kv = kv;
    this.lockServer = lockServer;
    this.logger = logger;
  }

  /** Opens (creating if needed) the store in `dir`; IN_USE if another process or instance has it open. */
  static async open(options: EmbeddedStoreOptions): Promise<EmbeddedStore> {
    if (typeof options.dir !== "string" || options.dir === "") {
      throw new OvsError("INVALID_ARGUMENT", "The embedded store needs a directory.");
    }
    const dir = path.resolve(options.dir);
    const logger = options.logger ?? silentLogger();
    try {
      await mkdir(dir, { recursive: true });
    } catch (error) {
      throw new OvsError("IO_ERROR", `Cannot create the store directory ${dir}: ${String(error)}.`, { dir }, { cause: error });
    }
    const lockServer = await acquireLock(dir);
    let root: RootDatabase<Binary, Binary> | undefined;
    try {
      root = openLmdb<Binary, Binary>({
        path: dir,
        keyEncoding: "binary",
        encoding: "binary",
        overlappingSync: false,
        pageSize: lmdbPageBytes,
        maxDbs: 4,
        cache: false,
      });
      const kv = root.openDB<Binary, Binary>({ name: kvDatabaseName, keyEncoding: "binary", encoding: "binary", cache: false });
      const meta = root.openDB<Binary, Binary>({ name: metaDatabaseName, keyEncoding: "binary", encoding: "binary", cache: false });
      const format = meta.getBinary(formatKey);
      if (format === undefined) {
        let hasKeys = false;
        for (const _key of kv.getKeys({ limit: 1 })) hasKeys = true;
        if (hasKeys) {
          throw new OvsError("CORRUPT", `The store in ${dir} has keys but no format marker; it was not written by this version.`, { dir });
        }
        await meta.childTransaction(() => {
          meta.putSync(formatKey, Buffer.from(embeddedStoreFormat, "utf8"));
        });
      } else if (format.toString("utf8") !== embeddedStoreFormat) {
        throw new OvsError("CORRUPT", `The store in ${dir} has format "${format.toString("utf8")}"; this version reads "${embeddedStoreFormat}".`, {
          dir,
        });
      }
      logger.info({ dir }, "embedded store open");
      return new EmbeddedStore(dir, root, kv, lockServer, logger);
    } catch (error) {
      if (root !== undefined) await root.close().catch(() => undefined);
      lockServer.close();
      if (error instanceof OvsError) throw error;
      throw lmdbError(error, `open the store in ${dir}`);
    }
  }

  // ---- Reads: synchronous lmdb reads inside one call share one read transaction (one snapshot). ----

  async get(key: string): Promise<Buffer | undefined> {
    this.checkUsable();
    const bytes = keyBytes(key);
    return this.kv.getBinary(bytes);
  }

  async multiGet(keys: readonly string[]): Promise<(Buffer | undefined)[]> {
    this.checkUsable();
    if (!Array.isArray(keys)) throw new OvsError("INVALID_ARGUMENT", "multiGet takes an array of keys.");
    if (keys.length > multiGetKeysMax) {
      throw new OvsError("INVALID_ARGUMENT", `multiGet takes at most ${multiGetKeysMax} keys; got ${keys.length}.`);
    }
    const allBytes = keys.map((key) => keyBytes(key));
    return allBytes.map((bytes) => this.kv.getBinary(bytes));
  }

  async exists(key: string): Promise<boolean> {
    this.checkUsable();
    return this.kv.doesExist(keyBytes(key));
  }

  async range(options: RangeOptions): Promise<Page> {
    this.checkUsable();
    if (typeof options !== "object" || options === null) throw new OvsError("INVALID_ARGUMENT", "range takes an options object.");
    const limit = checkLimit(options.limit);
    const lower = options.first === undefined ? undefined : prefixBytes(options.first, "range start");
    const upper = options.last === undefined ? undefined : prefixBytes(options.last, "range end");
    const after = options.after === undefined ? undefined : prefixBytes(options.after, "range after");
    return this.readPage(lower, upper, after, limit, options.reverse === true);
  }

  async prefix(prefix: string, options: PrefixOptions): Promise<Page> {
    this.checkUsable();
    if (typeof options !== "object" || options === null) throw new OvsError("INVALID_ARGUMENT", "prefix takes an options object.");
    const lower = prefixBytes(prefix);
    const limit = checkLimit(options.limit);
    const after = options.after === undefined ? undefined : prefixBytes(options.after, "prefix after");
    return this.readPage(lower, prefixEndBytes(lower), after, limit, false);
  }

  /** One page of [lower, upper), skipping up to and including `after` in iteration order. */
  private readPage(lower: Buffer | undefined, upper: Buffer | undefined, after: Buffer | undefined, limit: number, reverse: boolean): Page {
    if (lower !== undefined && lower.length === 0) lower = undefined;
    if (upper !== undefined && upper.length === 0) return { entries: [], more: false };
    const entries: Entry[] = [];
    let pageBytes = 0;
    let more = false;
    const admit = (key: Buffer, value: Buffer): boolean => {
      if (entries.length >= limit || pageBytes >= rangeResultBytesMax) {
        more = true;
        return false;
      }
      entries.push({ key: key.toString("utf8"), value: Buffer.from(value) });
      pageBytes += key.length + value.length;
      return true;
    };
    if (!reverse) {
      let start = lower;
      if (after !== undefined && (start === undefined || Buffer.compare(after, start) >= 0)) start = after;
      for (const { key, value } of this.kv.getRange(start === undefined ? {} : { start })) {
        if (after !== undefined && Buffer.compare(key, after) <= 0) continue;
        if (upper !== undefined && Buffer.compare(key, upper) >= 0) break;
        if (!admit(key, value)) break;
      }
    } else {
      let start = upper;
      if (after !== undefined && (start === undefined || Buffer.compare(after, start) <= 0)) start = after;
      for (const { key, value } of this.kv.getRange(start === undefined ? { reverse: true } : { start, reverse: true })) {
        if (start !== undefined && Buffer.compare(key, start) >= 0) continue;
        if (lower !== undefined && Buffer.compare(key, lower) < 0) break;
        if (!admit(key, value)) break;
      }
    }
    assert(entries.length <= limit, "a page never holds more than its limit");
    return { entries, more };
  }

  // ---- Mutations: each one an lmdb child transaction; commits shared by calls of one event turn. ----

  async put(key: string, value: Uint8Array): Promise<void> {
    await this.sequence([], [{ kind: "put", key, value }]);
  }

  async delete(key: string): Promise<boolean> {
    const bytes = keyBytes(key);
    return this.mutate(() => {
      const events: PendingCommit["events"] = [];
      const existed = this.kv.removeSync(bytes);
      if (existed) events.push({ event: { type: "delete", key }, keyBytes: bytes });
      return { result: existed, events };
    });
  }

  async deletePrefix(prefix: string): Promise<number> {
    const bytes = prefixBytes(prefix);
    return this.mutate(() => {
      const events: PendingCommit["events"] = [];
      this.applyDeletePrefix(bytes, events);
      return { result: events.length, events };
    });
  }

  async sequence(asserts: readonly SequenceAssert[], operations: readonly SequenceOperation[]): Promise<void> {
    const checked = checkSequence(asserts, operations);
    await this.mutate(() => {
      this.checkAsserts(checked);
      const events: PendingCommit["events"] = [];
      for (const { operation, keyBytes: bytes } of checked.operations) {
        switch (operation.kind) {
          case "put":
            this.kv.putSync(bytes, asBuffer(operation.value));
            events.push({ event: { type: "put", key: operation.key, value: Buffer.from(operation.value) }, keyBytes: bytes });
            break;
          case "delete":
            if (this.kv.removeSync(bytes)) events.push({ event: { type: "delete", key: operation.key }, keyBytes: bytes });
            break;
          case "deletePrefix":
            this.applyDeletePrefix(bytes, events);
            break;
        }
      }
      return { result: undefined, events };
    });
  }

  async testAndSet(key: string, expected: Uint8Array | undefined, newValue: Uint8Array | undefined): Promise<boolean> {
    keyBytes(key);
    if (expected !== undefined) checkValue(expected, key);
    if (newValue !== undefined) checkValue(newValue, key);
    return testAndSetBySequence(this, key, expected, newValue);
  }

  /** Runs inside the write transaction: throws ASSERT_FAILED (rolling back this call only) if one fails. */
  private checkAsserts(checked: CheckedSequence): void {
    for (const { assert: check, keyBytes: bytes } of checked.asserts) {
      const current = this.kv.getBinary(bytes);
      let failure: string | undefined;
      switch (check.kind) {
        case "absent":
          if (current !== undefined) failure = "exists but the sequence asserted it is absent";
          break;
        case "exists":
          if (current === undefined) failure = "is absent but the sequence asserted it exists";
          break;
        case "equals":
          if (current === undefined) failure = "is absent but the sequence asserted a value";
          else if (Buffer.compare(current, check.value) !== 0) failure = "has a different value than the sequence asserted";
          break;
      }
      if (failure !== undefined) {
        throw new OvsError("ASSERT_FAILED", `Assert failed: the key "${shortKey(check.key)}" ${failure}; nothing was changed.`, {
          key: shortKey(check.key),
          assert: check.kind,
        });
      }
    }
  }

  private applyDeletePrefix(prefix: Buffer, events: PendingCommit["events"]): void {
    const end = prefixEndBytes(prefix);
    const keys: Buffer[] = [];
    for (const key of this.kv.getKeys(prefix.length === 0 ? {} : { start: prefix })) {
      if (end !== undefined && Buffer.compare(key, end) >= 0) break;
      assert(bytesStartWith(key, prefix), "keys between a prefix and its end start with it");
      keys.push(Buffer.from(key));
    }
    for (const key of keys) {
      const existed = this.kv.removeSync(key);
      assert(existed, "a key listed in this transaction exists in it");
      events.push({ event: { type: "delete", key: key.toString("utf8") }, keyBytes: key });
    }
  }

  /**
   * Runs `apply` in an lmdb child transaction and resolves with its result once the commit holding it is
   * durable, after delivering its watch events. A throw from `apply` rolls back this call alone.
   */
  private async mutate<T>(apply: () => { result: T; events: PendingCommit["events"] }): Promise<T> {
    this.checkUsable();
    if (this.mutationsInFlight >= mutationsInFlightMax || this.slotWaiters.length > 0) {
      await new Promise<void>((resolve) => this.slotWaiters.push(resolve));
      this.checkUsable();
    }
    this.mutationsInFlight++;
    let commitNumber: number | undefined;
    let result: T | undefined;
    const committed = this.kv.childTransaction(() => {
      const applied = apply();
      commitNumber = this.nextCommitNumber++;
      result = applied.result;
      if (applied.events.length > 0 && this.watches.size > 0) {
        this.pendingCommits.push({ commitNumber, events: applied.events });
      }
    });
    this.inFlight.add(committed);
    try {
      await committed;
    } catch (error) {
      if (commitNumber === undefined) {
        // `apply` threw inside its own child transaction (an assert): rolled back, nothing changed.
        if (error instanceof OvsError) throw error;
        throw lmdbError(error, "apply a change");
      }
      // The transaction ran but its commit failed: durability of it and its batch is unknown.
      this.failure = lmdbError(error, "commit a change");
      this.pendingCommits.length = 0;
      this.logger.error({ err: error, dir: this.dir }, "embedded store commit failed; the store must be reopened");
      throw this.failure;
    } finally {
      this.inFlight.delete(committed);
      this.mutationsInFlight--;
      assert(this.mutationsInFlight >= 0, "in-flight mutations never go negative");
      const next = this.slotWaiters.shift();
      if (next !== undefined) next();
    }
    assert(commitNumber !== undefined, "a resolved transaction ran its callback");
    this.deliverThrough(commitNumber);
    return result as T;
  }

  /** Delivers the events of every commit numbered up to `commitNumber` (all durable by now), in order. */
  private deliverThrough(commitNumber: number): void {
    while (this.pendingCommits.length > 0 && this.pendingCommits[0]!.commitNumber <= commitNumber) {
      const commit = this.pendingCommits.shift()!;
      for (const { event, keyBytes: bytes } of commit.events) {
        for (const watch of [...this.watches]) {
          if (!watch.open || commit.commitNumber < watch.firstCommitNumber) continue;
          if (!bytesStartWith(bytes, watch.prefixBytes)) continue;
          try {
            watch.listener(event);
          } catch (error) {
            this.logger.error({ err: error, key: event.key }, "a store watch listener threw");
          }
        }
      }
    }
  }

  watch(prefix: string, listener: WatchListener): Watch {
    this.checkUsable();
    const bytes = prefixBytes(prefix);
    if (typeof listener !== "function") throw new OvsError("INVALID_ARGUMENT", "watch takes a listener function.");
    if (this.watches.size >= watchesMax) {
      throw new OvsError("INVALID_ARGUMENT", `A store has at most ${watchesMax} open watches; close some first.`);
    }
    const record: WatchRecord = { prefixBytes: bytes, listener, firstCommitNumber: this.nextCommitNumber, open: true };
    this.watches.add(record);
    return {
      close: () => {
        record.open = false;
        this.watches.delete(record);
      },
    };
  }

  // ---- Elections and locks: in this process (one process owns the store). ----

  async campaign(electionName: string, candidateId: string, ttlMs: number): Promise<Campaign> {
    this.checkUsable();
    checkCampaign(electionName, candidateId, ttlMs);
    if (this.campaignCount >= campaignsMax) {
      throw new OvsError("INVALID_ARGUMENT", `A store has at most ${campaignsMax} open campaigns and locks; resign some first.`);
    }
    const record: CandidateRecord = { candidateId, leading: false, listeners: new Set() };
    const candidates = this.elections.get(electionName) ?? [];
    this.elections.set(electionName, candidates);
    candidates.push(record);
    this.campaignCount++;
    this.updateLeader(electionName);
    return {
      electionName,
      candidateId,
      isLeader: () => record.leading,
      onChange: (listener) => {
        record.listeners.add(listener);
        return () => record.listeners.delete(listener);
      },
      resign: async () => this.withdraw(electionName, record),
    };
  }

  async leaderOf(electionName: string): Promise<string | undefined> {
    this.checkUsable();
    checkName(electionName, "election name", electionNameBytesMax);
    return this.elections.get(electionName)?.[0]?.candidateId;
  }

  async lock(name: string, ttlMs: number, waitMs: number): Promise<StoreLock> {
    this.checkUsable();
    return lockByCampaign(this, name, ttlMs, waitMs, `${os.hostname()}:${process.pid}:${randomBytes(6).toString("hex")}`);
  }

  async status(): Promise<StoreStatus> {
    this.checkUsable();
    let dbSizeBytes: number;
    try {
      dbSizeBytes = (await stat(path.join(this.dir, "data.mdb"))).size;
    } catch (error) {
      throw new OvsError("IO_ERROR", `Cannot read the size of the store in ${this.dir}: ${String(error)}.`, { dir: this.dir }, { cause: error });
    }
    const name = os.hostname();
    return {
      kind: "embedded",
      description: this.description,
      healthy: true,
      members: [{ name, endpoint: this.dir, reachable: true, isLeader: true, dbSizeBytes }],
      leader: name,
      dbSizeBytes,
      alarms: [],
      recovery: undefined,
    };
  }

  private withdraw(electionName: string, record: CandidateRecord): void {
    const candidates = this.elections.get(electionName);
    const index = candidates?.indexOf(record) ?? -1;
    if (candidates === undefined || index < 0) return;
    candidates.splice(index, 1);
    this.campaignCount--;
    assert(this.campaignCount >= 0, "campaigns never go negative");
    if (record.leading) this.setLeading(record, false);
    if (candidates.length === 0) this.elections.delete(electionName);
    else this.updateLeader(electionName);
  }

  private updateLeader(electionName: string): void {
    const first = this.elections.get(electionName)?.[0];
    if (first !== undefined && !first.leading) this.setLeading(first, true);
  }

  private setLeading(record: CandidateRecord, leading: boolean): void {
    record.leading = leading;
    for (const listener of [...record.listeners]) {
      try {
        listener(leading);
      } catch (error) {
        this.logger.error({ err: error }, "a campaign listener threw");
      }
    }
  }

  async close(): Promise<void> {
    if (this.closing === undefined) {
      this.closed = true;
      this.closing = (async () => {
        for (const [electionName, candidates] of [...this.elections]) {
          for (const record of [...candidates]) this.withdraw(electionName, record);
        }
        await Promise.allSettled([...this.inFlight]);
        for (const watch of this.watches) watch.open = false;
        this.watches.clear();
        for (const waiter of this.slotWaiters.splice(0)) waiter();
        try {
          await this.root.close();
        } finally {
          await new Promise<void>((resolve) => this.lockServer.close(() => resolve()));
          this.logger.info({ dir: this.dir }, "embedded store closed");
        }
      })();
    }
    return this.closing;
  }

  private checkUsable(): void {
    if (this.closed) throw new OvsError("CLOSED", `The embedded store in ${this.dir} is closed.`, { dir: this.dir });
    if (this.failure !== undefined) throw this.failure;
  }
}

/** Takes the one-process lock of `dir`: an abstract unix socket named after its device and inode. */
async function acquireLock(dir: string): Promise<net.Server> {
  const identity = await stat(dir);
  const socketName = `\0openvstorage-embedded-store:${identity.dev}:${identity.ino}`;
  const server = net.createServer((socket) => socket.destroy());
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ path: socketName }, () => {
        server.off("error", reject);
        resolve();
      });
    });
  } catch (error) {
    if (systemErrorCode(error) === "EADDRINUSE") {
      const holder = await readFile(path.join(dir, lockFileName), "utf8").catch(() => "");
      const pid = /^pid (\d+)/m.exec(holder)?.[1];
      throw new OvsError(
        "IN_USE",
        `The embedded store in ${dir} is already open${pid === undefined ? "" : ` (by process ${pid})`}; ` +
          "only one process at a time may open it.",
        { dir, pid: pid === undefined ? undefined : Number(pid) },
      );
    }
    throw new OvsError("IO_ERROR", `Cannot take the lock of the store in ${dir}: ${String(error)}.`, { dir }, { cause: error });
  }
  server.unref();
  try {
    await writeFile(path.join(dir, lockFileName), `pid ${process.pid}\nhost ${os.hostname()}\nsince ${new Date().toISOString()}\n`);
  } catch (error) {
    server.close();
    throw new OvsError("IO_ERROR", `Cannot write ${path.join(dir, lockFileName)}: ${String(error)}.`, { dir }, { cause: error });
  }
  return server;
}

/** A Buffer view of the same bytes (no copy): lmdb's binary encoding takes Buffers. */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function lmdbError(error: unknown, doing: string): OvsError {
  if (error instanceof OvsError) return error;
  const text = error instanceof Error ? error.message : String(error);
  const noSpace = systemErrorCode(error) === "ENOSPC" || /ENOSPC|No space left|MDB_MAP_FULL/.test(text);
  return new OvsError(noSpace ? "NO_SPACE" : "IO_ERROR", `The embedded store could not ${doing}: ${text}.`, undefined, { cause: error });
}
