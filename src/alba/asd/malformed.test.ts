// Bad input from raw sockets (DESIGN.md §4.7): every malformed prologue or frame gets an error response
// or a closed connection, never a crash, and a well-behaved client served meanwhile keeps working.
// Also: a frame dripped one byte at a time, and backpressure when a client does not read its replies.
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { crc32c } from "../../base/index.js";
import type { AsdClient } from "./asd-client.js";
import { asdLimits } from "./limits.js";
import {
  asdStatusCodes, AUTH_BAD_PROOF, AUTH_MALFORMED, CLIENT_HELLO_BYTES, decodeErrorBody, decodeResponseBody, decodeServerHello, encodeClientHello,
  encodeFrameHeader, encodeRequestFrame, FRAME_HEADER_BYTES, FRAME_KIND_REQUEST, HELLO_VERSION_UNSUPPORTED, SERVER_HELLO_BYTES,
} from "./protocol.js";
import { connectTestClient, makeTempDir, patternBytes, RawAsdClient, startTestAsd, testBackendId, text, type TestAsd } from "./test-support.js";

let temp: { dir: string; remove: () => Promise<void> };
let asd: TestAsd;
let witness: AsdClient;

beforeEach(async () => {
  temp = await makeTempDir();
  asd = await startTestAsd(temp.dir);
  witness = await connectTestClient(asd.port);
  await witness.claim();
  await witness.apply([], [{ kind: "set", key: text("witness"), value: text("before") }]);
});

afterEach(async () => {
  // The witness still gets correct service after whatever the test did.
  await witness.apply([{ kind: "equals", key: text("witness"), value: text("before") }], [{ kind: "set", key: text("witness"), value: text("after") }]);
  expect(await witness.get(text("witness"))).toEqual(text("after"));
  await witness.close();
  await asd.stop();
  expect(asd.server.connectionCount).toBe(0);
  await temp.remove();
});

/** A request frame with a body the test chooses (the CRC is right unless the test breaks it). */
function frameWithBody(op: number, requestId: number, body: Buffer): Buffer {
  const frame = Buffer.alloc(FRAME_HEADER_BYTES + body.length);
  body.copy(frame, FRAME_HEADER_BYTES);
  encodeFrameHeader(frame, 0, FRAME_KIND_REQUEST, op, requestId, body.length);
  return frame;
}

describe("prologue", () => {
  test("a bad magic closes the connection without an answer", async () => {
    const raw = await RawAsdClient.connect(asd.port);
    raw.send(Buffer.from("GET / HTTP/1.1\r\nHost: asd\r\n\r\n"));
    expect(await raw.waitClosed()).toBe(true);
  });

  test("an unsupported version gets a hello with that status, then a close", async () => {
    const raw = await RawAsdClient.connect(asd.port);
    const hello = Buffer.alloc(CLIENT_HELLO_BYTES);
    encodeClientHello(hello, 0, { version: 99, clientNonce: Buffer.alloc(16) });
    raw.send(hello);
    const serverHello = decodeServerHello(await raw.read(SERVER_HELLO_BYTES), 0);
    expect(serverHello.ok && serverHello.value.status).toBe(HELLO_VERSION_UNSUPPORTED);
    expect(serverHello.ok && serverHello.value.version).toBe(1);
    expect(await raw.waitClosed()).toBe(true);
  });

  test("a wrong secret gets AUTH_BAD_PROOF and a close; a malformed auth AUTH_MALFORMED", async () => {
    const raw = await RawAsdClient.connect(asd.port);
    expect(await raw.prologue("not the secret", testBackendId)).toMatchObject({ status: AUTH_BAD_PROOF, message: expect.stringMatching(/cluster secret/) });
    expect(await raw.waitClosed()).toBe(true);
    const malformed = await RawAsdClient.connect(asd.port);
    const hello = Buffer.alloc(CLIENT_HELLO_BYTES);
    encodeClientHello(hello, 0, { version: 1, clientNonce: Buffer.alloc(16) });
    malformed.send(hello);
    await malformed.read(SERVER_HELLO_BYTES);
    malformed.send(Buffer.alloc(36)); // backend id length 0
    const reply = await malformed.read(40);
    expect(reply.readUInt16LE(0)).toBe(AUTH_MALFORMED);
    expect(await malformed.waitClosed()).toBe(true);
  });

  test("a connection cut in the middle of the prologue is just closed", async () => {
    const raw = await RawAsdClient.connect(asd.port);
    raw.send(Buffer.from("OASD\x01\x00"));
    raw.close();
    expect(await raw.waitClosed()).toBe(true);
  });
});

