// The fragment pipeline of one preset: a chunk → k+m packed fragments and back.
//   encode: erasure-code (k data fragments of ceil(n/k) bytes, the last zero-padded; m parity) → per
//           fragment compress (kept only when smaller) → encrypt (AES-256-GCM, fresh nonce) → checksum.
//   decode: per fragment verify the checksum → decrypt (tag checked) → decompress → Reed-Solomon decode
//           from any k good fragments (missing or bad data fragments are rebuilt).
// Encoding comes first so that partial reads can map object bytes to fragment bytes (partial-read.ts).
// Packed format: docs/formats/fragment.md (fragment-format.ts). Imported through index.ts.
//
// Invariants: a fragment is accepted only if its checksum and encryption kinds are the preset's (a
// flipped code byte cannot switch verification off), its k/m are the preset's, its index is the slot it
// was read for, and its chunk size agrees with the other fragments'. A fragment that fails any check
// never contributes bytes: decodeChunk drops it, reports it in badFragments, and decodes from the rest.
//
// Buffers (hot path, few copies):
//   encodeChunk: with compression and encryption none, the data fragments' payloads are VIEWS of the
//     caller's chunk (the caller must not change it until the fragments are written) and each parity
//     fragment is one allocation (header and payload contiguous, ISA-L writes straight into it). With
//     compression or encryption, parity goes to scratch buffers owned and reused by the pipeline, and
//     payloads are fresh Buffers. Everything returned is owned by the caller.
//   unpackFragment: with compression and encryption none the data is a view of the caller's bytes.
//   decodeChunk: one fresh output Buffer; present data fragments are copied into it once, missing ones
//     are decoded straight into it.
// Not reentrant across await (there is none: every method is synchronous). One pipeline per preset.
// Limits: k ≤ ecKMax, m ≤ ecMMax, fragmentSizeMaxBytes ≤ fragmentSizeMaxBytesLimit (64 MiB).

import { assert, isOvsError, OvsError } from "../../base/index.js";
import { createFragmentCompressor, type CompressionKind, type FragmentCompressor } from "./compression.js";
import { aesGcmKeySizeBytes, decryptAesGcm, encryptAesGcm, randomNonce } from "./encryption.js";
import { ErasureCoder, fragmentSizeBytesFor } from "./erasure.js";
import {
  authenticatedHeaderSizeBytes,
  checksummedHeaderSizeBytes,
  decodeFragmentHeader,
  fragmentHeaderSizeBytes,
  fragmentSizeMaxBytesLimit,
  headerOffsets,
  peekFragmentChecksum,
  writeFragmentHeader,
  type ChecksumKind,
  type EncryptionKind,
  type FragmentHeader,
} from "./fragment-format.js";
import { crc32c, ecKMax, ecMMax } from "./isal.js";
import { planPartialRead, type ByteRange, type FragmentSlice } from "./partial-read.js";

export interface CodingPreset {
  /** Data fragments per chunk. */
  k: number;
  /** Parity fragments per chunk. */
  m: number;
  /** Largest fragment; a chunk holds at most k × this many bytes. */
  fragmentSizeMaxBytes: number;
  compression: CompressionKind;
  encryption: EncryptionKind;
  /** 32 bytes when encryption is aes-256-gcm, absent otherwise. */
  encryptionKey?: Uint8Array;
  checksum: ChecksumKind;
}

export interface PackedFragment {
  fragmentIndex: number;
  /** The 56-byte header. */
  header: Buffer;
  /** The stored bytes after the header. */
  payload: Buffer;
  packedSizeBytes: number;
  /** The header's checksum value (0 when the checksum is none): what a manifest records. */
  checksumValue: number;
}

export interface EncodedChunk {
  chunkSizeBytes: number;
  fragmentSizeBytes: number;
  /** k+m fragments, index order: data 0..k-1, then parity. */
  fragments: PackedFragment[];
}

export interface UnpackedFragment {
  header: FragmentHeader;
  /** The erasure-coded fragment (fragmentSizeBytes). */
  data: Buffer;
}

export interface BadFragment {
  fragmentIndex: number;
  error: OvsError;
}

export interface DecodedChunk {
  /** The chunk's bytes, owned by the caller. */
  data: Buffer;
  /** Fragments that were given but failed verification (to be counted against their ASD and repaired). */
  badFragments: BadFragment[];
}

