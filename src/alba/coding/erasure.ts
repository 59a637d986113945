// Systematic Reed-Solomon over GF(2^8) (polynomial 0x11d) with ISA-L's Cauchy matrix: k data fragments,
// m parity fragments; any k of the k+m rebuild the rest. Erasure scheme code 1 in the fragment format
// (docs/formats/fragment.md); the matrix is part of the on-disk format and must never change.
// Imported by the fragment pipeline (pipeline.ts) and the benchmark.
//
// A chunk of n bytes becomes k data fragments of fragmentSizeBytesFor(n, k) = ceil(n / k) bytes each,
// the last zero-padded; the fragment pipeline records n so that the padding is dropped on decode.
//
// Buffers: encode() and reconstruct() write into caller-provided outputs and keep no reference to any
// argument. The coder owns its matrix and tables (immutable after construction) and a bounded cache of
// decode tables per (sources, targets) pattern.
// Limits: 1 ≤ k ≤ ecKMax, 0 ≤ m ≤ ecMMax; decodeTablesCacheMax patterns cached.

import { assert, OvsError } from "../../base/index.js";
import { ecKMax, ecMMax, isal } from "./isal.js";

/** Persisted in fragment headers: never renumber. */
export const ecSchemeIsalCauchy = 1;

export const decodeTablesCacheMax = 64;

/** Bytes per fragment for a chunk of `chunkSizeBytes` cut into k fragments. */
export function fragmentSizeBytesFor(chunkSizeBytes: number, k: number): number {
  assert(Number.isSafeInteger(chunkSizeBytes) && chunkSizeBytes >= 0, "chunkSizeBytes is a non-negative integer");
  assert(Number.isInteger(k) && k >= 1, "k ≥ 1");
  return Math.ceil(chunkSizeBytes / k);
}

export class ErasureCoder {
  readonly k: number;
  readonly m: number;
  /** (k+m)×k coefficients, row-major; rows 0..k-1 are the identity. */
  readonly encodeMatrix: Uint8Array;
  private readonly encodeTables: Uint8Array;
  private readonly decodeTables = new Map<string, Uint8Array>();

  constructor(k: number, m: number) {
    assert(Number.isInteger(k) && k >= 1 && k <= ecKMax, `k must be in [1, ${ecKMax}]`);
    assert(Number.isInteger(m) && m >= 0 && m <= ecMMax, `m must be in [0, ${ecMMax}]`);
    this.k = k;
    this.m = m;
    const addon = isal();
    this.encodeMatrix = new Uint8Array((k + m) * k);
    addon.genCauchyMatrix(k, m, this.encodeMatrix);
    this.encodeTables = new Uint8Array(32 * k * m);
    addon.initTables(k, m, this.encodeMatrix.subarray(k * k), this.encodeTables);
  }

  /** Computes the m parity fragments from the k data fragments (each ≥ fragmentSizeBytes long). */
  encode(data: readonly Uint8Array[], parity: readonly Uint8Array[], fragmentSizeBytes: number): void {
    assert(data.length === this.k && parity.length === this.m, "encode takes k data and m parity fragments");
    if (this.m === 0 || fragmentSizeBytes === 0) return;
    isal().encodeData(this.k, this.m, this.encodeTables, data, parity, fragmentSizeBytes);
  }

  /**
   * Rebuilds fragments `targetIndices` into `outputs` (same order) from the fragments present in
   * `fragments` (k+m entries, undefined where missing), using the first k present ones (data first).
   * Throws OvsError UNAVAILABLE when fewer than k are present.
   */
  reconstruct(
    fragments: readonly (Uint8Array | undefined)[],
    targetIndices: readonly number[],
    outputs: readonly Uint8Array[],
    fragmentSizeBytes: number,
  ): void {
    const { k, m } = this;
    assert(fragments.length === k + m, "reconstruct takes k+m fragment slots");
    assert(targetIndices.length === outputs.length, "one output per target index");
    assert(targetIndices.every((index) => Number.isInteger(index) && index >= 0 && index < k + m), "target indices < k+m");
    if (targetIndices.length === 0) return;
    const sourceIndices: number[] = [];
    const sources: Uint8Array[] = [];
    for (let index = 0; index < k + m && sourceIndices.length < k; index++) {
      const fragment = fragments[index];
      if (fragment === undefined) continue;
      assert(fragment.length >= fragmentSizeBytes, "present fragments hold fragmentSizeBytes");
      sourceIndices.push(index);
      sources.push(fragment);
    }
    if (sourceIndices.length < k) {
      throw new OvsError("UNAVAILABLE", `only ${sourceIndices.length} of the ${k} fragments needed to decode are present.`, {
        presentCount: sourceIndices.length,
        k,
      });
    }
    if (fragmentSizeBytes === 0) return;
    const tables = this.decodeTablesFor(sourceIndices, targetIndices);
    isal().encodeData(k, targetIndices.length, tables, sources, outputs, fragmentSizeBytes);
  }

  private decodeTablesFor(sourceIndices: readonly number[], targetIndices: readonly number[]): Uint8Array {
    const key = `${sourceIndices.join(",")}/${targetIndices.join(",")}`;
    const cached = this.decodeTables.get(key);
    if (cached !== undefined) return cached;
    const { k, m } = this;
    const addon = isal();
    const rows = new Uint8Array(targetIndices.length * k);
    const invertible = addon.decodeMatrix(k, m, this.encodeMatrix, Uint8Array.from(sourceIndices), Uint8Array.from(targetIndices), rows);
    assert(invertible, "every k rows of a Cauchy matrix are invertible");
    const tables = new Uint8Array(32 * k * targetIndices.length);
    addon.initTables(k, targetIndices.length, rows, tables);
    if (this.decodeTables.size >= decodeTablesCacheMax) {
      const oldest = this.decodeTables.keys().next().value;
      if (oldest !== undefined) this.decodeTables.delete(oldest);
    }
    this.decodeTables.set(key, tables);
    return tables;
  }
}
