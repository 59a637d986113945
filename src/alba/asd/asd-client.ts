// AsdClient: one connection to one ASD, as the ALBA client and maintenance use it: the prologue (proof of
// the cluster secret, the backend id, an optional check of the ASD's id, and the ASD's proof back),
// pipelined requests answered out of order, a timeout per request, and reconnection.
// Imported through src/alba/asd/index.ts.
//
// Invariants:
// - Every call resolves or rejects exactly once: with the response, its error (an OvsError whose code
//   follows the status: ASSERT_FAILED, NO_SPACE, CONFLICT, ...), TIMEOUT after requestTimeoutMs, or
//   UNAVAILABLE when the connection is lost while it is in flight (an apply may then have happened or
//   not: callers that need to know re-read, as with any network store).
// - After a loss the next call reconnects (when `reconnect` is on), waiting up to reconnectDelayMsMax
//   between failed attempts; requests are never re-sent by the client.
// - Late responses (after a timeout) are dropped by request id.
// Limits: at most the server's inFlightRequestsMax requests on the wire; up to queuedRequestsMax more
// wait here, beyond that calls fail with UNAVAILABLE (backpressure onto the caller).
// Buffers: keys and values passed in are encoded (copied) before the call returns; values in results are
// views into one response frame, owned by the caller.

import { randomBytes } from "node:crypto";
import { connect, type Socket } from "node:net";
import { assert, crc32c, OvsError, silentLogger, type ErrorCode, type Logger } from "../../base/index.js";
import { ChunkQueue, SizeClassPool } from "../../base/index.js";
import { asdLimits } from "./limits.js";
import {
  ASD_ID_BYTES, AUTH_BACKEND_REFUSED, AUTH_BAD_PROOF, AUTH_FLAG_CLAIMED_BY_YOU, AUTH_OK, AUTH_REPLY_FIXED_BYTES, CLIENT_HELLO_BYTES, clientProof,
  decodeAuthReplyFixed, decodeErrorBody, decodeFrameHeader, decodeResponseBody, decodeServerHello, encodeClientAuth, encodeClientHello,
  encodeRequestFrame, FRAME_HEADER_BYTES, measureRequestBody, FRAME_KIND_RESPONSE, frameCrc, HELLO_OK, measureClientAuth, NONCE_BYTES, proofsEqual,
  PROTOCOL_VERSION, SERVER_HELLO_BYTES, serverProof, statusNameOf, type AsdCapabilities, type AsdDiskUsage, type AsdRequest,
  type AsdResponse, type AsdStatistics, type AsdStatusName, type ByteRange, type ValueResult,
} from "./protocol.js";

export interface AsdClientOptions {
  host: string;
  port: number;
  /** The cluster secret (default: the empty secret). It never crosses the wire: only HMAC proofs do. */
  clusterSecret?: string;
  /** The backend this client acts for (1..64 UTF-8 bytes). */
  backendId: string;
  /** If given (32 hex digits), connecting to an ASD with another id fails with CONFLICT. */
  expectedAsdId?: string;
  requestTimeoutMs?: number;
  connectTimeoutMs?: number;
  /** Reconnect on the next call after a loss (default true). */
  reconnect?: boolean;
  logger?: Logger;
}

export type ClientAssert = { kind: "equals"; key: Uint8Array; value: Uint8Array } | { kind: "absent"; key: Uint8Array };
/** A set's CRC32C is computed here unless given (give it when you have it from the data path). */
export type ClientUpdate = { kind: "set"; key: Uint8Array; value: Uint8Array; crc32c?: number } | { kind: "delete"; key: Uint8Array };
export interface ClientRangeQuery {
  /** Inclusive lower bound (default: the first key). */
  first?: Uint8Array;
  /** Exclusive upper bound (default: past the last key). */
  end?: Uint8Array;
  limit: number;
  reverse?: boolean;
}

interface PendingRequest {
  request: AsdRequest;
  resolve: (response: AsdResponse) => void;
  reject: (error: OvsError) => void;
  timer: NodeJS.Timeout | undefined;
}

