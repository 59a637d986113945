// The object backend interface: what the volume engine stores its SCOs, TLogs and volume files in.
// Implementations: LocalBackend (a directory; the original's LOCAL backend) and, in the ALBA issue, the
// ALBA client. Every implementation passes the contract suite in object-backend.contract.ts.
//
// Semantics every implementation keeps:
// - A namespace holds objects by name. Names and namespaces are 1–255 bytes of [A-Za-z0-9._-] and do
//   not start with "."; anything else is INVALID_ARGUMENT.
// - put/apply return only once the data is durable (fsynced, or c fragments stored for ALBA).
// - get verifies the object's checksum and never returns bytes that fail it (CHECKSUM_MISMATCH).
// - apply is atomic: every assert holds and every update is applied, or nothing changes (ASSERT_FAILED).
// - Buffers returned are owned by the caller.
// - Every object operation (put, get, getRanges, sizeBytes, exists, delete, list, apply) on a missing
//   namespace is NOT_FOUND.
// - Within one apply, updates of the same name collapse to the last one.

export interface ByteRange {
  offsetBytes: number;
  lengthBytes: number;
}

export type ObjectAssert =
  | { kind: "absent"; name: string }
  | { kind: "equals"; name: string; value: Uint8Array };

export type ObjectUpdate =
  /**
   * `file`, optional: a local file whose content is exactly `data`, completely written, and never
   * changed again (a closed SCO file). A backend that `linksFiles` may store the object by linking that
   * file instead of writing the bytes again; every other backend ignores it.
   */
  | {
    kind: "put"; name: string; data: Uint8Array; file?: string;
    /**
     * Optional, with `file`: the crc32c of each 4 KiB block of `data` (the last may be short), computed
     * by the caller from these very bytes (a volume's cluster CRCs). A backend that links the file may
     * use them for its checksum table instead of reading `data` again; a wrong one makes reads fail.
     */
    blockCrcs?: Uint32Array;
  }
  | { kind: "delete"; name: string };

export interface ListPage {
  names: string[];
  /** True when more names follow the last one returned (pass it as `after` for the next page). */
  more: boolean;
}

export interface ListOptions {
  prefix?: string;
  /** Return names strictly after this one (paging). */
  after?: string;
  /** At most this many names: a positive integer; default listLimitMax, larger values are clamped to it. */
  limit?: number;
}

export const listLimitMax = 1000;

export interface ObjectBackend {
  /** A short description for logs and `ovs` output, e.g. "local:/var/lib/ovs/backend". */
  readonly description: string;
  /**
   * True if put and apply neither keep nor read the data buffers passed in once their promise settles,
   * so the caller may reuse them (the volume pools its SCO buffers then). False or absent: a
   * buffer may still be read after the call returned (ALBA writes the remaining fragments of a chunk
   * after c of them are durable, and may keep fragment views in its cache).
   */
  readonly releasesDataOnReturn?: boolean;
  /**
   * True if a put update's `file` may be stored by linking it (the local backend, when the file is on
   * its file system): each byte of a SCO then reaches the disk once. The caller must never change the
   * file afterwards, not even by truncating it (replace it by a copy first).
   */
  readonly linksFiles?: boolean;

  createNamespace(namespace: string): Promise<void>; // ALREADY_EXISTS if it exists
  deleteNamespace(namespace: string): Promise<void>; // removes every object; NOT_FOUND if missing
  namespaceExists(namespace: string): Promise<boolean>;
  listNamespaces(options?: ListOptions): Promise<ListPage>;

  /** Stores (or overwrites) an object; durable on return. NOT_FOUND if the namespace is missing. */
  put(namespace: string, name: string, data: Uint8Array): Promise<void>;
  /** The whole object; NOT_FOUND if missing; CHECKSUM_MISMATCH if it fails verification. */
  get(namespace: string, name: string): Promise<Buffer>;
  /**
   * Exact byte ranges of an object, one Buffer per range in the order asked; OUT_OF_RANGE if a range
   * passes its end (a zero-length range at the end is fine); verifies at least the bytes it returns.
   */
  getRanges(namespace: string, name: string, ranges: readonly ByteRange[]): Promise<Buffer[]>;
  /** Size of an object in bytes, or undefined if it does not exist. */
  sizeBytes(namespace: string, name: string): Promise<number | undefined>;
  exists(namespace: string, name: string): Promise<boolean>;
  /** Deletes an object; returns false if it did not exist. */
  delete(namespace: string, name: string): Promise<boolean>;
  list(namespace: string, options?: ListOptions): Promise<ListPage>;
  /** Atomically checks every assert and applies every update; ASSERT_FAILED (nothing changed) otherwise. */
  apply(namespace: string, asserts: readonly ObjectAssert[], updates: readonly ObjectUpdate[]): Promise<void>;

  close(): Promise<void>;
}
