// The NBD server driven through the front door by clients nobody here wrote: nbdinfo, qemu-io,
// nbdcopy and fio (STYLE.md, "tests through the front door"). A missing tool fails the test.
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { runTool, startTestServer, type TestServer } from "./test-support.js";

const GiB = 1 << 30;
const MiB = 1 << 20;

let t: TestServer;
beforeEach(async () => {
  t = await startTestServer([
    { name: "disk", sizeBytes: GiB, description: "in-memory test disk" },
    { name: "ro", sizeBytes: 16 * MiB, readOnly: true, flushSemanticsAcrossConnections: false },
  ]);
});
afterEach(async () => {
  await t.server.close();
  expect(t.server.connectionCount).toBe(0);
  for (const e of t.exports) expect(e.attachedCount).toBe(0);
});

function expectSuccess(result: { exitCode: number | null; stdout: string; stderr: string }): void {
  expect(result.exitCode, `stdout: ${result.stdout}\nstderr: ${result.stderr}`).toBe(0);
}

describe("nbdinfo", () => {
  test("--json shows size, block sizes and flags of a writable export", async () => {
    const result = await runTool("nbdinfo", ["--json", t.uri("disk")]);
    expectSuccess(result);
    const info = JSON.parse(result.stdout) as { protocol: string; exports: Array<Record<string, unknown>> };
    expect(info.protocol).toBe("newstyle-fixed");
    expect(info.exports[0]).toMatchObject({
      "export-name": "disk", description: "in-memory test disk", "export-size": GiB,
      block_size_minimum: 512, block_size_preferred: 4096, block_size_maximum: 32 * MiB,
      is_read_only: false, can_flush: true, can_fua: true, can_trim: true, can_zero: true, can_multi_conn: true,
    });
  });

  test("--json shows a read-only export without multi-conn", async () => {
    const result = await runTool("nbdinfo", ["--json", t.uri("ro")]);
    expectSuccess(result);
    const info = JSON.parse(result.stdout) as { exports: Array<Record<string, unknown>> };
    expect(info.exports[0]).toMatchObject({ "export-size": 16 * MiB, is_read_only: true, can_multi_conn: false, can_trim: false, can_zero: false });
  });

  test("--list names every export", async () => {
    const result = await runTool("nbdinfo", ["--list", "--json", `nbd://127.0.0.1:${t.port}`]);
    expectSuccess(result);
    const info = JSON.parse(result.stdout) as { exports: Array<Record<string, unknown>> };
    expect(info.exports.map((e) => e["export-name"]).sort()).toEqual(["disk", "ro"]);
  });
});

describe("qemu-io", () => {
  const qemuIo = (name: string, ...commands: string[]) =>
    runTool("qemu-io", ["-f", "raw", "-d", "unmap", t.uri(name), ...commands.flatMap((c) => ["-c", c])]);

  test("writes and reads back patterns at unaligned offsets", async () => {
    const result = await qemuIo("disk",
      "write -P 0xab 513 10000", "read -P 0xab 513 10000",
      "write -P 0x5c 1073731000 10000", "read -P 0x5c 1073731000 10000",
      "read -P 0 0 513", "read -P 0 10513 3000");
    expectSuccess(result);
    expect(result.stdout).not.toMatch(/Pattern verification failed|error/i);
    const bytes = await t.exports[0]!.read(512, 10002);
    expect(bytes[0]).toBe(0);
    expect(bytes.subarray(1, 10001).every((b) => b === 0xab)).toBe(true);
    expect(bytes[10001]).toBe(0);
  });

  test("discard, write zeroes, flush and FUA reach the export", async () => {
    const disk = t.exports[0]!;
    const result = await qemuIo("disk",
      "write -P 0x11 0 1M", "write -z 4096 8192", "read -P 0 4096 8192", "read -P 0x11 0 4096",
      "write -f -P 0x22 65536 4096", "discard 524288 524288", "flush");
    expectSuccess(result);
    expect(result.stdout).not.toMatch(/Pattern verification failed|error/i);
    expect(disk.writeZeroesCount).toBeGreaterThanOrEqual(1);
    expect(disk.trimCount).toBeGreaterThanOrEqual(1);
    expect(disk.fuaCount).toBeGreaterThanOrEqual(1);
    expect(disk.flushCount).toBeGreaterThanOrEqual(1);
    expect((await disk.read(524288, 524288)).every((b) => b === 0)).toBe(true);
  });

  test("a write to a read-only export fails and changes nothing", async () => {
    const result = await runTool("qemu-io", ["-f", "raw", "-r", t.uri("ro"), "-c", "read -P 0 0 64k"]);
    expectSuccess(result);
    const write = await runTool("qemu-io", ["-f", "raw", t.uri("ro"), "-c", "write -P 1 0 4k"]);
    expect(`${write.stdout}${write.stderr}`).toMatch(/read-only|Operation not permitted|Permission denied/i);
    expect(t.exports[1]!.allocatedBlockCount).toBe(0);
  });
});

