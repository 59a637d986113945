// Erasure-coding benchmark (run by hand, not in CI): Reed-Solomon encode and decode GB/s per core of our
// ISA-L addon called from Node, against ISA-L called directly from C (bench/erasure-coding-reference.c,
// compiled here with gcc against Debian's libisal-dev) in the same run, for 4+2 and 8+3 with 1 MiB chunks.
//
// Method (as in ../shared/reference/datapath-libs.md): GB/s per core = 10^9 bytes of object data (the k
// data fragments) per CPU-second of the process (process.cpuUsage user+system; CLOCK_PROCESS_CPUTIME_ID
// in C). Each repetition runs ≥ --min-ms of CPU; C and Node take turns per round so that drift on this
// shared machine hits both alike; figures are medians over all repetitions of all rounds. Encode: m
// parity fragments from k. Decode: the first m data fragments are lost and rebuilt from the k survivors,
// building the decode matrix on every call (both sides). Also reported, for Node only: the production
// path through ErasureCoder (decode tables cached per loss pattern). The target is ours ≥ 0.8× C.
//
// Usage: npm run build && node dist/bench/erasure-coding.js [--rounds 3] [--reps 5] [--min-ms 250]
//        [--chunk-bytes 1048576]
// Prints JSON on stdout.

import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ErasureCoder } from "../src/alba/coding/erasure.js";
import { isal } from "../src/base/isal.js";
import { median } from "./stats.js";

interface Options {
  rounds: number;
  reps: number;
  minMs: number;
  chunkBytes: number;
}

function parseArgs(): Options {
  const args = process.argv.slice(2);
  const value = (name: string, fallback: number): number => {
    const index = args.indexOf(name);
    const parsed = index >= 0 ? Number(args[index + 1]) : fallback;
    if (!Number.isInteger(parsed) || parsed <= 0) throw new Error(`${name} needs a positive integer`);
    return parsed;
  };
  return { rounds: value("--rounds", 3), reps: value("--reps", 5), minMs: value("--min-ms", 250), chunkBytes: value("--chunk-bytes", 1_048_576) };
}

const codes = [
  { k: 4, m: 2 },
  { k: 8, m: 3 },
] as const;
const targetRatio = 0.8;

function round3(value: number): number {
  return Math.round(value * 1000) / 1000;
}

function cpuSeconds(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}

/** Runs `operation` in batches until minMs of CPU has passed; returns GB/s per core of `bytesPerCall`. */
function measure(operation: () => void, bytesPerCall: number, minMs: number): number {
  let calls = 0;
  const start = cpuSeconds();
  let elapsed: number;
  do {
    for (let i = 0; i < 16; i++) operation();
    calls += 16;
    elapsed = cpuSeconds() - start;
  } while (elapsed * 1000 < minMs);
  return (bytesPerCall * calls) / elapsed / 1e9;
}

function findUp(relative: string): string {
  let directory = path.dirname(fileURLToPath(import.meta.url));
  for (let depth = 0; depth < 5; depth++) {
    const candidate = path.join(directory, relative);
    if (fs.existsSync(candidate)) return candidate;
    directory = path.dirname(directory);
  }
  throw new Error(`cannot find ${relative} above ${fileURLToPath(import.meta.url)}`);
}

function compileReference(): string {
  const source = findUp(path.join("bench", "erasure-coding-reference.c"));
  const directory = fs.mkdtempSync(path.join(os.tmpdir(), "ovs-ec-bench-"));
  const binary = path.join(directory, "erasure-coding-reference");
  const result = spawnSync("gcc", ["-O2", "-std=gnu11", "-Wall", "-o", binary, source, "-lisal"], { encoding: "utf8" });
  if (result.status !== 0) {
    throw new Error(`gcc failed (is Debian's libisal-dev installed? apt-get install -y libisal-dev):\n${result.stderr}`);
  }
  return binary;
}

interface Samples {
  encodeGBps: number[];
  decodeGBps: number[];
}

function runReference(binary: string, k: number, m: number, options: Options): Samples {
  const result = spawnSync(binary, [String(k), String(m), String(options.chunkBytes), String(options.reps), String(options.minMs)], {
    encoding: "utf8",
  });
  if (result.status !== 0) throw new Error(`the C reference failed: ${result.stderr}`);
  const parsed = JSON.parse(result.stdout) as Samples;
  return { encodeGBps: parsed.encodeGBps, decodeGBps: parsed.decodeGBps };
}

function xorshiftFill(bytes: Buffer, seed: number): void {
  let state = seed >>> 0;
  for (let i = 0; i < bytes.length; i++) {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    bytes[i] = state & 0xff;
  }
}

