// NsmStore: one NSM host (the original's namespace manager) on a ClusterStore under a key prefix. It
// holds, per namespace, an info key, the manifests by object name and the garbage records of uploads and
// superseded objects (keys: docs/formats/alba-keys.md; manifests: docs/formats/manifest.md).
// Imported by manager.ts and the client through src/alba/manager/index.ts.
//
// Invariants:
// - Every change of manifests is one `sequence`: it asserts the namespace's info key exists and every
//   touched manifest still has the bytes the caller read (or is absent), then puts/deletes manifests,
//   turns the committed uploads' garbage records into nothing (their fragments are live now) and records
//   the superseded objects as garbage. So an overwrite race or a stale owner loses with ASSERT_FAILED and
//   changes nothing, and a fragment on an ASD is always referenced by a manifest or by a garbage record
//   (written by beginUpload before the first fragment).
// - A commit into a namespace whose info key is gone (deleted meanwhile) is NOT_FOUND.
// Buffers: manifests' bytes returned are owned by the caller.
// Limits: a commit changes at most commitItemsMax names (each up to 4 operations and 1 assert) and
// asserts at most assertOnlyItemsMax more, within the store's 128-operation, 128-assert sequences.

import { OvsError, isOvsError } from "../../base/index.js";
import { rangeLimitMax, type ClusterStore, type SequenceAssert, type SequenceOperation } from "../../store/index.js";
import { nsmKeys, type NsmKeys } from "./keys.js";
import { decodeManifest, manifestAsdIds, type Manifest } from "./manifest.js";
import { checkGcRecord, decodeRecord, encodeRecord, type GcRecord, type StrayFragment } from "./records.js";

/** Most object names one commit may change. */
export const commitItemsMax = 30;
/** Most names one commit may assert without changing them. */
export const assertOnlyItemsMax = 64;

export interface ManifestRead {
  /** The stored bytes (what a later commit asserts). */
  bytes: Buffer;
  manifest: Manifest;
}

export interface CommitItem {
  name: string;
  /** What the caller read: the manifest now stored, or undefined when the name must be absent. */
  previous: ManifestRead | undefined;
  /** The new manifest, or undefined to delete the object. */
  next: { bytes: Buffer; manifest: Manifest; strays: StrayFragment[] } | undefined;
}

/** A name whose manifest must still be what was read, without changing it. */
export interface AssertOnlyItem {
  name: string;
  previous: ManifestRead | undefined;
}

export interface NamespaceInfo {
  namespaceId: number;
  name: string;
}

export class NsmStore {
  readonly keys: NsmKeys;

  constructor(
    readonly nsmId: string,
    readonly store: ClusterStore,
    readonly prefix: string,
  ) {
    this.keys = nsmKeys(prefix);
  }

  async createNamespace(info: NamespaceInfo): Promise<void> {
    await this.store.put(this.keys.info(info.namespaceId), encodeRecord(info));
  }

  async namespaceExists(namespaceId: number): Promise<boolean> {
    return this.store.exists(this.keys.info(namespaceId));
  }

  /** Removes every key of the namespace (info, manifests, garbage records). */
  async dropNamespace(namespaceId: number): Promise<void> {
    await this.store.deletePrefix(this.keys.namespacePrefix(namespaceId));
  }

  async getManifest(namespaceId: number, name: string): Promise<ManifestRead | undefined> {
    const key = this.keys.object(namespaceId, name);
    const bytes = await this.store.get(key);
    return bytes === undefined ? undefined : decodeStored(bytes, key);
  }

  /** Manifests of up to 128 names from one snapshot, in order. */
  async getManifests(namespaceId: number, names: readonly string[]): Promise<Array<ManifestRead | undefined>> {
    const keys = names.map((name) => this.keys.object(namespaceId, name));
    const values = await this.store.multiGet(keys);
    return values.map((bytes, index) => (bytes === undefined ? undefined : decodeStored(bytes, keys[index]!)));
  }

  /** One page of object names (byte order) with `prefix`, strictly after `after`. */
  async listNames(namespaceId: number, options: { prefix: string; after: string | undefined; limit: number }): Promise<{ names: string[]; more: boolean }> {
    const objectPrefix = this.keys.objectPrefix(namespaceId);
    const page = await this.store.prefix(objectPrefix + options.prefix, {
      limit: Math.min(options.limit, rangeLimitMax),
      ...(options.after === undefined ? {} : { after: objectPrefix + options.after }),
    });
    return { names: page.entries.map((entry) => entry.key.slice(objectPrefix.length)), more: page.more };
  }

  /** Records that an upload of `objectId` starts: until committed, its fragments are garbage. */
  async beginUpload(namespaceId: number, objectId: string, nowMs: number): Promise<void> {
    const record: GcRecord = { kind: "upload", objectId, startedAtMs: nowMs, state: "uploading" };
    await this.store.put(this.keys.gc(namespaceId, objectId), encodeRecord(record));
  }