/** Maps a response status to the OvsError code a caller sees. */
const codeOfStatus: Record<Exclude<AsdStatusName, "ok">, ErrorCode> = {
  badRequest: "INVALID_ARGUMENT",
  unknownOp: "INVALID_ARGUMENT",
  assertFailed: "ASSERT_FAILED",
  full: "NO_SPACE",
  notClaimed: "CONFLICT",
  claimedByOther: "CONFLICT",
  checksumMismatch: "CHECKSUM_MISMATCH",
  ioError: "IO_ERROR",
  tooLarge: "OUT_OF_RANGE",
  unavailable: "UNAVAILABLE",
  badFrame: "CORRUPT",
  internal: "INTERNAL",
};

/** One authenticated socket; dies once (then the client makes a new one). */
class Session {
  readonly queue = new ChunkQueue();
  readonly pending = new Map<number, PendingRequest>();
  closed = false;
  /** Set once the prologue is done: from then on incoming bytes are response frames. */
  framing = false;
  claimedByYou = false;
  asdId = "";
  private waiter: (() => void) | undefined;
  private corked = false;
  private header: { requestId: number; code: number; bodyBytes: number; crc32c: number; headerBytes: Buffer } | undefined;

  constructor(readonly socket: Socket, private readonly onDead: (session: Session, error: OvsError) => void) {
    socket.setNoDelay(true);
    socket.on("data", (chunk: Buffer) => {
      this.queue.push(chunk);
      if (this.framing) this.pumpResponses();
      else this.wake();
    });
    socket.on("error", (error) => this.die(new OvsError("UNAVAILABLE", `The connection to the ASD failed: ${error.message}.`, undefined, { cause: error })));
    socket.on("close", () => this.die(new OvsError("UNAVAILABLE", "The connection to the ASD was closed.")));
  }

  private wake(): void {
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.();
  }

  /** Prologue only: waits for `byteCount` bytes before `deadline`. */
  async read(byteCount: number, deadline: number): Promise<Buffer> {
    while (this.queue.byteCount < byteCount) {
      if (this.closed) throw new OvsError("UNAVAILABLE", "The ASD closed the connection during the prologue.");
      const leftMs = deadline - Date.now();
      if (leftMs <= 0) throw new OvsError("TIMEOUT", "The ASD did not finish the prologue in time.");
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
        setTimeout(resolve, leftMs).unref();
      });
    }
    return Buffer.from(this.queue.take(byteCount));
  }

  /** Queues a frame; `onWritten` runs once the socket is done with it (written, or failed). */
  send(frame: Buffer, onWritten?: () => void): void {
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    this.socket.write(frame, onWritten);
  }

  pumpResponses(): void {
    while (!this.closed) {
      if (this.header === undefined) {
        if (this.queue.byteCount < FRAME_HEADER_BYTES) return;
        const headerBytes = Buffer.from(this.queue.take(FRAME_HEADER_BYTES));
        const header = decodeFrameHeader(headerBytes, 0, FRAME_KIND_RESPONSE);
        if (!header.ok) return this.die(new OvsError("CORRUPT", `The ASD sent a bad frame: ${header.reason}.`));
        this.header = { ...header.value, headerBytes };
      }
      const header = this.header;
      if (this.queue.byteCount < header.bodyBytes) return;
      this.header = undefined;
      const body = this.queue.take(header.bodyBytes);
      if (frameCrc(header.headerBytes, body) !== header.crc32c) return this.die(new OvsError("CORRUPT", "A response from the ASD failed its CRC32C."));
      const pending = this.pending.get(header.requestId);
      if (pending === undefined) continue; // timed out earlier, or the server's reply to a bad frame
      this.pending.delete(header.requestId);
      clearTimeout(pending.timer);
      this.settle(pending, header.code, body);
    }
  }

  private settle(pending: PendingRequest, code: number, body: Buffer): void {
    const status = statusNameOf(code);
    if (status === "ok") {
      const decoded = decodeResponseBody(pending.request.op, body);
      if (decoded.ok) pending.resolve(decoded.value);
      else pending.reject(new OvsError("CORRUPT", `The ASD sent a malformed ${pending.request.op} response: ${decoded.reason}.`));
      return;
    }
    if (status === undefined) {
      pending.reject(new OvsError("INTERNAL", `The ASD answered ${pending.request.op} with unknown status ${code}.`));
      return;
    }
    const error = decodeErrorBody(body);
    const message = error.ok ? error.value.message : `ASD error ${status}`;
    const details: Record<string, unknown> = { status };
    if (status === "assertFailed" && error.ok) details.assertIndex = error.value.detail;
    pending.reject(new OvsError(codeOfStatus[status], message, details));
  }

  die(error: OvsError): void {
    if (this.closed) return;
    this.closed = true;
    this.wake();
    this.socket.destroy();
    for (const pending of this.pending.values()) {
      clearTimeout(pending.timer);
      pending.reject(error);
    }
    this.pending.clear();
    this.onDead(this, error);
  }
}

