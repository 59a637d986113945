// Structured replies and base:allocation over a real socket, byte by byte (RawClient): what a READ, a
// zero-length READ, a failed READ and BLOCK_STATUS (with and without REQ_ONE) look like on the wire,
// and that a client that negotiated nothing still gets simple replies. The foreign clients (nbdinfo
// --map, qemu-img map, nbdcopy) are in clients.test.ts.
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { OvsError } from "../../base/index.js";
import {
  BASE_ALLOCATION, encodeInfoRequest, encodeMetaContextRequest, measureInfoRequest, NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_DF,
  NBD_CMD_FLAG_REQ_ONE, NBD_CMD_READ, NBD_CMD_WRITE, NBD_EINVAL, NBD_EIO, NBD_FLAG_SEND_DF, NBD_INFO_BLOCK_SIZE, NBD_OPT_GO,
  NBD_OPT_SET_META_CONTEXT, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK, NBD_REP_META_CONTEXT, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS,
  NBD_REPLY_TYPE_ERROR, NBD_REPLY_TYPE_NONE, NBD_REPLY_TYPE_OFFSET_DATA,
} from "./protocol.js";
import { RawClient, startTestServer, type TestServer } from "./test-support.js";

const MiB = 1 << 20;
let t: TestServer;
let client: RawClient | undefined;

beforeEach(async () => {
  t = await startTestServer([{ name: "disk", sizeBytes: 64 * MiB }, { name: "other", sizeBytes: MiB }]);
  await t.exports[0]!.write(MiB, Buffer.alloc(65536, 0x5a), false);
});
afterEach(async () => {
  client?.close();
  client = undefined;
  await t.server.close();
  expect(t.server.connectionCount).toBe(0);
});

/** Greets, negotiates structured replies (and base:allocation for `metaExport`), then GO on `name`. */
async function connect(name: string, options: { structured: boolean; metaExport?: string }): Promise<{ transmissionFlags: number; contextId: number | undefined }> {
  client = await RawClient.connect(t.port);
  await client.greet();
  let contextId: number | undefined;
  if (options.structured) {
    client.sendOption(NBD_OPT_STRUCTURED_REPLY, Buffer.alloc(0));
    expect((await client.readOptionReply()).replyType).toBe(NBD_REP_ACK);
  }
  if (options.metaExport !== undefined) {
    client.sendOption(NBD_OPT_SET_META_CONTEXT, encodeMetaContextRequest({ exportName: options.metaExport, queries: [BASE_ALLOCATION] }));
    const context = await client.readOptionReply();
    expect(context.replyType).toBe(NBD_REP_META_CONTEXT);
    expect(context.data.subarray(4).toString()).toBe(BASE_ALLOCATION);
    contextId = context.data.readUInt32BE(0);
    expect((await client.readOptionReply()).replyType).toBe(NBD_REP_ACK);
  }
  const request = { exportName: name, infoTypes: [NBD_INFO_BLOCK_SIZE] };
  const data = Buffer.alloc(measureInfoRequest(request));
  encodeInfoRequest(data, 0, request);
  client.sendOption(NBD_OPT_GO, data);
  let transmissionFlags = -1;
  for (;;) {
    const reply = await client.readOptionReply();
    if (reply.replyType === NBD_REP_ACK) break;
    if (reply.data.readUInt16BE(0) === 0) transmissionFlags = reply.data.readUInt16BE(10);
  }
  return { transmissionFlags, contextId };
}

