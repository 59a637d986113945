// One NBD client connection: the I/O shell around handshake.ts (the handshake core) and
// transmission.ts (request validation). It parses the socket stream, dispatches requests to the
// export concurrently, and writes replies.
// Imported only by server.ts.
//
// Hot path (transmission): socket chunks go into a ChunkQueue; a request header within one chunk is
// decoded in place into one reused RequestHeader; a WRITE payload within one chunk is handed to the
// export as a view (copied only when it spans chunks). Replies written in the same tick go out in one
// writev: the socket is corked at the first reply and uncorked by setImmediate, so that every reply
// completed in one event-loop iteration (e.g. all file reads the thread pool finished) shares one writev.
// Replies may be out of order (NBD allows it; the handle pairs them up).
// Structured replies (once negotiated): a READ is answered with one OFFSET_DATA chunk flagged DONE (its
// data is complete before the header goes out, so it never needs fragmenting: DF is honoured for free),
// a zero-length READ with NONE, a failed READ or BLOCK_STATUS with one ERROR chunk, BLOCK_STATUS with one
// BLOCK_STATUS chunk. Every other command keeps its simple reply (proto.md allows it: no payload).
//
// Limits and backpressure (limits.ts): at most inFlightRequestsMax requests and inFlightBytesMax
// bytes in flight, and at most replyBufferedBytesMax reply bytes waiting in the socket; at any of
// them the connection stops parsing and pauses the socket until a reply goes out or the socket drains.
// Handshake: handshakeTimeoutMs from accept; option data above optionDataBytesMax is skipped.
//
// Failure handling: bad input gets an NBD error reply or ends this connection, never anything else.
// A bad request magic, an oversized WRITE, NBD_CMD_DISC, the client's EOF and server shutdown all
// "stop" the connection: no more requests are parsed, in-flight ones finish and are replied to, then
// the socket is ended (and destroyed after closeTimeoutMs if the client never closes its side).
// The export is detached once the socket is closed and no request is in flight.
//
// Buffers: WRITE payloads are handed over to the export (see nbd-export.ts): as views of the socket
// chunks to an export with writeChunks, else, when they span chunks, gathered into a pooled buffer that
// returns to the pool once the export's promise settles; READ data returned by
// the export is owned by this connection and written to the socket as is.

import type { Socket } from "node:net";
import { assert, type Logger } from "../../base/index.js";
import { BufferPool, ChunkQueue } from "../../base/index.js";
import { HandshakeSession, SERVER_HANDSHAKE_FLAGS, type HandshakeOptions, type HandshakeStep } from "./handshake.js";
import { nbdLimits } from "./limits.js";
import { nbdErrorOf, type NbdExport } from "./nbd-export.js";
import {
  CLIENT_FLAGS_BYTES, decodeClientFlags, decodeOptionHeader, decodeRequestHeaderInto, encodeBlockStatusReply, encodeGreeting, encodeSimpleReplyHeader,
  encodeStructuredError, encodeStructuredReplyHeader, GREETING_BYTES, NBD_CMD_BLOCK_STATUS, NBD_CMD_DISC, NBD_CMD_FLAG_FUA, NBD_CMD_FLAG_NO_HOLE,
  NBD_CMD_FLAG_REQ_ONE, NBD_CMD_FLUSH, NBD_CMD_READ, NBD_CMD_TRIM, NBD_CMD_WRITE, NBD_CMD_WRITE_ZEROES, NBD_OK, NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_NONE, NBD_REPLY_TYPE_OFFSET_DATA, newRequestHeader, OPTION_HEADER_BYTES, REQUEST_HEADER_BYTES, SIMPLE_REPLY_HEADER_BYTES,
  STRUCTURED_REPLY_HEADER_BYTES, writeUInt64, type BlockStatusExtent,
} from "./protocol.js";
import { checkRequest, isOversized, type Negotiated } from "./transmission.js";

