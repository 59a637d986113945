// The pure parts of the NBD server: request validation, the handshake core, the chunk queue.
import { describe, expect, test } from "vitest";
import { OvsError } from "../../base/index.js";
import { ChunkQueue } from "../../base/index.js";
import { extentsOfUnits } from "./block-status.js";
import { BASE_ALLOCATION_CONTEXT_ID, HandshakeSession } from "./handshake.js";
import { nbdLimits } from "./limits.js";
import { MemoryExport, StaticExportProvider } from "./memory-export.js";
import { nbdErrorOf } from "./nbd-export.js";
import {
  BASE_ALLOCATION, decodeMetaContextRequest, encodeMetaContextRequest, NBD_CMD_FLAG_REQ_ONE, NBD_FLAG_SEND_DF, NBD_OPT_LIST_META_CONTEXT,
  NBD_OPT_SET_META_CONTEXT, NBD_REP_META_CONTEXT, NBD_STATE_HOLE, NBD_STATE_ZERO, type BlockStatusExtent,
  encodeInfoRequest, measureInfoRequest, NBD_CMD_BLOCK_STATUS, NBD_CMD_CACHE, NBD_CMD_DISC, NBD_CMD_FLAG_DF, NBD_CMD_FLAG_FAST_ZERO,
  NBD_CMD_FLAG_FUA, NBD_CMD_FLAG_NO_HOLE, NBD_CMD_FLUSH, NBD_CMD_READ, NBD_CMD_TRIM, NBD_CMD_WRITE, NBD_CMD_WRITE_ZEROES, NBD_EINVAL,
  NBD_EIO, NBD_ENOSPC, NBD_EPERM, NBD_OK, NBD_OPT_ABORT, NBD_OPT_EXPORT_NAME, NBD_OPT_GO, NBD_OPT_INFO, NBD_OPT_LIST, NBD_OPT_STARTTLS,
  NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK, NBD_REP_ERR_INVALID, NBD_REP_ERR_POLICY, NBD_REP_ERR_SHUTDOWN, NBD_REP_ERR_TOO_BIG,
  NBD_REP_ERR_UNKNOWN, NBD_REP_ERR_UNSUP, NBD_REP_INFO, NBD_REP_SERVER, type RequestHeader,
} from "./protocol.js";
import { checkRequest, transmissionFlagsOf } from "./transmission.js";

const MiB = 1 << 20;
const request = (type: number, offsetBytes: number, lengthBytes: number, commandFlags = 0): RequestHeader =>
  ({ type, offsetBytes, lengthBytes, commandFlags, handleHi: 0, handleLo: 1 });

