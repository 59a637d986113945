// Tests of the Reed-Solomon coder: golden parity vectors at 4+2 and 8+3 (generated once with the addon
// and checked against the independent pure-TS GF(2^8) reference), parity of odd lengths against the
// reference, and decoding from every combination of k out of k+m fragments.

import { describe, expect, it } from "vitest";
import { isOvsError } from "../../base/index.js";
import { ErasureCoder, fragmentSizeBytesFor } from "./erasure.js";
import { combinations, referenceParity, seededBytes } from "./testing/gf256-reference.js";

/** The golden input: byte i = (37·i + 11) mod 256, cut into k fragments. */
function goldenData(k: number, fragmentSizeBytes: number): Buffer[] {
  const chunk = Buffer.alloc(k * fragmentSizeBytes);
  for (let i = 0; i < chunk.length; i++) chunk[i] = (37 * i + 11) & 0xff;
  return Array.from({ length: k }, (_, index) => chunk.subarray(index * fragmentSizeBytes, (index + 1) * fragmentSizeBytes));
}

// Generated once with ErasureCoder (ISA-L 2.30, gf_gen_cauchy1_matrix) and equal to referenceParity.
const goldenParityHex: Record<string, string[]> = {
  "4+2": [
    "96e90deee1da793689b00e5ebad9f129d026be07b951d4704603e73e3174a9e6",
    "2f2cb4e65863718f4c09069b03d148ec699f7bbeb1e811c9ffc65e3688b1a15f",
  ],
  "8+3": [
    "da1eb9b9b60bd457656166d870592ce8",
    "c3998d7efb2bb44ee255a1815039616f",
    "aa50441f9a7bff272b9cc0ca007200a6",
  ],
};

function encode(coder: ErasureCoder, data: readonly Uint8Array[], sizeBytes: number): Buffer[] {
  const parity = Array.from({ length: coder.m }, () => Buffer.alloc(sizeBytes));
  coder.encode(data, parity, sizeBytes);
  return parity;
}

describe("ErasureCoder", () => {
  for (const [k, m, sizeBytes] of [[4, 2, 32], [8, 3, 16]] as const) {
    it(`golden parity at ${k}+${m} matches the vector and the pure-TS reference`, () => {
      const data = goldenData(k, sizeBytes);
      const parity = encode(new ErasureCoder(k, m), data, sizeBytes).map((bytes) => bytes.toString("hex"));
      const reference = referenceParity(data, m, sizeBytes).map((bytes) => Buffer.from(bytes).toString("hex"));
      expect(parity).toEqual(reference);
      expect(parity).toEqual(goldenParityHex[`${k}+${m}`]);
    });
  }

  it("parity of odd lengths (SIMD tails) matches the reference", () => {
    for (const [k, m] of [[1, 2], [2, 1], [3, 3], [4, 2], [5, 4], [8, 3], [10, 4]] as const) {
      const coder = new ErasureCoder(k, m);
      for (const sizeBytes of [1, 2, 15, 31, 33, 63, 64, 65, 127, 129, 1000, 4097]) {
        const data = Array.from({ length: k }, (_, index) => seededBytes(sizeBytes * 131 + index * 7 + k, sizeBytes));
        const parity = encode(coder, data, sizeBytes);
        const reference = referenceParity(data, m, sizeBytes);
        for (let p = 0; p < m; p++) expect(Buffer.compare(parity[p]!, Buffer.from(reference[p]!)), `${k}+${m} size ${sizeBytes} parity ${p}`).toBe(0);
      }
    }
  });

  for (const [k, m] of [[1, 2], [2, 1], [2, 2], [3, 3], [4, 2], [5, 4], [8, 3]] as const) {
    it(`decodes from every combination of ${k} of ${k + m} fragments`, () => {
      const sizeBytes = 1000 + k;
      const coder = new ErasureCoder(k, m);
      const data = Array.from({ length: k }, (_, index) => seededBytes(index + 1, sizeBytes));
      const all = [...data, ...encode(coder, data, sizeBytes)];
      for (const present of combinations(k + m, k)) {
        const fragments = all.map((bytes, index) => (present.includes(index) ? bytes : undefined));
        const missing = all.map((_, index) => index).filter((index) => !present.includes(index));
        const outputs = missing.map(() => Buffer.alloc(sizeBytes));
        coder.reconstruct(fragments, missing, outputs, sizeBytes);
        missing.forEach((index, position) => {
          expect(Buffer.compare(outputs[position]!, all[index]!), `present ${present.join(",")}: fragment ${index}`).toBe(0);
        });
      }
    });
  }

  it("refuses to decode from fewer than k fragments", () => {
    const coder = new ErasureCoder(4, 2);
    const fragments = [Buffer.alloc(8), undefined, Buffer.alloc(8), undefined, undefined, Buffer.alloc(8)];
    let error: unknown;
    try {
      coder.reconstruct(fragments, [1], [Buffer.alloc(8)], 8);
    } catch (caught) {
      error = caught;
    }
    expect(isOvsError(error, "UNAVAILABLE")).toBe(true);
  });

  it("cuts chunks into ceil(n / k)-byte fragments", () => {
    expect(fragmentSizeBytesFor(0, 4)).toBe(0);
    expect(fragmentSizeBytesFor(1, 4)).toBe(1);
    expect(fragmentSizeBytesFor(1_048_576, 4)).toBe(262_144);
    expect(fragmentSizeBytesFor(1_048_576, 3)).toBe(349_526);
  });
});
