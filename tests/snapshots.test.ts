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
