// The packed-fragment codec: a 56-byte header, then the payload (the fragment after compression and
// encryption). Spec: docs/formats/fragment.md; its worked example is a golden vector in pipeline.test.ts.
// Imported by pipeline.ts (and tests).
//
// Invariants: all integers little-endian; persisted codes are never renumbered; the header's checksum
// covers header bytes [0, 52) and then the payload; the GCM additional data is header bytes [0, 24).
// Decoding never trusts a length: every size is checked against the bytes present and the limits.
// Buffers: decodeFragmentHeader returns nonce and tag as views into the caller's packed bytes (no copy).
// Limits: sizes are u32; fragmentSizeBytes ≤ fragmentSizeMaxBytesLimit; k ≤ ecKMax, m ≤ ecMMax.

import { assert } from "../../base/index.js";
import { compressionCodes, compressionKindOfCode, type CompressionKind } from "./compression.js";
import { aesGcmNonceSizeBytes, aesGcmTagSizeBytes } from "./encryption.js";
import { ecSchemeIsalCauchy, fragmentSizeBytesFor } from "./erasure.js";
import { ecKMax, ecMMax } from "./isal.js";

export type EncryptionKind = "none" | "aes-256-gcm";
export type ChecksumKind = "none" | "crc32c";

/** Persisted codes: never renumber. */
export const encryptionCodes: Readonly<Record<EncryptionKind, number>> = { none: 0, "aes-256-gcm": 1 };
export const checksumCodes: Readonly<Record<ChecksumKind, number>> = { none: 0, crc32c: 1 };

export const fragmentMagic = Buffer.from("OVSF", "latin1");
export const fragmentFormatVersion = 1;
export const fragmentHeaderSizeBytes = 56;
/** A fragment larger than this is refused: the format allows u32, the pipeline a few MiB. */
export const fragmentSizeMaxBytesLimit = 64 * 1024 * 1024;

export const headerOffsets = {
  magic: 0,
  version: 4,
  compression: 5,
  encryption: 6,
  checksum: 7,
  ecScheme: 8,
  k: 9,
  m: 10,
  fragmentIndex: 11,
  chunkSizeBytes: 12,
  fragmentSizeBytes: 16,
  payloadSizeBytes: 20,
  nonce: 24,
  tag: 36,
  checksumValue: 52,
} as const;

/** Header bytes covered by AES-GCM as additional authenticated data. */
export const authenticatedHeaderSizeBytes = headerOffsets.nonce;
/** Header bytes covered by the checksum (everything before the checksum field). */
export const checksummedHeaderSizeBytes = headerOffsets.checksumValue;

export interface FragmentHeaderFields {
  compression: CompressionKind;
  encryption: EncryptionKind;
  checksum: ChecksumKind;
  k: number;
  m: number;
  fragmentIndex: number;
  chunkSizeBytes: number;
  fragmentSizeBytes: number;
  payloadSizeBytes: number;
}

export interface FragmentHeader extends FragmentHeaderFields {
  version: number;
  ecScheme: number;
  /** Views into the packed bytes. */
  nonce: Buffer;
  tag: Buffer;
  checksumValue: number;
}

export type FragmentHeaderDecodeResult = { ok: true; header: FragmentHeader } | { ok: false; reason: string };

/**
 * Writes header bytes [0, 24) from `fields` and zeroes the nonce, tag and checksum fields
 * (the pipeline fills them in afterwards).
 */
export function writeFragmentHeader(fields: FragmentHeaderFields, target: Buffer): void {
  assert(target.length === fragmentHeaderSizeBytes, "the header is 56 bytes");
  assert(fields.k >= 1 && fields.k <= ecKMax && fields.m >= 0 && fields.m <= ecMMax, "k and m within limits");
  assert(fields.fragmentIndex >= 0 && fields.fragmentIndex < fields.k + fields.m, "fragment index < k+m");
  assert(fields.fragmentSizeBytes === fragmentSizeBytesFor(fields.chunkSizeBytes, fields.k), "fragment size = ceil(chunk/k)");
  assert(fields.fragmentSizeBytes <= fragmentSizeMaxBytesLimit, "fragment size within the limit");
  assert(fields.payloadSizeBytes >= 0 && fields.payloadSizeBytes <= 0xffffffff, "payload size fits u32");
  fragmentMagic.copy(target, headerOffsets.magic);
  target[headerOffsets.version] = fragmentFormatVersion;
  target[headerOffsets.compression] = compressionCodes[fields.compression];
  target[headerOffsets.encryption] = encryptionCodes[fields.encryption];
  target[headerOffsets.checksum] = checksumCodes[fields.checksum];
  target[headerOffsets.ecScheme] = ecSchemeIsalCauchy;
  target[headerOffsets.k] = fields.k;
  target[headerOffsets.m] = fields.m;
  target[headerOffsets.fragmentIndex] = fields.fragmentIndex;
  target.writeUInt32LE(fields.chunkSizeBytes, headerOffsets.chunkSizeBytes);
  target.writeUInt32LE(fields.fragmentSizeBytes, headerOffsets.fragmentSizeBytes);
  target.writeUInt32LE(fields.payloadSizeBytes, headerOffsets.payloadSizeBytes);
  target.fill(0, headerOffsets.nonce, fragmentHeaderSizeBytes);
}

