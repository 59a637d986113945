// The management model with two nodes on one etcd cluster (Debian's etcd-server; a missing binary fails
// the test), each on its own local backend: both register as storage routers; the first owns the vPool
// `default`, the second (which cannot reach that backend) gets `default-node-b`; a vPool cannot be
// extended to a node that cannot reach its backend; the vDisk list covers the cluster (the other node's
// vDisks are `remote`); domains and vPools made on one node are seen on the other; two concurrent updates
// through the two nodes' APIs naming one version: exactly one wins, the other gets 409 CONFLICT. Node b
// beats every second (offline after 3 s): killed while a scrub task runs on it, the scheduler's leader
// marks it offline and the task failed ("the node running this task went offline"), seen through node
// a's API; restarted, it is online again; paused (SIGSTOP) it goes offline, resumed it comes back online.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fsp from "node:fs/promises";
import { RunningNode, expectOk, runTool, tempDir } from "./platform.js";
import { startEtcdCluster, type EtcdTestCluster } from "../src/store/etcd-test-cluster.js";

let cluster: EtcdTestCluster;
let nodeA: RunningNode;
let nodeB: RunningNode;
let storeUrl: string;
const dirs: string[] = [];

beforeAll(async () => {
  cluster = await startEtcdCluster({ members: 1 });
  const url = `etcd://${cluster.endpoints.map((e) => e.replace(/^http:\/\//, "")).join(",")}/ovs-model/`;
  storeUrl = url;
  const env = { OVS_ADMIN_PASSWORD: "cluster admin password" };
  for (const id of ["node-a", "node-b"]) dirs.push(await tempDir(`ovs-model-${id}-`));
  nodeA = await RunningNode.start(dirs[0]!, { nbd: 0, api: 0 }, ["--store", url, "--node-id", "node-a", "--backend", "local"], "node", env);
  nodeB = await RunningNode.start(dirs[1]!, { nbd: 0, api: 0 }, nodeBArgs(url), "node", env);
}, 120_000);

/** Node b beats every second and is to be marked offline 3 s after its last heartbeat. */
function nodeBArgs(url: string): string[] {
  return ["--store", url, "--node-id", "node-b", "--backend", "local", "--heartbeat-interval", "1", "--offline-after", "3"];
}

afterAll(async () => {
  if (nodeB?.child.signalCode === null) nodeB.kill("SIGCONT");
  await nodeB?.stop();
  await nodeA?.stop();
  await cluster?.stop();
  for (const dir of dirs) await fsp.rm(dir, { recursive: true, force: true });
});

async function ovsJson<T>(node: RunningNode, args: string[]): Promise<T> {
  const result = await node.ovs([...args, "--json"]);
  expectOk(result, args.join(" "));
  return JSON.parse(result.stdout) as T;
}

