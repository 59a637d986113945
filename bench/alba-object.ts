// ALBA object benchmark (run by hand, not in CI): upload and download MB/s of 4 MiB objects through
// AlbaBackend with the single-node default preset (4+2) on 6 local ASDs — by default 6 `ovs asd`
// processes (dist/src/alba/asd/asd-main.js, as `ovs up` runs them; --in-process runs them with runAsd
// in this process instead), on 127.0.0.1 —
// against the raw sequential write and read speed of the same filesystem measured in the same run
// (node fs: 4 MiB writes then one fsync, and with an fsync after every 4 MiB as an upload is durable per
// object; 4 MiB reads), scaled by k/(k+m) — the DESIGN.md §9 target is
// ≥ 0.7 × that. Each phase runs with 1 and with --inflight objects in flight; downloads with both read
// strategies (all fragments, the default; data-first). Reads are measured warm
// (page cache, as just written) and, with --drop-caches (root), cold after `sync; echo 3 >
// /proc/sys/vm/drop_caches`, the raw read likewise. Rounds alternate raw and ALBA so drift hits both.
// Prints one JSON document on stdout (units in the keys).
//
// Only processes this benchmark spawned are signalled, by their pid.
//
// Usage: npm run build && node dist/bench/alba-object.js [--objects 64] [--inflight 4] [--rounds 3] [--dir DIR] [--drop-caches] [--in-process]

import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, open, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { MiB, silentLogger } from "../src/base/index.js";
import { EmbeddedStore } from "../src/store/index.js";
import { AlbaBackend, AlbaManager, runAsd, singleNodePreset } from "../src/alba/index.js";
import { optionValue } from "./args.js";

interface Options {
  objectCount: number;
  inFlight: number;
  rounds: number;
  dir: string;
  dropCaches: boolean;
  inProcess: boolean;
}

function parseArgs(): Options {
  const args = process.argv.slice(2);
  const value = (name: string, fallback: string): string => optionValue(args, name, fallback);
  return {
    objectCount: Number(value("--objects", "64")),
    inFlight: Number(value("--inflight", "4")),
    rounds: Number(value("--rounds", "3")),
    dir: value("--dir", os.tmpdir()),
    dropCaches: args.includes("--drop-caches"),
    inProcess: args.includes("--in-process"),
  };
}

const objectSizeBytes = 4 * MiB;

interface LocalAsd {
  port: number;
  close(): Promise<void>;
}

/** Starts one `ovs asd` process on `dir` and waits for its READY line. */
async function spawnAsd(dir: string): Promise<LocalAsd> {
  const main = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "src", "alba", "asd", "asd-main.js");
  const child: ChildProcess = spawn(process.execPath, [main, "--dir", dir, "--port", "0"], {
    env: { ...process.env, OVS_CLUSTER_SECRET: secret, OVS_LOG_LEVEL: "warn", MALLOC_MMAP_THRESHOLD_: "67108864", MALLOC_TRIM_THRESHOLD_: "268435456" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const port = await new Promise<number>((resolve, reject) => {
    let output = "";
    const timer = setTimeout(() => reject(new Error(`the ASD on ${dir} did not start`)), 20_000);
    child.stdout!.on("data", (chunk: Buffer) => {
      output += chunk.toString("utf8");
      const match = /READY (\d+) /.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    });
    child.once("exit", (code) => reject(new Error(`the ASD on ${dir} exited with ${code}`)));
  });
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once("exit", () => resolve());
        child.kill("SIGTERM");
      }),
  };
}
const secret = "bench-secret";

async function dropCaches(enabled: boolean): Promise<boolean> {
  if (!enabled) return false;
  try {
    const { execFileSync } = await import("node:child_process");
    execFileSync("sync");
    await writeFile("/proc/sys/vm/drop_caches", "3\n");
    return true;
  } catch {
    return false;
  }
}

async function timed(work: () => Promise<void>): Promise<number> {
  const start = process.hrtime.bigint();
  await work();
  return Number(process.hrtime.bigint() - start) / 1e9;
}

async function inParallel(count: number, inFlight: number, task: (index: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(inFlight, count) }, async () => {
    while (next < count) await task(next++);
  }));
}

const mbPerSecond = (bytes: number, seconds: number): number => Math.round((bytes / 1e6 / seconds) * 10) / 10;
const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