/** Reads the checksum kind and stored value, checking only what that needs (length, magic, version). */
export function peekFragmentChecksum(
  packed: Uint8Array,
): { ok: true; checksum: ChecksumKind; checksumValue: number } | { ok: false; reason: string } {
  if (packed.length < fragmentHeaderSizeBytes) {
    return { ok: false, reason: `${packed.length} bytes is shorter than the ${fragmentHeaderSizeBytes}-byte header` };
  }
  const bytes = asBuffer(packed);
  if (!bytes.subarray(0, 4).equals(fragmentMagic)) return { ok: false, reason: "bad magic (not a packed fragment)" };
  if (bytes[headerOffsets.version] !== fragmentFormatVersion) {
    return { ok: false, reason: `unknown format version ${bytes[headerOffsets.version]}` };
  }
  const code = bytes[headerOffsets.checksum];
  const checksum = kindOfCode(checksumCodes, code);
  if (checksum === undefined) return { ok: false, reason: `unknown checksum code ${code}` };
  return { ok: true, checksum, checksumValue: bytes.readUInt32LE(headerOffsets.checksumValue) };
}

/** Decodes and validates the header of a whole packed fragment (header + payload). */
export function decodeFragmentHeader(packed: Uint8Array): FragmentHeaderDecodeResult {
  const peek = peekFragmentChecksum(packed);
  if (!peek.ok) return peek;
  const bytes = asBuffer(packed);
  const compression = compressionKindOfCode(bytes[headerOffsets.compression]!);
  if (compression === undefined) return { ok: false, reason: `unknown compression code ${bytes[headerOffsets.compression]}` };
  const encryption = kindOfCode(encryptionCodes, bytes[headerOffsets.encryption]);
  if (encryption === undefined) return { ok: false, reason: `unknown encryption code ${bytes[headerOffsets.encryption]}` };
  const ecScheme = bytes[headerOffsets.ecScheme]!;
  if (ecScheme !== ecSchemeIsalCauchy) return { ok: false, reason: `unknown erasure scheme ${ecScheme}` };
  const k = bytes[headerOffsets.k]!;
  const m = bytes[headerOffsets.m]!;
  const fragmentIndex = bytes[headerOffsets.fragmentIndex]!;
  if (k < 1 || k > ecKMax || m > ecMMax) return { ok: false, reason: `k=${k}, m=${m} outside the limits` };
  if (fragmentIndex >= k + m) return { ok: false, reason: `fragment index ${fragmentIndex} ≥ k+m = ${k + m}` };
  const chunkSizeBytes = bytes.readUInt32LE(headerOffsets.chunkSizeBytes);
  const fragmentSizeBytes = bytes.readUInt32LE(headerOffsets.fragmentSizeBytes);
  const payloadSizeBytes = bytes.readUInt32LE(headerOffsets.payloadSizeBytes);
  if (fragmentSizeBytes > fragmentSizeMaxBytesLimit) return { ok: false, reason: `fragment size ${fragmentSizeBytes} over the limit` };
  if (fragmentSizeBytes !== fragmentSizeBytesFor(chunkSizeBytes, k)) {
    return { ok: false, reason: `fragment size ${fragmentSizeBytes} ≠ ceil(chunk size ${chunkSizeBytes} / k ${k})` };
  }
  if (payloadSizeBytes !== packed.length - fragmentHeaderSizeBytes) {
    return { ok: false, reason: `payload size ${payloadSizeBytes} ≠ the ${packed.length - fragmentHeaderSizeBytes} bytes present` };
  }
  if (compression === "none" && payloadSizeBytes !== fragmentSizeBytes) {
    return { ok: false, reason: `uncompressed payload of ${payloadSizeBytes} bytes ≠ fragment size ${fragmentSizeBytes}` };
  }
  const nonce = bytes.subarray(headerOffsets.nonce, headerOffsets.nonce + aesGcmNonceSizeBytes);
  const tag = bytes.subarray(headerOffsets.tag, headerOffsets.tag + aesGcmTagSizeBytes);
  if (encryption === "none" && !(isZero(nonce) && isZero(tag))) return { ok: false, reason: "nonce or tag set without encryption" };
  if (peek.checksum === "none" && peek.checksumValue !== 0) return { ok: false, reason: "checksum value set without a checksum" };
  return {
    ok: true,
    header: {
      version: fragmentFormatVersion,
      compression,
      encryption,
      checksum: peek.checksum,
      ecScheme,
      k,
      m,
      fragmentIndex,
      chunkSizeBytes,
      fragmentSizeBytes,
      payloadSizeBytes,
      nonce,
      tag,
      checksumValue: peek.checksumValue,
    },
  };
}

function kindOfCode<Kind extends string>(codes: Readonly<Record<Kind, number>>, code: number | undefined): Kind | undefined {
  for (const [kind, value] of Object.entries(codes) as Array<[Kind, number]>) if (value === code) return kind;
  return undefined;
}

function isZero(bytes: Uint8Array): boolean {
  for (const byte of bytes) if (byte !== 0) return false;
  return true;
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
}
