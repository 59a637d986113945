// Read cache benchmark (run by hand, not in CI): 4 KiB random reads at queue depth 32 (fio's nbd engine)
// of data whose SCOs have left the write buffer, from a vDisk with the read cache off (cache.mode=none:
// every read is a partial get from the backend) and from one whose cache is warm (cache-on-read, after
// one sequential pass), against qemu-nbd serving a raw file of the same data on the same disk, in turns
// (cold, warm, qemu-nbd, cold, ...). Both vDisks keep no SCO locally (scoCacheMax=4K). The JSON printed
// on stdout has every run, the medians, the ratios, and the backend partial gets and cache hits counted
// by the node during the measured runs.
//
// Usage: npm run build && nice node dist/bench/read-cache.js [--dir DIR] [--runtime-s 10] [--reps 3]
//        [--size-mib 256] [--backend local|alba]

import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { freePort, run, stopChild, waitForPort } from "./process-helpers.js";
import { optionValue } from "./args.js";

interface Options {
  dir: string;
  runtimeS: number;
  reps: number;
  sizeMiB: number;
  backend: string;
}

function parseArgs(): Options {
  const args = process.argv.slice(2);
  const value = (name: string, fallback: string): string => optionValue(args, name, fallback);
  return {
    dir: value("--dir", os.tmpdir()),
    runtimeS: Number(value("--runtime-s", "10")),
    reps: Number(value("--reps", "3")),
    sizeMiB: Number(value("--size-mib", "256")),
    backend: value("--backend", "local"),
  };
}

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const bin = path.join(root, "dist/src/cli/main.js");

interface Node {
  nbdPort: number;
  ovs: (args: string[]) => Promise<string>;
  info: (vdisk: string) => Promise<{ stats: { localScoBytes: number; pendingUploads: number; backendReads: number; readCache: { hits: number; misses: number; entryCount: number } } }>;
  stop: () => Promise<void>;
}

async function startNode(dir: string, backend: string): Promise<Node> {
  const dataDir = path.join(dir, "ovs-data");
  const [nbdPort, apiPort] = [await freePort(), await freePort()];
  const adminPassword = randomBytes(18).toString("base64url");
  // The same V8 flag and thread-pool size as the `ovs` command's shebang and `npm start` (src/cli/main.ts).
  const child = spawn(process.execPath, ["--initial-old-space-size=128", bin, "up", "--data-dir", dataDir, "--nbd-port", String(nbdPort), "--api-port", String(apiPort), "--backend", backend, "--read-cache-size", "1G"], {
    stdio: ["ignore", "ignore", "inherit"],
    env: { ...process.env, UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? "16", OVS_LOG_LEVEL: "warn", OVS_ADMIN_PASSWORD: adminPassword },
  });
  try {
    await waitForPort(apiPort, 90_000);
    const api = `http://127.0.0.1:${apiPort}`;
    const response = await fetch(`${api}/api/v1/oauth/token`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ grant_type: "password", username: "admin", password: adminPassword }),
    });
    const token = ((await response.json()) as { access_token?: string }).access_token;
    if (token === undefined) throw new Error(`login failed: HTTP ${response.status}`);
    return {
      nbdPort,
      ovs: async (args) => {
        const result = await run(process.execPath, [bin, "--api", api, ...args], 60_000, { ...process.env, OVS_TOKEN: token });
        if (result.code !== 0) throw new Error(`ovs ${args.join(" ")} failed: ${result.stderr}`);
        return result.stdout;
      },
      info: async (vdisk) => (await (await fetch(`${api}/api/v1/vdisks/${vdisk}`, { headers: { authorization: `Bearer ${token}` } })).json()) as Awaited<ReturnType<Node["info"]>>,
      stop: () => stopChild(child),
    };
  } catch (error) {
    await stopChild(child);
    throw error;
  }
}

async function fioRun(uri: string, args: string[], timeoutMs: number): Promise<{ iops: number }> {
  const result = await run("fio", ["--name=bench", "--ioengine=nbd", `--uri=${uri}`, "--output-format=json", ...args], timeoutMs);
  if (result.code !== 0) throw new Error(`fio failed on ${uri}: ${result.stderr}`);
  const job = (JSON.parse(result.stdout.slice(result.stdout.indexOf("{"))) as { jobs: Array<{ read: { iops: number } }> }).jobs[0]!;
  return { iops: Math.round(job.read.iops) };
}

const randomRead = (options: Options): string[] => [
  "--rw=randread", "--bs=4k", "--iodepth=32", `--size=${options.sizeMiB}m`, "--time_based", `--runtime=${options.runtimeS}`, "--ramp_time=2",
  "--norandommap", "--randrepeat=0",
];

