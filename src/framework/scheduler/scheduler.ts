// Scheduled tasks, one leader per cluster (the original's ovs-scheduled-tasks with Celery beat): every
// node campaigns in the store election "scheduler"; only the leader starts scheduled runs of cluster-wide
// tasks and runs the leader checks (storage routers without a recent heartbeat marked offline, every
// tick), while node-scoped tasks (scope "node": snapshots and scrubs of the node's own vDisks) run on
// every node, each claiming its own slots. With a TaskService every run is a task (GET /api/v1/tasks/<id>). Schedules
// (schedule.ts) have defaults per task and can be changed or turned off in the store; every run, scheduled
// or by hand, is recorded in a bounded history. Keys (docs/formats/scheduler-keys.md):
//   ovs/scheduler/schedules                   { task: Schedule | null } overrides of the defaults
//   ovs/scheduler/last/<task>                 { slotMs, node, at } the last slot claimed
//   ovs/scheduler/history/<task>/<startMs>-<node>   one run
// A slot is claimed by a test-and-set on its last/ key before the run, so even two leaders during a
// lease handover never run one slot twice. Time comes from options.now; tick() is public so tests drive
// it with a controllable clock.

import { OvsError, type Logger } from "../../base/index.js";
import type { Campaign, ClusterStore } from "../../store/index.js";
import { checkSchedule, dueSlotMs, latestSlotMs, nextSlotMs, type Schedule } from "./schedule.js";
import type { TaskService, TaskSpec } from "../tasks/task-service.js";

export interface ScheduledTaskContext {
  /** The scheduler's clock at the start of the run (tests control it). */
  nowMs: number;
  /** Carries the task id when the run is a task. */
  log: Logger;
  /** The run's task (GET /api/v1/tasks/<id>), when the scheduler records runs as tasks. */
  taskId?: string;
  /** Aborted when the run's task is cancelled or the node stops. */
  signal: AbortSignal;
  progress(update: { done?: number; total?: number; detail?: string }): void;
}

export interface ScheduledTask {
  name: string;
  description: string;
  defaultSchedule: Schedule | null;
  /**
   * cluster (default): the scheduler's leader runs each slot once for the cluster. node: every node runs
   * each slot for what it holds (its own vDisks), claiming the slot under its own last/ key.
   */
  scope?: "cluster" | "node";
  /** What the run's progress counts (default steps). */
  unit?: string;
  /** Does the work; resolves to a one-line summary, or throws (the run is then FAILED). */
  run(context: ScheduledTaskContext): Promise<string>;
}

/**
 * Work the leader does on every tick, apart from the schedules (no task, no history): quick checks such
 * as marking storage routers without a recent heartbeat offline. Runs on its own timer, so a long
 * scheduled run never delays it.
 */
export interface LeaderCheck {
  name: string;
  run(): Promise<void>;
}

export interface RunRecord {
  task: string;
  node: string;
  trigger: "schedule" | "manual";
  /** The slot it ran for (scheduled runs). */
  slotMs?: number;
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  state: "SUCCESS" | "FAILED";
  message: string;
  /** The task the run was (GET /api/v1/tasks/<id>). */
  taskId?: string;
}

export interface TaskStatus {
  task: string;
  description: string;
  schedule: Schedule | null;
  defaultSchedule: Schedule | null;
  scope: "cluster" | "node";
  lastSlotAt?: string;
  nextRunAt?: string;
}

const prefix = "ovs/scheduler/";
const schedulesKey = `${prefix}schedules`;
/** Runs kept per task; older ones are deleted after each run. */
export const historyPerTaskMax = 100;
export const schedulerTickMsDefault = 10_000;
export const schedulerLeaseTtlMs = 15_000;
const electionName = "scheduler";

/** The last slot claimed: per cluster, or per node for node-scoped tasks (last/<task>@<node>). */
function lastKey(task: string, node?: string): string {
  return `${prefix}last/${task}${node === undefined ? "" : `@${node}`}`;
}

function historyPrefix(task: string): string {
  return `${prefix}history/${task}/`;
}

export class Scheduler {
  private readonly tasks = new Map<string, ScheduledTask>();
  private readonly now: () => number;
  private campaign: Campaign | undefined;
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  private checkTimer: NodeJS.Timeout | undefined;
  private checking: Promise<void> | undefined;

