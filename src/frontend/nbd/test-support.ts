// Helpers for the NBD tests: start a server on 127.0.0.1 with a free port over memory exports, run a
// client tool as a child process bounded in time (killed by its pid), and a raw-socket NBD client for
// sending exactly the bytes a test wants (including malformed ones).
// Imported only by src/frontend/nbd/*.test.ts.
// Limits: every wait here has a timeout (toolTimeoutMsDefault, rawReadTimeoutMs) so a test fails
// instead of hanging.

import { spawn } from "node:child_process";
import { connect, type Socket } from "node:net";
import { silentLogger } from "../../base/index.js";
import { MemoryExport, StaticExportProvider, type MemoryExportOptions } from "./memory-export.js";
import {
  decodeOptionReplyHeader, decodeSimpleReplyHeader, decodeStructuredReplyHeader, STRUCTURED_REPLY_HEADER_BYTES, encodeInfoRequest, encodeOptionHeader, encodeRequestHeader,
  measureInfoRequest, NBD_FLAG_C_FIXED_NEWSTYLE, NBD_FLAG_C_NO_ZEROES, NBD_INFO_BLOCK_SIZE, NBD_OPT_GO, NBD_REP_ACK,
  OPTION_HEADER_BYTES, OPTION_REPLY_HEADER_BYTES, REQUEST_HEADER_BYTES, SIMPLE_REPLY_HEADER_BYTES, type RequestHeader,
} from "./protocol.js";
import { NbdServer } from "./server.js";

export const toolTimeoutMsDefault = 60_000;
const rawReadTimeoutMs = 10_000;

export interface TestServer {
  server: NbdServer;
  port: number;
  exports: MemoryExport[];
  uri(name: string): string;
}

export async function startTestServer(exportOptions: MemoryExportOptions[], defaultExportName?: string): Promise<TestServer> {
  const exports = exportOptions.map((o) => new MemoryExport(o));
  const server = new NbdServer({ provider: new StaticExportProvider(exports), host: "127.0.0.1", port: 0, logger: silentLogger(), defaultExportName });
  const port = await server.listen();
  return { server, port, exports, uri: (name) => `nbd://127.0.0.1:${port}/${name}` };
}