export class AsdClient {
  private readonly options: Required<Omit<AsdClientOptions, "expectedAsdId" | "logger">> & { expectedAsdId?: string };
  private readonly logger: Logger;
  private session: Session | undefined;
  private connecting: Promise<Session> | undefined;
  private lastFailureMs = 0;
  private failureCount = 0;
  private nextRequestId = 1;
  private inFlightCount = 0;
  private readonly waiting: Array<() => void> = [];
  private closed = false;
  /** A session was established once (so with reconnect off, a lost one is not replaced). */
  private hadSession = false;
  private asdIdText = "";

  private constructor(options: AsdClientOptions) {
    const backendIdBytes = Buffer.byteLength(options.backendId ?? "", "utf8");
    if (backendIdBytes < 1 || backendIdBytes > asdLimits.backendIdBytesMax) {
      throw new OvsError("INVALID_ARGUMENT", `A backend id is 1..${asdLimits.backendIdBytesMax} UTF-8 bytes; got ${backendIdBytes}.`);
    }
    this.options = {
      host: options.host,
      port: options.port,
      clusterSecret: options.clusterSecret ?? "",
      backendId: options.backendId,
      expectedAsdId: options.expectedAsdId?.toLowerCase(),
      requestTimeoutMs: options.requestTimeoutMs ?? asdLimits.requestTimeoutMsDefault,
      connectTimeoutMs: options.connectTimeoutMs ?? asdLimits.connectTimeoutMsDefault,
      reconnect: options.reconnect ?? true,
    };
    this.logger = options.logger ?? silentLogger();
  }

  /** Connects and authenticates now; rejects (INVALID_ARGUMENT wrong secret, CONFLICT refused backend, UNAVAILABLE, TIMEOUT). */
  static async connect(options: AsdClientOptions): Promise<AsdClient> {
    const client = new AsdClient(options);
    await client.ensureSession();
    return client;
  }

  /** The ASD's id (32 hex digits), from the last prologue. */
  get asdId(): string {
    return this.asdIdText;
  }

  /** Whether the ASD was claimed by this client's backend at the last prologue (or claim()). */
  get claimedByYou(): boolean {
    return this.session?.claimedByYou ?? false;
  }

  get connected(): boolean {
    return this.session !== undefined && !this.session.closed;
  }

  // ---- Operations ----------------------------------------------------------------------------------

  async capabilities(): Promise<AsdCapabilities> {
    const response = await this.call({ op: "capabilities" });
    assert(response.op === "capabilities", "response matches request");
    return response.capabilities;
  }

  /** Claims the ASD for this client's backend: true if newly claimed, false if it already was; CONFLICT if another's. */
  async claim(): Promise<boolean> {
    const response = await this.call({ op: "claim" });
    assert(response.op === "claim", "response matches request");
    if (this.session !== undefined) this.session.claimedByYou = true;
    return response.newlyClaimed;
  }

  /** Whole values, one result per key in order: ok (value + CRC32C), absent, corrupt or ioError. */
  async multiGet(keys: readonly Uint8Array[]): Promise<ValueResult[]> {
    const response = await this.call({ op: "multiGet", keys: keys.map(asBuffer) });
    assert(response.op === "multiGet", "response matches request");
    return response.results;
  }

  /** One value, or undefined if absent; CHECKSUM_MISMATCH / IO_ERROR if the ASD cannot return it intact. */
  async get(key: Uint8Array): Promise<Buffer | undefined> {
    const [result] = await this.multiGet([key]);
    return valueOrThrow(result!, key);
  }

