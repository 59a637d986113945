// Golden vectors for the ASD protocol (the worked example of docs/formats/asd-protocol.md, read from the
// spec itself so the two cannot drift), round trips of every op, and decoders' reasons on bad input.
import { readFileSync } from "node:fs";
import { describe, expect, test } from "vitest";
import { crc32c } from "../../base/index.js";
import { asdLimits } from "./limits.js";
import {
  clientProof, decodeClientHello, decodeErrorBody, decodeFrameHeader, decodeRequestBody, decodeResponseBody, decodeServerHello,
  encodeClientAuth, encodeClientHello, encodeErrorFrame, encodeRequestFrame, encodeResponseFrame, encodeServerHello, FRAME_HEADER_BYTES,
  FRAME_KIND_REQUEST, FRAME_KIND_RESPONSE, frameCrc, measureClientAuth, opNameOf, serverProof, type AsdRequest, type AsdResponse,
} from "./protocol.js";

const hex = (text: string): Buffer => Buffer.from(text.replace(/\s+/g, ""), "hex");
const bytes = (text: string): Buffer => Buffer.from(text, "latin1");
const sequence = (from: number, count: number): Buffer => Buffer.from(Array.from({ length: count }, (_, index) => from + index));

/** The hex code blocks of the spec's "Worked example" section, in order. */
function specExamples(): Buffer[] {
  const spec = readFileSync(new URL("../../../docs/formats/asd-protocol.md", import.meta.url), "utf8");
  const section = spec.slice(spec.indexOf("## Worked example"), spec.indexOf("## On disk"));
  return [...section.matchAll(/```\n([\s\S]*?)```/g)].map((match) => hex(match[1]!));
}

const clientNonce = sequence(0x00, 16);
const serverNonce = sequence(0x10, 16);
const asdId = sequence(0xa0, 16);

describe("golden vectors (docs/formats/asd-protocol.md, worked example)", () => {
  const examples = specExamples();

  test("the spec has the seven examples", () => {
    expect(examples).toHaveLength(7);
  });

  test("client hello and server hello", () => {
    const hello = Buffer.alloc(24);
    encodeClientHello(hello, 0, { version: 1, clientNonce });
    expect(hello).toEqual(examples[0]);
    expect(decodeClientHello(hello, 0)).toEqual({ ok: true, value: { version: 1, clientNonce } });
    const serverHello = Buffer.alloc(40);
    encodeServerHello(serverHello, 0, { version: 1, status: 0, serverNonce, asdId });
    expect(serverHello).toEqual(examples[1]);
    expect(decodeServerHello(serverHello, 0)).toEqual({ ok: true, value: { version: 1, status: 0, serverNonce, asdId } });
  });

  test("client auth: HMAC-SHA256 proof of secret, nonces, ASD id and backend id", () => {
    const proof = clientProof("secret", clientNonce, serverNonce, asdId, "b1");
    const auth = Buffer.alloc(measureClientAuth({ proof, backendId: "b1" }));
    encodeClientAuth(auth, 0, { proof, backendId: "b1" });
    expect(auth).toEqual(examples[2]);
    // The proof depends on every input, and the server's differs from the client's.
    expect(clientProof("secreT", clientNonce, serverNonce, asdId, "b1")).not.toEqual(proof);
    expect(clientProof("secret", clientNonce, serverNonce, asdId, "b2")).not.toEqual(proof);
    expect(serverProof("secret", clientNonce, serverNonce, asdId, "b1")).not.toEqual(proof);
  });

  test("multiGet request 7 and its response", () => {
    const request: AsdRequest = { op: "multiGet", keys: [bytes("a"), bytes("bc")] };
    const frame = encodeRequestFrame(7, request);
    expect(frame).toEqual(examples[3]);
    const header = decodeFrameHeader(frame, 0, FRAME_KIND_REQUEST);
    expect(header).toEqual({ ok: true, value: { kind: 1, code: 3, requestId: 7, bodyBytes: frame.length - 16, crc32c: frame.readUInt32LE(12) } });
    expect(decodeRequestBody("multiGet", frame.subarray(FRAME_HEADER_BYTES))).toEqual({ ok: true, value: request });
    const response: AsdResponse = { op: "multiGet", results: [{ status: "ok", value: bytes("hi"), crc32c: crc32c(bytes("hi")) }, { status: "absent" }] };
    const responseFrame = encodeResponseFrame(7, response);
    expect(responseFrame).toEqual(examples[4]);
    expect(decodeResponseBody("multiGet", responseFrame.subarray(FRAME_HEADER_BYTES))).toEqual({ ok: true, value: response });
  });

  test("apply request 8 and an assertFailed response", () => {
    const request: AsdRequest = { op: "apply", asserts: [{ kind: "absent", key: bytes("k") }], updates: [{ kind: "set", key: bytes("k"), value: bytes("v"), crc32c: crc32c(bytes("v")) }] };
    const frame = encodeRequestFrame(8, request);
    expect(frame).toEqual(examples[5]);
    expect(decodeRequestBody("apply", frame.subarray(FRAME_HEADER_BYTES))).toEqual({ ok: true, value: request });
    const error = encodeErrorFrame(8, "assertFailed", "x", 0);
    expect(error).toEqual(examples[6]);
    const header = decodeFrameHeader(error, 0, FRAME_KIND_RESPONSE);
    expect(header.ok && header.value.code).toBe(3);
    expect(decodeErrorBody(error.subarray(FRAME_HEADER_BYTES))).toEqual({ ok: true, value: { detail: 0, message: "x" } });
  });
});