/** Gathers WRITE payloads that span socket chunks; shared by every connection of the process. */
const writePayloadPool = new BufferPool(nbdLimits.writePayloadPoolBufferBytes, nbdLimits.writePayloadPoolCountMax);

type Phase = "client-flags" | "options" | "transmission" | "stopped";

export interface ConnectionOptions extends HandshakeOptions {
  logger: Logger;
  /** Called once, when the socket has closed and the export (if any) is detached. */
  onClosed: (connection: NbdConnection) => void;
}

export class NbdConnection {
  private phase: Phase = "client-flags";
  private readonly queue = new ChunkQueue();
  private readonly handshake: HandshakeSession;
  private handshakeTimer: NodeJS.Timeout | undefined;
  private closeTimer: NodeJS.Timeout | undefined;

  // Handshake state: an option header read whose data has not fully arrived, or is being skipped.
  private optionPending: { option: number; dataBytes: number } | undefined;
  private optionSkipBytesLeft = 0;

  // Transmission state.
  private nbdExport: NbdExport | undefined;
  private sizeBytes = 0;
  private readOnly = true;
  private negotiated: Negotiated = { structuredReplies: false, blockStatus: false };
  private blockStatusContextId = 0;
  private readonly header = newRequestHeader();
  private readonly headerScratch = Buffer.allocUnsafe(REQUEST_HEADER_BYTES);
  /** A WRITE whose header is parsed and whose payload has not fully arrived. */
  private writePending = false;
  /** Payload bytes of a refused WRITE still to be discarded. */
  private payloadSkipBytesLeft = 0;
  private inFlightCount = 0;
  private inFlightBytes = 0;

  private socketPaused = false;
  private corked = false;
  private pumping = false;
  private socketClosed = false;
  private finished = false;
  private endRequested = false;

  constructor(readonly socket: Socket, private readonly options: ConnectionOptions) {
    this.handshake = new HandshakeSession(options);
    socket.setNoDelay(true);
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("end", () => this.stop("client closed its side"));
    socket.on("error", (error) => {
      options.logger.debug({ err: error }, "nbd: socket error");
      socket.destroy();
    });
    socket.on("drain", () => this.resumeIfPossible());
    socket.on("close", () => {
      this.socketClosed = true;
      this.stop("socket closed");
      this.finishIfIdle();
    });
    this.handshakeTimer = setTimeout(() => this.abort(`handshake not done within ${nbdLimits.handshakeTimeoutMs} ms`), nbdLimits.handshakeTimeoutMs);
    this.handshakeTimer.unref();
    const greeting = Buffer.allocUnsafe(GREETING_BYTES);
    encodeGreeting(greeting, 0, SERVER_HANDSHAKE_FLAGS);
    socket.write(greeting);
  }

  /** Server shutdown: handshakes are cut off, transmissions finish their in-flight requests. */
  shutdown(): void {
    this.handshake.shuttingDown = true;
    if (this.phase === "transmission") this.stop("server shutting down");
    else this.abort("server shutting down");
  }

  /** Ends the connection now, replies in flight or not. */
  /** The name of the export this connection selected, once it is in transmission. */
  get exportName(): string | undefined {
    return this.nbdExport?.name;
  }