test("nbdcopy copies a file in and out unchanged", async () => {
  const dir = await mkdtemp(join(tmpdir(), "ovs-nbd-"));
  try {
    const source = randomBytes(8 * MiB + 4096);
    await writeFile(join(dir, "in.img"), source);
    expectSuccess(await runTool("nbdcopy", [join(dir, "in.img"), t.uri("disk")]));
    const back = await t.exports[0]!.read(0, source.length);
    expect(back.equals(source)).toBe(true);
    expectSuccess(await runTool("truncate", ["-s", String(source.length), join(dir, "out.img")]));
    // The copy out covers the whole 1 GiB export; compare the prefix we wrote.
    expectSuccess(await runTool("qemu-img", ["convert", "-f", "raw", "-O", "raw", t.uri("disk"), join(dir, "out.img")]));
    const out = await readFile(join(dir, "out.img"));
    expect(out.subarray(0, source.length).equals(source)).toBe(true);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("fio random writes at queue depth 32 verify with crc32c", async () => {
  const result = await runTool("fio", [
    "--name=verify", "--ioengine=nbd", `--uri=${t.uri("disk")}`, "--rw=randwrite", "--bs=4k", "--iodepth=32",
    "--size=64m", "--verify=crc32c", "--do_verify=1", "--verify_fatal=1", "--verify_state_save=0", "--randrepeat=0", "--output-format=json",
  ], 120_000);
  expectSuccess(result);
  const report = JSON.parse(result.stdout.slice(result.stdout.indexOf("{"))) as { jobs: Array<{ error: number; write: { total_ios: number }; read: { total_ios: number } }> };
  expect(report.jobs[0]!.error).toBe(0);
  expect(report.jobs[0]!.write.total_ios).toBe(16384);
  expect(report.jobs[0]!.read.total_ios).toBe(16384);
});

test("several clients at once on different exports", async () => {
  const results = await Promise.all([
    runTool("qemu-io", ["-f", "raw", t.uri("disk"), "-c", "write -P 0x31 0 4M", "-c", "read -P 0x31 0 4M"]),
    runTool("qemu-io", ["-f", "raw", t.uri("disk"), "-c", "write -P 0x32 8M 4M", "-c", "read -P 0x32 8M 4M"]),
    runTool("qemu-io", ["-f", "raw", "-r", t.uri("ro"), "-c", "read -P 0 0 4M"]),
    runTool("nbdinfo", ["--size", t.uri("disk")]),
  ]);
  for (const result of results) expectSuccess(result);
  expect(results[3]!.stdout.trim()).toBe(String(GiB));
});

describe("structured replies and base:allocation", () => {
  async function writeTwoRanges(): Promise<void> {
    const disk = t.exports[0]!;
    await disk.write(1 * MiB, Buffer.alloc(64 * 1024, 7), false);
    await disk.write(5 * MiB + 4096, Buffer.alloc(4096, 9), false);
  }

  test("nbdinfo negotiates them and --map shows written blocks as data and the rest as zero holes", async () => {
    await writeTwoRanges();
    const info = await runTool("nbdinfo", ["--json", t.uri("disk")]);
    expectSuccess(info);
    const parsed = JSON.parse(info.stdout) as { structured: boolean; exports: Array<Record<string, unknown>> };
    expect(parsed.structured).toBe(true);
    expect(parsed.exports[0]).toMatchObject({ contexts: ["base:allocation"], can_df: true });
    const result = await runTool("nbdinfo", ["--map", "--json", t.uri("disk")]);
    expectSuccess(result);
    const map = (JSON.parse(result.stdout) as Array<{ offset: number; length: number; type: number }>).map(({ offset, length, type }) => ({ offset, length, type }));
    expect(map).toEqual([
      { offset: 0, length: 1 * MiB, type: 3 },
      { offset: 1 * MiB, length: 64 * 1024, type: 0 },
      { offset: 1 * MiB + 64 * 1024, length: 4 * MiB + 4096 - 64 * 1024, type: 3 },
      { offset: 5 * MiB + 4096, length: 4096, type: 0 },
      { offset: 5 * MiB + 8192, length: GiB - 5 * MiB - 8192, type: 3 },
    ]);
  });

  test("qemu-img map sees the same extents, and a trimmed range turns back into a hole", async () => {
    await writeTwoRanges();
    expectSuccess(await runTool("qemu-io", ["-f", "raw", "-d", "unmap", t.uri("disk"), "-c", "discard 5M 1M"]));
    const result = await runTool("qemu-img", ["map", "--output=json", "-f", "raw", t.uri("disk")]);
    expectSuccess(result);
    const map = (JSON.parse(result.stdout) as Array<{ start: number; length: number; zero: boolean; data: boolean }>).map(({ start, length, zero, data }) => ({ start, length, zero, data }));
    expect(map).toEqual([
      { start: 0, length: 1 * MiB, zero: true, data: false },
      { start: 1 * MiB, length: 64 * 1024, zero: false, data: true },
      { start: 1 * MiB + 64 * 1024, length: GiB - 1 * MiB - 64 * 1024, zero: true, data: false },
    ]);
  });

  test("nbdcopy of a sparse export writes only its data and copies it unchanged", async () => {
    await writeTwoRanges();
    const dir = await mkdtemp(join(tmpdir(), "ovs-nbd-"));
    try {
      const out = join(dir, "out.img");
      expectSuccess(await runTool("nbdcopy", [t.uri("disk"), out]));
      const bytes = await readFile(out);
      expect(bytes.length).toBe(GiB);
      expect(bytes.equals(await t.exports[0]!.read(0, GiB))).toBe(true);
      const du = await runTool("du", ["--block-size=1", out]);
      expectSuccess(du);
      expect(Number(du.stdout.split(/\s/)[0])).toBeLessThan(8 * MiB); // holes skipped, not 1 GiB of zeroes written
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
