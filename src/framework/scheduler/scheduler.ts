// Scheduled tasks of the cluster (issue 6 item 4; the original's celery beat): hourly automatic
// snapshots, daily snapshot retention, daily scrubbing, periodic namespace verification. Exactly one node
// runs them: every node starts a Scheduler, which campaigns in the cluster store ("ovs-scheduler") and acts
// only while it leads.
//
// Schedules are "every P, at offset O" aligned to the epoch (hourly at :00 = every 1 h at 0; daily at
// 02:01 UTC = every 24 h at 2 h 1 min). A tick (every tickMs, and whenever the test clock moves) runs each
// job whose scheduled instant fell in (previous tick, now]; missed instants while no node led are not
// replayed (as cron). A job still running when its next instant comes is recorded as skipped.
//
// Store keys (docs/formats/scheduler.md):
//   ovs/scheduler/jobs/<job>                      JSON { enabled, everyMs, offsetMs } overriding the default
//   ovs/scheduler/history/<job>/<startedAt 16 hex> JSON run record; the newest historyPerJobMax are kept
// The clock is injectable (`clock`), so retention and schedules are tested on simulated time.

import { OvsError, type Logger } from "../../base/index.js";
import type { Campaign, ClusterStore } from "../../store/index.js";

export interface Schedule {
  everyMs: number;
  offsetMs: number;
}

export interface JobContext {
  /** The scheduled instant this run is for (ms since the epoch). */
  scheduledAtMs: number;
  log: Logger;
}

export interface JobSpec {
  name: string;
  description: string;
  schedule: Schedule;
  enabledByDefault: boolean;
  /** Does the work; resolves to a small JSON-able summary kept in the history. */
  run(context: JobContext): Promise<unknown>;
}

export interface JobConfig {
  enabled: boolean;
  everyMs: number;
  offsetMs: number;
}

export interface RunRecord {
  job: string;
  node: string;
  scheduledAtMs: number;
  startedAtMs: number;
  finishedAtMs?: number;
  outcome: "running" | "ok" | "failed" | "skipped";
  result?: unknown;
  error?: string;
}

export interface Clock {
  now(): number;
  /** Calls `callback` after `ms` (real or simulated); returns a cancel function. */
  setTimer(callback: () => void, ms: number): () => void;
}

export const realClock: Clock = {
  now: () => Date.now(),
  setTimer: (callback, ms) => {
    const timer = setTimeout(callback, ms);
    timer.unref();
    return () => clearTimeout(timer);
  },
};

export const schedulerLimits = {
  tickMs: 1_000,
  leaseTtlMs: 10_000,
  historyPerJobMax: 100,
  everyMsMin: 60_000,
  everyMsMax: 366 * 24 * 3_600_000,
} as const;

const jobsPrefix = "ovs/scheduler/jobs/";
const historyPrefix = "ovs/scheduler/history/";
export const schedulerElection = "ovs-scheduler";

export function historyKey(job: string, startedAtMs: number): string {
  return `${historyPrefix}${job}/${startedAtMs.toString(16).padStart(16, "0")}`;
}

/** The last instant of `schedule` at or before `ms`. */
export function lastInstantAtOrBefore(schedule: Schedule, ms: number): number {
  return Math.floor((ms - schedule.offsetMs) / schedule.everyMs) * schedule.everyMs + schedule.offsetMs;
}

export function validateJobConfig(value: unknown): JobConfig {
  const config = value as Partial<JobConfig> | null;
  if (typeof config !== "object" || config === null) throw new OvsError("INVALID_ARGUMENT", "a job configuration is a JSON object { enabled, everyMs, offsetMs }");
  if (typeof config.enabled !== "boolean") throw new OvsError("INVALID_ARGUMENT", "enabled must be true or false");
  const { everyMs, offsetMs } = config;
  if (!Number.isSafeInteger(everyMs) || everyMs! < schedulerLimits.everyMsMin || everyMs! > schedulerLimits.everyMsMax) {
    throw new OvsError("INVALID_ARGUMENT", `everyMs must be a whole number of ms from ${schedulerLimits.everyMsMin} to ${schedulerLimits.everyMsMax}`);
  }
  if (!Number.isSafeInteger(offsetMs) || offsetMs! < 0 || offsetMs! >= everyMs!) throw new OvsError("INVALID_ARGUMENT", "offsetMs must be a whole number of ms from 0 to below everyMs");
  return { enabled: config.enabled, everyMs: everyMs!, offsetMs: offsetMs! };
}

export class Scheduler {
  private readonly jobs = new Map<string, JobSpec>();
  private readonly running = new Map<string, Promise<void>>();
  private campaign: Campaign | undefined;
  private cancelTimer: (() => void) | undefined;
  private lastTickMs: number | undefined;
  private ticking: Promise<void> = Promise.resolve();
  private stopped = false;

  constructor(
    private readonly options: { store: ClusterStore; nodeId: string; log: Logger; jobs: readonly JobSpec[]; clock?: Clock },
  ) {
    for (const job of options.jobs) this.jobs.set(job.name, job);
  }

  private get clock(): Clock {
    return this.options.clock ?? realClock;
  }