  destroy(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    if (this.phase === "stopped") return; // input after a stop is discarded
    this.queue.push(chunk);
    this.pump();
  }

  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.phase !== "stopped") {
        const progressed = this.phase === "transmission" ? this.pumpRequest() : this.pumpHandshake();
        if (!progressed) break;
      }
    } finally {
      this.pumping = false;
    }
  }

  // ---- Handshake ---------------------------------------------------------------------------------

  /** Handles one handshake message if it has arrived; returns whether it did. */
  private pumpHandshake(): boolean {
    if (this.phase === "client-flags") {
      if (this.queue.byteCount < CLIENT_FLAGS_BYTES) return false;
      const flags = decodeClientFlags(this.queue.take(CLIENT_FLAGS_BYTES), 0, SERVER_HANDSHAKE_FLAGS);
      if (!flags.ok) return this.abort(flags.reason);
      this.handshake.onClientFlags(flags.value);
      this.phase = "options";
      return true;
    }
    if (this.optionSkipBytesLeft > 0) {
      const n = Math.min(this.optionSkipBytesLeft, this.queue.byteCount);
      this.queue.skip(n);
      this.optionSkipBytesLeft -= n;
      if (this.optionSkipBytesLeft > 0) return false;
      const option = this.optionPending!.option;
      this.optionPending = undefined;
      return this.apply(this.handshake.onOversizedOption(option));
    }
    if (this.optionPending === undefined) {
      if (this.queue.byteCount < OPTION_HEADER_BYTES) return false;
      const header = decodeOptionHeader(this.queue.take(OPTION_HEADER_BYTES), 0);
      if (!header.ok) return this.abort(header.reason);
      this.optionPending = header.value;
      if (header.value.dataBytes > nbdLimits.optionDataBytesMax) this.optionSkipBytesLeft = header.value.dataBytes;
      return true;
    }
    const { option, dataBytes } = this.optionPending;
    if (this.queue.byteCount < dataBytes) return false;
    this.optionPending = undefined;
    return this.apply(this.handshake.onOption(option, this.queue.take(dataBytes)));
  }

  private apply(step: HandshakeStep): boolean {
    for (const message of step.messages) this.socket.write(message);
    switch (step.kind) {
      case "continue":
        return true;
      case "close":
        this.options.logger.debug({ reason: step.reason }, "nbd: handshake ended");
        this.stop(step.reason);
        return false;
      case "transmission":
        clearTimeout(this.handshakeTimer);
        this.handshakeTimer = undefined;
        this.nbdExport = step.nbdExport;
        this.sizeBytes = step.sizeBytes;
        this.readOnly = step.nbdExport.readOnly;
        this.negotiated = { structuredReplies: step.structuredReplies, blockStatus: step.blockStatusContextId !== undefined };
        this.blockStatusContextId = step.blockStatusContextId ?? 0;
        assert(Number.isSafeInteger(this.sizeBytes) && this.sizeBytes >= 0, "export size is a non-negative safe integer");
        this.phase = "transmission";
        this.options.logger.debug({ export: step.nbdExport.name, sizeBytes: step.sizeBytes, ...this.negotiated }, "nbd: transmission");
        return true;
    }
  }

  // ---- Transmission ------------------------------------------------------------------------------

  private atLimit(): boolean {
    return this.inFlightCount >= nbdLimits.inFlightRequestsMax ||
      this.inFlightBytes >= nbdLimits.inFlightBytesMax ||
      this.socket.writableLength >= nbdLimits.replyBufferedBytesMax;
  }

  /** Handles one request (or part of a payload) if it has arrived; returns whether it progressed. */
  private pumpRequest(): boolean {
    const header = this.header;
    if (this.payloadSkipBytesLeft > 0) {
      const n = Math.min(this.payloadSkipBytesLeft, this.queue.byteCount);
      this.queue.skip(n);
      this.payloadSkipBytesLeft -= n;
      return this.payloadSkipBytesLeft === 0;
    }
    if (this.writePending) {
      if (this.queue.byteCount < header.lengthBytes) return false;
      this.writePending = false;
      // A payload within one socket chunk is a view of it; one that spans chunks goes to an export
      // that takes chunks as views of them (it copies them once, into its own buffer), else it is
      // gathered into a pooled buffer (returned when the export is done with it).
      const spans = this.queue.contiguous(header.lengthBytes) === undefined;
      if (spans && this.nbdExport!.writeChunks !== undefined) {
        const lengthBytes = header.lengthBytes;
        const chunks = this.queue.takeViews(lengthBytes);
        this.dispatchWrite(lengthBytes, undefined, (offsetBytes, fua) => this.nbdExport!.writeChunks!(offsetBytes, chunks, lengthBytes, fua));
        return true;
      }
      const pooled = spans && header.lengthBytes <= writePayloadPool.bufferBytes ? writePayloadPool.take() : undefined;
      const payload = this.queue.take(header.lengthBytes, pooled);
      this.dispatchWrite(payload.length, pooled, (offsetBytes, fua) => this.nbdExport!.write(offsetBytes, payload, fua));
      return true;
    }
    if (this.queue.byteCount < REQUEST_HEADER_BYTES) return false;
    if (this.atLimit()) {
      this.pauseSocket();
      return false;
    }
    const head = this.queue.contiguous(REQUEST_HEADER_BYTES);
    const reason = head !== undefined
      ? decodeRequestHeaderInto(head, this.queue.offsetInHead, header)
      : decodeRequestHeaderInto(this.queue.take(REQUEST_HEADER_BYTES, this.headerScratch), 0, header);
    if (head !== undefined) this.queue.skip(REQUEST_HEADER_BYTES);
    if (reason !== undefined) {
      this.options.logger.info({ reason }, "nbd: bad request, closing the connection");
      this.stop(reason);
      return false;
    }
    const error = checkRequest(header, this.sizeBytes, this.readOnly, this.negotiated);
    const type = header.type;
    if (type === NBD_CMD_DISC) {
      this.stop("client sent NBD_CMD_DISC");
      return false;
    }
    if (type === NBD_CMD_WRITE) {
      if (isOversized(header)) {
        // The payload cannot be skipped safely (it may be up to 4 GiB): refuse and end the connection.
        this.sendReply(type, error, header.handleHi, header.handleLo, 0, undefined);
        this.options.logger.info({ lengthBytes: header.lengthBytes }, "nbd: oversized write, closing the connection");
        this.stop("oversized write");
        return false;
      }
      if (error !== NBD_OK) {
        this.sendReply(type, error, header.handleHi, header.handleLo, 0, undefined);
        this.payloadSkipBytesLeft = header.lengthBytes;
        return true;
      }
      if (header.lengthBytes === 0) {
        this.sendReply(type, NBD_OK, header.handleHi, header.handleLo, 0, undefined);
        return true;
      }
      this.writePending = true;
      return true;
    }
    if (error !== NBD_OK) {
      this.sendReply(type, error, header.handleHi, header.handleLo, 0, undefined);
      return true;
    }
    if (header.lengthBytes === 0 && type !== NBD_CMD_FLUSH) {
      this.sendReply(type, NBD_OK, header.handleHi, header.handleLo, header.offsetBytes, undefined);
      return true;
    }
    this.dispatch(type);
    return true;
  }

  private dispatchWrite(bytes: number, pooled: Buffer | undefined, write: (offsetBytes: number, fua: boolean) => Promise<void>): void {
    const { handleHi, handleLo, offsetBytes, commandFlags } = this.header;
    this.begin(bytes);
    let promise: Promise<void>;
    try {
      promise = write(offsetBytes, (commandFlags & NBD_CMD_FLAG_FUA) !== 0);
    } catch (error) {
      promise = Promise.reject(error);
    }
    promise.then(
      () => {
        if (pooled) writePayloadPool.release(pooled); // the export has copied what it keeps (nbd-export.ts)
        this.finish(bytes, NBD_CMD_WRITE, NBD_OK, handleHi, handleLo, 0, undefined);
      },
      (error: unknown) => {
        if (pooled) writePayloadPool.release(pooled);
        this.finish(bytes, NBD_CMD_WRITE, this.errorOf(error, "write"), handleHi, handleLo, 0, undefined);
      },
    );
  }

  private dispatch(type: number): void {
    const { handleHi, handleLo, offsetBytes, lengthBytes, commandFlags } = this.header;
    const nbdExport = this.nbdExport!;
    const fua = (commandFlags & NBD_CMD_FLAG_FUA) !== 0;
    if (type === NBD_CMD_READ) {
      this.begin(lengthBytes);
      let promise: Promise<Buffer>;
      try {
        promise = nbdExport.read(offsetBytes, lengthBytes);
      } catch (error) {
        promise = Promise.reject(error);
      }
      promise.then(
        (data) => {
          assert(data.length === lengthBytes, `export ${nbdExport.name} returned ${data.length} bytes for a ${lengthBytes}-byte read`);
          this.finish(lengthBytes, NBD_CMD_READ, NBD_OK, handleHi, handleLo, offsetBytes, data);
        },
        (error: unknown) => this.finish(lengthBytes, NBD_CMD_READ, this.errorOf(error, "read"), handleHi, handleLo, offsetBytes, undefined),
      );
      return;
    }
    if (type === NBD_CMD_BLOCK_STATUS) {
      this.dispatchBlockStatus(nbdExport, (commandFlags & NBD_CMD_FLAG_REQ_ONE) !== 0 ? 1 : nbdLimits.blockStatusExtentsMax);
      return;
    }
    this.begin(0);
    let promise: Promise<void>;
    try {
      switch (type) {
        case NBD_CMD_FLUSH:
          promise = nbdExport.flush();
          break;
        case NBD_CMD_TRIM:
          promise = nbdExport.trim(offsetBytes, lengthBytes);
          if (fua) promise = promise.then(() => nbdExport.flush());
          break;
        case NBD_CMD_WRITE_ZEROES:
          promise = nbdExport.writeZeroes(offsetBytes, lengthBytes, (commandFlags & NBD_CMD_FLAG_NO_HOLE) !== 0, fua);
          break;
        default:
          assert(false, `dispatch: command ${type} passed validation`);
      }
    } catch (error) {
      promise = Promise.reject(error);
    }
    promise.then(
      () => this.finish(0, type, NBD_OK, handleHi, handleLo, 0, undefined),
      (error: unknown) => this.finish(0, type, this.errorOf(error, `command ${type}`), handleHi, handleLo, 0, undefined),
    );
  }

  /** BLOCK_STATUS (validated: base:allocation is selected, so the export has blockStatus). */
  private dispatchBlockStatus(nbdExport: NbdExport, extentCountMax: number): void {
    const { handleHi, handleLo, offsetBytes, lengthBytes } = this.header;
    const contextId = this.blockStatusContextId;
    this.begin(0);
    let promise: Promise<BlockStatusExtent[]>;
    try {
      promise = nbdExport.blockStatus!(offsetBytes, lengthBytes, extentCountMax);
    } catch (error) {
      promise = Promise.reject(error);
    }
    promise.then(
      (extents) => {
        let coveredBytes = 0;
        for (const extent of extents) {
          assert(Number.isInteger(extent.lengthBytes) && extent.lengthBytes > 0, `export ${nbdExport.name}: empty or fractional block status extent`);
          coveredBytes += extent.lengthBytes;
        }
        assert(extents.length >= 1 && extents.length <= extentCountMax && coveredBytes <= lengthBytes, `export ${nbdExport.name}: block status extents break the contract`);
        this.finish(0, NBD_CMD_BLOCK_STATUS, NBD_OK, handleHi, handleLo, 0, encodeBlockStatusReply(handleHi, handleLo, contextId, extents));
      },
      (error: unknown) => this.finish(0, NBD_CMD_BLOCK_STATUS, this.errorOf(error, "block status"), handleHi, handleLo, 0, undefined),
    );
  }

  private errorOf(error: unknown, what: string): number {
    const nbdError = nbdErrorOf(error); // rethrows AssertionErrors: a bug in the export
    this.options.logger.warn({ err: error, export: this.nbdExport?.name, nbdError }, `nbd: export ${what} failed`);
    return nbdError;
  }

  private begin(bytes: number): void {
    this.inFlightCount++;
    this.inFlightBytes += bytes;
  }

  private finish(bytes: number, type: number, error: number, handleHi: number, handleLo: number, offsetBytes: number, data: Buffer | undefined): void {
    this.inFlightCount--;
    this.inFlightBytes -= bytes;
    assert(this.inFlightCount >= 0 && this.inFlightBytes >= 0, "in-flight accounting");
    this.sendReply(type, error, handleHi, handleLo, offsetBytes, data);
    if (this.phase === "stopped") this.finishIfIdle();
    else this.resumeIfPossible();
  }

  /**
   * Sends the reply to a request of `type`. `data`: a READ's bytes (from offsetBytes), or a BLOCK_STATUS
   * reply already encoded as a whole chunk.
   */
  private sendReply(type: number, error: number, handleHi: number, handleLo: number, offsetBytes: number, data: Buffer | undefined): void {
    const socket = this.socket;
    if (this.socketClosed || socket.writableEnded) return;
    if (!this.corked) {
      this.corked = true;
      socket.cork();
      setImmediate(uncork, this);
    }
    if (this.negotiated.structuredReplies && (type === NBD_CMD_READ || type === NBD_CMD_BLOCK_STATUS)) {
      if (error !== NBD_OK) {
        socket.write(encodeStructuredError(handleHi, handleLo, error, ""));
      } else if (type === NBD_CMD_BLOCK_STATUS) {
        socket.write(data!);
      } else if (data === undefined || data.length === 0) {
        const none = Buffer.allocUnsafe(STRUCTURED_REPLY_HEADER_BYTES);
        encodeStructuredReplyHeader(none, 0, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, handleHi, handleLo, 0);
        socket.write(none);
      } else {
        const header = Buffer.allocUnsafe(STRUCTURED_REPLY_HEADER_BYTES + 8);
        encodeStructuredReplyHeader(header, 0, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_OFFSET_DATA, handleHi, handleLo, 8 + data.length);
        writeUInt64(header, STRUCTURED_REPLY_HEADER_BYTES, offsetBytes);
        socket.write(header);
        socket.write(data);
      }
      return;
    }
    const header = Buffer.allocUnsafe(SIMPLE_REPLY_HEADER_BYTES);
    encodeSimpleReplyHeader(header, 0, error, handleHi, handleLo);
    socket.write(header);
    if (data !== undefined && error === NBD_OK && data.length > 0) socket.write(data);
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
    if (this.phase !== "transmission" || this.atLimit()) return;
    if (this.socketPaused) {
      this.socketPaused = false;
      this.socket.resume();
    }
    this.pump();
  }

  // ---- Ending ------------------------------------------------------------------------------------

  /** Stops parsing; in-flight requests finish; then the socket is ended. Returns false (for pump). */
  private stop(reason: string): boolean {
    if (this.phase !== "stopped") {
      this.phase = "stopped";
      this.options.logger.debug({ reason }, "nbd: connection stopping");
      clearTimeout(this.handshakeTimer);
      this.handshakeTimer = undefined;
      this.queue.clear();
      // Keep reading (and discarding) so that the client's close is seen and no RST is provoked.
      if (this.socketPaused) {
        this.socketPaused = false;
        this.socket.resume();
      }
    }
    this.finishIfIdle();
    return false;
  }

  /** A protocol violation in the handshake or a timeout: end now (nothing is in flight there). */
  private abort(reason: string): boolean {
    this.options.logger.info({ reason }, "nbd: closing connection");
    return this.stop(reason);
  }

  private finishIfIdle(): void {
    if (this.inFlightCount > 0) return;
    if (!this.socketClosed) {
      if (this.corked) this.endRequested = true; // end after the batched replies are uncorked
      else this.endSocket();
      return;
    }
    if (this.finished) return;
    this.finished = true;
    clearTimeout(this.closeTimer);
    if (this.nbdExport !== undefined) this.nbdExport.detach();
    this.options.onClosed(this);
  }

  private endSocket(): void {
    this.endRequested = false;
    if (this.socket.writableEnded) return;
    this.socket.end();
    this.closeTimer = setTimeout(() => this.socket.destroy(), nbdLimits.closeTimeoutMs);
    this.closeTimer.unref();
  }
}

function uncork(connection: NbdConnection): void {
  connection.uncorkNow();
}
