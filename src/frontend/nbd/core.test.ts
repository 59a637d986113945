// The pure parts of the NBD server: request validation, the handshake core, the chunk queue.
import { describe, expect, test } from "vitest";
import { OvsError } from "../../base/index.js";
import { ChunkQueue } from "../../base/index.js";
import { HandshakeSession } from "./handshake.js";
import { nbdLimits } from "./limits.js";
import { MemoryExport, StaticExportProvider } from "./memory-export.js";
import { nbdErrorOf } from "./nbd-export.js";
import {
  encodeInfoRequest, measureInfoRequest, NBD_CMD_BLOCK_STATUS, NBD_CMD_CACHE, NBD_CMD_DISC, NBD_CMD_FLAG_DF, NBD_CMD_FLAG_FAST_ZERO,
  NBD_CMD_FLAG_FUA, NBD_CMD_FLAG_NO_HOLE, NBD_CMD_FLUSH, NBD_CMD_READ, NBD_CMD_TRIM, NBD_CMD_WRITE, NBD_CMD_WRITE_ZEROES, NBD_EINVAL,
  NBD_EIO, NBD_ENOSPC, NBD_EPERM, NBD_OK, NBD_OPT_ABORT, NBD_OPT_EXPORT_NAME, NBD_OPT_GO, NBD_OPT_INFO, NBD_OPT_LIST, NBD_OPT_STARTTLS,
  NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK, NBD_REP_ERR_INVALID, NBD_REP_ERR_POLICY, NBD_REP_ERR_SHUTDOWN, NBD_REP_ERR_TOO_BIG,
  NBD_REP_ERR_UNKNOWN, NBD_REP_ERR_UNSUP, NBD_REP_INFO, NBD_REP_SERVER, type RequestHeader,
} from "./protocol.js";
import { checkRequest } from "./transmission.js";

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

  test("unknown options and STRUCTURED_REPLY → UNSUP, STARTTLS → POLICY, ABORT → ACK and close", () => {
    const session = new HandshakeSession({ provider: new StaticExportProvider([]) });
    expect(replyTypes(session.onOption(4242, Buffer.alloc(3)).messages)).toEqual([NBD_REP_ERR_UNSUP]);
    expect(replyTypes(session.onOption(NBD_OPT_STRUCTURED_REPLY, Buffer.alloc(0)).messages)).toEqual([NBD_REP_ERR_UNSUP]);
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
