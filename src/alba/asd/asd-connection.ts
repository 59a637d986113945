// One client connection of an ASD: the I/O shell around the protocol codecs (protocol.ts). It runs the
// prologue (hello, HMAC proof of the cluster secret, backend check), then parses request frames,
// dispatches them concurrently to the server, and writes responses as they complete (out of order).
// Imported only by asd-server.ts.
//
// Failure handling (DESIGN.md §4.7): bad input gets an error response or ends this connection, never
// anything else. A bad prologue (magic, version, proof, backend) gets its refusal and a close. In the
// frame phase: a bad marker or kind, an oversized length or a CRC mismatch means the stream cannot be
// trusted: a badFrame error (with the request id as read) and a close. A well-framed request with an
// unknown op gets unknownOp, a malformed body badRequest, and the connection goes on.
// Limits and backpressure (limits.ts): at inFlightRequestsMax requests, inFlightBytesMax request bytes or
// replyBufferedBytesMax unsent reply bytes, the connection stops parsing and pauses its socket until a
// response goes out or the socket drains. The prologue must finish within prologueTimeoutMs.
// Buffers: request bodies are views of socket chunks (or copies when split), handed to the server for
// the request's lifetime; response frames are fresh Buffers written to the socket as is.

import { randomBytes } from "node:crypto";
import type { Socket } from "node:net";
import { AssertionError, OvsError, type Logger } from "../../base/index.js";
import { ChunkQueue, SizeClassPool } from "../../base/index.js";
import { asdLimits } from "./limits.js";
import {
  AUTH_BACKEND_REFUSED, AUTH_BAD_PROOF, AUTH_FLAG_CLAIMED_BY_YOU, AUTH_FLAG_UNCLAIMED, AUTH_MALFORMED, AUTH_OK, CLIENT_AUTH_FIXED_BYTES,
  CLIENT_HELLO_BYTES, clientProof, decodeBackendId, decodeClientAuthFixed, decodeClientHello, decodeFrameHeader, decodeRequestBody,
  encodeAuthReply, encodeErrorFrame, encodeResponseFrame, encodeServerHello, FRAME_HEADER_BYTES, FRAME_KIND_REQUEST, frameCrc,
  HELLO_OK, HELLO_VERSION_UNSUPPORTED, measureAuthReply, measureResponseBody, NONCE_BYTES, opNameOf, PROOF_BYTES, proofsEqual,
  PROTOCOL_VERSION, SERVER_HELLO_BYTES, serverProof, type AsdRequest, type AsdResponse, type AsdStatusName,
} from "./protocol.js";

/** What a connection needs from its server. */
export interface ConnectionHost {
  readonly asdId: Buffer;
  readonly clusterSecret: string;
  readonly logger: Logger;
  claimedBy(): string | undefined;
  /** Serves one decoded request for `backendId`; rejects with an OvsError for an operating error. */
  dispatch(request: AsdRequest, backendId: string): Promise<AsdResponse>;
  countAuthFailure(): void;
  countMalformedFrame(): void;
  onClosed(connection: AsdConnection): void;
}

type Phase = "hello" | "auth" | "frames" | "stopped";

/**
 * Request bodies (fragments arriving in many socket chunks) and response frames (reads), reused. At most
 * 16 MiB idle each: an ASD has a few fragments in flight per client, and is a small daemon.
 */
const bodyPool = new SizeClassPool(64 * 1024, 16 * 1024 * 1024, 16 * 1024 * 1024);
const responsePool = new SizeClassPool(64 * 1024, 16 * 1024 * 1024, 16 * 1024 * 1024);
const takeResponseFrame = (byteCount: number): Buffer => responsePool.take(byteCount);

export class AsdConnection {
  private phase: Phase = "hello";
  private readonly queue = new ChunkQueue();
  private readonly serverNonce = randomBytes(NONCE_BYTES);
  private clientNonce: Buffer | undefined;
  private authFixed: { proof: Buffer; backendIdBytes: number } | undefined;
  private backendId = "";
  private prologueTimer: NodeJS.Timeout | undefined;
  private closeTimer: NodeJS.Timeout | undefined;
  /** A request header read whose body has not fully arrived. */
  private pendingHeader: { code: number; requestId: number; bodyBytes: number; crc32c: number; headerBytes: Buffer } | undefined;
  private inFlightCount = 0;
  private inFlightBytes = 0;
  private socketPaused = false;
  private corked = false;
  private pumping = false;
  private socketClosed = false;
  private finished = false;
  private endRequested = false;

