// The object manifest codec: what the NSM stores per object (docs/formats/manifest.md): name, object id,
// size, object CRC32C, the preset version and coding, and per chunk and fragment the ASD, version,
// checksum and packed length, or a hole. measure / encode / decode; decode returns a reason on bad input.
// Imported by nsm.ts and the client through src/alba/manager/index.ts.
//
// Invariants: little-endian; persisted codes (compression, encryption, checksum) are the fragment
// header's and never renumbered; the trailing CRC32C covers every byte before it, so a flipped byte in a
// stored manifest is CORRUPT, never a wrong location; encode(decode(x)) = x.
// Buffers: encodeManifest returns a fresh Buffer owned by the caller; decodeManifest copies what it keeps.
// Limits: chunkCountMax chunks (the encoding stays far below the store's 1 MiB value limit), k+m ≤ 48.

import { assert, crc32c } from "../../base/index.js";
import type { ChecksumKind, CompressionKind, EncryptionKind } from "../coding/index.js";
import type { Policy } from "../placement/index.js";

export const manifestMagic = Buffer.from("OVSM", "latin1");
export const manifestFormatVersion = 1;
export const manifestFixedBytes = 64;
/** Most chunks per object: at 4 MiB chunks, objects up to 16 GiB. */
export const chunkCountMax = 4096;
const fragmentEntryBytes = 1 + 16 + 4 + 4 + 4;

/** Persisted codes (the same numbers as the packed fragment header's). */
const compressionCodes: Record<CompressionKind, number> = { none: 0, lz4: 1, zstd: 2 };
const encryptionCodes: Record<EncryptionKind, number> = { none: 0, "aes-256-gcm": 1 };
const checksumCodes: Record<ChecksumKind, number> = { none: 0, crc32c: 1 };
const objectChecksumCrc32c = 1;

export interface ManifestFragment {
  /** 32 hex digits. */
  asdId: string;
  /** Rises when repair or rebalance rewrites the fragment (part of its key). */
  version: number;
  /** The packed fragment's checksum value (0 with checksum none). */
  checksumValue: number;
  packedSizeBytes: number;
}

export interface ManifestChunk {
  chunkSizeBytes: number;
  /** k+m slots; undefined is a hole (no fragment stored: placement found no ASD, or the write failed). */
  fragments: Array<ManifestFragment | undefined>;
}

export interface Manifest {
  name: string;
  /** 32 hex digits, random per upload; fragment keys use it. */
  objectId: string;
  sizeBytes: number;
  /** CRC32C of the whole object. */
  objectCrc32c: number;
  presetName: string;
  presetVersion: number;
  /** The policy the upload used, and its index in the preset. */
  policy: Policy;
  policyIndex: number;
  fragmentSizeMaxBytes: number;
  compression: CompressionKind;
  encryption: EncryptionKind;
  fragmentChecksum: ChecksumKind;
  /** SHA-256 of the encryption key (32 bytes, hex) when encrypted: which key, without the key. */
  encryptionKeySha256?: string;
  timestampMs: number;
  chunks: ManifestChunk[];
}

export type DecodeResult<T> = { ok: true; value: T } | { ok: false; reason: string };

export function measureManifest(manifest: Manifest): number {
  const fragmentsPerChunk = manifest.policy.k + manifest.policy.m;
  let total = manifestFixedBytes + 1 + Buffer.byteLength(manifest.presetName, "utf8") + 2 + Buffer.byteLength(manifest.name, "utf8");
  if (manifest.encryption !== "none") total += 32;
  for (const chunk of manifest.chunks) {
    total += 4;
    for (let index = 0; index < fragmentsPerChunk; index++) total += chunk.fragments[index] === undefined ? 1 : fragmentEntryBytes;
  }
  return total + 4;
}

