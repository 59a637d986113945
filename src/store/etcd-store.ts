// EtcdStore: the ClusterStore of a multi-node platform, on an etcd v3 cluster (Debian's etcd-server 3.4)
// through the etcd3 client. Key layout, how a sequence maps to a Txn, limits and election keys:
// docs/formats/etcd-store.md. Imported through store/index.ts.
//
// Invariants:
// - Every key of the store lives under `prefix`: data under <prefix>d/, sequence markers under
//   <prefix>m/, election candidates under <prefix>e/. Users' keys, watches and deletePrefix("") only
//   ever see <prefix>d/.
// - A sequence is one etcd Txn: its asserts are the compares, its operations the success branch. It is
//   never split. The interface's limits (128 asserts, 128 operations, each key once, 1.375 MiB of keys and
//   values) are checked before sending and match etcd's defaults (--max-txn-ops 128, 1.5 MiB requests).
// - No operation is applied twice by a retry in a way a caller could observe, and no outcome is guessed:
//   * reads, and writes without asserts (puts, deletes, blind sequences: all "set" operations, whose
//     second application leaves the same state) are retried after any transient error;
//   * a sequence with asserts also writes a marker key (unique per store session and in-flight slot) in
//     its Txn, guarded by a compare on the marker's mod revision. After an ambiguous failure (timeout,
//     connection lost after sending) the retry learns from the marker whether an earlier attempt applied,
//     and fences off any attempt still in flight (its marker compare can no longer hold). A sequence that
//     cannot be resolved before the deadline fails with UNAVAILABLE and details.outcome = "unknown";
//   * a sequence with 128 operations has no room for the marker: it is retried only after errors that
//     prove it was not sent, otherwise it fails with outcome "unknown".
// - etcd3's own retries and circuit breaker (cockatiel) are off: after a few errors the breaker refused
//   even unrelated calls. This file retries itself, bounded by timeouts.operationMs, rotating endpoints.
// - Reads are linearizable unless the store was opened with reads: "serializable". One page and one
//   multiGet are one snapshot (sub-requests of a page read at the revision of the first).
// - Watches start at the newest revision this store has seen, so every change acknowledged before
//   watch() is excluded and every later one is delivered, in revision order (etcd's order).
// - NOSPACE: the alarm is reported by status() and every refused write is NO_SPACE with the recovery.
//
// Limits: cluster-store.ts, plus the constants below (in-flight marker slots, attempts, receive size).

import { randomBytes } from "node:crypto";
import os from "node:os";
import type { CallOptions } from "@grpc/grpc-js";
import { Etcd3, type IKeyValue, type Lease, type Watcher } from "etcd3";
import { noop } from "cockatiel";
import { MiB, OvsError, assert, silentLogger, type Logger } from "../base/index.js";
import {
  campaignsMax,
  checkCampaign,
  checkLimit,
  checkName,
  checkSequence,
  checkValue,
  electionNameBytesMax,
  keyBytes,
  lockByCampaign,
  multiGetKeysMax,
  prefixBytes,
  prefixEndBytes,
  rangeResultBytesMax,
  sequenceOperationsMax,
  shortKey,
  watchesMax,
  type Campaign,
  type CheckedSequence,
  type ClusterStore,
  type Entry,
  type Page,
  type PrefixOptions,
  type RangeOptions,
  type SequenceAssert,
  type SequenceOperation,
  type StoreLock,
  type StoreMemberStatus,
  type StoreStatus,
  type Watch,
  type WatchEvent,
  type WatchListener,
} from "./cluster-store.js";

export interface EtcdTimeouts {
  /** Deadline of one RPC attempt. */
  requestMs: number;
  /** Deadline of one store call across all its attempts (must cover a leader election). */
  operationMs: number;
  /** Session lease of this store instance (its sequence markers vanish this long after it dies). */
  sessionTtlMs: number;
}

export const etcdTimeoutsDefault: EtcdTimeouts = { requestMs: 3_000, operationMs: 20_000, sessionTtlMs: 30_000 };

/** Sequences with asserts in flight at once (each holds one marker slot); more wait for a slot. */
export const markerSlotsMax = 256;
/** Most attempts of one call, whatever its deadline. */
export const attemptsMax = 100;
/** Backoff between attempts: doubles from the first to the last. */
export const retryBackoffMsMin = 20;
export const retryBackoffMsMax = 500;
/** Largest gRPC message this client accepts (a page is fetched in smaller requests when one is larger). */
export const grpcReceiveBytesMax = 64 * MiB;
/** etcd's default --max-request-bytes; a request is refused before sending when it would exceed it. */
export const etcdRequestBytesDefault = 1.5 * MiB;
/** Bytes a request carries besides keys and values (protobuf framing, compares, marker), a bound. */
const requestOverheadBytesMax = 64 * 1024;

const recoveryNoSpace =
  "etcd's backend quota is full (alarm NOSPACE): reads and deletes work, puts (and sequences with asserts) are refused. Recover: " +
  "compact old revisions (etcdctl compact <current revision>), defragment every member (etcdctl defrag " +
  "--cluster), then clear the alarm (etcdctl alarm disarm); EtcdStore.recoverSpace() does these three. " +
  "Keep --auto-compaction-mode/--auto-compaction-retention on and raise --quota-backend-bytes if the live data needs it.";

export interface EtcdStoreOptions {
  /**
   * Client URLs of the members, e.g. ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]. Calls go to the
   * first until it fails, then to the next (list the nearest first).
   */
  endpoints: string[];
  /** Every key of this store lives under this prefix (default "ovs/"). Must not be empty. */
  prefix?: string;
  logger?: Logger;
  timeouts?: Partial<EtcdTimeouts>;
  /** Linearizable reads (default) or serializable ones (any member's possibly stale view, cheaper). */
  reads?: "linearizable" | "serializable";
  /** The cluster's --max-request-bytes, when it is not etcd's default. */
  requestBytesMax?: number;
  /** Fault injection for tests (a seam, off unless given): see EtcdFaults. */
  faults?: EtcdFaults;
}

/**
 * Fault injection, consumed by the next unary attempts of the store (tests set the counts): each count
 * makes that many attempts fail with an ambiguous error, either after etcd answered (the reply lost:
 * the request applied) or before sending (the request never reached etcd).
 */
export interface EtcdFaults {
  replyLostCount: number;
  lostBeforeSendingCount: number;
}

/** What the retry logic did, for tests and status pages. */
export interface EtcdRetryCounts {
  attemptsFailed: number;
  attemptsAmbiguous: number;
  /** Asserted sequences whose ambiguous attempt turned out to have applied (not applied again). */
  sequencesFoundApplied: number;
  /** Calls that ended with outcome "unknown". */
  outcomesUnknown: number;
}

/** A classified failure of one attempt. */
type AttemptKind =
  /** The request certainly did not apply (never sent, or refused before proposing): retry. */
  | "notApplied"
  /** It may or may not have applied (timeout, connection lost after sending). */
  | "ambiguous"
  /** The session lease (or a campaign lease) is gone on the server. */
  | "leaseLost"
  /** Retrying cannot help: the error is final. */
  | "final";

class AttemptError extends Error {
  constructor(
    readonly kind: AttemptKind,
    readonly ovsError: OvsError,
  ) {
    super(ovsError.message);
  }
}

interface MarkerSlot {
  /** Unique within the session: the marker key is m/<session lease hex>/<name>. */
  name: number;
  /** The marker's mod revision as last known (0: absent). */
  modRevision: number;
  /** The session lease the marker belongs to. */
  leaseId: string;
}

