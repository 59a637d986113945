// Front-door tests of `ovs up` on the ALBA backend (its default): the node runs 6 `ovs asd` children,
// serves vDisks from them over NBD and runs maintenance; driven by the `ovs` CLI, the REST API and NBD
// clients nobody here wrote (qemu-img, fio). Faults: ASD processes killed with SIGKILL (by pid, from
// `ovs alba asd list`) while fio writes with verification, every ASD and the node restarted, bytes
// flipped in fragment files on disk, an ASD filled up. Every wait is bounded; every process is stopped
// by the test that started it, by its pid.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import fsp from "node:fs/promises";
import path from "node:path";
import { RunningNode, alive, expectOk, ovsBin, runTool, tempDir, type ToolResult } from "./platform.js";

const MiB = 1024 * 1024;
let node: RunningNode;
let dataDir: string;
let scratch: string;
const extraAsds: ChildProcess[] = [];

interface AsdView {
  asdId: string; host: string; port: number; nodeId: string; state: string; health: string; capacityBytes: number; usedBytes: number;
  local?: { index: number; dir: string; pid: number | null; process: string; restarts: number };
}
interface ObjectView { name: string; policyIndex: number; holeCount: number; fragmentCount: number; degraded: boolean }
interface VerifyView { objectCount: number; fragmentsChecked: number; badCount: number; missingCount: number; unavailableCount: number }