describe("round trips", () => {
  const requests: AsdRequest[] = [
    { op: "capabilities" },
    { op: "claim" },
    { op: "diskUsage" },
    { op: "statistics", reset: true },
    { op: "multiGet", keys: [bytes("x"), Buffer.alloc(asdLimits.keyBytesMax, 1)] },
    { op: "partialGet", items: [{ key: bytes("f"), ranges: [{ offsetBytes: 5, lengthBytes: 10 }, { offsetBytes: 0, lengthBytes: 0 }] }, { key: bytes("g"), ranges: [] }] },
    { op: "apply", asserts: [{ kind: "equals", key: bytes("o"), value: bytes("tag") }], updates: [{ kind: "delete", key: bytes("d") }] },
    { op: "range", query: { limit: 10, reverse: false } },
    { op: "range", query: { first: bytes("a"), end: bytes("b"), limit: 1, reverse: true } },
    { op: "rangeEntries", query: { first: bytes("a"), limit: 10_000, reverse: false } },
  ];
  test.each(requests.map((request) => [request.op, request] as const))("request %s", (_op, request) => {
    const frame = encodeRequestFrame(42, request);
    const header = decodeFrameHeader(frame, 0, FRAME_KIND_REQUEST);
    expect(header.ok).toBe(true);
    if (!header.ok) return;
    expect(opNameOf(header.value.code)).toBe(request.op);
    expect(frameCrc(frame.subarray(0, 12), frame.subarray(16))).toBe(header.value.crc32c);
    expect(decodeRequestBody(request.op, frame.subarray(FRAME_HEADER_BYTES))).toEqual({ ok: true, value: request });
  });

  const responses: AsdResponse[] = [
    {
      op: "capabilities",
      capabilities: {
        version: 1, ops: ["capabilities", "claim", "multiGet", "partialGet", "apply", "range", "rangeEntries", "diskUsage", "statistics"],
        frameBodyBytesMax: 1, keyBytesMax: 2, valueBytesMax: 3, inlineValueBytesMax: 4, keysPerRequestMax: 5, rangesPerRequestMax: 6, inFlightRequestsMax: 7, rangeLimitMax: 8,
      },
    },
    { op: "claim", newlyClaimed: true },
    { op: "apply" },
    { op: "partialGet", results: [{ status: "outOfRange" }, { status: "corrupt" }, { status: "ioError" }, { status: "ok", value: Buffer.alloc(0), crc32c: 0 }] },
    { op: "range", keys: [bytes("a"), bytes("b")], more: true },
    { op: "rangeEntries", entries: [{ key: bytes("a"), result: { status: "ok", value: bytes("1"), crc32c: 7 } }], more: false },
    { op: "diskUsage", usage: { totalBytes: 2 ** 50, usedBytes: 2 ** 40 + 1, freeBytes: 3, valueCount: 4, valueBytes: 5, fullThresholdPpm: 990_000, refusingWrites: true } },
    {
      op: "statistics",
      statistics: { ops: { apply: { count: 1, errorCount: 2, latencyUsTotal: 3, latencyUsMax: 4 } }, counters: { checksumErrors: 9, connectionsOpen: 2 ** 40 } },
    },
  ];
  test.each(responses.map((response) => [response.op, response] as const))("response %s", (_op, response) => {
    const frame = encodeResponseFrame(9, response);
    expect(decodeResponseBody(response.op, frame.subarray(FRAME_HEADER_BYTES))).toEqual({ ok: true, value: response });
  });
});

