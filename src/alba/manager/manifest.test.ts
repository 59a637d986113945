// The manifest codec: the golden vector of docs/formats/manifest.md byte for byte, round trips with holes
// and encryption, and every flipped byte or truncation is refused with a reason (never a wrong manifest).
// Also the fragment key layout of docs/formats/alba-keys.md.
import { describe, expect, test } from "vitest";
import { fragmentKey, namespaceFragmentPrefix, objectFragmentPrefix, parseFragmentKey, prefixEnd } from "./keys.js";
import { decodeManifest, encodeManifest, manifestAsdIds, measureManifest, type Manifest } from "./manifest.js";

/** The worked example of docs/formats/manifest.md. */
const goldenManifest: Manifest = {
  name: "sco_1",
  objectId: "00112233445566778899aabbccddeeff",
  sizeBytes: 10,
  objectCrc32c: 0x280c069e, // crc32c("0123456789")
  presetName: "default",
  presetVersion: 1,
  policy: { k: 2, m: 1, c: 2, x: 3 },
  policyIndex: 0,
  fragmentSizeMaxBytes: 1048576,
  compression: "none",
  encryption: "none",
  fragmentChecksum: "crc32c",
  timestampMs: 1700000000000,
  chunks: [
    {
      chunkSizeBytes: 10,
      fragments: [
        { asdId: "a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0", version: 0, checksumValue: 0x11111111, packedSizeBytes: 61 },
        { asdId: "b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1", version: 0, checksumValue: 0x22222222, packedSizeBytes: 61 },
        undefined,
      ],
    },
  ],
};

const goldenHex = `
4f 56 53 4d 01 01 00 00 01 02 01 02 03 00 00 00
00 11 22 33 44 55 66 77 88 99 aa bb cc dd ee ff
0a 00 00 00 00 00 00 00 9e 06 0c 28 01 00 00 00
00 68 e5 cf 8b 01 00 00 00 00 10 00 01 00 00 00
07 64 65 66 61 75 6c 74 05 00 73 63 6f 5f 31 0a
00 00 00 01 a0 a0 a0 a0 a0 a0 a0 a0 a0 a0 a0 a0
a0 a0 a0 a0 00 00 00 00 11 11 11 11 3d 00 00 00
01 b1 b1 b1 b1 b1 b1 b1 b1 b1 b1 b1 b1 b1 b1 b1
b1 00 00 00 00 22 22 22 22 3d 00 00 00 00 73 52
05 84
`.replace(/[^0-9a-f]/g, "");

describe("manifest codec", () => {
  test("encodes the worked example byte for byte", () => {
    const bytes = encodeManifest(goldenManifest);
    expect(bytes.length).toBe(measureManifest(goldenManifest));
    expect(bytes.toString("hex")).toBe(goldenHex);
    const decoded = decodeManifest(Buffer.from(goldenHex, "hex"));
    expect(decoded).toEqual({ ok: true, value: goldenManifest });
  });

  test("round-trips many chunks, holes, versions and an encrypted preset", () => {
    const manifest: Manifest = {
      ...goldenManifest,
      name: "x".repeat(255),
      sizeBytes: 3 * 4 * 1024 * 1024 + 5,
      policy: { k: 4, m: 2, c: 5, x: 6 },
      policyIndex: 1,
      encryption: "aes-256-gcm",
      encryptionKeySha256: "ab".repeat(32),
      chunks: [0, 1, 2, 3].map((chunkIndex) => ({
        chunkSizeBytes: chunkIndex < 3 ? 4 * 1024 * 1024 : 5,
        fragments: Array.from({ length: 6 }, (_, fragmentIndex) =>
          (chunkIndex + fragmentIndex) % 4 === 3 ? undefined : { asdId: `${fragmentIndex}`.repeat(32), version: chunkIndex, checksumValue: 0xffffffff - fragmentIndex, packedSizeBytes: 1048632 },
        ),
      })),
    };
    const decoded = decodeManifest(encodeManifest(manifest));
    expect(decoded).toEqual({ ok: true, value: manifest });
    expect(manifestAsdIds(manifest).length).toBe(6);
  });

  test("refuses every single flipped byte and every truncation with a reason", () => {
    const bytes = encodeManifest(goldenManifest);
    for (let index = 0; index < bytes.length; index++) {
      const flipped = Buffer.from(bytes);
      flipped[index] = flipped[index]! ^ 0x10;
      const result = decodeManifest(flipped);
      expect(result.ok, `flip at ${index}`).toBe(false);
      for (const length of [index]) {
        const cut = decodeManifest(bytes.subarray(0, length));
        expect(cut.ok, `cut at ${length}`).toBe(false);
        if (!cut.ok) expect(cut.reason.length).toBeGreaterThan(0);
      }
    }
  });
});

describe("fragment keys", () => {
  test("layout, prefixes and parsing", () => {
    const key = fragmentKey(258, "00112233445566778899aabbccddeeff", 3, 5, 7);
    expect(key.toString("hex")).toBe("46" + "0000000000000102" + "00112233445566778899aabbccddeeff" + "00000003" + "05" + "00000007");
    expect(parseFragmentKey(key)).toEqual({ namespaceId: 258, objectId: "00112233445566778899aabbccddeeff", chunkIndex: 3, fragmentIndex: 5, version: 7 });
    expect(key.subarray(0, 9).equals(namespaceFragmentPrefix(258))).toBe(true);
    expect(key.subarray(0, 25).equals(objectFragmentPrefix(258, "00112233445566778899aabbccddeeff"))).toBe(true);
    expect(prefixEnd(namespaceFragmentPrefix(258)).toString("hex")).toBe("460000000000000103");
    expect(parseFragmentKey(Buffer.from("not a key"))).toBeUndefined();
  });
});