/** Writes the data set, closes the TLog (snapshot) and waits until no SCO of it is local any more. */
async function prepareVDisk(node: Node, name: string, mode: string, options: Options): Promise<void> {
  await node.ovs(["vdisk", "create", name, "--size", `${options.sizeMiB}M`]);
  await node.ovs(["vdisk", "set", name, "scoCacheMax=4K", `cache.mode=${mode}`]);
  const uri = `nbd://127.0.0.1:${node.nbdPort}/${name}`;
  const filled = await run("fio", ["--name=prefill", "--ioengine=nbd", `--uri=${uri}`, "--rw=write", "--bs=1M", "--iodepth=8", `--size=${options.sizeMiB}m`], 600_000);
  if (filled.code !== 0) throw new Error(`prefill failed: ${filled.stderr}`);
  await node.ovs(["snapshot", "create", name, "filled"]);
  const deadline = Date.now() + 300_000;
  for (;;) {
    const { stats } = await node.info(name);
    if (stats.localScoBytes === 0 && stats.pendingUploads === 0) return;
    if (Date.now() > deadline) throw new Error(`${name}'s SCOs are still local after 300 s`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function main(): Promise<void> {
  const options = parseArgs();
  const dir = await fsp.mkdtemp(path.join(options.dir, "ovs-bench-read-cache-"));
  const node = await startNode(dir, options.backend);
  let qemu: ChildProcess | undefined;
  try {
    await prepareVDisk(node, "cold", "none", options);
    await prepareVDisk(node, "warm", "cache-on-read", options);
    // One sequential pass fills the warm vDisk's cache; wait until its entries stop growing.
    const warmUri = `nbd://127.0.0.1:${node.nbdPort}/warm`;
    const pass = await run("fio", ["--name=warmup", "--ioengine=nbd", `--uri=${warmUri}`, "--rw=read", "--bs=1M", "--iodepth=8", `--size=${options.sizeMiB}m`], 600_000);
    if (pass.code !== 0) throw new Error(`warm-up failed: ${pass.stderr}`);
    for (let last = -1; ; await new Promise((r) => setTimeout(r, 200))) {
      const entries = (await node.info("warm")).stats.readCache.entryCount;
      if (entries === last) break;
      last = entries;
    }
    const image = path.join(dir, "qemu-nbd.raw");
    await fsp.writeFile(image, randomBytes(options.sizeMiB * 1024 * 1024));
    const qemuPort = await freePort();
    qemu = spawn("qemu-nbd", ["-f", "raw", "--persistent", "-b", "127.0.0.1", "-p", String(qemuPort), "-x", "bench", image], { stdio: "ignore" });
    await waitForPort(qemuPort, 30_000);

    const targets = [
      { name: "ovs_cache_off", uri: `nbd://127.0.0.1:${node.nbdPort}/cold`, vdisk: "cold" },
      { name: "ovs_cache_warm", uri: warmUri, vdisk: "warm" },
      { name: "qemu_nbd", uri: `nbd://127.0.0.1:${qemuPort}/bench`, vdisk: undefined },
    ];
    const runs: Record<string, number[]> = {};
    const counted: Record<string, { backendReads: number; hits: number; misses: number }> = {};
    for (let rep = 0; rep < options.reps; rep++) {
      for (const target of targets) {
        const before = target.vdisk === undefined ? undefined : (await node.info(target.vdisk)).stats;
        const { iops } = await fioRun(target.uri, randomRead(options), (options.runtimeS + 60) * 1000);
        (runs[target.name] ??= []).push(iops);
        if (before !== undefined) {
          const after = (await node.info(target.vdisk!)).stats;
          const sum = (counted[target.name] ??= { backendReads: 0, hits: 0, misses: 0 });
          sum.backendReads += after.backendReads - before.backendReads;
          sum.hits += after.readCache.hits - before.readCache.hits;
          sum.misses += after.readCache.misses - before.readCache.misses;
        }
        process.stderr.write(`rep ${rep + 1} ${target.name}: ${iops} IOPS\n`);
      }
    }
    const medians = Object.fromEntries(Object.entries(runs).map(([name, values]) => [name, median(values)]));
    const round = (x: number): number => Math.round(x * 100) / 100;
    process.stdout.write(JSON.stringify({
      workload: `4k random read, QD 32, ${options.sizeMiB} MiB, ${options.runtimeS} s per run, data evicted from the write buffer`,
      backend: options.backend,
      runsIops: runs,
      medianIops: medians,
      ratios: {
        warmOverOff: round(medians.ovs_cache_warm! / medians.ovs_cache_off!),
        warmOverQemuNbd: round(medians.ovs_cache_warm! / medians.qemu_nbd!),
        offOverQemuNbd: round(medians.ovs_cache_off! / medians.qemu_nbd!),
      },
      countedDuringRuns: counted,
    }, null, 2) + "\n");
  } finally {
    if (qemu) await stopChild(qemu);
    await node.stop();
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

await main();
