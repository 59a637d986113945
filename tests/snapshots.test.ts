// Front-door tests of snapshots, rollback, clones, templates and restart from the backend: `ovs up` as
// a process, driven by the `ovs` CLI and by NBD clients nobody here wrote (qemu-io, qemu-img).

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash, randomBytes } from "node:crypto";
import fsp from "node:fs/promises";
import path from "node:path";
import { RunningNode, expectOk, runTool, tempDir } from "./platform.js";
import { RawClient } from "../src/frontend/nbd/test-support.js";

const MiB = 1024 * 1024;
let node: RunningNode;
let dataDir: string;
let scratch: string;

const sha256 = (data: Buffer): string => createHash("sha256").update(data).digest("hex");

beforeAll(async () => {
  dataDir = await tempDir("ovs-snapshots-");
  scratch = await tempDir("ovs-snapshots-scratch-");
  node = await RunningNode.start(dataDir);
});

afterAll(async () => {
  await node?.stop();
  await fsp.rm(dataDir, { recursive: true, force: true });
  await fsp.rm(scratch, { recursive: true, force: true });
});

interface SnapshotView {
  name: string;
  state: string;
  sticky: boolean;
}

/** Waits (bounded) until the snapshot is on the backend, as `ovs snapshot list` reports it. */
async function waitStored(vdisk: string, snapshot: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const result = await node.ovs(["snapshot", "list", vdisk, "--json"]);
    expectOk(result, "snapshot list");
    const found = (JSON.parse(result.stdout) as SnapshotView[]).find((s) => s.name === snapshot);
    if (found?.state === "stored") return;
    if (Date.now() > deadline) throw new Error(`snapshot ${snapshot} of ${vdisk} is not stored after 30 s: ${result.stdout}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

async function qemuIo(uri: string, commands: string[]): Promise<Awaited<ReturnType<typeof runTool>>> {
  return runTool("qemu-io", ["-f", "raw", uri, ...commands.flatMap((c) => ["-c", c])]);
}

async function imageOf(vdisk: string): Promise<Buffer> {
  const file = path.join(scratch, `${vdisk}-${Date.now()}.raw`);
  expectOk(await runTool("qemu-img", ["convert", "-f", "raw", "-O", "raw", node.uri(vdisk), file], 120_000), `qemu-img convert ${vdisk} out`);
  const data = await fsp.readFile(file);
  await fsp.rm(file);
  return data;
}

describe("snapshots and rollback through the front door", () => {
  it("snapshots, overwrites, rolls back and reads back the old data", async () => {
    expectOk(await node.ovs(["vdisk", "create", "snap1", "--size", "64M"]), "create");
    expectOk(await qemuIo(node.uri("snap1"), ["write -P 0x11 0 4M", "write -P 0x12 40M 1M", "flush"]), "qemu-io write old");
    const created = await node.ovs(["snapshot", "create", "snap1", "before", "--sticky", "--metadata", "by the test"]);
    expectOk(created, "snapshot create");
    expect(created.stdout).toMatch(/created snapshot before of vDisk snap1 \((pending|stored)\)/);
    expectOk(await qemuIo(node.uri("snap1"), ["write -P 0x22 0 4M", "write -P 0x23 60M 1M", "read -P 0x22 0 4M"]), "qemu-io overwrite");
    expectOk(await node.ovs(["snapshot", "create", "snap1", "after"]), "second snapshot");
    await waitStored("snap1", "before");

    const listed = await node.ovs(["snapshot", "list", "snap1"]);
    expectOk(listed, "snapshot list");
    expect(listed.stdout).toMatch(/^NAME\s+STATE\s+STICKY\s+CREATED/);
    expect(listed.stdout).toMatch(/before\s+stored\s+yes/);

    // A rollback is refused while a client is connected (the data would change under it).
    const client = await RawClient.connect(node.nbdPort);
    try {
      await client.go("snap1");
      const refused = await node.ovs(["vdisk", "rollback", "snap1", "--snapshot", "before"]);
      expect(refused.exitCode).toBe(1);
      expect(refused.stderr).toMatch(/has 1 NBD client connected; disconnect before a rollback/);
    } finally {
      client.close();
      await client.waitClosed();
    }
    const deadline = Date.now() + 10_000;
    let rolled = await node.ovs(["vdisk", "rollback", "snap1", "--snapshot", "before"]);
    while (rolled.exitCode !== 0 && /connected/.test(rolled.stderr) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100)); // the server notices the closed connection
      rolled = await node.ovs(["vdisk", "rollback", "snap1", "--snapshot", "before"]);
    }
    expectOk(rolled, "rollback");
    expect(rolled.stdout).toBe("rolled vDisk snap1 back to snapshot before\n");
    expectOk(await qemuIo(node.uri("snap1"), ["read -P 0x11 0 4M", "read -P 0x12 40M 1M", "read -P 0 60M 1M"]), "qemu-io reads the old data");
    const after = JSON.parse((await node.ovs(["snapshot", "list", "snap1", "--json"])).stdout) as SnapshotView[];
    expect(after.map((s) => s.name)).toEqual(["before"]); // later snapshots are dropped

    // Bad input: one clear sentence, nothing changed.
    const bad = await node.ovs(["snapshot", "create", "snap1", "no spaces"]);
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toMatch(/not a valid snapshot name/);
    const missing = await node.ovs(["vdisk", "rollback", "snap1", "--snapshot", "nope"]);
    expect(missing.exitCode).toBe(1);
    expect(missing.stderr).toMatch(/has no snapshot named nope/);
    // The REST API validates bodies by schema: 400 with a stable code, nothing changed.
    for (const body of [{ name: "x", extra: 1 }, { sticky: true }, { name: "x", metadata: "m".repeat(5000) }]) {
      const response = await node.fetch(`/api/v1/vdisks/snap1/snapshots`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
      expect(response.status).toBe(400);
      expect(((await response.json()) as { error: { code: string } }).error.code).toBe("INVALID_ARGUMENT");
    }
    const rollbackPending = await node.fetch(`/api/v1/vdisks/snap1/rollback`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({}) });
    expect(rollbackPending.status).toBe(400);
    expect(((await (await node.fetch(`/api/v1/vdisks/snap1/snapshots`)).json()) as { snapshots: SnapshotView[] }).snapshots.map((s) => s.name)).toEqual(["before"]);
    expectOk(await node.ovs(["snapshot", "delete", "snap1", "before"]), "snapshot delete");
    expect(JSON.parse((await node.ovs(["snapshot", "list", "snap1", "--json"])).stdout)).toEqual([]);
    expectOk(await qemuIo(node.uri("snap1"), ["read -P 0x11 0 4M"]), "data kept after deleting the snapshot");
    expectOk(await node.ovs(["vdisk", "delete", "snap1"]), "delete");
  });
});

describe("clones and templates through the front door", () => {
  it("clones a vDisk holding a qemu-img-written image: same sha256; templates and delete rules", async () => {
    const source = randomBytes(32 * MiB);
    const sourceFile = path.join(scratch, "source.raw");
    await fsp.writeFile(sourceFile, source);
    expectOk(await node.ovs(["vdisk", "create", "base", "--size", "32M"]), "create base");
    expectOk(await runTool("qemu-img", ["convert", "-n", "-f", "raw", "-O", "raw", sourceFile, node.uri("base")], 120_000), "qemu-img convert in");
    expectOk(await node.ovs(["snapshot", "create", "base", "gold"]), "snapshot");
    await waitStored("base", "gold");
    const cloned = await node.ovs(["vdisk", "clone", "base", "--snapshot", "gold", "base-clone"]);
    expectOk(cloned, "clone");
    expect(cloned.stdout).toBe("created vDisk base-clone, a clone of base at snapshot gold\n");
    // The parent changes after the snapshot; the clone does not see it.
    expectOk(await qemuIo(node.uri("base"), ["write -P 0x33 0 1M", "flush"]), "overwrite the parent");
    expect(sha256(await imageOf("base-clone"))).toBe(sha256(source));

    const info = JSON.parse((await node.ovs(["vdisk", "info", "base-clone", "--json"])).stdout) as { parent: { name: string; snapshot: string }; cloneDepth: number };
    expect(info.parent).toEqual({ name: "base", snapshot: "gold" });
    expect(info.cloneDepth).toBe(1);
    const shown = await node.ovs(["vdisk", "info", "base-clone"]);
    expect(shown.stdout).toMatch(/clone of\s+base at snapshot gold \(depth 1\)/);

    // A vDisk with clones cannot be deleted, nor the snapshot its clones use.
    const refused = await node.ovs(["vdisk", "delete", "base"]);
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toMatch(/vDisk base has clones \(base-clone\); delete them first/);
    const snapshotRefused = await node.ovs(["snapshot", "delete", "base", "gold"]);
    expect(snapshotRefused.exitCode).toBe(1);
    expect(snapshotRefused.stderr).toMatch(/has clones \(base-clone\)/);

    // The clone as a template: read-only, one snapshot, clones from it without naming the snapshot.
    const templated = await node.ovs(["vdisk", "template", "base-clone"]);
    expectOk(templated, "template");
    const writeToTemplate = await qemuIo(node.uri("base-clone"), ["write -P 0x44 0 4096"]);
    expect(writeToTemplate.exitCode).not.toBe(0);
    expectOk(await node.ovs(["vdisk", "clone", "base-clone", "vm1"]), "create from template");
    const vm1 = JSON.parse((await node.ovs(["vdisk", "info", "vm1", "--json"])).stdout) as { cloneDepth: number };
    expect(vm1.cloneDepth).toBe(2);
    expect(sha256(await imageOf("vm1"))).toBe(sha256(source));
    expectOk(await qemuIo(node.uri("vm1"), ["write -P 0x55 0 1M", "read -P 0x55 0 1M"]), "a clone of a template is writable");

    for (const name of ["vm1", "base-clone", "base"]) expectOk(await node.ovs(["vdisk", "delete", name]), `delete ${name}`);
  });

  it("builds a chain of 32 clones, shows each depth, reads through it, and refuses the 33rd with one sentence", async () => {
    const startedMs = Date.now();
    const post = (apiPath: string, body: unknown): Promise<Response> =>
      node.fetch(`/api/v1${apiPath}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    /** A snapshot named s of `vdisk`, waited for (bounded) until it is on the backend: clones need that. */
    const storedSnapshot = async (vdisk: string): Promise<void> => {
      expect((await post(`/vdisks/${vdisk}/snapshots`, { name: "s" })).status).toBe(201);
      const deadline = Date.now() + 30_000;
      for (;;) {
        const { snapshots } = (await (await node.fetch(`/api/v1/vdisks/${vdisk}/snapshots`)).json()) as { snapshots: SnapshotView[] };
        if (snapshots.find((s) => s.name === "s")?.state === "stored") return;
        if (Date.now() > deadline) throw new Error(`snapshot s of ${vdisk} is not stored after 30 s`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    };
    expectOk(await node.ovs(["vdisk", "create", "chain0", "--size", "8M"]), "create chain0");
    expectOk(await qemuIo(node.uri("chain0"), ["write -P 0x5a 0 64k", "write -P 0x5b 4M 64k", "flush"]), "write chain0");
    // Through the REST API in a loop (the CLI's start-up would make 66 calls slow); every level writes
    // one cluster of its own, so the deepest clone's reads walk the whole chain.
    for (let depth = 1; depth <= 32; depth++) {
      const parent = `chain${depth - 1}`;
      await storedSnapshot(parent);
      const created = await post(`/vdisks/${parent}/clones`, { snapshot: "s", name: `chain${depth}` });
      expect(created.status, `clone at depth ${depth}`).toBe(201);
      expect(((await created.json()) as { cloneDepth: number }).cloneDepth).toBe(depth);
    }
    const built = Date.now() - startedMs;
    process.stdout.write(`a chain of 32 clones built through the REST API in ${built} ms\n`);

    const deepest = JSON.parse((await node.ovs(["vdisk", "info", "chain32", "--json"])).stdout) as { cloneDepth: number; parent: { name: string; snapshot: string } };
    expect(deepest).toMatchObject({ cloneDepth: 32, parent: { name: "chain31", snapshot: "s" } });
    expect((await node.ovs(["vdisk", "info", "chain32"])).stdout).toMatch(/clone of\s+chain31 at snapshot s \(depth 32\)/);
    expect((await node.ovs(["vdisk", "info", "chain0"])).stdout).not.toMatch(/clone of/);
    // The deepest clone reads the base's data through 32 parents (and its own writes before theirs).
    expectOk(await qemuIo(node.uri("chain32"), ["read -P 0x5a 0 64k", "read -P 0x5b 4M 64k", "read -P 0 64k 64k", "write -P 0x5c 0 4k", "read -P 0x5c 0 4k", "read -P 0x5a 4k 60k"]), "read through the chain");

    // A 33rd level is refused: by the CLI with one sentence, by the API with 409 and a stable code.
    await storedSnapshot("chain32");
    const list = async (): Promise<string[]> => (JSON.parse((await node.ovs(["vdisk", "list", "--json"])).stdout) as Array<{ name: string }>).map((v) => v.name).sort();
    const before = await list();
    const refused = await node.ovs(["vdisk", "clone", "chain32", "--snapshot", "s", "chain33"]);
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toBe("ovs: a clone of chain32 would be 33 clones deep; the maximum is 32\n");
    const viaApi = await post("/vdisks/chain32/clones", { snapshot: "s", name: "chain33" });
    expect(viaApi.status).toBe(409);
    expect(((await viaApi.json()) as { error: { code: string; message: string } }).error).toMatchObject({ code: "CONFLICT", message: expect.stringMatching(/33 clones deep; the maximum is 32/) });
    expect(await list()).toEqual(before);
    expect(before).not.toContain("chain33");
    expect((await node.ovs(["vdisk", "info", "chain33"])).exitCode).toBe(1);
    // A clone of a shallower level still works, and the name refused above is free.
    const sibling = await node.ovs(["vdisk", "clone", "chain31", "--snapshot", "s", "chain33"]);
    expectOk(sibling, "clone at depth 32 beside the chain");
    expect((JSON.parse((await node.ovs(["vdisk", "info", "chain33", "--json"])).stdout) as { cloneDepth: number }).cloneDepth).toBe(32);
    expect(Date.now() - startedMs).toBeLessThan(120_000);
  }, 180_000);
});

