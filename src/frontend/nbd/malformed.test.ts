// Bad input through raw sockets: each malformed message gets an NBD error reply or a closed
// connection, never a crash, and another client served meanwhile keeps working (DESIGN.md §4.7).
// Also: pipelining, backpressure, zero-length requests, export errors, shutdown.
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { OvsError } from "../../base/index.js";
import {
  NBD_CMD_DISC, NBD_CMD_FLAG_FUA, NBD_CMD_FLUSH, NBD_CMD_READ, NBD_CMD_TRIM, NBD_CMD_WRITE, NBD_CMD_WRITE_ZEROES, NBD_EINVAL, NBD_EIO,
  NBD_ENOSPC, NBD_EPERM, NBD_OK, NBD_OPT_ABORT, NBD_OPT_LIST, NBD_REP_ACK, NBD_REP_ERR_TOO_BIG, NBD_REP_ERR_UNSUP,
} from "./protocol.js";
import { nbdLimits } from "./limits.js";
import { RawClient, startTestServer, type TestServer } from "./test-support.js";

const MiB = 1 << 20;
const SIZE = 64 * MiB;

let t: TestServer;
let witness: RawClient;
beforeEach(async () => {
  t = await startTestServer([{ name: "disk", sizeBytes: SIZE }, { name: "ro", sizeBytes: MiB, readOnly: true }], "disk");
  // A well-behaved client connected throughout each test.
  witness = await RawClient.connect(t.port);
  await witness.go("disk");
});
afterEach(async () => {
  // The witness still gets correct service after whatever the test did.
  const pattern = Buffer.alloc(4096, 0x5a);
  witness.sendRequest({ type: NBD_CMD_WRITE, handleLo: 1, offsetBytes: 8192 }, pattern);
  expect((await witness.readReply()).error).toBe(NBD_OK);
  witness.sendRequest({ type: NBD_CMD_READ, handleLo: 2, offsetBytes: 8192, lengthBytes: 4096 });
  const reply = await witness.readReply(4096);
  expect(reply.error).toBe(NBD_OK);
  expect(reply.data.equals(pattern)).toBe(true);
  witness.close();
  await t.server.close();
  expect(t.server.connectionCount).toBe(0);
  for (const e of t.exports) expect(e.attachedCount).toBe(0);
});

