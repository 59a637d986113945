// Front-door tests of the single-node platform: `ovs up` started as a process, driven by the `ovs` CLI,
// the REST API and NBD clients nobody here wrote (qemu-img, qemu-io, nbdinfo, nbdcopy, fio). A missing
// tool fails the test (Debian packages qemu-utils, libnbd-bin, fio; .ci/run installs them).

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash, randomBytes } from "node:crypto";
import fsp from "node:fs/promises";
import path from "node:path";
import { RunningNode, expectOk, runTool, tempDir } from "./platform.js";
import { RawClient } from "../src/frontend/nbd/test-support.js";
import { NBD_CMD_READ, NBD_EINVAL, NBD_CMD_WRITE } from "../src/frontend/nbd/protocol.js";

const MiB = 1024 * 1024;
let node: RunningNode;
let dataDir: string;
let scratch: string;

function sha256(data: Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

beforeAll(async () => {
  dataDir = await tempDir("ovs-platform-");
  scratch = await tempDir("ovs-scratch-");
  node = await RunningNode.start(dataDir);
});

afterAll(async () => {
  await node?.stop();
  await fsp.rm(dataDir, { recursive: true, force: true });
  await fsp.rm(scratch, { recursive: true, force: true });
});

describe("ovs CLI and REST API", () => {
  it("creates, lists, shows, grows and deletes a vDisk", async () => {
    expectOk(await node.ovs(["vdisk", "create", "cli1", "--size", "100M"]), "create");
    const list = await node.ovs(["vdisk", "list"]);
    expectOk(list, "list");
    expect(list.stdout).toMatch(/cli1\s+100 MiB\s+0\s+vdisk-/);
    const info = await node.ovs(["vdisk", "info", "cli1", "--json"]);
    expectOk(info, "info");
    expect(JSON.parse(info.stdout)).toMatchObject({ name: "cli1", sizeBytes: 100 * MiB, connectionCount: 0 });
    expectOk(await node.ovs(["vdisk", "resize", "cli1", "--size", "200M"]), "resize");
    const size = await runTool("nbdinfo", ["--size", node.uri("cli1")]);
    expectOk(size, "nbdinfo --size");
    expect(size.stdout.trim()).toBe(String(200 * MiB));
    const shrink = await node.ovs(["vdisk", "resize", "cli1", "--size", "10M"]);
    expect(shrink.exitCode).toBe(1);
    expect(shrink.stderr).toMatch(/^ovs: shrinking is not supported/);
    expectOk(await node.ovs(["vdisk", "delete", "cli1"]), "delete");
    const gone = await node.ovs(["vdisk", "info", "cli1"]);
    expect(gone.exitCode).toBe(1);
    expect(gone.stderr).toBe("ovs: there is no vDisk named cli1.\n");
  });

  it("answers bad input with one clear sentence and a non-zero exit, changing nothing", async () => {
    for (const [args, pattern] of [
      [["vdisk", "create", "bad name", "--size", "1G"], /not a valid vDisk name/],
      [["vdisk", "create", "x1", "--size", "0"], /size must be a positive multiple of 512/],
      [["vdisk", "create", "x1", "--size", "1000"], /size must be a positive multiple of 512/],
      [["vdisk", "create", "x1", "--size", "65T"], /64 TiB/],
      [["vdisk", "resize", "nosuch", "--size", "1G"], /no vDisk named nosuch/],
      [["vdisk", "delete", "nosuch"], /no vDisk named nosuch/],
    ] as const) {
      const result = await node.ovs([...args]);
      expect(result.exitCode, args.join(" ")).toBe(1);
      expect(result.stderr).toMatch(pattern);
      expect(result.stderr).not.toMatch(/\n\s+at /); // no stack trace
    }
    const list = await node.ovs(["vdisk", "list", "--json"]);
    expect(JSON.parse(list.stdout)).toEqual([]);
    const unreachable = await runTool(process.execPath, [path.resolve("dist/src/cli/main.js"), "vdisk", "list"], 30_000).then((r) => r);
    void unreachable; // (default URL may or may not have a node; the next check pins the message)
    const refused = await runTool(process.execPath, [path.resolve("dist/src/cli/main.js"), "--api", "http://127.0.0.1:1", "vdisk", "list"]);
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toMatch(/^ovs: cannot reach the ovs API at http:\/\/127\.0\.0\.1:1 .*is `ovs up` running\?/);
  });

  it("validates API bodies by schema (400, stable code) and changes nothing", async () => {
    const post = (body: unknown) => node.fetch("/api/v1/vdisks", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    for (const body of [{}, { name: "a" }, { name: "a", size: "1G", extra: 1 }, { name: "a", size: -5 }, { name: "", size: "1G" }]) {
      const response = await post(body);
      expect(response.status, JSON.stringify(body)).toBe(400);
      const reply = (await response.json()) as { error: { code: string; message: string } };
      expect(reply.error.code).toBe("INVALID_ARGUMENT");
    }
    const duplicate1 = await post({ name: "dup", size: "1M" });
    expect(duplicate1.status).toBe(201);
    const duplicate2 = await post({ name: "dup", size: "1M" });
    expect(duplicate2.status).toBe(409);
    expect(((await duplicate2.json()) as { error: { code: string } }).error.code).toBe("ALREADY_EXISTS");
    expect((await node.fetch("/api/v1/vdisks/dup", { method: "DELETE" })).status).toBe(202); // a task (vdisk.delete)
  });

  it("refuses to delete a vDisk with a client connected, unless forced", async () => {
    expectOk(await node.ovs(["vdisk", "create", "busy", "--size", "16M"]), "create");
    const client = await RawClient.connect(node.nbdPort);
    try {
      await client.go("busy");
      const refused = await node.ovs(["vdisk", "delete", "busy"]);
      expect(refused.exitCode).toBe(1);
      expect(refused.stderr).toMatch(/has 1 NBD client connected/);
      expectOk(await node.ovs(["vdisk", "info", "busy"]), "info after refused delete");
      expectOk(await node.ovs(["vdisk", "delete", "busy", "--force"]), "delete --force");
      expect(await client.waitClosed()).toBe(true);
    } finally {
      client.close();
    }
    expect((await node.ovs(["vdisk", "info", "busy"])).exitCode).toBe(1);
  });
});

describe("NBD clients against a vDisk", () => {
  it("qemu-img converts a 256 MiB random image in and out unchanged", async () => {
    expectOk(await node.ovs(["vdisk", "create", "img", "--size", "256M"]), "create");
    const source = randomBytes(256 * MiB);
    const sourceFile = path.join(scratch, "source.raw");
    const outFile = path.join(scratch, "out.raw");
    await fsp.writeFile(sourceFile, source);
    expectOk(await runTool("qemu-img", ["convert", "-n", "-f", "raw", "-O", "raw", sourceFile, node.uri("img")], 300_000), "qemu-img convert in");
    expectOk(await runTool("qemu-img", ["convert", "-f", "raw", "-O", "raw", node.uri("img"), outFile], 300_000), "qemu-img convert out");
    expect(sha256(await fsp.readFile(outFile))).toBe(sha256(source));
    await fsp.rm(sourceFile);
    await fsp.rm(outFile);
  });

  it("qemu-io writes and reads patterns at unaligned offsets", async () => {
    expectOk(await node.ovs(["vdisk", "create", "io", "--size", "64M"]), "create");
    const commands = [
      "write -P 0xab 513 10000", "write -P 0xcd 1 1", "write -P 0x11 20479 2", "write -P 0x22 1048575 8193",
      "write -z 2000000 5000", "write -P 0x33 67108352 512",
      "read -P 0xab 513 10000", "read -P 0xcd 1 1", "read -P 0x11 20479 2", "read -P 0x22 1048575 8193",
      "read -P 0 2000000 5000", "read -P 0x33 67108352 512", "read -P 0 0 1",
      "discard 8388608 1048576", "read -P 0 8388608 1048576", "flush",
    ];
    const result = await runTool("qemu-io", ["-f", "raw", node.uri("io"), ...commands.flatMap((c) => ["-c", c])]);
    expectOk(result, "qemu-io");
    expect(result.stdout).not.toMatch(/Pattern verification failed|error/i);
    expect(result.stdout.match(/^read /gm)?.length).toBe(8);
  });

  it("nbdinfo shows the size, block sizes and flags", async () => {
    expectOk(await node.ovs(["vdisk", "create", "info1", "--size", "3G"]), "create");
    const result = await runTool("nbdinfo", ["--json", node.uri("info1")]);
    expectOk(result, "nbdinfo");
    const info = JSON.parse(result.stdout) as { exports: Array<Record<string, unknown>> };
    expect(info.exports[0]).toMatchObject({
      "export-name": "info1",
      "export-size": 3 * 1024 * MiB,
      is_read_only: false,
      can_flush: true,
      can_fua: true,
      can_trim: true,
      can_zero: true,
      can_multi_conn: true,
      block_size_minimum: 512,
      block_size_preferred: 4096,
    });
    const list = await runTool("nbdinfo", ["--list", "--json", `nbd://127.0.0.1:${node.nbdPort}`]);
    expectOk(list, "nbdinfo --list");
    expect((JSON.parse(list.stdout) as { exports: Array<{ "export-name": string }> }).exports.map((e) => e["export-name"])).toContain("info1");
  });

  it("reports a thin vDisk's allocation (base:allocation): nbdinfo --map, qemu-img map, and a sparse copy out", async () => {
    expectOk(await node.ovs(["vdisk", "create", "map1", "--size", "1G"]), "create");
    const written = await runTool("qemu-io", ["-f", "raw", "-d", "unmap", node.uri("map1"),
      "-c", "write -P 0x61 4M 1M", "-c", "write -P 0x62 20M 4k", "-c", "write -P 0x63 30M 64k", "-c", "discard 30M 32k", "-c", "write -z -u 4M 8k", "-c", "flush"]); // -u: zeroes without NO_HOLE, so they may become a hole
    expectOk(written, "qemu-io");
    const mapped = await runTool("nbdinfo", ["--map", "--json", node.uri("map1")]);
    expectOk(mapped, "nbdinfo --map");
    const extents = (JSON.parse(mapped.stdout) as Array<{ offset: number; length: number; type: number }>).map(({ offset, length, type }) => ({ offset, length, type }));
    expect(extents).toEqual([
      { offset: 0, length: 4 * MiB + 8192, type: 3 }, // never written, then the zeroed 8 KiB
      { offset: 4 * MiB + 8192, length: MiB - 8192, type: 0 },
      { offset: 5 * MiB, length: 15 * MiB, type: 3 },
      { offset: 20 * MiB, length: 4096, type: 0 },
      { offset: 20 * MiB + 4096, length: 10 * MiB - 4096 + 32 * 1024, type: 3 }, // up to 30 MiB, then the discarded 32 KiB
      { offset: 30 * MiB + 32 * 1024, length: 32 * 1024, type: 0 },
      { offset: 30 * MiB + 64 * 1024, length: 1024 * MiB - 30 * MiB - 64 * 1024, type: 3 },
    ]);
    const qemuMap = await runTool("qemu-img", ["map", "--output=json", "-f", "raw", node.uri("map1")]);
    expectOk(qemuMap, "qemu-img map");
    const dataBytes = (JSON.parse(qemuMap.stdout) as Array<{ length: number; data: boolean }>).filter((e) => e.data).reduce((sum, e) => sum + e.length, 0);
    expect(dataBytes).toBe(MiB - 8192 + 4096 + 32 * 1024);
    // qemu-img skips the holes when it copies out: the file is sparse, and byte for byte what was written.
    const outFile = path.join(scratch, "map1.raw");
    expectOk(await runTool("qemu-img", ["convert", "-f", "raw", "-O", "raw", node.uri("map1"), outFile], 120_000), "qemu-img convert out");
    const out = await fsp.readFile(outFile);
    const expected = Buffer.alloc(1024 * MiB);
    expected.fill(0x61, 4 * MiB + 8192, 5 * MiB);
    expected.fill(0x62, 20 * MiB, 20 * MiB + 4096);
    expected.fill(0x63, 30 * MiB + 32 * 1024, 30 * MiB + 64 * 1024);
    expect(sha256(out)).toBe(sha256(expected));
    expect((await fsp.stat(outFile)).blocks * 512).toBeLessThan(16 * MiB);
    await fsp.rm(outFile);
  });

  it("fio random writes with verify=crc32c pass", async () => {
    expectOk(await node.ovs(["vdisk", "create", "fio1", "--size", "128M"]), "create");
    const result = await runTool("fio", [
      "--name=verify", "--ioengine=nbd", `--uri=${node.uri("fio1")}`, "--rw=randwrite", "--bs=4k", "--iodepth=32",
      "--size=96m", "--verify=crc32c", "--do_verify=1", "--verify_fatal=1", "--verify_state_save=0", "--output-format=json",
    ], 300_000);
    expectOk(result, "fio");
    const report = JSON.parse(result.stdout.slice(result.stdout.indexOf("{"))) as { jobs: Array<{ error: number; write: { total_ios: number }; read: { total_ios: number } }> };
    expect(report.jobs[0]!.error).toBe(0);
    expect(report.jobs[0]!.write.total_ios).toBe(24576);
    expect(report.jobs[0]!.read.total_ios).toBe(24576);
  });

  it("answers malformed traffic with errors or a closed connection and keeps serving others", async () => {
    expectOk(await node.ovs(["vdisk", "create", "fuzz", "--size", "8M"]), "create");
    const good = await RawClient.connect(node.nbdPort);
    await good.go("fuzz");
    // Out of range read → EINVAL; oversized read → EINVAL; connection stays usable.
    const bad = await RawClient.connect(node.nbdPort);
    await bad.go("fuzz");
    bad.sendRequest({ type: NBD_CMD_READ, offsetBytes: 8 * MiB, lengthBytes: 4096 });
    expect((await bad.readReply()).error).toBe(NBD_EINVAL);
    bad.sendRequest({ type: NBD_CMD_READ, offsetBytes: 0, lengthBytes: 64 * MiB });
    expect((await bad.readReply()).error).toBe(NBD_EINVAL);
    // Bad magic → closed.
    bad.send(Buffer.alloc(28, 0x41));
    expect(await bad.waitClosed()).toBe(true);
    // Truncated request → closed when the client goes away, nothing else disturbed.
    const truncated = await RawClient.connect(node.nbdPort);
    await truncated.go("fuzz");
    truncated.send(Buffer.from([0x25, 0x60, 0x95, 0x13, 0, 0]));
    truncated.close();
    // Garbage instead of a handshake.
    const garbage = await RawClient.connect(node.nbdPort);
    garbage.send(randomBytes(200));
    expect(await garbage.waitClosed()).toBe(true);
    // The good connection still writes and reads.
    const payload = randomBytes(4096);
    good.sendRequest({ type: NBD_CMD_WRITE, offsetBytes: 4096, lengthBytes: 4096 }, payload);
    expect((await good.readReply()).error).toBe(0);
    good.sendRequest({ type: NBD_CMD_READ, offsetBytes: 4096, lengthBytes: 4096 });
    const reply = await good.readReply(4096);
    expect(reply.error).toBe(0);
    expect(reply.data.equals(payload)).toBe(true);
    good.close();
  });
});

describe("crash safety through the front door", () => {
  it("returns every flushed byte after kill -9 and a restart", async () => {
    const dir = await tempDir("ovs-crash-");
    let crashNode = await RunningNode.start(dir);
    try {
      expectOk(await crashNode.ovs(["vdisk", "create", "crash", "--size", "64M"]), "create");
      const image = randomBytes(48 * MiB);
      const imageFile = path.join(dir, "image.raw");
      await fsp.writeFile(imageFile, image);
      // nbdcopy flushes at the end; qemu-io's flush makes the last pattern durable too.
      expectOk(await runTool("nbdcopy", [imageFile, crashNode.uri("crash")], 120_000), "nbdcopy");
      expectOk(await runTool("qemu-io", ["-f", "raw", crashNode.uri("crash"), "-c", "write -P 0x5a 50331648 4194304", "-c", "flush"]), "qemu-io write+flush");
      // Unflushed writes in flight at the kill may be lost, but must never corrupt what was flushed.
      const writer = runTool("fio", [
        "--name=noise", "--ioengine=nbd", `--uri=${crashNode.uri("crash")}`, "--rw=randwrite", "--bs=4k", "--iodepth=16",
        "--offset=56m", "--size=8m", "--time_based", "--runtime=30", "--verify_state_save=0",
      ], 60_000);
      await new Promise((resolve) => setTimeout(resolve, 1500));
      const ports = { nbd: crashNode.nbdPort, api: crashNode.apiPort };
      expect(await crashNode.stop("SIGKILL")).toBe(null);
      await writer; // fio fails when its server dies: expected
      crashNode = await RunningNode.start(dir, ports);
      const outFile = path.join(dir, "out.raw");
      expectOk(await runTool("qemu-img", ["convert", "-f", "raw", "-O", "raw", crashNode.uri("crash"), outFile], 120_000), "qemu-img convert out");
      const out = await fsp.readFile(outFile);
      expect(sha256(out.subarray(0, 48 * MiB))).toBe(sha256(image));
      expect(out.subarray(48 * MiB, 52 * MiB).equals(Buffer.alloc(4 * MiB, 0x5a))).toBe(true);
      expect(out.subarray(52 * MiB, 56 * MiB).equals(Buffer.alloc(4 * MiB))).toBe(true);
    } finally {
      await crashNode.stop();
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });

  it("stops cleanly on SIGTERM and serves the same data after a restart", async () => {
    const dir = await tempDir("ovs-restart-");
    let restartNode = await RunningNode.start(dir);
    try {
      expectOk(await restartNode.ovs(["vdisk", "create", "r1", "--size", "16M"]), "create");
      expectOk(await runTool("qemu-io", ["-f", "raw", restartNode.uri("r1"), "-c", "write -P 0x77 12345 1000000"]), "qemu-io write");
      expect(await restartNode.stop("SIGTERM")).toBe(0);
      expect(restartNode.output).toMatch(/stopped\./);
      restartNode = await RunningNode.start(dir);
      expectOk(await runTool("qemu-io", ["-f", "raw", restartNode.uri("r1"), "-c", "read -P 0x77 12345 1000000"]), "qemu-io read");
    } finally {
      await restartNode.stop();
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });
});
