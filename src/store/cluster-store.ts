// The ClusterStore interface: the consistent key/value store of the platform (the original's Arakoon
// role). It holds configuration, the management model, the volume registry and the backend's metadata.
// Implementations: EmbeddedStore (lmdb in a directory, one process; embedded-store.ts) and EtcdStore
// (etcd-store.ts). Every implementation passes the contract suite in cluster-store.contract.ts.
// Imported by every layer above store/ through store/index.ts.
//
// Semantics every implementation keeps:
// - Keys are strings, ordered and limited by their UTF-8 bytes (like etcd), compared with memcmp; a key
//   is 1..keyBytesMax bytes of well-formed UTF-16 (no lone surrogates, so the UTF-8 form is exact).
// - Values are bytes, 0..valueBytesMax. Bulk data (SCOs, TLogs, fragments) never goes into the store.
// - Every mutating call resolves only once its change is durable (fsynced locally, or committed by an
//   etcd quorum). A rejected call changed nothing.
// - sequence() is atomic: every assert holds at the moment of the commit and every operation is applied,
//   or ASSERT_FAILED is thrown and nothing changes.
// - A sequence touches each key at most once (etcd refuses "duplicate key given in txn request"): a key
//   may not appear in two operations, nor in an operation and under a deletePrefix of the same sequence.
// - Reads of one call (multiGet, one range page) see one consistent snapshot. A read issued after a
//   mutating call resolved sees that mutation.
// - A watch gets every committed change under its prefix, in commit order, only after it is durable.
// - Buffers returned by reads are owned by the caller. A watch event's value is shared by every listener
//   of that change and must be treated as read-only. Buffers passed in may be reused once the call returns.
// - Leadership (campaign, lock) is held through a lease of ttlMs: a holder that dies or is cut off loses
//   it within about ttlMs. isLeader()/isHeld() are this process's best knowledge and turn false before the
//   lease can have expired on the store's side; a leader must still make its writes conditional (asserts)
//   where two leaders acting at once would do harm.
// - Limits are the named constants below; a request beyond one is INVALID_ARGUMENT and changes nothing.
//   They are chosen so that etcd (max-txn-ops 128, max-request-bytes 1.5 MiB) and the embedded store
//   behave the same.

import { KiB, MiB, OvsError, assert } from "../base/index.js";

/** Largest key, in UTF-8 bytes. lmdb with 8 KiB pages allows 4026; etcd has no smaller limit. */
export const keyBytesMax = 4000;
/** Largest value. The store is for metadata: bulk data goes to the object backend. */
export const valueBytesMax = 1 * MiB;
/** Most entries one range or prefix page may ask for. */
export const rangeLimitMax = 1000;
/** A page stops early (more = true) once its keys and values reach this many bytes (at least one entry). */
export const rangeResultBytesMax = 4 * MiB;
/** Most keys in one multiGet (one etcd txn of Range ops is at most 128). */
export const multiGetKeysMax = 128;
/** Most asserts in one sequence (etcd --max-txn-ops). */
export const sequenceAssertsMax = 128;
/** Most operations in one sequence (etcd --max-txn-ops). */
export const sequenceOperationsMax = 128;
/** Most key + value bytes of a whole sequence, asserts included (under etcd's 1.5 MiB request limit). */
export const sequencePayloadBytesMax = 1 * MiB + 384 * KiB;
/** Most open watches per store instance. */
export const watchesMax = 1024;
/** Shortest lease of a campaign or lock (etcd grants whole seconds and at least about 1.5 s). */
export const leaseTtlMsMin = 2_000;
/** Longest lease of a campaign or lock. */
export const leaseTtlMsMax = 600_000;
/** Longest election (or lock) name and candidate id, in UTF-8 bytes. */
export const electionNameBytesMax = 256;
export const candidateIdBytesMax = 256;
/** Most campaigns and locks open at once per store instance. */
export const campaignsMax = 256;
/** Longest a lock() call may wait for a lock. */
export const lockWaitMsMax = 600_000;

assert(keyBytesMax + valueBytesMax <= sequencePayloadBytesMax, "one largest put must fit a sequence");
assert(sequencePayloadBytesMax <= 1.5 * MiB, "a sequence must fit etcd's default request size");
assert(keyBytesMax + valueBytesMax <= rangeResultBytesMax, "one largest entry must fit a page");

export interface Entry {
  key: string;
  value: Buffer;
}

export interface Page {
  entries: Entry[];
  /** True when more entries follow the last one returned (pass its key as `after` for the next page). */
  more: boolean;
}