export interface ToolResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs a command (no shell); kills it by pid after timeoutMs. Rejects if it cannot be started. */
export function runTool(command: string, args: string[], timeoutMs = toolTimeoutMsDefault): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      if (child.pid !== undefined) process.kill(child.pid, "SIGKILL");
    }, timeoutMs);
    child.on("error", (error) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${command}: ${error.message}`));
    });
    child.on("close", (exitCode, signal) => {
      clearTimeout(timer);
      resolve({ exitCode, signal, stdout, stderr });
    });
  });
}

/** A raw NBD client over a socket: sends exactly what it is told, reads exactly what it asks for. */
export class RawClient {
  private buffered = Buffer.alloc(0);
  private closed = false;
  private waiter: (() => void) | undefined;

  private constructor(readonly socket: Socket) {
    socket.on("data", (chunk: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, chunk]);
      this.wake();
    });
    socket.on("close", () => {
      this.closed = true;
      this.wake();
    });
    socket.on("error", () => undefined);
  }

  static async connect(port: number): Promise<RawClient> {
    const socket = connect({ host: "127.0.0.1", port });
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    return new RawClient(socket);
  }

  private wake(): void {
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.();
  }

  /** Resolves with exactly `byteCount` bytes, or rejects if the socket closes first or on timeout. */
  async read(byteCount: number): Promise<Buffer> {
    const deadline = Date.now() + rawReadTimeoutMs;
    while (this.buffered.length < byteCount) {
      if (this.closed) throw new Error(`connection closed with ${this.buffered.length} of ${byteCount} bytes`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${byteCount} bytes`);
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
        setTimeout(resolve, left).unref();
      });
    }
    const out = this.buffered.subarray(0, byteCount);
    this.buffered = this.buffered.subarray(byteCount);
    return out;
  }

  /** Resolves true once the server has closed the connection (after reading anything pending). */
  async waitClosed(timeoutMs = rawReadTimeoutMs): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
        setTimeout(resolve, left).unref();
      });
    }
    return true;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  send(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  /** Reads the greeting and sends client flags (FIXED_NEWSTYLE | NO_ZEROES). */
  async greet(): Promise<Buffer> {
    const greeting = await this.read(18);
    const flags = Buffer.alloc(4);
    flags.writeUInt32BE(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    this.send(flags);
    return greeting;
  }

  sendOption(option: number, data: Buffer): void {
    const header = Buffer.alloc(OPTION_HEADER_BYTES);
    encodeOptionHeader(header, 0, option, data.length);
    this.send(Buffer.concat([header, data]));
  }

  /** Reads one option reply; returns its header fields and data. */
  async readOptionReply(): Promise<{ option: number; replyType: number; data: Buffer }> {
    const header = decodeOptionReplyHeader(await this.read(OPTION_REPLY_HEADER_BYTES), 0);
    if (!header.ok) throw new Error(header.reason);
    return { option: header.value.option, replyType: header.value.replyType, data: await this.read(header.value.dataBytes) };
  }

  /** Greets and enters transmission on `name` with NBD_OPT_GO; returns the NBD_INFO_EXPORT data. */
  async go(name: string): Promise<{ sizeBytes: number; transmissionFlags: number }> {
    await this.greet();
    const request = { exportName: name, infoTypes: [NBD_INFO_BLOCK_SIZE] };
    const data = Buffer.alloc(measureInfoRequest(request));
    encodeInfoRequest(data, 0, request);
    this.sendOption(NBD_OPT_GO, data);
    let info: { sizeBytes: number; transmissionFlags: number } | undefined;
    for (;;) {
      const reply = await this.readOptionReply();
      if (reply.replyType === NBD_REP_ACK) break;
      if (reply.replyType >= 0x80000000) throw new Error(`NBD_OPT_GO failed: 0x${reply.replyType.toString(16)} ${reply.data.toString()}`);
      if (reply.data.readUInt16BE(0) === 0) {
        info = { sizeBytes: Number(reply.data.readBigUInt64BE(2)), transmissionFlags: reply.data.readUInt16BE(10) };
      }
    }
    if (info === undefined) throw new Error("NBD_OPT_GO: no NBD_INFO_EXPORT");
    return info;
  }

  sendRequest(header: Partial<RequestHeader> & { type: number }, payload?: Buffer): void {
    const bytes = Buffer.alloc(REQUEST_HEADER_BYTES);
    encodeRequestHeader(bytes, 0, { commandFlags: 0, handleHi: 0, handleLo: 0, offsetBytes: 0, lengthBytes: payload?.length ?? 0, ...header });
    this.send(payload === undefined ? bytes : Buffer.concat([bytes, payload]));
  }

  /** Reads one simple reply header (and `dataBytes` of data when the reply has no error). */
  async readReply(dataBytes = 0): Promise<{ error: number; handleLo: number; handleHi: number; data: Buffer }> {
    const header = decodeSimpleReplyHeader(await this.read(SIMPLE_REPLY_HEADER_BYTES), 0);
    if (!header.ok) throw new Error(header.reason);
    const data = header.value.error === 0 && dataBytes > 0 ? await this.read(dataBytes) : Buffer.alloc(0);
    return { ...header.value, data };
  }

  /** Reads one structured reply chunk: its header fields and payload. */
  async readChunk(): Promise<{ flags: number; type: number; handleHi: number; handleLo: number; payload: Buffer }> {
    const header = decodeStructuredReplyHeader(await this.read(STRUCTURED_REPLY_HEADER_BYTES), 0);
    if (!header.ok) throw new Error(header.reason);
    const { payloadBytes, ...fields } = header.value;
    return { ...fields, payload: await this.read(payloadBytes) };
  }

  close(): void {
    this.socket.destroy();
  }
}
