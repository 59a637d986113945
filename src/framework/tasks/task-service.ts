// TaskService: runs long operations as tasks on this node and keeps their records in the cluster store
// (task-record.ts, docs/formats/task-keys.md), like the original's Celery tasks polled at /api/tasks/<id>.
// An operation becomes a task with submit(spec) (returns the queued record at once: the API answers 202)
// or run(spec) (waits for it: scheduled runs). The work gets a TaskContext: a logger carrying the task id
// (and the request id of the request that started it), an AbortSignal for cancellation, and progress().
//
// Invariants:
// - A record is written before its work starts and after it ends; progress in between is written at most
//   every progressWriteMs (and never after the final write: writes of one task are serialised).
// - At start() every record of this node still queued or running is marked failed with INTERRUPTED (the
//   node stopped while it ran); stop() aborts what runs, waits stopWaitMs (stopWaitNotCancellableMs for a
//   task that cannot be cancelled, such as a rollback) and marks what has not finished the same.
// - At most runningMax tasks run at once; at most queuedMax wait (more → UNAVAILABLE, nothing recorded).
// - History is bounded: finished records beyond historyMax (newest kept) or older than historyAgeMs are
//   deleted; queued and running ones never are.
// - A record only moves forward: this node's writes of its tasks assert the bytes it last wrote; the
//   scheduler's leader marks the unfinished tasks of a storage router found offline failed (failTasksOf,
//   asserting what it read), and a node that was only paused then finds its record finished, adopts it,
//   writes nothing more and aborts the work.
// - Cancellation: a queued task is cancelled at once; a running cancellable one gets its signal aborted and
//   ends cancelled if its work then stops with an error; a task of another node is asked to through the
//   key ovs/task-cancel/<id>, which every node watches.
// Time comes from options.now (tests pass a controllable clock).

import { OvsError, isOvsError, type Logger } from "../../base/index.js";
import { rangeLimitMax, type ClusterStore, type Watch } from "../../store/index.js";
import {
  boundedDetail, boundedResult, decodeTask, encodeTask, isFinished, isTaskId, newTaskId, taskCancelPrefix, taskKey, taskKeyPrefix, taskRecordVersion,
  type TaskProgress, type TaskRecord, type TaskState,
} from "./task-record.js";

export interface TaskLimits {
  runningMax: number;
  queuedMax: number;
  historyMax: number;
  historyAgeMs: number;
  progressWriteMs: number;
  trimIntervalMs: number;
  stopWaitMs: number;
  stopWaitNotCancellableMs: number;
  listLimitMax: number;
}

export const taskLimits: Readonly<TaskLimits> = Object.freeze({
  runningMax: 8,
  queuedMax: 256,
  historyMax: 1000,
  historyAgeMs: 30 * 24 * 3600 * 1000,
  progressWriteMs: 250,
  /** The history is trimmed at most this often (and at start). */
  trimIntervalMs: 60_000,
  /** stop() waits this long for running tasks after aborting them... */
  stopWaitMs: 5_000,
  /** ...and this long for those that cannot be cancelled (a rollback, which is safe to cut but better finished). */
  stopWaitNotCancellableMs: 60_000,
  listLimitMax: 1000,
});

export interface TaskContext {
  taskId: string;
  /** Carries taskId (and reqId when an API request started the task). */
  log: Logger;
  /** Aborted when the task is cancelled or the node stops. */
  signal: AbortSignal;
  /** Updates the progress (fields not given stay); written to the store at most every progressWriteMs. */
  progress(update: { done?: number; total?: number; detail?: string }): void;
  /** Milliseconds since the epoch, from the service's clock. */
  nowMs(): number;
}

export interface TaskSpec<T> {
  kind: string;
  target: string;
  startedBy: string;
  requestId?: string;
  /** What the progress counts (objects, vdisks, steps). */
  unit: string;
  total?: number;
  /** A running task can be cancelled (its work honours ctx.signal). */
  cancellable?: boolean;
  /** The logger to derive the task's from (a request's, so its lines carry the request id). */
  log?: Logger;
  run(context: TaskContext): Promise<T>;
}

export interface TaskFilter {
  state?: TaskState;
  kind?: string;
  /** Newest first; the page after this id (the last id of the previous page). */
  after?: string;
  limit: number;
}

