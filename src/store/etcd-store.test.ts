// Tests of EtcdStore against a real etcd (Debian's etcd-server) that the tests start on loopback:
// the ClusterStore contract suite on a 1-member cluster; a 3-member cluster whose leader is killed with
// SIGKILL during a loop of asserted sequences (every acknowledged sequence present, none applied twice,
// the loop goes on after the election); a candidate's process killed with SIGKILL hands leadership over
// when its lease expires; requests over the size limit refused before sending; the NOSPACE alarm
// detected, reported with its recovery, and recovered from. A missing etcd binary fails these tests.
// The campaign-kill test runs dist/src/store/etcd-store.child.js (built by `npx tsc -p .`).

import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { stat } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KiB, MiB, OvsError } from "../base/index.js";
import { clusterStoreContract } from "./cluster-store.contract.js";
import { EtcdStore } from "./etcd-store.js";
import { startEtcdCluster, type EtcdTestCluster } from "./etcd-test-cluster.js";

const text = (value: string): Buffer => Buffer.from(value, "utf8");
const uniquePrefix = (): string => `test-${randomBytes(6).toString("hex")}/`;

let single: EtcdTestCluster | undefined;

beforeAll(async () => {
  single = await startEtcdCluster({ members: 1 });
}, 60_000);

afterAll(async () => {
  await single?.stop();
}, 60_000);

clusterStoreContract("EtcdStore (1 member)", () => EtcdStore.open({ endpoints: single!.endpoints, prefix: uniquePrefix() }));

async function caught(promise: Promise<unknown>): Promise<OvsError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(OvsError);
    return error as OvsError;
  }
  throw new Error("expected the call to fail");
}

describe("EtcdStore retries of asserted sequences (injected faults)", () => {
  const counterIs = async (store: EtcdStore, expected: string): Promise<void> => {
    expect((await store.get("counter"))?.toString()).toBe(expected);
  };

  it("a sequence whose reply was lost after it applied is not applied again, and reports success", async () => {
    const faults = { replyLostCount: 0, lostBeforeSendingCount: 0 };
    const store = await EtcdStore.open({ endpoints: single!.endpoints, prefix: uniquePrefix(), faults });
    try {
      await store.put("counter", text("0"));
      faults.replyLostCount = 1;
      await store.sequence([{ kind: "equals", key: "counter", value: text("0") }], [
        { kind: "put", key: "counter", value: text("1") },
        { kind: "put", key: "marker/0", value: text("0") },
      ]);
      await counterIs(store, "1");
      expect(store.retryCounts.attemptsAmbiguous).toBe(1);
      expect(store.retryCounts.sequencesFoundApplied).toBe(1);
      faults.replyLostCount = 1;
      expect(await store.testAndSet("counter", text("1"), text("2"))).toBe(true);
      await counterIs(store, "2");
      expect(store.retryCounts.sequencesFoundApplied).toBe(2);
      // The slot's marker is still consistent: the next sequences run normally.
      await store.sequence([{ kind: "equals", key: "counter", value: text("2") }], [{ kind: "put", key: "counter", value: text("3") }]);
      expect(await store.testAndSet("counter", text("2"), text("x"))).toBe(false);
      await counterIs(store, "3");
      expect(store.retryCounts.outcomesUnknown).toBe(0);
    } finally {
      await store.close();
    }
  });

  it("after an ambiguous attempt that did not apply, the retry applies once or reports ASSERT_FAILED truthfully", async () => {
    const faults = { replyLostCount: 0, lostBeforeSendingCount: 0 };
    const store = await EtcdStore.open({ endpoints: single!.endpoints, prefix: uniquePrefix(), faults });
    try {
      await store.put("counter", text("0"));
      faults.lostBeforeSendingCount = 1;
      await store.sequence([{ kind: "equals", key: "counter", value: text("0") }], [{ kind: "put", key: "counter", value: text("1") }]);
      await counterIs(store, "1");
      expect(store.retryCounts.sequencesFoundApplied).toBe(0);
      faults.lostBeforeSendingCount = 1;
      const error = await caught(
        store.sequence([{ kind: "equals", key: "counter", value: text("0") }], [{ kind: "put", key: "counter", value: text("9") }]),
      );
      expect(error.code).toBe("ASSERT_FAILED");
      expect(error.message).toContain('"counter"');
      await counterIs(store, "1");
      // Two ambiguous attempts in a row, then success.
      faults.lostBeforeSendingCount = 2;
      await store.sequence([{ kind: "equals", key: "counter", value: text("1") }], [{ kind: "put", key: "counter", value: text("2") }]);
      await counterIs(store, "2");
      expect(store.retryCounts.outcomesUnknown).toBe(0);
    } finally {
      await store.close();
    }
  });

  it("an asserted sequence of 128 operations (no room for a marker) reports an ambiguous failure as unknown", async () => {
    const faults = { replyLostCount: 0, lostBeforeSendingCount: 0 };
    const store = await EtcdStore.open({ endpoints: single!.endpoints, prefix: uniquePrefix(), faults });
    try {
      await store.put("guard", text("g"));
      faults.replyLostCount = 1;
      const operations = Array.from({ length: 128 }, (_, index) => ({ kind: "put" as const, key: `k${index}`, value: text("v") }));
      const error = await caught(store.sequence([{ kind: "exists", key: "guard" }], operations));
      expect(error.code).toBe("UNAVAILABLE");
      expect(error.details?.outcome).toBe("unknown");
      expect(error.message).toMatch(/outcome of a write is unknown/);
      // It did apply (the reply was lost after etcd answered): the caller must read back, as told.
      expect(await store.exists("k127")).toBe(true);
      // Blind writes are simply retried.
      faults.replyLostCount = 1;
      await store.put("blind", text("once"));
      expect((await store.get("blind"))?.toString()).toBe("once");
    } finally {
      await store.close();
    }
  });
});

