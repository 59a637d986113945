// Golden vectors of docs/formats/tlog.md and docs/formats/sco.md: the spec's worked example must be
// exactly what the codec writes, and the codec must read it back; torn tails are cut, never trusted.

import { describe, expect, it } from "vitest";
import {
  EntryKind, checkClosedTlog, decodeTlogEntry, encodeLocationEntry, decodeTlogHeader, encodeTlogEntry, encodeTlogHeader, entryAddressAt, entryCloneIdAt, entryCountOrOffsetAt,
  entryCrcAt, entryKindAt, entryScoNumberAt, entryScoVersionAt, parseTlog, tlogEntryOffset, tlogEntrySizeBytes,
} from "./tlog-format.js";
import { TlogWriter } from "./tlog-writer.js";
import { crc32cRange } from "../base/index.js";
import { parseScoName, scoName } from "./sco-name.js";

const golden = Buffer.from(
  [
    "4f 56 53 54 4c 4f 47 00 01 00 00 00 00 10 00 00",
    "00 00 00 00 00 00 00 00 00 00 00 00 ca 12 75 2f",
    "01 00 00 00 01 00 00 00 05 00 00 00 00 00 00 00",
    "00 00 00 00 78 56 34 12 00 00 00 00 8d ca 95 4f",
    "02 00 00 00 00 00 00 00 08 00 00 00 00 00 00 00",
    "02 00 00 00 00 00 00 00 00 00 00 00 89 c4 1e 6b",
    "03 00 00 00 01 00 00 00 00 00 00 00 00 00 00 00",
    "01 00 00 00 f0 de bc 9a 00 00 00 00 70 47 dd cf",
  ].join(" ").replace(/ /g, ""),
  "hex",
);

