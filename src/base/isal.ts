// The ISA-L addon (native/isal/ovs_isal.c, built by `npm install`) loaded into this process: the
// Reed-Solomon matrix and tables, ec_encode_data, the decode matrix (gf_invert_matrix) and CRC32C
// (crc32_iscsi, and crc32cBlocks: one call for a run of blocks). It lives in base/ because CRC32C is a base
// facility (every layer checksums); src/alba/coding/isal.ts re-exports it for the erasure coder.
//
// Loaded with RTLD_NOW | RTLD_DEEPBIND: the node binary exports OpenSSL's `gf_mul`, which would otherwise
// shadow ISA-L's own and crash decoding (DESIGN.md §7, reference/datapath-libs.md §1). Loaded once, lazily,
// on first use; a missing addon is an OvsError INTERNAL that names the fix (libisal-dev, npm install).
//
// Buffers: every function works in place on the caller's Uint8Arrays without copies and keeps nothing
// after it returns. Outputs must not overlap inputs.
// Limits: k ≤ ecKMax (32), m ≤ ecMMax (16), lengths < 2^31; the addon checks every argument.

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { assert } from "./assert.js";
import { OvsError } from "./errors.js";

export const ecKMax = 32;
export const ecMMax = 16;

export interface IsalAddon {
  /** Writes the (k+m)×k Cauchy matrix (identity rows first, then 1/(i xor j)) into `matrixOut`. */
  genCauchyMatrix(k: number, m: number, matrixOut: Uint8Array): void;
  /** ec_init_tables: expands `rowCount` matrix rows of k coefficients into 32·k·rowCount bytes of tables. */
  initTables(k: number, rowCount: number, matrixRows: Uint8Array, tablesOut: Uint8Array): void;
  /**
   * Writes, for each index in `targetIndices`, the k coefficients that rebuild that fragment from the
   * fragments `sourceIndices` (k distinct indices). Returns false when the chosen rows are singular.
   */
  decodeMatrix(
    k: number,
    m: number,
    encodeMatrix: Uint8Array,
    sourceIndices: Uint8Array,
    targetIndices: Uint8Array,
    matrixOut: Uint8Array,
  ): boolean;
  /** ec_encode_data: targets[r] = Σ_j coefficient[r][j]·sources[j] over the first lengthBytes bytes. */
  encodeData(
    k: number,
    rowCount: number,
    tables: Uint8Array,
    sources: readonly Uint8Array[],
    targets: readonly Uint8Array[],
    lengthBytes: number,
  ): void;
  /** Standard CRC32C of `data`, continuing from `initial` (0 for a fresh checksum). */
  crc32c(data: Uint8Array, initial: number): number;
  /** CRC32C of each blockSize-byte block of `data` into `out` (a byte view of a Uint32Array, 4 bytes a block). */
  crc32cBlocks(data: Uint8Array, blockSize: number, out: Uint8Array): void;
  /**
   * For each of `count` records `stride` bytes apart in `data`: stores the CRC32C of its first `length`
   * bytes little-endian right after them. Returns the CRC32C of all records' first `length` bytes in
   * order, continuing from `initial`.
   */
  crc32cSealRecords(data: Uint8Array, count: number, stride: number, length: number, initial: number): number;
  /**
   * preadv2 with RWF_NOWAIT: reads now if the bytes are in the page cache. Returns the bytes read (short at
   * the end of the file, or when only part is cached), or -1 when the read would wait for the disk (or
   * the file system cannot tell). Other errors throw an Error whose `code` is the errno name.
   */
  preadNoWait(fd: number, buffer: Uint8Array, offset: number, length: number, position: number): number;
  /**
   * posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED): drops the file's clean pages from the page cache (dirty
   * ones are queued for writeback and stay). Errors throw an Error whose `code` is the errno name.
   */
  dropCachedPages(fd: number): void;
  /**
   * Zeroed memory aligned to 4096 bytes (byteLength a positive multiple of 4096, at most 1 GiB), for
   * O_DIRECT I/O; freed when the GC collects the ArrayBuffer.
   */
  allocAligned(byteLength: number): ArrayBuffer;
  readonly limits: { readonly kMax: number; readonly mMax: number };
}

let loaded: IsalAddon | undefined;

/** Where the addon is: $OVS_ISAL_ADDON, else native/isal/build/Release/ovs_isal.node in the repository. */
export function isalAddonPath(): string {
  const override = process.env.OVS_ISAL_ADDON;
  if (override !== undefined && override !== "") return override;
  // src/base/ in tests, dist/src/base/ when compiled: walk up to the folder holding native/.
  let directory = path.dirname(fileURLToPath(import.meta.url));
  const relative = path.join("native", "isal", "build", "Release", "ovs_isal.node");
  for (let depth = 0; depth < 6; depth++) {
    if (fs.existsSync(path.join(directory, "native", "isal", "binding.gyp"))) return path.join(directory, relative);
    directory = path.dirname(directory);
  }
  return path.resolve(relative);
}

/** The loaded addon; throws OvsError INTERNAL with the fix when it is not built. */
export function isal(): IsalAddon {
  if (loaded === undefined) loaded = load(isalAddonPath());
  return loaded;
}

function load(addonPath: string): IsalAddon {
  if (!fs.existsSync(addonPath)) {
    throw new OvsError(
      "INTERNAL",
      `The ISA-L addon ${addonPath} is not built: install Debian's libisal-dev (apt-get install -y libisal-dev), then run npm install.`,
      { addonPath },
    );
  }
  const module = { exports: {} as Partial<IsalAddon> };
  try {
    process.dlopen(module, addonPath, os.constants.dlopen.RTLD_NOW | os.constants.dlopen.RTLD_DEEPBIND);
  } catch (error) {
    throw new OvsError(
      "INTERNAL",
      `The ISA-L addon ${addonPath} failed to load (is Debian's libisal-dev, or libisal2, installed?): ${(error as Error).message}`,
      { addonPath },
      { cause: error },
    );
  }
  const addon = module.exports as IsalAddon;
  assert(typeof addon.encodeData === "function" && typeof addon.crc32c === "function" && typeof addon.crc32cBlocks === "function" && typeof addon.crc32cSealRecords === "function" && typeof addon.preadNoWait === "function" && typeof addon.dropCachedPages === "function" && typeof addon.allocAligned === "function", "ovs_isal exports its functions");
  assert(addon.limits.kMax === ecKMax && addon.limits.mMax === ecMMax, "ovs_isal limits match ecKMax/ecMMax");
  return addon;
}

/** Alignment of alignedBuffer's memory: enough for O_DIRECT on any device (logical blocks of 512 or 4096). */
export const directIoAlignmentBytes = 4096;

/** A Buffer over zeroed memory aligned to directIoAlignmentBytes (byteLength a multiple of it), for O_DIRECT. */
export function alignedBuffer(byteLength: number): Buffer {
  return Buffer.from(isal().allocAligned(byteLength));
}