async function rawRound(dir: string, objects: Buffer[], dropCachesEnabled: boolean): Promise<{ writeMBps: number; writeFsyncEachObjectMBps: number; readWarmMBps: number; readColdMBps: number | undefined }> {
  const file = path.join(dir, `raw-${randomBytes(4).toString("hex")}`);
  const totalBytes = objects.length * objectSizeBytes;
  const handle = await open(file, "w");
  const writeSeconds = await timed(async () => {
    let position = 0;
    for (const object of objects) {
      await handle.write(object, 0, object.length, position);
      position += object.length;
    }
    await handle.sync();
  });
  await handle.close();
  // Per-object durability, as an upload acknowledges: one fsync after every 4 MiB.
  const eachFile = `${file}-each`;
  const eachHandle = await open(eachFile, "w");
  const writeEachSeconds = await timed(async () => {
    let position = 0;
    for (const object of objects) {
      await eachHandle.write(object, 0, object.length, position);
      await eachHandle.sync();
      position += object.length;
    }
  });
  await eachHandle.close();
  await rm(eachFile, { force: true });
  const read = async (): Promise<number> => {
    const reader = await open(file, "r");
    const buffer = Buffer.allocUnsafe(objectSizeBytes);
    const seconds = await timed(async () => {
      for (let position = 0; position < totalBytes; position += objectSizeBytes) await reader.read(buffer, 0, objectSizeBytes, position);
    });
    await reader.close();
    return seconds;
  };
  const readWarmSeconds = await read();
  const cold = await dropCaches(dropCachesEnabled);
  const readColdSeconds = cold ? await read() : undefined;
  await rm(file, { force: true });
  return {
    writeMBps: mbPerSecond(totalBytes, writeSeconds),
    writeFsyncEachObjectMBps: mbPerSecond(totalBytes, writeEachSeconds),
    readWarmMBps: mbPerSecond(totalBytes, readWarmSeconds),
    readColdMBps: readColdSeconds === undefined ? undefined : mbPerSecond(totalBytes, readColdSeconds),
  };
}

async function albaRound(backends: { all: AlbaBackend; dataFirst: AlbaBackend }, round: number, objects: Buffer[], inFlight: number, dropCachesEnabled: boolean) {
  const namespace = `bench-${round}-${inFlight}-${randomBytes(3).toString("hex")}`;
  const backend = backends.all;
  await backend.createNamespace(namespace);
  const totalBytes = objects.length * objectSizeBytes;
  const uploadSeconds = await timed(() => inParallel(objects.length, inFlight, (index) => backend.put(namespace, `sco_${index}`, objects[index]!)));
  const check = await backends.dataFirst.get(namespace, "sco_0");
  if (!check.equals(objects[0]!)) throw new Error("read back differs");
  const download = (reader: AlbaBackend) => timed(() => inParallel(objects.length, inFlight, async (index) => void (await reader.get(namespace, `sco_${index}`))));
  const downloadWarmSeconds = await download(backends.all);
  const downloadDataFirstWarmSeconds = await download(backends.dataFirst);
  const cold = await dropCaches(dropCachesEnabled);
  const downloadColdSeconds = cold ? await download(backends.all) : undefined;
  const coldAgain = await dropCaches(dropCachesEnabled);
  const downloadDataFirstColdSeconds = coldAgain ? await download(backends.dataFirst) : undefined;
  await backend.deleteNamespace(namespace);
  return {
    uploadMBps: mbPerSecond(totalBytes, uploadSeconds),
    downloadWarmMBps: mbPerSecond(totalBytes, downloadWarmSeconds),
    downloadDataFirstWarmMBps: mbPerSecond(totalBytes, downloadDataFirstWarmSeconds),
    downloadColdMBps: downloadColdSeconds === undefined ? undefined : mbPerSecond(totalBytes, downloadColdSeconds),
    downloadDataFirstColdMBps: downloadDataFirstColdSeconds === undefined ? undefined : mbPerSecond(totalBytes, downloadDataFirstColdSeconds),
  };
}