export function encodeManifest(manifest: Manifest): Buffer {
  const { k, m, c, x } = manifest.policy;
  const fragmentsPerChunk = k + m;
  assert(manifest.chunks.length <= chunkCountMax, `at most ${chunkCountMax} chunks`);
  assert(fragmentsPerChunk <= 48 && k >= 1 && c <= 255 && x <= 255, "k+m ≤ 48");
  assert(/^[0-9a-f]{32}$/.test(manifest.objectId), "object id is 32 hex digits");
  assert(Number.isSafeInteger(manifest.sizeBytes) && manifest.sizeBytes >= 0, "size is a safe integer");
  const presetName = Buffer.from(manifest.presetName, "utf8");
  const name = Buffer.from(manifest.name, "utf8");
  assert(presetName.length <= 255 && name.length <= 0xffff, "names fit their length fields");
  const bytes = Buffer.alloc(measureManifest(manifest));
  manifestMagic.copy(bytes, 0);
  bytes[4] = manifestFormatVersion;
  bytes[5] = objectChecksumCrc32c;
  bytes[6] = compressionCodes[manifest.compression];
  bytes[7] = encryptionCodes[manifest.encryption];
  bytes[8] = checksumCodes[manifest.fragmentChecksum];
  bytes[9] = k;
  bytes[10] = m;
  bytes[11] = c;
  bytes[12] = x;
  bytes[13] = manifest.policyIndex;
  bytes.writeUInt16LE(0, 14);
  bytes.write(manifest.objectId, 16, "hex");
  bytes.writeBigUInt64LE(BigInt(manifest.sizeBytes), 32);
  bytes.writeUInt32LE(manifest.objectCrc32c >>> 0, 40);
  bytes.writeUInt32LE(manifest.presetVersion, 44);
  bytes.writeBigUInt64LE(BigInt(manifest.timestampMs), 48);
  bytes.writeUInt32LE(manifest.fragmentSizeMaxBytes, 56);
  bytes.writeUInt32LE(manifest.chunks.length, 60);
  let offset = manifestFixedBytes;
  bytes[offset++] = presetName.length;
  offset += presetName.copy(bytes, offset);
  bytes.writeUInt16LE(name.length, offset);
  offset += 2;
  offset += name.copy(bytes, offset);
  if (manifest.encryption !== "none") {
    assert(manifest.encryptionKeySha256 !== undefined && /^[0-9a-f]{64}$/.test(manifest.encryptionKeySha256), "an encrypted manifest names its key's SHA-256");
    offset += bytes.write(manifest.encryptionKeySha256, offset, "hex");
  }
  for (const chunk of manifest.chunks) {
    assert(chunk.fragments.length === fragmentsPerChunk, "k+m fragment slots per chunk");
    bytes.writeUInt32LE(chunk.chunkSizeBytes, offset);
    offset += 4;
    for (const fragment of chunk.fragments) {
      if (fragment === undefined) {
        bytes[offset++] = 0;
        continue;
      }
      assert(/^[0-9a-f]{32}$/.test(fragment.asdId), "ASD ids are 32 hex digits");
      bytes[offset++] = 1;
      offset += bytes.write(fragment.asdId, offset, "hex");
      bytes.writeUInt32LE(fragment.version, offset);
      bytes.writeUInt32LE(fragment.checksumValue >>> 0, offset + 4);
      bytes.writeUInt32LE(fragment.packedSizeBytes, offset + 8);
      offset += 12;
    }
  }
  bytes.writeUInt32LE(crc32c(bytes.subarray(0, offset)), offset);
  offset += 4;
  assert(offset === bytes.length, "measure and encode agree");
  return bytes;
}