function runNode(k: number, m: number, options: Options): Samples & { coderEncodeGBps: number[]; coderDecodeCachedGBps: number[] } {
  const addon = isal();
  const length = Math.ceil(options.chunkBytes / k);
  const dataBytes = length * k;
  const fragments = Array.from({ length: k + m }, (_, index) => {
    const bytes = Buffer.alloc(length);
    xorshiftFill(bytes, 0x9e3779b9 + index);
    return bytes;
  });
  const data = fragments.slice(0, k);
  const parity = fragments.slice(k);
  const outputs = Array.from({ length: m }, () => Buffer.alloc(length));

  const encodeMatrix = new Uint8Array((k + m) * k);
  addon.genCauchyMatrix(k, m, encodeMatrix);
  const tables = new Uint8Array(32 * k * m);
  addon.initTables(k, m, encodeMatrix.subarray(k * k), tables);
  const survivors = fragments.slice(m, m + k);
  const sourceIndices = Uint8Array.from({ length: k }, (_, index) => m + index);
  const targetIndices = Uint8Array.from({ length: m }, (_, index) => index);
  const rows = new Uint8Array(m * k);
  const decodeTables = new Uint8Array(32 * k * m);
  const encode = (): void => addon.encodeData(k, m, tables, data, parity, length);
  const decode = (): void => {
    addon.decodeMatrix(k, m, encodeMatrix, sourceIndices, targetIndices, rows);
    addon.initTables(k, m, rows, decodeTables);
    addon.encodeData(k, m, decodeTables, survivors, outputs, length);
  };

  const coder = new ErasureCoder(k, m);
  const slots: Array<Buffer | undefined> = fragments.map((bytes, index) => (index < m ? undefined : bytes));
  const lost = Array.from(targetIndices);
  const coderEncode = (): void => coder.encode(data, parity, length);
  const coderDecode = (): void => coder.reconstruct(slots, lost, outputs, length);

  // Correctness first, against the coder's own parity.
  encode();
  decode();
  for (let index = 0; index < m; index++) {
    if (!outputs[index]!.equals(fragments[index]!)) throw new Error(`Node decode mismatch on fragment ${index}`);
  }
  outputs.forEach((bytes) => bytes.fill(0));
  coderDecode();
  for (let index = 0; index < m; index++) {
    if (!outputs[index]!.equals(fragments[index]!)) throw new Error(`ErasureCoder decode mismatch on fragment ${index}`);
  }

  const samples = { encodeGBps: [] as number[], decodeGBps: [] as number[], coderEncodeGBps: [] as number[], coderDecodeCachedGBps: [] as number[] };
  for (let rep = 0; rep < options.reps; rep++) {
    samples.encodeGBps.push(measure(encode, dataBytes, options.minMs));
    samples.decodeGBps.push(measure(decode, dataBytes, options.minMs));
  }
  for (let rep = 0; rep < Math.max(1, options.reps >> 1); rep++) {
    samples.coderEncodeGBps.push(measure(coderEncode, dataBytes, options.minMs));
    samples.coderDecodeCachedGBps.push(measure(coderDecode, dataBytes, options.minMs));
  }
  return samples;
}

function main(): void {
  const options = parseArgs();
  const binary = compileReference();
  const collected = codes.map(() => ({
    c: { encodeGBps: [] as number[], decodeGBps: [] as number[] },
    node: { encodeGBps: [] as number[], decodeGBps: [] as number[], coderEncodeGBps: [] as number[], coderDecodeCachedGBps: [] as number[] },
  }));
  for (let round = 0; round < options.rounds; round++) {
    codes.forEach(({ k, m }, index) => {
      const entry = collected[index]!;
      const first = round % 2 === 0 ? "c" : "node";
      for (const side of first === "c" ? (["c", "node"] as const) : (["node", "c"] as const)) {
        if (side === "c") {
          const samples = runReference(binary, k, m, options);
          entry.c.encodeGBps.push(...samples.encodeGBps);
          entry.c.decodeGBps.push(...samples.decodeGBps);
        } else {
          const samples = runNode(k, m, options);
          entry.node.encodeGBps.push(...samples.encodeGBps);
          entry.node.decodeGBps.push(...samples.decodeGBps);
          entry.node.coderEncodeGBps.push(...samples.coderEncodeGBps);
          entry.node.coderDecodeCachedGBps.push(...samples.coderDecodeCachedGBps);
        }
      }
    });
  }
  fs.rmSync(path.dirname(binary), { recursive: true, force: true });

  const results = codes.map(({ k, m }, index) => {
    const { c, node } = collected[index]!;
    const encodeNode = median(node.encodeGBps);
    const encodeC = median(c.encodeGBps);
    const decodeNode = median(node.decodeGBps);
    const decodeC = median(c.decodeGBps);
    return {
      code: `${k}+${m}`,
      encodeNodeGBps: round3(encodeNode),
      encodeCGBps: round3(encodeC),
      encodeRatio: round3(encodeNode / encodeC),
      decodeNodeGBps: round3(decodeNode),
      decodeCGBps: round3(decodeC),
      decodeRatio: round3(decodeNode / decodeC),
      coderEncodeNodeGBps: round3(median(node.coderEncodeGBps)),
      coderDecodeCachedNodeGBps: round3(median(node.coderDecodeCachedGBps)),
      samples: { c, node },
    };
  });
  const meetsTarget = results.every((result) => result.encodeRatio >= targetRatio && result.decodeRatio >= targetRatio);
  console.log(
    JSON.stringify(
      {
        benchmark: "erasure-coding",
        unit: "GB/s per core: 1e9 bytes of object data (k data fragments) per CPU-second of the process",
        chunkBytes: options.chunkBytes,
        rounds: options.rounds,
        repetitionsPerRound: options.reps,
        minMsPerRepetition: options.minMs,
        node: process.version,
        cpuCount: os.cpus().length,
        loadAverage: os.loadavg().map(round3),
        targetRatio,
        meetsTarget,
        results,
      },
      null,
      2,
    ),
  );
}

main();
