// The daily scrub slot (vdisk.scrub) on real vDisks (embedded store, local backend) and the real
// VDiskService.scrub, through a recording wrapper that makes one vDisk fail: every vDisk but a template is
// scrubbed in turn with its progress passed on, a failing one does not stop the others and fails the run
// naming it, and a cancelled run stops between vDisks.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { EmbeddedStore } from "../../store/index.js";
import { LocalBackend } from "../../backend/index.js";
import { OvsError, silentLogger } from "../../base/index.js";
import { VDiskService } from "../vdisk-service.js";
import { TaskService } from "./task-service.js";
import { scrubTask, type ScrubFunction } from "./scheduled-maintenance.js";
import { Scheduler } from "../scheduler/scheduler.js";

let dir: string;
let store: EmbeddedStore;
let backend: LocalBackend;
let vdisks: VDiskService;
let tasks: TaskService;

beforeAll(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), "ovs-scrub-task-"));
  store = await EmbeddedStore.open({ dir: path.join(dir, "store") });
  backend = await LocalBackend.open({ dir: path.join(dir, "backend") });
  vdisks = new VDiskService({ dataDir: dir, nodeId: "n1", store, backend, log: silentLogger() });
  await vdisks.start();
  for (const name of ["a", "b", "c", "tpl"]) {
    await vdisks.create(name, 4 * 1024 * 1024);
    await vdisks.createSnapshot(name, "s1");
  }
  await vdisks.setAsTemplate("tpl");
  tasks = new TaskService({ store, nodeId: "n1", log: silentLogger() });
  await tasks.start();
});

afterAll(async () => {
  await tasks?.stop();
  await vdisks?.stop();
  await backend?.close();
  await store?.close();
  await fsp.rm(dir, { recursive: true, force: true });
});

describe("vdisk.scrub", () => {
  it("scrubs every vDisk but templates, passes progress on, and fails the run naming the vDisk that failed", async () => {
    const calls: string[] = [];
    const phases = new Set<string>();
    const scrub: ScrubFunction = async (name, options, onProgress) => {
      calls.push(name);
      if (name === "b") throw new OvsError("IO_ERROR", "the backend refused a write.");
      return vdisks.scrub(name, options, (progress) => {
        phases.add(progress.phase);
        onProgress(progress);
      });
    };
    const scheduler = new Scheduler({ store, nodeId: "n1", log: silentLogger(), tasks: [scrubTask(vdisks, scrub)], taskService: tasks });
    const run = await scheduler.runNow("vdisk.scrub");
    expect(calls).toEqual(["a", "b", "c"]);
    expect(run).toMatchObject({ state: "FAILED", message: "2 of 3 vDisks scrubbed; failed: b (the backend refused a write)" });
    expect(phases.has("examine")).toBe(true);
    const record = await tasks.get(run.taskId!);
    expect(record).toMatchObject({ kind: "schedule.vdisk.scrub", target: "n1", state: "failed", progress: { done: 2, total: 3, unit: "vdisks" } });
    expect(record!.progress.detail).toMatch(/^c: (examine|rewrite|delete) \d+\/\d+$/);
  });

  it("stops between vDisks when its task is cancelled", async () => {
    let release!: () => void;
    const calls: string[] = [];
    const scrub: ScrubFunction = async (name) => {
      calls.push(name);
      if (name === "a") await new Promise<void>((resolve) => (release = resolve));
    };
    const task = scrubTask(vdisks, scrub);
    const started = await tasks.submit({ kind: "schedule.vdisk.scrub", target: "n1", startedBy: "scheduler", unit: "vdisks", cancellable: true, run: (context) => task.run({ ...context, nowMs: Date.now() }) });
    while (calls.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    await tasks.cancel(started.id, "user:ops");
    release();
    await tasks.waitLocal(started.id);
    expect(calls).toEqual(["a"]);
    expect(await tasks.get(started.id)).toMatchObject({ state: "cancelled", error: { code: "CANCELLED", message: "cancelled by user:ops." } });
  });
});