export interface RangeOptions {
  /** Lowest key of the range, inclusive; unbounded when absent. */
  first?: string;
  /** End of the range, exclusive; unbounded when absent. */
  last?: string;
  /** Paging: only keys strictly after this one in iteration order (below it when reverse). */
  after?: string;
  /** Most entries to return: 1..rangeLimitMax. */
  limit: number;
  /** Iterate from the highest key down. */
  reverse?: boolean;
}

export interface PrefixOptions {
  /** Paging: only keys strictly greater than this one. */
  after?: string;
  /** Most entries to return: 1..rangeLimitMax. */
  limit: number;
}

export type SequenceAssert =
  | { kind: "equals"; key: string; value: Uint8Array }
  | { kind: "absent"; key: string }
  | { kind: "exists"; key: string };

export type SequenceOperation =
  | { kind: "put"; key: string; value: Uint8Array }
  | { kind: "delete"; key: string }
  | { kind: "deletePrefix"; prefix: string };

export type WatchEvent =
  | { type: "put"; key: string; value: Buffer }
  | { type: "delete"; key: string; value?: undefined };

export type WatchListener = (event: WatchEvent) => void;

export interface Watch {
  /** Stops delivery; no event reaches the listener after close returns. Idempotent. */
  close(): void;
}

/** One candidacy in an election (e.g. the one scheduler or maintenance leader of a cluster). */
export interface Campaign {
  readonly electionName: string;
  readonly candidateId: string;
  /** True while this candidate leads, as far as this process knows (false once its lease may have expired). */
  isLeader(): boolean;
  /** Calls `listener` with the new state on every change of isLeader(); returns an unsubscribe. */
  onChange(listener: (isLeader: boolean) => void): () => void;
  /** Withdraws the candidacy (stepping down if leading) so another candidate can lead. Idempotent. */
  resign(): Promise<void>;
}

/** An exclusive lock held through a lease. */
export interface StoreLock {
  readonly name: string;
  /** True while held, as far as this process knows (false once its lease may have expired). */
  isHeld(): boolean;
  /** Calls `listener` once if the lock is lost without release() (lease expired, store closed). */
  onLost(listener: () => void): () => void;
  /** Releases the lock. Idempotent. */
  release(): Promise<void>;
}

export interface StoreMemberStatus {
  name: string;
  /** Where the client reaches it (etcd client URL), or the directory of the embedded store. */
  endpoint: string;
  reachable: boolean;
  isLeader: boolean;
  dbSizeBytes?: number;
  error?: string;
}

export interface StoreStatus {
  kind: "embedded" | "etcd";
  description: string;
  /** True when writes are expected to work: a leader is known and no alarm is raised. */
  healthy: boolean;
  members: StoreMemberStatus[];
  /** Name of the member that leads (etcd), or of the one embedded member. */
  leader: string | undefined;
  /** Size of the database file (largest member for etcd). */
  dbSizeBytes: number;
  /** Active alarms, e.g. "NOSPACE on member m1". */
  alarms: string[];
  /** What an operator should do about the alarms (documented recovery), when there are any. */
  recovery: string | undefined;
}

export interface ClusterStore {
  /** A short description for logs and `ovs` output, e.g. "embedded:/var/lib/ovs/store". */
  readonly description: string;

  get(key: string): Promise<Buffer | undefined>;
  /** Values in the order of `keys` (undefined where missing), from one snapshot; at most multiGetKeysMax. */
  multiGet(keys: readonly string[]): Promise<(Buffer | undefined)[]>;
  exists(key: string): Promise<boolean>;
  /** Entries with first <= key < last, ascending (descending when reverse), one page at a time. */
  range(options: RangeOptions): Promise<Page>;
  /** Entries whose key starts with `prefix` ("" is every key), ascending, one page at a time. */
  prefix(prefix: string, options: PrefixOptions): Promise<Page>;

  /** Stores or overwrites a value; durable on return. */
  put(key: string, value: Uint8Array): Promise<void>;
  /** Deletes a key; returns whether it existed. */
  delete(key: string): Promise<boolean>;
  /** Deletes every key under `prefix` ("" is every key); returns how many were deleted. */
  deletePrefix(prefix: string): Promise<number>;
  /** Atomically checks every assert and applies every operation in order; ASSERT_FAILED changes nothing. */
  sequence(asserts: readonly SequenceAssert[], operations: readonly SequenceOperation[]): Promise<void>;
  /**
   * Sets `key` to `newValue` (deletes it when undefined) only if its value equals `expected` (is absent
   * when undefined). Returns true when it applied, false when the current value differed.
   */
  testAndSet(key: string, expected: Uint8Array | undefined, newValue: Uint8Array | undefined): Promise<boolean>;