describe("decoders give reasons on bad input", () => {
  const bodyOf = (request: AsdRequest): Buffer => encodeRequestFrame(1, request).subarray(FRAME_HEADER_BYTES);

  test("frame header: marker, kind, oversized body", () => {
    const frame = encodeRequestFrame(1, { op: "claim" });
    const badMarker = Buffer.from(frame);
    badMarker[0] = 0x5a;
    expect(decodeFrameHeader(badMarker, 0, FRAME_KIND_REQUEST)).toEqual({ ok: false, reason: expect.stringContaining("marker") });
    expect(decodeFrameHeader(frame, 0, FRAME_KIND_RESPONSE)).toEqual({ ok: false, reason: expect.stringContaining("kind") });
    const oversized = Buffer.from(frame);
    oversized.writeUInt32LE(asdLimits.frameBodyBytesMax + 1, 8);
    expect(decodeFrameHeader(oversized, 0, FRAME_KIND_REQUEST)).toEqual({ ok: false, reason: expect.stringContaining("above") });
    expect(decodeFrameHeader(frame.subarray(0, 10), 0, FRAME_KIND_REQUEST)).toEqual({ ok: false, reason: expect.any(String) });
  });

  test("client hello with a bad magic", () => {
    expect(decodeClientHello(bytes("GET / HTTP/1.1\r\nHost: xx\r\n"), 0)).toEqual({ ok: false, reason: expect.stringContaining("magic") });
  });

  test("truncated, trailing, over-limit and inconsistent bodies", () => {
    const multiGet = bodyOf({ op: "multiGet", keys: [bytes("abc")] });
    expect(decodeRequestBody("multiGet", multiGet.subarray(0, multiGet.length - 1))).toEqual({ ok: false, reason: expect.stringContaining("truncated") });
    expect(decodeRequestBody("multiGet", Buffer.concat([multiGet, Buffer.from([0])]))).toEqual({ ok: false, reason: expect.stringContaining("trailing") });
    const tooMany = Buffer.alloc(4);
    tooMany.writeUInt32LE(asdLimits.keysPerRequestMax + 1);
    expect(decodeRequestBody("multiGet", tooMany)).toEqual({ ok: false, reason: expect.stringContaining("the most is") });
    const hugeCount = Buffer.alloc(4);
    hugeCount.writeUInt32LE(1000);
    expect(decodeRequestBody("multiGet", hugeCount)).toEqual({ ok: false, reason: expect.stringContaining("more than the body can hold") });
    const emptyKey = Buffer.from([1, 0, 0, 0, 0, 0, 0x61]); // one key of length 0, then a stray byte
    expect(decodeRequestBody("multiGet", emptyKey)).toEqual({ ok: false, reason: expect.stringContaining("empty") });
    const longKey = Buffer.alloc(4 + 2 + 4001);
    longKey.writeUInt32LE(1, 0);
    longKey.writeUInt16LE(4001, 4);
    expect(decodeRequestBody("multiGet", longKey)).toEqual({ ok: false, reason: expect.stringContaining("4000") });
    const duplicate = bodyOf({ op: "apply", asserts: [], updates: [{ kind: "delete", key: bytes("k") }, { kind: "delete", key: bytes("j") }] });
    duplicate[duplicate.length - 1] = "k".charCodeAt(0);
    expect(decodeRequestBody("apply", duplicate)).toEqual({ ok: false, reason: expect.stringContaining("repeats") });
    const badKind = bodyOf({ op: "apply", asserts: [{ kind: "absent", key: bytes("k") }], updates: [] });
    badKind[4] = 9;
    expect(decodeRequestBody("apply", badKind)).toEqual({ ok: false, reason: expect.stringContaining("assert kind") });
    const zeroLimit = bodyOf({ op: "range", query: { limit: 1, reverse: false } });
    zeroLimit.writeUInt32LE(0, 4);
    expect(decodeRequestBody("range", zeroLimit)).toEqual({ ok: false, reason: expect.stringContaining("limit") });
    const bigRanges = bodyOf({ op: "partialGet", items: [{ key: bytes("f"), ranges: [{ offsetBytes: 0, lengthBytes: asdLimits.valueBytesMax }, { offsetBytes: 0, lengthBytes: 1 }] }] });
    expect(decodeRequestBody("partialGet", bigRanges)).toEqual({ ok: false, reason: expect.stringContaining("bytes in one request") });
    expect(decodeRequestBody("claim", Buffer.from([0]))).toEqual({ ok: false, reason: expect.stringContaining("trailing") });
  });

  test("random garbage never throws", () => {
    let state = 12345;
    const next = () => (state = (state * 1103515245 + 12345) >>> 0);
    for (let round = 0; round < 2000; round++) {
      const body = Buffer.from(Array.from({ length: next() % 64 }, () => next() & 0xff));
      for (const op of ["multiGet", "partialGet", "apply", "range", "rangeEntries", "statistics"] as const) {
        expect(() => decodeRequestBody(op, body)).not.toThrow();
        expect(() => decodeResponseBody(op, body)).not.toThrow();
      }
      expect(() => decodeErrorBody(body)).not.toThrow();
    }
  });
});