  /** Marks an upload that will never commit, so garbage collection need not wait for it to age. */
  async abandonUpload(namespaceId: number, objectId: string, nowMs: number): Promise<void> {
    const record: GcRecord = { kind: "upload", objectId, startedAtMs: nowMs, state: "abandoned" };
    await this.store.put(this.keys.gc(namespaceId, objectId), encodeRecord(record));
  }

  /**
   * Commits manifest changes atomically (see the header). ASSERT_FAILED when a manifest changed since it
   * was read; NOT_FOUND when the namespace was deleted.
   */
  async commit(namespaceId: number, items: readonly CommitItem[], nowMs: number, assertOnly: readonly AssertOnlyItem[] = []): Promise<void> {
    if (items.length > commitItemsMax) {
      throw new OvsError("INVALID_ARGUMENT", `One commit changes at most ${commitItemsMax} objects; this one ${items.length}.`);
    }
    if (assertOnly.length > assertOnlyItemsMax) {
      throw new OvsError("INVALID_ARGUMENT", `One commit asserts at most ${assertOnlyItemsMax} unchanged objects; this one ${assertOnly.length}.`);
    }
    const asserts: SequenceAssert[] = [{ kind: "exists", key: this.keys.info(namespaceId) }];
    const operations: SequenceOperation[] = [];
    const seen = new Set<string>();
    for (const item of assertOnly) {
      if (seen.has(item.name)) throw new OvsError("INVALID_ARGUMENT", `The object ${item.name} appears twice in one commit.`);
      seen.add(item.name);
      const key = this.keys.object(namespaceId, item.name);
      asserts.push(item.previous === undefined ? { kind: "absent", key } : { kind: "equals", key, value: item.previous.bytes });
    }
    for (const item of items) {
      if (seen.has(item.name)) throw new OvsError("INVALID_ARGUMENT", `The object ${item.name} appears twice in one commit.`);
      seen.add(item.name);
      const key = this.keys.object(namespaceId, item.name);
      asserts.push(item.previous === undefined ? { kind: "absent", key } : { kind: "equals", key, value: item.previous.bytes });
      if (item.next === undefined) {
        if (item.previous !== undefined) operations.push({ kind: "delete", key });
      } else {
        operations.push({ kind: "put", key, value: item.next.bytes });
        if (item.next.manifest.sizeBytes > 0) operations.push({ kind: "delete", key: this.keys.gc(namespaceId, item.next.manifest.objectId) });
        if (item.next.strays.length > 0) {
          const strays: GcRecord = { kind: "strays", objectId: item.next.manifest.objectId, fragments: item.next.strays, atMs: nowMs };
          operations.push({ kind: "put", key: this.keys.gcStrays(namespaceId, item.next.manifest.objectId), value: encodeRecord(strays) });
        }
      }
      const old = item.previous?.manifest;
      if (old !== undefined && old.chunks.length > 0 && old.objectId !== item.next?.manifest.objectId) {
        const record: GcRecord = { kind: "object", objectId: old.objectId, asdIds: manifestAsdIds(old), reason: item.next === undefined ? "deleted" : "overwritten", atMs: nowMs };
        operations.push({ kind: "put", key: this.keys.gc(namespaceId, old.objectId), value: encodeRecord(record) });
      }
    }
    try {
      await this.store.sequence(asserts, operations);
    } catch (error) {
      if (isOvsError(error, "ASSERT_FAILED") && !(await this.namespaceExists(namespaceId))) {
        throw new OvsError("NOT_FOUND", "The namespace was deleted while the change was being made.", { namespaceId });
      }
      throw error;
    }
  }

  /** One page of garbage records of a namespace (for maintenance and tests). */
  async listGarbage(namespaceId: number, options: { after?: string; limit: number }): Promise<{ entries: Array<{ key: string; bytes: Buffer; record: GcRecord }>; more: boolean }> {
    const page = await this.store.prefix(this.keys.gcPrefix(namespaceId), {
      limit: Math.min(options.limit, rangeLimitMax),
      ...(options.after === undefined ? {} : { after: options.after }),
    });
    return {
      entries: page.entries.map((entry) => ({ key: entry.key, bytes: entry.value, record: decodeRecord<GcRecord>(entry.value, entry.key, checkGcRecord) })),
      more: page.more,
    };
  }

  /** Removes a garbage record once its fragments are deleted; only if it is unchanged. */
  async forgetGarbage(key: string, expected: Buffer): Promise<boolean> {
    return this.store.testAndSet(key, expected, undefined);
  }
}

function decodeStored(bytes: Buffer, key: string): ManifestRead {
  const decoded = decodeManifest(bytes);
  if (!decoded.ok) throw new OvsError("CORRUPT", `The manifest at ${key} is corrupt: ${decoded.reason}.`, { key });
  return { bytes, manifest: decoded.value };
}
