import { afterEach, describe, expect, it } from "vitest";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { crc32c, silentLogger } from "../base/index.js";
import { Uploader } from "./uploader.js";
import { MemoryBackend } from "./testing/memory-backend.js";

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await fsp.rm(dir, { recursive: true, force: true });
});

/** The names `backend` stores, in the order its puts complete. */
function recordPuts(backend: MemoryBackend): string[] {
  const stored: string[] = [];
  const put = backend.put.bind(backend);
  backend.put = async (namespace, name, data) => {
    await put(namespace, name, data);
    stored.push(name);
  };
  return stored;
}

describe("Uploader", () => {
  it("never stores a SCO whose file does not match its CRC yet (regression: a retry read a half-written file)", async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), "ovs-upl-"));
    dirs.push(dir);
    const backend = new MemoryBackend();
    await backend.createNamespace("ns");
    const content = randomBytes(64 * 1024);
    const file = path.join(dir, "00_00000001_00");
    await fsp.writeFile(file, content.subarray(0, 4096)); // still being written
    const uploader = new Uploader({ backend, namespace: "ns", log: silentLogger(), onTlogStored: async () => undefined });
    uploader.enqueueSco({ scoNumber: 1, file, expectedCrc: crc32c(content), ready: Promise.resolve() });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await backend.exists("ns", "00_00000001_00")).toBe(false);
    await fsp.writeFile(file, content); // the write completes
    await uploader.idle();
    expect((await backend.get("ns", "00_00000001_00")).equals(content)).toBe(true);
    await uploader.stop();
  });

  it("stores a TLog only after the SCOs it names, while later SCOs go ahead", async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), "ovs-upl-"));
    dirs.push(dir);
    const backend = new MemoryBackend();
    await backend.createNamespace("ns");
    const tlogFile = path.join(dir, "tlog_a");
    await fsp.writeFile(tlogFile, "tlog");
    const stored = recordPuts(backend);
    let releaseFirst!: () => void;
    const first = new Promise<void>((resolve) => (releaseFirst = resolve));
    const tlogsStored: number[] = [];
    const uploader = new Uploader({ backend, namespace: "ns", log: silentLogger(), onTlogStored: async (seq) => void tlogsStored.push(seq) });
    const data = randomBytes(4096);
    uploader.enqueueSco({ scoNumber: 1, file: "/nonexistent", expectedCrc: crc32c(data), ready: first, data });
    uploader.enqueueTlog(1, "tlog_a", tlogFile, [1]);
    uploader.enqueueSco({ scoNumber: 2, file: "/nonexistent", expectedCrc: crc32c(data), ready: Promise.resolve(), data });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(stored).toEqual(["00_00000002_00"]); // the later SCO did not wait; the TLog did
    releaseFirst();
    await uploader.idle();
    expect(stored).toEqual(["00_00000002_00", "00_00000001_00", "tlog_a"]);
    expect(tlogsStored).toEqual([1]);
    await uploader.stop();
  });

  it("stores a TLog once the SCOs it names are stored, without waiting for other SCOs queued before it", async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), "ovs-upl-"));
    dirs.push(dir);
    const backend = new MemoryBackend();
    await backend.createNamespace("ns");
    const stored = recordPuts(backend);
    let releaseNext!: () => void;
    const next = new Promise<void>((resolve) => (releaseNext = resolve));
    const uploader = new Uploader({ backend, namespace: "ns", log: silentLogger(), onTlogStored: async () => undefined });
    const data = randomBytes(4096);
    uploader.enqueueSco({ scoNumber: 1, file: "/nonexistent", expectedCrc: crc32c(data), ready: Promise.resolve(), data });
    // SCO 2 belongs to the next TLog, still being filled when TLog 1 is synced and queued.
    uploader.enqueueSco({ scoNumber: 2, file: "/nonexistent", expectedCrc: crc32c(data), ready: next, data });
    // The TLog's bytes from memory: the file is never read (it does not exist).
    const tlogBytes = randomBytes(256);
    uploader.enqueueTlog(1, "tlog_a", path.join(dir, "missing"), [1], tlogBytes);
    for (let i = 0; i < 50 && !stored.includes("tlog_a"); i++) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(stored).toEqual(["00_00000001_00", "tlog_a"]);
    expect((await backend.get("ns", "tlog_a")).equals(tlogBytes)).toBe(true);
    // A TLog naming a SCO still queued waits for it.
    const tlogFile = path.join(dir, "tlog_b");
    await fsp.writeFile(tlogFile, "from the file");
    uploader.enqueueTlog(2, "tlog_b", tlogFile, [2]);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(stored).toEqual(["00_00000001_00", "tlog_a"]);
    releaseNext();
    await uploader.idle();
    expect(stored).toEqual(["00_00000001_00", "tlog_a", "00_00000002_00", "tlog_b"]);
    expect((await backend.get("ns", "tlog_b")).toString()).toBe("from the file");
    await uploader.stop();
  });

  it("waits for an item's ready promise before storing it", async () => {
    const backend = new MemoryBackend();
    await backend.createNamespace("ns");
    const data = randomBytes(4096);
    let release!: () => void;
    const ready = new Promise<void>((resolve) => (release = resolve));
    const uploader = new Uploader({ backend, namespace: "ns", log: silentLogger(), onTlogStored: async () => undefined });
    uploader.enqueueSco({ scoNumber: 2, file: "/nonexistent", expectedCrc: crc32c(data), ready, data });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await backend.exists("ns", "00_00000002_00")).toBe(false);
    release();
    await uploader.idle();
    expect(await backend.exists("ns", "00_00000002_00")).toBe(true);
    await uploader.stop();
  });

  it("puts the next TLog while a stored TLog's bookkeeping runs, calls it in order and retries it after a failure", async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), "ovs-upl-"));
    dirs.push(dir);
    const backend = new MemoryBackend();
    await backend.createNamespace("ns");
    for (const name of ["tlog_a", "tlog_b"]) await fsp.writeFile(path.join(dir, name), name);
    const calls: number[] = [];
    let failNext = true;
    let releaseBookkeeping!: () => void;
    const bookkeepingGate = new Promise<void>((resolve) => (releaseBookkeeping = resolve));
    const uploader = new Uploader({
      backend,
      namespace: "ns",
      log: silentLogger(),
      onTlogStored: async (seq) => {
        calls.push(seq);
        await bookkeepingGate;
        if (seq === 1 && failNext) {
          failNext = false;
          throw new Error("snapshots object write failed");
        }
      },
    });
    uploader.enqueueTlog(1, "tlog_a", path.join(dir, "tlog_a"), []);
    uploader.enqueueTlog(2, "tlog_b", path.join(dir, "tlog_b"), []);
    await new Promise((resolve) => setTimeout(resolve, 100));
    // Both TLogs are on the backend although the first one's bookkeeping has not finished.
    expect(await backend.exists("ns", "tlog_b")).toBe(true);
    expect(calls).toEqual([1, 2]);
    let idle = false;
    const idlePromise = uploader.idle().then(() => (idle = true));
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(idle).toBe(false); // bookkeeping still pending counts
    releaseBookkeeping();
    await idlePromise;
    expect(calls).toEqual([1, 2, 1]); // the failed one was called again
    expect(uploader.stats().failures).toBe(1);
    await uploader.stop();
  });

  it("releases a SCO's data once its put returned, or at once when it does not keep it", async () => {
    const backend = new MemoryBackend();
    await backend.createNamespace("ns");
    const data = randomBytes(4096);
    let release!: () => void;
    const ready = new Promise<void>((resolve) => (release = resolve));
    const released: number[] = [];
    const uploader = new Uploader({ backend, namespace: "ns", log: silentLogger(), onTlogStored: async () => undefined });
    for (let scoNumber = 1; scoNumber <= 16; scoNumber++) {
      uploader.enqueueSco({ scoNumber, file: "/nonexistent", expectedCrc: crc32c(data), ready, data, onDataReleased: () => released.push(scoNumber) });
    }
    // 4 start at once (waiting for ready); the queue keeps data for 2 × uploadsInFlightMax more; the
    // others will re-read their file and release the data at once.
    expect(released).toEqual([13, 14, 15, 16]);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(released).toEqual([13, 14, 15, 16]); // nothing put yet: nothing else released
    release();
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(released.slice(4).sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    expect(await backend.exists("ns", "00_00000001_00")).toBe(true);
    await uploader.stop();
  });
});