  constructor(readonly socket: Socket, private readonly host: ConnectionHost) {
    socket.setNoDelay(true);
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("end", () => this.stop("client closed its side"));
    socket.on("error", (error) => {
      host.logger.debug({ err: error }, "asd: socket error");
      socket.destroy();
    });
    socket.on("drain", () => this.resumeIfPossible());
    socket.on("close", () => {
      this.socketClosed = true;
      this.stop("socket closed");
      this.finishIfIdle();
    });
    this.prologueTimer = setTimeout(() => this.stop(`prologue not done within ${asdLimits.prologueTimeoutMs} ms`), asdLimits.prologueTimeoutMs);
    this.prologueTimer.unref();
  }

  /** Server shutdown: stop reading; requests in flight finish and are answered; then the socket ends. */
  shutdown(): void {
    this.stop("server shutting down");
  }

  destroy(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    if (this.phase === "stopped") return;
    this.queue.push(chunk);
    this.pump();
  }

  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.phase !== "stopped") {
        const progressed = this.phase === "frames" ? this.pumpFrame() : this.pumpPrologue();
        if (!progressed) break;
      }
    } finally {
      this.pumping = false;
    }
  }

  // ---- Prologue ------------------------------------------------------------------------------------

  private pumpPrologue(): boolean {
    if (this.phase === "hello") {
      if (this.queue.byteCount < CLIENT_HELLO_BYTES) return false;
      const hello = decodeClientHello(this.queue.take(CLIENT_HELLO_BYTES), 0);
      if (!hello.ok) {
        this.host.countMalformedFrame();
        return this.stop(`bad client hello: ${hello.reason}`);
      }
      const supported = hello.value.version === PROTOCOL_VERSION;
      const reply = Buffer.allocUnsafe(SERVER_HELLO_BYTES);
      encodeServerHello(reply, 0, {
        version: PROTOCOL_VERSION,
        status: supported ? HELLO_OK : HELLO_VERSION_UNSUPPORTED,
        serverNonce: this.serverNonce,
        asdId: this.host.asdId,
      });
      this.socket.write(reply);
      if (!supported) return this.stop(`client speaks protocol version ${hello.value.version}`);
      this.clientNonce = Buffer.from(hello.value.clientNonce);
      this.phase = "auth";
      return true;
    }
    if (this.authFixed === undefined) {
      if (this.queue.byteCount < CLIENT_AUTH_FIXED_BYTES) return false;
      const fixed = decodeClientAuthFixed(this.queue.take(CLIENT_AUTH_FIXED_BYTES), 0);
      if (!fixed.ok) return this.refuse(AUTH_MALFORMED, `malformed auth: ${fixed.reason}`);
      this.authFixed = { proof: Buffer.from(fixed.value.proof), backendIdBytes: fixed.value.backendIdBytes };
      return true;
    }
    if (this.queue.byteCount < this.authFixed.backendIdBytes) return false;
    const backendId = decodeBackendId(Buffer.from(this.queue.take(this.authFixed.backendIdBytes)));
    if (!backendId.ok) return this.refuse(AUTH_MALFORMED, backendId.reason);
    const expected = clientProof(this.host.clusterSecret, this.clientNonce!, this.serverNonce, this.host.asdId, backendId.value);
    if (!proofsEqual(expected, this.authFixed.proof)) {
      this.host.countAuthFailure();
      return this.refuse(AUTH_BAD_PROOF, "Refused: the proof of the cluster secret is wrong; check that the client and the ASD use the same cluster secret.");
    }
    const claimedBy = this.host.claimedBy();
    if (claimedBy !== undefined && claimedBy !== backendId.value) {
      this.host.countAuthFailure();
      return this.refuse(AUTH_BACKEND_REFUSED, `Refused: this ASD is claimed by backend ${claimedBy}, not by ${backendId.value}.`);
    }
    this.backendId = backendId.value;
    const reply = { status: AUTH_OK, flags: claimedBy === undefined ? AUTH_FLAG_UNCLAIMED : AUTH_FLAG_CLAIMED_BY_YOU, message: "", serverProof: serverProof(this.host.clusterSecret, this.clientNonce!, this.serverNonce, this.host.asdId, backendId.value) };
    const bytes = Buffer.allocUnsafe(measureAuthReply(reply));
    encodeAuthReply(bytes, 0, reply);
    this.socket.write(bytes);
    clearTimeout(this.prologueTimer);
    this.prologueTimer = undefined;
    this.phase = "frames";
    this.host.logger.debug({ backendId: this.backendId }, "asd: connection authenticated");
    return true;
  }

  private refuse(status: number, message: string): boolean {
    const reply = { status, flags: 0, message, serverProof: Buffer.alloc(PROOF_BYTES) };
    const bytes = Buffer.allocUnsafe(measureAuthReply(reply));
    encodeAuthReply(bytes, 0, reply);
    this.socket.write(bytes);
    this.host.logger.info({ status, remote: this.socket.remoteAddress }, `asd: connection refused: ${message}`);
    return this.stop(message);
  }

  // ---- Frames --------------------------------------------------------------------------------------

  private atLimit(): boolean {
    return this.inFlightCount >= asdLimits.inFlightRequestsMax ||
      this.inFlightBytes >= asdLimits.inFlightBytesMax ||
      this.socket.writableLength >= asdLimits.replyBufferedBytesMax;
  }

  private pumpFrame(): boolean {
    if (this.pendingHeader === undefined) {
      if (this.queue.byteCount < FRAME_HEADER_BYTES) return false;
      if (this.atLimit()) {
        this.pauseSocket();
        return false;
      }
      const headerBytes = Buffer.from(this.queue.take(FRAME_HEADER_BYTES));
      const header = decodeFrameHeader(headerBytes, 0, FRAME_KIND_REQUEST);
      if (!header.ok) return this.badFrame(headerBytes.readUInt32LE(4), header.reason);
      this.pendingHeader = { ...header.value, headerBytes };
      return true;
    }
    const header = this.pendingHeader;
    if (this.queue.byteCount < header.bodyBytes) return false;
    this.pendingHeader = undefined;
    // A body spread over socket chunks is copied into a pooled buffer (a fragment is 1 MiB: fresh
    // Buffers made V8 run several full GCs a second), given back once the request is answered: the
    // decoded request's values are views of it, and the store is done with them when apply resolves.
    const scratch = header.bodyBytes >= bodyPool.minBytes && this.queue.contiguous(header.bodyBytes) === undefined ? bodyPool.take(header.bodyBytes) : undefined;
    const body = this.queue.take(header.bodyBytes, scratch);
    if (frameCrc(header.headerBytes, body) !== header.crc32c) {
      if (scratch !== undefined) bodyPool.release(scratch);
      return this.badFrame(header.requestId, "frame CRC32C mismatch");
    }
    const op = opNameOf(header.code);
    if (op === undefined) {
      if (scratch !== undefined) bodyPool.release(scratch);
      this.host.countMalformedFrame();
      this.send(encodeErrorFrame(header.requestId, "unknownOp", `Unknown operation ${header.code}; see the CAPABILITIES operation for what this ASD serves.`));
      return true;
    }
    const request = decodeRequestBody(op, body);
    if (!request.ok) {
      if (scratch !== undefined) bodyPool.release(scratch);
      this.host.countMalformedFrame();
      this.send(encodeErrorFrame(header.requestId, "badRequest", `Malformed ${op} request: ${request.reason}.`));
      return true;
    }
    this.dispatch(header.requestId, request.value, body.length, scratch);
    return true;
  }

  private badFrame(requestId: number, reason: string): boolean {
    this.host.countMalformedFrame();
    this.host.logger.info({ reason, remote: this.socket.remoteAddress }, "asd: bad frame, closing the connection");
    this.send(encodeErrorFrame(requestId, "badFrame", `Bad frame (${reason}); the connection is closed.`));
    return this.stop(reason);
  }

  /** `pooledBody`: the pooled buffer holding the request's body, given back once it is answered. */
  private dispatch(requestId: number, request: AsdRequest, bodyBytes: number, pooledBody: Buffer | undefined): void {
    this.inFlightCount++;
    this.inFlightBytes += bodyBytes;
    let promise: Promise<AsdResponse>;
    try {
      promise = this.host.dispatch(request, this.backendId);
    } catch (error) {
      promise = Promise.reject(error);
    }
    promise.then(
      (response) => {
        const responseBytes = measureResponseBody(response);
        const frame = responseBytes > asdLimits.frameBodyBytesMax
          ? encodeErrorFrame(requestId, "tooLarge", `The response would be ${responseBytes} bytes, above the frame limit of ${asdLimits.frameBodyBytesMax}; ask for fewer keys.`)
          : encodeResponseFrame(requestId, response, takeResponseFrame);
        if (pooledBody !== undefined) bodyPool.release(pooledBody); // after the response is encoded
        this.finish(bodyBytes, frame);
      },
      (error: unknown) => {
        if (pooledBody !== undefined) bodyPool.release(pooledBody);
        const { status, detail, message } = errorStatusOf(error);
        if (status === "internal") this.host.logger.error({ err: error, op: request.op }, "asd: request failed");
        this.finish(bodyBytes, encodeErrorFrame(requestId, status, message, detail));
      },
    );
  }

  private finish(bodyBytes: number, frame: Buffer): void {
    this.inFlightCount--;
    this.inFlightBytes -= bodyBytes;
    if (this.inFlightCount < 0 || this.inFlightBytes < 0) throw new AssertionError("asd connection: in-flight accounting");
    this.send(frame);
    if (this.phase === "stopped") this.finishIfIdle();
    else this.resumeIfPossible();
  }

  /** Queues a frame; a pooled response frame goes back to its pool once the socket is done with it. */
  private send(frame: Buffer): void {
    const socket = this.socket;
    if (this.socketClosed || socket.writableEnded) {
      responsePool.release(frame);
      return;
    }
    if (!this.corked) {
      this.corked = true;
      socket.cork();
      process.nextTick(uncork, this);
    }
    socket.write(frame, () => responsePool.release(frame)); // ignores frames it did not hand out
  }

  /** @internal called by uncork() on the next tick. */
  uncorkNow(): void {
    this.corked = false;
    this.socket.uncork();
    if (this.endRequested) this.endSocket();
  }

  private pauseSocket(): void {
    if (!this.socketPaused) {
      this.socketPaused = true;
      this.socket.pause();
    }
  }

  private resumeIfPossible(): void {
    if (this.phase !== "frames" || this.atLimit()) return;
    if (this.socketPaused) {
      this.socketPaused = false;
      this.socket.resume();
    }
    this.pump();
  }

  // ---- Ending --------------------------------------------------------------------------------------

  /** Stops parsing; in-flight requests finish and are answered; then the socket ends. Returns false. */
  private stop(reason: string): boolean {
    if (this.phase !== "stopped") {
      this.phase = "stopped";
      this.host.logger.debug({ reason }, "asd: connection stopping");
      clearTimeout(this.prologueTimer);
      this.prologueTimer = undefined;
      this.queue.clear();
      if (this.socketPaused) {
        this.socketPaused = false;
        this.socket.resume();
      }
    }
    this.finishIfIdle();
    return false;
  }

  private finishIfIdle(): void {
    if (this.inFlightCount > 0) return;
    if (!this.socketClosed) {
      if (this.corked) this.endRequested = true;
      else this.endSocket();
      return;
    }
    if (this.finished) return;
    this.finished = true;
    clearTimeout(this.closeTimer);
    this.host.onClosed(this);
  }

  private endSocket(): void {
    this.endRequested = false;
    if (this.socket.writableEnded) return;
    this.socket.end();
    this.closeTimer = setTimeout(() => this.socket.destroy(), asdLimits.closeTimeoutMs);
    this.closeTimer.unref();
  }
}

