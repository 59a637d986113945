// Per-fragment compression: none, lz4 (lz4-napi, LZ4 block with its plain size in front) or zstd
// (zstd-napi, one zstd frame, level 1). Chosen in reference/datapath-libs.md §3: zstd-napi is the best
// ratio per CPU with a synchronous API; lz4-napi installs prebuilt and is maintained.
// Imported by pipeline.ts only.
//
// Codes are persisted in fragment headers (docs/formats/fragment.md): never renumber.
// Buffers: compress/decompress return fresh Buffers owned by the caller; inputs are not retained.
// decompress checks that the output has exactly the expected size and returns undefined otherwise (or
// when the input is not a valid stream), so that a corrupt fragment is an error, never a wrong length.

import { compressSync as lz4CompressSync, uncompressSync as lz4UncompressSync } from "lz4-napi";
import { Compressor as ZstdCompressor, Decompressor as ZstdDecompressor } from "zstd-napi";
import zstdBinding from "zstd-napi/binding.js";
import { assert } from "../../base/index.js";

export type CompressionKind = "none" | "lz4" | "zstd";

export const compressionCodes: Readonly<Record<CompressionKind, number>> = { none: 0, lz4: 1, zstd: 2 };

export const zstdLevel = 1;

export interface FragmentCompressor {
  readonly kind: CompressionKind;
  compress(plain: Uint8Array): Buffer;
  /** The plain bytes, or undefined when `compressed` is not a valid stream of exactly plainSizeBytes. */
  decompress(compressed: Uint8Array, plainSizeBytes: number): Buffer | undefined;
}

class Lz4Compressor implements FragmentCompressor {
  readonly kind = "lz4" as const;

  compress(plain: Uint8Array): Buffer {
    return lz4CompressSync(asBuffer(plain));
  }

  decompress(compressed: Uint8Array, plainSizeBytes: number): Buffer | undefined {
    // The stream starts with the plain size (u32 little-endian): refuse before allocating for a lie.
    if (compressed.length < 4) return undefined;
    const declared = asBuffer(compressed).readUInt32LE(0);
    if (declared !== plainSizeBytes) return undefined;
    try {
      const plain = lz4UncompressSync(asBuffer(compressed));
      return plain.length === plainSizeBytes ? plain : undefined;
    } catch {
      return undefined;
    }
  }
}

class ZstdFragmentCompressor implements FragmentCompressor {
  readonly kind = "zstd" as const;
  private readonly compressor = new ZstdCompressor();
  private readonly decompressor = new ZstdDecompressor();

  constructor() {
    this.compressor.setParameters({ compressionLevel: zstdLevel });
  }

  compress(plain: Uint8Array): Buffer {
    return this.compressor.compress(asBuffer(plain));
  }

  decompress(compressed: Uint8Array, plainSizeBytes: number): Buffer | undefined {
    try {
      // The frame declares its content size and zstd-napi allocates that much: refuse a lie first.
      if (zstdBinding.getFrameContentSize(compressed) !== plainSizeBytes) return undefined;
      const plain = this.decompressor.decompress(asBuffer(compressed));
      return plain.length === plainSizeBytes ? plain : undefined;
    } catch {
      return undefined;
    }
  }
}

/** A compressor for `kind`, or undefined for none. Instances hold native contexts: reuse them. */
export function createFragmentCompressor(kind: CompressionKind): FragmentCompressor | undefined {
  switch (kind) {
    case "none":
      return undefined;
    case "lz4":
      return new Lz4Compressor();
    case "zstd":
      return new ZstdFragmentCompressor();
  }
}

export function compressionKindOfCode(code: number): CompressionKind | undefined {
  for (const [kind, value] of Object.entries(compressionCodes)) if (value === code) return kind as CompressionKind;
  return undefined;
}

function asBuffer(bytes: Uint8Array): Buffer {
  if (Buffer.isBuffer(bytes)) return bytes;
  assert(bytes instanceof Uint8Array, "bytes are a Uint8Array");
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
}
