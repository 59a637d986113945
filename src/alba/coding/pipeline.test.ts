// Tests of the fragment pipeline: golden packed fragments for each stage (the worked example of
// docs/formats/fragment.md, a zstd + AES-256-GCM fragment and an lz4 fragment, all with fixed keys and
// nonces), round trips of random sizes (0 and 1 byte included) for many presets with fragments missing,
// corruption and wrong keys, repair (rebuildFragments) and partial reads.

import { describe, expect, it } from "vitest";
import { isOvsError, OvsError } from "../../base/index.js";
import { fragmentHeaderSizeBytes, headerOffsets } from "./fragment-format.js";
import { chunkSizesBytesFor } from "./partial-read.js";
import { FragmentPipeline, packedFragmentBytes, type CodingPreset } from "./pipeline.js";
import { seededBytes, seededIntegers } from "./testing/gf256-reference.js";

const key = Buffer.from("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", "hex");
const otherKey = Buffer.from(key.map((byte) => byte ^ 0x5a));
const nonces = (count: number): Buffer[] =>
  Array.from({ length: count }, (_, index) => Buffer.from(`a0a1a2a3a4a5a6a7a8a9aa${index.toString(16).padStart(2, "0")}`, "hex"));

function caught(action: () => unknown): OvsError {
  try {
    action();
  } catch (error) {
    if (error instanceof OvsError) return error;
    throw error;
  }
  throw new Error("expected an OvsError");
}

function hex(fragment: { header: Buffer; payload: Buffer }): string {
  return Buffer.concat([fragment.header, fragment.payload]).toString("hex");
}

// docs/formats/fragment.md, "Worked example": 2+1, no compression, AES-256-GCM, crc32c; the chunk is
// "openvstorage fragment" (21 bytes, so 11-byte fragments); fragment 0 with nonce a0…aa00.
const docExamplePreset: CodingPreset = { k: 2, m: 1, fragmentSizeMaxBytes: 4096, compression: "none", encryption: "aes-256-gcm", encryptionKey: key, checksum: "crc32c" };
const docExampleChunk = Buffer.from("openvstorage fragment", "latin1");
const docExampleFragment0Hex = "4f5653460100010101020100150000000b0000000b000000a0a1a2a3a4a5a6a7a8a9aa0090b6d4a334a013ca8b564fcaf52184aa7e53b08f338d728612693d2969ff54";

// zstd then AES-256-GCM then crc32c, 1+1, 300 bytes of repetitive text: fragment 0.
const zstdPreset: CodingPreset = { k: 1, m: 1, fragmentSizeMaxBytes: 4096, compression: "zstd", encryption: "aes-256-gcm", encryptionKey: key, checksum: "crc32c" };
const compressibleChunk = Buffer.from("openvstorage ".repeat(30).slice(0, 300), "latin1");
const zstdFragment0Hex = "4f56534601020101010101002c0100002c0100001e000000a0a1a2a3a4a5a6a7a8a9aa0017568f57e85836932b9ed5ae009232f9c888f59a74483815043649e31b9e5b42dec2a20ef1a3f88f8755fe9c3d4273a6e0f6";

// lz4 then crc32c, no encryption, 1+1, the same chunk: fragment 0.
const lz4Preset: CodingPreset = { k: 1, m: 1, fragmentSizeMaxBytes: 4096, compression: "lz4", encryption: "none", checksum: "crc32c" };
const lz4Fragment0Hex = "4f56534601010001010101002c0100002c0100001d00000000000000000000000000000000000000000000000000000000000000f789750a2c010000df6f70656e7673746f72616765200d00ff076072616765206f";