interface Local {
  record: TaskRecord;
  spec: TaskSpec<unknown>;
  abort: AbortController;
  /** Resolves when the final record is written. */
  done: Promise<void>;
  finish: () => void;
  result: unknown;
  writing: Promise<void>;
  flushTimer: NodeJS.Timeout | undefined;
  dirty: boolean;
  final: boolean;
  cancelledBy?: string;
  /** The bytes of the record as this node last wrote it (every write asserts them). */
  stored: Buffer;
  /** Someone else finished the record (its node was found offline): nothing more is written. */
  lost: boolean;
}

export interface TaskServiceOptions {
  store: ClusterStore;
  nodeId: string;
  log: Logger;
  now?: () => number;
  limits?: Partial<TaskLimits>;
}

export class TaskService {
  private readonly local = new Map<string, Local>();
  private readonly queue: Local[] = [];
  private runningCount = 0;
  private readonly now: () => number;
  private readonly limits: TaskLimits;
  private watch: Watch | undefined;
  private lastTrimMs = -Infinity;
  private trimming: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly options: TaskServiceOptions) {
    this.now = options.now ?? Date.now;
    this.limits = { ...taskLimits, ...options.limits };
  }

  get nodeId(): string {
    return this.options.nodeId;
  }

  /** Marks this node's interrupted tasks failed, watches cancel requests, trims the history. */
  async start(): Promise<void> {
    const nowIso = new Date(this.now()).toISOString();
    let interrupted = 0;
    for await (const { key, value } of this.scan()) {
      const decoded = decodeTask(value);
      if (!decoded.ok) continue;
      const record = decoded.value;
      if (record.node !== this.options.nodeId || isFinished(record.state)) continue;
      const failed: TaskRecord = {
        ...record, state: "failed", finishedAt: nowIso,
        error: { code: "INTERRUPTED", message: `node ${record.node} stopped while the task was ${record.state}; start it again if it is still needed.` },
      };
      if (await this.options.store.testAndSet(key, value, encodeTask(failed))) interrupted++;
    }
    if (interrupted > 0) this.options.log.warn({ count: interrupted }, "tasks interrupted by the node's stop marked failed");
    this.watch = this.options.store.watch(taskCancelPrefix, (event) => {
      if (event.type !== "put") return;
      const id = event.key.slice(taskCancelPrefix.length);
      const local = this.local.get(id);
      if (local === undefined) return;
      void this.options.store.delete(event.key).catch(() => undefined);
      void this.cancelLocal(local, event.value.toString("utf8") || "another node");
    });
    await this.trim(true);
  }

  /** Aborts running tasks, waits a little, and marks what is left failed (INTERRUPTED). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.watch?.close();
    this.watch = undefined;
    for (const local of this.queue.splice(0)) await this.finalize(local, "failed", undefined, { code: "INTERRUPTED", message: `node ${this.options.nodeId} stopped before the task started; start it again if it is still needed.` });
    const running = [...this.local.values()];
    for (const local of running) local.abort.abort(new OvsError("CLOSED", "the node is stopping."));
    const waitFor = async (locals: Local[], ms: number): Promise<void> => {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.all(locals.map((local) => local.done)), new Promise((resolve) => (timer = setTimeout(resolve, ms)))]);
      clearTimeout(timer);
    };
    await waitFor(running, this.limits.stopWaitMs);
    await waitFor(running.filter((local) => !local.final && !local.record.cancellable), Math.max(0, this.limits.stopWaitNotCancellableMs - this.limits.stopWaitMs));
    for (const local of [...this.local.values()]) {
      await this.finalize(local, "failed", undefined, { code: "INTERRUPTED", message: `node ${this.options.nodeId} stopped while the task ran; start it again if it is still needed.` });
    }
    await this.trimming;
  }

  /** Records a task (queued) and runs it as soon as a slot is free; returns the record at once. */
  async submit<T>(spec: TaskSpec<T>): Promise<TaskRecord> {
    if (this.stopped) throw new OvsError("CLOSED", "the node is stopping; no new task can start.");
    if (this.queue.length >= this.limits.queuedMax) throw new OvsError("UNAVAILABLE", `${this.queue.length} tasks are already waiting on node ${this.options.nodeId}; try again later.`);
    const nowMs = this.now();
    const record: TaskRecord = {
      version: taskRecordVersion, id: newTaskId(nowMs), kind: spec.kind, target: spec.target, node: this.options.nodeId, state: "queued",
      progress: { done: 0, ...(spec.total === undefined ? {} : { total: spec.total }), unit: spec.unit },
      createdAt: new Date(nowMs).toISOString(), startedBy: spec.startedBy, ...(spec.requestId === undefined ? {} : { requestId: spec.requestId }),
      cancellable: spec.cancellable === true,
    };
    const stored = encodeTask(record);
    await this.options.store.sequence([{ kind: "absent", key: taskKey(record.id) }], [{ kind: "put", key: taskKey(record.id), value: stored }]);
    let finish!: () => void;
    const done = new Promise<void>((resolve) => (finish = resolve));
    const local: Local = {
      record, spec: spec as TaskSpec<unknown>, abort: new AbortController(), done, finish, result: undefined, writing: Promise.resolve(), flushTimer: undefined, dirty: false, final: false,
      stored, lost: false,
    };
    this.local.set(record.id, local);
    this.queue.push(local);
    const queued = structuredClone(record);
    this.pump();
    return queued;
  }

  /** Starts a task and waits for it to finish: its final record and the work's result. */
  async run<T>(spec: TaskSpec<T>): Promise<{ record: TaskRecord; result: T | undefined }> {
    const started = await this.submit(spec);
    const local = this.local.get(started.id);
    if (local !== undefined) await local.done;
    const record = (await this.get(started.id)) ?? started;
    return { record, result: local?.result as T | undefined };
  }

  /** Resolves when a task of this node finishes (at once for other nodes' or finished tasks). */
  async waitLocal(id: string): Promise<void> {
    await this.local.get(id)?.done;
  }

  /** A task: this node's live view of its own tasks, else the store's record. */
  async get(id: string): Promise<TaskRecord | undefined> {
    const local = this.local.get(id);
    if (local !== undefined) return structuredClone(local.record);
    if (!isTaskId(id)) return undefined;
    const bytes = await this.options.store.get(taskKey(id));
    if (bytes === undefined) return undefined;
    const decoded = decodeTask(bytes);
    if (!decoded.ok) throw new OvsError("CORRUPT", `the record of task ${id} is unreadable: ${decoded.reason}.`);
    return decoded.value;
  }

  /** Tasks newest first, filtered by state and kind, one page at a time. */
  async list(filter: TaskFilter): Promise<{ tasks: TaskRecord[]; more: boolean }> {
    const limit = Math.min(Math.max(1, filter.limit), this.limits.listLimitMax);
    const tasks: TaskRecord[] = [];
    let after = filter.after === undefined ? undefined : taskKey(filter.after);
    for (;;) {
      const page = await this.options.store.range({ first: taskKeyPrefix, last: `${taskKeyPrefix}\u{10FFFF}`, reverse: true, limit: rangeLimitMax, ...(after === undefined ? {} : { after }) });
      for (const entry of page.entries) {
        const decoded = decodeTask(entry.value);
        if (!decoded.ok) continue;
        const record = this.local.get(decoded.value.id)?.record ?? decoded.value;
        if ((filter.state === undefined || record.state === filter.state) && (filter.kind === undefined || record.kind === filter.kind)) {
          if (tasks.length === limit) return { tasks, more: true };
          tasks.push(structuredClone(record));
        }
      }
      if (!page.more || page.entries.length === 0) return { tasks, more: false };
      after = page.entries.at(-1)!.key;
    }
  }

  /**
   * Cancels a task: a queued one at once, a running cancellable one by aborting its signal (it ends
   * cancelled once its work stops). CONFLICT when it finished or cannot be cancelled while running.
   */
  async cancel(id: string, by: string): Promise<TaskRecord> {
    const record = await this.get(id);
    if (record === undefined) throw new OvsError("NOT_FOUND", `there is no task ${id}.`);
    if (isFinished(record.state)) throw new OvsError("CONFLICT", `task ${id} already ${record.state}.`);
    if (record.state === "running" && !record.cancellable) throw new OvsError("CONFLICT", `task ${id} (${record.kind}) cannot be cancelled once it runs; wait for it to finish.`);
    const local = this.local.get(id);
    if (local !== undefined) {
      const copy = structuredClone(local.record);
      await this.cancelLocal(local, by);
      return local.final ? structuredClone(local.record) : copy;
    }
    // Another node runs it: ask it through the store.
    await this.options.store.put(taskCancelPrefix + id, Buffer.from(by));
    return record;
  }

  private async cancelLocal(local: Local, by: string): Promise<void> {
    if (local.final) return;
    local.cancelledBy = by;
    const index = this.queue.indexOf(local);
    if (index >= 0) {
      this.queue.splice(index, 1);
      await this.finalize(local, "cancelled", undefined, { code: "CANCELLED", message: `cancelled by ${by} before it started.` });
      return;
    }
    if (local.record.cancellable) local.abort.abort(new OvsError("CONFLICT", `cancelled by ${by}.`));
  }

  private pump(): void {
    while (this.runningCount < this.limits.runningMax && this.queue.length > 0) {
      const local = this.queue.shift()!;
      this.runningCount++;
      void this.execute(local).finally(() => {
        this.runningCount--;
        this.pump();
      });
    }
  }

  private async execute(local: Local): Promise<void> {
    const { spec, record } = local;
    const log = (spec.log ?? this.options.log).child({ taskId: record.id, taskKind: record.kind });
    record.state = "running";
    record.startedAt = new Date(this.now()).toISOString();
    this.write(local);
    await local.writing;
    if (local.lost) {
      // Finished by another node while it waited here (this node was found offline): it does not start.
      await this.finalize(local, "failed", undefined, undefined);
      return;
    }
    log.info({ target: record.target, startedBy: record.startedBy }, "task started");
    const context: TaskContext = {
      taskId: record.id,
      log,
      signal: local.abort.signal,
      nowMs: () => this.now(),
      progress: (update) => {
        if (local.final) return;
        const progress: TaskProgress = { ...record.progress };
        if (update.done !== undefined) progress.done = Math.max(0, Math.floor(update.done));
        if (update.total !== undefined) progress.total = Math.max(0, Math.floor(update.total));
        if (update.detail !== undefined) progress.detail = boundedDetail(update.detail);
        record.progress = progress;
        this.scheduleWrite(local);
      },
    };
    try {
      local.result = await spec.run(context);
      if (record.progress.total !== undefined && record.progress.done < record.progress.total) record.progress = { ...record.progress, done: record.progress.total };
      await this.finalize(local, "succeeded", boundedResult(local.result), undefined);
      log.info({ durationMs: this.durationMs(record) }, "task succeeded");
    } catch (error) {
      if (this.stopped) {
        await this.finalize(local, "failed", undefined, { code: "INTERRUPTED", message: `node ${this.options.nodeId} stopped while the task ran; start it again if it is still needed.` });
        log.warn({ err: error }, "task interrupted by the node's stop");
      } else if (local.abort.signal.aborted && local.cancelledBy !== undefined) {
        await this.finalize(local, "cancelled", undefined, { code: "CANCELLED", message: `cancelled by ${local.cancelledBy}.` });
        log.info("task cancelled");
      } else {
        const code = isOvsError(error) ? error.code : "INTERNAL";
        const message = error instanceof Error ? error.message : String(error);
        await this.finalize(local, "failed", undefined, { code, message });
        log.warn({ err: error }, "task failed");
      }
    }
  }

  private durationMs(record: TaskRecord): number {
    return Date.parse(record.finishedAt ?? new Date(this.now()).toISOString()) - Date.parse(record.startedAt ?? record.createdAt);
  }

  private async finalize(local: Local, state: TaskState, result: unknown, error: TaskRecord["error"]): Promise<void> {
    if (local.final) return;
    local.final = true;
    clearTimeout(local.flushTimer);
    if (local.lost) {
      // Another node finished the record already (it is what this node shows too).
      this.local.delete(local.record.id);
      local.finish();
      return;
    }
    const record = local.record;
    record.state = state;
    record.finishedAt = new Date(this.now()).toISOString();
    if (result !== undefined) record.result = result;
    if (error !== undefined) record.error = error;
    const final = encodeTask(record);
    local.writing = local.writing.then(() => this.writeAsserted(local, final)).catch((err: unknown) => {
      this.options.log.error({ err, taskId: record.id }, "writing a task's final record failed");
    });
    await local.writing;
    this.local.delete(record.id);
    local.finish();
    if (!this.stopped) void this.trim(false);
  }

  private scheduleWrite(local: Local): void {
    local.dirty = true;
    if (local.flushTimer !== undefined) return;
    local.flushTimer = setTimeout(() => {
      local.flushTimer = undefined;
      if (local.dirty && !local.final) this.write(local);
    }, this.limits.progressWriteMs);
  }

  private write(local: Local): void {
    local.dirty = false;
    const bytes = encodeTask(local.record);
    local.writing = local.writing.then(async () => {
      if (!local.final) await this.writeAsserted(local, bytes);
    }).catch((error: unknown) => this.options.log.warn({ err: error, taskId: local.record.id }, "writing a task's progress failed"));
  }

  /**
   * Writes a task's record asserting the bytes this node last wrote. When they changed, another node
   * (the scheduler's leader, which found this node offline) has finished the record: this node adopts
   * that record, writes nothing more for the task and aborts its work, so a record never moves back.
   */
  private async writeAsserted(local: Local, bytes: Buffer): Promise<void> {
    if (local.lost) return;
    const key = taskKey(local.record.id);
    let decoded: ReturnType<typeof decodeTask> | undefined;
    for (let attempt = 0; attempt < 3; attempt++) {
      if (await this.options.store.testAndSet(key, local.stored, bytes)) {
        local.stored = bytes;
        return;
      }
      const current = await this.options.store.get(key);
      decoded = current === undefined ? undefined : decodeTask(current);
      if (current === undefined || decoded?.ok !== true || isFinished(decoded.value.state)) break;
      // Still unfinished: an earlier write of this node that seemed to fail (a timeout) did land. Assert that.
      local.stored = current;
    }
    local.lost = true;
    if (decoded?.ok === true) local.record = decoded.value;
    this.options.log.warn({ taskId: local.record.id, state: local.record.state, error: local.record.error }, "the task's record was finished by another node (this node was found offline); its work is stopped");
    local.abort.abort(new OvsError("CONFLICT", local.record.error?.message ?? "the task's record was finished by another node."));
  }

  /**
   * Marks the queued and running tasks of another node failed (INTERRUPTED: "the node running this task
   * went offline"), each asserting the bytes it read; called by the scheduler's leader for storage routers
   * found offline. Returns how many it marked.
   */
  async failTasksOf(nodeId: string, reason: string): Promise<number> {
    if (nodeId === this.options.nodeId) return 0;
    const nowIso = new Date(this.now()).toISOString();
    let failed = 0;
    for await (const { key, value } of this.scan()) {
      const decoded = decodeTask(value);
      if (!decoded.ok) continue;
      const record = decoded.value;
      if (record.node !== nodeId || isFinished(record.state)) continue;
      const marked: TaskRecord = {
        ...record, state: "failed", finishedAt: nowIso,
        error: { code: "INTERRUPTED", message: `the node running this task went offline (${reason}); start it again if it is still needed.` },
      };
      if (await this.options.store.testAndSet(key, value, encodeTask(marked))) failed++;
    }
    if (failed > 0) this.options.log.warn({ node: nodeId, count: failed }, "tasks of an offline node marked failed");
    return failed;
  }

  private async *scan(): AsyncGenerator<{ key: string; value: Buffer }> {
    let after: string | undefined;
    for (;;) {
      const page = await this.options.store.prefix(taskKeyPrefix, { limit: rangeLimitMax, ...(after === undefined ? {} : { after }) });
      for (const entry of page.entries) yield entry;
      if (!page.more || page.entries.length === 0) return;
      after = page.entries.at(-1)!.key;
    }
  }

  /** Deletes finished records beyond historyMax (newest kept) or older than historyAgeMs. */
  trim(force: boolean): Promise<void> {
    if (this.trimming !== undefined) return this.trimming;
    const nowMs = this.now();
    if (!force && nowMs - this.lastTrimMs < this.limits.trimIntervalMs) return Promise.resolve();
    this.lastTrimMs = nowMs;
    this.trimming = (async () => {
      const finished: Array<{ key: string; createdMs: number }> = [];
      for await (const { key, value } of this.scan()) {
        const decoded = decodeTask(value);
        if (decoded.ok && isFinished(decoded.value.state)) finished.push({ key, createdMs: Date.parse(decoded.value.createdAt) });
      }
      const excess = finished.length - this.limits.historyMax;
      let deleted = 0;
      for (const [index, entry] of finished.entries()) {
        if (index < excess || nowMs - entry.createdMs > this.limits.historyAgeMs) {
          await this.options.store.delete(entry.key);
          deleted++;
        }
      }
      if (deleted > 0) this.options.log.debug({ deleted }, "old task records deleted");
    })()
      .catch((error: unknown) => this.options.log.warn({ err: error }, "trimming the task history failed"))
      .finally(() => (this.trimming = undefined));
    return this.trimming;
  }
}