describe("READ with structured replies", () => {
  test("one OFFSET_DATA chunk flagged DONE carries the offset and the bytes; DF is accepted", async () => {
    const { transmissionFlags } = await connect("disk", { structured: true });
    expect(transmissionFlags & NBD_FLAG_SEND_DF).toBe(NBD_FLAG_SEND_DF);
    client!.sendRequest({ type: NBD_CMD_READ, handleLo: 11, offsetBytes: MiB - 512, lengthBytes: 4096, commandFlags: NBD_CMD_FLAG_DF });
    const chunk = await client!.readChunk();
    expect(chunk).toMatchObject({ flags: NBD_REPLY_FLAG_DONE, type: NBD_REPLY_TYPE_OFFSET_DATA, handleLo: 11 });
    expect(chunk.payload.length).toBe(8 + 4096);
    expect(Number(chunk.payload.readBigUInt64BE(0))).toBe(MiB - 512);
    const data = chunk.payload.subarray(8);
    expect(data.subarray(0, 512).every((b) => b === 0)).toBe(true);
    expect(data.subarray(512).every((b) => b === 0x5a)).toBe(true);
  });

  test("a zero-length READ gets NONE; out of range, bad flags and an export failure get one ERROR chunk; the connection goes on", async () => {
    await connect("disk", { structured: true });
    client!.sendRequest({ type: NBD_CMD_READ, handleLo: 1, offsetBytes: 4096, lengthBytes: 0 });
    expect(await client!.readChunk()).toMatchObject({ flags: NBD_REPLY_FLAG_DONE, type: NBD_REPLY_TYPE_NONE, handleLo: 1, payload: Buffer.alloc(0) });
    client!.sendRequest({ type: NBD_CMD_READ, handleLo: 2, offsetBytes: 64 * MiB, lengthBytes: 512 });
    const outOfRange = await client!.readChunk();
    expect(outOfRange).toMatchObject({ flags: NBD_REPLY_FLAG_DONE, type: NBD_REPLY_TYPE_ERROR, handleLo: 2 });
    expect(outOfRange.payload.readUInt32BE(0)).toBe(NBD_EINVAL);
    expect(outOfRange.payload.readUInt16BE(4)).toBe(outOfRange.payload.length - 6);
    client!.sendRequest({ type: NBD_CMD_READ, handleLo: 3, offsetBytes: 0, lengthBytes: 512, commandFlags: NBD_CMD_FLAG_REQ_ONE });
    expect((await client!.readChunk()).payload.readUInt32BE(0)).toBe(NBD_EINVAL);
    t.exports[0]!.failNext("read", new OvsError("CHECKSUM_MISMATCH", "bad cluster"));
    client!.sendRequest({ type: NBD_CMD_READ, handleLo: 4, offsetBytes: 0, lengthBytes: 512 });
    const failed = await client!.readChunk();
    expect(failed).toMatchObject({ type: NBD_REPLY_TYPE_ERROR, handleLo: 4 });
    expect(failed.payload.readUInt32BE(0)).toBe(NBD_EIO);
    // Other commands keep simple replies.
    client!.sendRequest({ type: NBD_CMD_WRITE, handleLo: 5, offsetBytes: 0 }, Buffer.alloc(512, 1));
    expect(await client!.readReply()).toMatchObject({ error: 0, handleLo: 5 });
    client!.sendRequest({ type: NBD_CMD_READ, handleLo: 6, offsetBytes: 0, lengthBytes: 512 });
    expect((await client!.readChunk()).payload.subarray(8)).toEqual(Buffer.alloc(512, 1));
  });

  test("without STRUCTURED_REPLY a READ gets a simple reply and DF is refused", async () => {
    const { transmissionFlags } = await connect("disk", { structured: false });
    expect(transmissionFlags & NBD_FLAG_SEND_DF).toBe(0);
    client!.sendRequest({ type: NBD_CMD_READ, handleLo: 1, offsetBytes: MiB, lengthBytes: 512 });
    expect(await client!.readReply(512)).toMatchObject({ error: 0, handleLo: 1, data: Buffer.alloc(512, 0x5a) });
    client!.sendRequest({ type: NBD_CMD_READ, handleLo: 2, offsetBytes: 0, lengthBytes: 512, commandFlags: NBD_CMD_FLAG_DF });
    expect(await client!.readReply()).toMatchObject({ error: NBD_EINVAL, handleLo: 2 });
  });
});

describe("BLOCK_STATUS", () => {
  const descriptors = (payload: Buffer) => {
    const out: Array<[number, number]> = [];
    for (let at = 4; at < payload.length; at += 8) out.push([payload.readUInt32BE(at), payload.readUInt32BE(at + 4)]);
    return out;
  };

  test("answers with the selected context id and the extents; REQ_ONE gets one extent", async () => {
    const { contextId } = await connect("disk", { structured: true, metaExport: "disk" });
    client!.sendRequest({ type: NBD_CMD_BLOCK_STATUS, handleLo: 1, offsetBytes: 0, lengthBytes: 64 * MiB });
    const chunk = await client!.readChunk();
    expect(chunk).toMatchObject({ flags: NBD_REPLY_FLAG_DONE, type: NBD_REPLY_TYPE_BLOCK_STATUS, handleLo: 1 });
    expect(chunk.payload.readUInt32BE(0)).toBe(contextId);
    expect(descriptors(chunk.payload)).toEqual([[MiB, 3], [65536, 0], [63 * MiB - 65536, 3]]);
    client!.sendRequest({ type: NBD_CMD_BLOCK_STATUS, handleLo: 2, offsetBytes: MiB + 4096, lengthBytes: 2 * MiB, commandFlags: NBD_CMD_FLAG_REQ_ONE });
    expect(descriptors((await client!.readChunk()).payload)).toEqual([[65536 - 4096, 0]]);
  });

  test("past the end or of length 0 → EINVAL error chunk; without a selected context → EINVAL", async () => {
    await connect("disk", { structured: true, metaExport: "disk" });
    for (const [offsetBytes, lengthBytes] of [[64 * MiB - 512, 1024], [0, 0]] as const) {
      client!.sendRequest({ type: NBD_CMD_BLOCK_STATUS, handleLo: 7, offsetBytes, lengthBytes });
      const chunk = await client!.readChunk();
      expect(chunk).toMatchObject({ type: NBD_REPLY_TYPE_ERROR, handleLo: 7 });
      expect(chunk.payload.readUInt32BE(0)).toBe(NBD_EINVAL);
    }
    client!.close();
    // The context was selected for "other": GO on "disk" enters transmission without it.
    await connect("disk", { structured: true, metaExport: "other" });
    client!.sendRequest({ type: NBD_CMD_BLOCK_STATUS, handleLo: 8, offsetBytes: 0, lengthBytes: 4096 });
    const chunk = await client!.readChunk();
    expect(chunk).toMatchObject({ type: NBD_REPLY_TYPE_ERROR, handleLo: 8 });
    expect(chunk.payload.readUInt32BE(0)).toBe(NBD_EINVAL);
  });
});