  async start(): Promise<void> {
    this.campaign = await this.options.store.campaign(schedulerElection, this.options.nodeId, schedulerLimits.leaseTtlMs);
    this.lastTickMs = this.clock.now();
    this.arm();
  }

  /** True while this node runs the cluster's scheduled tasks. */
  isLeader(): boolean {
    return this.campaign?.isLeader() ?? false;
  }

  /** Runs due jobs now (the timer calls it; a test calls it after moving its clock). */
  tick(): Promise<void> {
    this.ticking = this.ticking.then(() => this.tickOnce()).catch((error: unknown) => this.options.log.error({ err: error }, "scheduler tick failed"));
    return this.ticking;
  }

  /** Resolves when every job started so far has finished. */
  async idle(): Promise<void> {
    await this.ticking;
    await Promise.all([...this.running.values()]);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.cancelTimer?.();
    await this.idle();
    await this.campaign?.resign().catch(() => undefined);
  }

  /** The effective configuration of every job (defaults overridden by the store). */
  async configs(): Promise<Array<JobConfig & { name: string; description: string }>> {
    const result: Array<JobConfig & { name: string; description: string }> = [];
    for (const job of this.jobs.values()) result.push({ name: job.name, description: job.description, ...(await this.configOf(job)) });
    return result;
  }

  /** Changes a job's schedule or turns it on or off (validated; nothing is changed on bad input). */
  async configure(name: string, config: unknown): Promise<JobConfig> {
    if (!this.jobs.has(name)) throw new OvsError("NOT_FOUND", `no scheduled task named "${name}"`);
    const valid = validateJobConfig(config);
    await this.options.store.put(jobsPrefix + name, Buffer.from(JSON.stringify(valid)));
    return valid;
  }

  /** Run records of a job, newest first. */
  async history(name: string, limit = 20): Promise<RunRecord[]> {
    if (!this.jobs.has(name)) throw new OvsError("NOT_FOUND", `no scheduled task named "${name}"`);
    const page = await this.options.store.range({ first: `${historyPrefix}${name}/`, last: `${historyPrefix}${name}0`, limit, reverse: true });
    return page.entries.map((entry) => JSON.parse(entry.value.toString("utf8")) as RunRecord);
  }

  private arm(): void {
    if (this.stopped) return;
    this.cancelTimer = this.clock.setTimer(() => {
      void this.tick().finally(() => this.arm());
    }, schedulerLimits.tickMs);
  }

  private async configOf(job: JobSpec): Promise<JobConfig> {
    const stored = await this.options.store.get(jobsPrefix + job.name);
    if (stored === undefined) return { enabled: job.enabledByDefault, ...job.schedule };
    try {
      return validateJobConfig(JSON.parse(stored.toString("utf8")));
    } catch (error) {
      this.options.log.warn({ err: error, job: job.name }, "invalid stored job configuration; using the default");
      return { enabled: job.enabledByDefault, ...job.schedule };
    }
  }

  private async tickOnce(): Promise<void> {
    const nowMs = this.clock.now();
    const previousMs = this.lastTickMs ?? nowMs;
    this.lastTickMs = nowMs;
    if (this.stopped || !this.isLeader() || nowMs <= previousMs) return;
    for (const job of this.jobs.values()) {
      const config = await this.configOf(job);
      if (!config.enabled) continue;
      const instant = lastInstantAtOrBefore(config, nowMs);
      if (instant <= previousMs) continue;
      if (this.running.has(job.name)) {
        await this.record({ job: job.name, node: this.options.nodeId, scheduledAtMs: instant, startedAtMs: nowMs, finishedAtMs: nowMs, outcome: "skipped", error: "the previous run is still going" });
        continue;
      }
      const run = this.runJob(job, instant).finally(() => this.running.delete(job.name));
      this.running.set(job.name, run);
    }
  }

  private async runJob(job: JobSpec, scheduledAtMs: number): Promise<void> {
    const log = this.options.log.child({ job: job.name });
    const record: RunRecord = { job: job.name, node: this.options.nodeId, scheduledAtMs, startedAtMs: this.clock.now(), outcome: "running" };
    await this.record(record);
    try {
      record.result = await job.run({ scheduledAtMs, log });
      record.outcome = "ok";
    } catch (error) {
      record.outcome = "failed";
      record.error = error instanceof Error ? error.message : String(error);
      log.warn({ err: error }, "scheduled task failed");
    }
    record.finishedAtMs = this.clock.now();
    await this.record(record);
    await this.trimHistory(job.name);
  }

  private async record(record: RunRecord): Promise<void> {
    await this.options.store.put(historyKey(record.job, record.startedAtMs), Buffer.from(JSON.stringify(record))).catch((error: unknown) => {
      this.options.log.warn({ err: error, job: record.job }, "could not record a scheduled task run");
    });
  }

  private async trimHistory(job: string): Promise<void> {
    const page = await this.options.store.range({ first: `${historyPrefix}${job}/`, last: `${historyPrefix}${job}0`, limit: schedulerLimits.historyPerJobMax + 50, reverse: true });
    for (const entry of page.entries.slice(schedulerLimits.historyPerJobMax)) await this.options.store.delete(entry.key);
  }
}
