// Key layout of the ALBA backend (docs/formats/alba-keys.md): the manager's keys on the cluster store,
// an NSM host's keys (per namespace: info, manifests, garbage records), and the binary key of a
// fragment on an ASD. Pure functions. Imported by manager.ts, nsm.ts and the client.
//
// Invariants: every manager key starts with the manager root, every NSM key with its NSM prefix; a
// namespace's NSM keys all start with namespacePrefix(id) so deleting a namespace is one deletePrefix;
// namespace ids are fixed-width hex so ids never prefix each other; a fragment key starts with the
// namespace id and then the object id (range-deletable per namespace and per object), and is unique per
// (namespace, object id, chunk, fragment, version), so an upload never overwrites a live fragment.
// Buffers: fragment keys are fresh Buffers owned by the caller.

import { assert } from "../../base/index.js";

/** Manager keys under `root` (ends with "/"). */
export const managerKeys = (root: string) => {
  assert(root.endsWith("/"), "a manager root ends with /");
  return {
    backend: `${root}backend`,
    asdPrefix: `${root}asds/`,
    asd: (asdId: string) => `${root}asds/${asdId}`,
    presetPrefix: `${root}presets/`,
    preset: (name: string) => `${root}presets/${name}`,
    defaultPreset: `${root}default-preset`,
    nsmPrefix: `${root}nsms/`,
    nsm: (nsmId: string) => `${root}nsms/${nsmId}`,
    namespacePrefix: `${root}namespaces/`,
    namespace: (name: string) => `${root}namespaces/${name}`,
    namespaceIdNext: `${root}namespace-id-next`,
    deletedNamespacePrefix: `${root}gc-namespaces/`,
    deletedNamespace: (namespaceId: number) => `${root}gc-namespaces/${namespaceIdHex(namespaceId)}`,
    /** The NSM prefix of an NSM host kept on the manager's own store. */
    localNsmPrefix: (nsmId: string) => `${root}nsm/${nsmId}/`,
  };
};

export type ManagerKeys = ReturnType<typeof managerKeys>;

/** 16 lowercase hex digits: fixed width so that ids sort numerically and never prefix one another. */
export function namespaceIdHex(namespaceId: number): string {
  assert(Number.isSafeInteger(namespaceId) && namespaceId >= 1, "namespace ids are positive safe integers");
  return namespaceId.toString(16).padStart(16, "0");
}

/** NSM keys under `prefix` (ends with "/"). */
export const nsmKeys = (prefix: string) => {
  assert(prefix.endsWith("/"), "an NSM prefix ends with /");
  const ns = (namespaceId: number) => `${prefix}${namespaceIdHex(namespaceId)}/`;
  return {
    namespacePrefix: ns,
    info: (namespaceId: number) => `${ns(namespaceId)}info`,
    objectPrefix: (namespaceId: number) => `${ns(namespaceId)}o/`,
    object: (namespaceId: number, name: string) => `${ns(namespaceId)}o/${name}`,
    gcPrefix: (namespaceId: number) => `${ns(namespaceId)}gc/`,
    gc: (namespaceId: number, objectId: string) => `${ns(namespaceId)}gc/${objectId}`,
    gcStrays: (namespaceId: number, objectId: string) => `${ns(namespaceId)}gc/${objectId}.strays`,
  };
};

export type NsmKeys = ReturnType<typeof nsmKeys>;

/** First byte of every fragment key on an ASD ("F"); other kinds of keys may use other bytes later. */
export const fragmentKeyTag = 0x46;
export const fragmentKeyBytes = 34;
export const objectIdBytes = 16;

/** The ASD key of one fragment: "F" ‖ namespace id u64 BE ‖ object id (16) ‖ chunk u32 BE ‖ fragment u8 ‖ version u32 BE. */
export function fragmentKey(namespaceId: number, objectId: string, chunkIndex: number, fragmentIndex: number, version: number): Buffer {
  assert(/^[0-9a-f]{32}$/.test(objectId), "object ids are 32 hex digits");
  assert(Number.isInteger(chunkIndex) && chunkIndex >= 0 && chunkIndex <= 0xffffffff, "chunk index is u32");
  assert(Number.isInteger(fragmentIndex) && fragmentIndex >= 0 && fragmentIndex <= 0xff, "fragment index is u8");
  assert(Number.isInteger(version) && version >= 0 && version <= 0xffffffff, "version is u32");
  const key = Buffer.allocUnsafe(fragmentKeyBytes);
  key[0] = fragmentKeyTag;
  key.writeBigUInt64BE(BigInt(namespaceId), 1);
  key.write(objectId, 9, "hex");
  key.writeUInt32BE(chunkIndex, 25);
  key[29] = fragmentIndex;
  key.writeUInt32BE(version, 30);
  return key;
}

/** Every fragment key of a namespace starts with this (9 bytes). */
export function namespaceFragmentPrefix(namespaceId: number): Buffer {
  const prefix = Buffer.allocUnsafe(9);
  prefix[0] = fragmentKeyTag;
  prefix.writeBigUInt64BE(BigInt(namespaceId), 1);
  return prefix;
}

/** Every fragment key of one object (one upload) starts with this (25 bytes). */
export function objectFragmentPrefix(namespaceId: number, objectId: string): Buffer {
  const prefix = Buffer.allocUnsafe(25);
  namespaceFragmentPrefix(namespaceId).copy(prefix, 0);
  prefix.write(objectId, 9, "hex");
  return prefix;
}

/** The exclusive end of a range of keys starting with `prefix` (prefix + 1 in its last non-0xff byte). */
export function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let index = end.length - 1; index >= 0; index--) {
    if (end[index]! < 0xff) {
      end[index] = end[index]! + 1;
      return end.subarray(0, index + 1);
    }
  }
  assert(false, "fragment prefixes never are all 0xff");
}

export interface ParsedFragmentKey {
  namespaceId: number;
  objectId: string;
  chunkIndex: number;
  fragmentIndex: number;
  version: number;
}

/** Parses a fragment key, or undefined if `key` is not one. */
export function parseFragmentKey(key: Uint8Array): ParsedFragmentKey | undefined {
  if (key.length !== fragmentKeyBytes || key[0] !== fragmentKeyTag) return undefined;
  const bytes = Buffer.from(key.buffer, key.byteOffset, key.length);
  const namespaceId = Number(bytes.readBigUInt64BE(1));
  if (!Number.isSafeInteger(namespaceId)) return undefined;
  return {
    namespaceId,
    objectId: bytes.toString("hex", 9, 25),
    chunkIndex: bytes.readUInt32BE(25),
    fragmentIndex: bytes[29]!,
    version: bytes.readUInt32BE(30),
  };
}
