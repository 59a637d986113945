// NBD benchmark (run by hand, not in CI): fio's nbd engine against a vDisk served by `ovs up` and, in the
// same run, against qemu-nbd (and nbd-server when installed) serving a raw file on the same disk.
// Workloads as in ../shared/reference/block-baseline.md: 4 KiB random write and read at queue depth 32,
// 1 MiB sequential write and read at queue depth 8. Targets are measured in turns (ours, qemu-nbd,
// nbd-server, ours, ...) so drift on this shared machine hits them alike; the JSON printed on stdout has
// every run, the medians and the ratios to each reference.
//
// Usage: npm run build && node dist/bench/nbd.js [--dir DIR] [--runtime-s 15] [--reps 3] [--size-gib 1]
//        [--backend alba|local]   (the vDisk's backend: `ovs up`'s default ALBA on 6 local ASDs, or a directory)
//        [--only NAME,...]        (only these workloads, e.g. write_1m_qd8)
//        [--sco-size 4M] [--tlog-multiplier 16]   (our vDisk's; default: the vPool's, 8M and 8)

import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { freePort, run, stopChild, waitForPort } from "./process-helpers.js";
import { optionValue } from "./args.js";
import { median } from "./stats.js";

interface Options {
  dir: string;
  runtimeS: number;
  reps: number;
  sizeGiB: number;
  backend: string;
  /** Workload names to run (all when empty). */
  only: string[];
  /** `vdisk create` options for our vDisk (--sco-size, --tlog-multiplier); the defaults when absent. */
  vdiskOptions: string[];
}

function parseArgs(): Options {
  const args = process.argv.slice(2);
  const value = (name: string, fallback: string): string => optionValue(args, name, fallback);
  return {
    dir: value("--dir", os.tmpdir()),
    runtimeS: Number(value("--runtime-s", "15")),
    reps: Number(value("--reps", "3")),
    sizeGiB: Number(value("--size-gib", "1")),
    backend: value("--backend", "alba"),
    only: value("--only", "").split(",").filter((name) => name !== ""),
    vdiskOptions: ["--sco-size", "--tlog-multiplier"].flatMap((name) => {
      const given = value(name, "");
      return given === "" ? [] : [name, given];
    }),
  };
}

// The first four are the workloads of the foundation issue and block-baseline.md. The fifth asks for
// durability as it goes (an NBD FLUSH after every 64 MiB): the references then have to write to the disk
// too, instead of leaving everything in the page cache.
const workloads: ReadonlyArray<{ name: string; rw: string; bs: string; iodepth: number; unit: "iops" | "MBps"; extra?: string[] }> = [
  { name: "randwrite_4k_qd32", rw: "randwrite", bs: "4k", iodepth: 32, unit: "iops" },
  { name: "randread_4k_qd32", rw: "randread", bs: "4k", iodepth: 32, unit: "iops" },
  { name: "write_1m_qd8", rw: "write", bs: "1M", iodepth: 8, unit: "MBps" },
  { name: "read_1m_qd8", rw: "read", bs: "1M", iodepth: 8, unit: "MBps" },
  { name: "write_1m_qd8_flush_every_64m", rw: "write", bs: "1M", iodepth: 8, unit: "MBps", extra: ["--fsync=64"] },
];

interface Target {
  name: string;
  uri: string;
  stop: () => Promise<void>;
}

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

async function startOurs(dir: string, sizeBytes: number, backend: string, vdiskOptions: string[]): Promise<Target> {
  const dataDir = path.join(dir, "ovs-data");
  const [nbdPort, apiPort] = [await freePort(), await freePort()];
  const bin = path.join(root, "dist/src/cli/main.js");
  // The API needs a token: the first start takes its admin password from OVS_ADMIN_PASSWORD.
  const adminPassword = randomBytes(18).toString("base64url");
  // The same V8 flag and thread-pool size as the `ovs` command's shebang and `npm start` (src/cli/main.ts).
  const child = spawn(process.execPath, ["--initial-old-space-size=128", bin, "up", "--data-dir", dataDir, "--nbd-port", String(nbdPort), "--api-port", String(apiPort), "--backend", backend], {
    stdio: ["ignore", "ignore", "inherit"],
    env: { ...process.env, UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? "16", OVS_LOG_LEVEL: "warn", OVS_ADMIN_PASSWORD: adminPassword },
  });
  try {
    await waitForPort(apiPort, 90_000);
    const response = await fetch(`http://127.0.0.1:${apiPort}/api/v1/oauth/token`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ grant_type: "password", username: "admin", password: adminPassword }),
    });
    const token = ((await response.json()) as { access_token?: string }).access_token;
    if (token === undefined) throw new Error(`login failed: HTTP ${response.status}`);
    const created = await run(process.execPath, [bin, "--api", `http://127.0.0.1:${apiPort}`, "vdisk", "create", "bench", "--size", String(sizeBytes), ...vdiskOptions], 60_000, { ...process.env, OVS_TOKEN: token });
    if (created.code !== 0) throw new Error(`vdisk create failed: ${created.stderr}`);
  } catch (error) {
    await stopChild(child);
    throw error;
  }
  return { name: "ovs", uri: `nbd://127.0.0.1:${nbdPort}/bench`, stop: () => stopChild(child) };
}

async function startQemuNbd(dir: string, sizeBytes: number): Promise<Target> {
  const image = path.join(dir, "qemu-nbd.raw");
  await fsp.writeFile(image, "");
  await fsp.truncate(image, sizeBytes);
  const port = await freePort();
  const child = spawn("qemu-nbd", ["-f", "raw", "--persistent", "-b", "127.0.0.1", "-p", String(port), "-x", "bench", image], { stdio: "ignore" });
  await waitForPort(port, 30_000);
  return { name: "qemu-nbd", uri: `nbd://127.0.0.1:${port}/bench`, stop: () => stopChild(child) };
}