describe("two storage routers on one etcd", () => {
  it("registers both, each with a default vPool on a backend it reaches", async () => {
    for (const node of [nodeA, nodeB]) {
      const routers = await ovsJson<Array<{ id: string; status: string; defaultVPool: string; backend: unknown; vpools: string[] }>>(node, ["storagerouter", "list"]);
      expect(routers).toEqual([
        expect.objectContaining({ id: "node-a", status: "online", defaultVPool: "default", backend: { kind: "local", storageRouterId: "node-a" }, vpools: ["default"] }),
        expect.objectContaining({ id: "node-b", status: "online", defaultVPool: "default-node-b", backend: { kind: "local", storageRouterId: "node-b" }, vpools: ["default-node-b"] }),
      ]);
    }
    const backends = await ovsJson<Array<{ name: string; kind: string; storageRouters: string[] }>>(nodeA, ["backend", "list"]);
    expect(backends.map((b) => [b.name, b.kind, b.storageRouters])).toEqual([["local-node-a", "local", ["node-a"]], ["local-node-b", "local", ["node-b"]]]);
    const own = await ovsJson<{ usage: { capacityBytes: number; freeBytes: number } | null }>(nodeA, ["backend", "show", "local-node-a"]);
    expect(own.usage!.capacityBytes).toBeGreaterThan(own.usage!.freeBytes);
    expect((await ovsJson<{ usage: unknown }>(nodeA, ["backend", "show", "local-node-b"])).usage).toBeNull();
    const extend = await nodeA.ovs(["vpool", "extend", "default", "node-b"]);
    expect(extend.exitCode).toBe(1);
    expect(extend.stderr).toBe("ovs: storage router node-b cannot reach backend local-node-a of vPool default (it uses local-node-b).\n");
  });

  it("creates vDisks on each node in its default vPool and lists the cluster's from either", async () => {
    expectOk(await nodeA.ovs(["vdisk", "create", "on-a", "--size", "16M"]), "create on a");
    expectOk(await nodeB.ovs(["vdisk", "create", "on-b", "--size", "16M"]), "create on b");
    const notThere = await nodeB.ovs(["vdisk", "create", "wrong", "--size", "16M", "--vpool", "default"]);
    expect(notThere.stderr).toBe("ovs: vPool default is not on this storage router (node-b); extend it first: ovs vpool extend default node-b.\n");
    const fromB = await ovsJson<Array<{ name: string; vpool: string; storageRouterId: string; state: string; stats: unknown }>>(nodeB, ["vdisk", "list"]);
    expect(fromB).toEqual([
      expect.objectContaining({ name: "on-a", vpool: "default", storageRouterId: "node-a", state: "remote", stats: null }),
      expect.objectContaining({ name: "on-b", vpool: "default-node-b", storageRouterId: "node-b", state: "running" }),
    ]);
    expect((await ovsJson<Array<{ name: string }>>(nodeA, ["vdisk", "list", "--vpool", "default-node-b"])).map((v) => v.name)).toEqual(["on-b"]);
    const remote = await nodeB.ovs(["vdisk", "info", "on-a"]);
    expectOk(remote, "info of the other node's vDisk");
    expect(remote.stdout).toBe("vDisk on-a (16 MiB, vPool default) is served by storage router node-a; ask its API for live statistics.\n");
    const local = await ovsJson<{ vpool: string; storageRouterId: string; state: string; stats: { writes: number } }>(nodeB, ["vdisk", "info", "on-b"]);
    expect(local).toMatchObject({ vpool: "default-node-b", storageRouterId: "node-b", state: "running", stats: { writes: 0 } });
    const missing = await nodeB.ovs(["vdisk", "info", "nowhere"]);
    expect(missing.stderr).toBe("ovs: there is no vDisk named nowhere.\n");
    const deleteOther = await nodeA.ovs(["vpool", "delete", "default-node-b"]);
    expect(deleteOther.stderr).toBe("ovs: vPool default-node-b has 1 vDisk (on-b); delete them first.\n");
  });

  it("lets exactly one of two updates through different nodes win when they name the same version", async () => {
    expectOk(await nodeA.ovs(["domain", "create", "site1"]), "create a domain on node a");
    expect((await ovsJson<Array<{ name: string }>>(nodeB, ["domain", "list"])).map((d) => d.name)).toEqual(["site1"]);
    const { version } = await ovsJson<{ version: number }>(nodeA, ["vpool", "show", "default"]);
    const results = await Promise.all([
      nodeA.ovs(["vpool", "set", "default", "--cache-mode", "none", "--expect-version", String(version)]),
      nodeB.ovs(["vpool", "set", "default", "--cache-mode", "cache-on-write", "--expect-version", String(version)]),
    ]);
    expect(results.map((r) => r.exitCode).sort()).toEqual([0, 1]);
    expect(results.find((r) => r.exitCode === 1)!.stderr).toMatch(/^ovs: (the vPool changed since version \d+ \(it is at version \d+\)|vPool default changed meanwhile); read it again and retry\.\n$/);
    const after = await ovsJson<{ version: number; settings: { cacheMode: string } }>(nodeB, ["vpool", "show", "default"]);
    expect(after.version).toBe(version + 1);
    expect(after.settings.cacheMode).toBe(results[0]!.exitCode === 0 ? "none" : "cache-on-write");
    expectOk(await nodeB.ovs(["domain", "assign", "site1", "--storagerouter", "node-a", "--storagerouter", "node-b"]), "assign both routers");
    expect(await ovsJson<{ storageRouters: string[] }>(nodeA, ["domain", "list"])).toEqual([expect.objectContaining({ name: "site1", storageRouters: ["node-a", "node-b"] })]);
  });

  it("marks a storage router whose heartbeat stopped offline and fails the task it ran; back online when it starts again", async () => {
    // A scrub that runs for a long time on node b: 32 MiB written, half of every SCO overwritten, all
    // rewritten (threshold 1) at 1 byte per second once the 8 MiB burst is spent.
    expectOk(await nodeB.ovs(["vdisk", "create", "slow", "--size", "64M"]), "create slow");
    const writes = ["write -P 0x11 0 32M", ...Array.from({ length: 8 }, (_, i) => `write -P 0x22 ${i * 4}M 2M`), "flush"];
    expectOk(await runTool("qemu-io", ["-f", "raw", nodeB.uri("slow"), ...writes.flatMap((c) => ["-c", c])], 120_000), "write slow");
    expectOk(await nodeB.ovs(["snapshot", "create", "slow", "s1"]), "snapshot");
    await until("the snapshot is stored", 30_000, async () => (await json<{ snapshots: Array<{ state: string }> }>(nodeB, "/api/v1/vdisks/slow/snapshots")).snapshots.every((snap) => snap.state === "stored"));
    const started = await nodeB.fetch("/api/v1/vdisks/slow/scrub", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ threshold: 1, bandwidth: 1 }) });
    expect(started.status).toBe(202);
    const { id } = (await started.json()) as { id: string };
    await until("the scrub runs", 30_000, async () => (await json<{ state: string }>(nodeA, `/api/v1/tasks/${id}`)).state === "running");
    const before = await json<{ status: string; alive: boolean }>(nodeA, "/api/v1/storagerouters/node-b");
    expect(before).toMatchObject({ status: "online", alive: true });

    const ports = { nbd: nodeB.nbdPort, api: nodeB.apiPort };
    await nodeB.stop("SIGKILL");
    // The leader (node a; or node a once node b's lease is gone) sees the heartbeat stop.
    await until("node b is marked offline", 60_000, async () => (await json<{ status: string }>(nodeA, "/api/v1/storagerouters/node-b")).status === "offline");
    const offline = await json<{ status: string; offlineReason: string; alive: boolean; lastHeartbeat: string }>(nodeA, "/api/v1/storagerouters/node-b");
    expect(offline).toMatchObject({ status: "offline", offlineReason: "heartbeat", alive: false });
    const list = await nodeA.ovs(["storagerouter", "list"]);
    expect(list.stdout).toMatch(/^node-b\s+\S+\s+offline\s+missing\s/m);
    await until("the task is marked failed", 30_000, async () => (await json<{ state: string }>(nodeA, `/api/v1/tasks/${id}`)).state === "failed");
    const task = await json<{ state: string; node: string; error: { code: string; message: string } }>(nodeA, `/api/v1/tasks/${id}`);
    expect(task).toMatchObject({ state: "failed", node: "node-b", error: { code: "INTERRUPTED" } });
    expect(task.error.message).toBe(`the node running this task went offline (storage router node-b is offline; its last heartbeat was at ${offline.lastHeartbeat}); start it again if it is still needed.`);
    const failed = await json<{ tasks: Array<{ id: string }> }>(nodeA, "/api/v1/tasks?state=failed&kind=vdisk.scrub");
    expect(failed.tasks.map((t) => t.id)).toContain(id);
    const shown = await nodeA.ovs(["task", "show", id]);
    expect(shown.stdout).toMatch(/^error\s+INTERRUPTED: the node running this task went offline \(storage router node-b is offline; /m);

    // Started again, it registers online; the failed task stays failed.
    nodeB = await RunningNode.start(dirs[1]!, ports, nodeBArgs(storeUrl), "node", { OVS_ADMIN_PASSWORD: "cluster admin password" });
    const back = await json<{ status: string; alive: boolean; offlineReason?: string }>(nodeA, "/api/v1/storagerouters/node-b");
    expect(back).toMatchObject({ status: "online", alive: true });
    expect(back.offlineReason).toBeUndefined();
    expect(await json<{ state: string; error: { message: string } }>(nodeB, `/api/v1/tasks/${id}`)).toMatchObject({ state: "failed", error: { message: task.error.message } });
    expectOk(await nodeB.ovs(["vdisk", "delete", "slow"]), "delete slow");
  });

  it("marks a paused storage router offline, and online again once it beats again", async () => {
    nodeB.kill("SIGSTOP");
    try {
      await until("paused node b is marked offline", 60_000, async () => (await json<{ status: string }>(nodeA, "/api/v1/storagerouters/node-b")).status === "offline");
    } finally {
      nodeB.kill("SIGCONT");
    }
    expect(await json<{ offlineReason: string }>(nodeA, "/api/v1/storagerouters/node-b")).toMatchObject({ offlineReason: "heartbeat" });
    await until("resumed node b is marked online", 60_000, async () => (await json<{ status: string }>(nodeA, "/api/v1/storagerouters/node-b")).status === "online");
    expect(await json<{ alive: boolean }>(nodeA, "/api/v1/storagerouters/node-b")).toMatchObject({ alive: true });
    expectOk(await nodeB.ovs(["storagerouter", "list"]), "node b answers again");
  });

  it("refuses a bad heartbeat setting at the start in one sentence", async () => {
    for (const [args, message] of [
      [["--heartbeat-interval", "0.5"], "ovs: the heartbeat interval must be from 1 to 3600 seconds.\n"],
      [["--heartbeat-interval", "10", "--offline-after", "15"], "ovs: the offline timeout must be at least 2 heartbeat intervals (20 seconds).\n"],
    ] as const) {
      const dir = await tempDir("ovs-model-bad-");
      dirs.push(dir);
      await expect(RunningNode.start(dir, { nbd: 0, api: 0 }, ["--store", storeUrl, "--node-id", "node-x", "--backend", "local", ...args], "node")).rejects.toThrow(message.trim());
    }
    expect((await json<{ storageRouters: Array<{ id: string }> }>(nodeA, "/api/v1/storagerouters")).storageRouters.map((r) => r.id)).toEqual(["node-a", "node-b"]);
  });
});

async function json<T>(node: RunningNode, url: string): Promise<T> {
  const response = await node.fetch(url);
  if (!response.ok) throw new Error(`GET ${url}: ${response.status} ${await response.text()}`);
  return (await response.json()) as T;
}

async function until(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs / 1000} s`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}