describe("TLog format", () => {
  it("encodes the worked example of docs/formats/tlog.md byte for byte", () => {
    const bytes = Buffer.alloc(128);
    encodeTlogHeader(bytes, 4096);
    encodeTlogEntry(bytes, 32, { kind: EntryKind.Location, clusterAddress: 5, cloneId: 0, scoNumber: 1, scoVersion: 0, offsetClusters: 0, dataCrc: 0x12345678 });
    encodeTlogEntry(bytes, 64, { kind: EntryKind.Trim, clusterAddress: 8, clusterCount: 2 });
    encodeTlogEntry(bytes, 96, { kind: EntryKind.ScoCrc, cloneId: 0, scoNumber: 1, scoVersion: 0, clusterCount: 1, scoCrc: 0x9abcdef0 });
    expect(bytes.toString("hex")).toBe(golden.toString("hex"));
  });

  it("decodes the worked example", () => {
    expect(decodeTlogHeader(golden)).toEqual({ ok: true, clusterSizeBytes: 4096 });
    const parsed = parseTlog(golden);
    expect(parsed.tailReason).toBeUndefined();
    expect(parsed.closed).toBe(false);
    expect(parsed.validSizeBytes).toBe(128);
    expect(parsed.entries).toEqual([
      { kind: EntryKind.Location, clusterAddress: 5, cloneId: 0, scoNumber: 1, scoVersion: 0, offsetClusters: 0, dataCrc: 0x12345678 },
      { kind: EntryKind.Trim, clusterAddress: 8, clusterCount: 2 },
      { kind: EntryKind.ScoCrc, cloneId: 0, scoNumber: 1, scoVersion: 0, clusterCount: 1, scoCrc: 0x9abcdef0 },
    ]);
  });

  it("round-trips cluster addresses above 2^32", () => {
    const bytes = Buffer.alloc(32);
    encodeTlogEntry(bytes, 0, { kind: EntryKind.Location, clusterAddress: 2 ** 35 - 1, cloneId: 3, scoNumber: 0xffffffff, scoVersion: 7, offsetClusters: 65535, dataCrc: 1 });
    const result = decodeTlogEntry(bytes, 0);
    expect(result).toMatchObject({ ok: true, entry: { clusterAddress: 2 ** 35 - 1, cloneId: 3, scoNumber: 0xffffffff, scoVersion: 7, offsetClusters: 65535 } });
  });

  it("writes the same Location bytes with the hot-path encoder as with the general one", () => {
    for (const [clusterAddress, scoNumber, offsetClusters, dataCrc] of [
      [0, 1, 0, 0], [5, 0xffffffff, 65535, 0xfffffffe], [2 ** 32, 7, 3, 0x80000000], [2 ** 35 - 1, 0x12345678, 1023, 0x9abcdef0], [2 ** 32 - 1, 2 ** 31, 0, 1],
    ]) {
      const general = Buffer.alloc(64, 0xaa);
      const hot = Buffer.alloc(64, 0xaa);
      encodeTlogEntry(general, 16, { kind: EntryKind.Location, clusterAddress: clusterAddress!, cloneId: 0, scoNumber: scoNumber!, scoVersion: 0, offsetClusters: offsetClusters!, dataCrc: dataCrc! });
      encodeLocationEntry(hot, 16, clusterAddress!, scoNumber!, offsetClusters!, dataCrc!);
      expect(hot.toString("hex"), `address ${clusterAddress}`).toBe(general.toString("hex"));
      expect(decodeTlogEntry(hot, 16)).toMatchObject({ ok: true, entry: { clusterAddress, scoNumber, offsetClusters, dataCrc } });
    }
  });

  it("cuts a torn tail: a flipped bit or a partial entry ends the valid part", () => {
    const torn = Buffer.from(golden);
    torn[70] = torn[70]! ^ 0x01; // inside the Trim entry
    const parsed = parseTlog(torn);
    expect(parsed.entries).toHaveLength(1);
    expect(parsed.validSizeBytes).toBe(64);
    expect(parsed.tailReason).toBe("entry CRC mismatch");
    const partial = parseTlog(golden.subarray(0, 100));
    expect(partial.entries).toHaveLength(2);
    expect(partial.tailReason).toBe("truncated entry");
    expect(parseTlog(Buffer.from("not a tlog at all, really not one")).tailReason).toBe("bad TLog magic");
  });

  it("rejects unknown entry kinds as a reason, not an exception", () => {
    const bytes = Buffer.from(golden.subarray(32, 64));
    bytes[0] = 99;
    expect(decodeTlogEntry(bytes, 0)).toMatchObject({ ok: false });
  });

  it("closes a TLog with an entry count and a CRC over the entries, and verifies them on parse", () => {
    const writer = new TlogWriter({ seq: 1, id: "tlog_x", clusterSizeBytes: 4096 });
    writer.append({ kind: EntryKind.Trim, clusterAddress: 1, clusterCount: 1 });
    writer.append({ kind: EntryKind.Trim, clusterAddress: 2, clusterCount: 1 });
    writer.close();
    const bytes = Buffer.from(writer.takePending().bytes);
    const parsed = parseTlog(bytes);
    expect(parsed.closed).toBe(true);
    expect(parsed.entries.at(-1)).toMatchObject({ kind: EntryKind.TlogCrc, entryCount: 2 });
    // Swapping two valid entries keeps each entry's CRC but breaks the TLog CRC.
    const swapped = Buffer.from(bytes);
    bytes.copy(swapped, 32, 64, 96);
    bytes.copy(swapped, 64, 32, 64);
    expect(parseTlog(swapped).closed).toBe(false);
    expect(bytes.length).toBe(32 + 3 * tlogEntrySizeBytes);
  });
});