interface Session {
  lease: Lease;
  leaseId: string;
  leaseHex: string;
  lost: boolean;
}

interface WatchRecord {
  open: boolean;
  watcher: Watcher | undefined;
}

type TxnRequest = Parameters<Etcd3["kv"]["txn"]>[0];
type RequestOp = NonNullable<TxnRequest["success"]>[number];
type Compare = NonNullable<TxnRequest["compare"]>[number];
type RangeRequest = Parameters<Etcd3["kv"]["range"]>[0];

const dataSpace = "d/";
const markerSpace = "m/";
const electionSpace = "e/";

export class EtcdStore implements ClusterStore {
  readonly description: string;
  readonly endpoints: readonly string[];
  readonly keyPrefix: string;

  private readonly logger: Logger;
  private readonly timeouts: EtcdTimeouts;
  private readonly serializable: boolean;
  private readonly requestBytesMax: number;
  private readonly faults: EtcdFaults | undefined;
  readonly retryCounts: EtcdRetryCounts = { attemptsFailed: 0, attemptsAmbiguous: 0, sequencesFoundApplied: 0, outcomesUnknown: 0 };
  /** One client per endpoint for unary calls (this file picks the endpoint and rotates on failure). */
  private readonly unaryClients: Etcd3[];
  /** A client on every endpoint for streams (watches, lease keepalives). */
  private readonly streamClient: Etcd3;
  private endpointIndex = 0;

  /** The endpoint unary calls go to now. */
  get currentEndpoint(): string {
    return this.endpoints[this.endpointIndex]!;
  }
  private readonly dataPrefix: Buffer;
  private readonly dataEnd: Buffer;

  private closed = false;
  private closing: Promise<void> | undefined;
  private readonly inFlight = new Set<Promise<unknown>>();
  /** Highest revision seen in any response: watches start after it. */
  private revisionSeen = 0;
  private readonly watches = new Set<WatchRecord>();
  private readonly campaigns = new Set<EtcdCampaign>();
  private session: Session | undefined;
  private sessionOpening: Promise<Session> | undefined;
  private readonly freeSlots: MarkerSlot[] = [];
  private slotCount = 0;
  private nextSlotName = 0;
  private readonly slotWaiters: Array<(slot: MarkerSlot) => void> = [];

  private constructor(options: EtcdStoreOptions, timeouts: EtcdTimeouts, prefix: string) {
    this.endpoints = [...options.endpoints];
    this.keyPrefix = prefix;
    this.description = `etcd:${this.endpoints.join(",")}/${prefix}`;
    this.logger = options.logger ?? silentLogger();
    this.timeouts = timeouts;
    this.serializable = options.reads === "serializable";
    this.requestBytesMax = options.requestBytesMax ?? etcdRequestBytesDefault;
    this.faults = options.faults;
    const clientOptions = {
      faultHandling: { host: () => noop, global: noop },
      grpcOptions: { "grpc.max_receive_message_length": grpcReceiveBytesMax },
      dialTimeout: timeouts.requestMs,
    };
    this.unaryClients = this.endpoints.map((endpoint) => new Etcd3({ ...clientOptions, hosts: [endpoint] }));
    this.streamClient = new Etcd3({ ...clientOptions, hosts: [...this.endpoints] });
    this.endpointIndex = 0;
    this.dataPrefix = Buffer.from(prefix + dataSpace, "utf8");
    this.dataEnd = prefixEndBytes(this.dataPrefix)!;
  }

  /** Connects (checking that a member answers and granting the session lease). */
  static async open(options: EtcdStoreOptions): Promise<EtcdStore> {
    if (typeof options !== "object" || options === null || !Array.isArray(options.endpoints) || options.endpoints.length === 0) {
      throw new OvsError("INVALID_ARGUMENT", "The etcd store needs at least one endpoint, e.g. http://127.0.0.1:2379.");
    }
    for (const endpoint of options.endpoints) {
      if (typeof endpoint !== "string" || !/^https?:\/\/[^/\s]+$/.test(endpoint)) {
        throw new OvsError("INVALID_ARGUMENT", `"${String(endpoint)}" is not an etcd client URL like http://127.0.0.1:2379.`);
      }
    }
    const prefix = options.prefix ?? "ovs/";
    if (typeof prefix !== "string" || prefix.length === 0 || prefixBytes(prefix, "store prefix").length > 256) {
      throw new OvsError("INVALID_ARGUMENT", "The etcd store prefix must be 1 to 256 bytes of text.");
    }
    const timeouts = { ...etcdTimeoutsDefault, ...options.timeouts };
    for (const [name, value] of Object.entries(timeouts)) {
      if (typeof value !== "number" || !Number.isInteger(value) || value < 100 || value > 600_000) {
        throw new OvsError("INVALID_ARGUMENT", `The etcd timeout ${name} must be an integer from 100 to 600000 ms.`);
      }
    }
    if (timeouts.operationMs < timeouts.requestMs) {
      throw new OvsError("INVALID_ARGUMENT", "The etcd timeout operationMs must be at least requestMs.");
    }
    const store = new EtcdStore(options, timeouts, prefix);
    try {
      // Watches start after the newest revision seen: learn the current one (and that etcd answers).
      const response = await store.retrying("reach etcd", true, (client, callOptions) =>
        client.kv.range({ key: store.dataPrefix, count_only: true }, callOptions),
      );
      store.seeRevision(response.header.revision);
      await store.openSession();
    } catch (error) {
      await store.close().catch(() => undefined);
      throw error;
    }
    store.logger.info({ endpoints: store.endpoints, prefix }, "etcd store open");
    return store;
  }

  // ---- Reads ----

  async get(key: string): Promise<Buffer | undefined> {
    this.checkUsable();
    const fullKey = this.dataKey(key);
    const response = await this.retrying("read a key", true, (client, callOptions) =>
      client.kv.range({ key: fullKey, serializable: this.serializable }, callOptions),
    );
    this.seeRevision(response.header.revision);
    const kv = response.kvs[0];
    return kv === undefined ? undefined : Buffer.from(kv.value);
  }

  async multiGet(keys: readonly string[]): Promise<(Buffer | undefined)[]> {
    this.checkUsable();
    if (!Array.isArray(keys)) throw new OvsError("INVALID_ARGUMENT", "multiGet takes an array of keys.");
    if (keys.length > multiGetKeysMax) {
      throw new OvsError("INVALID_ARGUMENT", `multiGet takes at most ${multiGetKeysMax} keys; got ${keys.length}.`);
    }
    const fullKeys = keys.map((key) => this.dataKey(key));
    if (fullKeys.length === 0) return [];
    // A read-only Txn of Range ops: one snapshot (serializable when every range is).
    const response = await this.retrying("read keys", true, (client, callOptions) =>
      client.kv.txn(
        { success: fullKeys.map((key) => ({ request_range: { key, serializable: this.serializable } })) },
        callOptions,
      ),
    );
    this.seeRevision(response.header.revision);
    assert(response.responses.length === fullKeys.length, "a read Txn answers every range");
    return response.responses.map((op) => {
      const kv = op.response_range?.kvs[0];
      return kv === undefined ? undefined : Buffer.from(kv.value);
    });
  }