describe("golden packed fragments", () => {
  it("the worked example of docs/formats/fragment.md (AES-256-GCM + crc32c)", () => {
    const pipeline = new FragmentPipeline(docExamplePreset);
    const encoded = pipeline.encodeChunk(docExampleChunk, { nonces: nonces(3) });
    expect(encoded.fragmentSizeBytes).toBe(11);
    expect(hex(encoded.fragments[0]!)).toBe(docExampleFragment0Hex);
    const unpacked = pipeline.unpackFragment(Buffer.from(docExampleFragment0Hex, "hex"), 0);
    expect(unpacked.data.toString("latin1")).toBe("openvstorag");
    expect(unpacked.header.checksumValue).toBe(encoded.fragments[0]!.checksumValue);
  });

  it("a zstd + AES-256-GCM fragment decodes, and encoding reproduces it", () => {
    const pipeline = new FragmentPipeline(zstdPreset);
    const unpacked = pipeline.unpackFragment(Buffer.from(zstdFragment0Hex, "hex"), 0);
    expect(unpacked.header.compression).toBe("zstd");
    expect(unpacked.data.equals(compressibleChunk)).toBe(true);
    // Byte-exact only while the zstd library (zstd-napi, pinned in package-lock.json) is unchanged; old
    // fragments must keep decoding (above) whatever the encoder becomes.
    expect(hex(pipeline.encodeChunk(compressibleChunk, { nonces: nonces(2) }).fragments[0]!)).toBe(zstdFragment0Hex);
  });

  it("an lz4 fragment decodes, and encoding reproduces it", () => {
    const pipeline = new FragmentPipeline(lz4Preset);
    const unpacked = pipeline.unpackFragment(Buffer.from(lz4Fragment0Hex, "hex"), 0);
    expect(unpacked.header.compression).toBe("lz4");
    expect(unpacked.data.equals(compressibleChunk)).toBe(true);
    expect(hex(pipeline.encodeChunk(compressibleChunk).fragments[0]!)).toBe(lz4Fragment0Hex);
  });
});

const presets: CodingPreset[] = [];
for (const [k, m] of [[1, 2], [2, 1], [4, 2], [5, 4], [8, 3]] as const) {
  for (const compression of ["none", "lz4", "zstd"] as const) {
    for (const encryption of ["none", "aes-256-gcm"] as const) {
      for (const checksum of ["crc32c", "none"] as const) {
        if (checksum === "none" && (k !== 4 || compression === "lz4")) continue;
        presets.push({ k, m, fragmentSizeMaxBytes: 64 * 1024, compression, encryption, checksum, ...(encryption === "none" ? {} : { encryptionKey: key }) });
      }
    }
  }
}

/** Half text-like, half random: compressible in parts, like real data. */
function mixedBytes(seed: number, sizeBytes: number): Buffer {
  const bytes = seededBytes(seed, sizeBytes);
  for (let i = 0; i < sizeBytes; i++) if ((i >> 9) % 2 === 0) bytes[i] = 97 + (i % 7);
  return bytes;
}