async function startNbdServer(dir: string, sizeBytes: number): Promise<Target | undefined> {
  if (!fs.existsSync("/usr/bin/nbd-server")) return undefined;
  const image = path.join(dir, "nbd-server.raw");
  await fsp.writeFile(image, "");
  await fsp.truncate(image, sizeBytes);
  const port = await freePort();
  const config = path.join(dir, "nbd-server.conf");
  const pidFile = path.join(dir, "nbd-server.pid");
  await fsp.writeFile(config, `[generic]\nport = ${port}\nlistenaddr = 127.0.0.1\npid_file = ${pidFile}\n[bench]\nexportname = ${image}\nflush = true\nfua = true\n`);
  // nbd-server daemonizes (with -d it would serve one connection only); it is stopped by its pid file.
  const started = await run("nbd-server", ["-C", config, "-p", pidFile], 30_000);
  if (started.code !== 0) throw new Error(`nbd-server failed to start: ${started.stderr}`);
  await waitForPort(port, 30_000);
  const pid = Number((await fsp.readFile(pidFile, "utf8")).trim());
  return {
    name: "nbd-server",
    uri: `nbd://127.0.0.1:${port}/bench`,
    stop: async () => {
      process.kill(pid, "SIGTERM");
      for (let i = 0; i < 300; i++) {
        try {
          process.kill(pid, 0);
        } catch {
          return;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    },
  };
}

async function fio(uri: string, workload: (typeof workloads)[number], options: Options): Promise<number> {
  // (fio --fsync=N on the nbd engine sends NBD_CMD_FLUSH after every N writes.)
  const result = await run("fio", [
    "--name=bench", "--ioengine=nbd", `--uri=${uri}`, `--rw=${workload.rw}`, `--bs=${workload.bs}`, `--iodepth=${workload.iodepth}`,
    `--size=${options.sizeGiB}g`, "--time_based", `--runtime=${options.runtimeS}`, "--ramp_time=2", "--norandommap", "--randrepeat=0",
    "--output-format=json", ...(workload.extra ?? []),
  ], (options.runtimeS + 60) * 1000);
  if (result.code !== 0) throw new Error(`fio failed on ${uri}: ${result.stderr}`);
  const job = (JSON.parse(result.stdout.slice(result.stdout.indexOf("{"))) as { jobs: Array<{ read: { iops: number; bw_bytes: number }; write: { iops: number; bw_bytes: number } }> }).jobs[0]!;
  const side = workload.rw.includes("write") ? job.write : job.read;
  return workload.unit === "iops" ? Math.round(side.iops) : Math.round(side.bw_bytes / 1e6);
}

async function prefill(uri: string, options: Options): Promise<void> {
  const result = await run("fio", ["--name=prefill", "--ioengine=nbd", `--uri=${uri}`, "--rw=write", "--bs=1M", "--iodepth=8", `--size=${options.sizeGiB}g`], 600_000);
  if (result.code !== 0) throw new Error(`prefill failed on ${uri}: ${result.stderr}`);
}

async function main(): Promise<void> {
  const options = parseArgs();
  const dir = await fsp.mkdtemp(path.join(options.dir, "ovs-bench-nbd-"));
  const sizeBytes = Math.max(4, options.sizeGiB) * 1024 ** 3;
  const targets: Target[] = [];
  try {
    targets.push(await startOurs(dir, sizeBytes, options.backend, options.vdiskOptions));
    targets.push(await startQemuNbd(dir, sizeBytes));
    const nbdServer = await startNbdServer(dir, sizeBytes);
    if (nbdServer) targets.push(nbdServer);
    for (const target of targets) await prefill(target.uri, options);
    const results: Record<string, Record<string, number[]>> = {};
    const unknown = options.only.filter((name) => !workloads.some((workload) => workload.name === name));
    if (unknown.length > 0) throw new Error(`unknown workload ${unknown.join(", ")}; known: ${workloads.map((w) => w.name).join(", ")}`);
    const chosen = workloads.filter((workload) => options.only.length === 0 || options.only.includes(workload.name));
    for (const workload of chosen) {
      results[workload.name] = Object.fromEntries(targets.map((t) => [t.name, [] as number[]]));
      for (let rep = 0; rep < options.reps; rep++) {
        for (const target of targets) {
          const value = await fio(target.uri, workload, options);
          results[workload.name]![target.name]!.push(value);
          process.stderr.write(`${workload.name} ${target.name} run ${rep + 1}: ${value} ${workload.unit}\n`);
        }
      }
    }
    const rows = chosen.map((workload) => {
      const runs = results[workload.name]!;
      const medians = Object.fromEntries(Object.entries(runs).map(([name, values]) => [name, median(values)]));
      const ratios = Object.fromEntries(targets.filter((t) => t.name !== "ovs").map((t) => [`ovs_over_${t.name.replace("-", "_")}`, Number((medians.ovs! / medians[t.name]!).toFixed(2))]));
      return { workload: workload.name, unit: workload.unit, runs, medians, ratios };
    });
    const report = {
      benchmark: "nbd",
      date: new Date().toISOString(),
      host: { cpus: os.cpus().length, memoryGiB: Math.round(os.totalmem() / 1024 ** 3), node: process.version },
      config: { ...options, dir, fio: "nbd engine, --time_based --ramp_time=2 --norandommap --randrepeat=0, prefilled" },
      results: rows,
    };
    process.stdout.write(JSON.stringify(report, null, 2) + "\n");
  } finally {
    for (const target of targets) await target.stop();
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

await main();
