// Sparse copy-out benchmark (run by hand, not in CI): how long qemu-img convert and nbdcopy take to copy
// a mostly empty (thin) disk out of an NBD server into a raw file, for our vDisk (`ovs up`, local
// backend) and, in the same run and in turns, for qemu-nbd serving a sparse raw file with the same
// bytes. Both servers answer NBD_CMD_BLOCK_STATUS (base:allocation), so the clients skip the holes; a
// server without it (ours before structured replies) makes them read every byte. Prints JSON: every run,
// medians, ratios, and how many bytes the copies allocated.
//
// Usage: npm run build && node dist/bench/sparse-copy.js [--dir DIR] [--size-gib 8] [--chunks 32] [--reps 5]
//        [--ovs-bin PATH]   (another tree's dist/src/cli/main.js, e.g. to measure an older server)
// The disk gets --chunks writes of 1 MiB (pattern 0x5a), spread evenly over --size-gib.

import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { optionValue } from "./args.js";
import { startOurs, startQemuNbd, type Target } from "./nbd-targets.js";
import { run } from "./process-helpers.js";
import { median } from "./stats.js";

const MiB = 1024 * 1024;
const args = process.argv.slice(2);
const value = (name: string, fallback: string): string => optionValue(args, name, fallback);
const options = {
  dir: value("--dir", os.tmpdir()),
  sizeGiB: Number(value("--size-gib", "8")),
  chunks: Number(value("--chunks", "32")),
  reps: Number(value("--reps", "5")),
  ovsBin: value("--ovs-bin", ""),
};

async function must(command: string, commandArgs: string[], timeoutMs: number): Promise<void> {
  const result = await run(command, commandArgs, timeoutMs);
  if (result.code !== 0) throw new Error(`${command} failed (${result.code}): ${result.stderr}`);
}

/** Seconds one copy-out takes; the output file is removed afterwards (its allocated bytes are returned). */
async function copyOut(tool: "qemu-img" | "nbdcopy", uri: string, out: string): Promise<{ seconds: number; allocatedBytes: number }> {
  const start = performance.now();
  if (tool === "qemu-img") await must("qemu-img", ["convert", "-f", "raw", "-O", "raw", uri, out], 600_000);
  else await must("nbdcopy", [uri, out], 600_000);
  const seconds = (performance.now() - start) / 1000;
  const allocatedBytes = (await fsp.stat(out)).blocks * 512;
  return { seconds, allocatedBytes };
}

async function main(): Promise<void> {
  const dir = await fsp.mkdtemp(path.join(options.dir, "ovs-bench-sparse-"));
  const sizeBytes = options.sizeGiB * 1024 * MiB;
  const stride = Math.floor(sizeBytes / options.chunks / MiB) * MiB;
  const targets: Target[] = [];
  try {
    targets.push(await startOurs(dir, sizeBytes, "local", [], ...(options.ovsBin === "" ? [] : [options.ovsBin])));
    targets.push(await startQemuNbd(dir, sizeBytes));
    const writes = Array.from({ length: options.chunks }, (_, i) => ["-c", `write -P 0x5a ${i * stride + (i % 7) * 4096} 1M`]).flat();
    for (const target of targets) await must("qemu-io", ["-f", "raw", target.uri, ...writes, "-c", "flush"], 300_000);
    const tools = ["qemu-img", "nbdcopy"] as const;
    const runs: Record<string, Record<string, number[]>> = Object.fromEntries(tools.map((tool) => [tool, Object.fromEntries(targets.map((t) => [t.name, [] as number[]]))]));
    const allocated: Record<string, number> = {};
    for (let rep = 0; rep < options.reps; rep++) {
      for (const tool of tools) {
        const outs: string[] = [];
        for (const target of targets) {
          const out = path.join(dir, `${target.name}-${tool}.raw`);
          const { seconds, allocatedBytes } = await copyOut(tool, target.uri, out);
          outs.push(out);
          if (rep === 0 && tool === "qemu-img") allocated[target.name] = allocatedBytes;
          runs[tool]![target.name]!.push(Number(seconds.toFixed(3)));
          process.stderr.write(`${tool} ${target.name} run ${rep + 1}: ${seconds.toFixed(2)} s\n`);
        }
        if (rep === 0) await must("cmp", outs, 600_000); // both copies hold the same bytes
        for (const out of outs) await fsp.rm(out);
      }
    }
    const results = tools.map((tool) => {
      const medians = Object.fromEntries(Object.entries(runs[tool]!).map(([name, values]) => [name, median(values)]));
      return { tool, unit: "s", runs: runs[tool], medians, ovs_time_over_qemu_nbd: Number((medians.ovs! / medians["qemu-nbd"]!).toFixed(2)) };
    });
    process.stdout.write(JSON.stringify({
      benchmark: "sparse-copy",
      date: new Date().toISOString(),
      host: { cpus: os.cpus().length, memoryGiB: Math.round(os.totalmem() / 1024 ** 3), node: process.version },
      config: { ...options, dir, dataBytes: options.chunks * MiB, strideBytes: stride },
      allocatedBytesOfCopy: allocated,
      results,
    }, null, 2) + "\n");
  } finally {
    for (const target of targets) await target.stop();
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

await main();
