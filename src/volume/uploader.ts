// Background uploads of a volume's SCOs and TLogs to the object backend, in order (DESIGN.md §4.3):
// SCOs upload in parallel (at most uploadsInFlightMax); a TLog starts only when every SCO it names that
// was queued is stored, and the TLog before it is, so a TLog on the backend never names a SCO that is
// not there and TLogs are stored in their order. Other SCOs, queued before or after it, do not hold it
// up (a TLog is queued once it is synced, when the next TLog's first SCOs are often queued already). onTlogStored is called in
// TLog order right after each TLog's put; the next TLog's put does not wait for that bookkeeping (the
// volume coalesces it), and a failed bookkeeping is retried by calling onTlogStored again.
// Failed uploads are retried with backoff until they succeed or the uploader stops; nothing is dropped.
// A SCO re-read from its file is checked against its CRC before the put, so a file still being written
// never reaches the backend; an item may also wait for a `ready` promise first.
// Owned by one Volume.

import fsp from "node:fs/promises";
import { crc32c, OvsError, systemErrorCode, type Logger } from "../base/index.js";
import type { ObjectBackend } from "../backend/index.js";
import { scoName } from "./sco-name.js";

type Item =
  | {
    kind: "sco"; scoNumber: number; file: string; data: Buffer | undefined; expectedCrc: number; ready: Promise<void>;
    /** Set when the backend may link the file: resolves once the file holds all of `data`. */
    fileWritten: Promise<void> | undefined; onDataReleased: (() => void) | undefined;
    /** The crc32c of each 4 KiB cluster of `data` (ObjectUpdate.blockCrcs), when the caller has them. */
    blockCrcs: Uint32Array | undefined;
  }
  | { kind: "tlog"; seq: number; id: string; file: string; scoNumbers: number[]; data: Buffer | undefined };

export const uploaderLimits = {
  uploadsInFlightMax: 4,
  retryDelayMsMin: 200,
  retryDelayMsMax: 30_000,
} as const;

