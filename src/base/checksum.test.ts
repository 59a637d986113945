import { describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { crc32c, crc32cRange } from "./checksum.js";

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
});