export function decodeManifest(bytes: Uint8Array): DecodeResult<Manifest> {
  const data = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  if (data.length < manifestFixedBytes + 1 + 2 + 4) return fail(`${data.length} bytes is shorter than any manifest`);
  if (!data.subarray(0, 4).equals(manifestMagic)) return fail("bad magic");
  if (data[4] !== manifestFormatVersion) return fail(`unknown version ${data[4]}`);
  const storedCrc = data.readUInt32LE(data.length - 4);
  if (crc32c(data.subarray(0, data.length - 4)) !== storedCrc) return fail("manifest CRC32C mismatch");
  if (data[5] !== objectChecksumCrc32c) return fail(`unknown object checksum kind ${data[5]}`);
  const compression = kindOf(compressionCodes, data[6]!);
  const encryption = kindOf(encryptionCodes, data[7]!);
  const fragmentChecksum = kindOf(checksumCodes, data[8]!);
  if (compression === undefined || encryption === undefined || fragmentChecksum === undefined) return fail("unknown pipeline code");
  const policy = { k: data[9]!, m: data[10]!, c: data[11]!, x: data[12]! };
  if (policy.k < 1 || policy.k + policy.m > 48 || policy.c < policy.k || policy.c > policy.k + policy.m || policy.x < 1) return fail("invalid policy");
  const sizeBig = data.readBigUInt64LE(32);
  if (sizeBig > BigInt(Number.MAX_SAFE_INTEGER)) return fail("size above 2^53");
  const chunkCount = data.readUInt32LE(60);
  if (chunkCount > chunkCountMax) return fail(`${chunkCount} chunks, above ${chunkCountMax}`);
  let offset = manifestFixedBytes;
  const end = data.length - 4;
  const need = (count: number): boolean => offset + count <= end;
  if (!need(1)) return fail("truncated preset name");
  const presetNameBytes = data[offset++]!;
  if (!need(presetNameBytes + 2)) return fail("truncated preset name");
  const presetName = data.toString("utf8", offset, offset + presetNameBytes);
  offset += presetNameBytes;
  const nameBytes = data.readUInt16LE(offset);
  offset += 2;
  if (!need(nameBytes)) return fail("truncated name");
  const name = data.toString("utf8", offset, offset + nameBytes);
  offset += nameBytes;
  let encryptionKeySha256: string | undefined;
  if (encryption !== "none") {
    if (!need(32)) return fail("truncated key hash");
    encryptionKeySha256 = data.toString("hex", offset, offset + 32);
    offset += 32;
  }
  const chunks: ManifestChunk[] = [];
  let totalBytes = 0;
  for (let chunkIndex = 0; chunkIndex < chunkCount; chunkIndex++) {
    if (!need(4)) return fail(`truncated chunk ${chunkIndex}`);
    const chunkSizeBytes = data.readUInt32LE(offset);
    offset += 4;
    totalBytes += chunkSizeBytes;
    const fragments: Array<ManifestFragment | undefined> = [];
    for (let fragmentIndex = 0; fragmentIndex < policy.k + policy.m; fragmentIndex++) {
      if (!need(1)) return fail(`truncated fragment ${chunkIndex}.${fragmentIndex}`);
      const present = data[offset++];
      if (present === 0) {
        fragments.push(undefined);
        continue;
      }
      if (present !== 1 || !need(fragmentEntryBytes - 1)) return fail(`bad fragment entry ${chunkIndex}.${fragmentIndex}`);
      fragments.push({
        asdId: data.toString("hex", offset, offset + 16),
        version: data.readUInt32LE(offset + 16),
        checksumValue: data.readUInt32LE(offset + 20),
        packedSizeBytes: data.readUInt32LE(offset + 24),
      });
      offset += fragmentEntryBytes - 1;
    }
    chunks.push({ chunkSizeBytes, fragments });
  }
  if (offset !== end) return fail(`${end - offset} trailing bytes`);
  const sizeBytes = Number(sizeBig);
  if (totalBytes !== sizeBytes) return fail(`chunk sizes add up to ${totalBytes}, not the size ${sizeBytes}`);
  const manifest: Manifest = {
    name,
    objectId: data.toString("hex", 16, 32),
    sizeBytes,
    objectCrc32c: data.readUInt32LE(40),
    presetName,
    presetVersion: data.readUInt32LE(44),
    policy,
    policyIndex: data[13]!,
    fragmentSizeMaxBytes: data.readUInt32LE(56),
    compression,
    encryption,
    fragmentChecksum,
    timestampMs: Number(data.readBigUInt64LE(48)),
    chunks,
  };
  if (encryptionKeySha256 !== undefined) manifest.encryptionKeySha256 = encryptionKeySha256;
  return { ok: true, value: manifest };
}

/** Every ASD that holds a fragment of the manifest. */
export function manifestAsdIds(manifest: Manifest): string[] {
  const ids = new Set<string>();
  for (const chunk of manifest.chunks) for (const fragment of chunk.fragments) if (fragment !== undefined) ids.add(fragment.asdId);
  return [...ids].sort();
}

function kindOf<T extends string>(codes: Record<T, number>, code: number): T | undefined {
  for (const [kind, value] of Object.entries(codes) as Array<[T, number]>) if (value === code) return kind;
  return undefined;
}

function fail(reason: string): { ok: false; reason: string } {
  return { ok: false, reason };
}
