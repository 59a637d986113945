// Tests of the packed-fragment header codec: the byte layout of docs/formats/fragment.md and a reason
// for every kind of bad input.

import { describe, expect, it } from "vitest";
import {
  decodeFragmentHeader,
  fragmentHeaderSizeBytes,
  headerOffsets,
  writeFragmentHeader,
  type FragmentHeaderFields,
} from "./fragment-format.js";

const fields: FragmentHeaderFields = {
  compression: "zstd",
  encryption: "none",
  checksum: "crc32c",
  k: 4,
  m: 2,
  fragmentIndex: 5,
  chunkSizeBytes: 10,
  fragmentSizeBytes: 3,
  payloadSizeBytes: 2,
};

function packed(overrides: Partial<FragmentHeaderFields> = {}, payloadSizeBytes = 2): Buffer {
  const bytes = Buffer.alloc(fragmentHeaderSizeBytes + payloadSizeBytes);
  writeFragmentHeader({ ...fields, ...overrides }, bytes.subarray(0, fragmentHeaderSizeBytes));
  return bytes;
}

function reason(bytes: Buffer): string {
  const result = decodeFragmentHeader(bytes);
  if (result.ok) throw new Error("expected a decode failure");
  return result.reason;
}

describe("fragment header", () => {
  it("lays out the fields as the spec's byte table", () => {
    expect(packed().subarray(0, 24).toString("hex")).toBe("4f56534601020001" + "01040205" + "0a000000" + "03000000" + "02000000");
    const result = decodeFragmentHeader(packed());
    expect(result.ok && result.header).toMatchObject({ ...fields, version: 1, ecScheme: 1, checksumValue: 0 });
  });

  it("gives a reason for every kind of bad input", () => {
    expect(reason(Buffer.alloc(10))).toContain("shorter than the 56-byte header");
    const badMagic = packed();
    badMagic[0] = 0;
    expect(reason(badMagic)).toContain("bad magic");
    const badVersion = packed();
    badVersion[headerOffsets.version] = 2;
    expect(reason(badVersion)).toContain("unknown format version 2");
    for (const [offset, text] of [
      [headerOffsets.compression, "unknown compression code 9"],
      [headerOffsets.encryption, "unknown encryption code 9"],
      [headerOffsets.checksum, "unknown checksum code 9"],
      [headerOffsets.ecScheme, "unknown erasure scheme 9"],
    ] as const) {
      const bytes = packed();
      bytes[offset] = 9;
      expect(reason(bytes)).toContain(text);
    }
    const badIndex = packed();
    badIndex[headerOffsets.fragmentIndex] = 6;
    expect(reason(badIndex)).toContain("fragment index 6");
    const badK = packed();
    badK[headerOffsets.k] = 0;
    expect(reason(badK)).toContain("outside the limits");
    const badSize = packed();
    badSize.writeUInt32LE(4, headerOffsets.fragmentSizeBytes);
    expect(reason(badSize)).toContain("≠ ceil(chunk size 10 / k 4)");
    expect(reason(packed({}, 3))).toContain("payload size 2 ≠ the 3 bytes present");
    expect(reason(packed({ compression: "none", payloadSizeBytes: 2 }))).toContain("uncompressed payload of 2 bytes");
    const strayNonce = packed();
    strayNonce[headerOffsets.nonce] = 1;
    expect(reason(strayNonce)).toContain("nonce or tag set without encryption");
    const strayChecksum = packed({ checksum: "none" });
    strayChecksum[headerOffsets.checksumValue] = 1;
    expect(reason(strayChecksum)).toContain("checksum value set without a checksum");
  });
});