describe("round trips", () => {
  for (const preset of presets) {
    const name = `${preset.k}+${preset.m} ${preset.compression} ${preset.encryption} ${preset.checksum}`;
    it(`${name}: random sizes including 0 and 1 byte, up to m fragments missing`, () => {
      const pipeline = new FragmentPipeline(preset);
      const random = seededIntegers(preset.k * 100 + preset.m);
      const sizes = [0, 1, 2, preset.k - 1, preset.k, preset.k + 1, 4095, pipeline.chunkSizeMaxBytes, ...Array.from({ length: 4 }, () => random(pipeline.chunkSizeMaxBytes))];
      for (const size of sizes) {
        const chunk = mixedBytes(size + 1, size);
        const encoded = pipeline.encodeChunk(chunk);
        expect(encoded.fragments.length).toBe(preset.k + preset.m);
        const packed: Array<Buffer | undefined> = encoded.fragments.map(packedFragmentBytes);
        expect(pipeline.decodeChunk(packed).data.equals(chunk), `size ${size}, all present`).toBe(true);
        for (let lost = 0; lost < preset.m; lost++) {
          let index = random(packed.length);
          while (packed[index] === undefined) index = (index + 1) % packed.length;
          packed[index] = undefined;
        }
        const decoded = pipeline.decodeChunk(packed);
        expect(decoded.data.equals(chunk), `size ${size}, ${preset.m} missing`).toBe(true);
        expect(decoded.badFragments).toEqual([]);
      }
    });
  }

  it("data fragments are views of the chunk and parity is one contiguous allocation when nothing transforms", () => {
    const pipeline = new FragmentPipeline({ k: 4, m: 2, fragmentSizeMaxBytes: 4096, compression: "none", encryption: "none", checksum: "crc32c" });
    const chunk = seededBytes(7, 16_384);
    const encoded = pipeline.encodeChunk(chunk);
    expect(encoded.fragments[1]!.payload.buffer).toBe(chunk.buffer);
    const parity = encoded.fragments[4]!;
    expect(parity.header.buffer).toBe(parity.payload.buffer);
    expect(packedFragmentBytes(parity).buffer).toBe(parity.header.buffer);
  });

  it("keeps incompressible fragments uncompressed", () => {
    const pipeline = new FragmentPipeline({ k: 2, m: 1, fragmentSizeMaxBytes: 65_536, compression: "zstd", encryption: "none", checksum: "crc32c" });
    const encoded = pipeline.encodeChunk(seededBytes(3, 100_000));
    for (const fragment of encoded.fragments) {
      expect(fragment.header[headerOffsets.compression]).toBe(0);
      expect(fragment.payload.length).toBe(50_000);
    }
  });
});