describe("checked TLog scan (the scrubber's)", () => {
  function closedTlog(): Buffer {
    const writer = new TlogWriter({ seq: 1, id: "tlog_x", clusterSizeBytes: 4096 });
    writer.append({ kind: EntryKind.Location, clusterAddress: 2 ** 35 - 1, cloneId: 3, scoNumber: 0xfffffffe, scoVersion: 7, offsetClusters: 65535, dataCrc: 0x89abcdef });
    writer.append({ kind: EntryKind.Trim, clusterAddress: 8, clusterCount: 2 });
    writer.append({ kind: EntryKind.ScoCrc, cloneId: 0, scoNumber: 1, scoVersion: 0, clusterCount: 1, scoCrc: 0x9abcdef0 });
    writer.close();
    return Buffer.from(writer.takePending().bytes);
  }

  it("reads the same fields as parseTlog, in place", () => {
    const bytes = closedTlog();
    const checked = checkClosedTlog(bytes);
    expect(checked).toEqual({ ok: true, entryCount: 3 });
    const parsed = parseTlog(bytes);
    for (let i = 0; i < 3; i++) {
      const at = tlogEntryOffset(i);
      const entry = parsed.entries[i]!;
      expect(entryKindAt(bytes, at)).toBe(entry.kind);
      if (entry.kind === EntryKind.Location) {
        expect([entryAddressAt(bytes, at), entryCloneIdAt(bytes, at), entryScoNumberAt(bytes, at), entryScoVersionAt(bytes, at), entryCountOrOffsetAt(bytes, at), entryCrcAt(bytes, at)])
          .toEqual([entry.clusterAddress, entry.cloneId, entry.scoNumber, entry.scoVersion, entry.offsetClusters, entry.dataCrc]);
      } else if (entry.kind === EntryKind.Trim) {
        expect([entryAddressAt(bytes, at), entryCountOrOffsetAt(bytes, at)]).toEqual([entry.clusterAddress, entry.clusterCount]);
      } else if (entry.kind === EntryKind.ScoCrc) {
        expect([entryScoNumberAt(bytes, at), entryCountOrOffsetAt(bytes, at), entryCrcAt(bytes, at)]).toEqual([entry.scoNumber, entry.clusterCount, entry.scoCrc]);
      }
    }
  });

  it("refuses what parseTlog would not call a whole closed TLog", () => {
    const bytes = closedTlog();
    const flipped = Buffer.from(bytes);
    flipped[70] = flipped[70]! ^ 0x01;
    const swapped = Buffer.from(bytes);
    bytes.copy(swapped, 32, 64, 96);
    bytes.copy(swapped, 64, 32, 64);
    const unknownKind = Buffer.from(bytes);
    unknownKind[64] = 99;
    unknownKind.writeUInt32LE(crc32cRange(unknownKind, 64, 92), 92); // a valid entry CRC: only the kind is wrong
    const cases: Array<[Buffer, string]> = [
      [flipped, "entry CRC mismatch"],
      [swapped, "TLog CRC entry does not match the entries before it"],
      [unknownKind, "unknown entry kind 99"],
      [bytes.subarray(0, bytes.length - 32), "not closed"],
      [bytes.subarray(0, bytes.length - 5), "truncated entry"],
      [Buffer.from("not a tlog at all, really not one"), "bad TLog magic"],
    ];
    for (const [damaged, reason] of cases) {
      expect(checkClosedTlog(damaged)).toEqual({ ok: false, reason });
      const parsed = parseTlog(damaged);
      expect(parsed.tailReason !== undefined || !parsed.closed).toBe(true);
    }
  });
});

describe("SCO names", () => {
  it("formats and parses cc_nnnnnnnn_vv", () => {
    expect(scoName({ cloneId: 0, scoNumber: 0xb7e, version: 0 })).toBe("00_00000b7e_00");
    expect(scoName({ cloneId: 255, scoNumber: 0xffffffff, version: 1 })).toBe("ff_ffffffff_01");
    expect(parseScoName("00_00000b7e_00")).toEqual({ cloneId: 0, scoNumber: 0xb7e, version: 0 });
    expect(parseScoName("00_00000000_00")).toBeUndefined(); // SCO number 0 means unwritten
    expect(parseScoName("tlog_abc")).toBeUndefined();
    expect(parseScoName("00_00000B7E_00")).toBeUndefined();
    expect(() => scoName({ cloneId: 0, scoNumber: 0, version: 0 })).toThrow();
  });
});