async function main(): Promise<void> {
  const options = parseArgs();
  const root = await mkdtemp(path.join(options.dir, "ovs-bench-alba-"));
  const asds: LocalAsd[] = [];
  const store = await EmbeddedStore.open({ dir: path.join(root, "store") });
  let backend: AlbaBackend | undefined;
  let dataFirst: AlbaBackend | undefined;
  try {
    for (let index = 0; index < 6; index++) {
      const dir = path.join(root, `asd-${index}`);
      asds.push(options.inProcess ? await runAsd({ dir, host: "127.0.0.1", port: 0, clusterSecret: secret, logger: silentLogger() }) : await spawnAsd(dir));
    }
    const manager = await AlbaManager.open({ store });
    const preset = singleNodePreset();
    await manager.createPreset(preset);
    // Fragment cache off: downloads measure the ASDs, not the client's memory.
    backend = await AlbaBackend.open({ manager, clusterSecret: secret, fragmentCacheBytes: 0 });
    for (const asd of asds) await backend.claimAsd({ host: "127.0.0.1", port: asd.port, nodeId: "bench-node" }, secret);
    await backend.refresh();
    dataFirst = await AlbaBackend.open({ manager, clusterSecret: secret, fragmentCacheBytes: 0, readStrategy: "data-first" });
    const backends = { all: backend, dataFirst };
    const objects = Array.from({ length: options.objectCount }, () => randomBytes(objectSizeBytes));
    const { k, m } = preset.policies[0]!;
    const raws: Array<Awaited<ReturnType<typeof rawRound>>> = [];
    const albaSequential: Array<Awaited<ReturnType<typeof albaRound>>> = [];
    const albaParallel: Array<Awaited<ReturnType<typeof albaRound>>> = [];
    for (let round = 0; round < options.rounds; round++) {
      raws.push(await rawRound(root, objects, options.dropCaches));
      albaSequential.push(await albaRound(backends, round, objects, 1, options.dropCaches));
      albaParallel.push(await albaRound(backends, round, objects, options.inFlight, options.dropCaches));
    }
    const pick = <T>(rows: T[], field: keyof T): number | undefined => {
      const values = rows.map((row) => row[field]).filter((value): value is T[keyof T] & number => typeof value === "number");
      return values.length === 0 ? undefined : median(values);
    };
    const scale = k / (k + m);
    const raw = { writeMBps: pick(raws, "writeMBps")!, writeFsyncEachObjectMBps: pick(raws, "writeFsyncEachObjectMBps")!, readWarmMBps: pick(raws, "readWarmMBps")!, readColdMBps: pick(raws, "readColdMBps") };
    const ratio = (value: number | undefined, reference: number | undefined): number | undefined =>
      value === undefined || reference === undefined ? undefined : Math.round((value / (reference * scale)) * 100) / 100;
    const summarise = (rows: Array<Awaited<ReturnType<typeof albaRound>>>) => {
      const uploadMBps = pick(rows, "uploadMBps")!;
      const downloadWarmMBps = pick(rows, "downloadWarmMBps")!;
      const downloadDataFirstWarmMBps = pick(rows, "downloadDataFirstWarmMBps")!;
      const downloadColdMBps = pick(rows, "downloadColdMBps");
      const downloadDataFirstColdMBps = pick(rows, "downloadDataFirstColdMBps");
      return {
        uploadMBps, downloadWarmMBps, downloadDataFirstWarmMBps, downloadColdMBps, downloadDataFirstColdMBps,
        uploadVsRawWriteTimesKOverKPlusM: ratio(uploadMBps, raw.writeMBps),
        uploadVsRawWriteFsyncEachObjectTimesKOverKPlusM: ratio(uploadMBps, raw.writeFsyncEachObjectMBps),
        downloadWarmVsRawReadWarmTimesKOverKPlusM: ratio(downloadWarmMBps, raw.readWarmMBps),
        downloadDataFirstWarmVsRawReadWarmTimesKOverKPlusM: ratio(downloadDataFirstWarmMBps, raw.readWarmMBps),
        downloadColdVsRawReadColdTimesKOverKPlusM: ratio(downloadColdMBps, raw.readColdMBps),
        downloadDataFirstColdVsRawReadColdTimesKOverKPlusM: ratio(downloadDataFirstColdMBps, raw.readColdMBps),
      };
    };
    const result = {
      benchmark: "alba-object",
      objectSizeBytes,
      objectCount: options.objectCount,
      rounds: options.rounds,
      preset: { policy: preset.policies[0], fragmentSizeMaxBytes: preset.fragmentSizeMaxBytes, checksum: preset.fragmentChecksum, compression: preset.compression },
      asdCount: asds.length,
      asdMode: options.inProcess ? "in-process (runAsd)" : "processes (asd-main.js)",
      cpuCount: os.cpus().length,
      dir: root,
      cachesDropped: raws.some((row) => row.readColdMBps !== undefined),
      raw,
      rawTimesKOverKPlusM: { writeMBps: Math.round(raw.writeMBps * scale), readWarmMBps: Math.round(raw.readWarmMBps * scale), readColdMBps: raw.readColdMBps === undefined ? undefined : Math.round(raw.readColdMBps * scale) },
      alba: { inFlight1: summarise(albaSequential), [`inFlight${options.inFlight}`]: summarise(albaParallel) },
      target: "alba ≥ 0.7 × raw × k/(k+m) (DESIGN.md §9)",
      statistics: backend.statistics(),
      runs: { raw: raws, albaInFlight1: albaSequential, albaParallel },
    };
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } finally {
    await backend?.close();
    await dataFirst?.close();
    for (const asd of asds) await asd.close();
    await store.close();
    await rm(root, { recursive: true, force: true });
  }
}

await main();