export interface EncodeOptions {
  /** One 12-byte nonce per fragment instead of random ones: for golden vectors only. */
  nonces?: readonly Uint8Array[];
  /** Where the parity fragments (header + payload, without compression or encryption) are allocated. */
  allocate?: (byteCount: number) => Buffer;
}

/** Header and payload as one Buffer: a view when they are contiguous in memory, else one copy. */
export function packedFragmentBytes(fragment: PackedFragment): Buffer {
  return packedFragmentBytesFrom(fragment, undefined);
}

/** packedFragmentBytes, with the copy (when one is needed) in a buffer from `allocate` (e.g. a pool's take). */
export function packedFragmentBytesFrom(fragment: PackedFragment, allocate: ((byteCount: number) => Buffer) | undefined): Buffer {
  const { header, payload } = fragment;
  if (header.buffer === payload.buffer && header.byteOffset + fragmentHeaderSizeBytes === payload.byteOffset) {
    return Buffer.from(header.buffer, header.byteOffset, fragment.packedSizeBytes);
  }
  if (allocate === undefined) return Buffer.concat([header, payload], fragment.packedSizeBytes);
  const packed = allocate(fragment.packedSizeBytes);
  header.copy(packed, 0);
  payload.copy(packed, header.length);
  return packed;
}

export class FragmentPipeline {
  readonly preset: Readonly<CodingPreset>;
  readonly chunkSizeMaxBytes: number;
  private readonly coder: ErasureCoder;
  private readonly compressor: FragmentCompressor | undefined;
  private readonly key: Buffer | undefined;
  private readonly parityScratch: Buffer[] = [];

  constructor(preset: CodingPreset) {
    const { k, m, fragmentSizeMaxBytes } = preset;
    if (!(Number.isInteger(k) && k >= 1 && k <= ecKMax && Number.isInteger(m) && m >= 0 && m <= ecMMax)) {
      throw new OvsError("INVALID_ARGUMENT", `k=${k}, m=${m}: k must be in [1, ${ecKMax}] and m in [0, ${ecMMax}].`);
    }
    if (!(Number.isInteger(fragmentSizeMaxBytes) && fragmentSizeMaxBytes >= 1 && fragmentSizeMaxBytes <= fragmentSizeMaxBytesLimit)) {
      throw new OvsError("INVALID_ARGUMENT", `fragment size ${fragmentSizeMaxBytes} must be in [1, ${fragmentSizeMaxBytesLimit}] bytes.`);
    }
    if (preset.encryption === "aes-256-gcm") {
      if (preset.encryptionKey?.length !== aesGcmKeySizeBytes) {
        throw new OvsError("INVALID_ARGUMENT", `AES-256-GCM needs a ${aesGcmKeySizeBytes}-byte key.`);
      }
      this.key = Buffer.from(preset.encryptionKey);
    } else if (preset.encryptionKey !== undefined) {
      throw new OvsError("INVALID_ARGUMENT", "an encryption key was given but encryption is none.");
    }
    this.preset = { ...preset };
    this.chunkSizeMaxBytes = k * fragmentSizeMaxBytes;
    this.coder = new ErasureCoder(k, m);
    this.compressor = createFragmentCompressor(preset.compression);
  }