  constructor(
    private readonly options: {
      store: ClusterStore; nodeId: string; log: Logger; tasks: ScheduledTask[]; now?: () => number; tickMs?: number; taskService?: TaskService; leaderChecks?: LeaderCheck[];
      /** Called with every run the scheduler started on its own (not runs by hand: the API audits those). */
      audit?: (run: RunRecord) => void;
    },
  ) {
    this.now = options.now ?? Date.now;
    for (const task of options.tasks) {
      if (this.tasks.has(task.name)) throw new Error(`two scheduled tasks are named ${task.name}`);
      this.tasks.set(task.name, task);
    }
  }

  /** Joins the election and starts ticking (only the leader runs anything). */
  async start(): Promise<void> {
    this.campaign = await this.options.store.campaign(electionName, this.options.nodeId, schedulerLeaseTtlMs);
    this.timer = setInterval(() => void this.tick(), this.options.tickMs ?? schedulerTickMsDefault);
    this.timer.unref();
    if ((this.options.leaderChecks ?? []).length > 0) {
      this.checkTimer = setInterval(() => void this.runLeaderChecks(), this.options.tickMs ?? schedulerTickMsDefault);
      this.checkTimer.unref();
    }
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    if (this.checkTimer) clearInterval(this.checkTimer);
    this.timer = this.checkTimer = undefined;
    await this.ticking;
    await this.checking;
    await this.campaign?.resign();
    this.campaign = undefined;
  }

  isLeader(): boolean {
    return this.campaign?.isLeader() ?? false;
  }

  /** Runs the leader checks once (when leading). Never throws: failures are logged. */
  runLeaderChecks(): Promise<void> {
    if (this.checking) return this.checking;
    this.checking = (async () => {
      if (!this.isLeader()) return;
      for (const check of this.options.leaderChecks ?? []) {
        try {
          await check.run();
        } catch (error) {
          this.options.log.warn({ err: error, check: check.name }, "a leader check failed");
        }
      }
    })().finally(() => (this.checking = undefined));
    return this.checking;
  }

  /** Runs every due task once (when leading). Never throws: failures are logged and recorded. */
  tick(): Promise<void> {
    if (this.ticking) return this.ticking;
    this.ticking = this.tickOnce()
      .catch((error: unknown) => this.options.log.warn({ err: error }, "scheduler tick failed"))
      .finally(() => (this.ticking = undefined));
    return this.ticking;
  }

  private lastKeyOf(task: ScheduledTask): string {
    return task.scope === "node" ? lastKey(task.name, this.options.nodeId) : lastKey(task.name);
  }

  private async tickOnce(): Promise<void> {
    const schedules = await this.schedules();
    for (const task of this.tasks.values()) {
      if (task.scope !== "node" && !this.isLeader()) continue;
      const nowMs = this.now();
      const schedule = schedules[task.name] ?? null;
      const key = this.lastKeyOf(task);
      const old = await this.options.store.get(key);
      const lastSlot = old === undefined ? undefined : (JSON.parse(old.toString("utf8")) as { slotMs: number }).slotMs;
      if (schedule === null) continue;
      if (lastSlot === undefined) {
        // First sight of this task: its first run is at the next slot, not at once.
        await this.options.store.testAndSet(key, undefined, Buffer.from(JSON.stringify({ slotMs: latestSlotMs(schedule, nowMs), node: this.options.nodeId, at: new Date(nowMs).toISOString() })));
        continue;
      }
      const slot = dueSlotMs(schedule, lastSlot, nowMs);
      if (slot === undefined) continue;
      const claim = Buffer.from(JSON.stringify({ slotMs: slot, node: this.options.nodeId, at: new Date(nowMs).toISOString() }));
      if (!(await this.options.store.testAndSet(key, old, claim))) continue; // another leader took it
      await this.execute(task, "schedule", slot);
    }
  }

  /** Runs a task now on this node (by hand), recorded like a scheduled run. */
  async runNow(name: string, startedBy = "manual", requestId?: string): Promise<RunRecord> {
    return this.execute(this.task(name), "manual", undefined, startedBy, requestId);
  }

