// Tasks through the front door: `ovs up` (ALBA on 6 ASD processes, JSON logs at info) as a process,
// driven by HTTP and the `ovs` CLI. A namespace verify, a maintenance pass and a rollback answer 202 with a
// task (Location header) whose progress is observed while it runs; the CLI follows tasks with progress
// lines (a bar on a terminal, through script(1)), --json prints only the final task; task list/show/wait/
// cancel; 401/403/400/404/409 for the new routes with nothing changed; the task's log lines carry its id
// and the request id, the audit entry its id; a task running when the node is killed is failed
// INTERRUPTED after the restart; a scheduled run is a task.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fsp from "node:fs/promises";
import path from "node:path";
import { RunningNode, expectOk, runTool, tempDir } from "./platform.js";

interface TaskView {
  id: string; kind: string; target: string; node: string; state: string; progress: { done: number; total?: number; unit: string; detail?: string };
  createdAt: string; startedAt?: string; finishedAt?: string; startedBy: string; requestId?: string; cancellable: boolean; result?: Record<string, unknown>;
  error?: { code: string; message: string };
}

let node: RunningNode;
let dataDir: string;
let namespace: string;
let readerToken: string;

async function json<T>(response: Response): Promise<T> {
  return (await response.json()) as T;
}

async function post(pathAndQuery: string, body?: unknown, headers: Record<string, string> = {}, token?: string): Promise<Response> {
  return node.fetch(pathAndQuery, { method: "POST", headers: { ...(body === undefined ? {} : { "content-type": "application/json" }), ...headers }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) }, token);
}