describe("checkRequest", () => {
  const size = 64 * MiB;
  test.each([
    ["read in range, unaligned", request(NBD_CMD_READ, 513, 10000), false, NBD_OK],
    ["read up to the end", request(NBD_CMD_READ, size - 4096, 4096), false, NBD_OK],
    ["read past the end", request(NBD_CMD_READ, size - 4096, 4097), false, NBD_EINVAL],
    ["read at a huge offset", request(NBD_CMD_READ, Number.MAX_SAFE_INTEGER, 1), false, NBD_EINVAL],
    ["write past the end → ENOSPC", request(NBD_CMD_WRITE, size, 512), false, NBD_ENOSPC],
    ["write zeroes past the end → ENOSPC", request(NBD_CMD_WRITE_ZEROES, size, 512), false, NBD_ENOSPC],
    ["trim past the end → EINVAL", request(NBD_CMD_TRIM, size, 512), false, NBD_EINVAL],
    ["read of 32 MiB", request(NBD_CMD_READ, 0, 32 * MiB), false, NBD_OK],
    ["read over 32 MiB", request(NBD_CMD_READ, 0, 32 * MiB + 1), false, NBD_EINVAL],
    ["write over 32 MiB", request(NBD_CMD_WRITE, 0, 32 * MiB + 1), false, NBD_EINVAL],
    ["trim over 32 MiB is fine", request(NBD_CMD_TRIM, 0, 48 * MiB), false, NBD_OK],
    ["zero-length read at the end", request(NBD_CMD_READ, size, 0), false, NBD_OK],
    ["zero-length read past the end", request(NBD_CMD_READ, size + 1, 0), false, NBD_EINVAL],
    ["unknown command", request(9, 0, 0), false, NBD_EINVAL],
    ["NBD_CMD_CACHE (not advertised)", request(NBD_CMD_CACHE, 0, 512), false, NBD_EINVAL],
    ["NBD_CMD_BLOCK_STATUS (not negotiated)", request(NBD_CMD_BLOCK_STATUS, 0, 512), false, NBD_EINVAL],
    ["FUA on read is accepted", request(NBD_CMD_READ, 0, 512, NBD_CMD_FLAG_FUA), false, NBD_OK],
    ["NO_HOLE on write zeroes", request(NBD_CMD_WRITE_ZEROES, 0, 512, NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FUA), false, NBD_OK],
    ["NO_HOLE on write", request(NBD_CMD_WRITE, 0, 512, NBD_CMD_FLAG_NO_HOLE), false, NBD_EINVAL],
    ["DF without structured replies", request(NBD_CMD_READ, 0, 512, NBD_CMD_FLAG_DF), false, NBD_EINVAL],
    ["FAST_ZERO not advertised", request(NBD_CMD_WRITE_ZEROES, 0, 512, NBD_CMD_FLAG_FAST_ZERO), false, NBD_EINVAL],
    ["unknown flag bit", request(NBD_CMD_READ, 0, 512, 0x8000), false, NBD_EINVAL],
    ["flush", request(NBD_CMD_FLUSH, 0, 0), false, NBD_OK],
    ["flush with a length", request(NBD_CMD_FLUSH, 0, 512), false, NBD_EINVAL],
    ["write on read-only → EPERM", request(NBD_CMD_WRITE, 0, 512), true, NBD_EPERM],
    ["trim on read-only → EPERM", request(NBD_CMD_TRIM, 0, 512), true, NBD_EPERM],
    ["write zeroes on read-only → EPERM", request(NBD_CMD_WRITE_ZEROES, 0, 512), true, NBD_EPERM],
    ["read on read-only", request(NBD_CMD_READ, 0, 512), true, NBD_OK],
    ["disc", request(NBD_CMD_DISC, 0, 0), false, NBD_OK],
  ])("%s", (_name, header, readOnly, expected) => {
    expect(checkRequest(header, size, readOnly)).toBe(expected);
  });

  const structured = { structuredReplies: true, blockStatus: false };
  const withBlockStatus = { structuredReplies: true, blockStatus: true };
  test.each([
    ["DF on read with structured replies", request(NBD_CMD_READ, 0, 512, NBD_CMD_FLAG_DF), structured, NBD_OK],
    ["DF on write, even with structured replies", request(NBD_CMD_WRITE, 0, 512, NBD_CMD_FLAG_DF), structured, NBD_EINVAL],
    ["BLOCK_STATUS without base:allocation", request(NBD_CMD_BLOCK_STATUS, 0, 512), structured, NBD_EINVAL],
    ["BLOCK_STATUS with base:allocation", request(NBD_CMD_BLOCK_STATUS, 0, 512), withBlockStatus, NBD_OK],
    ["BLOCK_STATUS with REQ_ONE and FUA", request(NBD_CMD_BLOCK_STATUS, 0, 512, NBD_CMD_FLAG_REQ_ONE | NBD_CMD_FLAG_FUA), withBlockStatus, NBD_OK],
    ["REQ_ONE on read", request(NBD_CMD_READ, 0, 512, NBD_CMD_FLAG_REQ_ONE), withBlockStatus, NBD_EINVAL],
    ["BLOCK_STATUS of the whole export (longer than 32 MiB)", request(NBD_CMD_BLOCK_STATUS, 0, size), withBlockStatus, NBD_OK],
    ["BLOCK_STATUS of length 0", request(NBD_CMD_BLOCK_STATUS, 0, 0), withBlockStatus, NBD_EINVAL],
    ["BLOCK_STATUS past the end", request(NBD_CMD_BLOCK_STATUS, size - 512, 1024), withBlockStatus, NBD_EINVAL],
  ])("%s", (_name, header, negotiated, expected) => {
    expect(checkRequest(header, size, false, negotiated)).toBe(expected);
  });

  test("SEND_DF is advertised only with structured replies", () => {
    const writable = { readOnly: false, flushSemanticsAcrossConnections: true };
    expect(transmissionFlagsOf(writable) & NBD_FLAG_SEND_DF).toBe(0);
    expect(transmissionFlagsOf(writable, true) & NBD_FLAG_SEND_DF).toBe(NBD_FLAG_SEND_DF);
  });
});