  /** The task service runs are recorded in (none in tests that do not look at tasks). */
  get taskService(): TaskService | undefined {
    return this.options.taskService;
  }

  /**
   * A run by hand as a task spec (the API answers 202 with the task): the run is recorded in the history
   * before its task finishes, so a client that saw the task finish finds the run in the history.
   */
  manualRunSpec(name: string): Omit<TaskSpec<string>, "startedBy" | "requestId" | "log"> {
    const task = this.task(name);
    const { startedBy: _startedBy, ...spec } = this.runSpec(task, "manual", undefined, "", () => undefined);
    return spec;
  }

  private runSpec(task: ScheduledTask, trigger: RunRecord["trigger"], slotMs: number | undefined, startedBy: string, onRecord: (record: RunRecord) => void): TaskSpec<string> {
    return {
      kind: `schedule.${task.name}`, target: task.scope === "node" ? this.options.nodeId : "", startedBy, unit: task.unit ?? "steps", cancellable: true,
      run: async (context) => {
        const { record, error } = await this.runAndRecord(task, trigger, slotMs, context.taskId, context);
        onRecord(record);
        if (record.state === "FAILED") throw error;
        return record.message;
      },
    };
  }

  private async execute(task: ScheduledTask, trigger: RunRecord["trigger"], slotMs: number | undefined, startedBy = "scheduler", requestId?: string): Promise<RunRecord> {
    const taskService = this.options.taskService;
    if (taskService === undefined) {
      return (await this.runAndRecord(task, trigger, slotMs, undefined, { log: this.options.log, signal: new AbortController().signal, progress: () => undefined })).record;
    }
    // The run is a task: its record (progress, result or error) at /api/v1/tasks/<id>, its log lines with the task id.
    let recorded: RunRecord | undefined;
    const { record } = await taskService.run({ ...this.runSpec(task, trigger, slotMs, startedBy, (run) => (recorded = run)), ...(requestId === undefined ? {} : { requestId }) });
    if (recorded !== undefined) return recorded;
    // Cancelled before it started, or the node stopped: nothing ran.
    return this.writeRun({
      task: task.name, node: this.options.nodeId, trigger, ...(slotMs === undefined ? {} : { slotMs }), startedAt: record.createdAt, finishedAt: record.finishedAt ?? record.createdAt,
      durationMs: 0, state: "FAILED", message: record.error?.message ?? record.state, taskId: record.id,
    });
  }

  /** Runs a task's work and records the run in the history; the work's error is handed back, not thrown. */
  private async runAndRecord(
    task: ScheduledTask, trigger: RunRecord["trigger"], slotMs: number | undefined, taskId: string | undefined, context: Pick<ScheduledTaskContext, "log" | "signal" | "progress">,
  ): Promise<{ record: RunRecord; error: unknown }> {
    const startMs = this.now();
    let state: RunRecord["state"] = "SUCCESS";
    let message: string;
    let failure: unknown;
    try {
      message = await task.run({ nowMs: startMs, log: context.log, ...(taskId === undefined ? {} : { taskId }), signal: context.signal, progress: context.progress });
    } catch (error) {
      state = "FAILED";
      failure = error;
      message = error instanceof Error ? error.message : String(error);
      if (taskId === undefined) this.options.log.warn({ err: error, task: task.name }, "scheduled task failed");
    }
    const finishMs = this.now();
    const record = await this.writeRun({
      task: task.name, node: this.options.nodeId, trigger, ...(slotMs === undefined ? {} : { slotMs }),
      startedAt: new Date(startMs).toISOString(), finishedAt: new Date(finishMs).toISOString(), durationMs: finishMs - startMs, state, message,
      ...(taskId === undefined ? {} : { taskId }),
    });
    return { record, error: failure };
  }

  private async writeRun(record: RunRecord): Promise<RunRecord> {
    await this.options.store.put(`${historyPrefix(record.task)}${String(Date.parse(record.startedAt)).padStart(15, "0")}-${this.options.nodeId}`, Buffer.from(JSON.stringify(record)));
    if (record.trigger === "schedule") this.options.audit?.(record);
    await this.trimHistory(record.task);
    return record;
  }

