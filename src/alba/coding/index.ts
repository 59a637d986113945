// Public face of alba/coding/: the fragment pipeline (erasure coding with ISA-L, compression, AES-256-GCM,
// checksums), the packed-fragment format (docs/formats/fragment.md) and partial-read planning.
// Other folders import only this file.
export {
  FragmentPipeline,
  packedFragmentBytes,
  packedFragmentBytesFrom,
  fragmentChecksum,
  type CodingPreset,
  type PackedFragment,
  type EncodedChunk,
  type UnpackedFragment,
  type DecodedChunk,
  type BadFragment,
  type EncodeOptions,
} from "./pipeline.js";
export { chunkSizesBytesFor, planPartialRead, type ByteRange, type FragmentSlice } from "./partial-read.js";
export { ErasureCoder, fragmentSizeBytesFor, ecSchemeIsalCauchy } from "./erasure.js";
export { crc32c, ecKMax, ecMMax, isalAddonPath } from "./isal.js";
export { type CompressionKind } from "./compression.js";
export { aesGcmKeySizeBytes, aesGcmNonceSizeBytes, aesGcmTagSizeBytes } from "./encryption.js";
export {
  decodeFragmentHeader,
  fragmentHeaderSizeBytes,
  fragmentSizeMaxBytesLimit,
  fragmentFormatVersion,
  type ChecksumKind,
  type EncryptionKind,
  type FragmentHeader,
} from "./fragment-format.js";