describe("extentsOfUnits", () => {
  const zero = NBD_STATE_HOLE | NBD_STATE_ZERO;
  const sum = (extents: BlockStatusExtent[]) => extents.reduce((total, e) => total + e.lengthBytes, 0);
  test("merges runs of data units and of holes, clipped to an unaligned range", () => {
    // Units of 4096: data at 2, 3, 4 and 9; the range starts inside unit 1 and ends inside unit 10.
    expect(extentsOfUnits(5000, 40000, 4096, [2, 3, 4, 9], 100)).toEqual([
      { lengthBytes: 8192 - 5000, flags: zero },
      { lengthBytes: 3 * 4096, flags: 0 },
      { lengthBytes: 4 * 4096, flags: zero },
      { lengthBytes: 4096, flags: 0 },
      { lengthBytes: 45000 - 40960, flags: zero },
    ]);
  });

  test("a range inside one data unit, a range with no data, and data covering all of it", () => {
    expect(extentsOfUnits(4097, 10, 4096, [1], 8)).toEqual([{ lengthBytes: 10, flags: 0 }]);
    expect(extentsOfUnits(0, 1 << 30, 4096, [], 8)).toEqual([{ lengthBytes: 1 << 30, flags: zero }]);
    expect(extentsOfUnits(0, 3 * 4096, 4096, [0, 1, 2], 8)).toEqual([{ lengthBytes: 3 * 4096, flags: 0 }]);
  });

  test("at most extentCountMax extents: a prefix of the range", () => {
    const everyOther = Array.from({ length: 100 }, (_, i) => 2 * i);
    const extents = extentsOfUnits(0, 200 * 4096, 4096, everyOther, 5);
    expect(extents).toEqual([
      { lengthBytes: 4096, flags: 0 }, { lengthBytes: 4096, flags: zero }, { lengthBytes: 4096, flags: 0 },
      { lengthBytes: 4096, flags: zero }, { lengthBytes: 4096, flags: 0 },
    ]);
    expect(extentsOfUnits(0, 200 * 4096, 4096, everyOther, 1)).toEqual([{ lengthBytes: 4096, flags: 0 }]);
    expect(sum(extentsOfUnits(0, 200 * 4096, 4096, everyOther, 1000))).toBe(200 * 4096);
  });
});

test("nbdErrorOf maps OvsError codes", () => {
  expect(nbdErrorOf(new OvsError("OUT_OF_RANGE", "x"))).toBe(NBD_EINVAL);
  expect(nbdErrorOf(new OvsError("INVALID_ARGUMENT", "x"))).toBe(NBD_EINVAL);
  expect(nbdErrorOf(new OvsError("NO_SPACE", "x"))).toBe(NBD_ENOSPC);
  expect(nbdErrorOf(new OvsError("CHECKSUM_MISMATCH", "x"))).toBe(NBD_EIO);
  expect(nbdErrorOf(new Error("x"))).toBe(NBD_EIO);
});

