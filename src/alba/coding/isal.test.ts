// Tests of the ISA-L addon as loaded by isal.ts: CRC32C against the standard check value and against
// @node-rs/crc32 (independent), the Cauchy matrix against the pure-TS reference, and argument checking
// (a bad call throws, never crashes). A missing addon fails here with the message that names the fix.

import { crc32c as nodeRsCrc32c } from "@node-rs/crc32";
import { describe, expect, it } from "vitest";
import { crc32c, ecKMax, ecMMax, isal } from "./isal.js";
import { gfMul, referenceCauchyMatrix, seededBytes } from "./testing/gf256-reference.js";

describe("ISA-L addon", () => {
  it("loads (needs Debian's libisal-dev and npm install)", () => {
    expect(isal().limits).toEqual({ kMax: ecKMax, mMax: ecMMax });
  });

  it("crc32c of '123456789' is the standard check value 0xE3069283", () => {
    expect(crc32c(Buffer.from("123456789", "latin1"))).toBe(0xe3069283);
    expect(crc32c(Buffer.alloc(0))).toBe(0);
    expect(crc32c(Buffer.alloc(4096))).toBe(0x98f94189);
  });

  it("crc32c continues across pieces and agrees with @node-rs/crc32 on random buffers", () => {
    for (const size of [1, 7, 63, 64, 65, 4096, 65_537, 1_048_579]) {
      const data = seededBytes(size, size);
      const expected = nodeRsCrc32c(data) >>> 0;
      expect(crc32c(data)).toBe(expected);
      const cut = Math.floor(size / 3);
      expect(crc32c(data.subarray(cut), crc32c(data.subarray(0, cut)))).toBe(expected);
      const asUint8Array = new Uint8Array(data.buffer, data.byteOffset, data.length);
      expect(crc32c(asUint8Array)).toBe(expected);
    }
  });

  it("genCauchyMatrix is the reference Cauchy matrix", () => {
    for (const [k, m] of [[1, 1], [2, 1], [4, 2], [5, 4], [8, 3], [16, 4], [ecKMax, ecMMax]] as const) {
      const matrix = new Uint8Array((k + m) * k);
      isal().genCauchyMatrix(k, m, matrix);
      expect(Buffer.from(matrix).toString("hex")).toBe(Buffer.from(referenceCauchyMatrix(k, m)).toString("hex"));
    }
  });

  it("decodeMatrix inverts through ISA-L's own gf_mul (regression: without RTLD_DEEPBIND, OpenSSL's gf_mul crashes it)", () => {
    const [k, m] = [4, 2];
    const matrix = referenceCauchyMatrix(k, m);
    const sources = [1, 2, 4, 5];
    const rows = new Uint8Array(2 * k);
    expect(isal().decodeMatrix(k, m, matrix, Uint8Array.from(sources), Uint8Array.from([0, 3]), rows)).toBe(true);
    // Row t combines the source rows of the encode matrix into the unit row of target t.
    [0, 3].forEach((target, t) => {
      for (let column = 0; column < k; column++) {
        let sum = 0;
        for (let i = 0; i < k; i++) sum ^= gfMul(rows[t * k + i]!, matrix[sources[i]! * k + column]!);
        expect(sum).toBe(column === target ? 1 : 0);
      }
    });
  });

  it("rejects bad arguments with exceptions instead of crashing", () => {
    const addon = isal();
    const tables = new Uint8Array(32 * 2 * 1);
    expect(() => addon.encodeData(2, 1, tables, [Buffer.alloc(8), Buffer.alloc(4)], [Buffer.alloc(8)], 8)).toThrow(RangeError);
    expect(() => addon.encodeData(2, 1, tables, [Buffer.alloc(8)], [Buffer.alloc(8)], 8)).toThrow(RangeError);
    expect(() => addon.encodeData(2, 1, tables, "x" as unknown as Uint8Array[], [Buffer.alloc(8)], 8)).toThrow(TypeError);
    expect(() => addon.genCauchyMatrix(ecKMax + 1, 1, new Uint8Array(4096))).toThrow(RangeError);
    expect(() => addon.genCauchyMatrix(4, 2, new Uint8Array(23))).toThrow(RangeError);
    expect(() => addon.crc32c(new Uint16Array(4) as unknown as Uint8Array, 0)).toThrow(TypeError);
    const matrix = new Uint8Array(6 * 4);
    addon.genCauchyMatrix(4, 2, matrix);
    expect(() => addon.decodeMatrix(4, 2, matrix, Uint8Array.from([0, 0, 1, 2]), Uint8Array.from([3]), new Uint8Array(4))).toThrow(RangeError);
    expect(() => addon.decodeMatrix(4, 2, matrix, Uint8Array.from([0, 1, 2, 9]), Uint8Array.from([3]), new Uint8Array(4))).toThrow(RangeError);
  });

  it("encodes zero-length fragments without touching their (null) data pointers", () => {
    const addon = isal();
    const matrix = new Uint8Array(3 * 2);
    addon.genCauchyMatrix(2, 1, matrix);
    const tables = new Uint8Array(32 * 2);
    addon.initTables(2, 1, matrix.subarray(4), tables);
    expect(() => addon.encodeData(2, 1, tables, [Buffer.alloc(0), Buffer.alloc(0)], [Buffer.alloc(0)], 0)).not.toThrow();
  });
});

describe("alignedBuffer (allocAligned, for O_DIRECT)", () => {
  it("returns zeroed memory that O_DIRECT writes accept, where a buffer 16 bytes off is refused", async () => {
    const { alignedBuffer } = await import("../../base/isal.js");
    const fs = await import("node:fs");
    const os = await import("node:os");
    const path = await import("node:path");
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ovs-aligned-"));
    const fd = fs.openSync(path.join(dir, "f"), fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_DIRECT);
    try {
      // Node's own large Buffers sit 16 bytes into their memory: most are refused (EINVAL). Ours never are.
      for (let attempt = 0; attempt < 16; attempt++) {
        const buffer = alignedBuffer(1024 * 1024);
        expect(buffer.length).toBe(1024 * 1024);
        expect(buffer.every((byte) => byte === 0)).toBe(true);
        buffer.fill(attempt);
        expect(fs.writeSync(fd, buffer, 0, buffer.length, attempt * buffer.length)).toBe(buffer.length);
      }
      const offBy16 = alignedBuffer(8192).subarray(16, 16 + 4096);
      expect(() => fs.writeSync(fd, offBy16, 0, 4096, 0)).toThrow(expect.objectContaining({ code: "EINVAL" }));
      fs.fsyncSync(fd);
      const back = fs.readFileSync(path.join(dir, "f"));
      expect(back.length).toBe(16 * 1024 * 1024);
      expect(back[15 * 1024 * 1024 + 5]).toBe(15);
    } finally {
      fs.closeSync(fd);
      fs.rmSync(dir, { recursive: true, force: true });
    }
    expect(() => isal().allocAligned(1000)).toThrow(RangeError);
    expect(() => isal().allocAligned(0)).toThrow(RangeError);
  });
});