interface TaskView { id: string; kind: string; target: string; state: string; progress: { done: number; total?: number; unit: string; detail?: string }; result?: unknown; error?: { code: string; message: string } }

/** Polls a task (bounded) until it has finished. */
async function waitTask(id: string): Promise<TaskView> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const task = (await (await node.fetch(`/api/v1/tasks/${id}`)).json()) as TaskView;
    if (["succeeded", "failed", "cancelled"].includes(task.state)) return task;
    if (Date.now() > deadline) throw new Error(`task ${id} still ${task.state} after 60 s`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function taskCount(kind: string): Promise<number> {
  return ((await (await node.fetch(`/api/v1/tasks?kind=${kind}&limit=1000`)).json()) as { tasks: unknown[] }).tasks.length;
}

async function errorOf(response: Response): Promise<{ code: string; message: string }> {
  return ((await response.json()) as { error: { code: string; message: string } }).error;
}

describe("set-as-template and delete as tasks through the front door", () => {
  it("answer 202 with a task that steps to the end; refusals come at once and start no task", async () => {
    expectOk(await node.ovs(["vdisk", "create", "tp1", "--size", "16M"]), "create tp1");
    expectOk(await qemuIo(node.uri("tp1"), ["write -P 0x71 0 6M", "flush"]), "write tp1");
    expectOk(await node.ovs(["snapshot", "create", "tp1", "older"]), "snapshot");
    // Set as template: 202, Location, 4 steps; the result is the vDisk, a template with one snapshot on the backend.
    const started = await node.fetch("/api/v1/vdisks/tp1/template", { method: "POST" });
    expect(started.status).toBe(202);
    const queued = (await started.json()) as TaskView;
    expect(started.headers.get("location")).toBe(`/api/v1/tasks/${queued.id}`);
    expect(queued).toMatchObject({ kind: "vdisk.template", target: "tp1", progress: { done: 0, total: 4, unit: "steps" } });
    const templated = await waitTask(queued.id);
    expect(templated).toMatchObject({ state: "succeeded", progress: { done: 4, total: 4 }, result: { name: "tp1", template: true, snapshotCount: 1 } });
    const snapshots = JSON.parse((await node.ovs(["snapshot", "list", "tp1", "--json"])).stdout) as SnapshotView[];
    expect(snapshots).toEqual([expect.objectContaining({ name: "template", state: "stored", sticky: true })]);
    expect(sha256((await imageOf("tp1")).subarray(0, 6 * MiB))).toBe(sha256(Buffer.alloc(6 * MiB, 0x71)));

    // Refused at once (nothing changes, no task): a template again, an unknown vDisk, a vDisk with clones.
    const templates = await taskCount("vdisk.template");
    const deletes = await taskCount("vdisk.delete");
    const again = await node.fetch("/api/v1/vdisks/tp1/template", { method: "POST" });
    expect(again.status).toBe(409);
    expect(await errorOf(again)).toEqual({ code: "CONFLICT", message: "vDisk tp1 is a template already." });
    expect((await node.fetch("/api/v1/vdisks/nosuch/template", { method: "POST" })).status).toBe(404);
    expect((await node.fetch("/api/v1/vdisks/nosuch", { method: "DELETE" })).status).toBe(404);
    expectOk(await node.ovs(["vdisk", "clone", "tp1", "tp1-vm"]), "clone the template");
    const withClones = await node.fetch("/api/v1/vdisks/tp1", { method: "DELETE" });
    expect(withClones.status).toBe(409);
    expect(await errorOf(withClones)).toEqual({ code: "IN_USE", message: "vDisk tp1 has clones (tp1-vm); delete them first." });
    expectOk(await node.ovs(["snapshot", "create", "tp1-vm", "s"]), "snapshot the clone");
    await waitStored("tp1-vm", "s");
    expectOk(await node.ovs(["vdisk", "clone", "tp1-vm", "--snapshot", "s", "tp1-vm2"]), "clone the clone");
    const cliRefused = await node.ovs(["vdisk", "template", "tp1-vm"]);
    expect(cliRefused.exitCode).toBe(1);
    expect(cliRefused.stderr).toBe("ovs: vDisk tp1-vm has clones (tp1-vm2); a template keeps one snapshot only, so delete them first.\n");
    const client = await RawClient.connect(node.nbdPort);
    try {
      await client.go("tp1-vm2");
      const connected = await node.fetch("/api/v1/vdisks/tp1-vm2", { method: "DELETE" });
      expect(connected.status).toBe(409);
      expect(await errorOf(connected)).toEqual({ code: "IN_USE", message: "vDisk tp1-vm2 has 1 NBD client connected; disconnect it or delete with --force." });
      const cliConnected = await node.ovs(["vdisk", "delete", "tp1-vm2"]);
      expect(cliConnected.exitCode).toBe(1);
      expect(cliConnected.stderr).toBe("ovs: vDisk tp1-vm2 has 1 NBD client connected; disconnect it or delete with --force.\n");
      expect(await taskCount("vdisk.template")).toBe(templates);
      expect(await taskCount("vdisk.delete")).toBe(deletes);
      // --force: the CLI follows the task (progress lines on stderr) and says the client was cut.
      const forced = await node.ovs(["vdisk", "delete", "tp1-vm2", "--force"]);
      expectOk(forced, "delete --force");
      expect(forced.stdout).toBe("deleted vDisk tp1-vm2 (1 NBD client disconnected)\n");
      expect(forced.stderr).toMatch(/^task [0-9a-f-]{36} vdisk\.delete tp1-vm2: (queued|running|succeeded), \d\/4 steps/);
      expect(forced.stderr.trim().split("\n").at(-1)).toMatch(/^task [0-9a-f-]{36} vdisk\.delete tp1-vm2: succeeded, 4\/4 steps/);
      expect(await client.waitClosed()).toBe(true);
    } finally {
      client.close();
    }
    expect((await node.fetch("/api/v1/vdisks/tp1-vm2")).status).toBe(404);

    // Delete over the API: 202 with the task; a second delete while it is pending is refused (or finds
    // the vDisk gone); one task only. Its result names the namespace, gone from the backend.
    const { namespace } = JSON.parse((await node.ovs(["vdisk", "info", "tp1-vm", "--json"])).stdout) as { namespace: string };
    const [first, second] = await Promise.all([node.fetch("/api/v1/vdisks/tp1-vm", { method: "DELETE" }), node.fetch("/api/v1/vdisks/tp1-vm", { method: "DELETE" })]);
    const [accepted, other] = first.status === 202 ? [first, second] : [second, first];
    expect(accepted.status).toBe(202);
    expect([404, 409]).toContain(other.status);
    const deleting = (await accepted.json()) as TaskView;
    expect(accepted.headers.get("location")).toBe(`/api/v1/tasks/${deleting.id}`);
    expect(await waitTask(deleting.id)).toMatchObject({ kind: "vdisk.delete", target: "tp1-vm", state: "succeeded", progress: { done: 4, total: 4 }, result: { name: "tp1-vm", namespace, disconnectedClients: 0 } });
    expect(await taskCount("vdisk.delete")).toBe(deletes + 2);
    expect((await node.fetch("/api/v1/vdisks/tp1-vm")).status).toBe(404);

    // The CLI: --json prints the final task; --no-wait prints the task id.
    expectOk(await node.ovs(["vdisk", "create", "tp2", "--size", "8M"]), "create tp2");
    const json = await node.ovs(["vdisk", "template", "tp2", "--json"]);
    expectOk(json, "template --json");
    expect(json.stderr).toBe("");
    expect(JSON.parse(json.stdout)).toMatchObject({ kind: "vdisk.template", target: "tp2", state: "succeeded", result: { name: "tp2", template: true } });
    const text = await node.ovs(["vdisk", "delete", "tp2", "--no-wait"]);
    expectOk(text, "delete --no-wait");
    const id = /^started task ([0-9a-f-]{36}) \(vdisk\.delete\); follow it with: ovs task wait \1\n$/.exec(text.stdout)?.[1];
    expect(id, text.stdout).toBeDefined();
    expect(await waitTask(id!)).toMatchObject({ state: "succeeded" });
    const plain = await node.ovs(["vdisk", "delete", "tp1"]);
    expectOk(plain, "delete tp1");
    expect(plain.stdout).toBe("deleted vDisk tp1\n");
    // The OpenAPI document says both answer 202 with a task.
    const doc = (await (await node.fetch("/api/openapi.json")).json()) as { paths: Record<string, Record<string, { summary: string; responses: Record<string, unknown> }>> };
    for (const [route, method] of [["/api/v1/vdisks/{name}", "delete"], ["/api/v1/vdisks/{name}/template", "post"]] as const) {
      expect(Object.keys(doc.paths[route]![method]!.responses).sort(), route).toEqual(["202", "default"]);
      expect(doc.paths[route]![method]!.summary, route).toMatch(/as a task: 202/);
    }
  });
});

describe("restart from the backend through the front door", () => {
  it("rebuilds a vDisk whose local data is gone from its namespace and reports it", async () => {
    const dir = await tempDir("ovs-restore-");
    let restoreNode = await RunningNode.start(dir);
    try {
      expectOk(await restoreNode.ovs(["vdisk", "create", "r1", "--size", "32M"]), "create");
      expectOk(await qemuIo(restoreNode.uri("r1"), ["write -P 0x66 0 8M", "write -P 0x67 20M 3M", "flush"]), "qemu-io write");
      expectOk(await restoreNode.ovs(["snapshot", "create", "r1", "s"]), "snapshot"); // closes the TLog: all of it uploads
      const { id } = JSON.parse((await restoreNode.ovs(["vdisk", "info", "r1", "--json"])).stdout) as { id: string };
      const deadline = Date.now() + 30_000;
      for (;;) {
        const list = JSON.parse((await restoreNode.ovs(["snapshot", "list", "r1", "--json"])).stdout) as SnapshotView[];
        if (list[0]?.state === "stored") break;
        if (Date.now() > deadline) throw new Error("snapshot not stored");
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      const ports = { nbd: restoreNode.nbdPort, api: restoreNode.apiPort };
      expect(await restoreNode.stop()).toBe(0);
      await fsp.rm(path.join(dir, "volumes", id), { recursive: true, force: true }); // the local data is lost
      restoreNode = await RunningNode.start(dir, ports);
      expectOk(await qemuIo(restoreNode.uri("r1"), ["read -P 0x66 0 8M", "read -P 0x67 20M 3M", "read -P 0 8M 12M"]), "qemu-io read after the restore");
      const info = JSON.parse((await restoreNode.ovs(["vdisk", "info", "r1", "--json"])).stdout) as { restore?: { tlogCount: number; durationMs: number } };
      expect(info.restore?.tlogCount).toBeGreaterThan(0);
      expect((await restoreNode.ovs(["vdisk", "info", "r1"])).stdout).toMatch(/restored\s+from the backend: \d+ TLogs/);
    } finally {
      await restoreNode.stop();
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });
});
