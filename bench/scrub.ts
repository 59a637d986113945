// Scrub throughput benchmark (run by hand, not in CI). A fresh volume on a LocalBackend in --dir gets
// SIZE MiB written sequentially (4 MiB writes, distinct clusters) and stored; then every other 64 KiB of
// it is overwritten and stored, so each of the first SCOs is half live. One scrub (threshold 0.75, no
// bandwidth limit) rewrites them; the figures are the live data it moved per second (MB/s, 10^6) and
// the SCOs it rewrote per second. The reference, measured in the same run on the same disk: `dd` copying
// a file of the same number of bytes with conv=fsync (the backend fsyncs every object it writes), so the
// ratio says how close the scrub comes to a raw copy of the bytes it moves. scrubCpuMs is the process's
// CPU time during the scrub (all threads: the main one, libuv's, GC), scrubPhaseMs the scrub's wall time
// per phase (ScrubReport.phaseMs). The JSON on stdout has every figure, with units in the keys.
//
// Usage: npm run build && nice -n -10 node dist/bench/scrub.js [--size-mib 256] [--dir DIR]

import { execFileSync } from "node:child_process";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { randomUUID } from "node:crypto";
import { silentLogger } from "../src/base/index.js";
import { LocalBackend } from "../src/backend/index.js";
import { Volume, defaultVolumeSettings, type VolumeConfig } from "../src/volume/index.js";
import { optionValue } from "./args.js";

function parseArgs(): { sizeMiB: number; dir: string } {
  const args = process.argv.slice(2);
  const value = (name: string, fallback: string): string => optionValue(args, name, fallback);
  const sizeMiB = Number(value("--size-mib", "256"));
  if (!Number.isInteger(sizeMiB) || sizeMiB < 8) throw new Error("--size-mib takes a whole number of MiB, at least 8");
  return { sizeMiB, dir: value("--dir", os.tmpdir()) };
}

const MiB = 1024 * 1024;
const round = (x: number): number => Math.round(x * 100) / 100;

async function namespaceBytes(dir: string): Promise<number> {
  let total = 0;
  for (const name of await fsp.readdir(dir)) total += (await fsp.stat(path.join(dir, name))).size;
  return total;
}

async function main(): Promise<void> {
  const { sizeMiB, dir: root } = parseArgs();
  const dir = await fsp.mkdtemp(path.join(root, "ovs-bench-scrub-"));
  const backend = await LocalBackend.open({ dir: path.join(dir, "backend") });
  const log = silentLogger();
  try {
    const id = randomUUID();
    const config: VolumeConfig = { ...defaultVolumeSettings(), id, name: "bench", namespace: `vdisk-${id}`, createdAt: new Date().toISOString(), sizeBytes: sizeMiB * MiB };
    const volume = await Volume.create({ dir: path.join(dir, "volume"), backend, config, log });
    const data = Buffer.alloc(4 * MiB);
    for (let offset = 0; offset < sizeMiB * MiB; offset += data.length) {
      for (let i = 0; i < data.length; i += 4096) data.writeUInt32LE((offset + i) / 4096, i);
      await volume.write(offset, data);
    }
    await volume.syncToBackend();
    const half = Buffer.alloc(64 * 1024, 0x5a);
    for (let offset = 0; offset < sizeMiB * MiB; offset += 128 * 1024) await volume.write(offset, half);
    await volume.syncToBackend();
    const namespaceDir = path.join(dir, "backend", config.namespace);
    const bytesBefore = await namespaceBytes(namespaceDir);

    const cpuBefore = process.cpuUsage();
    const report = await volume.scrub({ threshold: 0.75, bandwidthBytesPerSecond: 0 });
    const cpu = process.cpuUsage(cpuBefore);
    const bytesAfter = await namespaceBytes(namespaceDir);
    const check = await volume.read(64 * 1024, 4096);
    if (check.readUInt32LE(0) !== 16) throw new Error("the scrubbed volume reads wrong data");
    await volume.close();
    const seconds = report.durationMs / 1000;

    // Reference: dd of the same number of bytes on the same disk, fsynced.
    const source = path.join(dir, "dd-source");
    const target = path.join(dir, "dd-target");
    await fsp.writeFile(source, Buffer.alloc(report.liveBytesRewritten, 0x33));
    const ddStartedAt = performance.now();
    execFileSync("dd", [`if=${source}`, `of=${target}`, "bs=4M", "conv=fsync"], { stdio: "ignore" });
    const ddSeconds = (performance.now() - ddStartedAt) / 1000;
    const scrubMBps = report.liveBytesRewritten / 1e6 / seconds;
    const ddMBps = report.liveBytesRewritten / 1e6 / ddSeconds;
    const result = {
      benchmark: "scrub",
      writtenMiB: sizeMiB,
      scoSizeBytes: config.scoSizeBytes,
      threshold: report.threshold,
      scosExamined: report.scosExamined,
      scosRewritten: report.scosRewritten,
      scosWritten: report.scosWritten,
      tlogsRewritten: report.tlogsRewritten,
      liveBytesRewritten: report.liveBytesRewritten,
      bytesReclaimed: report.bytesReclaimed,
      backendBytesBefore: bytesBefore,
      backendBytesAfter: bytesAfter,
      scrubMs: report.durationMs,
      // CPU of this process during the scrub: on a loaded machine, wall time is mostly waiting for a core.
      scrubCpuMs: Math.round((cpu.user + cpu.system) / 1000),
      scrubPhaseMs: Object.fromEntries(Object.entries(report.phaseMs).map(([phase, ms]) => [phase, Math.round(ms)])),
      scrubLiveMBps: round(scrubMBps),
      scrubScosPerSecond: round(report.scosRewritten / seconds),
      referenceDdMBps: round(ddMBps),
      scrubToDdRatio: round(scrubMBps / ddMBps),
    };
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } finally {
    await backend.close();
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

await main();
