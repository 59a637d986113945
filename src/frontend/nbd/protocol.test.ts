// Golden byte vectors for the NBD codecs (the worked example in docs/formats/nbd.md is the
// "read request and reply" pair below), and decoders' reasons on bad input.
import { describe, expect, test } from "vitest";
import {
  decodeClientFlags, decodeInfoRequest, decodeOptionHeader, decodeRequestHeader, decodeSimpleReplyHeader, decodeString,
  encodeExportNameReply, encodeGreeting, encodeInfoBlockSize, encodeInfoExport, encodeInfoRequest, encodeRequestHeader,
  encodeServerReplyData, encodeSimpleReplyHeader, measureInfoRequest, NBD_CMD_READ, NBD_CMD_WRITE, NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_NO_ZEROES, NBD_OPT_GO, NBD_OPT_LIST, NBD_REP_ACK, NBD_REP_ERR_UNSUP, optionReply, readUInt64Clamped,
  decodeMetaContextRequest, decodeStructuredReplyHeader, encodeBlockStatusReply, encodeMetaContextReplyData, encodeMetaContextRequest,
  encodeStructuredError, encodeStructuredReplyHeader, NBD_OPT_SET_META_CONTEXT, NBD_REP_META_CONTEXT, NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_BLOCK_STATUS, NBD_REPLY_TYPE_OFFSET_DATA, writeUInt64,
} from "./protocol.js";

const hex = (text: string) => Buffer.from(text.replace(/\s+/g, ""), "hex");

describe("golden vectors: structured replies and base:allocation (docs/formats/nbd.md)", () => {
  test("NBD_OPT_SET_META_CONTEXT of base:allocation for export disk, and the server's NBD_REP_META_CONTEXT", () => {
    const data = encodeMetaContextRequest({ exportName: "disk", queries: ["base:allocation"] });
    expect(data).toEqual(hex("00000004 6469736b 00000001 0000000f 626173653a616c6c6f636174696f6e"));
    expect(decodeMetaContextRequest(data)).toEqual({ ok: true, value: { exportName: "disk", queries: ["base:allocation"] } });
    expect(optionReply(NBD_OPT_SET_META_CONTEXT, NBD_REP_META_CONTEXT, encodeMetaContextReplyData(1, "base:allocation")))
      .toEqual(hex("0003e889045565a9 0000000a 00000004 00000013 00000001 626173653a616c6c6f636174696f6e"));
  });

  test("structured reply to the 4 KiB read at 1 MiB: one OFFSET_DATA chunk flagged DONE", () => {
    const header = Buffer.alloc(28);
    encodeStructuredReplyHeader(header, 0, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_OFFSET_DATA, 0x01020304, 0x05060708, 8 + 4096);
    writeUInt64(header, 20, 1048576);
    expect(header).toEqual(hex("668e33ef 0001 0001 0102030405060708 00001008 0000000000100000"));
    expect(decodeStructuredReplyHeader(header, 0)).toEqual({ ok: true, value: { flags: 1, type: 1, handleHi: 0x01020304, handleLo: 0x05060708, payloadBytes: 4104 } });
  });

  test("an EINVAL error chunk, and a BLOCK_STATUS chunk of 1 MiB hole then 64 KiB data", () => {
    expect(encodeStructuredError(0, 7, 22, "")).toEqual(hex("668e33ef 0001 8001 0000000000000007 00000006 00000016 0000"));
    expect(encodeStructuredError(0, 7, 22, "bad")).toEqual(hex("668e33ef 0001 8001 0000000000000007 00000009 00000016 0003 626164"));
    expect(encodeBlockStatusReply(0, 9, 1, [{ lengthBytes: 1 << 20, flags: 3 }, { lengthBytes: 65536, flags: 0 }]))
      .toEqual(hex("668e33ef 0001 0005 0000000000000009 00000014 00000001 00100000 00000003 00010000 00000000"));
    expect(NBD_REPLY_TYPE_BLOCK_STATUS).toBe(5);
  });
});