export class Uploader {
  private readonly queue: Item[] = [];
  private inFlight = 0;
  /** Bookkeeping of stored TLogs still running (see finishTlog). */
  private background = 0;
  private tlogInFlight = false;
  /** SCO numbers queued or in flight, with how many times (a TLog waits for those it names). */
  private readonly outstandingScos = new Map<number, number>();
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
      /**
       * Stores an object (the volume's fenced put: it asserts the owner tag); default backend.put. `file`,
       * for a SCO on a backend that `linksFiles`: its local file, complete and final (ObjectUpdate.file).
       */
      put?: (name: string, data: Uint8Array, file?: string, blockCrcs?: Uint32Array) => Promise<void>;
      /** An error after which retrying is pointless (the volume was fenced): the item is dropped. */
      isFatal?: (error: unknown) => boolean;
    },
  ) {}

  /**
   * Queues a closed SCO. `data` is its content when the caller still has it in memory: it is uploaded
   * from there (no re-read of the file) if few uploads are queued, or always on a backend that links
   * files; otherwise a long queue (a slow or absent backend) reads the file instead, so memory stays
   * bounded. `onDataReleased` is called once the
   * uploader will not read `data` again: at once if it is not kept, else after the put that used it
   * returned (never while the uploader stops with the item pending: the caller then just drops it).
   */
  enqueueSco(sco: {
    scoNumber: number; file: string; expectedCrc: number; ready: Promise<void>; data?: Buffer;
    /** Resolves once the file holds the whole SCO; only given when the backend links files. */
    fileWritten?: Promise<void> | undefined; onDataReleased?: (() => void) | undefined;
    /** The crc32c of each 4 KiB cluster of `data`, passed with a linked put (ObjectUpdate.blockCrcs). */
    blockCrcs?: Uint32Array | undefined;
  }): void {
    // A backend that links files needs the bytes only for their checksums: re-reading a queued SCO's
    // file (and checking its CRC) would be pure cost (it was ~7 % of the main thread under sequential
    // writes). Memory stays bounded by the write buffer: writes wait above it.
    const keep = sco.data !== undefined && (this.options.backend.linksFiles === true || this.queue.length < uploaderLimits.uploadsInFlightMax * 2);
    this.outstandingScos.set(sco.scoNumber, (this.outstandingScos.get(sco.scoNumber) ?? 0) + 1);
    if (!keep) sco.onDataReleased?.();
    this.queue.push({
      kind: "sco", scoNumber: sco.scoNumber, file: sco.file, expectedCrc: sco.expectedCrc, ready: sco.ready,
      data: keep ? sco.data : undefined, fileWritten: sco.fileWritten, onDataReleased: keep ? sco.onDataReleased : undefined,
      blockCrcs: keep ? sco.blockCrcs : undefined,
    });
    this.pump();
  }

  /** Queues a closed, synced TLog; `data`, when given, is its file's content (not read again). */
  enqueueTlog(seq: number, id: string, file: string, scoNumbers: number[], data?: Buffer): void {
    this.queue.push({ kind: "tlog", seq, id, file, scoNumbers: [...scoNumbers], data });
    this.pump();
  }

  stats(): { scoUploads: number; tlogUploads: number; failures: number; pending: number } {
    return { ...this.counters, pending: this.queue.length + this.inFlight };
  }

  /** Resolves when the queue is empty and nothing is in flight. */
  idle(): Promise<void> {
    if (this.queue.length === 0 && this.inFlight === 0 && this.background === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Stops taking new items and waits for the ones in flight (the queue is rebuilt at the next open). */
  async stop(): Promise<void> {
    this.stopped = true;
    while (this.running.size > 0) await Promise.allSettled([...this.running]);
    for (const waiter of this.idleWaiters.splice(0)) waiter();
  }

  private pump(): void {
    // SCOs upload as soon as there is room; a TLog waits only for what it depends on: the SCOs it names
    // (all queued before it) and the TLog before it (TLogs are stored in order). No SCO waits for a
    // TLog, so a slow TLog cycle never idles the uploads. Waiting for every SCO queued before the TLog
    // instead held each TLog up by the next TLog's SCOs: 150 ms of 330 from a SCO's close to its
    // disposal under sequential writes.
    let tlogBefore = this.tlogInFlight;
    for (let index = 0; index < this.queue.length && !this.stopped && this.inFlight < uploaderLimits.uploadsInFlightMax; ) {
      const item = this.queue[index]!;
      if (item.kind === "tlog" && (tlogBefore || item.scoNumbers.some((scoNumber) => this.outstandingScos.has(scoNumber)))) {
        tlogBefore = true;
        index++;
        continue;
      }
      this.queue.splice(index, 1);
      if (item.kind === "tlog") tlogBefore = true;
      this.start(item);
    }
  }

  private start(item: Item): void {
    this.inFlight++;
    if (item.kind === "tlog") this.tlogInFlight = true;
    const run = this.upload(item).finally(() => {
      this.running.delete(run);
      this.inFlight--;
      if (item.kind === "sco") {
        const left = this.outstandingScos.get(item.scoNumber)! - 1;
        if (left === 0) this.outstandingScos.delete(item.scoNumber);
        else this.outstandingScos.set(item.scoNumber, left);
      }
      else this.tlogInFlight = false;
      this.pump();
      this.notifyIdle();
    });
    this.running.add(run);
  }

  /** Waits for a stored TLog's bookkeeping, calling onTlogStored again (with backoff) after failures. */
  private async finishTlog(item: Item & { kind: "tlog" }, first: Promise<void>): Promise<void> {
    const { log } = this.options;
    let attempt = first;
    let delayMs: number = uploaderLimits.retryDelayMsMin;
    for (;;) {
      try {
        await attempt;
        return;
      } catch (error) {
        this.counters.failures++;
        if (this.stopped || this.options.isFatal?.(error)) {
          log.error({ err: error, item: item.id }, "bookkeeping of a stored TLog failed for good; the next open redoes it");
          return;
        }
        log.warn({ err: error, item: item.id, retryInMs: delayMs }, "bookkeeping of a stored TLog failed; retrying");
        await new Promise((resolve) => setTimeout(resolve, delayMs));
        if (this.stopped) return;
        delayMs = Math.min(delayMs * 2, uploaderLimits.retryDelayMsMax);
        attempt = this.options.onTlogStored(item.seq, item.scoNumbers);
      }
    }
  }

  /** Counts background work (a TLog's bookkeeping) towards idle() and stop(). */
  private track(work: Promise<void>): void {
    this.background++;
    const run = work.finally(() => {
      this.running.delete(run);
      this.background--;
      this.notifyIdle();
    });
    this.running.add(run);
  }

  private notifyIdle(): void {
    if (this.queue.length === 0 && this.inFlight === 0 && this.background === 0) for (const waiter of this.idleWaiters.splice(0)) waiter();
  }

  private releaseData(item: Item & { kind: "sco" }): void {
    const release = item.onDataReleased;
    item.onDataReleased = undefined;
    item.data = undefined;
    release?.();
  }

  private async upload(item: Item): Promise<void> {
    const { backend, namespace, log } = this.options;
    const put = this.options.put ?? ((name: string, data: Uint8Array, file?: string, blockCrcs?: Uint32Array) =>
      file === undefined ? backend.put(namespace, name, data) : backend.apply(namespace, [], [{ kind: "put", name, data, file, ...(blockCrcs ? { blockCrcs } : {}) }]));
    const links = backend.linksFiles === true;
    let delayMs: number = uploaderLimits.retryDelayMsMin;
    while (!this.stopped) {
      try {
        if (item.kind === "sco") {
          const name = scoName({ cloneId: 0, scoNumber: item.scoNumber, version: 0 });
          await item.ready; // e.g. its SCO number is durably reserved (never reused after a crash)
          let data = item.data;
          // From memory the bytes are the ones the CRC was computed from (the volume combines its
          // clusters' CRCs, which every read verifies): only a re-read file needs checking.
          let check = false;
          if (data === undefined) {
            check = true;
            try {
              data = await fsp.readFile(item.file);
            } catch (error) {
              // Gone locally: fine if the backend has it (evicted after a stored TLog); else keep trying.
              if (systemErrorCode(error) === "ENOENT" && (await backend.exists(namespace, name))) return;
              throw error;
            }
          }
          // Never store anything but the SCO's final content (a file still being written reads short).
          if (check && crc32c(data) !== item.expectedCrc) throw new OvsError("CHECKSUM_MISMATCH", `SCO ${name} does not match its CRC yet`);
          // A re-read file matched its CRC, so it is complete; a SCO from memory waits for its file.
          if (links && !check) await item.fileWritten;
          await put(name, data, links ? item.file : undefined, links && !check ? item.blockCrcs : undefined);
          this.counters.scoUploads++;
          this.releaseData(item);
        } else {
          await put(item.id, item.data ?? (await fsp.readFile(item.file)));
          item.data = undefined;
          this.counters.tlogUploads++;
          // Called now, in TLog order; the next TLog may be put while its bookkeeping runs.
          this.track(this.finishTlog(item, this.options.onTlogStored(item.seq, item.scoNumbers)));
        }
        return;
      } catch (error) {
        this.counters.failures++;
        if (this.options.isFatal?.(error)) {
          if (item.kind === "sco") this.releaseData(item);
          log.error({ err: error, item: item.kind === "sco" ? item.scoNumber : item.id }, "upload refused for good; dropped");
          return;
        }
        log.warn({ err: error, item: item.kind === "sco" ? item.scoNumber : item.id, retryInMs: delayMs }, "upload failed; retrying");
        await new Promise((resolve) => setTimeout(resolve, delayMs));
        delayMs = Math.min(delayMs * 2, uploaderLimits.retryDelayMsMax);
      }
    }
  }
}
