// `ovs task list|show|wait|cancel`, and runTask(): how every command that starts a long operation (the API
// answers 202 with a task) follows it to the end. While it runs, progress goes to stderr: a single-line
// bar redrawn in place on a terminal, plain lines (at most one a second, and on every change of state)
// otherwise, nothing with --json (then stdout gets the final task as JSON and nothing else). A task that
// fails or is cancelled ends the command with its message and exit 1. Imported by main.ts and
// alba-commands.ts.

import { InvalidArgumentError, type Command } from "commander";
import { CliError, callApi } from "./api-client.js";

export interface TaskView {
  id: string;
  kind: string;
  target: string;
  node: string;
  state: "queued" | "running" | "succeeded" | "failed" | "cancelled";
  progress: { done: number; total?: number; unit: string; detail?: string };
  createdAt: string;
  startedAt?: string;
  finishedAt?: string;
  startedBy: string;
  requestId?: string;
  cancellable: boolean;
  result?: unknown;
  error?: { code: string; message: string };
}

const finished = new Set(["succeeded", "failed", "cancelled"]);
const pollMsMin = 150;
const pollMsMax = 1000;
const plainLineEveryMs = 1000;
const barWidth = 24;

export interface FollowOptions {
  json?: boolean;
  /** Return a task that failed or was cancelled instead of throwing (the caller reports it). */
  returnFailures?: boolean;
  /** Give up waiting after this long (the task goes on). */
  timeoutMs?: number;
}

function fraction(progress: TaskView["progress"]): string {
  return progress.total === undefined ? `${progress.done} ${progress.unit}` : `${progress.done}/${progress.total} ${progress.unit}`;
}

/** One line: [#####-----]  42%  21/50 objects  alba.verify vdisk-1  detail. */
export function progressLine(task: TaskView, width: number): string {
  const { progress } = task;
  const ratio = progress.total === undefined || progress.total === 0 ? undefined : Math.min(1, progress.done / progress.total);
  const filled = ratio === undefined ? 0 : Math.round(ratio * barWidth);
  const bar = ratio === undefined ? `[${"?".repeat(barWidth)}]` : `[${"#".repeat(filled)}${"-".repeat(barWidth - filled)}]`;
  const percent = ratio === undefined ? "  ? " : `${String(Math.floor(ratio * 100)).padStart(3)}%`;
  const line = `${bar} ${percent}  ${fraction(progress)}  ${task.kind}${task.target === "" ? "" : ` ${task.target}`}${task.state === "queued" ? " (queued)" : ""}${progress.detail ? `  ${progress.detail}` : ""}`;
  return line.length > width ? line.slice(0, Math.max(10, width - 1)) : line;
}

/** Polls a task until it finishes, showing its progress; returns the final record (throws if it did not succeed). */
export async function followTask(api: string, started: TaskView, options: FollowOptions = {}): Promise<TaskView> {
  const tty = process.stderr.isTTY === true && options.json !== true;
  const plain = !tty && options.json !== true;
  const deadline = options.timeoutMs === undefined ? Infinity : Date.now() + options.timeoutMs;
  let task = started;
  let pollMs = pollMsMin;
  let lastPlain = "";
  let lastPlainMs = 0;
  let lastState = "";
  const show = (): void => {
    if (tty) {
      process.stderr.write(`\r\x1b[2K${progressLine(task, (process.stderr.columns || 100) - 1)}`);
    } else if (plain) {
      const line = `task ${task.id} ${task.kind}${task.target === "" ? "" : ` ${task.target}`}: ${task.state}, ${fraction(task.progress)}${task.progress.detail ? ` (${task.progress.detail})` : ""}`;
      const now = Date.now();
      if (line !== lastPlain && (task.state !== lastState || now - lastPlainMs >= plainLineEveryMs || finished.has(task.state))) {
        process.stderr.write(line + "\n");
        lastPlain = line;
        lastPlainMs = now;
        lastState = task.state;
      }
    }
  };
  try {
    show();
    while (!finished.has(task.state)) {
      if (Date.now() >= deadline) throw new CliError(`task ${task.id} is still ${task.state} after ${Math.round(options.timeoutMs! / 1000)} s; follow it with: ovs task wait ${task.id}`);
      await new Promise((resolve) => setTimeout(resolve, pollMs));
      pollMs = Math.min(pollMsMax, Math.round(pollMs * 1.5));
      task = await callApi<TaskView>(api, "GET", `/api/v1/tasks/${task.id}`);
      show();
    }
  } finally {
    if (tty) process.stderr.write("\n");
  }
  if (task.state === "succeeded" || options.json || options.returnFailures) return task;
  throw new CliError(`task ${task.id} (${task.kind}${task.target === "" ? "" : ` ${task.target}`}) ${task.state}: ${task.error?.message ?? "no reason given"}`);
}

/**
 * Calls an API action that answers 202 with a task and follows it. With wait false, prints the task id
 * (or the queued task as JSON) and returns undefined. With --json, prints the final task as JSON and
 * returns it (exit code 1 when it did not succeed).
 */
