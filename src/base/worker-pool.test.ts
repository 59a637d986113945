import { spawnSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WorkerPool } from "./worker-pool.js";

// The workers run compiled JavaScript: the job module imports the pool's worker side from dist/ (the
// test command builds it before vitest runs), as the local backend's put worker does.
const distPool = pathToFileURL(fileURLToPath(new URL("../../dist/src/base/worker-pool.js", import.meta.url))).href;

interface Job {
  op: "sleep" | "fail" | "exit" | "echo";
  ms?: number;
  bytes?: Uint8Array;
}

let dir: string;
let jobsFile: URL;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "ovs-worker-pool-"));
  const file = join(dir, "jobs.mjs");
  await writeFile(file, `
import { threadId } from "node:worker_threads";
import fs from "node:fs";
import { serveWorkerJobs } from ${JSON.stringify(distPool)};
serveWorkerJobs((job) => {
  if (job.op === "sleep") { Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, job.ms); return { threadId, ms: job.ms }; }
  if (job.op === "fail") fs.openSync("/nonexistent-ovs-dir/file", "r");
  if (job.op === "exit") process.exit(3);
  return { threadId, length: job.bytes.length, first: job.bytes[0] };
});
`);
  jobsFile = pathToFileURL(file);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("WorkerPool", () => {
  it("runs jobs in at most sizeMax workers at once, each job in one worker", async () => {
    const pool = new WorkerPool<Job, { threadId: number }>(jobsFile, 2, "test");
    try {
      await Promise.all([pool.run({ op: "sleep", ms: 1 }), pool.run({ op: "sleep", ms: 1 })]); // both started
      const startedAt = performance.now();
      const results = await Promise.all([1, 2, 3, 4].map(() => pool.run({ op: "sleep", ms: 150 })));
      const elapsedMs = performance.now() - startedAt;
      // Two at a time: two rounds of 150 ms (not one: sizeMax holds; not four: they overlap).
      expect(elapsedMs).toBeGreaterThanOrEqual(290);
      expect(elapsedMs).toBeLessThan(590);
      expect(new Set(results.map((result) => result.threadId)).size).toBe(2);
    } finally {
      await pool.close();
    }
  });

  it("keeps a system error's code, syscall and path across the thread", async () => {
    const pool = new WorkerPool<Job, unknown>(jobsFile, 1, "test");
    try {
      const error = await pool.run({ op: "fail" }).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(Error);
      expect(error).toMatchObject({ code: "ENOENT", syscall: "open", path: "/nonexistent-ovs-dir/file", errno: -2 });
      expect((error as Error).message).toMatch(/no such file or directory/);
    } finally {
      await pool.close();
    }
  });

  it("hands a transferred buffer to the worker without a copy left behind", async () => {
    const pool = new WorkerPool<Job, { length: number; first: number }>(jobsFile, 1, "test");
    try {
      const bytes = new Uint8Array(1 << 20).fill(7);
      const result = await pool.run({ op: "echo", bytes }, [bytes.buffer]);
      expect(result).toMatchObject({ length: 1 << 20, first: 7 });
      expect(bytes.byteLength).toBe(0); // detached: the worker owns it now
    } finally {
      await pool.close();
    }
  });

  it("fails the job of a worker that dies and serves the next job with a new worker", async () => {
    const pool = new WorkerPool<Job, { threadId: number }>(jobsFile, 1, "test");
    try {
      const first = await pool.run({ op: "sleep", ms: 1 });
      await expect(pool.run({ op: "exit" })).rejects.toThrow(/a test worker exited \(code 3\)/);
      const next = await pool.run({ op: "sleep", ms: 1 });
      expect(next.threadId).not.toBe(first.threadId);
    } finally {
      await pool.close();
    }
  });

  it("fails queued and running jobs at close, and refuses new ones", async () => {
    const pool = new WorkerPool<Job, unknown>(jobsFile, 1, "test");
    const running = expect(pool.run({ op: "sleep", ms: 300 })).rejects.toThrow(/the test worker pool closed/);
    const queued = expect(pool.run({ op: "sleep", ms: 1 })).rejects.toThrow(/the test worker pool closed/);
    await pool.close();
    await running;
    await queued;
    await expect(pool.run({ op: "sleep", ms: 1 })).rejects.toThrow(/the test worker pool is closed/);
  });

  it("keeps the process alive while a job runs, and lets it exit when the pool is idle", async () => {
    // A process whose only pending work is a job: were the worker unref'd while busy, Node would exit
    // before the job's answer (top-level await never settles: exit code 13) and print nothing.
    const script = `
import { WorkerPool } from ${JSON.stringify(pathToFileURL(fileURLToPath(new URL("../../dist/src/base/worker-pool.js", import.meta.url))).href)};
const pool = new WorkerPool(new URL(${JSON.stringify(jobsFile.href)}), 2, "test");
const result = await pool.run({ op: "sleep", ms: 200 });
console.log("answered", result.ms);
`;
    const scriptFile = join(dir, "main.mjs");
    await writeFile(scriptFile, script);
    const startedAt = Date.now();
    const child = spawnSync(process.execPath, [scriptFile], { encoding: "utf8", timeout: 20_000 });
    expect(child.stderr).toBe("");
    expect(child.stdout.trim()).toBe("answered 200");
    expect(child.status).toBe(0); // and it exited by itself, the idle worker not holding it
    expect(Date.now() - startedAt).toBeLessThan(20_000);
  });
});
