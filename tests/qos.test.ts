// Front-door test of per-vDisk QoS and settings (issue 4 items 7 and 8): `ovs up --backend local` as a
// process, limits set with the `ovs` CLI, measured with fio through NBD. The requirement: the
// limits hold within 10 % under fio. Limits change while the node runs (no restart) and survive one.
//
// On a loaded machine fio may fall short of a limit it could otherwise reach, so the limits are low
// (300 and 600 write IOPS, 20 MiB/s) and each run is a few seconds; the upper bound (the limit holds)
// is the real check, the lower bound checks the limiter does not over-throttle.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fsp from "node:fs/promises";
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

/** Runs fio's NBD engine against a vDisk (random I/O, 8 in flight, time based) and returns its figures. */
async function fio(vdisk: string, blockSize: string, runtimeSeconds: number, rw: "randwrite" | "randread" = "randwrite"): Promise<FioFigures> {
  const result = await runTool("fio", [
    "--name=qos", "--ioengine=nbd", `--uri=${node.uri(vdisk)}`, `--rw=${rw}`, `--bs=${blockSize}`, "--iodepth=8",
    `--runtime=${runtimeSeconds}`, "--time_based", "--size=64m", "--output-format=json",
  ], 120_000);
  expectOk(result, "fio");
  const report = JSON.parse(result.stdout.slice(result.stdout.indexOf("{"))) as { jobs: Array<{ error: number; write: FioFigures; read: FioFigures }> };
  expect(report.jobs[0]!.error).toBe(0);
  return rw === "randwrite" ? report.jobs[0]!.write : report.jobs[0]!.read;
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

  it("refuses invalid `ovs vdisk set` input with one sentence and changes nothing", async () => {
    expectOk(await node.ovs(["vdisk", "create", "q3", "--size", "64M"]), "create");
    expectOk(await node.ovs(["vdisk", "set", "q3", "qos.readIops=100", "qos.totalBandwidth=10M", "scoCacheMax=32M"]), "vdisk set");
    const before = await settingsOf("q3");
    expect(before).toEqual({
      qos: { readIops: 100, writeIops: 0, totalIops: 0, readBytesPerSecond: 0, writeBytesPerSecond: 0, totalBytesPerSecond: 10 * MiB },
      scoCacheMaxBytes: 32 * MiB, cache: { mode: "cache-on-read", quotaBytes: 0 }, scoSizeBytes: 4 * MiB, tlogMultiplier: 16,
    });
    for (const [args, message] of [
      [["qos.writeIops=500", "colour=red"], /^ovs: "colour" is not a vDisk setting; use qos\.readIops, .*scoCacheMax/],
      [["qos.writeIops=fast"], /^ovs: "fast" is not a valid qos\.writeIops: use a whole number of operations per second/],
      [["qos.writeIops=-5"], /^ovs: "-5" is not a valid qos\.writeIops/],
      [["qos.readBandwidth=lots"], /^ovs: "lots" is not a valid qos\.readBandwidth: use a size per second such as 50M/],
      [["qos.writeIops"], /^ovs: give qos\.writeIops a value/],
      [["qos.writeIops=500", "scoSize=8M"], /^ovs: the SCO size of vDisk q3 is fixed at creation \(4 MiB\)/],
      [["tlogMultiplier=4"], /^ovs: the TLog multiplier of vDisk q3 is fixed at creation \(16\)/],
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