  /** Encodes one chunk (at most chunkSizeMaxBytes) into k+m packed fragments. */
  encodeChunk(chunk: Uint8Array, options: EncodeOptions = {}): EncodedChunk {
    const { k, m } = this.preset;
    assert(chunk.length <= this.chunkSizeMaxBytes, "a chunk holds at most k × fragmentSizeMaxBytes");
    assert(options.nonces === undefined || (this.key !== undefined && options.nonces.length === k + m), "one nonce per fragment, with encryption only");
    const chunkSizeBytes = chunk.length;
    const fragmentSizeBytes = fragmentSizeBytesFor(chunkSizeBytes, k);
    const source = asBuffer(chunk);
    const direct = this.compressor === undefined && this.key === undefined;

    const data: Buffer[] = [];
    for (let index = 0; index < k; index++) {
      const start = index * fragmentSizeBytes;
      if (start + fragmentSizeBytes <= chunkSizeBytes) {
        data.push(source.subarray(start, start + fragmentSizeBytes));
      } else {
        const padded = Buffer.alloc(fragmentSizeBytes);
        if (start < chunkSizeBytes) source.copy(padded, 0, start, chunkSizeBytes);
        data.push(padded);
      }
    }
    const parity: Buffer[] = [];
    const parityHeaders: Array<Buffer | undefined> = [];
    for (let index = 0; index < m; index++) {
      if (direct) {
        const packed = (options.allocate ?? Buffer.allocUnsafe)(fragmentHeaderSizeBytes + fragmentSizeBytes);
        parityHeaders.push(packed.subarray(0, fragmentHeaderSizeBytes));
        parity.push(packed.subarray(fragmentHeaderSizeBytes));
      } else {
        parityHeaders.push(undefined);
        parity.push(this.scratch(index, fragmentSizeBytes));
      }
    }
    this.coder.encode(data, parity, fragmentSizeBytes);

    const fragments: PackedFragment[] = [];
    for (let index = 0; index < k + m; index++) {
      const isParity = index >= k;
      const plain = isParity ? parity[index - k]! : data[index]!;
      const header = isParity ? parityHeaders[index - k] : undefined;
      fragments.push(this.pack(plain, index, chunkSizeBytes, fragmentSizeBytes, options.nonces?.[index], isParity && !direct, header));
    }
    return { chunkSizeBytes, fragmentSizeBytes, fragments };
  }

  /**
   * Verifies and opens one packed fragment read for slot `fragmentIndex`: checksum, then decryption
   * (tag checked), then decompression. Throws OvsError CHECKSUM_MISMATCH or CORRUPT naming the fragment.
   */
  unpackFragment(packed: Uint8Array, fragmentIndex: number): UnpackedFragment {
    const { k, m } = this.preset;
    assert(Number.isInteger(fragmentIndex) && fragmentIndex >= 0 && fragmentIndex < k + m, "fragment index < k+m");
    const bytes = asBuffer(packed);
    const peek = peekFragmentChecksum(bytes);
    if (!peek.ok) throw corrupt(fragmentIndex, peek.reason);
    if (peek.checksum !== this.preset.checksum) {
      throw corrupt(fragmentIndex, `checksum kind ${peek.checksum} is not the preset's ${this.preset.checksum}`);
    }
    if (peek.checksum === "crc32c") {
      const computed = fragmentChecksum(bytes.subarray(0, fragmentHeaderSizeBytes), bytes.subarray(fragmentHeaderSizeBytes));
      if (computed !== peek.checksumValue) {
        throw new OvsError(
          "CHECKSUM_MISMATCH",
          `fragment ${fragmentIndex}: crc32c mismatch (stored ${hex32(peek.checksumValue)}, computed ${hex32(computed)}).`,
          { fragmentIndex, storedChecksum: peek.checksumValue, computedChecksum: computed },
        );
      }
    }
    const decoded = decodeFragmentHeader(bytes);
    if (!decoded.ok) throw corrupt(fragmentIndex, decoded.reason);
    const header = decoded.header;
    if (header.fragmentIndex !== fragmentIndex) throw corrupt(fragmentIndex, `it is fragment ${header.fragmentIndex}`);
    if (header.k !== k || header.m !== m) throw corrupt(fragmentIndex, `it is coded ${header.k}+${header.m}, the preset ${k}+${m}`);
    if (header.encryption !== this.preset.encryption) {
      throw corrupt(fragmentIndex, `encryption ${header.encryption} is not the preset's ${this.preset.encryption}`);
    }
    if (header.compression !== "none" && header.compression !== this.preset.compression) {
      throw corrupt(fragmentIndex, `compression ${header.compression} is not the preset's ${this.preset.compression}`);
    }
    if (header.fragmentSizeBytes > this.preset.fragmentSizeMaxBytes) {
      throw corrupt(fragmentIndex, `fragment size ${header.fragmentSizeBytes} over the preset's ${this.preset.fragmentSizeMaxBytes}`);
    }

    let data = bytes.subarray(fragmentHeaderSizeBytes);
    if (header.encryption === "aes-256-gcm") {
      assert(this.key !== undefined, "an encrypting preset has a key");
      const plain = decryptAesGcm(this.key, header.nonce, bytes.subarray(0, authenticatedHeaderSizeBytes), data, header.tag);
      if (plain === undefined) {
        throw new OvsError(
          "CORRUPT",
          `fragment ${fragmentIndex}: AES-256-GCM authentication failed (wrong key, or the fragment was altered).`,
          { fragmentIndex, reason: "authentication" },
        );
      }
      data = plain;
    }
    if (header.compression !== "none") {
      assert(this.compressor !== undefined, "a compressing preset has a compressor");
      const plain = this.compressor.decompress(data, header.fragmentSizeBytes);
      if (plain === undefined) {
        throw corrupt(fragmentIndex, `its ${header.compression} payload does not decompress to ${header.fragmentSizeBytes} bytes`);
      }
      data = plain;
    }
    assert(data.length === header.fragmentSizeBytes, "an unpacked fragment has fragmentSizeBytes");
    return { header, data };
  }