describe("bad fragments", () => {
  const preset: CodingPreset = { k: 4, m: 2, fragmentSizeMaxBytes: 4096, compression: "zstd", encryption: "aes-256-gcm", encryptionKey: key, checksum: "crc32c" };
  const chunk = mixedBytes(11, 10_000);

  it("a corrupted fragment fails its checksum, named; decode goes on without it", () => {
    const pipeline = new FragmentPipeline(preset);
    const packed = pipeline.encodeChunk(chunk).fragments.map(packedFragmentBytes);
    packed[1]![fragmentHeaderSizeBytes + 5]! ^= 0x01;
    const error = caught(() => pipeline.unpackFragment(packed[1]!, 1));
    expect(error.code).toBe("CHECKSUM_MISMATCH");
    expect(error.message).toContain("fragment 1");
    const decoded = pipeline.decodeChunk(packed);
    expect(decoded.data.equals(chunk)).toBe(true);
    expect(decoded.badFragments.map((bad) => [bad.fragmentIndex, bad.error.code])).toEqual([[1, "CHECKSUM_MISMATCH"]]);
    const tooFew = caught(() => pipeline.decodeChunk([packed[0], packed[1], packed[2], undefined, packed[4], undefined]));
    expect(tooFew.code).toBe("UNAVAILABLE");
    expect(tooFew.message).toContain("fragment 1: crc32c mismatch");
  });

  it("a corrupted header byte fails the checksum, and flipping the checksum kind off is refused", () => {
    const pipeline = new FragmentPipeline(preset);
    const packed = pipeline.encodeChunk(chunk).fragments.map(packedFragmentBytes);
    const sizeFlipped = Buffer.from(packed[0]!);
    sizeFlipped[headerOffsets.chunkSizeBytes]! ^= 0x40;
    expect(caught(() => pipeline.unpackFragment(sizeFlipped, 0)).code).toBe("CHECKSUM_MISMATCH");
    const checksumOff = Buffer.from(packed[0]!);
    checksumOff[headerOffsets.checksum] = 0;
    checksumOff.writeUInt32LE(0, headerOffsets.checksumValue);
    const error = caught(() => pipeline.unpackFragment(checksumOff, 0));
    expect(error.code).toBe("CORRUPT");
    expect(error.message).toContain("fragment 0");
  });

  it("without a checksum, altered bytes still fail AES-256-GCM authentication", () => {
    const pipeline = new FragmentPipeline({ ...preset, checksum: "none" });
    const packed = pipeline.encodeChunk(chunk).fragments.map(packedFragmentBytes);
    const payloadFlipped = Buffer.from(packed[2]!);
    payloadFlipped[payloadFlipped.length - 1]! ^= 0x80;
    const error = caught(() => pipeline.unpackFragment(payloadFlipped, 2));
    expect(error.code).toBe("CORRUPT");
    expect(error.message).toContain("fragment 2: AES-256-GCM authentication failed");
    // A header that still parses (9,999 bytes also makes 2,500-byte fragments) but lies: the additional
    // authenticated data catches it.
    const sizeChanged = Buffer.from(packed[3]!);
    sizeChanged.writeUInt32LE(9_999, headerOffsets.chunkSizeBytes);
    expect(caught(() => pipeline.unpackFragment(sizeChanged, 3)).message).toContain("fragment 3: AES-256-GCM authentication failed");
  });

  it("the wrong key is an authentication error naming the fragment", () => {
    const packed = new FragmentPipeline(preset).encodeChunk(chunk).fragments.map(packedFragmentBytes);
    const wrong = new FragmentPipeline({ ...preset, encryptionKey: otherKey });
    const error = caught(() => wrong.unpackFragment(packed[0]!, 0));
    expect(error.code).toBe("CORRUPT");
    expect(error.details?.reason).toBe("authentication");
    expect(error.message).toContain("fragment 0");
    expect(caught(() => wrong.decodeChunk(packed)).code).toBe("UNAVAILABLE");
  });

  it("a fragment read for the wrong slot, or from another preset, is refused", () => {
    const pipeline = new FragmentPipeline(preset);
    const packed = pipeline.encodeChunk(chunk).fragments.map(packedFragmentBytes);
    expect(caught(() => pipeline.unpackFragment(packed[2]!, 3)).message).toContain("fragment 3: it is fragment 2");
    const other = new FragmentPipeline({ ...preset, k: 3, m: 3 });
    expect(caught(() => other.unpackFragment(packed[0]!, 0)).code).toBe("CORRUPT");
    expect(caught(() => pipeline.unpackFragment(packed[0]!.subarray(0, 30), 0)).code).toBe("CORRUPT");
    expect(caught(() => pipeline.unpackFragment(packed[0]!.subarray(0, packed[0]!.length - 1), 0)).code).toBe("CHECKSUM_MISMATCH");
  });

  it("refuses invalid presets", () => {
    expect(caught(() => new FragmentPipeline({ ...preset, k: 0 })).code).toBe("INVALID_ARGUMENT");
    expect(caught(() => new FragmentPipeline({ ...preset, m: 17 })).code).toBe("INVALID_ARGUMENT");
    expect(caught(() => new FragmentPipeline({ ...preset, encryptionKey: key.subarray(0, 16) })).code).toBe("INVALID_ARGUMENT");
    expect(caught(() => new FragmentPipeline({ ...preset, encryption: "none" })).code).toBe("INVALID_ARGUMENT");
    expect(caught(() => new FragmentPipeline({ ...preset, fragmentSizeMaxBytes: 0 })).code).toBe("INVALID_ARGUMENT");
  });
});

describe("repair", () => {
  it("rebuilds lost fragments that unpack to the originals", () => {
    const preset: CodingPreset = { k: 5, m: 4, fragmentSizeMaxBytes: 8192, compression: "lz4", encryption: "aes-256-gcm", encryptionKey: key, checksum: "crc32c" };
    const pipeline = new FragmentPipeline(preset);
    const chunk = mixedBytes(5, 30_001);
    const packed: Array<Buffer | undefined> = pipeline.encodeChunk(chunk).fragments.map(packedFragmentBytes);
    const originals = packed.map((bytes, index) => pipeline.unpackFragment(bytes!, index).data);
    packed[0] = undefined;
    packed[6] = undefined;
    packed[3]![fragmentHeaderSizeBytes]! ^= 0xff;
    const rebuilt = pipeline.rebuildFragments(packed, [0, 3, 6]);
    expect(rebuilt.badFragments.map((bad) => bad.fragmentIndex)).toEqual([3]);
    rebuilt.fragments.forEach((fragment) => {
      const bytes = packedFragmentBytes(fragment);
      expect(pipeline.unpackFragment(bytes, fragment.fragmentIndex).data.equals(originals[fragment.fragmentIndex]!)).toBe(true);
      packed[fragment.fragmentIndex] = bytes;
    });
    expect(pipeline.decodeChunk(packed).data.equals(chunk)).toBe(true);
  });
});

