// The management model with two nodes on one etcd cluster (Debian's etcd-server; a missing binary fails
// the test), each on its own local backend: both register as storage routers; the first owns the vPool
// `default`, the second (which cannot reach that backend) gets `default-node-b`; a vPool cannot be
// extended to a node that cannot reach its backend; the vDisk list covers the cluster (the other node's
// vDisks are `remote`); domains and vPools made on one node are seen on the other; two concurrent updates
// through the two nodes' APIs naming one version: exactly one wins, the other gets 409 CONFLICT.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fsp from "node:fs/promises";
import { RunningNode, expectOk, tempDir } from "./platform.js";
import { startEtcdCluster, type EtcdTestCluster } from "../src/store/etcd-test-cluster.js";

let cluster: EtcdTestCluster;
let nodeA: RunningNode;
let nodeB: RunningNode;
const dirs: string[] = [];

beforeAll(async () => {
  cluster = await startEtcdCluster({ members: 1 });
  const url = `etcd://${cluster.endpoints.map((e) => e.replace(/^http:\/\//, "")).join(",")}/ovs-model/`;
  const env = { OVS_ADMIN_PASSWORD: "cluster admin password" };
  for (const id of ["node-a", "node-b"]) dirs.push(await tempDir(`ovs-model-${id}-`));
  nodeA = await RunningNode.start(dirs[0]!, { nbd: 0, api: 0 }, ["--store", url, "--node-id", "node-a", "--backend", "local"], "node", env);
  nodeB = await RunningNode.start(dirs[1]!, { nbd: 0, api: 0 }, ["--store", url, "--node-id", "node-b", "--backend", "local"], "node", env);
}, 120_000);

afterAll(async () => {
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
});