describe("HandshakeSession", () => {
  const disk = () => new MemoryExport({ name: "disk", sizeBytes: MiB, description: "the disk" });
  const goData = (name: string, infoTypes: number[] = []) => {
    const data = Buffer.alloc(measureInfoRequest({ exportName: name, infoTypes }));
    encodeInfoRequest(data, 0, { exportName: name, infoTypes });
    return data;
  };
  const replyTypes = (messages: Buffer[]) => messages.map((m) => m.readUInt32BE(12));

  test("LIST names every export, then ACK; with data it is invalid", () => {
    const session = new HandshakeSession({ provider: new StaticExportProvider([disk()]) });
    const step = session.onOption(NBD_OPT_LIST, Buffer.alloc(0));
    expect(step.kind).toBe("continue");
    expect(replyTypes(step.messages)).toEqual([NBD_REP_SERVER, NBD_REP_ACK]);
    expect(replyTypes(session.onOption(NBD_OPT_LIST, Buffer.alloc(1)).messages)).toEqual([NBD_REP_ERR_INVALID]);
  });

  test("unknown options → UNSUP, STARTTLS → POLICY, ABORT → ACK and close", () => {
    const session = new HandshakeSession({ provider: new StaticExportProvider([]) });
    expect(replyTypes(session.onOption(4242, Buffer.alloc(3)).messages)).toEqual([NBD_REP_ERR_UNSUP]);
    expect(replyTypes(session.onOption(NBD_OPT_STARTTLS, Buffer.alloc(0)).messages)).toEqual([NBD_REP_ERR_POLICY]);
    const abort = session.onOption(NBD_OPT_ABORT, Buffer.alloc(0));
    expect(abort.kind).toBe("close");
    expect(replyTypes(abort.messages)).toEqual([NBD_REP_ACK]);
  });

  test("INFO does not attach; GO attaches and enters transmission", () => {
    const exp = disk();
    const session = new HandshakeSession({ provider: new StaticExportProvider([exp]) });
    const info = session.onOption(NBD_OPT_INFO, goData("disk", [1, 2, 3]));
    expect(info.kind).toBe("continue");
    expect(replyTypes(info.messages)).toEqual([NBD_REP_INFO, NBD_REP_INFO, NBD_REP_INFO, NBD_REP_INFO, NBD_REP_ACK]);
    expect(exp.attachedCount).toBe(0);
    const go = session.onOption(NBD_OPT_GO, goData("disk"));
    expect(go.kind).toBe("transmission");
    expect(exp.attachedCount).toBe(1);
  });

  test("GO on an unknown export → ERR_UNKNOWN; malformed → ERR_INVALID; refused attach → ERR_POLICY", () => {
    const exp = disk();
    exp.attach = () => { throw new OvsError("IN_USE", "volume is attached elsewhere"); };
    const session = new HandshakeSession({ provider: new StaticExportProvider([exp]) });
    expect(replyTypes(session.onOption(NBD_OPT_GO, goData("nope")).messages)).toEqual([NBD_REP_ERR_UNKNOWN]);
    expect(replyTypes(session.onOption(NBD_OPT_GO, Buffer.from([0, 0, 0, 9, 1])).messages)).toEqual([NBD_REP_ERR_INVALID]);
    const refused = session.onOption(NBD_OPT_GO, goData("disk"));
    expect(refused.kind).toBe("continue");
    expect(replyTypes(refused.messages)).toEqual([NBD_REP_ERR_POLICY]);
  });

  test("EXPORT_NAME of an unknown export closes; the empty name picks the default export", () => {
    const exp = disk();
    const session = new HandshakeSession({ provider: new StaticExportProvider([exp]), defaultExportName: "disk" });
    expect(session.onOption(NBD_OPT_EXPORT_NAME, Buffer.from("nope")).kind).toBe("close");
    const step = session.onOption(NBD_OPT_EXPORT_NAME, Buffer.alloc(0));
    expect(step.kind).toBe("transmission");
    expect(step.messages[0]!.length).toBe(134); // no NO_ZEROES from this client: 124 zeroes follow
  });

  test("STRUCTURED_REPLY → ACK (with data: INVALID); GO then enters transmission with structured replies and SEND_DF", () => {
    const session = new HandshakeSession({ provider: new StaticExportProvider([disk()]) });
    expect(replyTypes(session.onOption(NBD_OPT_STRUCTURED_REPLY, Buffer.alloc(1)).messages)).toEqual([NBD_REP_ERR_INVALID]);
    const plain = session.onOption(NBD_OPT_INFO, goData("disk"));
    expect(plain.messages[0]!.readUInt16BE(20 + 10) & NBD_FLAG_SEND_DF).toBe(0); // NBD_INFO_EXPORT flags
    expect(replyTypes(session.onOption(NBD_OPT_STRUCTURED_REPLY, Buffer.alloc(0)).messages)).toEqual([NBD_REP_ACK]);
    const go = session.onOption(NBD_OPT_GO, goData("disk"));
    expect(go.kind).toBe("transmission");
    if (go.kind !== "transmission") return;
    expect(go.structuredReplies).toBe(true);
    expect(go.blockStatusContextId).toBeUndefined();
    expect(go.transmissionFlags & NBD_FLAG_SEND_DF).toBe(NBD_FLAG_SEND_DF);
    expect(go.messages[0]!.readUInt16BE(20 + 10) & NBD_FLAG_SEND_DF).toBe(NBD_FLAG_SEND_DF);
  });

  describe("metadata contexts", () => {
    const query = (exportName: string, queries: string[]) => encodeMetaContextRequest({ exportName, queries });
    const contextOf = (message: Buffer) => ({ id: message.readUInt32BE(20), name: message.subarray(24).toString("utf8") });
    const session = () => new HandshakeSession({ provider: new StaticExportProvider([disk(), new MemoryExport({ name: "other", sizeBytes: MiB })]) });

    test("need structured replies first", () => {
      const s = session();
      expect(replyTypes(s.onOption(NBD_OPT_SET_META_CONTEXT, query("disk", [BASE_ALLOCATION])).messages)).toEqual([NBD_REP_ERR_INVALID]);
      expect(replyTypes(s.onOption(NBD_OPT_LIST_META_CONTEXT, query("disk", [])).messages)).toEqual([NBD_REP_ERR_INVALID]);
    });

    test("LIST offers base:allocation (id 0) for no query, base: and the full name; nothing for other queries", () => {
      const s = session();
      s.onOption(NBD_OPT_STRUCTURED_REPLY, Buffer.alloc(0));
      for (const queries of [[], ["base:"], [BASE_ALLOCATION], ["x-other:thing", BASE_ALLOCATION]]) {
        const step = s.onOption(NBD_OPT_LIST_META_CONTEXT, query("disk", queries));
        expect(replyTypes(step.messages), JSON.stringify(queries)).toEqual([NBD_REP_META_CONTEXT, NBD_REP_ACK]);
        expect(contextOf(step.messages[0]!)).toEqual({ id: 0, name: BASE_ALLOCATION });
      }
      expect(replyTypes(s.onOption(NBD_OPT_LIST_META_CONTEXT, query("disk", ["qemu:dirty-bitmap:x"])).messages)).toEqual([NBD_REP_ACK]);
    });

    test("SET selects base:allocation for its export; GO of that export carries its id, GO of another does not", () => {
      const s = session();
      s.onOption(NBD_OPT_STRUCTURED_REPLY, Buffer.alloc(0));
      const set = s.onOption(NBD_OPT_SET_META_CONTEXT, query("disk", ["nbd-server:none", BASE_ALLOCATION]));
      expect(replyTypes(set.messages)).toEqual([NBD_REP_META_CONTEXT, NBD_REP_ACK]);
      expect(contextOf(set.messages[0]!)).toEqual({ id: BASE_ALLOCATION_CONTEXT_ID, name: BASE_ALLOCATION });
      const otherGo = s.onOption(NBD_OPT_GO, goData("other"));
      expect(otherGo.kind === "transmission" && otherGo.blockStatusContextId).toBeUndefined();
      const again = session();
      again.onOption(NBD_OPT_STRUCTURED_REPLY, Buffer.alloc(0));
      again.onOption(NBD_OPT_SET_META_CONTEXT, query("disk", [BASE_ALLOCATION]));
      const go = again.onOption(NBD_OPT_GO, goData("disk"));
      expect(go.kind === "transmission" && go.blockStatusContextId).toBe(BASE_ALLOCATION_CONTEXT_ID);
    });

    test("a SET that fails (malformed, unknown export, too big) clears the earlier selection too", () => {
      for (const failing of [
        (s: HandshakeSession) => s.onOption(NBD_OPT_SET_META_CONTEXT, Buffer.from([0, 0, 0, 9])),
        (s: HandshakeSession) => s.onOption(NBD_OPT_SET_META_CONTEXT, query("nope", [BASE_ALLOCATION])),
        (s: HandshakeSession) => s.onOversizedOption(NBD_OPT_SET_META_CONTEXT),
      ]) {
        const s = session();
        s.onOption(NBD_OPT_STRUCTURED_REPLY, Buffer.alloc(0));
        s.onOption(NBD_OPT_SET_META_CONTEXT, query("disk", [BASE_ALLOCATION]));
        expect(replyTypes(failing(s).messages)[0]! >= 0x80000000).toBe(true);
        const go = s.onOption(NBD_OPT_GO, goData("disk"));
        expect(go.kind === "transmission" && go.blockStatusContextId).toBeUndefined();
      }
    });

    test("a later SET replaces the selection; SET without queries selects nothing", () => {
      const s = session();
      s.onOption(NBD_OPT_STRUCTURED_REPLY, Buffer.alloc(0));
      s.onOption(NBD_OPT_SET_META_CONTEXT, query("disk", [BASE_ALLOCATION]));
      expect(replyTypes(s.onOption(NBD_OPT_SET_META_CONTEXT, query("disk", [])).messages)).toEqual([NBD_REP_ACK]);
      const go = s.onOption(NBD_OPT_GO, goData("disk"));
      expect(go.kind === "transmission" && go.blockStatusContextId).toBeUndefined();
    });

    test("unknown export → ERR_UNKNOWN; malformed data → ERR_INVALID; an export without blockStatus offers nothing", () => {
      const plainExport = new MemoryExport({ name: "plain", sizeBytes: MiB });
      Object.defineProperty(plainExport, "blockStatus", { value: undefined });
      const s = new HandshakeSession({ provider: new StaticExportProvider([plainExport]) });
      s.onOption(NBD_OPT_STRUCTURED_REPLY, Buffer.alloc(0));
      expect(replyTypes(s.onOption(NBD_OPT_SET_META_CONTEXT, query("nope", [BASE_ALLOCATION])).messages)).toEqual([NBD_REP_ERR_UNKNOWN]);
      const bad = query("plain", [BASE_ALLOCATION]);
      for (const data of [bad.subarray(0, bad.length - 1), Buffer.concat([bad, Buffer.alloc(1)]), Buffer.from([0, 0, 0, 5, 1]), Buffer.from([0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff])]) {
        expect(replyTypes(s.onOption(NBD_OPT_SET_META_CONTEXT, data).messages), data.toString("hex")).toEqual([NBD_REP_ERR_INVALID]);
      }
      expect(replyTypes(s.onOption(NBD_OPT_SET_META_CONTEXT, bad).messages)).toEqual([NBD_REP_ACK]);
      expect(replyTypes(s.onOption(NBD_OPT_LIST_META_CONTEXT, query("plain", [])).messages)).toEqual([NBD_REP_ACK]);
    });

    test("the request codec round-trips", () => {
      const decoded = decodeMetaContextRequest(query("disk", [BASE_ALLOCATION, "base:"]));
      expect(decoded).toEqual({ ok: true, value: { exportName: "disk", queries: [BASE_ALLOCATION, "base:"] } });
    });
  });

  test("shutdown → ERR_SHUTDOWN; oversized option → ERR_TOO_BIG; too many options → close", () => {
    const session = new HandshakeSession({ provider: new StaticExportProvider([]) });
    expect(replyTypes(session.onOversizedOption(NBD_OPT_GO).messages)).toEqual([NBD_REP_ERR_TOO_BIG]);
    let step = session.onOption(4242, Buffer.alloc(0));
    for (let i = 0; i < nbdLimits.optionCountMax && step.kind === "continue"; i++) step = session.onOption(4242, Buffer.alloc(0));
    expect(step.kind).toBe("close");
    const closing = new HandshakeSession({ provider: new StaticExportProvider([]) });
    closing.shuttingDown = true;
    expect(replyTypes(closing.onOption(NBD_OPT_LIST, Buffer.alloc(0)).messages)).toEqual([NBD_REP_ERR_SHUTDOWN]);
  });
});

