// NbdServer: listens on TCP and serves the provider's exports over NBD (fixed newstyle), one
// NbdConnection per client. What it implements of the protocol: docs/formats/nbd.md.
// Imported through src/frontend/nbd/index.ts.
//
// Invariants: a connection's failure never touches another (each has its own socket, queue and
// state; export errors become NBD error replies). close() stops accepting, lets each transmission
// finish its in-flight requests, ends every connection, and resolves once all sockets are closed
// (sockets still open after closeTimeoutMs are destroyed).
// Limits: connectionCountMax concurrent connections (further ones are closed on accept); the rest
// are per connection, in limits.ts.

import { createServer, type Server, type Socket } from "node:net";
import { assert, OvsError, type Logger } from "../../base/index.js";
import { NbdConnection } from "./connection.js";
import { nbdLimits } from "./limits.js";
import type { NbdExportProvider } from "./nbd-export.js";

export interface NbdServerOptions {
  provider: NbdExportProvider;
  /** Address to listen on, e.g. "127.0.0.1" or "::". */
  host: string;
  /** TCP port; 0 picks a free one (see port after listen()). The IANA port for NBD is 10809. */
  port: number;
  logger: Logger;
  /** The export that the empty name ("") selects when the provider has none called "". */
  defaultExportName?: string;
}

export class NbdServer {
  private readonly server: Server;
  private readonly connections = new Set<NbdConnection>();
  private readonly idleWaiters: Array<() => void> = [];
  private listening = false;
  private closing: Promise<void> | undefined;

  constructor(private readonly options: NbdServerOptions) {
    this.server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => this.accept(socket));
    this.server.on("error", (error) => options.logger.error({ err: error }, "nbd: server error"));
  }

  /** Starts listening; resolves with the bound port. Rejects with UNAVAILABLE if it cannot bind. */
  async listen(): Promise<number> {
    assert(!this.listening && this.closing === undefined, "NbdServer.listen: called twice or after close");
    await new Promise<void>((resolve, reject) => {
      const onError = (error: Error) => reject(new OvsError("UNAVAILABLE", `NBD server cannot listen on ${this.options.host}:${this.options.port}: ${error.message}`, undefined, { cause: error }));
      this.server.once("error", onError);
      this.server.listen(this.options.port, this.options.host, () => {
        this.server.off("error", onError);
        resolve();
      });
    });
    this.listening = true;
    this.options.logger.info({ host: this.options.host, port: this.port }, "nbd: listening");
    return this.port;
  }

  /** The bound port (after listen()). */
  get port(): number {
    const address = this.server.address();
    assert(address !== null && typeof address === "object", "NbdServer.port: not listening");
    return address.port;
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  /** Cuts every connection that selected `exportName` (e.g. its vDisk is being deleted by force). */
  disconnectExport(exportName: string): number {
    let count = 0;
    for (const connection of this.connections) {
      if (connection.exportName === exportName) {
        connection.destroy();
        count++;
      }
    }
    return count;
  }

  /** Stops accepting, ends all connections after their in-flight requests, waits until all are closed. */
  close(): Promise<void> {
    this.closing ??= this.closeNow();
    return this.closing;
  }

  private async closeNow(): Promise<void> {
    const stopped = this.listening ? new Promise<void>((resolve) => this.server.close(() => resolve())) : Promise.resolve();
    this.listening = false;
    for (const connection of this.connections) connection.shutdown();
    const idle = this.connections.size === 0 ? Promise.resolve() : new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    const timer = setTimeout(() => {
      for (const connection of this.connections) connection.destroy();
    }, nbdLimits.closeTimeoutMs);
    try {
      await idle;
      await stopped;
    } finally {
      clearTimeout(timer);
    }
    this.options.logger.info("nbd: closed");
  }

  private accept(socket: Socket): void {
    if (this.closing !== undefined || this.connections.size >= nbdLimits.connectionCountMax) {
      this.options.logger.warn({ connectionCount: this.connections.size }, "nbd: refusing connection");
      socket.on("error", () => undefined);
      socket.destroy();
      return;
    }
    const connection = new NbdConnection(socket, {
      provider: this.options.provider,
      defaultExportName: this.options.defaultExportName,
      logger: this.options.logger,
      onClosed: (closed) => this.onClosed(closed),
    });
    this.connections.add(connection);
  }

  private onClosed(connection: NbdConnection): void {
    this.connections.delete(connection);
    if (this.connections.size === 0) {
      for (const resolve of this.idleWaiters.splice(0)) resolve();
    }
  }
}
