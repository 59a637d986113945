// Front-door test of per-vDisk QoS and settings (issue 4 items 7 and 8): `ovs up --backend local` as a
// process, limits set with the `ovs` CLI, measured with fio through NBD. The issue's requirement: the
// limits (read, write and total; IOPS and bandwidth) hold within 10 % under fio. Limits change while the
// node runs (no restart), also while fio is connected (seen in fio's per-second log), and survive a restart.
//
// On a loaded machine fio may fall short of a limit it could otherwise reach, so the limits are low
// (300 and 600 write IOPS, 20 MiB/s) and each run is a few seconds; the upper bound (the limit holds)
// is the real check, the lower bound checks the limiter does not over-throttle.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fsp from "node:fs/promises";
import path from "node:path";
import { RunningNode, expectOk, runTool, tempDir } from "./platform.js";

const MiB = 1024 * 1024;
let node: RunningNode;
let dataDir: string;

beforeAll(async () => {
  dataDir = await tempDir("ovs-qos-");
  node = await RunningNode.start(dataDir, { nbd: 0, api: 0 }, ["--backend", "local"]);
});

afterAll(async () => {
  await node?.stop();
  await fsp.rm(dataDir, { recursive: true, force: true });
});

interface FioFigures {
  iops: number;
  bw_bytes: number;
  total_ios: number;
}

interface FioJob {
  error: number;
  read: FioFigures;
  write: FioFigures;
}

/** Runs fio's NBD engine against a vDisk (random I/O, 8 in flight, time based) and returns its job report. */
async function fioJob(vdisk: string, blockSize: string, runtimeSeconds: number, rw: "randwrite" | "randread" | "randrw", extra: string[] = []): Promise<FioJob> {
  const result = await runTool("fio", [
    "--name=qos", "--ioengine=nbd", `--uri=${node.uri(vdisk)}`, `--rw=${rw}`, `--bs=${blockSize}`, "--iodepth=8",
    `--runtime=${runtimeSeconds}`, "--time_based", "--size=64m", "--output-format=json", ...extra,
  ], 120_000);
  expectOk(result, "fio");
  const report = JSON.parse(result.stdout.slice(result.stdout.indexOf("{"))) as { jobs: FioJob[] };
  expect(report.jobs[0]!.error).toBe(0);
  return report.jobs[0]!;
}

/** fio's figures for the one direction it ran. */
async function fio(vdisk: string, blockSize: string, runtimeSeconds: number, rw: "randwrite" | "randread" = "randwrite"): Promise<FioFigures> {
  const job = await fioJob(vdisk, blockSize, runtimeSeconds, rw);
  return rw === "randwrite" ? job.write : job.read;
}

async function settingsOf(vdisk: string): Promise<unknown> {
  const result = await node.ovs(["vdisk", "settings", vdisk, "--json"]);
  expectOk(result, "vdisk settings");
  return JSON.parse(result.stdout);
}

