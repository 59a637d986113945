// Background uploads of a volume's SCOs and TLogs to the object backend, in order (DESIGN.md §4.3):
// SCOs upload in parallel (at most uploadsInFlightMax), a TLog is a barrier: it starts only when every
// item queued before it is stored, so a TLog on the backend never names a SCO that is not there.
// Failed uploads are retried with backoff until they succeed or the uploader stops; nothing is dropped.
// Owned by one Volume.

import fsp from "node:fs/promises";
import type { Logger } from "../base/index.js";
import type { ObjectBackend } from "../backend/index.js";
import { scoName } from "./sco-name.js";

type Item =
  | { kind: "sco"; scoNumber: number; file: string; data: Buffer | undefined }
  | { kind: "tlog"; seq: number; id: string; file: string; scoNumbers: number[] };

export const uploaderLimits = {
  uploadsInFlightMax: 4,
  retryDelayMsMin: 200,
  retryDelayMsMax: 30_000,
} as const;

export class Uploader {
  private readonly queue: Item[] = [];
  private inFlight = 0;
  private stopped = false;
  private idleWaiters: Array<() => void> = [];
  private readonly running = new Set<Promise<void>>();
  private readonly counters = { scoUploads: 0, tlogUploads: 0, failures: 0 };

  constructor(
    private readonly options: {
      backend: ObjectBackend;
      namespace: string;
      log: Logger;
      onTlogStored: (seq: number, scoNumbers: number[]) => Promise<void>;
    },
  ) {}

  /**
   * Queues a closed SCO. `data` is its content when the caller still has it in memory: it is uploaded
   * from there (no re-read of the file) if few uploads are queued; a long queue (a slow or absent
   * backend) reads the file instead, so memory stays bounded.
   */
  enqueueSco(scoNumber: number, file: string, data?: Buffer): void {
    const keep = data !== undefined && this.queue.length < uploaderLimits.uploadsInFlightMax * 2;
    this.queue.push({ kind: "sco", scoNumber, file, data: keep ? data : undefined });
    this.pump();
  }

  enqueueTlog(seq: number, id: string, file: string, scoNumbers: number[]): void {
    this.queue.push({ kind: "tlog", seq, id, file, scoNumbers: [...scoNumbers] });
    this.pump();
  }

  stats(): { scoUploads: number; tlogUploads: number; failures: number; pending: number } {
    return { ...this.counters, pending: this.queue.length + this.inFlight };
  }

  /** Resolves when the queue is empty and nothing is in flight. */
  idle(): Promise<void> {
    if (this.queue.length === 0 && this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Stops taking new items and waits for the ones in flight (the queue is rebuilt at the next open). */
  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.allSettled([...this.running]);
    for (const waiter of this.idleWaiters.splice(0)) waiter();
  }

  private pump(): void {
    while (!this.stopped && this.queue.length > 0 && this.inFlight < uploaderLimits.uploadsInFlightMax) {
      const item = this.queue[0]!;
      if (item.kind === "tlog" && this.inFlight > 0) break; // barrier: wait for everything before it
      this.queue.shift();
      this.inFlight++;
      const run = this.upload(item).finally(() => {
        this.running.delete(run);
        this.inFlight--;
        this.pump();
        if (this.queue.length === 0 && this.inFlight === 0) for (const waiter of this.idleWaiters.splice(0)) waiter();
      });
      this.running.add(run);
      if (item.kind === "tlog") break; // and nothing after it starts until it is stored
    }
  }

  private async upload(item: Item): Promise<void> {
    const { backend, namespace, log } = this.options;
    let delayMs: number = uploaderLimits.retryDelayMsMin;
    while (!this.stopped) {
      try {
        const data = item.kind === "sco" && item.data !== undefined ? item.data : await fsp.readFile(item.file);
        if (item.kind === "sco") {
          await backend.put(namespace, scoName({ cloneId: 0, scoNumber: item.scoNumber, version: 0 }), data);
          this.counters.scoUploads++;
        } else {
          await backend.put(namespace, item.id, data);
          this.counters.tlogUploads++;
          await this.options.onTlogStored(item.seq, item.scoNumbers);
        }
        return;
      } catch (error) {
        this.counters.failures++;
        if (item.kind === "sco") item.data = undefined; // retries read the file: do not pin memory
        log.warn({ err: error, item: item.kind === "sco" ? item.scoNumber : item.id, retryInMs: delayMs }, "upload failed; retrying");
        await new Promise((resolve) => setTimeout(resolve, delayMs));
        delayMs = Math.min(delayMs * 2, uploaderLimits.retryDelayMsMax);
      }
    }
  }
}