  /** Calls `listener` for every change committed under `prefix` from now on, in commit order. */
  watch(prefix: string, listener: WatchListener): Watch;

  /**
   * Enters `candidateId` in the election `electionName`, held through a lease of `ttlMs`. Resolves once
   * the candidacy is registered (leading or queued): candidates lead one at a time, in the order they
   * registered. The campaign lasts until resign() or close(); a lost lease is renewed and re-queued.
   */
  campaign(electionName: string, candidateId: string, ttlMs: number): Promise<Campaign>;
  /** The candidate id of the current leader of `electionName`, or undefined when nobody leads. */
  leaderOf(electionName: string): Promise<string | undefined>;
  /** Takes the exclusive lock `name` (lease of ttlMs), waiting at most waitMs; TIMEOUT if still taken. */
  lock(name: string, ttlMs: number, waitMs: number): Promise<StoreLock>;
  /** Health, members, leader, database size and alarms. */
  status(): Promise<StoreStatus>;

  /** Waits for in-flight mutations, closes every watch and releases the store. Idempotent. */
  close(): Promise<void>;
}

// ---- Shared validation and helpers (every implementation uses these, so they refuse the same input). ----

/** The UTF-8 bytes of a key, after checking it is a valid key. */
export function keyBytes(key: unknown, what = "key"): Buffer {
  const bytes = textBytes(key, what);
  if (bytes.length === 0) throw new OvsError("INVALID_ARGUMENT", `The ${what} is empty; keys are 1 to ${keyBytesMax} bytes.`);
  return bytes;
}

/** The UTF-8 bytes of a prefix or range bound ("" allowed), after checking it. */
export function prefixBytes(prefix: unknown, what = "prefix"): Buffer {
  return textBytes(prefix, what);
}

function textBytes(text: unknown, what: string): Buffer {
  if (typeof text !== "string") throw new OvsError("INVALID_ARGUMENT", `The ${what} must be a string.`);
  const bytes = Buffer.from(text, "utf8");
  if (bytes.length > keyBytesMax) {
    throw new OvsError(
      "INVALID_ARGUMENT",
      `The ${what} is ${bytes.length} bytes; keys are at most ${keyBytesMax} bytes.`,
      { keyPrefix: text.slice(0, 64) },
    );
  }
  if (bytes.toString("utf8") !== text) {
    throw new OvsError("INVALID_ARGUMENT", `The ${what} is not well-formed Unicode (it has a lone surrogate).`, {
      keyPrefix: text.slice(0, 64),
    });
  }
  return bytes;
}

export function checkValue(value: unknown, key: string): Uint8Array {
  if (!(value instanceof Uint8Array)) {
    throw new OvsError("INVALID_ARGUMENT", `The value of "${shortKey(key)}" must be a Uint8Array or Buffer.`);
  }
  if (value.length > valueBytesMax) {
    throw new OvsError(
      "INVALID_ARGUMENT",
      `The value of "${shortKey(key)}" is ${value.length} bytes, over the limit of ${valueBytesMax}: ` +
        "the cluster store holds metadata, bulk data never goes into the store.",
      { key: shortKey(key), valueBytes: value.length, valueBytesMax },
    );
  }
  return value;
}

export function checkLimit(limit: unknown): number {
  if (typeof limit !== "number" || !Number.isInteger(limit) || limit < 1 || limit > rangeLimitMax) {
    throw new OvsError("INVALID_ARGUMENT", `The limit must be an integer from 1 to ${rangeLimitMax} (rangeLimitMax).`, {
      limit,
    });
  }
  return limit;
}

/** A key cut to a readable length for messages. */
export function shortKey(key: string): string {
  return key.length <= 200 ? key : `${key.slice(0, 200)}…`;
}

/** Compares two keys by their UTF-8 bytes (the store's order); negative, zero or positive. */
export function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}

/**
 * The smallest byte string greater than every string starting with `prefix` (etcd's range_end), or
 * undefined when there is none (empty prefix, or all 0xFF bytes): then the range is unbounded above.
 */
export function prefixEndBytes(prefix: Uint8Array): Buffer | undefined {
  const end = Buffer.from(prefix);
  for (let index = end.length - 1; index >= 0; index--) {
    if (end[index]! < 0xff) {
      end[index] = end[index]! + 1;
      return end.subarray(0, index + 1);
    }
  }
  return undefined;
}