export async function runTask(
  api: string, method: string, path: string, body: unknown, options: { json?: boolean; wait?: boolean; printJson: (value: unknown) => void },
): Promise<TaskView | undefined> {
  const started = await callApi<TaskView>(api, method, path, body);
  if (options.wait === false) {
    if (options.json) options.printJson(started);
    else process.stdout.write(`started task ${started.id} (${started.kind}); follow it with: ovs task wait ${started.id}\n`);
    return undefined;
  }
  const task = await followTask(api, started, { json: options.json });
  if (options.json) {
    options.printJson(task);
    if (task.state !== "succeeded") process.exitCode = 1;
    return undefined;
  }
  return task;
}

function table(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const row of [header, ...rows]) process.stdout.write(row.map((cell, i) => cell.padEnd(widths[i]!)).join("  ").trimEnd() + "\n");
}

function taskIdArgument(value: string): string {
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(value)) throw new CliError(`"${value}" is not a task id (see ovs task list).`);
  return value;
}

function printTask(task: TaskView): void {
  const rows: Array<[string, string]> = [
    ["id", task.id],
    ["kind", task.kind],
    ["target", task.target === "" ? "-" : task.target],
    ["state", task.state],
    ["progress", `${fraction(task.progress)}${task.progress.detail ? ` (${task.progress.detail})` : ""}`],
    ["node", task.node],
    ["started by", `${task.startedBy}${task.requestId ? ` (request ${task.requestId})` : ""}`],
    ["created", task.createdAt],
    ["started", task.startedAt ?? "-"],
    ["finished", task.finishedAt ?? "-"],
  ];
  if (task.error) rows.push(["error", `${task.error.code}: ${task.error.message}`]);
  for (const [key, value] of rows) process.stdout.write(`${key.padEnd(12)}${value}\n`);
  if (task.result !== undefined) process.stdout.write(`result      ${JSON.stringify(task.result)}\n`);
}

function secondsOption(value: string): number {
  const seconds = Number(value);
  if (!Number.isFinite(seconds) || seconds <= 0) throw new InvalidArgumentError("give a number of seconds above 0.");
  return seconds;
}

function limitOption(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 1000) throw new InvalidArgumentError("the limit is a whole number from 1 to 1000.");
  return n;
}

export function registerTaskCommands(program: Command, api: () => string, printJson: (value: unknown) => void): void {
  const task = program.command("task").description("long operations (verify, maintenance pass, rollback, scheduled runs): list, show, wait for, cancel");

  task
    .command("list")
    .description("tasks, newest first")
    .option("--state <state>", "only queued, running, succeeded, failed or cancelled ones")
    .option("--kind <kind>", "only this kind, e.g. alba.verify")
    .option("--limit <n>", "at most this many", limitOption, 50)
    .option("--json", "print JSON")
    .action(async (options: { state?: string; kind?: string; limit: number; json?: boolean }) => {
      const query = new URLSearchParams({ limit: String(options.limit), ...(options.state === undefined ? {} : { state: options.state }), ...(options.kind === undefined ? {} : { kind: options.kind }) });
      const { tasks } = await callApi<{ tasks: TaskView[]; more: boolean }>(api(), "GET", `/api/v1/tasks?${query.toString()}`);
      if (options.json) return printJson(tasks);
      if (tasks.length === 0) return void process.stdout.write("no tasks\n");
      table(
        ["ID", "KIND", "TARGET", "STATE", "PROGRESS", "CREATED", "BY"],
        tasks.map((t) => [t.id, t.kind, t.target === "" ? "-" : t.target, t.state, fraction(t.progress), t.createdAt, t.startedBy]),
      );
    });

  task
    .command("show <id>")
    .description("one task: state, progress, times, who started it, result or error")
    .option("--json", "print JSON")
    .action(async (id: string, options: { json?: boolean }) => {
      const shown = await callApi<TaskView>(api(), "GET", `/api/v1/tasks/${taskIdArgument(id)}`);
      if (options.json) printJson(shown);
      else printTask(shown);
    });

  task
    .command("wait <id>")
    .description("follow a task with a progress bar until it finishes (exit 1 unless it succeeded)")
    .option("--timeout <seconds>", "give up waiting after this long (the task goes on)", secondsOption)
    .option("--json", "print the final task as JSON (no progress)")
    .action(async (id: string, options: { timeout?: number; json?: boolean }) => {
      const started = await callApi<TaskView>(api(), "GET", `/api/v1/tasks/${taskIdArgument(id)}`);
      const done = await followTask(api(), started, { json: options.json, ...(options.timeout === undefined ? {} : { timeoutMs: options.timeout * 1000 }) });
      if (options.json) {
        printJson(done);
        if (done.state !== "succeeded") process.exitCode = 1;
      } else {
        process.stdout.write(`task ${done.id} (${done.kind}${done.target === "" ? "" : ` ${done.target}`}) succeeded\n`);
      }
    });

  task
    .command("cancel <id>")
    .description("cancel a queued task, or a running one that can be cancelled")
    .option("--json", "print JSON")
    .action(async (id: string, options: { json?: boolean }) => {
      const shown = await callApi<TaskView>(api(), "POST", `/api/v1/tasks/${taskIdArgument(id)}/cancel`);
      if (options.json) printJson(shown);
      else process.stdout.write(`task ${shown.id} ${shown.state === "cancelled" ? "cancelled" : "is being cancelled"}\n`);
    });
}