  /**
   * Decodes a chunk from its packed fragments (k+m slots, undefined where not fetched). Data fragments
   * are preferred; parity ones are opened only as needed. Throws OvsError UNAVAILABLE, naming every bad
   * fragment, when fewer than k verify.
   */
  decodeChunk(packed: readonly (Uint8Array | undefined)[]): DecodedChunk {
    const { k } = this.preset;
    const opened = this.openFragments(packed, k);
    const { fragmentSizeBytes, chunkSizeBytes } = opened;
    const output = Buffer.allocUnsafe(k * fragmentSizeBytes);
    const missing: number[] = [];
    const outputs: Buffer[] = [];
    for (let index = 0; index < k; index++) {
      const slice = output.subarray(index * fragmentSizeBytes, (index + 1) * fragmentSizeBytes);
      const plain = opened.plains[index];
      if (plain !== undefined) {
        plain.copy(slice);
      } else {
        missing.push(index);
        outputs.push(slice);
      }
    }
    this.coder.reconstruct(opened.plains, missing, outputs, fragmentSizeBytes);
    return { data: output.subarray(0, chunkSizeBytes), badFragments: opened.badFragments };
  }

  /**
   * Rebuilds the fragments `targetIndices` of a chunk from the others (repair): decoded, then packed
   * again with fresh nonces. Throws OvsError UNAVAILABLE when fewer than k verify.
   */
  rebuildFragments(packed: readonly (Uint8Array | undefined)[], targetIndices: readonly number[]): { fragments: PackedFragment[]; badFragments: BadFragment[] } {
    const { k, m } = this.preset;
    assert(targetIndices.every((index) => Number.isInteger(index) && index >= 0 && index < k + m), "targets < k+m");
    const opened = this.openFragments(packed, k + m);
    const outputs = targetIndices.map(() => Buffer.allocUnsafe(opened.fragmentSizeBytes));
    this.coder.reconstruct(opened.plains, targetIndices, outputs, opened.fragmentSizeBytes);
    const fragments = targetIndices.map((index, position) =>
      this.pack(outputs[position]!, index, opened.chunkSizeBytes, opened.fragmentSizeBytes, undefined, false, undefined),
    );
    return { fragments, badFragments: opened.badFragments };
  }

  /**
   * Where the bytes of `ranges` of an object made of chunks `chunkSizesBytes` lie in its data fragments,
   * for reading them without decoding. Only for presets without compression and encryption.
   */
  planPartialRead(chunkSizesBytes: readonly number[], ranges: readonly ByteRange[]): FragmentSlice[] {
    if (this.preset.compression !== "none" || this.preset.encryption !== "none") {
      throw new OvsError(
        "INVALID_ARGUMENT",
        "partial reads without decoding need a preset with compression none and encryption none; fetch whole fragments.",
      );
    }
    assert(chunkSizesBytes.every((size) => size <= this.chunkSizeMaxBytes), "chunks fit the preset");
    return planPartialRead(chunkSizesBytes, this.preset.k, ranges);
  }