describe("ChunkQueue", () => {
  test("a range within one chunk is a view; a range across chunks is a copy", () => {
    const queue = new ChunkQueue();
    const a = Buffer.from([1, 2, 3, 4]);
    const b = Buffer.from([5, 6, 7, 8]);
    queue.push(a);
    queue.push(b);
    expect(queue.contiguous(4)).toBe(a);
    expect(queue.contiguous(5)).toBeUndefined();
    const view = queue.take(2);
    expect([...view]).toEqual([1, 2]);
    a[0] = 9; // a view shares memory with the chunk
    expect(view[0]).toBe(9);
    const spanning = queue.take(4);
    expect([...spanning]).toEqual([3, 4, 5, 6]);
    a[2] = 9; // a copy does not
    expect(spanning[0]).toBe(3);
    expect(queue.byteCount).toBe(2);
    queue.skip(2);
    expect(queue.byteCount).toBe(0);
    expect(queue.contiguous(1)).toBeUndefined();
  });

  test("takeViews hands out views of the chunks a range spans, in order, and consumes them", () => {
    const queue = new ChunkQueue();
    const a = Buffer.from([1, 2, 3, 4]);
    const b = Buffer.from([5, 6]);
    const c = Buffer.from([7, 8, 9]);
    for (const chunk of [a, b, c]) queue.push(chunk);
    queue.skip(1);
    const views = queue.takeViews(6);
    expect(views.map((view) => [...view])).toEqual([[2, 3, 4], [5, 6], [7]]);
    b[0] = 50; // views share memory with the chunks
    expect(views[1]![0]).toBe(50);
    expect(queue.byteCount).toBe(2);
    expect([...queue.take(2)]).toEqual([8, 9]);
    expect(() => queue.takeViews(1)).toThrow();
  });

  test("many small chunks, skipped and copied in odd sizes, come out in order", () => {
    const queue = new ChunkQueue();
    const all = Buffer.alloc(10_000);
    for (let i = 0; i < all.length; i++) all[i] = (i * 7) & 0xff;
    for (let at = 0; at < all.length; at += 37) queue.push(all.subarray(at, Math.min(at + 37, all.length)));
    const out: number[] = [];
    let at = 0;
    while (queue.byteCount > 0) {
      const n = Math.min(1 + (at % 101), queue.byteCount);
      if (at % 3 === 0) out.push(...queue.take(n));
      else { queue.skip(n); out.push(...all.subarray(at, at + n)); }
      at += n;
    }
    expect(Buffer.from(out)).toEqual(all);
  });
});