  /** Byte ranges of values: per item the ranges' bytes concatenated in order (outOfRange if one passes the end). */
  async partialGet(items: ReadonlyArray<{ key: Uint8Array; ranges: ByteRange[] }>): Promise<ValueResult[]> {
    const response = await this.call({ op: "partialGet", items: items.map((item) => ({ key: asBuffer(item.key), ranges: item.ranges.map((r) => ({ ...r })) })) });
    assert(response.op === "partialGet", "response matches request");
    return response.results;
  }

  /** Atomic sets and deletes if every assert holds; durable on return. ASSERT_FAILED (details.assertIndex) changed nothing. */
  async apply(asserts: readonly ClientAssert[], updates: readonly ClientUpdate[]): Promise<void> {
    const response = await this.call({
      op: "apply",
      asserts: asserts.map((a) => (a.kind === "equals" ? { kind: "equals", key: asBuffer(a.key), value: asBuffer(a.value) } : { kind: "absent", key: asBuffer(a.key) })),
      updates: updates.map((u) =>
        u.kind === "set" ? { kind: "set", key: asBuffer(u.key), value: asBuffer(u.value), crc32c: u.crc32c ?? crc32c(u.value) } : { kind: "delete", key: asBuffer(u.key) },
      ),
    });
    assert(response.op === "apply", "response matches request");
  }

  /** One page of keys; for the next page ascending pass first = last key + 0x00, descending end = last key. */
  async range(query: ClientRangeQuery): Promise<{ keys: Buffer[]; more: boolean }> {
    const response = await this.call({ op: "range", query: rangeQuery(query) });
    assert(response.op === "range", "response matches request");
    return { keys: response.keys, more: response.more };
  }

  /** One page of entries (values verified; a bad one is a corrupt result); paging as for range(). */
  async rangeEntries(query: ClientRangeQuery): Promise<{ entries: Array<{ key: Buffer; result: ValueResult }>; more: boolean }> {
    const response = await this.call({ op: "rangeEntries", query: rangeQuery(query) });
    assert(response.op === "rangeEntries", "response matches request");
    return { entries: response.entries, more: response.more };
  }

  async diskUsage(): Promise<AsdDiskUsage> {
    const response = await this.call({ op: "diskUsage" });
    assert(response.op === "diskUsage", "response matches request");
    return response.usage;
  }

  async statistics(reset = false): Promise<AsdStatistics> {
    const response = await this.call({ op: "statistics", reset });
    assert(response.op === "statistics", "response matches request");
    return response.statistics;
  }

