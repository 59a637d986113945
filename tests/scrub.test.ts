// Front-door test of scrubbing: `ovs up` (local backend, so the namespace's bytes can be measured on
// disk) driven by the `ovs` CLI, the REST API and NBD clients nobody here wrote (qemu-io, qemu-img):
// write, overwrite and discard through NBD, snapshot and clone, scrub while qemu-io reads and writes,
// then compare sha256 of the vDisk and the clone, see the backend shrink, and restart both from the
// backend alone (local data deleted) with the same sha256.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import fsp from "node:fs/promises";
import path from "node:path";
import { RunningNode, expectOk, runTool, tempDir } from "./platform.js";

const MiB = 1024 * 1024;
let node: RunningNode;
let dataDir: string;
let scratch: string;

const sha256 = (data: Buffer): string => createHash("sha256").update(data).digest("hex");

beforeAll(async () => {
  dataDir = await tempDir("ovs-scrub-");
  scratch = await tempDir("ovs-scrub-scratch-");
  node = await RunningNode.start(dataDir, { nbd: 0, api: 0 }, ["--backend", "local"]);
});

afterAll(async () => {
  await node?.stop();
  await fsp.rm(dataDir, { recursive: true, force: true });
  await fsp.rm(scratch, { recursive: true, force: true });
});

interface Info {
  id: string;
  namespace: string;
}

async function info(vdisk: string): Promise<Info> {
  const result = await node.ovs(["vdisk", "info", vdisk, "--json"]);
  expectOk(result, `vdisk info ${vdisk}`);
  return JSON.parse(result.stdout) as Info;
}

async function qemuIo(uri: string, commands: string[]): Promise<Awaited<ReturnType<typeof runTool>>> {
  return runTool("qemu-io", ["-f", "raw", uri, ...commands.flatMap((c) => ["-c", c])], 120_000);
}

async function imageSha(vdisk: string): Promise<string> {
  const file = path.join(scratch, `${vdisk}-${Date.now()}.raw`);
  expectOk(await runTool("qemu-img", ["convert", "-f", "raw", "-O", "raw", node.uri(vdisk), file], 120_000), `qemu-img convert ${vdisk} out`);
  const hash = sha256(await fsp.readFile(file));
  await fsp.rm(file);
  return hash;
}

/** Bytes of the namespace's object files in the local backend (what the scrub gives back). */
async function backendBytes(namespace: string): Promise<number> {
  const dir = path.join(dataDir, "backend", namespace);
  let total = 0;
  for (const name of await fsp.readdir(dir)) total += (await fsp.stat(path.join(dir, name))).size;
  return total;
}