export function bytesStartWith(bytes: Uint8Array, prefix: Uint8Array): boolean {
  return bytes.length >= prefix.length && Buffer.compare(bytes.subarray(0, prefix.length), prefix) === 0;
}

/** A validated sequence, with the UTF-8 form of every key computed once. */
export interface CheckedSequence {
  asserts: Array<{ assert: SequenceAssert; keyBytes: Buffer }>;
  operations: Array<{ operation: SequenceOperation; keyBytes: Buffer }>;
}

/** Checks a sequence against every limit and the touch-each-key-once rule; INVALID_ARGUMENT otherwise. */
export function checkSequence(asserts: readonly SequenceAssert[], operations: readonly SequenceOperation[]): CheckedSequence {
  if (!Array.isArray(asserts) || !Array.isArray(operations)) {
    throw new OvsError("INVALID_ARGUMENT", "A sequence takes an array of asserts and an array of operations.");
  }
  if (asserts.length > sequenceAssertsMax) {
    throw new OvsError("INVALID_ARGUMENT", `A sequence has at most ${sequenceAssertsMax} asserts; this one has ${asserts.length}.`);
  }
  if (operations.length > sequenceOperationsMax) {
    throw new OvsError(
      "INVALID_ARGUMENT",
      `A sequence has at most ${sequenceOperationsMax} operations; this one has ${operations.length}.`,
    );
  }
  let payloadBytes = 0;
  const checked: CheckedSequence = { asserts: [], operations: [] };
  for (const item of asserts as readonly unknown[]) {
    const candidate = item as SequenceAssert;
    if (typeof item !== "object" || item === null) throw new OvsError("INVALID_ARGUMENT", "An assert must be an object.");
    const bytes = keyBytes(candidate.key, "assert key");
    payloadBytes += bytes.length;
    switch (candidate.kind) {
      case "equals":
        payloadBytes += checkValue(candidate.value, candidate.key).length;
        break;
      case "absent":
      case "exists":
        break;
      default:
        throw new OvsError("INVALID_ARGUMENT", `Unknown assert kind "${String((item as { kind: unknown }).kind)}".`);
    }
    checked.asserts.push({ assert: candidate, keyBytes: bytes });
  }
  const touchedKeys = new Set<string>();
  const deletedPrefixes: Buffer[] = [];
  for (const item of operations as readonly unknown[]) {
    const candidate = item as SequenceOperation;
    if (typeof item !== "object" || item === null) throw new OvsError("INVALID_ARGUMENT", "An operation must be an object.");
    let bytes: Buffer;
    switch (candidate.kind) {
      case "put":
        bytes = keyBytes(candidate.key);
        payloadBytes += checkValue(candidate.value, candidate.key).length;
        break;
      case "delete":
        bytes = keyBytes(candidate.key);
        break;
      case "deletePrefix":
        bytes = prefixBytes(candidate.prefix);
        break;
      default:
        throw new OvsError("INVALID_ARGUMENT", `Unknown operation kind "${String((item as { kind: unknown }).kind)}".`);
    }
    payloadBytes += bytes.length;
    checked.operations.push({ operation: candidate, keyBytes: bytes });
    if (candidate.kind === "deletePrefix") {
      deletedPrefixes.push(bytes);
    } else {
      if (touchedKeys.has(candidate.key)) {
        throw new OvsError(
          "INVALID_ARGUMENT",
          `The key "${shortKey(candidate.key)}" appears in more than one operation of the sequence; each key at most once.`,
          { key: shortKey(candidate.key) },
        );
      }
      touchedKeys.add(candidate.key);
    }
  }
  for (const [index, prefix] of deletedPrefixes.entries()) {
    for (const { operation, keyBytes: bytes } of checked.operations) {
      if (operation.kind === "deletePrefix") continue;
      if (bytesStartWith(bytes, prefix)) {
        throw new OvsError(
          "INVALID_ARGUMENT",
          `The key "${shortKey(operation.key)}" is also under a deletePrefix of the same sequence; each key at most once.`,
          { key: shortKey(operation.key) },
        );
      }
    }
    for (const [otherIndex, other] of deletedPrefixes.entries()) {
      if (otherIndex !== index && bytesStartWith(other, prefix)) {
        throw new OvsError("INVALID_ARGUMENT", "Two deletePrefix operations of one sequence overlap; each key at most once.", {
          prefix: prefix.toString("utf8"),
        });
      }
    }
  }
  if (payloadBytes > sequencePayloadBytesMax) {
    throw new OvsError(
      "INVALID_ARGUMENT",
      `A sequence carries at most ${sequencePayloadBytesMax} bytes of keys and values; this one has ${payloadBytes}.`,
      { payloadBytes, sequencePayloadBytesMax },
    );
  }
  return checked;
}