function sha256(data: Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

async function ovsJson<T>(args: string[]): Promise<T> {
  const result = await node.ovs([...args, "--json"], 180_000);
  expectOk(result, `ovs ${args.join(" ")}`);
  return JSON.parse(result.stdout) as T;
}

/** `ovs alba namespace verify --json`: the verify runs as a task; its result is the report. */
async function verifyNamespace(namespace: string): Promise<VerifyView> {
  const task = await ovsJson<{ state: string; result: VerifyView }>(["alba", "namespace", "verify", namespace]);
  expect(task.state).toBe("succeeded");
  return task.result;
}

/** GET on the node's API (for polling loops, where starting the CLI each time would be slow). */
async function apiJson<T>(apiPath: string): Promise<T> {
  const response = await node.fetch(`/api/v1${apiPath}`);
  if (!response.ok) throw new Error(`GET ${apiPath}: ${response.status} ${await response.text()}`);
  return (await response.json()) as T;
}

async function fragmentAsds(namespace: string, name: string): Promise<string[]> {
  const shown = await apiJson<{ fragments: Array<{ asdId?: string }> }>(`/alba/namespaces/${encodeURIComponent(namespace)}/objects/${encodeURIComponent(name)}`);
  return shown.fragments.flatMap((f) => (f.asdId === undefined ? [] : [f.asdId]));
}

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms${last ? ` (last error: ${String(last)})` : ""}`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

async function namespaceOf(vdisk: string): Promise<string> {
  return (await ovsJson<{ namespace: string }>(["vdisk", "info", vdisk])).namespace;
}

async function localAsds(): Promise<AsdView[]> {
  return (await ovsJson<AsdView[]>(["alba", "asd", "list"])).filter((asd) => asd.local !== undefined).sort((a, b) => a.local!.index - b.local!.index);
}

/** Waits until every local ASD runs again under a pid not in `dead`. */
async function asdsBack(dead: readonly number[]): Promise<AsdView[]> {
  return until("the supervisor restarts the killed ASDs", 60_000, async () => {
    const asds = (await apiJson<{ asds: AsdView[] }>("/alba/asds")).asds.filter((asd) => asd.local !== undefined);
    return asds.length === 6 && asds.every((asd) => asd.local!.process === "running" && asd.local!.pid !== null && !dead.includes(asd.local!.pid) && asd.health === "ok") ? asds : undefined;
  });
}

/** Runs maintenance passes until no object of `namespace` is below full redundancy. */
async function fullyRedundant(namespace: string): Promise<ObjectView[]> {
  return until(`every object of ${namespace} at full redundancy`, 180_000, async () => {
    expectOk(await node.ovs(["alba", "maintenance", "run"], 180_000), "maintenance run");
    const objects = await ovsJson<ObjectView[]>(["alba", "object", "list", namespace]);
    return objects.length > 0 && objects.every((o) => !o.degraded && o.holeCount === 0 && o.policyIndex === 0) ? objects : undefined;
  });
}

async function writeImage(vdisk: string, bytes: Buffer): Promise<void> {
  const file = path.join(scratch, `${vdisk}.in`);
  await fsp.writeFile(file, bytes);
  expectOk(await runTool("qemu-img", ["convert", "-n", "-f", "raw", "-O", "raw", file, node.uri(vdisk)], 300_000), `qemu-img convert into ${vdisk}`);
  await fsp.rm(file);
}

async function readImageSha(vdisk: string, sizeBytes: number): Promise<string> {
  const file = path.join(scratch, `${vdisk}.out`);
  expectOk(await runTool("qemu-img", ["convert", "-f", "raw", "-O", "raw", node.uri(vdisk), file], 300_000), `qemu-img convert out of ${vdisk}`);
  const bytes = await fsp.readFile(file);
  await fsp.rm(file);
  return sha256(bytes.subarray(0, sizeBytes));
}

/** Starts an external `ovs asd` (stopped by afterAll, by its pid) and returns its port. */
async function startExternalAsd(dir: string, secretFile: string, extra: string[] = []): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [ovsBin, "asd", "--dir", dir, "--port", "0", "--secret-file", secretFile, ...extra], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, OVS_LOG_LEVEL: "warn" },
  });
  extraAsds.push(child);
  const port = await new Promise<number>((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`ovs asd did not start: ${out}`)), 30_000);
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      const match = /listening on 127\.0\.0\.1:(\d+)/.exec(out);
      if (match) {
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    });
  });
  return { child, port };
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  process.kill(child.pid, "SIGTERM");
  const timer = setTimeout(() => child.pid !== undefined && alive(child.pid) && process.kill(child.pid, "SIGKILL"), 15_000);
  await exited;
  clearTimeout(timer);
}

function expectFailure(result: ToolResult, pattern: RegExp, what: string): void {
  expect(result.exitCode, `${what}: ${result.stdout}`).not.toBe(0);
  expect(result.stderr, what).toMatch(pattern);
  expect(result.stderr, what).not.toMatch(/\n\s+at /); // no stack trace
}

beforeAll(async () => {
  dataDir = await tempDir("ovs-alba-platform-");
  scratch = await tempDir("ovs-alba-scratch-");
  node = await RunningNode.start(dataDir);
}, 90_000);

afterAll(async () => {
  for (const child of extraAsds) await stopChild(child);
  await node?.stop();
  await fsp.rm(dataDir, { recursive: true, force: true });
  await fsp.rm(scratch, { recursive: true, force: true });
}, 90_000);

describe("ovs up on ALBA", () => {
  it("runs 6 claimed ASDs with the default preset and says where they are", async () => {
    expect(node.output).toMatch(/backend\s+alba:/);
    expect(node.output.match(/^ {2}ASD \d+\s+127\.0\.0\.1:\d+\s+[0-9a-f]{32}\s+pid \d+\s+\S+asds\/asd-\d$/gm)).toHaveLength(6);
    const asds = await localAsds();
    expect(asds.map((asd) => [asd.local!.index, asd.state, asd.health, asd.local!.process])).toEqual([0, 1, 2, 3, 4, 5].map((i) => [i, "claimed", "ok", "running"]));
    expect(new Set(asds.map((asd) => asd.local!.pid)).size).toBe(6);
    for (const asd of asds) expect(alive(asd.local!.pid!)).toBe(true);
    const secret = await fsp.stat(path.join(dataDir, "asds", "cluster-secret"));
    expect(secret.mode & 0o777).toBe(0o600);
    const presets = await ovsJson<Array<{ name: string; policies: unknown; compression: string; fragmentChecksum: string; isDefault: boolean }>>(["alba", "preset", "list"]);
    expect(presets).toEqual([expect.objectContaining({
      name: "default", isDefault: true, compression: "none", fragmentChecksum: "crc32c", policies: [{ k: 4, m: 2, c: 5, x: 6 }, { k: 2, m: 2, c: 3, x: 6 }],
    })]);
    const status = await ovsJson<{ looping: boolean; asds: Array<{ health: string }> }>(["alba", "maintenance", "status"]);
    expect(status.looping).toBe(true);
    expect(status.asds.map((asd) => asd.health)).toEqual(Array(6).fill("ok"));
  });

  it("answers bad ovs alba input with one clear sentence and changes nothing", async () => {
    const before = await ovsJson<unknown[]>(["alba", "preset", "list"]);
    const asdsBefore = (await ovsJson<AsdView[]>(["alba", "asd", "list"])).map((asd) => [asd.asdId, asd.state]);
    expectFailure(await node.ovs(["alba", "preset", "add", "bad", "--policies", "4,2,7,6"]), /^ovs: Policy \(4, 2, 7, 6\) is invalid/, "c > k+m");
    expectFailure(await node.ovs(["alba", "preset", "add", "bad", "--policies", "4,2,5"]), /not a policy k,m,c,x/, "three numbers");
    expectFailure(await node.ovs(["alba", "preset", "add", "bad", "--policies", "2,1,2,3", "--compression", "snappy"]), /^ovs: Unknown compression snappy: use none, lz4, zstd\./, "compression");
    expectFailure(await node.ovs(["alba", "preset", "add", "default", "--policies", "4,2,5,6"]), /^ovs: A preset named default exists\./, "duplicate");
    expectFailure(await node.ovs(["alba", "asd", "claim", "not-an-id"]), /32 lowercase hex digits/, "bad id");
    expectFailure(await node.ovs(["alba", "asd", "claim", "0123456789abcdef0123456789abcdef"]), /^ovs: No ASD 0123456789abcdef0123456789abcdef was added/, "unknown id");
    const decommissionTasks = async (): Promise<number> => (await apiJson<{ tasks: unknown[] }>("/tasks?kind=alba.decommission")).tasks.length;
    const decommissionsBefore = await decommissionTasks();
    expectFailure(await node.ovs(["alba", "asd", "decommission", "0123456789abcdef0123456789abcdef"]), /^ovs: No ASD 0123456789abcdef0123456789abcdef is claimed/, "unknown decommission");
    expect((await node.fetch("/api/v1/alba/asds/0123456789abcdef0123456789abcdef/decommission", { method: "POST" })).status).toBe(404);
    expect(await decommissionTasks()).toBe(decommissionsBefore); // refused before any task
    const doc = (await (await node.fetch("/api/openapi.json")).json()) as { paths: Record<string, Record<string, { responses: Record<string, unknown> }>> };
    expect(Object.keys(doc.paths["/api/v1/alba/asds/{asdId}/decommission"]!.post!.responses).sort()).toEqual(["202", "default"]);
    expectFailure(await node.ovs(["alba", "asd", "add", "127.0.0.1"]), /HOST:PORT/, "no port");
    expectFailure(await node.ovs(["alba", "asd", "add", "127.0.0.1:1"]), /^ovs: No ASD with this backend's cluster secret answers at 127\.0\.0\.1:1/, "nobody there");
    expectFailure(await node.ovs(["alba", "object", "list", "nosuch"]), /^ovs: There is no namespace nosuch\.$/m, "namespace");
    // An ASD with another cluster secret cannot be added.
    const wrongSecret = path.join(scratch, "wrong-secret");
    await fsp.writeFile(wrongSecret, "not-the-secret\n");
    const stranger = await startExternalAsd(path.join(scratch, "stranger"), wrongSecret);
    expectFailure(await node.ovs(["alba", "asd", "add", `127.0.0.1:${stranger.port}`]), /^ovs: No ASD with this backend's cluster secret answers at/, "wrong secret");
    await stopChild(stranger.child);
    // The API validates bodies by schema: 400 with a stable code.
    for (const body of [{}, { name: "p", policies: [] }, { name: "p", policies: [{ k: 1, m: 0, c: 1 }] }, { name: "p", policies: [{ k: 1, m: 0, c: 1, x: 1 }], extra: 1 }]) {
      const response = await node.fetch("/api/v1/alba/presets", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
      expect(response.status, JSON.stringify(body)).toBe(400);
      expect(((await response.json()) as { error: { code: string } }).error.code).toBe("INVALID_ARGUMENT");
    }
    expect((await node.fetch("/api/v1/alba/asds", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ host: "127.0.0.1", port: 70000 }) })).status).toBe(400);
    expect(await ovsJson<unknown[]>(["alba", "preset", "list"])).toEqual(before);
    expect((await ovsJson<AsdView[]>(["alba", "asd", "list"])).map((asd) => [asd.asdId, asd.state])).toEqual(asdsBefore);
  });

  it("adds a preset, lists namespaces and objects, and shows where an object's fragments are", async () => {
    expectOk(await node.ovs(["alba", "preset", "add", "small", "--policies", "2,1,2,6", "--fragment-size", "256K"]), "preset add");
    const presets = await ovsJson<Array<{ name: string; policies: unknown; fragmentSizeMaxBytes: number }>>(["alba", "preset", "list"]);
    expect(presets.find((p) => p.name === "small")).toMatchObject({ policies: [{ k: 2, m: 1, c: 2, x: 6 }], fragmentSizeMaxBytes: 256 * 1024 });
    // 4 MiB SCOs (not the default 8): one chunk of 4 + 2 fragments at the default preset's 1 MiB
    // fragments. The first SCO is full after 4 MiB: it closes and uploads.
    expectOk(await node.ovs(["vdisk", "create", "show1", "--size", "16M", "--sco-size", "4M", "--tlog-multiplier", "16"]), "create");
    expectOk(await runTool("qemu-io", ["-f", "raw", node.uri("show1"), "-c", "write -P 0x6b 0 4194304", "-c", "flush"]), "qemu-io");
    const namespace = await namespaceOf("show1");
    expect((await ovsJson<Array<{ name: string }>>(["alba", "namespace", "list"])).map((n) => n.name)).toContain(namespace);
    const objects = await until("the first SCO on the backend", 30_000, async () => {
      const list = await ovsJson<ObjectView[]>(["alba", "object", "list", namespace]);
      return list.some((o) => o.name === "00_00000001_00") ? list : undefined;
    });
    expect(objects.find((o) => o.name === "00_00000001_00")).toMatchObject({ fragmentCount: 6, holeCount: 0, policyIndex: 0 });
    const shown = await ovsJson<{ summary: { sizeBytes: number }; fragments: Array<{ kind: string; asdId: string; address: string; localDir: string | null }> }>(
      ["alba", "object", "show", namespace, "00_00000001_00"],
    );
    expect(shown.summary.sizeBytes).toBe(4 * MiB);
    expect(shown.fragments.map((f) => f.kind)).toEqual(["data", "data", "data", "data", "parity", "parity"]);
    expect(new Set(shown.fragments.map((f) => f.asdId)).size).toBe(6);
    for (const fragment of shown.fragments) expect(fragment.localDir).toMatch(/asds\/asd-\d$/);
    const text = await node.ovs(["alba", "object", "show", namespace, "00_00000001_00"]);
    expectOk(text, "object show");
    expect(text.stdout).toMatch(/policy \(4,2,5,6\)/);
    expectFailure(await node.ovs(["alba", "object", "show", namespace, "nosuch"]), /^ovs: There is no object nosuch in namespace/, "no object");
  });

  it("keeps fio's verified writes whole while 2 of 6 ASDs are killed, then repairs to full redundancy", async () => {
    // 4 MiB SCOs (not the default 8), so that several close and upload while the ASDs are down.
    expectOk(await node.ovs(["vdisk", "create", "kill1", "--size", "64M", "--sco-cache-max", "4M", "--sco-size", "4M", "--tlog-multiplier", "16"]), "create");
    const namespace = await namespaceOf("kill1");
    const fio = runTool("fio", [
      "--name=verify", "--ioengine=nbd", `--uri=${node.uri("kill1")}`, "--rw=randwrite", "--bs=4k", "--iodepth=16",
      "--size=32m", "--rate_iops=2500", "--verify=crc32c", "--do_verify=1", "--verify_fatal=1", "--verify_state_save=0", "--output-format=json",
    ], 300_000); // about 3.3 s of writes: a SCO (4 MiB) closes and uploads every 0.4 s, also while 2 ASDs are down
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const countersBefore = (await apiJson<{ counters: { objectsRepaired: number; objectsUpgraded: number } }>("/alba/maintenance")).counters;
    const victims = (await apiJson<{ asds: AsdView[] }>("/alba/asds")).asds.filter((asd) => asd.local !== undefined).sort((a, b) => a.local!.index - b.local!.index).slice(1, 3);
    let deadPids = victims.map((asd) => asd.local!.pid!);
    for (const pid of deadPids) process.kill(pid, "SIGKILL");
    // The supervisor restarts a killed ASD within about 250 ms; on a loaded machine no upload might land
    // in that gap. Keep killing the two for 2.5 s (the supervisor backs off), so that uploads certainly
    // meet them down. The loop asks the API, not the CLI: starting an `ovs` process can take longer than
    // the supervisor's restart on a loaded machine, and the ASDs would be up most of the window (seen in CI).
    const killUntil = Date.now() + 2_500;
    while (Date.now() < killUntil) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      const current = (await apiJson<{ asds: AsdView[] }>("/alba/asds")).asds.filter((asd) => victims.some((victim) => victim.asdId === asd.asdId));
      for (const asd of current) {
        const pid = asd.local?.pid;
        if (pid !== null && pid !== undefined && !deadPids.includes(pid) && alive(pid)) {
          process.kill(pid, "SIGKILL");
          deadPids = [...deadPids, pid];
        }
      }
    }
    const result = await fio;
    expectOk(result, "fio");
    const report = JSON.parse(result.stdout.slice(result.stdout.indexOf("{"))) as { jobs: Array<{ error: number; write: { total_ios: number }; read: { total_ios: number } }> };
    expect(report.jobs[0]!.error).toBe(0);
    expect(report.jobs[0]!.write.total_ios).toBe(8192);
    expect(report.jobs[0]!.read.total_ios).toBe(8192);
    const back = await asdsBack(deadPids);
    for (const victim of victims) expect(back.find((asd) => asd.asdId === victim.asdId)!.local!.restarts).toBeGreaterThanOrEqual(1);
    // fio's verify pass read what it wrote; now the backend must hold every SCO at full redundancy again.
    await until("every upload done", 60_000, async () => {
      const info = await apiJson<{ stats: { pendingUploads: number } }>("/vdisks/kill1");
      return info.stats.pendingUploads === 0 ? true : undefined;
    });
    // Uploads made while the 2 ASDs were down are below full redundancy (fallback policy 2+2, or holes)
    // until maintenance repairs them (it may have started already in its own loop).
    const degradedSeen = (await apiJson<{ objects: ObjectView[] }>(`/alba/namespaces/${namespace}/objects?limit=1000`)).objects.filter((o) => o.degraded).length;
    const objects = await fullyRedundant(namespace);
    const countersAfter = (await apiJson<{ counters: { objectsRepaired: number; objectsUpgraded: number } }>("/alba/maintenance")).counters;
    const repairedOrUpgraded = countersAfter.objectsRepaired + countersAfter.objectsUpgraded - countersBefore.objectsRepaired - countersBefore.objectsUpgraded;
    expect(Math.max(degradedSeen, repairedOrUpgraded)).toBeGreaterThan(0);
    expect(objects.filter((o) => /^00_/.test(o.name)).length).toBeGreaterThanOrEqual(8);
    const verify = await verifyNamespace(namespace);
    expect(verify).toMatchObject({ badCount: 0, missingCount: 0, unavailableCount: 0 });
    expect(verify.fragmentsChecked).toBe(objects.reduce((sum, o) => sum + o.fragmentCount, 0));
  });

  it("reads correctly past bytes flipped in fragment files; verify reports them and repair fixes them", async () => {
    expectOk(await node.ovs(["vdisk", "create", "flip1", "--size", "96M", "--sco-cache-max", "4M"]), "create");
    const namespace = await namespaceOf("flip1");
    const startedMs = Date.now() - 1000;
    // 9 SCOs (of the default 8 MiB). A snapshot closes the open SCO and TLog; once every TLog is stored the SCOs leave the
    // write buffer (4 MiB cap), so reads must come from the ASDs. (Without it, how many SCOs the open
    // TLog still holds after the writes depends on upload timing.)
    const image = randomBytes(72 * MiB);
    await writeImage("flip1", image);
    expectOk(await node.ovs(["snapshot", "create", "flip1", "written"]), "snapshot create");
    await until("uploads done and the write buffer trimmed", 90_000, async () => {
      const info = await apiJson<{ stats: { pendingUploads: number; localScoBytes: number } }>("/vdisks/flip1");
      return info.stats.pendingUploads === 0 && info.stats.localScoBytes <= 4 * MiB ? true : undefined; // --sco-cache-max 4M
    });
    // Flip one byte in the middle of every value file this vDisk's uploads wrote on one ASD.
    const victim = (await localAsds())[4]!;
    const blobs = path.join(victim.local!.dir, "blobs");
    let flipped = 0;
    for (const sub of await fsp.readdir(blobs)) {
      for (const name of await fsp.readdir(path.join(blobs, sub))) {
        const file = path.join(blobs, sub, name);
        const stat = await fsp.stat(file);
        if (stat.mtimeMs < startedMs || stat.size < 4096) continue;
        const handle = await fsp.open(file, "r+");
        const at = Math.floor(stat.size / 2);
        const byte = Buffer.alloc(1);
        await handle.read(byte, 0, 1, at);
        byte[0] = byte[0]! ^ 0xff;
        await handle.write(byte, 0, 1, at);
        await handle.close();
        flipped++;
      }
    }
    expect(flipped).toBeGreaterThan(4);
    expect(await readImageSha("flip1", image.length)).toBe(sha256(image));
    const verify = await verifyNamespace(namespace);
    // Verify must find the flipped fragments that maintenance has not rebuilt yet (reads report bad
    // fragments to it, and under load it may rebuild any number of them first): together, all of them.
    // The files flipped are those written since the test started, which under load may include another
    // namespace's (maintenance of an earlier test's vDisk), so every namespace is verified for the sum.
    expect(verify.badCount).toBeGreaterThan(0);
    let badCount = verify.badCount;
    for (const other of await ovsJson<Array<{ name: string }>>(["alba", "namespace", "list"])) {
      if (other.name !== namespace) badCount += (await verifyNamespace(other.name)).badCount;
    }
    expect(badCount + (await ovsJson<{ counters: { fragmentsRebuilt: number } }>(["alba", "maintenance", "status"])).counters.fragmentsRebuilt).toBeGreaterThanOrEqual(flipped);
    await until("repair rewrote the bad fragments", 180_000, async () => {
      expectOk(await node.ovs(["alba", "maintenance", "run"], 180_000), "maintenance run");
      const again = await verifyNamespace(namespace);
      return again.badCount === 0 && again.missingCount === 0 ? again : undefined;
    });
    await fullyRedundant(namespace);
    expect(await readImageSha("flip1", image.length)).toBe(sha256(image));
  });

  it("fills an ASD: writes go to the others, reads work, and a decommission drains it", async () => {
    const secretFile = path.join(dataDir, "asds", "cluster-secret");
    const small = await startExternalAsd(path.join(scratch, "small-asd"), secretFile, ["--capacity", "12M"]);
    const added = await node.ovs(["alba", "asd", "add", `127.0.0.1:${small.port}`, "--node-id", "small-node", "--json"]);
    expectOk(added, "asd add");
    const asdId = (JSON.parse(added.stdout) as AsdView).asdId;
    expect((await ovsJson<AsdView[]>(["alba", "asd", "list"])).find((asd) => asd.asdId === asdId)).toMatchObject({ state: "available", nodeId: "small-node" });
    expectOk(await node.ovs(["alba", "asd", "claim", asdId]), "asd claim");
    expectFailure(await node.ovs(["alba", "asd", "claim", asdId]), /already claimed/, "claim twice");
    // 4 MiB SCOs (not the default 8): 12 of them, counted below.
    expectOk(await node.ovs(["vdisk", "create", "fill1", "--size", "64M", "--sco-size", "4M", "--tlog-multiplier", "16"]), "create");
    const namespace = await namespaceOf("fill1");
    const image = randomBytes(48 * MiB);
    await writeImage("fill1", image);
    await until("every upload done", 90_000, async () => {
      const info = await apiJson<{ stats: { pendingUploads: number } }>("/vdisks/fill1");
      return info.stats.pendingUploads === 0 ? true : undefined;
    });
    const view = await until("the small ASD reports itself full", 30_000, async () => {
      const asd = (await apiJson<{ asds: AsdView[] }>("/alba/asds")).asds.find((a) => a.asdId === asdId)!;
      return asd.capacityBytes > 0 && asd.usedBytes >= 0.9 * asd.capacityBytes ? asd : undefined;
    });
    expect(view.capacityBytes).toBe(12 * MiB);
    // Every SCO was stored with at least c = 5 fragments although the small ASD ran out of room (a
    // fragment refused by it went to another ASD, or became a hole when that took longer than the upload's
    // slack); repair fills the holes on the other ASDs.
    let objects = await ovsJson<ObjectView[]>(["alba", "object", "list", namespace]);
    expect(objects.filter((o) => /^00_/.test(o.name)).length).toBe(12);
    for (const object of objects) expect(object.fragmentCount).toBeGreaterThanOrEqual(5);
    objects = await fullyRedundant(namespace);
    for (const object of objects) expect(object).toMatchObject({ holeCount: 0, fragmentCount: 6 });
    let onSmall = 0;
    for (const object of objects.filter((o) => /^00_/.test(o.name))) onSmall += (await fragmentAsds(namespace, object.name)).filter((id) => id === asdId).length;
    expect(onSmall).toBeGreaterThan(0);
    expect(onSmall).toBeLessThan(12);
    expect(await readImageSha("fill1", image.length)).toBe(sha256(image));
    // Decommission: 202 with a task (Location names it); the ASD gets no new fragments at once and the
    // task drains it (progress in fragments); `ovs alba asd decommission` follows it to the end.
    const started = await node.fetch(`/api/v1/alba/asds/${asdId}/decommission`, { method: "POST" });
    expect(started.status).toBe(202);
    const queued = (await started.json()) as { id: string; kind: string; target: string; progress: { unit: string } };
    expect(started.headers.get("location")).toBe(`/api/v1/tasks/${queued.id}`);
    expect(queued).toMatchObject({ kind: "alba.decommission", target: asdId, progress: { unit: "fragments" } });
    expect((await ovsJson<AsdView[]>(["alba", "asd", "list"])).find((asd) => asd.asdId === asdId)!.state).toBe("decommissioned");
    // A second decommission is refused at once (409) and starts no task.
    const tasksBefore = (await apiJson<{ tasks: unknown[] }>("/tasks?kind=alba.decommission")).tasks.length;
    expectFailure(await node.ovs(["alba", "asd", "decommission", asdId]), /^ovs: ASD [0-9a-f]{32} is already decommissioned\.$/m, "decommission twice");
    expect((await apiJson<{ tasks: unknown[] }>("/tasks?kind=alba.decommission")).tasks.length).toBe(tasksBefore);
    const waited = await node.ovs(["task", "wait", queued.id, "--json"], 180_000);
    expectOk(waited, "task wait");
    const drained = JSON.parse(waited.stdout) as { state: string; progress: { done: number; total: number }; result: { asdId: string; fragmentsMoved: number; remainingFragments: number; passes: number } };
    expect(drained.state).toBe("succeeded");
    expect(drained.result).toMatchObject({ asdId, remainingFragments: 0 });
    expect(drained.result.fragmentsMoved).toBeGreaterThanOrEqual(onSmall);
    expect(drained.result.passes).toBeGreaterThanOrEqual(1);
    expect(drained.progress.done).toBe(drained.progress.total);
    const { objects: all } = await apiJson<{ objects: ObjectView[] }>(`/alba/namespaces/${namespace}/objects?limit=1000`);
    for (const object of all) expect(await fragmentAsds(namespace, object.name)).not.toContain(asdId);
    expect((await ovsJson<AsdView[]>(["alba", "asd", "list"])).find((asd) => asd.asdId === asdId)!.state).toBe("decommissioned");
    expect(await readImageSha("fill1", image.length)).toBe(sha256(image));
    await stopChild(small.child);
  });

  it("loses nothing when every ASD is killed and restarted, nor when the node is killed and restarted", async () => {
    expectOk(await node.ovs(["vdisk", "create", "restart1", "--size", "96M", "--sco-cache-max", "4M"]), "create");
    const image = randomBytes(72 * MiB); // past one TLog: most reads come from the ASDs
    await writeImage("restart1", image);
    // A snapshot closes the open SCO and TLog, so every written SCO goes to the ASDs and leaves the write
    // buffer (how many SCOs the open TLog still holds after the writes depends on upload timing).
    expectOk(await node.ovs(["snapshot", "create", "restart1", "written"]), "snapshot create");
    await until("every TLog stored and the SCOs evicted", 90_000, async () => {
      const info = await apiJson<{ stats: { pendingUploads: number; localScoBytes: number } }>("/vdisks/restart1");
      return info.stats.pendingUploads === 0 && info.stats.localScoBytes <= 4 * MiB ? true : undefined; // --sco-cache-max 4M
    });
    const before = await localAsds();
    const pids = before.map((asd) => asd.local!.pid!);
    for (const pid of pids) process.kill(pid, "SIGKILL");
    await asdsBack(pids);
    expect(await readImageSha("restart1", image.length)).toBe(sha256(image));
    // kill -9 of the node: its ASD children go too (they watch their stdin pipe), then a restart finds
    // the same ASDs at the same addresses.
    const running = (await localAsds()).map((asd) => asd.local!.pid!);
    const ports = { nbd: node.nbdPort, api: node.apiPort };
    expect(await node.stop("SIGKILL")).toBe(null);
    await until("the ASD children exit with their node", 20_000, async () => (running.every((pid) => !alive(pid)) ? true : undefined));
    node = await RunningNode.start(dataDir, ports);
    const after = await localAsds();
    expect(after.map((asd) => [asd.asdId, asd.port])).toEqual(before.map((asd) => [asd.asdId, asd.port]));
    expect(await readImageSha("restart1", image.length)).toBe(sha256(image));
    // A clean stop leaves no ASD process behind either.
    const last = after.map((asd) => asd.local!.pid!);
    expect(await node.stop("SIGTERM")).toBe(0);
    for (const pid of last) expect(alive(pid)).toBe(false);
  });
});

describe("ovs up --backend local", () => {
  it("serves vDisks from a directory, starts no ASD and says so to ovs alba", async () => {
    const dir = await tempDir("ovs-local-backend-");
    const local = await RunningNode.start(dir, { nbd: 0, api: 0 }, ["--backend", "local"]);
    try {
      expect(local.output).toMatch(/backend\s+local:/);
      expect(local.output).not.toMatch(/^ {2}ASD /m);
      expectOk(await local.ovs(["vdisk", "create", "l1", "--size", "16M"]), "create");
      expectOk(await runTool("qemu-io", ["-f", "raw", local.uri("l1"), "-c", "write -P 0x3c 4096 1048576", "-c", "flush", "-c", "read -P 0x3c 4096 1048576"]), "qemu-io");
      expectFailure(await local.ovs(["alba", "asd", "list"]), /^ovs: This node runs the local backend \(--backend local\)/, "alba on a local node");
      await expect(fsp.stat(path.join(dir, "asds"))).rejects.toThrow(/ENOENT/);
      const bad = await runTool(process.execPath, [ovsBin, "up", "--data-dir", dir, "--backend", "s3"]);
      expect(bad.exitCode).not.toBe(0);
      expect(bad.stderr).toMatch(/the backend is alba or local/);
    } finally {
      expect(await local.stop()).toBe(0);
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });
});