async function waitStored(vdisk: string, snapshot: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const result = await node.ovs(["snapshot", "list", vdisk, "--json"]);
    expectOk(result, "snapshot list");
    if ((JSON.parse(result.stdout) as Array<{ name: string; state: string }>).some((s) => s.name === snapshot && s.state === "stored")) return;
    if (Date.now() > deadline) throw new Error(`snapshot ${snapshot} of ${vdisk} is not stored after 30 s`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

describe("scrubbing through the front door", () => {
  it("gives back overwritten and discarded space while serving I/O; vDisk and clone read the same, also after a restart from the backend", async () => {
    expectOk(await node.ovs(["vdisk", "create", "sc1", "--size", "64M"]), "create");
    expectOk(await qemuIo(node.uri("sc1"), ["write -P 0x11 0 32M", "flush"]), "write the base");
    expectOk(await node.ovs(["snapshot", "create", "sc1", "base"]), "snapshot");
    await waitStored("sc1", "base");
    expectOk(await node.ovs(["vdisk", "clone", "sc1", "--snapshot", "base", "sc1-clone"]), "clone");
    // Garbage no snapshot sees: 0x22 overwritten by 0x33, 0x44 written then discarded.
    expectOk(await qemuIo(node.uri("sc1"), ["write -P 0x22 0 16M", "flush", "write -P 0x33 0 16M", "write -P 0x44 40M 8M", "flush", "discard 40M 8M", "flush"]), "overwrite and discard");
    expectOk(await qemuIo(node.uri("sc1-clone"), ["write -P 0x55 8M 4M", "flush"]), "write the clone");
    const shaBefore = await imageSha("sc1");
    const cloneShaBefore = await imageSha("sc1-clone");
    const { namespace, id } = await info("sc1");
    const clone = await info("sc1-clone");

    // Bad input: one sentence, nothing changed.
    const badThreshold = await node.ovs(["vdisk", "scrub", "sc1", "--threshold", "2"]);
    expect(badThreshold.exitCode).not.toBe(0);
    expect(badThreshold.stderr).toMatch(/the threshold is a live fraction above 0 and at most 1/);
    const unknown = await node.ovs(["vdisk", "scrub", "nope"]);
    expect(unknown.exitCode).toBe(1);
    expect(unknown.stderr).toBe("ovs: there is no vDisk named nope.\n");

    // The scrub runs (throttled) while qemu-io reads back the current data and writes elsewhere.
    const bytesBefore = await backendBytes(namespace);
    const scrub = node.ovs(["vdisk", "scrub", "sc1", "--threshold", "0.9", "--bandwidth", "16M", "--json"], 120_000);
    let finished = false;
    void scrub.finally(() => (finished = true));
    let rounds = 0;
    while (!finished || rounds === 0) {
      expectOk(await qemuIo(node.uri("sc1"), ["read -P 0x33 0 16M", "read -P 0x11 16M 16M", "read -P 0 40M 8M", "write -P 0x66 56M 1M", "read -P 0x66 56M 1M"]), "qemu-io during the scrub");
      expectOk(await qemuIo(node.uri("sc1-clone"), ["read -P 0x11 0 8M", "read -P 0x55 8M 4M"]), "qemu-io on the clone during the scrub");
      rounds++;
    }
    const scrubbed = await scrub;
    expectOk(scrubbed, "scrub");
    const task = JSON.parse(scrubbed.stdout) as { kind: string; state: string; result: { scosRewritten: number; scosWritten: number; liveBytesRewritten: number; bytesReclaimed: number; durationMs: number } };
    expect(task).toMatchObject({ kind: "vdisk.scrub", state: "succeeded" });
    const report = task.result;
    expect(report.scosRewritten).toBeGreaterThan(0);
    expect(report.bytesReclaimed).toBeGreaterThan(16 * MiB);
    const bytesAfter = await backendBytes(namespace);
    expect(bytesAfter).toBeLessThan(bytesBefore - 16 * MiB);

    // The 0x66 MiB written during the scrub is part of the image now.
    expectOk(await qemuIo(node.uri("sc1"), ["write -P 0 56M 1M", "flush"]), "undo the write made during the scrub");
    expect(await imageSha("sc1")).toBe(shaBefore);
    expect(await imageSha("sc1-clone")).toBe(cloneShaBefore);
    // The clone scrubs too (its own namespace), and the human output is one line.
    const cloneScrub = await node.ovs(["vdisk", "scrub", "sc1-clone", "--threshold", "1", "--bandwidth", "0"]);
    expectOk(cloneScrub, "scrub the clone");
    expect(cloneScrub.stdout).toMatch(/^scrubbed vDisk sc1-clone in [\d.]+ s: \d+ of \d+ SCOs rewritten into \d+, .* of live data moved, .* reclaimed on the backend\n$/);
    // The REST API runs it as a task (202 + Location) whose result is the same report.
    const viaApi = await node.fetch("/api/v1/vdisks/sc1/scrub", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ threshold: 0.5 }) });
    expect(viaApi.status).toBe(202);
    const started = (await viaApi.json()) as { id: string; kind: string };
    expect(started.kind).toBe("vdisk.scrub");
    expect(viaApi.headers.get("location")).toBe(`/api/v1/tasks/${started.id}`);
    let apiTask = { state: "queued", result: undefined as { threshold: number } | undefined };
    for (const deadline = Date.now() + 60_000; apiTask.state !== "succeeded" && apiTask.state !== "failed" && Date.now() < deadline; ) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      apiTask = (await (await node.fetch(`/api/v1/tasks/${started.id}`)).json()) as typeof apiTask;
    }
    expect(apiTask.state).toBe("succeeded");
    expect(apiTask.result!.threshold).toBe(0.5);

    // Restart from the backend: the local data of both is gone; the node rebuilds them from their namespaces.
    // (Each scrub first stored everything written before it, so the backend has every write.)
    const ports = { nbd: node.nbdPort, api: node.apiPort };
    expect(await node.stop()).toBe(0);
    await fsp.rm(path.join(dataDir, "volumes", id), { recursive: true, force: true });
    await fsp.rm(path.join(dataDir, "volumes", clone.id), { recursive: true, force: true });
    node = await RunningNode.start(dataDir, ports, ["--backend", "local"]);
    expect(await imageSha("sc1")).toBe(shaBefore);
    expect(await imageSha("sc1-clone")).toBe(cloneShaBefore);
    for (const name of ["sc1-clone", "sc1"]) expectOk(await node.ovs(["vdisk", "delete", name]), `delete ${name}`);
  });
});
