// Cluster store benchmark (run by hand, not in CI): operations per second and latency percentiles of
// get, put and sequence (1 equals-assert + 2 puts, like a registry update), sequentially and with 32 in
// flight, on the EmbeddedStore and on EtcdStore against a 1-member and a 3-member etcd started on
// loopback for the run (src/store/etcd-test-cluster.ts). 100-byte values, keys spread over 1,000 names.
// Targets run in turns (embedded, etcd-1, etcd-3, repeated --reps times) so drift on a shared machine hits
// them alike; the JSON on stdout has every run and the medians.
//
// Usage: npm run build && node dist/bench/store.js [--ops 1000] [--reps 3] [--dir DIR]

import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { EmbeddedStore, type ClusterStore } from "../src/store/index.js";
import { EtcdStore } from "../src/store/etcd-store.js";
import { startEtcdCluster, type EtcdTestCluster } from "../src/store/etcd-test-cluster.js";
import { optionValue } from "./args.js";
import { median } from "./stats.js";

interface Options {
  opsPerRun: number;
  reps: number;
  dir: string;
}

function parseArgs(): Options {
  const args = process.argv.slice(2);
  const value = (name: string, fallback: string): string => optionValue(args, name, fallback);
  return { opsPerRun: Number(value("--ops", "1000")), reps: Number(value("--reps", "3")), dir: value("--dir", os.tmpdir()) };
}

const keyCount = 1000;
const inFlightMax = 32;
const value = Buffer.alloc(100, 0x61);

interface Result {
  opsPerSecond: number;
  latencyMsP50: number;
  latencyMsP99: number;
}

function percentile(sorted: number[], fraction: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * fraction))]!;
}

async function measure(opsCount: number, inFlight: number, operation: (index: number) => Promise<void>): Promise<Result> {
  const latenciesMs: number[] = [];
  let next = 0;
  const startedNs = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < opsCount) {
        const index = next++;
        const opStartNs = process.hrtime.bigint();
        await operation(index);
        latenciesMs.push(Number(process.hrtime.bigint() - opStartNs) / 1e6);
      }
    }),
  );
  const elapsedS = Number(process.hrtime.bigint() - startedNs) / 1e9;
  latenciesMs.sort((a, b) => a - b);
  return {
    opsPerSecond: Math.round(opsCount / elapsedS),
    latencyMsP50: Number(percentile(latenciesMs, 0.5).toFixed(3)),
    latencyMsP99: Number(percentile(latenciesMs, 0.99).toFixed(3)),
  };
}

/** Every workload once on `store`; keys under a fresh run prefix. */
async function workloads(store: ClusterStore, opsCount: number, run: number): Promise<Record<string, Result>> {
  const key = (index: number): string => `bench/${run}/k${index % keyCount}`;
  for (let index = 0; index < keyCount; index += 128) {
    await store.sequence([], Array.from({ length: Math.min(128, keyCount - index) }, (_, offset) => ({ kind: "put" as const, key: key(index + offset), value })));
  }
  const results: Record<string, Result> = {};
  for (const inFlight of [1, inFlightMax]) {
    const suffix = inFlight === 1 ? "sequential" : `${inFlight}_in_flight`;
    results[`put_${suffix}`] = await measure(opsCount, inFlight, async (index) => store.put(key(index), value));
    results[`get_${suffix}`] = await measure(opsCount, inFlight, async (index) => {
      if ((await store.get(key(index))) === undefined) throw new Error("missing key");
    });
    // Each sequence asserts its own guard key, so concurrent ones do not conflict.
    results[`sequence_${suffix}`] = await measure(opsCount, inFlight, async (index) => {
      const guard = `bench/${run}/guard/${suffix}/${index}`;
      await store.sequence([{ kind: "absent", key: guard }], [
        { kind: "put", key: guard, value },
        { kind: "put", key: key(index), value },
      ]);
    });
  }
  await store.deletePrefix(`bench/${run}/`);
  return results;
}

async function main(): Promise<void> {
  const options = parseArgs();
  const dir = await mkdtemp(path.join(options.dir, "ovs-bench-store-"));
  const clusters: EtcdTestCluster[] = [];
  const stores: Record<string, ClusterStore> = {};
  try {
    stores.embedded = await EmbeddedStore.open({ dir: path.join(dir, "embedded") });
    const one = await startEtcdCluster({ members: 1 });
    clusters.push(one);
    stores.etcd_1_member = await EtcdStore.open({ endpoints: one.endpoints, prefix: "bench/" });
    const three = await startEtcdCluster({ members: 3 });
    clusters.push(three);
    stores.etcd_3_members = await EtcdStore.open({ endpoints: three.endpoints, prefix: "bench/" });

    const runs: Record<string, Array<Record<string, Result>>> = {};
    for (let rep = 0; rep < options.reps; rep++) {
      for (const [name, store] of Object.entries(stores)) {
        (runs[name] ??= []).push(await workloads(store, options.opsPerRun, rep));
      }
    }
    const medians: Record<string, Record<string, Result>> = {};
    for (const [name, list] of Object.entries(runs)) {
      medians[name] = {};
      for (const workload of Object.keys(list[0]!)) {
        const of = (field: keyof Result): number => median(list.map((run) => run[workload]![field]));
        medians[name][workload] = { opsPerSecond: of("opsPerSecond"), latencyMsP50: of("latencyMsP50"), latencyMsP99: of("latencyMsP99") };
      }
    }
    process.stdout.write(
      `${JSON.stringify({ benchmark: "cluster store", opsPerRun: options.opsPerRun, reps: options.reps, valueBytes: value.length, cpus: os.cpus().length, medians, runs }, null, 2)}\n`,
    );
  } finally {
    for (const store of Object.values(stores)) await store.close();
    for (const cluster of clusters) await cluster.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