  /** Fails requests in flight with CLOSED and closes the socket. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const wake of this.waiting.splice(0)) wake();
    const session = this.session;
    this.session = undefined;
    if (session !== undefined) {
      const ended = new Promise<void>((resolve) => session.socket.once("close", () => resolve()));
      session.die(new OvsError("CLOSED", "The ASD client was closed."));
      await ended;
    }
  }

  // ---- Machinery -----------------------------------------------------------------------------------

  /**
   * Sends a request and waits for its answer. The request's bytes are copied into the frame before the
   * first await, so callers may reuse their buffers as soon as call (or apply) has returned its promise
   * (AlbaBackend's upload relies on it to recycle fragment buffers).
   */
  private async call(request: AsdRequest): Promise<AsdResponse> {
    if (this.closed) throw new OvsError("CLOSED", "The ASD client is closed.");
    checkRequest(request);
    const bodyBytes = measureRequestBody(request);
    if (bodyBytes > asdLimits.frameBodyBytesMax) {
      throw new OvsError("INVALID_ARGUMENT", `The ${request.op} request is ${bodyBytes} bytes, above the frame limit of ${asdLimits.frameBodyBytesMax}; split it.`);
    }
    // From the process's frame pool (a 1 MiB fragment each: fresh Buffers made V8 run several full GCs a
    // second under sequential writes); back to it once the socket has written it.
    // The id is taken now (ids only match answers to requests), so the frame and its CRC are built once.
    const requestId = this.nextRequestId;
    this.nextRequestId = this.nextRequestId >= 0xfffffffe ? 1 : this.nextRequestId + 1;
    const frame = encodeRequestFrame(requestId, request, takeFrame);
    const deadline = Date.now() + this.options.requestTimeoutMs;
    if (this.inFlightCount >= asdLimits.inFlightRequestsMax) {
      if (this.waiting.length >= asdLimits.queuedRequestsMax) {
        throw new OvsError("UNAVAILABLE", `More than ${asdLimits.queuedRequestsMax} requests are waiting for this ASD.`);
      }
      await new Promise<void>((resolve) => this.waiting.push(resolve));
      if (this.closed) throw new OvsError("CLOSED", "The ASD client is closed.");
    }
    this.inFlightCount++;
    try {
      const session = await this.ensureSession();
      if (session.closed) throw new OvsError("UNAVAILABLE", "The connection to the ASD was lost before the request was sent.");
      const leftMs = deadline - Date.now();
      if (leftMs <= 0) throw new OvsError("TIMEOUT", `The ASD did not answer ${request.op} within ${this.options.requestTimeoutMs} ms.`);
      const response = new Promise<AsdResponse>((resolve, reject) => {
        const pending: PendingRequest = { request, resolve, reject, timer: undefined };
        pending.timer = setTimeout(() => {
          if (session.pending.get(requestId) === pending) session.pending.delete(requestId);
          reject(new OvsError("TIMEOUT", `The ASD ${this.options.host}:${this.options.port} did not answer ${request.op} within ${this.options.requestTimeoutMs} ms.`));
        }, leftMs);
        session.pending.set(requestId, pending);
      });
      session.send(frame, () => framePool.release(frame));
      return await response;
    } finally {
      this.inFlightCount--;
      this.waiting.shift()?.();
    }
  }

  private ensureSession(): Promise<Session> {
    if (this.session !== undefined && !this.session.closed) return Promise.resolve(this.session);
    if (this.closed) return Promise.reject(new OvsError("CLOSED", "The ASD client is closed."));
    if (this.hadSession && !this.options.reconnect) {
      return Promise.reject(new OvsError("UNAVAILABLE", "The connection to the ASD was lost and this client does not reconnect."));
    }
    this.connecting ??= this.openSession().then(
      (session) => {
        this.connecting = undefined;
        this.failureCount = 0;
        if (this.closed) {
          session.die(new OvsError("CLOSED", "The ASD client was closed."));
          throw new OvsError("CLOSED", "The ASD client is closed.");
        }
        this.session = session;
        this.hadSession = true;
        return session;
      },
      (error: unknown) => {
        this.connecting = undefined;
        this.failureCount++;
        this.lastFailureMs = Date.now();
        throw error;
      },
    );
    return this.connecting;
  }

