// `ovs schedule list|set|history|run`: the scheduled tasks of the cluster (one leader runs them).

import { Command, InvalidArgumentError } from "commander";
import { CliError, callApi } from "./api-client.js";
import { followTask, type TaskView } from "./task-commands.js";

interface Schedule {
  intervalSeconds: number;
  offsetSeconds: number;
}

interface TaskStatus {
  task: string;
  description: string;
  schedule: Schedule | null;
  lastSlotAt?: string;
  nextRunAt?: string;
}

interface RunRecord {
  task: string;
  node: string;
  trigger: string;
  startedAt: string;
  durationMs: number;
  state: string;
  message: string;
  taskId?: string;
}

/** Seconds from 90, 90s, 15m, 1h or 1d. */
function durationOption(value: string): number {
  const match = /^(\d+)\s*(s|m|h|d)?$/.exec(value.trim());
  if (!match) throw new InvalidArgumentError("a duration is a number of seconds, or with a unit: 90s, 15m, 1h, 1d.");
  return Number(match[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[(match[2] ?? "s") as "s" | "m" | "h" | "d"];
}

function describeSchedule(schedule: Schedule | null): string {
  if (schedule === null) return "off";
  const unit = (seconds: number): string => (seconds % 86400 === 0 ? `${seconds / 86400}d` : seconds % 3600 === 0 ? `${seconds / 3600}h` : seconds % 60 === 0 ? `${seconds / 60}m` : `${seconds}s`);
  return `every ${unit(schedule.intervalSeconds)}${schedule.offsetSeconds > 0 ? ` +${unit(schedule.offsetSeconds)}` : ""}`;
}

function table(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const row of [header, ...rows]) process.stdout.write(row.map((cell, i) => cell.padEnd(widths[i]!)).join("  ").trimEnd() + "\n");
}

export function registerScheduleCommands(program: Command, api: () => string, printJson: (value: unknown) => void): void {
  const schedule = program.command("schedule").description("scheduled tasks (snapshots, scrubbing, verification, housekeeping): one node of the cluster runs them");

  schedule
    .command("list")
    .description("every task with its schedule, last slot and next run")
    .option("--json", "print JSON")
    .action(async (options: { json?: boolean }) => {
      const { tasks } = await callApi<{ leader: boolean; tasks: TaskStatus[] }>(api(), "GET", "/api/v1/schedule");
      if (options.json) return printJson(tasks);
      table(["TASK", "SCHEDULE", "LAST SLOT", "NEXT RUN", "DESCRIPTION"], tasks.map((t) => [t.task, describeSchedule(t.schedule), t.lastSlotAt ?? "-", t.nextRunAt ?? "-", t.description]));
    });

  schedule
    .command("set <task>")
    .description("run a task every INTERVAL (UTC-aligned, plus OFFSET), or --off, or --default")
    .option("--every <interval>", "interval, e.g. 1h, 1d, 15m (at least 60 s)", durationOption)
    .option("--offset <offset>", "offset into the interval, e.g. 3h for 03:00 UTC with --every 1d", durationOption)
    .option("--off", "do not run it")
    .option("--default", "back to the task's default schedule")
    .option("--json", "print the task's new schedule status as JSON")
    .action(async (task: string, options: { every?: number; offset?: number; off?: boolean; default?: boolean; json?: boolean }) => {
      const chosen = [options.every !== undefined, options.off === true, options.default === true].filter(Boolean).length;
      if (chosen !== 1) throw new CliError("give exactly one of --every INTERVAL, --off or --default.");
      const body = options.off ? { enabled: false } : options.default ? { default: true } : { intervalSeconds: options.every!, offsetSeconds: options.offset ?? 0 };
      const status = await callApi<TaskStatus>(api(), "PUT", `/api/v1/schedule/${encodeURIComponent(task)}`, body);
      if (options.json) return printJson(status);
      process.stdout.write(`${status.task}: ${describeSchedule(status.schedule)}${status.nextRunAt ? `, next run ${status.nextRunAt}` : ""}\n`);
    });

  schedule
    .command("history [task]")
    .description("the latest runs, newest first")
    .option("--limit <n>", "how many", (value) => Number(value), 20)
    .option("--json", "print JSON")
    .action(async (task: string | undefined, options: { limit: number; json?: boolean }) => {
      const query = new URLSearchParams({ limit: String(options.limit), ...(task === undefined ? {} : { task }) });
      const { runs } = await callApi<{ runs: RunRecord[] }>(api(), "GET", `/api/v1/schedule/history?${query.toString()}`);
      if (options.json) return printJson(runs);
      if (runs.length === 0) return void process.stdout.write("no runs yet\n");
      table(["STARTED", "TASK", "STATE", "NODE", "TRIGGER", "MS", "MESSAGE", "TASK ID"], runs.map((r) => [r.startedAt, r.task, r.state, r.node, r.trigger, String(r.durationMs), r.message, r.taskId ?? "-"]));
    });

  schedule
    .command("run <task>")
    .description("run a task now on the node you talk to, following it with a progress bar (recorded in the history)")
    .option("--json", "print the final task as JSON (its result is the run's summary)")
    .option("--no-wait", "print the task id and return at once")
    .action(async (task: string, options: { json?: boolean; wait: boolean }) => {
      const started = await callApi<TaskView>(api(), "POST", `/api/v1/schedule/${encodeURIComponent(task)}/run`);
      if (!options.wait) {
        if (options.json) printJson(started);
        else process.stdout.write(`started task ${started.id} (${started.kind}); follow it with: ovs task wait ${started.id}\n`);
        return;
      }
      const done = await followTask(api(), started, { json: options.json, returnFailures: true });
      if (done.state !== "succeeded") process.exitCode = 1;
      if (options.json) return printJson(done);
      const state = done.state === "succeeded" ? "SUCCESS" : "FAILED";
      const durationMs = Date.parse(done.finishedAt!) - Date.parse(done.startedAt ?? done.createdAt);
      const message = done.state === "succeeded" ? String(done.result ?? "") : (done.error?.message ?? done.state);
      process.stdout.write(`${task}: ${state} in ${durationMs} ms: ${message}\n`);
    });
}
