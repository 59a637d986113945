// AsdServer: the ASD daemon. Listens on TCP, authenticates clients (cluster secret, backend id; see
// asd-connection.ts) and serves the operations of docs/formats/asd-protocol.md from an AsdStore.
// runAsd() is what `ovs asd --dir DIR --port PORT` calls; asd-main.ts runs it from argv.
// Imported through src/alba/asd/index.ts.
//
// Invariants:
// - Data operations (multi-get, partial get, apply, range, range-entries) are served only to the backend
//   that claimed the ASD (notClaimed before a claim, claimedByOther after another's), checked per request;
//   capabilities, disk usage, statistics and claim are served to any authenticated client.
// - A connection's failure never touches another; bad input never crashes the daemon (connection.ts).
// - close() stops accepting, lets in-flight requests finish, ends every connection, then closes the store.
// - Fault injection (setFaults) is for tests: a delay before every request and/or an error for chosen
//   operations; injected failures are counted (injectedFaults) so nobody mistakes them for real ones.
// Limits: connectionCountMax connections; the rest per connection (limits.ts) or in the store.

import { createServer, type Server, type Socket } from "node:net";
import { performance } from "node:perf_hooks";
import { assert, OvsError, type Logger } from "../../base/index.js";
import { AsdConnection, type ConnectionHost } from "./asd-connection.js";
import { AsdStore, type StatfsSource } from "./asd-store.js";
import { asdLimits } from "./limits.js";
import { capacityStatfs } from "./capacity.js";
import {
  asdOpNames, PROTOCOL_VERSION, type AsdCapabilities, type AsdOpName, type AsdRequest, type AsdResponse, type AsdStatistics,
  type CounterName, type OpStatistics,
} from "./protocol.js";

export interface AsdFaults {
  /** Every request waits this long before it is served. */
  delayMs?: number;
  /** These operations fail (after the delay) with failCode. */
  failOps?: AsdOpName[];
  /** The error injected failures carry: IO_ERROR (default) or UNAVAILABLE. */
  failCode?: "IO_ERROR" | "UNAVAILABLE";
}

export interface AsdServerOptions {
  /** The ASD's directory (one disk or directory); created if missing. */
  dir: string;
  /** Address to listen on, e.g. "127.0.0.1" or "::". */
  host: string;
  /** TCP port; 0 picks a free one (see port after start). Default ASD ports are 8600 + n. */
  port: number;
  /** The cluster secret clients must prove; undefined means the empty secret (anyone who speaks the protocol). */
  clusterSecret?: string;
  logger: Logger;
  /** Injectable disk-space source and threshold (tests); defaults: fs.statfs of dir, 0.99. */
  statfs?: StatfsSource;
  fullThreshold?: number;
  statfsCacheMs?: number;
  faults?: AsdFaults;
}

const dataOps = new Set<AsdOpName>(["multiGet", "partialGet", "apply", "range", "rangeEntries"]);

export class AsdServer {
  readonly store: AsdStore;
  private readonly server: Server;
  private readonly connections = new Set<AsdConnection>();
  private readonly idleWaiters: Array<() => void> = [];
  private readonly host: ConnectionHost;
  private readonly opStatistics = new Map<AsdOpName, OpStatistics>();
  private readonly serverCounters = { authFailures: 0, malformedFrames: 0, connectionsAccepted: 0, injectedFaults: 0 };
  private faults: AsdFaults;
  private closing: Promise<void> | undefined;

