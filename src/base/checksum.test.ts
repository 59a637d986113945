import { describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { crc32c as nodeRsCrc32c } from "@node-rs/crc32";
import { Crc32cCombiner, crc32c, crc32cBlocks, crc32cRange, crc32cSealRecords } from "./checksum.js";

describe("crc32c", () => {
  it("matches the CRC32C check value", () => {
    expect(crc32c(Buffer.from("123456789"))).toBe(0xe3069283);
    expect(crc32cRange(Buffer.from("123456789"), 0, 9)).toBe(0xe3069283);
  });

  it("gives the same result from both implementations, on ranges and continued", () => {
    for (let i = 0; i < 200; i++) {
      const data = randomBytes(1 + (i % 97));
      const start = i % 5 < data.length ? i % 5 : 0;
      expect(crc32cRange(data, start, data.length)).toBe(crc32c(data.subarray(start)));
      const half = Math.floor(data.length / 2);
      expect(crc32cRange(data, half, data.length, crc32c(data.subarray(0, half)))).toBe(crc32c(data));
    }
    expect(crc32cRange(Buffer.alloc(0), 0, 0)).toBe(0);
  });

  it("agrees with an independent implementation (@node-rs/crc32), whole and per block", () => {
    const data = randomBytes(16 * 4096);
    expect(crc32c(data)).toBe(nodeRsCrc32c(data) >>> 0);
    const out = new Uint32Array(17);
    crc32cBlocks(data, 4096, out.subarray(1));
    for (let i = 0; i < 16; i++) expect(out[i + 1]).toBe(nodeRsCrc32c(data.subarray(i * 4096, (i + 1) * 4096)) >>> 0);
    expect(out[0]).toBe(0);
    expect(() => crc32cBlocks(data.subarray(0, 5000), 4096, out)).toThrow();
  });
});

describe("crc32cSealRecords", () => {
  it("stores each record's CRC after it and returns the CRC of the records' bodies in order", () => {
    const stride = 32;
    const length = 28;
    const data = randomBytes(10 * stride + 5);
    const before = Buffer.from(data);
    const initial = crc32c(Buffer.from("before"));
    const chained = crc32cSealRecords(data.subarray(stride), 9, stride, length, initial);
    let expected = initial;
    for (let i = 1; i < 10; i++) {
      const record = data.subarray(i * stride, (i + 1) * stride);
      expect(record.readUInt32LE(length)).toBe(nodeRsCrc32c(record.subarray(0, length)) >>> 0);
      expect(record.subarray(0, length)).toEqual(before.subarray(i * stride, i * stride + length)); // bodies untouched
      expect(record.subarray(length + 4)).toEqual(before.subarray(i * stride + length + 4, (i + 1) * stride));
      expected = crc32cRange(record, 0, length, expected);
    }
    expect(chained).toBe(expected);
    expect(data.subarray(0, stride)).toEqual(before.subarray(0, stride)); // outside the view: untouched
    expect(data.subarray(10 * stride)).toEqual(before.subarray(10 * stride));
    expect(crc32cSealRecords(data, 0, stride, length, 123)).toBe(123);
  });

  it("refuses a stride without room for the CRC, or data shorter than the records, and writes nothing", () => {
    const data = randomBytes(64);
    const before = Buffer.from(data);
    expect(() => crc32cSealRecords(data, 2, 30, 28, 0)).toThrow(RangeError);
    expect(() => crc32cSealRecords(data, 3, 32, 28, 0)).toThrow();
    expect(data).toEqual(before);
  });
});

describe("Crc32cCombiner", () => {
  it("gives the CRC32C of a concatenation from the CRCs of its fixed-length pieces", () => {
    for (const pieceBytes of [1, 7, 4096]) {
      const combiner = new Crc32cCombiner(pieceBytes);
      const data = randomBytes(pieceBytes * 9);
      let running = 0; // the CRC32C of nothing
      for (let i = 0; i < 9; i++) {
        running = combiner.combine(running, crc32c(data.subarray(i * pieceBytes, (i + 1) * pieceBytes)));
        expect(running).toBe(crc32c(data.subarray(0, (i + 1) * pieceBytes)));
      }
    }
    // A prefix of any length followed by one piece.
    const combiner = new Crc32cCombiner(4096);
    const data = randomBytes(1000 + 4096);
    expect(combiner.combine(crc32c(data.subarray(0, 1000)), crc32c(data.subarray(1000)))).toBe(crc32c(data));
    expect(combiner.combine(0x12345678, crc32c(Buffer.alloc(4096)))).not.toBe(crc32c(Buffer.alloc(4096)));
  });
});