/** Polls a task as fast as the API answers until it finishes; every view seen, in order. */
async function watch(id: string, timeoutMs = 120_000): Promise<TaskView[]> {
  const seen: TaskView[] = [];
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const response = await node.fetch(`/api/v1/tasks/${id}`);
    expect(response.status).toBe(200);
    const task = await json<TaskView>(response);
    seen.push(task);
    if (["succeeded", "failed", "cancelled"].includes(task.state)) return seen;
    if (Date.now() > deadline) throw new Error(`task ${id} still ${task.state} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Retries while the node has not yet noticed that the last NBD client (qemu-io) closed (409 IN_USE). */
async function untilDisconnected<T extends { status?: number; exitCode?: number | null; stderr?: string }>(attempt: () => Promise<T>, busy: (result: T) => Promise<boolean> | boolean): Promise<T> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const result = await attempt();
    if (!(await busy(result)) || Date.now() > deadline) return result;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function taskCount(): Promise<number> {
  return (await json<{ tasks: TaskView[] }>(await node.fetch("/api/v1/tasks?limit=1000"))).tasks.length;
}

beforeAll(async () => {
  dataDir = await tempDir("ovs-tasks-");
  node = await RunningNode.start(dataDir, { nbd: 0, api: 0 }, [], "up", { OVS_LOG_LEVEL: "info" });
  // 4 MiB SCOs (not the default 8): the counts below are of 4 MiB SCOs.
  expectOk(await node.ovs(["vdisk", "create", "big", "--size", "96M", "--sco-size", "4M", "--tlog-multiplier", "16"]), "create");
  // 64 MiB of data: 16 SCOs and their TLogs; a verify reads 96 MiB of fragments at maintenance's 64 MiB/s.
  expectOk(await runTool("qemu-io", ["-f", "raw", node.uri("big"), "-c", "write -P 0x5a 0 64M", "-c", "flush"], 120_000), "qemu-io write");
  namespace = (JSON.parse((await node.ovs(["vdisk", "info", "big", "--json"])).stdout) as { namespace: string }).namespace;
  // Wait until the write buffer is on the backend (the objects the verify reads).
  for (const deadline = Date.now() + 60_000; ;) {
    const info = JSON.parse((await node.ovs(["vdisk", "info", "big", "--json"])).stdout) as { stats: { pendingUploads: number; nonDisposableBytes: number } };
    if (info.stats.pendingUploads === 0 && info.stats.nonDisposableBytes === 0) break;
    if (Date.now() > deadline) throw new Error("uploads did not finish");
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  const reader = await node.ovs(["user", "create", "task-reader", "--role", "read", "--json"]);
  expectOk(reader, "create reader");
  readerToken = await node.login("task-reader", (JSON.parse(reader.stdout) as { password: string }).password);
}, 300_000);

afterAll(async () => {
  await node?.stop();
  await fsp.rm(dataDir, { recursive: true, force: true });
});

describe("long operations as tasks over REST", () => {
  it("a verify answers 202 with the task; its progress moves while it runs; the result is the report; logs and audit name it", async () => {
    const response = await post(`/api/v1/alba/namespaces/${namespace}/verify`, undefined, { "x-request-id": "verify-4711" });
    expect(response.status).toBe(202);
    const started = await json<TaskView>(response);
    expect(response.headers.get("location")).toBe(`/api/v1/tasks/${started.id}`);
    expect(response.headers.get("x-request-id")).toBe("verify-4711");
    expect(started).toMatchObject({ kind: "alba.verify", target: namespace, state: "queued", startedBy: "user:admin", requestId: "verify-4711", cancellable: true, progress: { done: 0, unit: "objects" } });
    const seen = await watch(started.id);
    const final = seen.at(-1)!;
    expect(final.state).toBe("succeeded");
    expect(final.result).toMatchObject({ namespace, badCount: 0, missingCount: 0 });
    const objects = final.result!.objectCount as number;
    expect(objects).toBeGreaterThanOrEqual(16);
    expect(final.progress).toMatchObject({ done: objects, total: objects, unit: "objects" });
    // Observed while it ran: running, with a count between none and all, never going back.
    const midway = seen.filter((t) => t.state === "running" && t.progress.total === objects && t.progress.done > 0 && t.progress.done < objects);
    expect(midway.length, JSON.stringify(seen.map((t) => [t.state, t.progress.done]))).toBeGreaterThan(0);
    const dones = seen.map((t) => t.progress.done);
    expect(dones).toEqual([...dones].sort((a, b) => a - b));
    expect(Date.parse(final.finishedAt!)).toBeGreaterThanOrEqual(Date.parse(final.startedAt!));
    // The node's JSON log lines of the task carry its id and the request's id; the audit entry names it.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const lines = node.stderr.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Record<string, unknown>);
    const ofTask = lines.filter((l) => l.taskId === started.id);
    expect(ofTask.map((l) => l.msg)).toEqual(expect.arrayContaining(["task started", "task succeeded"]));
    expect(ofTask.every((l) => l.reqId === "verify-4711" && l.taskKind === "alba.verify")).toBe(true);
    const audit = (await fsp.readFile(path.join(dataDir, "audit.log"), "utf8")).trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(audit.find((e) => e.reqId === "verify-4711")).toMatchObject({ status: 202, taskId: started.id, route: "/api/v1/alba/namespaces/:namespace/verify" });
    // The list shows it, filtered by kind and state.
    const listed = await json<{ tasks: TaskView[] }>(await node.fetch("/api/v1/tasks?kind=alba.verify&state=succeeded"));
    expect(listed.tasks.map((t) => t.id)).toContain(started.id);
    expect((await json<{ tasks: TaskView[] }>(await node.fetch("/api/v1/tasks?kind=alba.verify&state=failed"))).tasks.map((t) => t.id)).not.toContain(started.id);
  });

  it("a maintenance pass answers 202 and steps through its phases to the status", async () => {
    const response = await post("/api/v1/alba/maintenance/pass");
    expect(response.status).toBe(202);
    const started = await json<TaskView>(response);
    expect(started).toMatchObject({ kind: "alba.maintenance-pass", target: "", progress: { unit: "steps" } });
    const seen = await watch(started.id);
    const final = seen.at(-1)!;
    expect(final).toMatchObject({ state: "succeeded", progress: { done: 5, total: 5, unit: "steps", detail: "done" } });
    expect(final.result).toMatchObject({ looping: true, counters: expect.any(Object) });
    const steps = seen.filter((t) => t.state === "running").map((t) => t.progress.detail);
    for (const step of steps) expect(["probe", "repair", "verify", "garbage collection", "rebalance", "done", undefined]).toContain(step);
  });

  it("cancels a running verify", async () => {
    const started = await json<TaskView>(await post(`/api/v1/alba/namespaces/${namespace}/verify`));
    const cancel = await post(`/api/v1/tasks/${started.id}/cancel`);
    expect(cancel.status).toBe(202);
    const final = (await watch(started.id)).at(-1)!;
    expect(final).toMatchObject({ state: "cancelled", error: { code: "CANCELLED", message: "cancelled by user:admin." } });
    expect(final.progress.done).toBeLessThan(final.progress.total ?? Infinity);
    const again = await post(`/api/v1/tasks/${started.id}/cancel`);
    expect(again.status).toBe(409);
    expect((await json<{ error: { code: string; message: string } }>(again)).error).toEqual({ code: "CONFLICT", message: `task ${started.id} already cancelled.` });
  });

  it("checks a rollback before it starts a task (409/404 at once, nothing recorded), then rolls back as a task", async () => {
    expectOk(await node.ovs(["vdisk", "create", "rb", "--size", "8M"]), "create");
    expectOk(await runTool("qemu-io", ["-f", "raw", node.uri("rb"), "-c", "write -P 0x11 0 1M", "-c", "flush"]), "write");
    expectOk(await node.ovs(["snapshot", "create", "rb", "s1"]), "snapshot");
    const before = await taskCount();
    const missing = await post("/api/v1/vdisks/rb/rollback", { snapshot: "nope" });
    expect(missing.status).toBe(404);
    expect((await json<{ error: { code: string; message: string } }>(missing)).error.message).toBe("volume rb has no snapshot named nope");
    expect((await post("/api/v1/vdisks/nosuch/rollback", { snapshot: "s1" })).status).toBe(404);
    expect((await post("/api/v1/vdisks/rb/rollback", { snapshot: "s1", extra: 1 })).status).toBe(400);
    expect(await taskCount()).toBe(before);
    for (let wait = 0; JSON.parse((await node.ovs(["snapshot", "list", "rb", "--json"])).stdout)[0].state !== "stored"; wait++) {
      expect(wait).toBeLessThan(150);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expectOk(await runTool("qemu-io", ["-f", "raw", node.uri("rb"), "-c", "write -P 0x22 0 1M", "-c", "flush"]), "overwrite");
    const response = await untilDisconnected(() => post("/api/v1/vdisks/rb/rollback", { snapshot: "s1" }), async (r) => r.status === 409 && /NBD client/.test(await r.clone().text()));
    expect(response.status).toBe(202);
    const final = (await watch((await json<TaskView>(response)).id)).at(-1)!;
    expect(final).toMatchObject({ kind: "vdisk.rollback", target: "rb", state: "succeeded", cancellable: false, progress: { done: 1, total: 1 }, result: { name: "rb" } });
    expectOk(await runTool("qemu-io", ["-f", "raw", node.uri("rb"), "-c", "read -P 0x11 0 1M"]), "the old data is back");
    // The CLI: refused at once with one sentence, or followed to the end.
    const refused = await node.ovs(["vdisk", "rollback", "nosuch", "--snapshot", "s1"]);
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toBe("ovs: there is no vDisk named nosuch.\n");
    const rolled = await untilDisconnected(() => node.ovs(["vdisk", "rollback", "rb", "--snapshot", "s1"]), (r) => r.exitCode !== 0 && /NBD client/.test(r.stderr));
    expectOk(rolled, "rollback");
    expect(rolled.stdout).toBe("rolled vDisk rb back to snapshot s1\n");
    expect(rolled.stderr).toMatch(/^task [0-9a-f-]{36} vdisk\.rollback rb: (queued|running), 0\/1 steps/);
    expect(rolled.stderr).toMatch(/: succeeded, 1\/1 steps( \(rolling back to s1\))?\n$/);
  });

  it("refuses the task routes without a token (401), without the role (403) and with bad input (400)", async () => {
    const some = (await json<{ tasks: TaskView[] }>(await node.fetch("/api/v1/tasks?limit=1"))).tasks[0]!;
    expect((await node.fetch("/api/v1/tasks", {}, "")).status).toBe(401);
    expect((await node.fetch(`/api/v1/tasks/${some.id}`, {}, "")).status).toBe(401);
    expect((await node.fetch(`/api/v1/tasks/${some.id}`, {}, readerToken)).status).toBe(200);
    const forbidden = await post(`/api/v1/tasks/${some.id}/cancel`, undefined, {}, readerToken);
    expect(forbidden.status).toBe(403);
    expect((await json<{ error: { code: string } }>(forbidden)).error.code).toBe("FORBIDDEN");
    const before = await taskCount();
    expect((await post(`/api/v1/alba/namespaces/${namespace}/verify`, undefined, {}, readerToken)).status).toBe(403);
    expect((await post("/api/v1/alba/maintenance/pass", undefined, {}, readerToken)).status).toBe(403);
    expect((await post(`/api/v1/alba/namespaces/nosuch/verify`)).status).toBe(404);
    expect(await taskCount()).toBe(before);
    for (const [url, message] of [
      ["/api/v1/tasks/123", /params\.id must match pattern/],
      ["/api/v1/tasks?state=paused", /querystring\.state/],
      ["/api/v1/tasks?limit=0", /querystring\.limit must be >= 1/],
      ["/api/v1/tasks?sort=id", /unknown field "sort"/],
    ] as const) {
      const response = await node.fetch(url);
      expect(response.status, url).toBe(400);
      const body = await json<{ error: { code: string; message: string } }>(response);
      expect(body.error.code).toBe("INVALID_ARGUMENT");
      expect(body.error.message).toMatch(message);
    }
    const unknown = await node.fetch("/api/v1/tasks/01a2182a-ca72-7123-8567-89abcdef0123");
    expect(unknown.status).toBe(404);
    expect((await json<{ error: { message: string } }>(unknown)).error.message).toMatch(/^there is no task 01a2182a-ca72-7123-8567-89abcdef0123/);
    const doc = await json<{ paths: Record<string, Record<string, { "x-ovs-role": string }>> }>(await node.fetch("/api/openapi.json"));
    expect(doc.paths["/api/v1/tasks"]!.get!["x-ovs-role"]).toBe("read");
    expect(doc.paths["/api/v1/tasks/{id}"]!.get!["x-ovs-role"]).toBe("read");
    expect(doc.paths["/api/v1/tasks/{id}/cancel"]!.post!["x-ovs-role"]).toBe("write");
  });
});

describe("the CLI follows tasks", () => {
  it("prints progress lines off a terminal, the report at the end; --json prints only the final task", async () => {
    const text = await node.ovs(["alba", "namespace", "verify", namespace], 180_000);
    expectOk(text, "verify");
    // (A fragment past the c acknowledged ones may still be a hole on a busy machine, until maintenance fills it.)
    expect(text.stdout).toMatch(/^\d+ objects, \d+ fragments checked: 0 bad \(0 missing\), \d+ unavailable, \d+ holes\n$/);
    const progress = text.stderr.trim().split("\n");
    expect(progress[0]).toMatch(new RegExp(`^task [0-9a-f-]{36} alba\\.verify ${namespace}: (queued|running), 0 objects$`));
    expect(progress.at(-1)).toMatch(new RegExp(`^task [0-9a-f-]{36} alba\\.verify ${namespace}: succeeded, (\\d+)/\\1 objects \\(${namespace}\\)$`));
    const asJson = await node.ovs(["alba", "namespace", "verify", namespace, "--json"], 180_000);
    expectOk(asJson, "verify --json");
    expect(asJson.stderr).toBe("");
    const task = JSON.parse(asJson.stdout) as TaskView;
    expect(task).toMatchObject({ kind: "alba.verify", state: "succeeded", result: { namespace, badCount: 0 } });
    // task show / list / wait
    const shown = await node.ovs(["task", "show", task.id]);
    expectOk(shown, "task show");
    expect(shown.stdout).toMatch(new RegExp(`^id\\s+${task.id}\\nkind\\s+alba\\.verify\\ntarget\\s+${namespace}\\nstate\\s+succeeded\\n`));
    expect(shown.stdout).toMatch(/\nstarted by\s+user:admin \(request [0-9a-f-]+\)\n/);
    const list = await node.ovs(["task", "list", "--kind", "alba.verify", "--limit", "2"]);
    expectOk(list, "task list");
    expect(list.stdout.split("\n")[0]).toMatch(/^ID\s+KIND\s+TARGET\s+STATE\s+PROGRESS\s+CREATED\s+BY$/);
    expect(list.stdout).toContain(task.id);
    expect(list.stdout.trim().split("\n")).toHaveLength(3);
    const noWait = await node.ovs(["alba", "maintenance", "run", "--no-wait"]);
    expectOk(noWait, "maintenance run --no-wait");
    const id = /^started task ([0-9a-f-]{36}) \(alba\.maintenance-pass\); follow it with: ovs task wait \1\n$/.exec(noWait.stdout)?.[1];
    expect(id, noWait.stdout).toBeDefined();
    const waited = await node.ovs(["task", "wait", id!], 180_000);
    expectOk(waited, "task wait");
    expect(waited.stdout).toBe(`task ${id} (alba.maintenance-pass) succeeded\n`);
    // Bad input: one sentence.
    const bad = await node.ovs(["task", "show", "nope"]);
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toBe('ovs: "nope" is not a task id (see ovs task list).\n');
    const badState = await node.ovs(["task", "list", "--state", "paused"]);
    expect(badState.exitCode).toBe(1);
    expect(badState.stderr).toMatch(/^ovs: invalid request: querystring\.state/);
    const refused = await node.ovs(["alba", "namespace", "verify", namespace], 60_000, { env: { OVS_TOKEN: readerToken } });
    expect(refused.stderr).toBe("ovs: role write required (user task-reader has read).\n");
  });

  it("draws a single-line progress bar on a terminal", async () => {
    const command = `${process.execPath} ${path.resolve("dist/src/cli/main.js")} --api ${node.apiUrl} alba namespace verify ${namespace}`;
    const result = await runTool("script", ["-qefc", `env OVS_TOKEN=${node.token} COLUMNS=120 ${command}`, "/dev/null"], 180_000);
    expectOk(result, "verify on a pty");
    const frames = result.stdout.split("\r\x1b[2K").slice(1).map((frame) => frame.split(/\r?\n/)[0]!);
    expect(frames.length).toBeGreaterThan(1);
    // The line is cut to the terminal's width (100 columns when the terminal does not say).
    expect(frames.at(-1)).toMatch(/^\[#{24}\] 100% {2}(\d+)\/\1 objects {2}alba\.verify vdisk-/);
    for (const frame of frames) expect(frame.length).toBeLessThanOrEqual(99);
    expect(frames.some((frame) => /^\[#*-+\]\s+\d+%/.test(frame))).toBe(true);
    expect(result.stdout).toMatch(/\d+ objects, \d+ fragments checked: 0 bad/);
  });
});

describe("scheduled runs and restarts", () => {
  it("runs a scheduled task as a task, with its id in the history and the log", async () => {
    const listed = await node.ovs(["schedule", "list"]);
    expect(listed.stdout).toMatch(/\nvdisk\.auto-snapshot\s+off\s/); // the test helper turned it off
    expect(listed.stdout).toMatch(/\nalba\.verify-namespaces\s+every 7d \+76h\s/);
    const verified = await node.ovs(["schedule", "run", "alba.verify-namespaces"], 180_000);
    expectOk(verified, "verify every namespace");
    expect(verified.stdout).toMatch(/^alba\.verify-namespaces: SUCCESS in \d+ ms: \d+ namespaces, \d+ objects verified: 0 bad fragments \(queued for repair\), \d+ unavailable\n$/);
    const scrubbed = await node.ovs(["schedule", "run", "vdisk.scrub"], 180_000);
    expectOk(scrubbed, "scrub every vDisk");
    expect(scrubbed.stdout).toMatch(/^vdisk\.scrub: SUCCESS in \d+ ms: (\d+) of \1 vDisks scrubbed\n$/);
    expect(listed.stdout).toMatch(/\nvdisk\.scrub\s+off\s/); // the test helper turned it off too
    const run = await node.ovs(["schedule", "run", "vdisk.auto-snapshot"]);
    expectOk(run, "schedule run");
    expect(run.stdout).toMatch(/^vdisk\.auto-snapshot: SUCCESS in \d+ ms: \d+ snapshots? taken of \d+ vDisks?, \d+ deleted by retention\n$/);
    const snapshots = JSON.parse((await node.ovs(["snapshot", "list", "big", "--json"])).stdout) as Array<{ name: string; sticky: boolean; metadata?: string }>;
    expect(snapshots.find((s) => /^auto-\d{8}T\d{6}Z$/.test(s.name))).toMatchObject({ sticky: false, metadata: "automatic snapshot (ovs scheduler)" });
    // Over REST, a run by hand is a task too; its run is in the history once the task has finished.
    expect((await post("/api/v1/schedule/health.check/run", undefined, {}, readerToken)).status).toBe(403);
    expect((await post("/api/v1/schedule/nosuch/run")).status).toBe(404);
    const viaRest = await post("/api/v1/schedule/health.check/run");
    expect(viaRest.status).toBe(202);
    const healthTask = await json<TaskView>(viaRest);
    expect(viaRest.headers.get("location")).toBe(`/api/v1/tasks/${healthTask.id}`);
    expect(healthTask).toMatchObject({ kind: "schedule.health.check", startedBy: "user:admin", cancellable: true });
    expect((await watch(healthTask.id)).at(-1)!.state).toBe("succeeded");
    const healthRuns = await json<{ runs: Array<{ taskId: string; trigger: string; state: string }> }>(await node.fetch("/api/v1/schedule/history?task=health.check&limit=1"));
    expect(healthRuns.runs[0]).toMatchObject({ taskId: healthTask.id, trigger: "manual", state: "SUCCESS" });
    const [record] = JSON.parse((await node.ovs(["schedule", "history", "vdisk.auto-snapshot", "--json"])).stdout) as Array<{ taskId: string; trigger: string }>;
    expect(record!.trigger).toBe("manual");
    const task = JSON.parse((await node.ovs(["task", "show", record!.taskId, "--json"])).stdout) as TaskView;
    expect(task).toMatchObject({ kind: "schedule.vdisk.auto-snapshot", state: "succeeded", startedBy: "user:admin", progress: { unit: "vdisks" } });
    await new Promise((resolve) => setTimeout(resolve, 300));
    const lines = node.stderr.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.filter((l) => l.taskId === task.id).map((l) => l.msg)).toEqual(expect.arrayContaining(["task started", "task succeeded"]));
  });

  it("marks a task the node was running when it was killed failed (INTERRUPTED) after the restart", async () => {
    const started = await json<TaskView>(await post(`/api/v1/alba/namespaces/${namespace}/verify`));
    for (let wait = 0; (await json<TaskView>(await node.fetch(`/api/v1/tasks/${started.id}`))).progress.done === 0; wait++) {
      expect(wait).toBeLessThan(2000);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const ports = { nbd: node.nbdPort, api: node.apiPort };
    expect(await node.stop("SIGKILL")).toBe(null);
    await new Promise((resolve) => setTimeout(resolve, 1000)); // the ASD children notice and exit
    node = await RunningNode.start(dataDir, ports, [], "up", { OVS_LOG_LEVEL: "info" });
    const after = await json<TaskView>(await node.fetch(`/api/v1/tasks/${started.id}`));
    expect(after).toMatchObject({ state: "failed", error: { code: "INTERRUPTED" } });
    expect(after.error!.message).toMatch(/^node \S+ stopped while the task was (queued|running); start it again if it is still needed\.$/);
    const shown = await node.ovs(["task", "show", started.id]);
    expect(shown.stdout).toMatch(/\nerror\s+INTERRUPTED: node \S+ stopped while the task was/);
    // Following a task that failed ends with its message and exit 1.
    const waited = await node.ovs(["task", "wait", started.id]);
    expect(waited.exitCode).toBe(1);
    expect(waited.stderr).toMatch(new RegExp(`\\novs: task ${started.id} \\(alba\\.verify ${namespace}\\) failed: node \\S+ stopped while the task was`));
    // The node works on: a new verify succeeds.
    const again = await node.ovs(["alba", "namespace", "verify", namespace, "--json"], 180_000);
    expectOk(again, "verify after the restart");
    expect((JSON.parse(again.stdout) as TaskView).state).toBe("succeeded");
  });
});