  async exists(key: string): Promise<boolean> {
    this.checkUsable();
    const fullKey = this.dataKey(key);
    const response = await this.retrying("check a key", true, (client, callOptions) =>
      client.kv.range({ key: fullKey, count_only: true, serializable: this.serializable }, callOptions),
    );
    this.seeRevision(response.header.revision);
    return Number(response.count) > 0;
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

  /**
   * One page of [lower, upper) (user keys), skipping up to and including `after` in iteration order. Read
   * in sub-requests at one revision; a sub-request whose answer would exceed grpcReceiveBytesMax is
   * repeated with fewer entries.
   */
  private async readPage(lower: Buffer | undefined, upper: Buffer | undefined, after: Buffer | undefined, limit: number, reverse: boolean): Promise<Page> {
    if (upper !== undefined && upper.length === 0) return { entries: [], more: false };
    let start = lower === undefined ? this.dataPrefix : Buffer.concat([this.dataPrefix, lower]);
    let end = upper === undefined ? this.dataEnd : Buffer.concat([this.dataPrefix, upper]);
    if (after !== undefined) {
      const afterKey = Buffer.concat([this.dataPrefix, after]);
      if (!reverse) {
        const next = Buffer.concat([afterKey, Buffer.of(0)]);
        if (Buffer.compare(next, start) > 0) start = next;
      } else if (Buffer.compare(afterKey, end) < 0) {
        end = afterKey;
      }
    }
    const entries: Entry[] = [];
    let pageBytes = 0;
    let revision = 0;
    let batchLimit = limit;
    while (true) {
      if (Buffer.compare(start, end) >= 0) return { entries, more: false };
      const wanted = Math.min(batchLimit, limit - entries.length);
      const request: RangeRequest = {
        key: start,
        range_end: end,
        limit: wanted,
        sort_order: reverse ? "Descend" : "None",
        sort_target: "Key",
        serializable: this.serializable,
        ...(revision === 0 ? {} : { revision }),
      };
      let response;
      try {
        response = await this.retrying("read a range", true, (client, callOptions) => client.kv.range(request, callOptions));
      } catch (error) {
        if (error instanceof OvsError && error.details?.tooLarge === true && wanted > 1) {
          batchLimit = Math.max(1, Math.floor(wanted / 8));
          continue;
        }
        throw error;
      }
      if (revision === 0) {
        revision = Number(response.header.revision);
        this.seeRevision(response.header.revision);
      }
      const kvs = response.kvs;
      for (let index = 0; index < kvs.length; index++) {
        if (entries.length >= limit || pageBytes >= rangeResultBytesMax) return { entries, more: true };
        const kv = kvs[index]!;
        assert(kv.key.length >= this.dataPrefix.length, "a range stays inside the data space");
        entries.push({ key: kv.key.subarray(this.dataPrefix.length).toString("utf8"), value: Buffer.from(kv.value) });
        pageBytes += kv.key.length - this.dataPrefix.length + kv.value.length;
      }
      if (!response.more) return { entries, more: false };
      if (entries.length >= limit || pageBytes >= rangeResultBytesMax) return { entries, more: true };
      const last = kvs[kvs.length - 1];
      assert(last !== undefined, "a range with more entries returned some");
      if (reverse) end = Buffer.from(last.key);
      else start = Buffer.concat([last.key, Buffer.of(0)]);
    }
  }

  // ---- Writes ----

  async put(key: string, value: Uint8Array): Promise<void> {
    this.checkUsable();
    const fullKey = this.dataKey(key);
    const bytes = Buffer.from(checkValue(value, key));
    this.checkRequestBytes(fullKey.length + bytes.length);
    // A blind put: applying it again leaves the same state, so any transient failure is retried.
    const response = await this.retrying("put a key", true, (client, callOptions) => client.kv.put({ key: fullKey, value: bytes }, callOptions));
    this.seeRevision(response.header.revision);
  }

  async delete(key: string): Promise<boolean> {
    this.checkUsable();
    const fullKey = this.dataKey(key);
    // Retried like a put; after an ambiguous first attempt the answer may be false though this call deleted it.
    const response = await this.retrying("delete a key", true, (client, callOptions) => client.kv.deleteRange({ key: fullKey }, callOptions));
    this.seeRevision(response.header.revision);
    return Number(response.deleted) > 0;
  }

  async deletePrefix(prefix: string): Promise<number> {
    this.checkUsable();
    const [key, rangeEnd] = this.dataPrefixRange(prefixBytes(prefix));
    const response = await this.retrying("delete a prefix", true, (client, callOptions) =>
      client.kv.deleteRange({ key, range_end: rangeEnd }, callOptions),
    );
    this.seeRevision(response.header.revision);
    return Number(response.deleted);
  }

  async sequence(asserts: readonly SequenceAssert[], operations: readonly SequenceOperation[]): Promise<void> {
    this.checkUsable();
    const checked = checkSequence(asserts, operations);
    await this.track(this.runSequence(checked, true));
  }

  async testAndSet(key: string, expected: Uint8Array | undefined, newValue: Uint8Array | undefined): Promise<boolean> {
    this.checkUsable();
    keyBytes(key);
    if (expected !== undefined) checkValue(expected, key);
    if (newValue !== undefined) checkValue(newValue, key);
    const checked = checkSequence(
      [expected === undefined ? { kind: "absent", key } : { kind: "equals", key, value: expected }],
      [newValue === undefined ? { kind: "delete", key } : { kind: "put", key, value: newValue }],
    );
    try {
      await this.track(this.runSequence(checked, false));
      return true;
    } catch (error) {
      if (error instanceof OvsError && error.code === "ASSERT_FAILED") return false;
      throw error;
    }
  }

  private async runSequence(checked: CheckedSequence, describeFailure: boolean): Promise<void> {
    if (checked.asserts.length === 0 && checked.operations.length === 0) return;
    const compares = checked.asserts.map(({ assert: check }) => this.compareOf(check));
    const operations = checked.operations.map(({ operation }) => this.requestOpOf(operation));
    let payloadBytes = 0;
    for (const { assert: check } of checked.asserts) payloadBytes += check.key.length * 3 + (check.kind === "equals" ? check.value.length : 0);
    for (const { operation } of checked.operations) {
      payloadBytes += (operation.kind === "deletePrefix" ? operation.prefix.length : operation.key.length) * 3;
      if (operation.kind === "put") payloadBytes += operation.value.length;
    }
    this.checkRequestBytes(payloadBytes);

    if (checked.asserts.length === 0 || checked.operations.length === 0) {
      // Blind writes (every operation sets a state), or a pure check: safe to repeat.
      const response = await this.retrying("apply a sequence", true, (client, callOptions) =>
        client.kv.txn({ compare: compares, success: operations }, callOptions),
      );
      this.seeRevision(response.header.revision);
      if (!response.succeeded) await this.failAsserts(checked, Number(response.header.revision), describeFailure);
      return;
    }
    if (checked.operations.length >= sequenceOperationsMax) {
      // No room for the marker: repeat only what certainly did not apply.
      const response = await this.retrying("apply a sequence", false, (client, callOptions) =>
        client.kv.txn({ compare: compares, success: operations }, callOptions),
      );
      this.seeRevision(response.header.revision);
      if (!response.succeeded) await this.failAsserts(checked, Number(response.header.revision), describeFailure);
      return;
    }
    const slot = await this.takeSlot();
    // A slot whose call ended with an unknown outcome is retired: an attempt of it may still apply.
    let slotUsable = false;
    try {
      await this.runMarkedSequence(checked, compares, operations, slot, describeFailure);
      slotUsable = true;
    } catch (error) {
      slotUsable = error instanceof OvsError && error.details?.outcome !== "unknown";
      if (!slotUsable) this.retryCounts.outcomesUnknown++;
      throw error;
    } finally {
      this.releaseSlot(slot, slotUsable);
    }
  }

  /** The asserted sequence with its marker (see the header). */
  private async runMarkedSequence(
    checked: CheckedSequence,
    compares: Compare[],
    operations: RequestOp[],
    slot: MarkerSlot,
    describeFailure: boolean,
  ): Promise<void> {
    const deadlineMs = Date.now() + this.timeouts.operationMs;
    const nonces: Buffer[] = [];
    const fences: Buffer[] = [];
    let ambiguous = false;
    let lastError: OvsError | undefined;
    for (let attempt = 0; attempt < attemptsMax; attempt++) {
      if (attempt > 0) {
        if (Date.now() >= deadlineMs) break;
        await sleep(backoffMs(attempt));
      }
      const session = await this.currentSession(deadlineMs);
      if (slot.leaseId !== session.leaseId) {
        if (ambiguous) {
          // The earlier attempts' marker went with the old session lease: they cannot be told apart.
          throw unknownOutcome("the store's session lease was lost while a sequence's outcome was uncertain", lastError);
        }
        slot.leaseId = session.leaseId;
        slot.modRevision = 0;
      }
      const markerKey = Buffer.from(`${this.keyPrefix}${markerSpace}${session.leaseHex}/${slot.name}`, "utf8");
      const nonce = Buffer.concat([randomBytes(8), Buffer.from(String(attempt))]);
      const fence = Buffer.concat([Buffer.from("fence:"), nonce]);
      nonces.push(nonce);
      fences.push(fence);
      const failure: RequestOp[] = [{ request_range: { key: markerKey } }];
      if (ambiguous) {
        // Fence off earlier attempts, but only while none applied (never overwrite an applied nonce).
        failure.push({
          request_txn: {
            compare: [{ key: markerKey, target: "Mod", result: "Equal", mod_revision: slot.modRevision }],
            success: [{ request_put: { key: markerKey, value: fence, lease: session.leaseId } }],
          },
        });
      }
      const request: TxnRequest = {
        compare: [...compares, { key: markerKey, target: "Mod", result: "Equal", mod_revision: slot.modRevision }],
        success: [...operations, { request_put: { key: markerKey, value: nonce, lease: session.leaseId } }],
        failure,
      };
      let response;
      try {
        response = await this.attempt((client, callOptions) => client.kv.txn(request, callOptions), deadlineMs);
      } catch (error) {
        if (!(error instanceof AttemptError)) throw error;
        lastError = error.ovsError;
        if (error.kind === "final") {
          if (ambiguous) throw unknownOutcome(`a retry failed: ${error.ovsError.message}`, error.ovsError);
          throw error.ovsError;
        }
        if (error.kind === "leaseLost") {
          session.lost = true;
          continue;
        }
        if (error.kind === "ambiguous") ambiguous = true;
        continue;
      }
      const revision = Number(response.header.revision);
      this.seeRevision(response.header.revision);
      if (response.succeeded) {
        // The marker compare held: no earlier attempt applied, and none can now (the marker moved).
        slot.modRevision = revision;
        return;
      }
      const markerKv: IKeyValue | undefined = response.responses[0]?.response_range?.kvs[0];
      const markerModRevision = markerKv === undefined ? 0 : Number(markerKv.mod_revision);
      if (markerModRevision !== slot.modRevision) {
        const applied = markerKv !== undefined && nonces.some((candidate) => candidate.equals(markerKv.value));
        if (markerKv !== undefined && fences.some((candidate) => candidate.equals(markerKv.value))) {
          // An earlier (ambiguous) attempt of this call found its asserts failing and fenced the marker
          // while no attempt had applied: nothing applied and nothing can apply any more.
          slot.modRevision = markerModRevision;
          await this.failAsserts(checked, 0, describeFailure);
        }
        if (markerKv === undefined) {
          // The marker vanished: its session lease expired (the keepalive had not noticed yet).
          session.lost = true;
          if (ambiguous) throw unknownOutcome("the store's session lease expired while a sequence's outcome was uncertain", lastError);
          continue;
        }
        if (!applied) {
          // Only this call writes this marker while it holds the slot: nothing else can have moved it.
          throw new OvsError("INTERNAL", "A sequence marker was changed by someone else; the sequence's outcome is unknown.", {
            outcome: "unknown",
            marker: markerKey.toString("utf8"),
          });
        }
        // The nested fence did not write (its compare failed): the marker is where the applied attempt left it.
        slot.modRevision = markerModRevision;
        this.retryCounts.sequencesFoundApplied++;
        this.logger.info({ attempt }, "etcd store: an ambiguous sequence attempt had applied; not applying it again");
        return;
      }
      // The marker held, so an assert failed. After an ambiguous attempt the failure branch moved the
      // marker, so no earlier attempt can apply later: ASSERT_FAILED is the whole truth.
      slot.modRevision = ambiguous ? revision : slot.modRevision;
      await this.failAsserts(checked, ambiguous ? revision - 1 : revision, describeFailure);
      assert(false, "failAsserts always throws");
    }
    if (ambiguous) throw unknownOutcome(`no attempt succeeded within ${this.timeouts.operationMs} ms`, lastError);
    throw lastError ?? new OvsError("UNAVAILABLE", `etcd did not answer within ${this.timeouts.operationMs} ms.`);
  }

  /** Throws ASSERT_FAILED naming the first assert that fails at `revision` (read back when asked to). */
  private async failAsserts(checked: CheckedSequence, revision: number, describeFailure: boolean): Promise<never> {
    let failed: { key: string; kind: string; reason: string } | undefined;
    if (describeFailure && checked.asserts.length > 0) {
      try {
        const keys = checked.asserts.map(({ assert: check }) => this.dataKey(check.key));
        const response = await this.retrying("read asserted keys", true, (client, callOptions) =>
          client.kv.txn({ success: keys.map((key) => ({ request_range: { key, revision } })) }, callOptions),
        );
        for (const [index, { assert: check }] of checked.asserts.entries()) {
          const kv = response.responses[index]?.response_range?.kvs[0];
          const reason = assertFailure(check, kv?.value);
          if (reason !== undefined) {
            failed = { key: check.key, kind: check.kind, reason };
            break;
          }
        }
      } catch (error) {
        this.logger.warn({ err: error }, "etcd store: could not read back which assert failed");
      }
    }
    if (failed === undefined) {
      const keys = checked.asserts.map(({ assert: check }) => `"${shortKey(check.key)}"`).join(", ");
      throw new OvsError("ASSERT_FAILED", `Assert failed: one of the keys ${keys} did not hold as asserted; nothing was changed.`, {
        revision,
      });
    }
    throw new OvsError("ASSERT_FAILED", `Assert failed: the key "${shortKey(failed.key)}" ${failed.reason}; nothing was changed.`, {
      key: shortKey(failed.key),
      assert: failed.kind,
    });
  }

  private compareOf(check: SequenceAssert): Compare {
    const key = this.dataKey(check.key);
    switch (check.kind) {
      case "absent":
        return { key, target: "Version", result: "Equal", version: 0 };
      case "exists":
        return { key, target: "Version", result: "Greater", version: 0 };
      case "equals":
        // etcd fails a value compare on a missing key, so this also asserts existence.
        return { key, target: "Value", result: "Equal", value: Buffer.from(check.value) };
    }
  }

  private requestOpOf(operation: SequenceOperation): RequestOp {
    switch (operation.kind) {
      case "put":
        return { request_put: { key: this.dataKey(operation.key), value: Buffer.from(operation.value) } };
      case "delete":
        return { request_delete_range: { key: this.dataKey(operation.key) } };
      case "deletePrefix": {
        const [key, rangeEnd] = this.dataPrefixRange(prefixBytes(operation.prefix));
        return { request_delete_range: { key, range_end: rangeEnd } };
      }
    }
  }

  // ---- Marker slots and the session lease ----

  private async takeSlot(): Promise<MarkerSlot> {
    const free = this.freeSlots.pop();
    if (free !== undefined) return free;
    if (this.slotCount < markerSlotsMax) {
      this.slotCount++;
      return { name: this.nextSlotName++, modRevision: 0, leaseId: "" };
    }
    return new Promise<MarkerSlot>((resolve) => this.slotWaiters.push(resolve));
  }

  private releaseSlot(slot: MarkerSlot, usable: boolean): void {
    // An unusable slot (an attempt may still apply) is retired: its marker name is never used again.
    const next = usable ? slot : { name: this.nextSlotName++, modRevision: 0, leaseId: "" };
    const waiter = this.slotWaiters.shift();
    if (waiter !== undefined) waiter(next);
    else this.freeSlots.push(next);
  }

  private async openSession(): Promise<Session> {
    if (this.sessionOpening === undefined) {
      this.sessionOpening = (async () => {
        const ttlSeconds = Math.max(2, Math.ceil(this.timeouts.sessionTtlMs / 1000));
        const { lease, leaseId } = await this.grantLease(ttlSeconds, "grant the store's session lease");
        const session: Session = { lease, leaseId, leaseHex: BigInt(leaseId).toString(16).padStart(16, "0"), lost: false };
        lease.on("lost", (error: unknown) => {
          session.lost = true;
          if (!this.closed) this.logger.warn({ err: error }, "etcd store: the session lease was lost; a new one is granted on demand");
        });
        this.session = session;
        return session;
      })().finally(() => {
        this.sessionOpening = undefined;
      });
    }
    return this.sessionOpening;
  }

  private async currentSession(deadlineMs: number): Promise<Session> {
    const session = this.session;
    if (session !== undefined && !session.lost) return session;
    if (session !== undefined) void session.lease.revoke().catch(() => undefined);
    while (true) {
      try {
        return await this.openSession();
      } catch (error) {
        if (Date.now() >= deadlineMs || this.closed) throw error;
        await sleep(retryBackoffMsMax);
      }
    }
  }

  // ---- Watch ----

  watch(prefix: string, listener: WatchListener): Watch {
    this.checkUsable();
    const bytes = prefixBytes(prefix);
    if (typeof listener !== "function") throw new OvsError("INVALID_ARGUMENT", "watch takes a listener function.");
    if (this.watches.size >= watchesMax) {
      throw new OvsError("INVALID_ARGUMENT", `A store has at most ${watchesMax} open watches; close some first.`);
    }
    const record: WatchRecord = { open: true, watcher: undefined };
    this.watches.add(record);
    const [key, rangeEnd] = this.dataPrefixRange(bytes);
    const startRevision = this.revisionSeen + 1;
    const deliver = (event: WatchEvent): void => {
      if (!record.open) return;
      try {
        listener(event);
      } catch (error) {
        this.logger.error({ err: error, key: event.key }, "a store watch listener threw");
      }
    };
    const userKey = (kv: IKeyValue): string => kv.key.subarray(this.dataPrefix.length).toString("utf8");
    this.streamClient
      .watch()
      .inRange({ start: key, end: rangeEnd })
      .startRevision(String(startRevision))
      .create()
      .then((watcher) => {
        if (!record.open) {
          void watcher.cancel().catch(() => undefined);
          return;
        }
        record.watcher = watcher;
        watcher.on("data", (response) => {
          for (const event of response.events) {
            const kv = event.kv;
            if (event.type === "Delete") deliver({ type: "delete", key: userKey(kv) });
            else deliver({ type: "put", key: userKey(kv), value: Buffer.from(kv.value) });
          }
        });
        watcher.on("error", (error: unknown) => {
          this.logger.error({ err: error, prefix }, "etcd store: a watch failed; changes may be missed");
        });
      })
      .catch((error: unknown) => {
        if (record.open) this.logger.error({ err: error, prefix }, "etcd store: could not create a watch");
      });
    return {
      close: () => {
        if (!record.open) return;
        record.open = false;
        this.watches.delete(record);
        if (record.watcher !== undefined) void record.watcher.cancel().catch(() => undefined);
      },
    };
  }

  // ---- Elections and locks ----

  async campaign(electionName: string, candidateId: string, ttlMs: number): Promise<Campaign> {
    this.checkUsable();
    checkCampaign(electionName, candidateId, ttlMs);
    if (this.campaigns.size >= campaignsMax) {
      throw new OvsError("INVALID_ARGUMENT", `A store has at most ${campaignsMax} open campaigns and locks; resign some first.`);
    }
    const campaign = new EtcdCampaign(this, this.electionPrefix(electionName), electionName, candidateId, ttlMs);
    this.campaigns.add(campaign);
    try {
      await campaign.start();
    } catch (error) {
      this.campaigns.delete(campaign);
      await campaign.resign().catch(() => undefined);
      throw error;
    }
    return campaign;
  }

  async leaderOf(electionName: string): Promise<string | undefined> {
    this.checkUsable();
    checkName(electionName, "election name", electionNameBytesMax);
    const first = await this.firstCandidate(this.electionPrefix(electionName));
    return first?.value.toString("utf8");
  }

  async lock(name: string, ttlMs: number, waitMs: number): Promise<StoreLock> {
    this.checkUsable();
    return lockByCampaign(this, name, ttlMs, waitMs, `${os.hostname()}:${process.pid}:${randomBytes(6).toString("hex")}`);
  }

  /** @internal The candidate that registered first under `electionPrefix` (the leader), if any. */
  async firstCandidate(electionPrefix: Buffer): Promise<IKeyValue | undefined> {
    const response = await this.retrying("read an election", true, (client, callOptions) =>
      client.kv.range(
        { key: electionPrefix, range_end: prefixEndBytes(electionPrefix)!, sort_target: "Create", sort_order: "Ascend", limit: 1 },
        callOptions,
      ),
    );
    this.seeRevision(response.header.revision);
    return response.kvs[0];
  }

  /**
   * @internal Grants a lease kept alive by the etcd3 client, retrying on other endpoints until the
   * deadline (a grant whose answer was lost leaves an orphan lease that expires after its TTL).
   */
  async grantLease(ttlSeconds: number, what: string): Promise<{ lease: Lease; leaseId: string }> {
    const deadlineMs = Date.now() + this.timeouts.operationMs;
    let lastError: unknown;
    for (let attempt = 0; attempt < attemptsMax; attempt++) {
      if (attempt > 0) {
        if (Date.now() >= deadlineMs || this.closed) break;
        await sleep(backoffMs(attempt));
      }
      const lease = this.streamClient.lease(ttlSeconds, { autoKeepAlive: true });
      lease.on("lost", () => undefined);
      try {
        const leaseId = await withDeadline(lease.grant(), Math.max(100, Math.min(this.timeouts.requestMs, deadlineMs - Date.now())), what);
        return { lease, leaseId };
      } catch (error) {
        lastError = error;
        void lease.revoke().catch(() => undefined);
        if (!(error instanceof OvsError) && classify(error).kind === "final") break;
      }
    }
    throw this.toOvsError(lastError ?? new OvsError("UNAVAILABLE", "etcd did not answer"), what);
  }

  /** @internal */
  get internals(): { streamClient: Etcd3; logger: Logger; timeouts: EtcdTimeouts } {
    return { streamClient: this.streamClient, logger: this.logger, timeouts: this.timeouts };
  }

  /** @internal */
  forgetCampaign(campaign: EtcdCampaign): void {
    this.campaigns.delete(campaign);
  }

  /** @internal Runs one unary call with retries (see retrying). */
  async unary<T>(what: string, retryAmbiguous: boolean, run: (client: Etcd3, callOptions: CallOptions) => Promise<T>): Promise<T> {
    return this.retrying(what, retryAmbiguous, run);
  }

  private electionPrefix(electionName: string): Buffer {
    return Buffer.from(`${this.keyPrefix}${electionSpace}${encodeURIComponent(electionName)}/`, "utf8");
  }

  // ---- Status and recovery ----

  async status(): Promise<StoreStatus> {
    this.checkUsable();
    const deadline = (): CallOptions => ({ deadline: Date.now() + this.timeouts.requestMs });
    let leaderId: string | undefined;
    let names = new Map<string, string>();
    try {
      const list = await this.retrying("list the members", true, (client, callOptions) => client.cluster.memberList({}, callOptions));
      names = new Map(list.members.map((member) => [String(member.ID), member.name]));
    } catch (error) {
      this.logger.warn({ err: error }, "etcd store: member list failed");
    }
    type Answer = { endpoint: string; memberId: string; dbSizeBytes: number; leader: string } | { endpoint: string; error: string };
    const answers = await Promise.all(
      this.endpoints.map(async (endpoint, index): Promise<Answer> => {
        try {
          const answer = await this.unaryClients[index]!.maintenance.status(deadline());
          return { endpoint, memberId: String(answer.header.member_id), dbSizeBytes: Number(answer.dbSize), leader: String(answer.leader) };
        } catch (error) {
          return { endpoint, error: errorText(error) };
        }
      }),
    );
    let dbSizeBytes = 0;
    for (const answer of answers) {
      if ("memberId" in answer) {
        dbSizeBytes = Math.max(dbSizeBytes, answer.dbSizeBytes);
        if (answer.leader !== "0") leaderId = answer.leader;
      }
    }
    const members: StoreMemberStatus[] = answers.map((answer) =>
      "memberId" in answer
        ? {
            name: names.get(answer.memberId) ?? answer.memberId,
            endpoint: answer.endpoint,
            reachable: true,
            isLeader: answer.memberId === leaderId,
            dbSizeBytes: answer.dbSizeBytes,
          }
        : { name: answer.endpoint, endpoint: answer.endpoint, reachable: false, isLeader: false, error: answer.error },
    );
    const alarms: string[] = [];
    try {
      const answer = await this.retrying("read the alarms", true, (client, callOptions) =>
        client.maintenance.alarm({ action: "Get", memberID: 0, alarm: "None" }, callOptions),
      );
      for (const alarm of answer.alarms) {
        alarms.push(`${alarmName(alarm.alarm)} on member ${names.get(String(alarm.memberID)) ?? String(alarm.memberID)}`);
      }
    } catch (error) {
      alarms.push(`unknown: the alarms could not be read (${errorText(error)})`);
    }
    const leader = leaderId === undefined ? undefined : (names.get(leaderId) ?? leaderId);
    return {
      kind: "etcd",
      description: this.description,
      healthy: leader !== undefined && alarms.length === 0,
      members,
      leader,
      dbSizeBytes,
      alarms,
      recovery: alarms.some((alarm) => alarm.startsWith("NOSPACE")) ? recoveryNoSpace : alarms.length > 0 ? "See etcd's alarm documentation." : undefined,
    };
  }

  /** The documented NOSPACE recovery: compact to the current revision, defragment every member, disarm. */
  async recoverSpace(): Promise<void> {
    this.checkUsable();
    const current = await this.retrying("read the revision", true, (client, callOptions) => client.kv.range({ key: this.dataPrefix, count_only: true }, callOptions));
    const revision = Number(current.header.revision);
    try {
      await this.retrying("compact", true, (client, callOptions) => client.kv.compact({ revision, physical: true }, callOptions));
    } catch (error) {
      if (!/compacted/.test(errorText(error))) throw error;
    }
    for (const [index, endpoint] of this.endpoints.entries()) {
      try {
        await this.unaryClients[index]!.maintenance.defragment({ deadline: Date.now() + this.timeouts.operationMs });
      } catch (error) {
        this.logger.warn({ err: error, endpoint }, "etcd store: defragment failed on a member");
      }
    }
    const answer = await this.retrying("read the alarms", true, (client, callOptions) =>
      client.maintenance.alarm({ action: "Get", memberID: 0, alarm: "None" }, callOptions),
    );
    for (const alarm of answer.alarms) {
      await this.retrying("disarm an alarm", true, (client, callOptions) =>
        client.maintenance.alarm({ action: "Deactivate", memberID: alarm.memberID, alarm: alarm.alarm }, callOptions),
      );
    }
  }

  // ---- Close ----

  async close(): Promise<void> {
    if (this.closing === undefined) {
      this.closed = true;
      this.closing = (async () => {
        for (const campaign of [...this.campaigns]) await campaign.resign().catch(() => undefined);
        await Promise.allSettled([...this.inFlight]);
        for (const record of this.watches) {
          record.open = false;
          if (record.watcher !== undefined) void record.watcher.cancel().catch(() => undefined);
        }
        this.watches.clear();
        const session = this.session;
        if (session !== undefined && !session.lost) {
          // Revoking the session lease deletes this store's markers at once.
          await withDeadline(session.lease.revoke(), this.timeouts.requestMs, "revoke the session lease").catch(() => undefined);
        }
        for (const client of this.unaryClients) client.close();
        this.streamClient.close();
        this.logger.info({ endpoints: this.endpoints }, "etcd store closed");
      })();
    }
    return this.closing;
  }

  // ---- Helpers ----

  private async track<T>(promise: Promise<T>): Promise<T> {
    this.inFlight.add(promise);
    try {
      return await promise;
    } finally {
      this.inFlight.delete(promise);
    }
  }

  /**
   * Runs `run` until it succeeds, retrying transient failures with backoff within operationMs and
   * rotating endpoints. Ambiguous failures (the request may have applied) are retried only when
   * `retryAmbiguous`; otherwise they end the call with outcome "unknown".
   */
  private async retrying<T>(what: string, retryAmbiguous: boolean, run: (client: Etcd3, callOptions: CallOptions) => Promise<T>): Promise<T> {
    return this.track(this.retryingUntracked(what, retryAmbiguous, run));
  }

  private async retryingUntracked<T>(what: string, retryAmbiguous: boolean, run: (client: Etcd3, callOptions: CallOptions) => Promise<T>): Promise<T> {
    const deadlineMs = Date.now() + this.timeouts.operationMs;
    let lastError: OvsError | undefined;
    for (let attempt = 0; attempt < attemptsMax; attempt++) {
      if (attempt > 0) {
        if (Date.now() >= deadlineMs) break;
        await sleep(backoffMs(attempt));
      }
      try {
        return await this.attempt(run, deadlineMs);
      } catch (error) {
        if (!(error instanceof AttemptError)) throw error;
        lastError = error.ovsError;
        if (error.kind === "final" || error.kind === "leaseLost") throw error.ovsError;
        if (error.kind === "ambiguous" && !retryAmbiguous) throw unknownOutcome(`could not ${what}: ${error.ovsError.message}`, error.ovsError);
      }
    }
    throw new OvsError(
      lastError?.code === "TIMEOUT" ? "TIMEOUT" : "UNAVAILABLE",
      `Could not ${what}: etcd (${this.endpoints.join(", ")}) did not answer within ${this.timeouts.operationMs} ms` +
        (lastError === undefined ? "." : `; last error: ${lastError.message}`),
      { endpoints: this.endpoints },
      { cause: lastError },
    );
  }

  /** One attempt on the current endpoint; a failure is an AttemptError and moves to the next endpoint. */
  private async attempt<T>(run: (client: Etcd3, callOptions: CallOptions) => Promise<T>, deadlineMs: number): Promise<T> {
    const index = this.endpointIndex;
    const client = this.unaryClients[index]!;
    const deadline = Math.min(Date.now() + this.timeouts.requestMs, Math.max(deadlineMs, Date.now() + 50));
    try {
      if (this.faults !== undefined && this.faults.lostBeforeSendingCount > 0) {
        this.faults.lostBeforeSendingCount--;
        throw new Error("injected fault: connection lost before sending (UNAVAILABLE)");
      }
      const result = await run(client, { deadline });
      if (this.faults !== undefined && this.faults.replyLostCount > 0) {
        this.faults.replyLostCount--;
        throw new Error("injected fault: connection lost after sending (UNAVAILABLE)");
      }
      return result;
    } catch (error) {
      const classified = classify(error);
      this.retryCounts.attemptsFailed++;
      if (classified.kind === "ambiguous") this.retryCounts.attemptsAmbiguous++;
      if (classified.kind !== "final" && this.endpoints.length > 1 && this.endpointIndex === index) {
        this.endpointIndex = (index + 1) % this.endpoints.length;
      }
      if (classified.ovsError.code === "NO_SPACE") this.logger.error({ endpoint: this.endpoints[index] }, recoveryNoSpace);
      throw classified;
    }
  }

  private toOvsError(error: unknown, doing: string): OvsError {
    if (error instanceof OvsError) return error;
    if (error instanceof AttemptError) return error.ovsError;
    const classified = classify(error);
    return new OvsError(classified.ovsError.code, `Could not ${doing}: ${classified.ovsError.message}`, classified.ovsError.details, {
      cause: error,
    });
  }

  private checkRequestBytes(payloadBytes: number): void {
    if (payloadBytes + requestOverheadBytesMax > this.requestBytesMax) {
      throw new OvsError(
        "INVALID_ARGUMENT",
        `The request would carry about ${payloadBytes} bytes, over etcd's request limit of ${this.requestBytesMax} bytes ` +
          "(--max-request-bytes): bulk data never goes into the store.",
        { payloadBytes, requestBytesMax: this.requestBytesMax },
      );
    }
  }

  private dataKey(key: string): Buffer {
    return Buffer.concat([this.dataPrefix, keyBytes(key)]);
  }

  /** [key, range_end) of every data key starting with the user prefix `bytes`. */
  private dataPrefixRange(bytes: Buffer): [Buffer, Buffer] {
    const key = Buffer.concat([this.dataPrefix, bytes]);
    return [key, prefixEndBytes(key) ?? this.dataEnd];
  }

  private seeRevision(revision: string | number): void {
    const value = Number(revision);
    if (value > this.revisionSeen) this.revisionSeen = value;
  }

  private checkUsable(): void {
    if (this.closed) throw new OvsError("CLOSED", `The etcd store ${this.description} is closed.`);
  }
}

/**
 * One candidacy: a key <prefix>e/<election>/<lease hex> holding the candidate id, attached to a lease of
 * ttlMs. The candidate whose key was created first (lowest create revision) leads. A watch on the
 * election re-evaluates on every change; isLeader() also turns false once the lease may have expired
 * (no keepalive confirmed for ttlMs). A lost lease is replaced and the candidate queues again.
 */
class EtcdCampaign implements Campaign {
  private leading = false;
  private resigned = false;
  private lease: Lease | undefined;
  private key: Buffer | undefined;
  private watcher: Watcher | undefined;
  /** The lease cannot have expired on the server before this time (last confirmed keepalive + TTL). */
  private confirmedUntilMs = 0;
  private expiryTimer: NodeJS.Timeout | undefined;
  private evaluating: Promise<void> | undefined;
  private evaluateAgain = false;
  private readonly listeners = new Set<(isLeader: boolean) => void>();

