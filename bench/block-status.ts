// BLOCK_STATUS cost probe (run by hand, not in CI): how long one VolumeExport.blockStatus call holds the
// node's event loop, on a volume of the local backend with 1 GiB written, for a range of written data
// (1,024 extents allowed, and REQ_ONE), a never-written range, and 1,024 fragmented extents before and
// after their map commit. No reference tool: this is our own work per request, which bounds how much a
// client asking for block status can delay every other vDisk's I/O (sparse-copy.ts compares the copy
// times with qemu-nbd). Prints JSON: median and max of --reps calls, and what each reply covered.
//
// Usage: npm run build && node dist/bench/block-status.js [--dir DIR] [--reps 20]

import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { randomUUID } from "node:crypto";
import { silentLogger } from "../src/base/index.js";
import { LocalBackend } from "../src/backend/index.js";
import { VolumeExport } from "../src/frontend/index.js";
import { Volume, defaultVolumeSettings } from "../src/volume/index.js";
import { optionValue } from "./args.js";
import { median } from "./stats.js";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const args = process.argv.slice(2);
const options = { dir: optionValue(args, "--dir", os.tmpdir()), reps: Number(optionValue(args, "--reps", "20")) };

async function main(): Promise<void> {
  const dir = await fsp.mkdtemp(path.join(options.dir, "ovs-bench-block-status-"));
  const backend = await LocalBackend.open({ dir: path.join(dir, "backend") });
  const id = randomUUID();
  const config = { ...defaultVolumeSettings(), id, name: "bs", namespace: `vdisk-${id}`, sizeBytes: 4 * GiB, createdAt: new Date().toISOString() };
  const volume = await Volume.create({ dir: path.join(dir, "volume"), backend, config, log: silentLogger() });
  const nbdExport = new VolumeExport(volume);
  const results: Array<{ case: string; medianMs: number; maxMs: number; extents: number; coveredMiB: number }> = [];
  const measure = async (name: string, offsetBytes: number, lengthBytes: number, extentCountMax: number): Promise<void> => {
    const times: number[] = [];
    let reply: Awaited<ReturnType<VolumeExport["blockStatus"]>> = [];
    for (let i = 0; i < options.reps; i++) {
      const start = performance.now();
      reply = await nbdExport.blockStatus(offsetBytes, lengthBytes, extentCountMax);
      times.push(performance.now() - start);
    }
    const coveredMiB = reply.reduce((sum, extent) => sum + extent.lengthBytes, 0) / MiB;
    results.push({ case: name, medianMs: Number(median(times).toFixed(2)), maxMs: Number(Math.max(...times).toFixed(2)), extents: reply.length, coveredMiB });
    process.stderr.write(`${name}: median ${median(times).toFixed(2)} ms, ${reply.length} extents over ${coveredMiB} MiB\n`);
  };
  try {
    const chunk = Buffer.alloc(MiB, 7);
    for (let at = 0; at < GiB; at += chunk.length) await volume.write(at, chunk);
    await volume.flush();
    await volume.syncToBackend();
    await measure("written data, 1,024 extents allowed", 0, 0xffff_ffff, 1024);
    await measure("written data, REQ_ONE", 0, 0xffff_ffff, 1);
    await measure("3 GiB never written", GiB, 3 * GiB, 1024);
    for (let cluster = 0; cluster < 25_600; cluster += 2) await volume.write(GiB + cluster * 4096, Buffer.alloc(4096, 1));
    await measure("1,024 fragmented extents, map not committed yet", GiB, GiB, 1024);
    await volume.flush();
    await volume.syncToBackend();
    await measure("1,024 fragmented extents, map committed", GiB, GiB, 1024);
    process.stdout.write(JSON.stringify({
      benchmark: "block-status",
      date: new Date().toISOString(),
      host: { cpus: os.cpus().length, memoryGiB: Math.round(os.totalmem() / GiB), node: process.version },
      config: { ...options, dir, volumeGiB: 4, writtenGiB: 1 },
      results,
    }, null, 2) + "\n");
  } finally {
    await volume.close();
    await backend.close();
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

await main();
