// Page-cache drop-behind benchmark (run by hand, not in CI): what a log-structured writer pays for
// fresh page-cache pages, and what DropBehind (src/base/page-cache.ts) gives back. One loop
// writes --total-mib of new 4 MiB files in 1 MiB pwrites and fdatasyncs each one, as the volume writes
// and stores its SCOs; it runs alternately without drop-behind (the page cache grows) and with a
// DropBehind of --window-mib (the files beyond it lose their pages). The reference, in the same run and
// on the same disk, is the same loop overwriting one file in place (what qemu-nbd does with its raw
// file: its pages are reused). The JSON on stdout has every run, the medians and the ratios.
//
// Usage: npm run build && node dist/bench/drop-behind.js [--dir DIR] [--total-mib 3072] [--window-mib 1024] [--reps 3]

import fs from "node:fs";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { DropBehind } from "../src/base/page-cache.js";
import { optionValue } from "./args.js";
import { median } from "./stats.js";

const MiB = 1024 * 1024;
const fileBytes = 4 * MiB;

function parseArgs(): { dir: string; totalMiB: number; windowMiB: number; reps: number } {
  const args = process.argv.slice(2);
  const value = (name: string, fallback: string): string => optionValue(args, name, fallback);
  const totalMiB = Number(value("--total-mib", "3072"));
  const windowMiB = Number(value("--window-mib", "1024"));
  const reps = Number(value("--reps", "3"));
  if (!Number.isInteger(totalMiB) || totalMiB < 64 || totalMiB % 4 !== 0) throw new Error("--total-mib takes a multiple of 4, at least 64");
  if (!Number.isInteger(windowMiB) || windowMiB < 4) throw new Error("--window-mib takes a whole number of MiB, at least 4");
  if (!Number.isInteger(reps) || reps < 1) throw new Error("--reps takes a positive whole number");
  return { dir: value("--dir", os.tmpdir()), totalMiB, windowMiB, reps };
}

/** MiB/s of writing totalMiB as 4 MiB files (each fdatasynced); `inPlace`: one file overwritten instead. */
async function writeLoop(dir: string, totalMiB: number, mode: "grow" | "drop-behind" | "in-place", windowMiB: number): Promise<number> {
  await fsp.rm(dir, { recursive: true, force: true });
  await fsp.mkdir(dir, { recursive: true });
  const chunk = randomBytes(MiB);
  const window = new DropBehind(windowMiB * MiB);
  const drops: Promise<void>[] = [];
  if (mode === "in-place") {
    // Warm the reference file's pages first, as qemu-nbd's raw file is after the benchmark's prefill.
    const fd = fs.openSync(path.join(dir, "raw"), "w");
    for (let offset = 0; offset < totalMiB * MiB; offset += MiB) fs.writeSync(fd, chunk, 0, MiB, offset);
    fs.fdatasyncSync(fd);
    fs.closeSync(fd);
  }
  const started = performance.now();
  for (let index = 0; index * fileBytes < totalMiB * MiB; index++) {
    const file = path.join(dir, mode === "in-place" ? "raw" : `sco-${index}`);
    const handle = await fsp.open(file, mode === "in-place" ? "r+" : "w");
    const base = mode === "in-place" ? index * fileBytes : 0;
    for (let offset = 0; offset < fileBytes; offset += MiB) await handle.write(chunk, 0, MiB, base + offset);
    await handle.datasync();
    await handle.close();
    if (mode === "drop-behind") drops.push(window.add(file, fileBytes));
  }
  await Promise.all(drops);
  const seconds = (performance.now() - started) / 1000;
  await fsp.rm(dir, { recursive: true, force: true });
  return Math.round(totalMiB / seconds);
}

async function main(): Promise<void> {
  const options = parseArgs();
  const dir = await fsp.mkdtemp(path.join(options.dir, "ovs-bench-drop-behind-"));
  const runs: Record<"grow" | "drop-behind" | "in-place", number[]> = { grow: [], "drop-behind": [], "in-place": [] };
  try {
    for (let rep = 0; rep < options.reps; rep++) {
      for (const mode of ["grow", "drop-behind", "in-place"] as const) {
        const value = await writeLoop(path.join(dir, "run"), options.totalMiB, mode, options.windowMiB);
        runs[mode].push(value);
        process.stderr.write(`${mode} run ${rep + 1}: ${value} MiB/s\n`);
      }
    }
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
  const medians = { grow: median(runs.grow), dropBehind: median(runs["drop-behind"]), inPlace: median(runs["in-place"]) };
  const report = {
    benchmark: "drop-behind",
    date: new Date().toISOString(),
    host: { cpus: os.cpus().length, memoryGiB: Math.round(os.totalmem() / 1024 ** 3), node: process.version },
    config: { ...options, dir, fileMiB: fileBytes / MiB, write: "1 MiB pwrites, fdatasync per file" },
    unit: "MiB/s",
    runs,
    medians,
    ratios: {
      dropBehindOverGrow: Number((medians.dropBehind / medians.grow).toFixed(2)),
      growOverInPlace: Number((medians.grow / medians.inPlace).toFixed(2)),
      dropBehindOverInPlace: Number((medians.dropBehind / medians.inPlace).toFixed(2)),
    },
  };
  process.stdout.write(JSON.stringify(report, null, 2) + "\n");
}

await main();
