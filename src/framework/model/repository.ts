// A small typed repository over the ClusterStore with optimistic concurrency, for the management model's
// records (records.ts). A record is read together with its bytes (`Loaded`); a change is expressed as
// asserts + operations and committed as ONE store sequence that asserts the bytes read, so:
// - a caller that names the version it saw (`expectedVersion`) and is behind is refused at once
//   (CONFLICT, nothing changed);
// - two changes made from the same read race in the store: exactly one commits, the other fails its
//   assert and is refused with CONFLICT (never applied over the winner, never lost silently).
// Several records can change in one sequence (a vPool and its storage drivers): build the parts with
// create/update/remove and pass them all to commit().
// Imported by the model service (this folder) only.

import { OvsError, isOvsError } from "../../base/index.js";
import { rangeLimitMax, type ClusterStore, type SequenceAssert, type SequenceOperation } from "../../store/index.js";
import { decodeModelRecord, encodeModelRecord, type Versioned } from "./records.js";

/** A record with the exact bytes it was read from (what an update asserts). */
export interface Loaded<T> {
  key: string;
  record: T;
  bytes: Buffer;
}

/** One part of a sequence. */
export interface Change {
  asserts: SequenceAssert[];
  operations: SequenceOperation[];
}

/** Most records one list() returns; far above any real cluster's vPools, routers or domains. */
export const modelListMax = 10_000;

export class Repository<T extends Versioned> {
  constructor(
    private readonly store: ClusterStore,
    /** What a record is called in messages, e.g. "vPool". */
    readonly kind: string,
    private readonly keyOf: (id: string) => string,
    private readonly check: (value: Record<string, unknown>) => boolean,
    /** Turns a decoded record of an older form into the current one (the bytes stay as read, for asserts). */
    private readonly upgrade: (record: T) => T = (record) => record,
  ) {}

  private decode(bytes: Buffer, key: string): T {
    return this.upgrade(decodeModelRecord<T>(bytes, key, this.check));
  }

  key(id: string): string {
    return this.keyOf(id);
  }

  async get(id: string): Promise<Loaded<T> | undefined> {
    const key = this.keyOf(id);
    const bytes = await this.store.get(key);
    return bytes === undefined ? undefined : { key, record: this.decode(bytes, key), bytes };
  }

  /** The record, or NOT_FOUND naming it. */
  async require(id: string): Promise<Loaded<T>> {
    const loaded = await this.get(id);
    if (loaded === undefined) throw new OvsError("NOT_FOUND", `there is no ${this.kind} named ${id}.`);
    return loaded;
  }

  /** Every record under `prefix`, in key order. */
  async list(prefix: string): Promise<Array<Loaded<T>>> {
    const out: Array<Loaded<T>> = [];
    let after: string | undefined;
    for (;;) {
      const page = await this.store.prefix(prefix, { limit: rangeLimitMax, ...(after === undefined ? {} : { after }) });
      for (const entry of page.entries) out.push({ key: entry.key, record: this.decode(entry.value, entry.key), bytes: entry.value });
      if (out.length > modelListMax) throw new OvsError("NO_SPACE", `more than ${modelListMax} ${this.kind} records under ${prefix}.`);
      if (!page.more || page.entries.length === 0) return out;
      after = page.entries.at(-1)!.key;
    }
  }

  /** Puts a new record at version 1, asserting that none exists. */
  create(id: string, record: Omit<T, "version">): { change: Change; record: T } {
    const created = { ...record, version: 1 } as T;
    const key = this.keyOf(id);
    return { record: created, change: { asserts: [{ kind: "absent", key }], operations: [{ kind: "put", key, value: encodeModelRecord(created) }] } };
  }

  /**
   * Replaces a record read as `loaded` with `next` at the following version, asserting its bytes. With
   * `expectedVersion` (what the caller last saw) a stale caller is refused here, before anything is sent.
   */
  update(loaded: Loaded<T>, next: Omit<T, "version">, expectedVersion?: number): { change: Change; record: T } {
    checkVersion(this.kind, loaded, expectedVersion);
    const updated = { ...next, version: loaded.record.version + 1 } as T;
    return { record: updated, change: { asserts: [{ kind: "equals", key: loaded.key, value: loaded.bytes }], operations: [{ kind: "put", key: loaded.key, value: encodeModelRecord(updated) }] } };
  }

  /** Deletes a record read as `loaded`, asserting its bytes (and `expectedVersion` when given). */
  remove(loaded: Loaded<T>, expectedVersion?: number): Change {
    checkVersion(this.kind, loaded, expectedVersion);
    return { asserts: [{ kind: "equals", key: loaded.key, value: loaded.bytes }], operations: [{ kind: "delete", key: loaded.key }] };
  }

  /** Asserts a record is still as read, changing nothing (a dependency of another change). */
  unchanged(loaded: Loaded<T>): Change {
    return { asserts: [{ kind: "equals", key: loaded.key, value: loaded.bytes }], operations: [] };
  }
}

function checkVersion<T extends Versioned>(kind: string, loaded: Loaded<T>, expectedVersion: number | undefined): void {
  if (expectedVersion !== undefined && expectedVersion !== loaded.record.version) {
    throw new OvsError("CONFLICT", `the ${kind} changed since version ${expectedVersion} (it is at version ${loaded.record.version}); read it again and retry.`, {
      expectedVersion, version: loaded.record.version,
    });
  }
}

/**
 * Commits changes as one sequence. A failed assert (someone else changed one of the records since it was
 * read) becomes CONFLICT with `conflictMessage`; nothing changed.
 */
export async function commit(store: ClusterStore, changes: readonly Change[], conflictMessage: string): Promise<void> {
  const asserts = changes.flatMap((change) => change.asserts);
  const operations = changes.flatMap((change) => change.operations);
  try {
    await store.sequence(asserts, operations);
  } catch (error) {
    if (isOvsError(error, "ASSERT_FAILED")) throw new OvsError("CONFLICT", conflictMessage);
    throw error;
  }
}
