// scripts/etcd-cluster through its front door: start a 1- and a 3-member cluster in the background,
// check every member answers etcdctl's health check, write and read a key through the EtcdStore, and
// stop it by the pids the script recorded (its data directory goes away).

import { expect, it } from "vitest";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { runTool } from "../src/frontend/nbd/test-support.js";
import { EtcdStore } from "../src/store/index.js";

const script = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../scripts/etcd-cluster");

for (const members of [1, 3]) {
  it(`starts a ${members}-member cluster, serves it and stops it`, async () => {
    const started = await runTool(script, ["start", "-d", "-n", String(members)], 90_000);
    expect(started.exitCode, started.stderr).toBe(0);
    const endpoints = /^ENDPOINTS=(.+)$/m.exec(started.stdout)![1]!.split(",");
    const dir = /^DIR=(.+)$/m.exec(started.stdout)![1]!;
    try {
      expect(endpoints).toHaveLength(members);
      const health = await runTool("etcdctl", ["--endpoints", endpoints.join(","), "endpoint", "health"], 30_000);
      expect(health.exitCode, health.stderr + health.stdout).toBe(0);
      const store = await EtcdStore.open({ endpoints, prefix: "script-test/" });
      try {
        await store.put("k", Buffer.from("v"));
        expect((await store.get("k"))?.toString()).toBe("v");
        expect((await store.status()).members).toHaveLength(members);
      } finally {
        await store.close();
      }
    } finally {
      const stopped = await runTool(script, ["stop", dir], 60_000);
      expect(stopped.exitCode, stopped.stderr).toBe(0);
    }
    expect(fs.existsSync(dir)).toBe(false);
  });
}