  constructor(
    private readonly store: EtcdStore,
    private readonly electionPrefix: Buffer,
    readonly electionName: string,
    readonly candidateId: string,
    private readonly ttlMs: number,
  ) {}

  isLeader(): boolean {
    return this.leading && !this.resigned && Date.now() < this.confirmedUntilMs;
  }

  onChange(listener: (isLeader: boolean) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Registers the candidacy and learns whether it leads; resolves when isLeader() is accurate. */
  async start(): Promise<void> {
    const { streamClient } = this.store.internals;
    this.watcher = await withDeadline(
      streamClient.watch().prefix(this.electionPrefix).create(),
      this.store.internals.timeouts.operationMs,
      "watch an election",
    );
    this.watcher.on("data", () => this.evaluate());
    await this.register();
  }

  private async register(): Promise<void> {
    const { logger } = this.store.internals;
    const ttlSeconds = Math.ceil(this.ttlMs / 1000);
    const grantedAtMs = Date.now();
    const { lease, leaseId } = await this.store.grantLease(ttlSeconds, "grant a campaign lease");
    if (this.resigned) {
      void lease.revoke().catch(() => undefined);
      return;
    }
    this.lease = lease;
    let firedMs = Date.now();
    lease.on("keepaliveFired", () => (firedMs = Date.now()));
    lease.on("keepaliveSucceeded", () => {
      if (lease !== this.lease) return;
      this.confirmedUntilMs = firedMs + this.ttlMs;
      this.armExpiry();
      this.notify();
      if (!this.leading) this.evaluate();
    });
    lease.on("lost", (error: unknown) => {
      if (lease !== this.lease || this.resigned) return;
      logger.warn({ err: error, election: this.electionName }, "etcd store: a campaign lost its lease; campaigning again");
      this.setLeading(false);
      void this.reregister();
    });
    this.confirmedUntilMs = grantedAtMs + this.ttlMs;
    this.armExpiry();
    const key = Buffer.concat([this.electionPrefix, Buffer.from(BigInt(leaseId).toString(16).padStart(16, "0"), "utf8")]);
    this.key = key;
    // Create only (a lease's key is new): retrying the same create is idempotent.
    await this.store.unary("enter an election", true, (client, callOptions) =>
      client.kv.txn(
        {
          compare: [{ key, target: "Create", result: "Equal", create_revision: 0 }],
          success: [{ request_put: { key, value: Buffer.from(this.candidateId, "utf8"), lease: leaseId } }],
        },
        callOptions,
      ),
    );
    this.evaluate();
    await this.evaluating;
  }

  private async reregister(): Promise<void> {
    const lease = this.lease;
    this.lease = undefined;
    if (lease !== undefined) void lease.revoke().catch(() => undefined);
    while (!this.resigned) {
      try {
        await this.register();
        return;
      } catch (error) {
        this.store.internals.logger.warn({ err: error }, "etcd store: re-entering an election failed; retrying");
        await sleep(1000);
      }
    }
  }

  /** Re-reads who leads; runs one at a time, again if asked meanwhile. */
  private evaluate(): void {
    if (this.evaluating !== undefined) {
      this.evaluateAgain = true;
      return;
    }
    this.evaluating = (async () => {
      do {
        this.evaluateAgain = false;
        if (this.resigned || this.key === undefined) break;
        try {
          const first = await this.store.firstCandidate(this.electionPrefix);
          this.setLeading(first !== undefined && this.key !== undefined && Buffer.compare(first.key, this.key) === 0);
        } catch (error) {
          this.store.internals.logger.warn({ err: error }, "etcd store: could not read an election");
          this.setLeading(false);
        }
      } while (this.evaluateAgain);
    })().finally(() => {
      this.evaluating = undefined;
    });
  }

  private armExpiry(): void {
    if (this.expiryTimer !== undefined) clearTimeout(this.expiryTimer);
    this.expiryTimer = setTimeout(() => {
      this.expiryTimer = undefined;
      if (Date.now() >= this.confirmedUntilMs) this.notify();
    }, Math.max(0, this.confirmedUntilMs - Date.now()) + 1);
    this.expiryTimer.unref();
  }

  private lastNotified = false;

  private setLeading(leading: boolean): void {
    this.leading = leading;
    this.notify();
  }

  /** Tells listeners when isLeader() changed since the last notification. */
  private notify(): void {
    const now = this.isLeader();
    if (now === this.lastNotified) return;
    this.lastNotified = now;
    for (const listener of [...this.listeners]) {
      try {
        listener(now);
      } catch (error) {
        this.store.internals.logger.error({ err: error }, "a campaign listener threw");
      }
    }
  }

  async resign(): Promise<void> {
    if (this.resigned) return;
    this.resigned = true;
    this.leading = false;
    this.notify();
    this.store.forgetCampaign(this);
    if (this.expiryTimer !== undefined) clearTimeout(this.expiryTimer);
    const watcher = this.watcher;
    this.watcher = undefined;
    if (watcher !== undefined) await watcher.cancel().catch(() => undefined);
    const lease = this.lease;
    this.lease = undefined;
    // Revoking deletes the candidate key at once; if etcd is unreachable the lease expires within ttlMs.
    if (lease !== undefined) {
      await withDeadline(lease.revoke(), this.store.internals.timeouts.requestMs, "revoke a campaign lease").catch((error: unknown) =>
        this.store.internals.logger.warn({ err: error }, "etcd store: revoking a campaign lease failed; it expires by itself"),
      );
    }
    await this.evaluating;
  }
}

/** Why `check` fails against `current` (undefined: it holds). */
function assertFailure(check: SequenceAssert, current: Buffer | undefined): string | undefined {
  switch (check.kind) {
    case "absent":
      return current === undefined ? undefined : "exists but the sequence asserted it is absent";
    case "exists":
      return current === undefined ? "is absent but the sequence asserted it exists" : undefined;
    case "equals":
      if (current === undefined) return "is absent but the sequence asserted a value";
      return Buffer.compare(current, check.value) === 0 ? undefined : "has a different value than the sequence asserted";
  }
}

function unknownOutcome(why: string, cause: OvsError | undefined): OvsError {
  return new OvsError(
    "UNAVAILABLE",
    `The outcome of a write is unknown (${why}); read the keys back before deciding what to do.`,
    { outcome: "unknown" },
    { cause },
  );
}

function errorText(error: unknown): string {
  if (error instanceof Error) {
    const details = (error as { details?: unknown }).details;
    return typeof details === "string" && !error.message.includes(details) ? `${error.message} (${details})` : error.message;
  }
  return String(error);
}

function grpcStatus(error: unknown): number | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 4 && typeof current === "object" && current !== null; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === "number") return code;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

/** Sorts an etcd or gRPC error into what a retry may do about it. */
function classify(error: unknown): AttemptError {
  if (error instanceof AttemptError) return error;
  if (error instanceof OvsError) return new AttemptError("final", error);
  const text = errorText(error);
  const status = grpcStatus(error);
  const make = (kind: AttemptKind, code: OvsError["code"], message: string, details?: Record<string, unknown>): AttemptError =>
    new AttemptError(kind, new OvsError(code, message, details, { cause: error }));
  if (/database space exceeded|NOSPACE/i.test(text)) {
    return make("final", "NO_SPACE", `etcd refused the write: ${text}. ${recoveryNoSpace}`, { alarm: "NOSPACE" });
  }
  if (/request is too large|too many operations in txn|duplicate key given in txn/i.test(text)) {
    return make("final", "INVALID_ARGUMENT", `etcd refused the request: ${text}.`);
  }
  if (/larger than max|message length|RESOURCE_EXHAUSTED/i.test(text) || status === 8) {
    return make("final", "INVALID_ARGUMENT", `etcd's answer is too large for one message: ${text}.`, { tooLarge: true });
  }
  if (/requested lease not found|lease not found/i.test(text)) return make("leaseLost", "UNAVAILABLE", `etcd lost a lease: ${text}.`);
  if (/compacted/i.test(text)) return make("final", "CONFLICT", `etcd compacted the revision asked for: ${text}.`);
  if (/permission denied|authentication|invalid auth token|user name/i.test(text)) return make("final", "INVALID_ARGUMENT", `etcd refused access: ${text}.`);
  // Refused before any proposal: certainly not applied.
  if (/no leader|too many requests|ECONNREFUSED|No connection established|connect failed|failed to connect|Name resolution|ENOTFOUND|not capable|unhealthy cluster/i.test(text)) {
    return make("notApplied", "UNAVAILABLE", `etcd is unavailable: ${text}.`);
  }
  // Sent, maybe proposed: the outcome is unknown.
  if (status === 4 || /deadline|timed out|timeout/i.test(text)) return make("ambiguous", "TIMEOUT", `etcd did not answer in time: ${text}.`);
  if (status === 14 || status === 1 || status === 13 || /leader changed|unavailable|connection|socket|ECONNRESET|EPIPE|GOAWAY|RST_STREAM|stopped|cancel|closed/i.test(text)) {
    return make("ambiguous", "UNAVAILABLE", `etcd is unavailable: ${text}.`);
  }
  return make("final", "IO_ERROR", `etcd failed: ${text}.`);
}

function alarmName(alarm: unknown): string {
  if (alarm === 1 || alarm === "Nospace" || alarm === "NOSPACE") return "NOSPACE";
  if (alarm === 2 || alarm === "Corrupt" || alarm === "CORRUPT") return "CORRUPT";
  return String(alarm).toUpperCase();
}

function backoffMs(attempt: number): number {
  const base = Math.min(retryBackoffMsMax, retryBackoffMsMin * 2 ** Math.min(attempt - 1, 10));
  return base / 2 + Math.random() * (base / 2);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function withDeadline<T>(promise: Promise<T>, timeoutMs: number, doing: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new OvsError("TIMEOUT", `Could not ${doing} within ${timeoutMs} ms.`)), timeoutMs);
      }),
    ]);
  } finally {
    if (timer !== undefined) clearTimeout(timer);
  }
}
