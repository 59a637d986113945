// Snapshot, clone and restart-from-backend benchmark (run by hand, not in CI). For each size: a fresh
// volume on a LocalBackend in --dir gets SIZE GiB written sequentially (4 MiB writes of random-looking
// data) and synced to the backend; then
// - snapshot creation: --reps snapshots, each after one 4 KiB write (the realistic case: a snapshot
//   closes the open SCO and TLog and syncs), median and max in ms (target < 10 ms at any size);
// - clone creation: --reps linked clones of the last snapshot once stored, median and max in ms
//   (target < 100 ms, independent of the parent's size);
// - restart from the backend: the volume is closed and reopened from its namespace alone in an empty
//   directory; total ms and ms per GiB written.
// The JSON on stdout has every figure, with units in the keys.
//
// Usage: npm run build && node dist/bench/snapshot.js [--sizes 1,20] [--reps 5] [--dir DIR]
// Smoke run: node dist/bench/snapshot.js --sizes 0.0625 --reps 3

import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { randomUUID } from "node:crypto";
import { silentLogger } from "../src/base/index.js";
import { LocalBackend } from "../src/backend/index.js";
import { Volume, defaultVolumeSettings, type VolumeConfig } from "../src/volume/index.js";
import { optionValue } from "./args.js";

interface Options {
  sizesGiB: number[];
  reps: number;
  dir: string;
}

function parseArgs(): Options {
  const args = process.argv.slice(2);
  const value = (name: string, fallback: string): string => optionValue(args, name, fallback);
  const sizesGiB = value("--sizes", "1,20").split(",").map(Number);
  if (sizesGiB.some((size) => !(size > 0))) throw new Error("--sizes takes positive GiB figures, e.g. 1,20");
  return { sizesGiB, reps: Number(value("--reps", "5")), dir: value("--dir", os.tmpdir()) };
}

const GiB = 1024 ** 3;
const writeBytes = 4 * 1024 * 1024;

function summary(samplesMs: number[]): { medianMs: number; maxMs: number } {
  const sorted = [...samplesMs].sort((a, b) => a - b);
  const round = (x: number): number => Math.round(x * 1000) / 1000;
  return { medianMs: round(sorted[Math.floor(sorted.length / 2)]!), maxMs: round(sorted.at(-1)!) };
}

async function runSize(root: string, sizeGiB: number, reps: number): Promise<Record<string, unknown>> {
  const log = silentLogger();
  const dir = await fsp.mkdtemp(path.join(root, "ovs-bench-snapshot-"));
  const backend = await LocalBackend.open({ dir: path.join(dir, "backend") });
  try {
    const id = randomUUID();
    const writtenBytes = Math.ceil((sizeGiB * GiB) / writeBytes) * writeBytes;
    const config: VolumeConfig = {
      ...defaultVolumeSettings(), id, name: "bench", namespace: `vdisk-${id}`, createdAt: new Date().toISOString(),
      sizeBytes: Math.max(writtenBytes, 64 * 1024 * 1024),
    };
    let volume = await Volume.create({ dir: path.join(dir, "parent"), backend, config, log });
    const data = Buffer.alloc(writeBytes);
    const writeStartedAt = performance.now();
    for (let offset = 0; offset < writtenBytes; offset += writeBytes) {
      for (let i = 0; i < writeBytes; i += 4096) data.writeUInt32LE((offset + i) / 4096, i); // distinct clusters
      await volume.write(offset, data);
    }
    await volume.syncToBackend();
    const writeMs = performance.now() - writeStartedAt;

    const snapshotMs: number[] = [];
    for (let rep = 0; rep < reps; rep++) {
      await volume.write(rep * 4096, Buffer.alloc(4096, rep + 1));
      const startedAt = performance.now();
      await volume.createSnapshot(`bench-${rep}`);
      snapshotMs.push(performance.now() - startedAt);
    }
    await volume.waitForUploads();

    const cloneMs: number[] = [];
    const clones: Volume[] = [];
    for (let rep = 0; rep < reps; rep++) {
      const cloneId = randomUUID();
      const startedAt = performance.now();
      const clone = await Volume.createClone({
        dir: path.join(dir, `clone-${rep}`), backend, parent: volume, snapshot: `bench-${reps - 1}`,
        identity: { id: cloneId, name: `clone-${rep}`, namespace: `vdisk-${cloneId}`, createdAt: new Date().toISOString() }, log,
        resolveParent: () => volume,
      });
      cloneMs.push(performance.now() - startedAt);
      clones.push(clone);
    }
    for (const clone of clones) await clone.close();

    await volume.syncToBackend();
    await volume.close();
    const restartStartedAt = performance.now();
    volume = await Volume.openFromBackend({ dir: path.join(dir, "restored"), backend, namespace: config.namespace, log });
    const restartMs = performance.now() - restartStartedAt;
    const report = volume.restoreReport!;
    await volume.close();
    return {
      writtenGiB: writtenBytes / GiB,
      writeMBps: Math.round(writtenBytes / 1e6 / (writeMs / 1000)),
      snapshotCreate: summary(snapshotMs),
      cloneCreate: summary(cloneMs),
      restartFromBackend: {
        totalMs: Math.round(restartMs),
        msPerGiB: Math.round(restartMs / (writtenBytes / GiB)),
        tlogCount: report.tlogCount,
        entryCount: report.entryCount,
      },
    };
  } finally {
    await backend.close();
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

const options = parseArgs();
const results: Record<string, unknown>[] = [];
for (const sizeGiB of options.sizesGiB) results.push(await runSize(options.dir, sizeGiB, options.reps));
process.stdout.write(`${JSON.stringify({ bench: "snapshot", targets: { snapshotCreateMsMax: 10, cloneCreateMsMax: 100 }, reps: options.reps, results }, null, 2)}\n`);