describe("partial reads", () => {
  it("maps object byte ranges to data-fragment bytes that equal the object's", () => {
    const preset: CodingPreset = { k: 4, m: 2, fragmentSizeMaxBytes: 1000, compression: "none", encryption: "none", checksum: "crc32c" };
    const pipeline = new FragmentPipeline(preset);
    const object = seededBytes(9, 3 * pipeline.chunkSizeMaxBytes + 1_234);
    const chunkSizes = chunkSizesBytesFor(object.length, pipeline.chunkSizeMaxBytes);
    expect(chunkSizes).toEqual([4000, 4000, 4000, 1234]);
    const stored = chunkSizes.map((size, chunkIndex) => {
      const start = chunkIndex * pipeline.chunkSizeMaxBytes;
      return pipeline.encodeChunk(object.subarray(start, start + size)).fragments.map(packedFragmentBytes);
    });
    const random = seededIntegers(17);
    const ranges = [
      { offsetBytes: 0, lengthBytes: object.length },
      { offsetBytes: 999, lengthBytes: 2 },
      { offsetBytes: 3_999, lengthBytes: 2 },
      { offsetBytes: object.length - 1, lengthBytes: 1 },
      { offsetBytes: 17, lengthBytes: 0 },
      ...Array.from({ length: 50 }, () => {
        const offsetBytes = random(object.length);
        return { offsetBytes, lengthBytes: random(object.length - offsetBytes + 1) };
      }),
    ];
    const slices = pipeline.planPartialRead(chunkSizes, ranges);
    const outputs = ranges.map((range) => Buffer.alloc(range.lengthBytes));
    for (const slice of slices) {
      expect(slice.fragmentIndex).toBeLessThan(preset.k);
      const packed = stored[slice.chunkIndex]![slice.fragmentIndex]!;
      packed.copy(outputs[slice.rangeIndex]!, slice.rangeOffsetBytes, slice.packedOffsetBytes, slice.packedOffsetBytes + slice.lengthBytes);
    }
    ranges.forEach((range, index) => {
      expect(outputs[index]!.equals(object.subarray(range.offsetBytes, range.offsetBytes + range.lengthBytes)), `range ${index}`).toBe(true);
    });
    expect(slices.filter((slice) => slice.rangeIndex === 1).map((slice) => [slice.fragmentIndex, slice.fragmentOffsetBytes, slice.lengthBytes])).toEqual([
      [0, 999, 1],
      [1, 0, 1],
    ]);
  });

  it("is refused past the end and for presets that compress or encrypt", () => {
    const pipeline = new FragmentPipeline({ k: 2, m: 1, fragmentSizeMaxBytes: 100, compression: "none", encryption: "none", checksum: "crc32c" });
    expect(caught(() => pipeline.planPartialRead([200, 50], [{ offsetBytes: 200, lengthBytes: 51 }])).code).toBe("OUT_OF_RANGE");
    expect(caught(() => pipeline.planPartialRead([200], [{ offsetBytes: -1, lengthBytes: 1 }])).code).toBe("INVALID_ARGUMENT");
    expect(pipeline.planPartialRead([], [{ offsetBytes: 0, lengthBytes: 0 }])).toEqual([]);
    const compressing = new FragmentPipeline({ k: 2, m: 1, fragmentSizeMaxBytes: 100, compression: "zstd", encryption: "none", checksum: "crc32c" });
    expect(isOvsError(caught(() => compressing.planPartialRead([10], [{ offsetBytes: 0, lengthBytes: 1 }])), "INVALID_ARGUMENT")).toBe(true);
  });
});