  private async openSession(): Promise<Session> {
    const { host, port, connectTimeoutMs, backendId, clusterSecret } = this.options;
    if (this.failureCount > 0) {
      const delayMs = Math.min(asdLimits.reconnectDelayMsMax, 50 * 2 ** Math.min(this.failureCount, 10));
      const waitMs = this.lastFailureMs + delayMs - Date.now();
      if (waitMs > 0) await new Promise((resolve) => setTimeout(resolve, waitMs));
    }
    const deadline = Date.now() + connectTimeoutMs;
    const socket = connect({ host, port });
    const session = new Session(socket, (dead, error) => {
      if (this.session === dead) this.session = undefined;
      this.logger.debug({ err: error, host, port }, "asd client: connection lost");
    });
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new OvsError("TIMEOUT", `Cannot connect to the ASD at ${host}:${port} within ${connectTimeoutMs} ms.`)), connectTimeoutMs);
        socket.once("connect", () => {
          clearTimeout(timer);
          resolve();
        });
        socket.once("error", (error) => {
          clearTimeout(timer);
          reject(new OvsError("UNAVAILABLE", `Cannot connect to the ASD at ${host}:${port}: ${error.message}.`, undefined, { cause: error }));
        });
      });
      const clientNonce = randomBytes(NONCE_BYTES);
      const hello = Buffer.allocUnsafe(CLIENT_HELLO_BYTES);
      encodeClientHello(hello, 0, { version: PROTOCOL_VERSION, clientNonce });
      socket.write(hello);
      const serverHello = decodeServerHello(await session.read(SERVER_HELLO_BYTES, deadline), 0);
      if (!serverHello.ok) throw new OvsError("CORRUPT", `${host}:${port} is not an ASD: ${serverHello.reason}.`);
      if (serverHello.value.status !== HELLO_OK) {
        throw new OvsError("UNAVAILABLE", `The ASD at ${host}:${port} does not speak protocol version ${PROTOCOL_VERSION} (it speaks ${serverHello.value.version}).`);
      }
      const asdId = Buffer.from(serverHello.value.asdId);
      assert(asdId.length === ASD_ID_BYTES, "ASD ids are 16 bytes");
      const asdIdText = asdId.toString("hex");
      if (this.options.expectedAsdId !== undefined && this.options.expectedAsdId !== asdIdText) {
        throw new OvsError("CONFLICT", `The ASD at ${host}:${port} is ${asdIdText}, not the expected ${this.options.expectedAsdId}.`, { asdId: asdIdText });
      }
      const serverNonce = Buffer.from(serverHello.value.serverNonce);
      const auth = { proof: clientProof(clusterSecret, clientNonce, serverNonce, asdId, backendId), backendId };
      const authBytes = Buffer.allocUnsafe(measureClientAuth(auth));
      encodeClientAuth(authBytes, 0, auth);
      socket.write(authBytes);
      const replyFixed = decodeAuthReplyFixed(await session.read(AUTH_REPLY_FIXED_BYTES, deadline), 0);
      if (!replyFixed.ok) throw new OvsError("CORRUPT", `The ASD at ${host}:${port} sent a malformed auth reply: ${replyFixed.reason}.`);
      const message = (await session.read(replyFixed.value.messageBytes, deadline)).toString("utf8");
      switch (replyFixed.value.status) {
        case AUTH_OK:
          break;
        case AUTH_BAD_PROOF:
          throw new OvsError("INVALID_ARGUMENT", `The ASD at ${host}:${port} refused the cluster secret: ${message}`, { reason: "wrongSecret" });
        case AUTH_BACKEND_REFUSED:
          throw new OvsError("CONFLICT", `The ASD at ${host}:${port} refused backend ${backendId}: ${message}`, { reason: "claimedByOther" });
        default:
          throw new OvsError("INVALID_ARGUMENT", `The ASD at ${host}:${port} refused the connection: ${message}`);
      }
      const expectedProof = serverProof(clusterSecret, clientNonce, serverNonce, asdId, backendId);
      if (!proofsEqual(expectedProof, Buffer.from(replyFixed.value.serverProof))) {
        throw new OvsError("CONFLICT", `The ASD at ${host}:${port} could not prove it knows the cluster secret.`, { reason: "serverProof" });
      }
      session.asdId = asdIdText;
      session.claimedByYou = (replyFixed.value.flags & AUTH_FLAG_CLAIMED_BY_YOU) !== 0;
      this.asdIdText = asdIdText;
      session.framing = true;
      session.pumpResponses(); // nothing can be queued yet (no request was sent), but keep the invariant simple
      return session;
    } catch (error) {
      session.die(error instanceof OvsError ? error : new OvsError("UNAVAILABLE", String(error)));
      throw error;
    }
  }
}

/**
 * Request frames of every ASD client of the process: large ones (fragments) are reused once written
 * instead of allocated per request. A frame that is never sent (an error before the send) is left to the
 * GC.
 */
const framePool = new SizeClassPool(64 * 1024, 16 * 1024 * 1024, 32 * 1024 * 1024); // at most 32 MiB idle
const takeFrame = (byteCount: number): Buffer => framePool.take(byteCount);