  private constructor(store: AsdStore, private readonly options: AsdServerOptions) {
    this.store = store;
    this.faults = options.faults ?? {};
    const logger = options.logger;
    const secret = options.clusterSecret ?? "";
    this.host = {
      asdId: store.asdId,
      clusterSecret: secret,
      logger,
      claimedBy: () => store.claimedBy,
      dispatch: (request, backendId) => this.dispatch(request, backendId),
      countAuthFailure: () => void this.serverCounters.authFailures++,
      countMalformedFrame: () => void this.serverCounters.malformedFrames++,
      onClosed: (connection) => this.onClosed(connection),
    };
    this.server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => this.accept(socket));
    this.server.on("error", (error) => logger.error({ err: error }, "asd: server error"));
  }

  /** Opens the store and starts listening. Rejects with IN_USE, UNAVAILABLE (cannot bind), IO_ERROR, CORRUPT. */
  static async start(options: AsdServerOptions): Promise<AsdServer> {
    const store = await AsdStore.open({
      dir: options.dir,
      logger: options.logger,
      statfs: options.statfs,
      fullThreshold: options.fullThreshold,
      statfsCacheMs: options.statfsCacheMs,
    });
    const server = new AsdServer(store, options);
    try {
      await new Promise<void>((resolve, reject) => {
        const onError = (error: Error) => reject(new OvsError("UNAVAILABLE", `The ASD cannot listen on ${options.host}:${options.port}: ${error.message}`, undefined, { cause: error }));
        server.server.once("error", onError);
        server.server.listen(options.port, options.host, () => {
          server.server.off("error", onError);
          resolve();
        });
      });
    } catch (error) {
      await store.close();
      throw error;
    }
    options.logger.info({ dir: store.dir, host: options.host, port: server.port, asdId: server.asdId, claimedBy: store.claimedBy }, "asd: listening");
    return server;
  }

  get port(): number {
    const address = this.server.address();
    assert(address !== null && typeof address === "object", "AsdServer.port: not listening");
    return address.port;
  }

  /** The ASD's id as 32 hex digits. */
  get asdId(): string {
    return this.store.asdId.toString("hex");
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  /** Test hook: replaces the injected faults ({} for none). */
  setFaults(faults: AsdFaults): void {
    this.faults = { ...faults };
  }

  statistics(): AsdStatistics {
    const ops: AsdStatistics["ops"] = {};
    for (const [name, s] of this.opStatistics) ops[name] = { ...s, latencyUsTotal: Math.round(s.latencyUsTotal), latencyUsMax: Math.round(s.latencyUsMax) };
    const counters: Record<CounterName, number> = {
      ...this.store.counters,
      ...this.serverCounters,
      connectionsOpen: this.connections.size,
    };
    return { ops, counters };
  }

  private resetStatistics(): void {
    this.opStatistics.clear();
    for (const name of Object.keys(this.serverCounters) as Array<keyof typeof this.serverCounters>) this.serverCounters[name] = 0;
    for (const name of Object.keys(this.store.counters) as Array<keyof typeof this.store.counters>) this.store.counters[name] = 0;
  }

  capabilities(): AsdCapabilities {
    const l = asdLimits;
    return {
      version: PROTOCOL_VERSION,
      ops: [...asdOpNames],
      frameBodyBytesMax: l.frameBodyBytesMax,
      keyBytesMax: l.keyBytesMax,
      valueBytesMax: l.valueBytesMax,
      inlineValueBytesMax: l.inlineValueBytesMax,
      keysPerRequestMax: l.keysPerRequestMax,
      rangesPerRequestMax: l.rangesPerRequestMax,
      inFlightRequestsMax: l.inFlightRequestsMax,
      rangeLimitMax: l.rangeLimitMax,
    };
  }

  private async dispatch(request: AsdRequest, backendId: string): Promise<AsdResponse> {
    const startMs = performance.now();
    let failed = false;
    try {
      return await this.serve(request, backendId);
    } catch (error) {
      failed = true;
      throw error;
    } finally {
      const latencyUs = (performance.now() - startMs) * 1000;
      let s = this.opStatistics.get(request.op);
      if (s === undefined) {
        s = { count: 0, errorCount: 0, latencyUsTotal: 0, latencyUsMax: 0 };
        this.opStatistics.set(request.op, s);
      }
      s.count++;
      if (failed) s.errorCount++;
      s.latencyUsTotal += latencyUs;
      if (latencyUs > s.latencyUsMax) s.latencyUsMax = latencyUs;
    }
  }

  private async serve(request: AsdRequest, backendId: string): Promise<AsdResponse> {
    const faults = this.faults;
    if (faults.delayMs !== undefined && faults.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, faults.delayMs));
    if (faults.failOps?.includes(request.op) === true) {
      this.serverCounters.injectedFaults++;
      throw new OvsError(faults.failCode ?? "IO_ERROR", `Injected fault: ${request.op} fails on this ASD (test fault injection).`);
    }
    if (this.closing !== undefined) throw new OvsError("UNAVAILABLE", "The ASD is shutting down.");
    const store = this.store;
    if (dataOps.has(request.op)) {
      const claimedBy = store.claimedBy;
      if (claimedBy === undefined) {
        throw new OvsError("CONFLICT", "This ASD is not claimed yet; claim it (CLAIM) before storing or reading data.", { reason: "notClaimed" });
      }
      if (claimedBy !== backendId) {
        throw new OvsError("CONFLICT", `This ASD is claimed by backend ${claimedBy}, not by ${backendId}.`, { reason: "claimedByOther" });
      }
    }
    switch (request.op) {
      case "capabilities":
        return { op: "capabilities", capabilities: this.capabilities() };
      case "claim":
        return { op: "claim", newlyClaimed: await store.claim(backendId) };
      case "multiGet":
        return { op: "multiGet", results: await store.multiGet(request.keys) };
      case "partialGet":
        return { op: "partialGet", results: await store.partialGet(request.items) };
      case "apply":
        await store.apply(request.asserts, request.updates);
        return { op: "apply" };
      case "range":
        return { op: "range", ...store.range(request.query) };
      case "rangeEntries":
        return { op: "rangeEntries", ...(await store.rangeEntries(request.query)) };
      case "diskUsage":
        return { op: "diskUsage", usage: await store.diskUsage() };
      case "statistics": {
        const statistics = this.statistics();
        if (request.reset) this.resetStatistics();
        return { op: "statistics", statistics };
      }
    }
  }

  /** Stops accepting, lets in-flight requests finish, ends all connections, closes the store. */
  close(): Promise<void> {
    this.closing ??= this.closeNow();
    return this.closing;
  }

  private async closeNow(): Promise<void> {
    const stopped = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const connection of this.connections) connection.shutdown();
    const idle = this.connections.size === 0 ? Promise.resolve() : new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    const timer = setTimeout(() => {
      for (const connection of this.connections) connection.destroy();
    }, asdLimits.closeTimeoutMs);
    try {
      await idle;
      await stopped;
    } finally {
      clearTimeout(timer);
    }
    await this.store.close();
    this.options.logger.info({ dir: this.store.dir }, "asd: closed");
  }

  private accept(socket: Socket): void {
    if (this.closing !== undefined || this.connections.size >= asdLimits.connectionCountMax) {
      this.options.logger.warn({ connectionCount: this.connections.size }, "asd: refusing connection");
      socket.on("error", () => undefined);
      socket.destroy();
      return;
    }
    this.serverCounters.connectionsAccepted++;
    this.connections.add(new AsdConnection(socket, this.host));
  }

  private onClosed(connection: AsdConnection): void {
    this.connections.delete(connection);
    if (this.connections.size === 0) {
      for (const resolve of this.idleWaiters.splice(0)) resolve();
    }
  }
}

export interface RunAsdOptions {
  dir: string;
  host: string;
  port: number;
  clusterSecret?: string;
  logger: Logger;
  /** Report at most this many bytes as the ASD's total, and its directory's size as used (capacity.ts). */
  capacityBytes?: number;
}

export interface AsdHandle {
  /** The bound port. */
  readonly port: number;
  /** The ASD's id, 32 hex digits. */
  readonly asdId: string;
  readonly server: AsdServer;
  close(): Promise<void>;
}

/** Starts an ASD daemon on `dir` (what `ovs asd --dir DIR --port PORT` runs). */
export async function runAsd(options: RunAsdOptions): Promise<AsdHandle> {
  const statfs = options.capacityBytes === undefined ? undefined : capacityStatfs(options.capacityBytes);
  const server = await AsdServer.start({ dir: options.dir, host: options.host, port: options.port, clusterSecret: options.clusterSecret, logger: options.logger, statfs });
  return { port: server.port, asdId: server.asdId, server, close: () => server.close() };
}
