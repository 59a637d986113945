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

import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { run } from "./process-helpers.js";
import { optionValue } from "./args.js";
import { startNbdServer, startOurs, startQemuNbd, type Target } from "./nbd-targets.js";
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