/** Waits (bounded) until no NBD client is connected to the vDisk (fio has disconnected). */
async function waitDisconnected(vdisk: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const info = JSON.parse((await node.ovs(["vdisk", "info", vdisk, "--json"])).stdout) as { connectionCount: number };
    if (info.connectionCount === 0) return;
    if (Date.now() > deadline) throw new Error(`vDisk ${vdisk} still has ${info.connectionCount} clients after 10 s`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const figures: Record<string, number> = {};

describe("per-vDisk QoS through the front door", () => {
  it("holds a write IOPS limit within 10 % under fio, changes it live, and clears it", async () => {
    expectOk(await node.ovs(["vdisk", "create", "q1", "--size", "256M"]), "create");
    const set = await node.ovs(["vdisk", "set", "q1", "qos.writeIops=300"]);
    expectOk(set, "vdisk set");
    expect(set.stdout).toMatch(/qos\.writeIops\s+300 ops\/s/);

    const at300 = await fio("q1", "4k", 4);
    figures.writeIopsAt300 = at300.iops;
    expect(at300.iops).toBeLessThanOrEqual(300 * 1.1);
    expect(at300.iops).toBeGreaterThanOrEqual(300 * 0.9);
    const info = await node.ovs(["vdisk", "info", "q1", "--json"]);
    expectOk(info, "vdisk info");
    const qos = (JSON.parse(info.stdout) as { qos: { limits: { writeIops: number }; delayedRequests: number; delayedMsTotal: number } }).qos;
    expect(qos.limits.writeIops).toBe(300);
    expect(qos.delayedRequests).toBeGreaterThan(at300.total_ios / 2);
    expect(qos.delayedMsTotal).toBeGreaterThan(0);
    expect((await node.ovs(["vdisk", "info", "q1"])).stdout).toMatch(/QoS\s+write 300 ops\/s; \d+ requests delayed/);

    // Changed while the node runs, with no client connected; the next client sees the new limit.
    await waitDisconnected("q1");
    expectOk(await node.ovs(["vdisk", "set", "q1", "qos.writeIops=600"]), "vdisk set 600");
    const at600 = await fio("q1", "4k", 4);
    figures.writeIopsAt600 = at600.iops;
    expect(at600.iops).toBeLessThanOrEqual(600 * 1.1);
    expect(at600.iops).toBeGreaterThanOrEqual(600 * 0.9);

    await waitDisconnected("q1");
    expectOk(await node.ovs(["vdisk", "set", "q1", "qos.writeIops=0"]), "vdisk set 0");
    expect(await settingsOf("q1")).toMatchObject({ qos: { writeIops: 0 } });
    const unlimited = await fio("q1", "4k", 3);
    figures.writeIopsUnlimited = unlimited.iops;
    expect(unlimited.iops).toBeGreaterThan(600 * 1.5);
  });

  it("holds a write bandwidth limit (1 MiB writes) and a read IOPS limit within 10 % under fio", async () => {
    expectOk(await node.ovs(["vdisk", "create", "q2", "--size", "256M"]), "create");
    expectOk(await node.ovs(["vdisk", "set", "q2", "qos.writeBandwidth=20M/s"]), "vdisk set bandwidth");
    expect(await settingsOf("q2")).toMatchObject({ qos: { writeBytesPerSecond: 20 * MiB, writeIops: 0 } });
    const write = await fio("q2", "1M", 4);
    figures.writeMiBPerSecondAt20 = write.bw_bytes / MiB;
    expect(write.bw_bytes).toBeLessThanOrEqual(20 * MiB * 1.1);
    expect(write.bw_bytes).toBeGreaterThanOrEqual(20 * MiB * 0.9);

    // A read limit leaves writes alone and holds for reads.
    await waitDisconnected("q2");
    expectOk(await node.ovs(["vdisk", "set", "q2", "qos.readIops=400"]), "vdisk set read IOPS");
    const read = await fio("q2", "4k", 3, "randread");
    figures.readIopsAt400 = read.iops;
    expect(read.iops).toBeLessThanOrEqual(400 * 1.1);
    expect(read.iops).toBeGreaterThanOrEqual(400 * 0.9);
  });

  it("holds read bandwidth, total IOPS and total bandwidth limits within 10 % under fio", async () => {
    expectOk(await node.ovs(["vdisk", "create", "q4", "--size", "256M"]), "create");
    expectOk(await node.ovs(["vdisk", "set", "q4", "qos.readBandwidth=16M/s"]), "vdisk set read bandwidth");
    expect(await settingsOf("q4")).toMatchObject({ qos: { readBytesPerSecond: 16 * MiB, writeBytesPerSecond: 0, totalBytesPerSecond: 0, readIops: 0 } });
    const read = await fio("q4", "1M", 4, "randread");
    figures.readMiBPerSecondAt16 = read.bw_bytes / MiB;
    expect(read.bw_bytes).toBeLessThanOrEqual(16 * MiB * 1.1);
    expect(read.bw_bytes).toBeGreaterThanOrEqual(16 * MiB * 0.9);

    // Total IOPS: reads and writes together share one limit (separate limits would allow twice as much).
    await waitDisconnected("q4");
    expectOk(await node.ovs(["vdisk", "set", "q4", "qos.readBandwidth=0", "qos.totalIops=500"]), "vdisk set total IOPS");
    expect(await settingsOf("q4")).toMatchObject({ qos: { readBytesPerSecond: 0, totalIops: 500, readIops: 0, writeIops: 0 } });
    const mixed = await fioJob("q4", "4k", 4, "randrw");
    figures.totalIopsAt500 = mixed.read.iops + mixed.write.iops;
    expect(mixed.read.iops + mixed.write.iops).toBeLessThanOrEqual(500 * 1.1);
    expect(mixed.read.iops + mixed.write.iops).toBeGreaterThanOrEqual(500 * 0.9);
    expect(mixed.read.iops).toBeGreaterThan(500 * 0.3); // fio's 50/50 mix: both directions got their share
    expect(mixed.write.iops).toBeGreaterThan(500 * 0.3);

    // Total bandwidth, 1 MiB requests both ways.
    await waitDisconnected("q4");
    expectOk(await node.ovs(["vdisk", "set", "q4", "qos.totalIops=0", "qos.totalBandwidth=24M/s"]), "vdisk set total bandwidth");
    expect(await settingsOf("q4")).toMatchObject({ qos: { totalIops: 0, totalBytesPerSecond: 24 * MiB } });
    const mixedBytes = await fioJob("q4", "1M", 4, "randrw");
    const totalBytesPerSecond = mixedBytes.read.bw_bytes + mixedBytes.write.bw_bytes;
    figures.totalMiBPerSecondAt24 = totalBytesPerSecond / MiB;
    expect(totalBytesPerSecond).toBeLessThanOrEqual(24 * MiB * 1.1);
    expect(totalBytesPerSecond).toBeGreaterThanOrEqual(24 * MiB * 0.9);
    expect(mixedBytes.read.bw_bytes).toBeGreaterThan(0);
    expect(mixedBytes.write.bw_bytes).toBeGreaterThan(0);
  });

  it("applies a limit changed while fio runs to that same run (fio's per-second IOPS log)", async () => {
    expectOk(await node.ovs(["vdisk", "create", "q5", "--size", "256M"]), "create");
    expectOk(await node.ovs(["vdisk", "set", "q5", "qos.writeIops=200"]), "vdisk set 200");
    const logDir = await tempDir("ovs-qos-log-");
    try {
      const prefix = path.join(logDir, "live");
      // One fio run of 7 s, one NBD connection, IOPS logged per second (averaged over each second). fio
      // logs only whole windows and its clock drifts a few ms per window (samples at 1008, 2012, … 5015
      // ms), so the last second of a run may have no sample: the checks below stop a second early.
      const runtimeSeconds = 7;
      const run = fioJob("q5", "4k", runtimeSeconds, "randwrite", [`--write_iops_log=${prefix}`, "--log_avg_msec=1000"]);
      const deadline = Date.now() + 20_000;
      for (;;) {
        const info = (await (await node.fetch("/api/v1/vdisks/q5")).json()) as { connectionCount: number };
        if (info.connectionCount === 1) break;
        if (Date.now() > deadline) throw new Error("fio did not connect within 20 s");
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      const connectedMs = Date.now();
      // 2.5 s into the run: fio's second 1–2 ran at 200, its seconds 4–6 must run at 600. Through the
      // REST API (the CLI's start-up takes seconds on a loaded machine and would blur the moment).
      await new Promise((resolve) => setTimeout(resolve, 2_500));
      const patched = await node.fetch("/api/v1/vdisks/q5/settings", { method: "PATCH", headers: { "content-type": "application/json" }, body: JSON.stringify({ qos: { writeIops: 600 } }) });
      expect(patched.status).toBe(200);
      const changedAfterMs = Date.now() - connectedMs;
      expect(changedAfterMs).toBeLessThan(2_900); // else the phases below would overlap the change
      const info = (await (await node.fetch("/api/v1/vdisks/q5")).json()) as { connectionCount: number; qos: { limits: { writeIops: number } } };
      expect(info).toMatchObject({ connectionCount: 1, qos: { limits: { writeIops: 600 } } }); // the same client, still connected
      const job = await run;
      const lines = (await fsp.readFile(`${prefix}_iops.1.log`, "utf8")).trim().split("\n");
      const samples = lines.map((line) => line.split(",").map((field) => Number(field.trim()))).map(([timeMs, iops]) => ({ second: Math.round(timeMs! / 1000), iops: iops! }));
      process.stdout.write(`fio's write IOPS per second, limit 200 changed to 600 ${changedAfterMs} ms after it connected: ${samples.map((s) => `${s.second}s ${s.iops}`).join(", ")}\n`);
      const at = (second: number): number => {
        const sample = samples.find((s) => s.second === second);
        if (sample === undefined) throw new Error(`fio logged no IOPS for second ${second}: ${lines.join(" | ")}`);
        return sample.iops;
      };
      // Second 1 includes the limiter's burst (0.1 s of the rate); second 3 the change.
      expect(at(2)).toBeLessThanOrEqual(200 * 1.1);
      expect(at(2)).toBeGreaterThanOrEqual(200 * 0.9);
      for (const second of [4, 5, 6]) {
        expect(at(second), `second ${second}`).toBeLessThanOrEqual(600 * 1.1);
        expect(at(second), `second ${second}`).toBeGreaterThanOrEqual(600 * 0.9);
      }
      figures.liveWriteIopsSecond2At200 = at(2);
      figures.liveWriteIopsSecond5At600 = at(5);
      // The whole run: 2.5 s or so at 200 and 4.5 s at 600, far from either limit alone.
      expect(job.write.total_ios).toBeGreaterThan(runtimeSeconds * 200 * 1.5);
      expect(job.write.total_ios).toBeLessThan(runtimeSeconds * 600 * 0.9);
    } finally {
      await fsp.rm(logDir, { recursive: true, force: true });
    }
  });

  it("refuses invalid `ovs vdisk set` input with one sentence and changes nothing", async () => {
    expectOk(await node.ovs(["vdisk", "create", "q3", "--size", "64M"]), "create");
    expectOk(await node.ovs(["vdisk", "set", "q3", "qos.readIops=100", "qos.totalBandwidth=10M", "scoCacheMax=32M"]), "vdisk set");
    const before = await settingsOf("q3");
    expect(before).toEqual({
      qos: { readIops: 100, writeIops: 0, totalIops: 0, readBytesPerSecond: 0, writeBytesPerSecond: 0, totalBytesPerSecond: 10 * MiB },
      scoCacheMaxBytes: 32 * MiB, cache: { mode: "cache-on-read", quotaBytes: 0 }, scoSizeBytes: 8 * MiB, tlogMultiplier: 8, version: 1,
    });
    for (const [args, message] of [
      [["qos.writeIops=500", "colour=red"], /^ovs: "colour" is not a vDisk setting; use qos\.readIops, .*scoCacheMax/],
      [["qos.writeIops=fast"], /^ovs: "fast" is not a valid qos\.writeIops: use a whole number of operations per second/],
      [["qos.writeIops=-5"], /^ovs: "-5" is not a valid qos\.writeIops/],
      [["qos.readBandwidth=lots"], /^ovs: "lots" is not a valid qos\.readBandwidth: use a size per second such as 50M/],
      [["qos.writeIops"], /^ovs: give qos\.writeIops a value/],
      [["qos.writeIops=500", "scoSize=4M"], /^ovs: the SCO size of vDisk q3 is fixed at creation \(8 MiB\)/],
      [["tlogMultiplier=4"], /^ovs: the TLog multiplier of vDisk q3 is fixed at creation \(8\)/],
    ] as const) {
      const result = await node.ovs(["vdisk", "set", "q3", ...args]);
      expect(result.exitCode, args.join(" ")).not.toBe(0);
      expect(result.stderr).toMatch(message);
      expect(result.stderr.trim().split("\n")).toHaveLength(1);
      expect(await settingsOf("q3")).toEqual(before);
    }
    expect((await node.ovs(["vdisk", "set", "nope", "qos.readIops=1"])).stderr).toMatch(/^ovs: there is no vDisk named nope\./);

    // The REST API refuses a bad body before anything changes (400 naming the field).
    const response = await node.fetch("/api/v1/vdisks/q3/settings", { method: "PATCH", headers: { "content-type": "application/json" }, body: JSON.stringify({ qos: { writeIops: -1 } }) });
    expect(response.status).toBe(400);
    expect(((await response.json()) as { error: { message: string } }).error.message).toBe("invalid request: body.qos.writeIops must be >= 0.");
    expect(await settingsOf("q3")).toEqual(before);

    // A restart keeps the settings (QoS in the registry record, the cap in the volume's configuration).
    const ports = { nbd: node.nbdPort, api: node.apiPort };
    expect(await node.stop()).toBe(0);
    node = await RunningNode.start(dataDir, ports, ["--backend", "local"]);
    expect(await settingsOf("q3")).toEqual(before);
    expect(await settingsOf("q1")).toMatchObject({ qos: { writeIops: 0 } });
    expect(await settingsOf("q2")).toMatchObject({ qos: { writeBytesPerSecond: 20 * MiB } });
    process.stdout.write(`QoS figures measured by fio: ${JSON.stringify(figures)}\n`);
  });
});