/** Checks campaign() arguments; INVALID_ARGUMENT otherwise. */
export function checkCampaign(electionName: unknown, candidateId: unknown, ttlMs: unknown): void {
  checkName(electionName, "election name", electionNameBytesMax);
  checkName(candidateId, "candidate id", candidateIdBytesMax);
  checkTtl(ttlMs);
}

export function checkName(name: unknown, what: string, bytesMax: number): string {
  if (typeof name !== "string" || name.length === 0) throw new OvsError("INVALID_ARGUMENT", `The ${what} must be a non-empty string.`);
  const bytes = Buffer.from(name, "utf8");
  if (bytes.length > bytesMax || bytes.toString("utf8") !== name || name.includes("\u0000")) {
    throw new OvsError("INVALID_ARGUMENT", `The ${what} must be well-formed text of 1 to ${bytesMax} bytes without NUL.`, {
      name: name.slice(0, 64),
    });
  }
  return name;
}

export function checkTtl(ttlMs: unknown): number {
  if (typeof ttlMs !== "number" || !Number.isInteger(ttlMs) || ttlMs < leaseTtlMsMin || ttlMs > leaseTtlMsMax) {
    throw new OvsError("INVALID_ARGUMENT", `A lease ttlMs must be an integer from ${leaseTtlMsMin} to ${leaseTtlMsMax}.`, { ttlMs });
  }
  return ttlMs;
}

/** Election name under which lock(name) campaigns: locks and elections never share a name. */
export function lockElectionName(name: string): string {
  return `\u0001lock:${name}`;
}

/**
 * lock() on top of campaign(): a lock is an election whose leader holds the lock. Both implementations
 * use this, so locks behave the same on both. TIMEOUT (after withdrawing) when not led within waitMs.
 */
export async function lockByCampaign(
  store: Pick<ClusterStore, "campaign">,
  name: string,
  ttlMs: number,
  waitMs: number,
  candidateId: string,
): Promise<StoreLock> {
  checkName(name, "lock name", electionNameBytesMax - 8);
  checkTtl(ttlMs);
  if (typeof waitMs !== "number" || !Number.isInteger(waitMs) || waitMs < 0 || waitMs > lockWaitMsMax) {
    throw new OvsError("INVALID_ARGUMENT", `A lock's waitMs must be an integer from 0 to ${lockWaitMsMax}.`, { waitMs });
  }
  const campaign = await store.campaign(lockElectionName(name), candidateId, ttlMs);
  if (!campaign.isLeader()) {
    const led = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        unsubscribe();
        resolve(campaign.isLeader());
      }, waitMs);
      const unsubscribe = campaign.onChange((isLeader) => {
        if (!isLeader) return;
        clearTimeout(timer);
        unsubscribe();
        resolve(true);
      });
    });
    if (!led) {
      await campaign.resign();
      throw new OvsError("TIMEOUT", `The lock "${name}" is held by someone else; waited ${waitMs} ms.`, { lock: name, waitMs });
    }
  }
  let released = false;
  const lostListeners = new Set<() => void>();
  const unsubscribe = campaign.onChange((isLeader) => {
    if (isLeader || released) return;
    released = true;
    unsubscribe();
    void campaign.resign();
    for (const listener of [...lostListeners]) listener();
  });
  return {
    name,
    isHeld: () => !released && campaign.isLeader(),
    onLost: (listener) => {
      lostListeners.add(listener);
      return () => lostListeners.delete(listener);
    },
    release: async () => {
      released = true;
      unsubscribe();
      lostListeners.clear();
      await campaign.resign();
    },
  };
}

/** testAndSet expressed as a sequence: the one definition both implementations share. */
export async function testAndSetBySequence(
  store: Pick<ClusterStore, "sequence">,
  key: string,
  expected: Uint8Array | undefined,
  newValue: Uint8Array | undefined,
): Promise<boolean> {
  const asserts: SequenceAssert[] = [
    expected === undefined ? { kind: "absent", key } : { kind: "equals", key, value: expected },
  ];
  const operations: SequenceOperation[] = [newValue === undefined ? { kind: "delete", key } : { kind: "put", key, value: newValue }];
  try {
    await store.sequence(asserts, operations);
    return true;
  } catch (error) {
    if (error instanceof OvsError && error.code === "ASSERT_FAILED") return false;
    throw error;
  }
}
