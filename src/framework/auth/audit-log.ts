// The audit log: one JSON line per change made through the API (every request that is not GET, HEAD
// or OPTIONS, whatever its outcome, token requests included) and per run the scheduler started on its
// own (automatic snapshots, scrubs, verifications: method SCHEDULE, subject "scheduler"), appended to <data dir>/audit.log on the
// node that served it (docs/formats/audit-log.md). A file rather than the cluster store: a write per
// change would cost a store round trip on every request and grow the store without bound; a file is
// rotated by size (one older generation kept, audit.log.1) and is where log shippers look.
// Passwords, secrets and tokens never appear in it. Imported by the auth plugin and node.ts.

import fs from "node:fs";
import path from "node:path";

export interface AuditEntry {
  time: string;
  reqId: string;
  method: string;
  /** The route pattern (e.g. /api/v1/vdisks/:name), or the URL path when no route matched. */
  route: string;
  url: string;
  status: number;
  /** "user:NAME" or "client:ID" of the caller; for a token request, who asked; "-" when unknown. */
  subject: string;
  remoteAddress: string;
  durationMs: number;
  /** The task the request started (a long operation answered 202), when it started one. */
  taskId?: string;
  /** The object a request names only in its body (the name of a created vDisk, vPool, user, ...). */
  target?: string;
  /** A scheduled run's outcome in one sentence (method SCHEDULE). */
  message?: string;
}

/** The log is rotated once it passes this size. */
export const auditLogBytesMax = 64 * 1024 * 1024;

export class AuditLog {
  private stream: fs.WriteStream | undefined;
  private sizeBytes = 0;

  constructor(readonly filePath: string, private readonly sizeBytesMax = auditLogBytesMax) {}

  static inDataDir(dataDir: string): AuditLog {
    return new AuditLog(path.join(dataDir, "audit.log"));
  }

  write(entry: AuditEntry): void {
    const line = JSON.stringify(entry) + "\n";
    if (this.stream === undefined) this.open();
    else if (this.sizeBytes + line.length > this.sizeBytesMax) this.rotate();
    this.stream!.write(line);
    this.sizeBytes += Buffer.byteLength(line);
  }

  async close(): Promise<void> {
    const stream = this.stream;
    this.stream = undefined;
    if (stream) await new Promise<void>((resolve) => stream.end(resolve));
  }

  private open(): void {
    try {
      this.sizeBytes = fs.statSync(this.filePath).size;
    } catch {
      this.sizeBytes = 0;
    }
    this.stream = this.openStream();
  }

  /** Opened synchronously, so the file exists (and can be renamed) as soon as this returns. */
  private openStream(): fs.WriteStream {
    const fd = fs.openSync(this.filePath, "a", 0o600);
    return fs.createWriteStream(this.filePath, { fd });
  }

  private rotate(): void {
    const old = this.stream!;
    old.end();
    // The old stream keeps its descriptor until its pending lines are written, so none is lost.
    fs.renameSync(this.filePath, `${this.filePath}.1`);
    this.stream = this.openStream();
    this.sizeBytes = 0;
  }
}
