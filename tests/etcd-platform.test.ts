// A node on a real 3-member etcd cluster (Debian's etcd-server; a missing binary fails the test): `ovs
// node --store etcd://…` registers its vDisks in etcd, `ovs config` reads and writes the store through
// the node, and NBD I/O with verification goes on while the etcd leader is killed with SIGKILL.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fsp from "node:fs/promises";
import { spawn } from "node:child_process";
import { RunningNode, expectOk, ovsBin, runTool, tempDir } from "./platform.js";
import { startEtcdCluster, type EtcdTestCluster } from "../src/store/etcd-test-cluster.js";

let cluster: EtcdTestCluster;
let node: RunningNode;
let dataDir: string;

beforeAll(async () => {
  cluster = await startEtcdCluster({ members: 3 });
  dataDir = await tempDir("ovs-etcd-node-");
  const url = `etcd://${cluster.endpoints.map((e) => e.replace(/^http:\/\//, "")).join(",")}/ovs-test/`;
  node = await RunningNode.start(dataDir, { nbd: 0, api: 0 }, ["--store", url, "--node-id", "node-a"], "node");
}, 120_000);

afterAll(async () => {
  await node?.stop();
  await cluster?.stop();
  await fsp.rm(dataDir, { recursive: true, force: true });
});

describe("a node on etcd", () => {
  it("registers vDisks in etcd and serves config commands from it", async () => {
    expect(node.output).toMatch(/node node-a is up/);
    expect(node.output).toMatch(/store\s+etcd/);
    expectOk(await node.ovs(["vdisk", "create", "e1", "--size", "256M"]), "create");
    const keys = await node.ovs(["config", "list", "--keys"]);
    expectOk(keys, "config list");
    expect(keys.stdout).toContain("ovs/vdisks/e1");
    const record = await node.ovs(["config", "get", "ovs/vdisks/e1", "--json"]);
    expectOk(record, "config get");
    expect(JSON.parse((JSON.parse(record.stdout) as { value: string }).value)).toMatchObject({ name: "e1", nodeId: "node-a" });
    expectOk(await node.ovs(["config", "set", "app/setting", "42"]), "config set");
    expect((await node.ovs(["config", "get", "app/setting"])).stdout).toBe("42\n");
    expectOk(await node.ovs(["config", "delete", "app/setting"]), "config delete");
    expect((await node.ovs(["config", "get", "app/setting"])).exitCode).toBe(1);
    const status = await node.ovs(["config", "status", "--json"]);
    expectOk(status, "config status");
    const parsed = JSON.parse(status.stdout) as { kind: string; healthy: boolean; members: unknown[]; leader?: string };
    expect(parsed).toMatchObject({ kind: "etcd", healthy: true });
    expect(parsed.members).toHaveLength(3);
    expect(parsed.leader).toBeDefined();
  });

  it("streams changes with ovs config watch", async () => {
    const watcher = spawn(process.execPath, [ovsBin, "--api", node.apiUrl, "config", "watch", "app/"], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, OVS_TOKEN: node.token } });
    let out = "";
    watcher.stdout!.on("data", (d: Buffer) => (out += d.toString()));
    try {
      const deadline = Date.now() + 20_000;
      while (!out.includes("watching app/") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expectOk(await node.ovs(["config", "set", "app/w", "one"]), "set");
      expectOk(await node.ovs(["config", "delete", "app/w"]), "delete");
      expectOk(await node.ovs(["config", "set", "other/x", "ignored"]), "set outside the prefix");
      while (!out.includes("delete app/w") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(out).toBe("watching app/\nput app/w = one\ndelete app/w\n");
    } finally {
      if (watcher.pid !== undefined && watcher.exitCode === null) process.kill(watcher.pid, "SIGTERM");
    }
  });

  it("keeps serving NBD I/O, verified, while the etcd leader is killed", async () => {
    expectOk(await node.ovs(["vdisk", "create", "e2", "--size", "256M"]), "create");
    const fio = runTool("fio", [
      "--name=verify", "--ioengine=nbd", `--uri=${node.uri("e2")}`, "--rw=randwrite", "--bs=4k", "--iodepth=16",
      "--size=128m", "--verify=crc32c", "--do_verify=1", "--verify_fatal=1", "--verify_state_save=0", "--output-format=json",
    ], 300_000);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const leader = await cluster.leaderIndex();
    expect(leader).toBeGreaterThanOrEqual(0);
    await cluster.kill(leader, "SIGKILL");
    const result = await fio;
    expectOk(result, "fio");
    const report = JSON.parse(result.stdout.slice(result.stdout.indexOf("{"))) as { jobs: Array<{ error: number; read: { total_ios: number } }> };
    expect(report.jobs[0]!.error).toBe(0);
    expect(report.jobs[0]!.read.total_ios).toBe(32768);
    // The store works again after the election: a vDisk can be created and a key set.
    expectOk(await node.ovs(["vdisk", "create", "e3", "--size", "16M"]), "create after the leader kill");
    expectOk(await node.ovs(["config", "set", "app/after", "yes"]), "config set after the leader kill");
    const status = JSON.parse((await node.ovs(["config", "status", "--json"])).stdout) as { leader?: string; members: Array<{ reachable?: boolean }> };
    expect(status.leader).toBeDefined();
    // The health check names the killed member (STO0002) and fails, though the store has a leader again
    // (STO0001 says so beside it).
    const killed = cluster.members[leader]!;
    const health = await node.ovs(["healthcheck", "--json", "store", "health"]);
    expect(health.exitCode).toBe(1);
    const storeHealth = (JSON.parse(health.stdout) as { result: Record<string, { state: string; messages: Record<string, Array<{ code: string; message: string }>> }> }).result["store.health"]!;
    expect(storeHealth.state).toBe("FAILED");
    expect(storeHealth.messages.error).toEqual([{ code: "STO0002", message: expect.stringMatching(new RegExp(`^store member \\S+ \\((http://)?${killed.endpoint.replace(/^http:\/\//, "").replace(/[.]/g, "\\.")}\\) is not reachable`)) }]);
  });
});