describe("frames", () => {
  test("a bad marker: badFrame, then the connection closes", async () => {
    const raw = await RawAsdClient.authenticated(asd.port);
    const frame = encodeRequestFrame(5, { op: "capabilities" });
    frame[0] = 0x00;
    raw.send(frame);
    const { header, body } = await raw.readFrame();
    expect(header.code).toBe(asdStatusCodes.badFrame);
    expect(decodeErrorBody(body)).toMatchObject({ ok: true, value: { message: expect.stringMatching(/marker/) } });
    expect(await raw.waitClosed()).toBe(true);
  });

  test("a bad CRC: badFrame naming the request id, then a close", async () => {
    const raw = await RawAsdClient.authenticated(asd.port);
    const frame = encodeRequestFrame(77, { op: "multiGet", keys: [text("witness")] });
    frame[frame.length - 1] = frame[frame.length - 1]! ^ 0xff;
    raw.send(frame);
    const { header, body } = await raw.readFrame();
    expect(header.code).toBe(asdStatusCodes.badFrame);
    expect(header.requestId).toBe(77);
    expect(decodeErrorBody(body)).toMatchObject({ ok: true, value: { message: expect.stringMatching(/CRC32C/) } });
    expect(await raw.waitClosed()).toBe(true);
  });

  test("an oversized length: badFrame and a close, without waiting for the body", async () => {
    const raw = await RawAsdClient.authenticated(asd.port);
    const header = Buffer.alloc(FRAME_HEADER_BYTES);
    header[0] = 0xa5;
    header[1] = FRAME_KIND_REQUEST;
    header.writeUInt16LE(3, 2);
    header.writeUInt32LE(1, 4);
    header.writeUInt32LE(asdLimits.frameBodyBytesMax + 1, 8);
    raw.send(header);
    expect((await raw.readFrame()).header.code).toBe(asdStatusCodes.badFrame);
    expect(await raw.waitClosed()).toBe(true);
  });

  test("an unknown op and a malformed body get errors, and the connection goes on", async () => {
    const raw = await RawAsdClient.authenticated(asd.port);
    raw.send(frameWithBody(999, 1, Buffer.alloc(0)));
    const unknown = await raw.readFrame();
    expect(unknown.header).toMatchObject({ code: asdStatusCodes.unknownOp, requestId: 1 });
    raw.send(frameWithBody(3, 2, Buffer.from([5, 0, 0, 0, 1, 0]))); // multiGet: 5 keys, then a truncated one
    const malformed = await raw.readFrame();
    expect(malformed.header).toMatchObject({ code: asdStatusCodes.badRequest, requestId: 2 });
    expect(decodeErrorBody(malformed.body)).toMatchObject({ ok: true, value: { message: expect.stringMatching(/multiGet/) } });
    raw.send(encodeRequestFrame(3, { op: "multiGet", keys: [text("witness")] }));
    const good = await raw.readFrame();
    expect(good.header).toMatchObject({ code: 0, requestId: 3 });
    expect(decodeResponseBody("multiGet", good.body)).toEqual({ ok: true, value: { op: "multiGet", results: [{ status: "ok", value: text("before"), crc32c: crc32c(text("before")) }] } });
    raw.close();
  });

  test("a truncated frame followed by a close does no harm", async () => {
    const raw = await RawAsdClient.authenticated(asd.port);
    const frame = encodeRequestFrame(4, { op: "apply", asserts: [], updates: [{ kind: "set", key: text("half"), value: patternBytes(50_000, 1), crc32c: crc32c(patternBytes(50_000, 1)) }] });
    raw.send(frame.subarray(0, 30_000));
    await new Promise((resolve) => setTimeout(resolve, 50));
    raw.close();
    expect(await witness.get(text("half"))).toBeUndefined();
  });

  test("a frame dripped one byte at a time is served", async () => {
    const raw = await RawAsdClient.authenticated(asd.port);
    const frame = encodeRequestFrame(6, { op: "multiGet", keys: [text("witness")] });
    for (const byte of frame) {
      raw.send(Buffer.from([byte]));
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect((await raw.readFrame()).header).toMatchObject({ code: 0, requestId: 6 });
    raw.close();
  });

  test("random garbage after the prologue never crashes the ASD", async () => {
    let state = 2024;
    const next = () => (state = (state * 1103515245 + 12345) >>> 0);
    for (let round = 0; round < 30; round++) {
      const raw = await RawAsdClient.authenticated(asd.port);
      const garbage = Buffer.from(Array.from({ length: 1 + (next() % 200) }, () => next() & 0xff));
      if (round % 2 === 0) garbage[0] = 0xa5; // sometimes a plausible marker
      if (round % 3 === 0) garbage[1] = FRAME_KIND_REQUEST;
      raw.send(garbage);
      await new Promise((resolve) => setTimeout(resolve, 5));
      raw.close();
    }
    expect((await witness.statistics()).counters.malformedFrames).toBeGreaterThan(0);
  });

  test("a client that does not read its replies is throttled, then served in full", async () => {
    await witness.apply([], [{ kind: "set", key: text("blob"), value: patternBytes(200_000, 3) }]);
    const raw = await RawAsdClient.authenticated(asd.port);
    raw.socket.pause();
    const requestCount = 400; // 80 MB of replies: more than the server buffers for one connection
    const frames = Array.from({ length: requestCount }, (_, index) => encodeRequestFrame(index + 1, { op: "multiGet", keys: [text("blob")] }));
    raw.send(Buffer.concat(frames));
    await new Promise((resolve) => setTimeout(resolve, 300));
    // Meanwhile the witness is served.
    expect(await witness.get(text("witness"))).toEqual(text("before"));
    raw.socket.resume();
    const seen = new Set<number>();
    for (let index = 0; index < requestCount; index++) {
      const { header, body } = await raw.readFrame();
      expect(header.code).toBe(0);
      expect(body.length).toBe(4 + 1 + 4 + 4 + 200_000);
      seen.add(header.requestId);
    }
    expect(seen.size).toBe(requestCount);
    raw.close();
  });
});