  // Opens present fragments in index order until `wantedCount` verified; bad ones are set aside.
  private openFragments(packed: readonly (Uint8Array | undefined)[], wantedCount: number) {
    const { k, m } = this.preset;
    assert(packed.length === k + m, "k+m fragment slots");
    const plains: Array<Buffer | undefined> = new Array<Buffer | undefined>(k + m).fill(undefined);
    const badFragments: BadFragment[] = [];
    let reference: FragmentHeader | undefined;
    let referenceIndex = -1;
    let goodCount = 0;
    for (let index = 0; index < k + m && goodCount < Math.max(wantedCount, k); index++) {
      const bytes = packed[index];
      if (bytes === undefined) continue;
      try {
        const unpacked = this.unpackFragment(bytes, index);
        if (reference !== undefined && unpacked.header.chunkSizeBytes !== reference.chunkSizeBytes) {
          throw corrupt(index, `chunk size ${unpacked.header.chunkSizeBytes} disagrees with fragment ${referenceIndex}'s ${reference.chunkSizeBytes}`);
        }
        if (reference === undefined) {
          reference = unpacked.header;
          referenceIndex = index;
        }
        plains[index] = unpacked.data;
        goodCount++;
      } catch (error) {
        if (!isOvsError(error)) throw error;
        badFragments.push({ fragmentIndex: index, error });
      }
    }
    if (goodCount < k || reference === undefined) {
      const presentCount = packed.filter((bytes) => bytes !== undefined).length;
      const reasons = badFragments.map((bad) => bad.error.message).join(" ");
      throw new OvsError(
        "UNAVAILABLE",
        `chunk cannot be decoded: ${goodCount} of the ${k} fragments needed verified (${presentCount} of ${k + m} present).${reasons === "" ? "" : ` ${reasons}`}`,
        { goodCount, presentCount, k, badFragments: badFragments.map((bad) => ({ fragmentIndex: bad.fragmentIndex, code: bad.error.code })) },
      );
    }
    return { plains, badFragments, fragmentSizeBytes: reference.fragmentSizeBytes, chunkSizeBytes: reference.chunkSizeBytes };
  }

  // Compress (when it helps), encrypt, checksum. `plain` is fragmentSizeBytes; `plainIsScratch` means it
  // must be copied if it ends up as the payload. `headerTarget` is a preallocated header (direct parity).
  private pack(
    plain: Buffer,
    fragmentIndex: number,
    chunkSizeBytes: number,
    fragmentSizeBytes: number,
    nonce: Uint8Array | undefined,
    plainIsScratch: boolean,
    headerTarget: Buffer | undefined,
  ): PackedFragment {
    const { k, m, encryption, checksum } = this.preset;
    let payload = plain;
    let compression: CompressionKind = "none";
    if (this.compressor !== undefined && plain.length > 0) {
      const compressed = this.compressor.compress(plain);
      if (compressed.length < plain.length) {
        payload = compressed;
        compression = this.compressor.kind;
      }
    }
    const header = headerTarget ?? Buffer.allocUnsafe(fragmentHeaderSizeBytes);
    writeFragmentHeader(
      { compression, encryption, checksum, k, m, fragmentIndex, chunkSizeBytes, fragmentSizeBytes, payloadSizeBytes: payload.length },
      header,
    );
    if (this.key !== undefined) {
      const fragmentNonce = nonce ?? randomNonce();
      header.set(fragmentNonce, headerOffsets.nonce);
      payload = encryptAesGcm(
        this.key,
        fragmentNonce,
        header.subarray(0, authenticatedHeaderSizeBytes),
        payload,
        header.subarray(headerOffsets.tag, headerOffsets.checksumValue),
      );
    } else if (payload === plain && plainIsScratch) {
      payload = Buffer.from(plain);
    }
    let checksumValue = 0;
    if (checksum === "crc32c") {
      checksumValue = fragmentChecksum(header, payload);
      header.writeUInt32LE(checksumValue, headerOffsets.checksumValue);
    }
    return { fragmentIndex, header, payload, packedSizeBytes: fragmentHeaderSizeBytes + payload.length, checksumValue };
  }

  private scratch(index: number, sizeBytes: number): Buffer {
    let buffer = this.parityScratch[index];
    if (buffer === undefined || buffer.length < sizeBytes) {
      buffer = Buffer.allocUnsafe(sizeBytes);
      this.parityScratch[index] = buffer;
    }
    return buffer.subarray(0, sizeBytes);
  }
}

/** The fragment checksum: crc32c of header bytes [0, 52), continued over the payload. */
export function fragmentChecksum(header: Uint8Array, payload: Uint8Array): number {
  return crc32c(payload, crc32c(header.subarray(0, checksummedHeaderSizeBytes)));
}

function corrupt(fragmentIndex: number, reason: string): OvsError {
  return new OvsError("CORRUPT", `fragment ${fragmentIndex}: ${reason}.`, { fragmentIndex, reason });
}

function hex32(value: number): string {
  return `0x${value.toString(16).padStart(8, "0")}`;
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
}