describe("a node on an etcd whose quota fills up", () => {
  it("reports etcd's NOSPACE alarm with its documented recovery (STO0003) and fails the check", async () => {
    const MiB = 1024 * 1024;
    const small = await startEtcdCluster({ members: 1, quotaBackendBytes: 16 * MiB });
    const dir = await tempDir("ovs-etcd-full-");
    let full: RunningNode | undefined;
    try {
      const url = `etcd://${small.endpoints[0]!.replace(/^http:\/\//, "")}/ovs-full/`;
      full = await RunningNode.start(dir, { nbd: 0, api: 0 }, ["--store", url, "--node-id", "node-full", "--backend", "local"], "node");
      // Fill the quota through the REST API (64 KiB values over 10 keys: every put is a new revision).
      const value = "x".repeat(64 * 1024);
      let refused: Response | undefined;
      for (let index = 0; index < 2_000 && refused === undefined; index++) {
        const response = await full.fetch("/api/v1/config", { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify({ key: `fill/${index % 10}`, value }) });
        if (!response.ok) refused = response;
      }
      expect(refused, "the quota never filled").toBeDefined();
      expect(refused!.status).toBe(507);
      expect(((await refused!.json()) as { error: { code: string } }).error.code).toBe("NO_SPACE");
      const health = await full.ovs(["healthcheck", "--json", "store"]);
      expect(health.exitCode).toBe(1);
      const report = JSON.parse(health.stdout) as { result: Record<string, { state: string; messages: Record<string, Array<{ code: string; message: string }>> }> };
      expect(report.result["store.health"]!.state).toBe("FAILED");
      expect(report.result["store.health"]!.messages.error).toEqual([
        { code: "STO0003", message: expect.stringMatching(/^store alarm NOSPACE on member \S+; etcd's backend quota is full \(alarm NOSPACE\).*compact.*defrag.*alarm disarm/) },
      ]);
      expect(report.result["store.health"]!.messages.success).toBeUndefined(); // not healthy with an alarm
      // The round trip cannot write: it ends as an exception naming the refusal, not as a success.
      expect(report.result["store.read-write"]!.state).not.toBe("SUCCESS");
      expect(Object.values(report.result["store.read-write"]!.messages).flat()[0]!.message).toMatch(/NOSPACE/);
    } finally {
      await full?.stop();
      await small.stop();
      await fsp.rm(dir, { recursive: true, force: true });
    }
  }, 240_000);
});