describe("golden vectors", () => {
  test("server greeting: NBDMAGIC, IHAVEOPT, FIXED_NEWSTYLE|NO_ZEROES", () => {
    const out = Buffer.alloc(18);
    encodeGreeting(out, 0, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    expect(out).toEqual(hex("4e42444d41474943 49484156454f5054 0003"));
  });

  test("read request: 4 KiB at offset 1 MiB, handle 0x0102030405060708 (docs/formats/nbd.md example)", () => {
    const wire = hex("25609513 0000 0000 0102030405060708 0000000000100000 00001000");
    const decoded = decodeRequestHeader(wire, 0);
    expect(decoded).toEqual({ ok: true, value: { commandFlags: 0, type: NBD_CMD_READ, handleHi: 0x01020304, handleLo: 0x05060708, offsetBytes: 1048576, lengthBytes: 4096 } });
    const out = Buffer.alloc(28);
    encodeRequestHeader(out, 0, decoded.ok ? decoded.value : ({} as never));
    expect(out).toEqual(wire);
  });

  test("simple reply to that read: no error, same handle (docs/formats/nbd.md example)", () => {
    const out = Buffer.alloc(16);
    encodeSimpleReplyHeader(out, 0, 0, 0x01020304, 0x05060708);
    expect(out).toEqual(hex("67446698 00000000 0102030405060708"));
    expect(decodeSimpleReplyHeader(out, 0)).toEqual({ ok: true, value: { error: 0, handleHi: 0x01020304, handleLo: 0x05060708 } });
  });

  test("write request with FUA and an EINVAL reply", () => {
    const out = Buffer.alloc(28);
    encodeRequestHeader(out, 0, { commandFlags: 1, type: NBD_CMD_WRITE, handleHi: 0, handleLo: 7, offsetBytes: 513, lengthBytes: 10000 });
    expect(out).toEqual(hex("25609513 0001 0001 0000000000000007 0000000000000201 00002710"));
    const reply = Buffer.alloc(16);
    encodeSimpleReplyHeader(reply, 0, 22, 0, 7);
    expect(reply).toEqual(hex("67446698 00000016 0000000000000007"));
  });

  test("option header and option replies", () => {
    expect(decodeOptionHeader(hex("49484156454f5054 00000003 00000000"), 0)).toEqual({ ok: true, value: { option: NBD_OPT_LIST, dataBytes: 0 } });
    expect(optionReply(NBD_OPT_GO, NBD_REP_ACK)).toEqual(hex("0003e889045565a9 00000007 00000001 00000000"));
    expect(optionReply(99, NBD_REP_ERR_UNSUP)).toEqual(hex("0003e889045565a9 00000063 80000001 00000000"));
    expect(encodeServerReplyData("disk", "d")).toEqual(hex("00000004 6469736b 64"));
  });

  test("NBD_OPT_GO data and info replies", () => {
    const request = { exportName: "disk", infoTypes: [3, 1] };
    const data = Buffer.alloc(measureInfoRequest(request));
    encodeInfoRequest(data, 0, request);
    expect(data).toEqual(hex("00000004 6469736b 0002 0003 0001"));
    expect(decodeInfoRequest(data)).toEqual({ ok: true, value: request });
    // 1 GiB, HAS_FLAGS|SEND_FLUSH|SEND_FUA|SEND_TRIM|SEND_WRITE_ZEROES|CAN_MULTI_CONN = 0x016d.
    expect(encodeInfoExport(1 << 30, 0x016d)).toEqual(hex("0000 0000000040000000 016d"));
    expect(encodeInfoBlockSize({ minimumBytes: 512, preferredBytes: 4096, maximumBytes: 32 << 20 })).toEqual(hex("0003 00000200 00001000 02000000"));
  });

  test("NBD_OPT_EXPORT_NAME reply with and without the 124 zeroes", () => {
    expect(encodeExportNameReply(4096, 0x0003, true)).toEqual(hex("0000000000001000 0003"));
    const withZeroes = encodeExportNameReply(4096, 0x0003, false);
    expect(withZeroes.length).toBe(134);
    expect(withZeroes.subarray(10).every((b) => b === 0)).toBe(true);
  });
});

describe("decoders return a reason on bad input", () => {
  test("request with bad magic or truncated", () => {
    const bad = hex("25609514 0000 0000 0000000000000000 0000000000000000 00000000");
    expect(decodeRequestHeader(bad, 0)).toEqual({ ok: false, reason: "request: bad magic 0x25609514" });
    expect(decodeRequestHeader(bad.subarray(0, 27), 0)).toEqual({ ok: false, reason: "request: truncated header" });
  });

  test("offsets at or above 2^53 are clamped to MAX_SAFE_INTEGER, not rounded", () => {
    expect(readUInt64Clamped(hex("0020000000000000"), 0)).toBe(Number.MAX_SAFE_INTEGER);
    expect(readUInt64Clamped(hex("ffffffffffffffff"), 0)).toBe(Number.MAX_SAFE_INTEGER);
    expect(readUInt64Clamped(hex("001fffffffffffff"), 0)).toBe(Number.MAX_SAFE_INTEGER);
    expect(readUInt64Clamped(hex("0000400000000001"), 0)).toBe(2 ** 46 + 1);
  });

  test("option header with bad magic", () => {
    const result = decodeOptionHeader(hex("49484156454f5055 00000003 00000000"), 0);
    expect(result.ok).toBe(false);
  });

  test("client flags: unknown bits and NO_ZEROES not offered", () => {
    expect(decodeClientFlags(hex("00000003"), 0, 3)).toEqual({ ok: true, value: 3 });
    expect(decodeClientFlags(hex("00000004"), 0, 3).ok).toBe(false);
    expect(decodeClientFlags(hex("00000002"), 0, 1).ok).toBe(false);
    expect(decodeClientFlags(hex("0000"), 0, 3).ok).toBe(false);
  });

  test("info request: short, name past the end, count mismatch", () => {
    expect(decodeInfoRequest(hex("0000")).ok).toBe(false);
    expect(decodeInfoRequest(hex("00000010 6469736b 0000")).ok).toBe(false);
    expect(decodeInfoRequest(hex("00000004 6469736b 0002 0003")).ok).toBe(false);
    expect(decodeInfoRequest(hex("00000004 6469736b 0000 0003")).ok).toBe(false);
    expect(decodeInfoRequest(hex("00000000 0000"))).toEqual({ ok: true, value: { exportName: "", infoTypes: [] } });
  });

  test("strings: NUL, invalid UTF-8, too long", () => {
    expect(decodeString(hex("610062")).ok).toBe(false);
    expect(decodeString(hex("ff")).ok).toBe(false);
    expect(decodeString(Buffer.alloc(4097, 0x61)).ok).toBe(false);
    expect(decodeString(Buffer.from("vdisk-é"))).toEqual({ ok: true, value: "vdisk-é" });
  });
});
