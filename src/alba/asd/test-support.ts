// Helpers for the ASD tests: an ASD on 127.0.0.1 with a free port in a fresh temporary directory, a
// claimed client, a fake statfs, and a raw-socket client that sends exactly the bytes a test wants
// (including malformed ones) after doing the prologue by hand.
// Imported only by src/alba/asd/*.test.ts.
// Limits: every wait here has a timeout (rawReadTimeoutMs) so a test fails instead of hanging.

import { mkdtemp, rm } from "node:fs/promises";
import { connect, type Socket } from "node:net";
import os from "node:os";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { silentLogger } from "../../base/index.js";
import { AsdClient, type AsdClientOptions } from "./asd-client.js";
import { ChunkQueue } from "../../base/index.js";
import { AsdServer, type AsdServerOptions } from "./asd-server.js";
import type { FilesystemSpace } from "./asd-store.js";
import {
  AUTH_REPLY_FIXED_BYTES, CLIENT_HELLO_BYTES, clientProof, decodeAuthReplyFixed, decodeFrameHeader, decodeServerHello, encodeClientAuth,
  encodeClientHello, FRAME_HEADER_BYTES, FRAME_KIND_RESPONSE, measureClientAuth, PROTOCOL_VERSION, SERVER_HELLO_BYTES, type FrameHeader,
} from "./protocol.js";

export const testSecret = "test-cluster-secret";
export const testBackendId = "backend-test-1";
const rawReadTimeoutMs = 10_000;

export async function makeTempDir(prefix = "ovs-asd-test-"): Promise<{ dir: string; remove: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

export interface TestAsd {
  server: AsdServer;
  port: number;
  dir: string;
  /** Closes the server (idempotent). */
  stop: () => Promise<void>;
}

export async function startTestAsd(dir: string, options: Partial<AsdServerOptions> = {}): Promise<TestAsd> {
  const server = await AsdServer.start({ dir, host: "127.0.0.1", port: 0, clusterSecret: testSecret, logger: silentLogger(), ...options });
  return { server, port: server.port, dir, stop: () => server.close() };
}

export async function connectTestClient(port: number, options: Partial<AsdClientOptions> = {}): Promise<AsdClient> {
  return AsdClient.connect({ host: "127.0.0.1", port, clusterSecret: testSecret, backendId: testBackendId, requestTimeoutMs: 20_000, ...options });
}

/** A statfs whose answer the test sets. */
export class FakeStatfs {
  space: FilesystemSpace = { totalBytes: 100 * 2 ** 30, freeBytes: 90 * 2 ** 30 };
  readonly source = async (_dir: string): Promise<FilesystemSpace> => ({ ...this.space });
  /** Sets the fill level as a fraction of totalBytes. */
  fill(fraction: number): void {
    this.space = { totalBytes: this.space.totalBytes, freeBytes: Math.round(this.space.totalBytes * (1 - fraction)) };
  }
}

export const text = (value: string): Buffer => Buffer.from(value, "utf8");

/** Deterministic pseudo-random bytes (so failures replay). */
export function patternBytes(byteCount: number, seed: number): Buffer {
  const bytes = Buffer.allocUnsafe(byteCount);
  let state = (seed * 2654435761) >>> 0 || 1;
  for (let index = 0; index < byteCount; index++) {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    bytes[index] = state & 0xff;
  }
  return bytes;
}

/** A raw ASD client over a socket: sends exactly what it is told, reads exactly what it asks for. */
export class RawAsdClient {
  private readonly buffered = new ChunkQueue();
  private closed = false;
  private waiter: (() => void) | undefined;

  private constructor(readonly socket: Socket) {
    socket.on("data", (chunk: Buffer) => {
      this.buffered.push(chunk);
      this.wake();
    });
    socket.on("close", () => {
      this.closed = true;
      this.wake();
    });
    socket.on("error", () => undefined);
  }

  static async connect(port: number): Promise<RawAsdClient> {
    const socket = connect({ host: "127.0.0.1", port });
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    return new RawAsdClient(socket);
  }

  /** Connects and runs the prologue; returns the auth reply's status and message. */
  static async authenticated(port: number, secret = testSecret, backendId = testBackendId): Promise<RawAsdClient> {
    const client = await RawAsdClient.connect(port);
    const reply = await client.prologue(secret, backendId);
    if (reply.status !== 0) throw new Error(`prologue refused: ${reply.status} ${reply.message}`);
    return client;
  }

  async prologue(secret: string, backendId: string): Promise<{ status: number; flags: number; message: string }> {
    const clientNonce = randomBytes(16);
    const hello = Buffer.alloc(CLIENT_HELLO_BYTES);
    encodeClientHello(hello, 0, { version: PROTOCOL_VERSION, clientNonce });
    this.send(hello);
    const serverHello = decodeServerHello(await this.read(SERVER_HELLO_BYTES), 0);
    if (!serverHello.ok) throw new Error(serverHello.reason);
    const auth = { proof: clientProof(secret, clientNonce, serverHello.value.serverNonce, serverHello.value.asdId, backendId), backendId };
    const authBytes = Buffer.alloc(measureClientAuth(auth));
    encodeClientAuth(authBytes, 0, auth);
    this.send(authBytes);
    const fixed = decodeAuthReplyFixed(await this.read(AUTH_REPLY_FIXED_BYTES), 0);
    if (!fixed.ok) throw new Error(fixed.reason);
    const message = (await this.read(fixed.value.messageBytes)).toString("utf8");
    return { status: fixed.value.status, flags: fixed.value.flags, message };
  }

  private wake(): void {
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.();
  }

  async read(byteCount: number): Promise<Buffer> {
    const deadline = Date.now() + rawReadTimeoutMs;
    while (this.buffered.byteCount < byteCount) {
      if (this.closed) throw new Error(`connection closed with ${this.buffered.byteCount} of ${byteCount} bytes`);
      const leftMs = deadline - Date.now();
      if (leftMs <= 0) throw new Error(`timed out waiting for ${byteCount} bytes`);
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
        setTimeout(resolve, leftMs).unref();
      });
    }
    return Buffer.from(this.buffered.take(byteCount));
  }

  /** Reads one response frame. */
  async readFrame(): Promise<{ header: FrameHeader; body: Buffer }> {
    const header = decodeFrameHeader(await this.read(FRAME_HEADER_BYTES), 0, FRAME_KIND_RESPONSE);
    if (!header.ok) throw new Error(header.reason);
    return { header: header.value, body: await this.read(header.value.bodyBytes) };
  }

  async waitClosed(timeoutMs = rawReadTimeoutMs): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) {
      const leftMs = deadline - Date.now();
      if (leftMs <= 0) return false;
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
        setTimeout(resolve, leftMs).unref();
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

  close(): void {
    this.socket.destroy();
  }
}