function uncork(connection: AsdConnection): void {
  connection.uncorkNow();
}

/** The response status for an error from dispatch. AssertionErrors are bugs: they are rethrown (crash). */
export function errorStatusOf(error: unknown): { status: Exclude<AsdStatusName, "ok">; detail: number; message: string } {
  if (error instanceof AssertionError) throw error;
  if (!(error instanceof OvsError)) return { status: "internal", detail: 0, message: `Internal error: ${String(error)}` };
  const message = error.message;
  switch (error.code) {
    case "INVALID_ARGUMENT":
      return { status: "badRequest", detail: 0, message };
    case "ASSERT_FAILED": {
      const index = error.details?.assertIndex;
      return { status: "assertFailed", detail: typeof index === "number" ? index : 0, message };
    }
    case "NO_SPACE":
      return { status: "full", detail: 0, message };
    case "CONFLICT":
      return { status: error.details?.reason === "notClaimed" ? "notClaimed" : "claimedByOther", detail: 0, message };
    case "CHECKSUM_MISMATCH":
      return { status: "checksumMismatch", detail: 0, message };
    case "IO_ERROR":
    case "CORRUPT":
      return { status: "ioError", detail: 0, message };
    case "OUT_OF_RANGE":
      return { status: "tooLarge", detail: 0, message };
    case "UNAVAILABLE":
    case "CLOSED":
      return { status: "unavailable", detail: 0, message };
    default:
      return { status: "internal", detail: 0, message };
  }
}