/** Checks a request against the protocol's limits (INVALID_ARGUMENT), so that encoding cannot fail. */
function checkRequest(request: AsdRequest): void {
  const l = asdLimits;
  const fail = (what: string): never => {
    throw new OvsError("INVALID_ARGUMENT", `Invalid ${request.op} request: ${what}.`);
  };
  const checkKey = (key: Buffer, what: string): void => {
    if (key.length < 1 || key.length > l.keyBytesMax) fail(`${what} has ${key.length} bytes; keys are 1..${l.keyBytesMax}`);
  };
  const checkValue = (value: Buffer, what: string): void => {
    if (value.length > l.valueBytesMax) fail(`${what} has ${value.length} bytes; values are at most ${l.valueBytesMax}`);
  };
  switch (request.op) {
    case "multiGet":
      if (request.keys.length > l.keysPerRequestMax) fail(`${request.keys.length} keys; the most is ${l.keysPerRequestMax}`);
      request.keys.forEach((key, index) => checkKey(key, `key ${index}`));
      break;
    case "partialGet": {
      if (request.items.length > l.keysPerRequestMax) fail(`${request.items.length} items; the most is ${l.keysPerRequestMax}`);
      let rangeCount = 0;
      let lengthBytes = 0;
      for (const [index, item] of request.items.entries()) {
        checkKey(item.key, `key ${index}`);
        rangeCount += item.ranges.length;
        for (const range of item.ranges) {
          if (!isU32(range.offsetBytes) || !isU32(range.lengthBytes)) fail(`a range of item ${index} is not two 32-bit unsigned integers`);
          lengthBytes += range.lengthBytes;
        }
      }
      if (rangeCount > l.rangesPerRequestMax) fail(`${rangeCount} ranges; the most is ${l.rangesPerRequestMax}`);
      if (lengthBytes > l.valueBytesMax) fail(`the ranges ask for ${lengthBytes} bytes; the most is ${l.valueBytesMax}`);
      break;
    }
    case "apply": {
      if (request.asserts.length + request.updates.length > l.keysPerRequestMax) fail(`more than ${l.keysPerRequestMax} asserts and updates`);
      request.asserts.forEach((a, index) => {
        checkKey(a.key, `assert ${index} key`);
        if (a.kind === "equals") checkValue(a.value, `assert ${index} value`);
      });
      const seen = new Set<string>();
      request.updates.forEach((u, index) => {
        checkKey(u.key, `update ${index} key`);
        const keyHex = u.key.toString("hex");
        if (seen.has(keyHex)) fail(`update ${index} repeats the key of an earlier update`);
        seen.add(keyHex);
        if (u.kind === "set") checkValue(u.value, `update ${index} value`);
      });
      break;
    }
    case "range":
    case "rangeEntries": {
      const q = request.query;
      if (!Number.isInteger(q.limit) || q.limit < 1 || q.limit > l.rangeLimitMax) fail(`limit ${q.limit} outside 1..${l.rangeLimitMax}`);
      if ((q.first?.length ?? 0) > l.keyBytesMax || (q.end?.length ?? 0) > l.keyBytesMax) fail(`a bound is longer than ${l.keyBytesMax} bytes`);
      break;
    }
    default:
      break;
  }
}

function isU32(value: number): boolean {
  return Number.isInteger(value) && value >= 0 && value <= 0xffffffff;
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function rangeQuery(query: ClientRangeQuery): { first?: Buffer; end?: Buffer; limit: number; reverse: boolean } {
  return {
    ...(query.first === undefined ? {} : { first: asBuffer(query.first) }),
    ...(query.end === undefined ? {} : { end: asBuffer(query.end) }),
    limit: query.limit,
    reverse: query.reverse === true,
  };
}

/** The value of a result, undefined if absent; throws for a corrupt or unreadable one. */
export function valueOrThrow(result: ValueResult, key: Uint8Array): Buffer | undefined {
  switch (result.status) {
    case "ok":
      return result.value;
    case "absent":
      return undefined;
    case "corrupt":
      throw new OvsError("CHECKSUM_MISMATCH", `The ASD's copy of key 0x${Buffer.from(key).toString("hex").slice(0, 64)} fails its checksum.`);
    case "ioError":
      throw new OvsError("IO_ERROR", `The ASD could not read key 0x${Buffer.from(key).toString("hex").slice(0, 64)}.`);
    case "outOfRange":
      throw new OvsError("OUT_OF_RANGE", `A range passes the end of the value of key 0x${Buffer.from(key).toString("hex").slice(0, 64)}.`);
  }
}
