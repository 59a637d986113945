// A small pool of worker threads that run one job at a time each, for blocking work that must not run on
// the event loop: a sequence of file-system calls done synchronously in a worker costs one trip back
// through the event loop, where the same calls made asynchronously cost one trip each (through libuv's
// thread pool and back), and each trip under load waits for the main thread's turn (milliseconds). The
// local backend's put is the user (local-put-worker.ts).
//
// Protocol (both sides in this file): the pool posts { id, job } with an optional transfer list; the
// worker answers { id, ok: true, value } or { id, ok: false, error } where `error` keeps the fields a
// system error carries (code, syscall, path, errno): structured clone would drop them, and callers map
// errors by code (ENOENT, ENOSPC…).
//
// Limits: at most `sizeMax` workers, started on demand; queued jobs at most jobQueueLengthMax (callers
// bound their own concurrency; the assert catches a runaway). A worker is ref'd while it runs a job, so a
// process awaiting a job does not exit under it, and unref'd when idle, so an idle pool keeps no process
// alive. A worker that dies fails its job (an Error naming the pool) and is replaced on the next job.
// Buffers: a transferred ArrayBuffer belongs to the worker from run() on.

import { parentPort, Worker, type Transferable } from "node:worker_threads";
import { assert } from "./assert.js";

export const workerPoolLimits = {
  jobQueueLengthMax: 100_000,
} as const;

interface Message {
  id: number;
  ok: boolean;
  value?: unknown;
  error?: SerializedError;
}

interface SerializedError {
  message: string;
  name?: string;
  code?: string;
  syscall?: string;
  path?: string;
  dest?: string;
  errno?: number;
}

interface Pending {
  id: number;
  job: unknown;
  transfer: Transferable[];
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

interface Slot {
  worker: Worker;
  current: Pending | undefined;
}

export class WorkerPool<Job, Result> {
  private readonly slots: Slot[] = [];
  private readonly queue: Pending[] = [];
  private nextId = 1;
  private closed = false;

  constructor(
    private readonly file: URL,
    private readonly sizeMax: number,
    private readonly name: string,
  ) {
    assert(Number.isSafeInteger(sizeMax) && sizeMax >= 1, "a worker pool needs at least one worker");
  }

  /** Runs `job` in a worker; `transfer` lists ArrayBuffers handed to the worker (no copy). */
  run(job: Job, transfer: Transferable[] = []): Promise<Result> {
    if (this.closed) return Promise.reject(new Error(`the ${this.name} worker pool is closed`));
    assert(this.queue.length < workerPoolLimits.jobQueueLengthMax, `the ${this.name} worker pool's queue is full`);
    return new Promise<Result>((resolve, reject) => {
      this.queue.push({ id: this.nextId++, job, transfer, resolve: resolve as (value: unknown) => void, reject });
      this.pump();
    });
  }

  /** Stops every worker; jobs not finished fail. */
  async close(): Promise<void> {
    this.closed = true;
    const failure = new Error(`the ${this.name} worker pool closed`);
    for (const pending of this.queue.splice(0)) pending.reject(failure);
    const slots = this.slots.splice(0);
    for (const slot of slots) {
      slot.current?.reject(failure);
      slot.current = undefined;
    }
    await Promise.all(slots.map((slot) => slot.worker.terminate()));
  }

  private pump(): void {
    while (this.queue.length > 0) {
      let slot = this.slots.find((candidate) => candidate.current === undefined);
      if (slot === undefined) {
        if (this.slots.length >= this.sizeMax) return;
        slot = this.spawn();
      }
      const pending = this.queue.shift()!;
      slot.current = pending;
      slot.worker.ref();
      slot.worker.postMessage({ id: pending.id, job: pending.job }, pending.transfer);
    }
  }

  private spawn(): Slot {
    const worker = new Worker(this.file, { name: this.name });
    const slot: Slot = { worker, current: undefined };
    worker.on("message", (message: Message) => {
      const pending = slot.current;
      if (pending === undefined || pending.id !== message.id) return; // closed meanwhile
      slot.current = undefined;
      worker.unref();
      if (message.ok) pending.resolve(message.value);
      else pending.reject(deserializeError(message.error!));
      this.pump();
    });
    const lost = (error: Error): void => {
      const index = this.slots.indexOf(slot);
      if (index === -1) return; // already gone (closed, or error then exit)
      this.slots.splice(index, 1);
      const pending = slot.current;
      slot.current = undefined;
      pending?.reject(error);
      void worker.terminate();
      this.pump();
    };
    worker.on("error", (error) => lost(new Error(`a ${this.name} worker failed: ${error.message}`, { cause: error })));
    worker.on("exit", (code) => lost(new Error(`a ${this.name} worker exited (code ${code})`)));
    worker.unref();
    this.slots.push(slot);
    return slot;
  }
}

function serializeError(error: unknown): SerializedError {
  if (!(error instanceof Error)) return { message: String(error) };
  const fields = error as Error & Partial<Record<"code" | "syscall" | "path" | "dest", unknown>> & { errno?: unknown };
  const serialized: SerializedError = { message: error.message, name: error.name };
  if (typeof fields.code === "string") serialized.code = fields.code;
  if (typeof fields.syscall === "string") serialized.syscall = fields.syscall;
  if (typeof fields.path === "string") serialized.path = fields.path;
  if (typeof fields.dest === "string") serialized.dest = fields.dest;
  if (typeof fields.errno === "number") serialized.errno = fields.errno;
  return serialized;
}

function deserializeError(serialized: SerializedError): Error {
  const error = new Error(serialized.message) as Error & Omit<SerializedError, "message" | "name">;
  if (serialized.name !== undefined) error.name = serialized.name;
  if (serialized.code !== undefined) error.code = serialized.code;
  if (serialized.syscall !== undefined) error.syscall = serialized.syscall;
  if (serialized.path !== undefined) error.path = serialized.path;
  if (serialized.dest !== undefined) error.dest = serialized.dest;
  if (serialized.errno !== undefined) error.errno = serialized.errno;
  return error;
}

/**
 * The worker side: call once in a worker's module with the function that does one job (synchronously;
 * it may throw). Returns without doing anything outside a worker thread.
 */
export function serveWorkerJobs<Job, Result>(handle: (job: Job) => Result): void {
  const port = parentPort;
  if (port === null) return;
  port.on("message", ({ id, job }: { id: number; job: Job }) => {
    let reply: Message;
    try {
      reply = { id, ok: true, value: handle(job) };
    } catch (error) {
      reply = { id, ok: false, error: serializeError(error) };
    }
    port.postMessage(reply);
  });
}