describe("handshake", () => {
  test("bad option magic closes the connection", async () => {
    const client = await RawClient.connect(t.port);
    await client.greet();
    client.send(Buffer.from("IHAVEOPX" + "\0\0\0\x03\0\0\0\0", "latin1"));
    expect(await client.waitClosed()).toBe(true);
  });

  test("unknown client flags close the connection", async () => {
    const client = await RawClient.connect(t.port);
    await client.read(18);
    client.send(Buffer.from([0, 0, 0, 0x80]));
    expect(await client.waitClosed()).toBe(true);
  });

  test("garbage instead of a handshake closes the connection", async () => {
    const client = await RawClient.connect(t.port);
    await client.read(18);
    client.send(Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    expect(await client.waitClosed()).toBe(true);
  });

  test("unknown and oversized options get errors and haggling goes on; ABORT is acknowledged", async () => {
    const client = await RawClient.connect(t.port);
    await client.greet();
    client.sendOption(4242, Buffer.alloc(10));
    expect((await client.readOptionReply()).replyType).toBe(NBD_REP_ERR_UNSUP);
    client.sendOption(4243, Buffer.alloc(100_000));
    expect((await client.readOptionReply()).replyType).toBe(NBD_REP_ERR_TOO_BIG);
    client.sendOption(NBD_OPT_LIST, Buffer.alloc(0));
    const names: string[] = [];
    for (;;) {
      const reply = await client.readOptionReply();
      if (reply.replyType === NBD_REP_ACK) break;
      names.push(reply.data.subarray(4, 4 + reply.data.readUInt32BE(0)).toString());
    }
    expect(names.sort()).toEqual(["disk", "ro"]);
    client.sendOption(NBD_OPT_ABORT, Buffer.alloc(0));
    expect((await client.readOptionReply()).replyType).toBe(NBD_REP_ACK);
    expect(await client.waitClosed()).toBe(true);
  });

  test("a client that leaves mid-handshake is cleaned up", async () => {
    const client = await RawClient.connect(t.port);
    await client.greet();
    client.send(Buffer.from("IHAVEOPT\0\0\0\x07\0\0\0\x40"));
    client.close();
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(t.server.connectionCount).toBe(1); // the witness
  });
});

describe("transmission", () => {
  let client: RawClient;
  beforeEach(async () => {
    client = await RawClient.connect(t.port);
    const info = await client.go("disk");
    expect(info.sizeBytes).toBe(SIZE);
  });
  afterEach(() => client.close());

  test("bad request magic closes the connection", async () => {
    const bytes = Buffer.alloc(28);
    bytes.writeUInt32BE(0x25609514, 0);
    client.send(bytes);
    expect(await client.waitClosed()).toBe(true);
  });

  test("out-of-range read → EINVAL, write → ENOSPC (payload skipped), and the connection goes on", async () => {
    client.sendRequest({ type: NBD_CMD_READ, handleLo: 1, offsetBytes: SIZE - 512, lengthBytes: 1024 });
    expect(await client.readReply()).toMatchObject({ error: NBD_EINVAL, handleLo: 1 });
    client.sendRequest({ type: NBD_CMD_READ, handleLo: 2, handleHi: 0xffffffff, offsetBytes: 2 ** 52, lengthBytes: 512 });
    expect(await client.readReply()).toMatchObject({ error: NBD_EINVAL, handleLo: 2, handleHi: 0xffffffff });
    client.sendRequest({ type: NBD_CMD_WRITE, handleLo: 3, offsetBytes: SIZE }, Buffer.alloc(4096, 1));
    expect(await client.readReply()).toMatchObject({ error: NBD_ENOSPC, handleLo: 3 });
    client.sendRequest({ type: NBD_CMD_WRITE_ZEROES, handleLo: 4, offsetBytes: SIZE - 1, lengthBytes: 2 });
    expect(await client.readReply()).toMatchObject({ error: NBD_ENOSPC, handleLo: 4 });
    client.sendRequest({ type: NBD_CMD_TRIM, handleLo: 5, offsetBytes: SIZE + 4096, lengthBytes: 1 });
    expect(await client.readReply()).toMatchObject({ error: NBD_EINVAL, handleLo: 5 });
    client.sendRequest({ type: NBD_CMD_READ, handleLo: 6, offsetBytes: 0, lengthBytes: 512 });
    expect(await client.readReply(512)).toMatchObject({ error: NBD_OK, handleLo: 6 });
    expect(t.exports[0]!.allocatedBlockCount).toBe(0);
  });

  test("unknown command and unknown flags → EINVAL", async () => {
    client.sendRequest({ type: 42, handleLo: 1, lengthBytes: 512 });
    expect(await client.readReply()).toMatchObject({ error: NBD_EINVAL, handleLo: 1 });
    client.sendRequest({ type: NBD_CMD_READ, handleLo: 2, commandFlags: 0x100, lengthBytes: 512 });
    expect(await client.readReply()).toMatchObject({ error: NBD_EINVAL, handleLo: 2 });
  });

  test("oversized read → EINVAL and the connection goes on", async () => {
    client.sendRequest({ type: NBD_CMD_READ, handleLo: 1, lengthBytes: 32 * MiB + 512 });
    expect(await client.readReply()).toMatchObject({ error: NBD_EINVAL, handleLo: 1 });
    client.sendRequest({ type: NBD_CMD_READ, handleLo: 2, lengthBytes: 4096 });
    expect(await client.readReply(4096)).toMatchObject({ error: NBD_OK, handleLo: 2 });
  });

  test("oversized write → EINVAL and the connection is closed (its payload cannot be skipped)", async () => {
    const header = Buffer.alloc(28);
    header.writeUInt32BE(0x25609513, 0);
    header.writeUInt16BE(NBD_CMD_WRITE, 6);
    header.writeUInt32BE(7, 12);
    header.writeUInt32BE(0xfffffff0, 24);
    client.send(Buffer.concat([header, Buffer.alloc(65536)]));
    expect(await client.readReply()).toMatchObject({ error: NBD_EINVAL, handleLo: 7 });
    expect(await client.waitClosed()).toBe(true);
  });

  test("a truncated request ends the connection cleanly", async () => {
    client.sendRequest({ type: NBD_CMD_WRITE, handleLo: 1, offsetBytes: 0 }, Buffer.alloc(4096, 7));
    expect((await client.readReply()).error).toBe(NBD_OK);
    client.send(Buffer.from([0x25, 0x60, 0x95, 0x13, 0, 0, 0, 1, 0, 0]));
    client.socket.end();
    expect(await client.waitClosed()).toBe(true);
    // A write header whose payload never comes.
    const other = await RawClient.connect(t.port);
    await other.go("disk");
    const header = Buffer.alloc(28);
    header.writeUInt32BE(0x25609513, 0);
    header.writeUInt16BE(NBD_CMD_WRITE, 6);
    header.writeUInt32BE(4096, 24);
    other.send(Buffer.concat([header, Buffer.alloc(1000)]));
    other.socket.end();
    expect(await other.waitClosed()).toBe(true);
    expect((await t.exports[0]!.read(0, 4096)).every((b) => b === 7)).toBe(true);
  });

  test("zero-length requests succeed without reaching the export", async () => {
    client.sendRequest({ type: NBD_CMD_READ, handleLo: 1, offsetBytes: 4096, lengthBytes: 0 });
    client.sendRequest({ type: NBD_CMD_WRITE, handleLo: 2, offsetBytes: SIZE, lengthBytes: 0 });
    client.sendRequest({ type: NBD_CMD_TRIM, handleLo: 3, offsetBytes: 0, lengthBytes: 0 });
    const errors = [await client.readReply(), await client.readReply(), await client.readReply()].map((r) => r.error);
    expect(errors).toEqual([NBD_OK, NBD_OK, NBD_OK]);
    expect(t.exports[0]!.trimCount).toBe(0);
  });

  test("trim, write zeroes, flush and FUA", async () => {
    const disk = t.exports[0]!;
    client.sendRequest({ type: NBD_CMD_WRITE, handleLo: 1, offsetBytes: 0, commandFlags: NBD_CMD_FLAG_FUA }, Buffer.alloc(16384, 0xee));
    expect((await client.readReply()).error).toBe(NBD_OK);
    expect(disk.fuaCount).toBe(1);
    client.sendRequest({ type: NBD_CMD_TRIM, handleLo: 2, offsetBytes: 0, lengthBytes: 4096, commandFlags: NBD_CMD_FLAG_FUA });
    expect((await client.readReply()).error).toBe(NBD_OK);
    expect(disk.trimCount).toBe(1);
    expect(disk.flushCount).toBe(1); // FUA on trim is a trim then a flush
    client.sendRequest({ type: NBD_CMD_WRITE_ZEROES, handleLo: 3, offsetBytes: 5000, lengthBytes: 1000, commandFlags: 2 });
    expect((await client.readReply()).error).toBe(NBD_OK);
    client.sendRequest({ type: NBD_CMD_FLUSH, handleLo: 4 });
    expect((await client.readReply()).error).toBe(NBD_OK);
    expect(disk.flushCount).toBe(2);
    const data = await disk.read(0, 16384);
    expect(data.subarray(0, 4096).every((b) => b === 0)).toBe(true);
    expect(data.subarray(4096, 5000).every((b) => b === 0xee)).toBe(true);
    expect(data.subarray(5000, 6000).every((b) => b === 0)).toBe(true);
    expect(data.subarray(6000).every((b) => b === 0xee)).toBe(true);
  });

  test("export errors map to NBD errors and the connection goes on", async () => {
    const disk = t.exports[0]!;
    const cases: Array<[Error, number]> = [
      [new OvsError("NO_SPACE", "backend full"), NBD_ENOSPC],
      [new OvsError("OUT_OF_RANGE", "x"), NBD_EINVAL],
      [new OvsError("CHECKSUM_MISMATCH", "x"), NBD_EIO],
      [new Error("not an OvsError"), NBD_EIO],
    ];
    let handle = 1;
    for (const [error, expected] of cases) {
      disk.failNext("write", error);
      client.sendRequest({ type: NBD_CMD_WRITE, handleLo: handle }, Buffer.alloc(512));
      expect(await client.readReply()).toMatchObject({ error: expected, handleLo: handle++ });
      disk.failNext("read", error);
      client.sendRequest({ type: NBD_CMD_READ, handleLo: handle, lengthBytes: 512 });
      expect(await client.readReply()).toMatchObject({ error: expected, handleLo: handle++ });
    }
    disk.failNext("flush", new OvsError("UNAVAILABLE", "x"));
    client.sendRequest({ type: NBD_CMD_FLUSH, handleLo: handle });
    expect(await client.readReply()).toMatchObject({ error: NBD_EIO });
  });

  test("many pipelined requests (past the in-flight limit) all get their replies", async () => {
    const requestCount = 1000;
    const parts: Buffer[] = [];
    for (let i = 0; i < requestCount; i++) {
      const header = Buffer.alloc(28);
      header.writeUInt32BE(0x25609513, 0);
      header.writeUInt16BE(i % 2 === 0 ? NBD_CMD_WRITE : NBD_CMD_READ, 6);
      header.writeUInt32BE(i, 12);
      header.writeUInt32BE((i >> 1) * 4096, 20);
      header.writeUInt32BE(4096, 24);
      parts.push(header);
      if (i % 2 === 0) parts.push(Buffer.alloc(4096, i & 0xff));
    }
    client.send(Buffer.concat(parts));
    const seen = new Set<number>();
    for (let i = 0; i < requestCount; i++) {
      const header = await client.read(16);
      expect(header.readUInt32BE(4)).toBe(NBD_OK);
      const handle = header.readUInt32BE(12);
      seen.add(handle);
      if (handle % 2 === 1) {
        const data = await client.read(4096);
        // The read at the same offset was sent after the write: this server replies to each once it
        // is done, and the memory export completes in order, so it sees the write.
        expect(data.every((b) => b === ((handle - 1) & 0xff))).toBe(true);
      }
    }
    expect(seen.size).toBe(requestCount);
  });

  test("backpressure: at most inFlightRequestsMax requests reach the export until replies go out", async () => {
    const disk = t.exports[0]!;
    const held: Array<() => void> = [];
    const write = disk.write.bind(disk);
    disk.write = (offsetBytes, data, fua) => new Promise<void>((resolve, reject) => {
      held.push(() => write(offsetBytes, data, fua).then(resolve, reject));
    });
    const requestCount = 3 * nbdLimits.inFlightRequestsMax;
    const parts: Buffer[] = [];
    for (let i = 0; i < requestCount; i++) {
      const header = Buffer.alloc(28);
      header.writeUInt32BE(0x25609513, 0);
      header.writeUInt16BE(NBD_CMD_WRITE, 6);
      header.writeUInt32BE(i, 12);
      header.writeUInt32BE(i * 4096, 20);
      header.writeUInt32BE(4096, 24);
      parts.push(header, Buffer.alloc(4096, 1));
    }
    client.send(Buffer.concat(parts));
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(held.length).toBe(nbdLimits.inFlightRequestsMax);
    let heldMax = 0;
    const releaser = setInterval(() => {
      heldMax = Math.max(heldMax, held.length);
      for (const release of held.splice(0)) release();
    }, 5);
    try {
      for (let replied = 0; replied < requestCount; replied++) expect((await client.readReply()).error).toBe(NBD_OK);
    } finally {
      clearInterval(releaser);
      disk.write = write;
    }
    expect(heldMax).toBeLessThanOrEqual(nbdLimits.inFlightRequestsMax);
    expect(held.length).toBe(0);
  });

  test("read-only export: writes, trims and zeroes → EPERM", async () => {
    const ro = await RawClient.connect(t.port);
    const info = await ro.go("ro");
    expect(info.transmissionFlags & 2).toBe(2);
    ro.sendRequest({ type: NBD_CMD_WRITE, handleLo: 1 }, Buffer.alloc(4096, 1));
    ro.sendRequest({ type: NBD_CMD_TRIM, handleLo: 2, lengthBytes: 4096 });
    ro.sendRequest({ type: NBD_CMD_WRITE_ZEROES, handleLo: 3, lengthBytes: 4096 });
    ro.sendRequest({ type: NBD_CMD_READ, handleLo: 4, lengthBytes: 4096 });
    expect((await ro.readReply()).error).toBe(NBD_EPERM);
    expect((await ro.readReply()).error).toBe(NBD_EPERM);
    expect((await ro.readReply()).error).toBe(NBD_EPERM);
    expect(await ro.readReply(4096)).toMatchObject({ error: NBD_OK, handleLo: 4 });
    expect(t.exports[1]!.allocatedBlockCount).toBe(0);
    ro.close();
  });

  test("DISC: in-flight requests are answered, then the server closes", async () => {
    client.sendRequest({ type: NBD_CMD_WRITE, handleLo: 1 }, Buffer.alloc(4096, 3));
    client.sendRequest({ type: NBD_CMD_DISC, handleLo: 2 });
    expect((await client.readReply()).error).toBe(NBD_OK);
    expect(await client.waitClosed()).toBe(true);
  });
});

test("close() ends idle and handshaking connections and waits for them", async () => {
  const handshaking = await RawClient.connect(t.port);
  await handshaking.greet();
  const idle = await RawClient.connect(t.port);
  await idle.go("disk");
  expect(t.server.connectionCount).toBe(3);
  witness.sendRequest({ type: NBD_CMD_READ, handleLo: 1, lengthBytes: 4096 });
  expect((await witness.readReply(4096)).error).toBe(NBD_OK);
  const closed = t.server.close();
  expect(await handshaking.waitClosed()).toBe(true);
  expect(await idle.waitClosed()).toBe(true);
  expect(await witness.waitClosed()).toBe(true);
  await closed;
  expect(t.server.connectionCount).toBe(0);
  // The afterEach witness check needs a live server: start a fresh one for it.
  t = await startTestServer([{ name: "disk", sizeBytes: SIZE }]);
  witness = await RawClient.connect(t.port);
  await witness.go("disk");
});