describe("EtcdStore on a 3-member cluster", () => {
  it("loses no acknowledged sequence and applies none twice when the leader is killed (SIGKILL)", async () => {
    const cluster = await startEtcdCluster({ members: 3 });
    // The store talks to the leader first, so the kill cuts requests in flight.
    const leader = await cluster.leaderIndex();
    expect(leader).toBeGreaterThanOrEqual(0);
    const endpoints = [cluster.endpoints[leader]!, ...cluster.endpoints.filter((_, index) => index !== leader)];
    const store = await EtcdStore.open({ endpoints, prefix: uniquePrefix(), timeouts: { requestMs: 1_000, operationMs: 30_000 } });
    const writersCount = 4;
    const ackedBeforeKill = 40;
    const ackedAfterKillMin = 60;
    try {
      expect(store.currentEndpoint).toBe(cluster.endpoints[leader]);
      let ackedTotal = 0;
      let ackedAtKill = -1;
      let longestGapMs = 0;
      let lastAckMs = Date.now();
      const unknown: string[] = [];
      const acknowledged: number[][] = Array.from({ length: writersCount }, () => []);
      const counters = Array.from({ length: writersCount }, () => 0);
      for (let writer = 0; writer < writersCount; writer++) await store.put(`counter/${writer}`, text("0"));
      let killing: Promise<void> | undefined;
      const writerLoop = async (writer: number): Promise<void> => {
        while (ackedAtKill < 0 || ackedTotal - ackedAtKill < ackedAfterKillMin) {
          const n = counters[writer]!;
          const pending = store.sequence([{ kind: "equals", key: `counter/${writer}`, value: text(String(n)) }], [
            { kind: "put", key: `counter/${writer}`, value: text(String(n + 1)) },
            { kind: "put", key: `marker/${writer}/${String(n).padStart(6, "0")}`, value: text(String(n)) },
          ]);
          if (killing === undefined && ackedTotal >= ackedBeforeKill) {
            // Kill while this writer's sequence (and the others') is in flight.
            ackedAtKill = ackedTotal;
            killing = cluster.kill(leader, "SIGKILL");
          }
          try {
            await pending;
            acknowledged[writer]!.push(n);
            counters[writer] = n + 1;
            ackedTotal++;
          } catch (error) {
            // A resolved retry never reports a false ASSERT_FAILED: the only allowed failure is "unknown".
            expect(error).toBeInstanceOf(OvsError);
            expect((error as OvsError).details?.outcome, String(error)).toBe("unknown");
            unknown.push(`${writer}/${n}`);
            counters[writer] = Number((await store.get(`counter/${writer}`))!.toString());
          }
          const nowMs = Date.now();
          longestGapMs = Math.max(longestGapMs, nowMs - lastAckMs);
          lastAckMs = nowMs;
          expect(ackedTotal + unknown.length).toBeLessThan(5_000);
        }
      };
      await Promise.all(Array.from({ length: writersCount }, (_, writer) => writerLoop(writer)));
      await killing;
      for (let writer = 0; writer < writersCount; writer++) {
        const finalCounter = Number((await store.get(`counter/${writer}`))!.toString());
        expect(finalCounter).toBe(counters[writer]);
        const markers: string[] = [];
        let after: string | undefined;
        while (true) {
          const page = await store.prefix(`marker/${writer}/`, { limit: 1000, ...(after === undefined ? {} : { after }) });
          markers.push(...page.entries.map((entry) => entry.value.toString()));
          if (!page.more) break;
          after = page.entries[page.entries.length - 1]!.key;
        }
        // Exactly one marker per increment: no sequence applied twice, none half-applied.
        expect(markers).toEqual(Array.from({ length: finalCounter }, (_, index) => String(index)));
        // Every acknowledged sequence is present.
        expect(acknowledged[writer]!.every((n) => n < finalCounter)).toBe(true);
      }
      expect(ackedTotal - ackedAtKill).toBeGreaterThanOrEqual(ackedAfterKillMin);
      console.log(JSON.stringify({ test: "etcd leader kill", acknowledged: ackedTotal, unknown, longestGapMs, retryCounts: store.retryCounts }));
      const status = await store.status();
      expect(status.members.filter((member) => member.reachable).length).toBe(2);
      expect(status.leader).toBeDefined();
      expect(status.leader).not.toBe(cluster.members[leader]!.name);
    } finally {
      await store.close();
      await cluster.stop();
    }
  }, 120_000);
});

const repositoryRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const childScript = path.join(repositoryRoot, "dist/src/store/etcd-store.child.js");

async function checkChildBuilt(): Promise<void> {
  const built = await stat(childScript).catch(() => undefined);
  if (built === undefined) throw new Error(`${childScript} is missing: run \`npx tsc -p .\` before the tests.`);
  for (const source of ["etcd-store.child.ts", "etcd-store.ts", "cluster-store.ts"]) {
    const sourceStat = await stat(path.join(repositoryRoot, "src/store", source));
    if (sourceStat.mtimeMs > built.mtimeMs) throw new Error(`dist/ is older than src/store/${source}: run \`npx tsc -p .\` first.`);
  }
}

async function waitUntil(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe("EtcdStore elections across processes", () => {
  it("hands leadership over when the leader's process is killed (SIGKILL) and its lease expires", async () => {
    await checkChildBuilt();
    const prefix = uniquePrefix();
    const ttlMs = 3_000;
    const child: ChildProcess = spawn(process.execPath, [childScript, "campaign", single!.endpoints.join(","), prefix, "maintenance", "child", String(ttlMs)], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    let errors = "";
    child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
    child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (errors += chunk));
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    const store = await EtcdStore.open({ endpoints: single!.endpoints, prefix });
    try {
      await waitUntil(() => output.includes("LEADER child") || child.exitCode !== null, 20_000, `the child to lead (${errors})`);
      expect(output).toContain("LEADER child");
      const campaign = await store.campaign("maintenance", "parent", ttlMs);
      expect(campaign.isLeader()).toBe(false);
      expect(await store.leaderOf("maintenance")).toBe("child");
      const killedMs = Date.now();
      child.kill("SIGKILL");
      await exited;
      await waitUntil(() => campaign.isLeader(), ttlMs + 10_000, "the parent to lead after the kill");
      const handoverMs = Date.now() - killedMs;
      expect(handoverMs).toBeLessThan(ttlMs + 10_000);
      expect(await store.leaderOf("maintenance")).toBe("parent");
      console.log(JSON.stringify({ test: "etcd campaign handover", ttlMs, handoverMs }));
      await campaign.resign();
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await store.close();
    }
  }, 60_000);
});

describe("EtcdStore guards", () => {
  it("refuses a request over etcd's request limit before sending it, with a clear error", async () => {
    const store = await EtcdStore.open({ endpoints: single!.endpoints, prefix: uniquePrefix(), requestBytesMax: 256 * KiB });
    try {
      await store.put("fits", Buffer.alloc(100 * KiB, 1));
      const error = await caught(store.put("too-large", Buffer.alloc(300 * KiB, 1)));
      expect(error.code).toBe("INVALID_ARGUMENT");
      expect(error.message).toMatch(/request limit.*bulk data never goes into the store/);
      const sequenceError = await caught(
        store.sequence([], [
          { kind: "put", key: "a", value: Buffer.alloc(150 * KiB, 1) },
          { kind: "put", key: "b", value: Buffer.alloc(150 * KiB, 1) },
        ]),
      );
      expect(sequenceError.code).toBe("INVALID_ARGUMENT");
      expect(await store.exists("too-large")).toBe(false);
      expect(await store.exists("a")).toBe(false);
      const oversized = await caught(store.put("value-limit", Buffer.alloc(MiB + 1)));
      expect(oversized.code).toBe("INVALID_ARGUMENT");
    } finally {
      await store.close();
    }
  });

  it("detects the NOSPACE alarm, reports it with its recovery, and recovers", async () => {
    const cluster = await startEtcdCluster({ members: 1, quotaBackendBytes: 16 * MiB });
    const store = await EtcdStore.open({ endpoints: cluster.endpoints, prefix: uniquePrefix() });
    try {
      const value = Buffer.alloc(64 * KiB, 7);
      let refused: OvsError | undefined;
      for (let index = 0; index < 2_000 && refused === undefined; index++) {
        try {
          await store.put(`fill/${index % 10}`, value);
        } catch (error) {
          refused = error as OvsError;
        }
      }
      expect(refused, "the quota never filled").toBeInstanceOf(OvsError);
      expect(refused!.code).toBe("NO_SPACE");
      expect(refused!.message).toMatch(/NOSPACE.*compact.*defrag.*alarm disarm/);
      const status = await store.status();
      expect(status.healthy).toBe(false);
      expect(status.alarms.some((alarm) => alarm.startsWith("NOSPACE"))).toBe(true);
      expect(status.recovery).toMatch(/compact.*defrag.*alarm disarm/);
      // Reads and plain deletes still work (etcd lets deletes free space); a sequence with asserts carries
      // its marker put, so it is refused like any put.
      expect((await store.get("fill/0"))?.length).toBe(value.length);
      expect((await caught(store.put("fill/0", text("small")))).code).toBe("NO_SPACE");
      expect(await store.delete("fill/1")).toBe(true);
      expect((await caught(store.sequence([{ kind: "exists", key: "fill/2" }], [{ kind: "delete", key: "fill/2" }]))).code).toBe("NO_SPACE");
      expect(await store.exists("fill/2")).toBe(true);

      await store.recoverSpace();
      const after = await store.status();
      expect(after.alarms).toEqual([]);
      expect(after.healthy).toBe(true);
      await store.put("after-recovery", text("ok"));
      expect((await store.get("after-recovery"))?.toString()).toBe("ok");
    } finally {
      await store.close();
      await cluster.stop();
    }
  }, 120_000);

  it("status names the members, the leader and the database size", async () => {
    const store = await EtcdStore.open({ endpoints: single!.endpoints, prefix: uniquePrefix() });
    try {
      const status = await store.status();
      expect(status.kind).toBe("etcd");
      expect(status.members).toHaveLength(1);
      expect(status.members[0]!.name).toBe("m0");
      expect(status.members[0]!.endpoint).toBe(single!.endpoints[0]);
      expect(status.leader).toBe("m0");
      expect(status.dbSizeBytes).toBeGreaterThan(0);
    } finally {
      await store.close();
    }
  });

  it("serves serializable reads when asked to", async () => {
    const prefix = uniquePrefix();
    const writer = await EtcdStore.open({ endpoints: single!.endpoints, prefix });
    const reader = await EtcdStore.open({ endpoints: single!.endpoints, prefix, reads: "serializable" });
    try {
      await writer.sequence([], [
        { kind: "put", key: "a", value: text("1") },
        { kind: "put", key: "b", value: text("2") },
      ]);
      expect((await reader.get("a"))?.toString()).toBe("1");
      expect((await reader.multiGet(["b", "c", "a"])).map((value) => value?.toString())).toEqual(["2", undefined, "1"]);
      expect((await reader.prefix("", { limit: 10 })).entries.map((entry) => entry.key)).toEqual(["a", "b"]);
      expect(await reader.exists("b")).toBe(true);
    } finally {
      await reader.close();
      await writer.close();
    }
  });

  it("skips a dead endpoint and keeps working after many failures (no client circuit breaker)", async () => {
    const store = await EtcdStore.open({
      endpoints: ["http://127.0.0.1:1", single!.endpoints[0]!],
      prefix: uniquePrefix(),
      timeouts: { requestMs: 500, operationMs: 5_000 },
    });
    try {
      for (let index = 0; index < 30; index++) {
        await store.put(`k${index}`, text(String(index)));
        expect((await store.get(`k${index}`))?.toString()).toBe(String(index));
      }
      expect(store.currentEndpoint).toBe(single!.endpoints[0]);
    } finally {
      await store.close();
    }
  });

  it("refuses to open without a reachable member, within its deadline", async () => {
    const startedMs = Date.now();
    const error = await caught(EtcdStore.open({ endpoints: ["http://127.0.0.1:1"], timeouts: { requestMs: 300, operationMs: 1_500 } }));
    expect(["UNAVAILABLE", "TIMEOUT"]).toContain(error.code);
    expect(Date.now() - startedMs).toBeLessThan(10_000);
  });
});