  private async trimHistory(task: string): Promise<void> {
    const keys: string[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await this.options.store.prefix(historyPrefix(task), { after, limit: 1000 });
      keys.push(...page.entries.map((e) => e.key));
      if (!page.more || page.entries.length === 0) break;
      after = page.entries.at(-1)!.key;
    }
    for (const key of keys.slice(0, Math.max(0, keys.length - historyPerTaskMax))) await this.options.store.delete(key);
  }

  /** The effective schedule of every task: its override in the store, else its default. */
  async schedules(): Promise<Record<string, Schedule | null>> {
    const overrides = await this.overrides();
    const result: Record<string, Schedule | null> = {};
    for (const task of this.tasks.values()) result[task.name] = task.name in overrides ? overrides[task.name]! : task.defaultSchedule;
    return result;
  }

  private async overrides(): Promise<Record<string, Schedule | null>> {
    const value = await this.options.store.get(schedulesKey);
    if (value === undefined) return {};
    const parsed = JSON.parse(value.toString("utf8")) as Record<string, unknown>;
    const overrides: Record<string, Schedule | null> = {};
    for (const [name, schedule] of Object.entries(parsed)) {
      try {
        overrides[name] = checkSchedule(schedule, name);
      } catch (error) {
        this.options.log.warn({ err: error, task: name }, "ignoring an invalid schedule in the store");
      }
    }
    return overrides;
  }

  /** Sets (or with null turns off) a task's schedule; "default" removes the override. */
  async setSchedule(name: string, schedule: Schedule | null | "default"): Promise<TaskStatus> {
    this.task(name);
    if (schedule !== "default") checkSchedule(schedule, name);
    for (let attempt = 0; ; attempt++) {
      const old = await this.options.store.get(schedulesKey);
      const overrides = old === undefined ? {} : (JSON.parse(old.toString("utf8")) as Record<string, unknown>);
      if (schedule === "default") delete overrides[name];
      else overrides[name] = schedule;
      if (await this.options.store.testAndSet(schedulesKey, old, Buffer.from(JSON.stringify(overrides)))) break;
      if (attempt >= 4) throw new OvsError("CONFLICT", "the schedules changed meanwhile; try again.");
    }
    return (await this.status()).find((s) => s.task === name)!;
  }

  async status(): Promise<TaskStatus[]> {
    const schedules = await this.schedules();
    const nowMs = this.now();
    const result: TaskStatus[] = [];
    for (const task of this.tasks.values()) {
      const schedule = schedules[task.name] ?? null;
      const last = await this.options.store.get(this.lastKeyOf(task));
      const lastSlotMs = last === undefined ? undefined : (JSON.parse(last.toString("utf8")) as { slotMs: number }).slotMs;
      result.push({
        task: task.name,
        description: task.description,
        schedule,
        defaultSchedule: task.defaultSchedule,
        scope: task.scope ?? "cluster",
        ...(lastSlotMs === undefined ? {} : { lastSlotAt: new Date(lastSlotMs).toISOString() }),
        ...(schedule === null ? {} : { nextRunAt: new Date(nextSlotMs(schedule, Math.max(nowMs, lastSlotMs ?? nowMs))).toISOString() }),
      });
    }
    return result;
  }

  /** The latest runs, newest first, of one task or of all. */
  async history(task: string | undefined, limit: number): Promise<RunRecord[]> {
    if (task !== undefined) this.task(task);
    const records: RunRecord[] = [];
    for (const name of task === undefined ? [...this.tasks.keys()] : [task]) {
      const page = await this.options.store.range({ first: historyPrefix(name), last: `${historyPrefix(name)}\u{10FFFF}`, limit, reverse: true });
      records.push(...page.entries.map((e) => JSON.parse(e.value.toString("utf8")) as RunRecord));
    }
    return records.sort((a, b) => b.startedAt.localeCompare(a.startedAt)).slice(0, limit);
  }

  private task(name: string): ScheduledTask {
    const task = this.tasks.get(name);
    if (!task) throw new OvsError("NOT_FOUND", `there is no scheduled task ${name}; the tasks are ${[...this.tasks.keys()].join(", ")}.`);
    return task;
  }
}
