import { afterEach, describe, expect, it } from "vitest";
import fs from "node:fs";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { spawnSync } from "node:child_process";
import { isal } from "../base/isal.js";
import { DropBehind, ReadFdCache, dropCachedPages, preadAll } from "./file-io.js";

const openFdCount = (): number => fs.readdirSync("/proc/self/fd").length;
const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await fsp.rm(dir, { recursive: true, force: true });
});

describe("ReadFdCache", () => {
  it("never holds more than its limit plus the descriptors in use (regression: EMFILE under random reads)", async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), "ovs-fd-"));
    dirs.push(dir);
    for (let i = 0; i < 200; i++) await fsp.writeFile(path.join(dir, `f${i}`), Buffer.alloc(4096, i));
    const cache = new ReadFdCache(8);
    const before = openFdCount();
    for (let round = 0; round < 20; round++) {
      await Promise.all(
        Array.from({ length: 200 }, async (_, i) => {
          const handle = await cache.acquire(path.join(dir, `f${(i * 7 + round) % 200}`));
          expect(handle).toBeDefined();
          const data = Buffer.alloc(1);
          await preadAll(handle!.fd, data, 0, 1, 100);
          expect(data[0]).toBe((i * 7 + round) % 200);
          handle!.release();
        }),
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 50)); // closes are asynchronous
    expect(cache.cachedCount).toBeLessThanOrEqual(8);
    expect(openFdCount() - before).toBeLessThanOrEqual(8);
  });

  it("keeps an evicted descriptor usable until its reader releases it", async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), "ovs-fd-"));
    dirs.push(dir);
    await fsp.writeFile(path.join(dir, "a"), "aaaa");
    await fsp.writeFile(path.join(dir, "b"), "bbbb");
    const cache = new ReadFdCache(1);
    const a = (await cache.acquire(path.join(dir, "a")))!;
    const b = (await cache.acquire(path.join(dir, "b")))!; // evicts a, which is still held
    const data = Buffer.alloc(4);
    await preadAll(a.fd, data, 0, 4, 0);
    expect(data.toString()).toBe("aaaa");
    a.release();
    b.release();
    expect(await cache.acquire(path.join(dir, "missing"))).toBeUndefined();
  });
});

describe("preadAll and preadNoWait", () => {
  // File systems whose buffered reads honour RWF_NOWAIT (statfs magic numbers): ext4, xfs, btrfs.
  const nowaitFileSystems = new Set([0xef53, 0x58465342, 0x9123683e]);

  it("reads cached bytes at once, reports a cold read as would-block, and preadAll returns the right bytes either way", async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), "ovs-nowait-"));
    dirs.push(dir);
    const file = path.join(dir, "data");
    const content = Buffer.alloc(1 << 20);
    for (let i = 0; i < content.length; i += 4) content.writeUInt32LE((i * 2654435761) >>> 0, i);
    await fsp.writeFile(file, content);
    const writer = fs.openSync(file, "r+");
    fs.fsyncSync(writer); // dirty pages cannot be dropped from the cache below
    fs.closeSync(writer);
    const fd = fs.openSync(file, "r");
    try {
      const addon = isal();
      const page = Buffer.alloc(4096);
      const cached = addon.preadNoWait(fd, page, 0, 4096, 8192);
      if (nowaitFileSystems.has(fs.statfsSync(dir).type)) expect(cached).toBe(4096);
      if (cached === 4096) expect(page.equals(content.subarray(8192, 12288))).toBe(true);
      else expect(cached).toBe(-1);
      // Short at the end of the file; nothing past it.
      const tail = Buffer.alloc(4096);
      const atEnd = addon.preadNoWait(fd, tail, 0, 4096, content.length - 100);
      expect([100, -1]).toContain(atEnd);
      expect(addon.preadNoWait(fd, tail, 0, 4096, content.length)).toBe(0);

      // Drop the file from the page cache (dd's nocache is POSIX_FADV_DONTNEED): a non-blocking read
      // must not wait for the disk, and preadAll must still return the right bytes through the pool.
      const dropped = spawnSync("dd", [`if=${file}`, "iflag=nocache", "count=0", "status=none"]);
      expect(dropped.status).toBe(0);
      const cold = addon.preadNoWait(fd, page, 0, 4096, 512 * 1024);
      if (nowaitFileSystems.has(fs.statfsSync(dir).type)) expect(cold).toBe(-1);
      else expect([-1, 4096]).toContain(cold);
      const viaPool = Buffer.alloc(64 * 1024);
      await preadAll(fd, viaPool, 0, viaPool.length, 700 * 1024);
      expect(viaPool.equals(content.subarray(700 * 1024, 764 * 1024))).toBe(true);
      const small = Buffer.alloc(4096);
      await preadAll(fd, small, 0, 4096, 300 * 1024);
      expect(small.equals(content.subarray(300 * 1024, 304 * 1024))).toBe(true);
      await expect(preadAll(fd, Buffer.alloc(4096), 0, 4096, content.length - 100)).rejects.toMatchObject({ code: "IO_ERROR" });
    } finally {
      fs.closeSync(fd);
    }
  });

  it("refuses bad arguments and reports errno names", () => {
    const addon = isal();
    const buffer = Buffer.alloc(16);
    expect(() => addon.preadNoWait(-1, buffer, 0, 16, 0)).toThrow(RangeError);
    expect(() => addon.preadNoWait(0, buffer, 8, 16, 0)).toThrow(/exceeds the buffer/);
    expect(() => addon.preadNoWait(0, buffer, 0, 16, -5)).toThrow(/position/);
    expect(() => addon.preadNoWait(0, "x" as unknown as Buffer, 0, 1, 0)).toThrow(TypeError);
    try {
      addon.preadNoWait(1_000_000, buffer, 0, 16, 0); // far above any descriptor this process has open

      expect.unreachable("a closed descriptor must throw");
    } catch (error) {
      expect((error as NodeJS.ErrnoException).code).toBe("EBADF");
    }
  });
});

describe("DropBehind", () => {
  it("drops the page cache of the oldest files beyond its window and keeps the newest cached", async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), "ovs-drop-"));
    dirs.push(dir);
    const nowait = new Set([0xef53, 0x58465342, 0x9123683e]).has(fs.statfsSync(dir).type);
    const files: string[] = [];
    for (let i = 0; i < 4; i++) {
      const file = path.join(dir, `sco${i}`);
      const fd = fs.openSync(file, "w");
      fs.writeSync(fd, Buffer.alloc(1 << 20, i + 1));
      fs.fdatasyncSync(fd); // clean pages: only those can be dropped
      fs.closeSync(fd);
      files.push(file);
    }
    const cachedBytes = (file: string): number => {
      const fd = fs.openSync(file, "r");
      try {
        return isal().preadNoWait(fd, Buffer.alloc(4096), 0, 4096, 512 * 1024);
      } finally {
        fs.closeSync(fd);
      }
    };
    const window = new DropBehind(2.5 * (1 << 20));
    await window.add(files[0]!, 1 << 20);
    await window.add(files[1]!, 1 << 20);
    expect(window.stats()).toEqual({ droppedFiles: 0, droppedBytes: 0 });
    await window.add(files[2]!, 1 << 20); // 3 MiB > 2.5 MiB: the oldest goes
    expect(window.stats()).toEqual({ droppedFiles: 1, droppedBytes: 1 << 20 });
    expect(window.windowUse).toEqual({ files: 2, bytes: 2 << 20 });
    await window.add(path.join(dir, "deleted-meanwhile"), 1 << 20);
    await window.add(files[3]!, 1 << 20);
    expect(window.stats()).toEqual({ droppedFiles: 3, droppedBytes: 3 << 20 });
    if (nowait) {
      expect(cachedBytes(files[0]!)).toBe(-1);
      expect(cachedBytes(files[1]!)).toBe(-1);
      expect(cachedBytes(files[3]!)).toBe(4096);
    }
    // Dropped pages are only a cache: the bytes are all there.
    for (let i = 0; i < 4; i++) expect(fs.readFileSync(files[i]!).equals(Buffer.alloc(1 << 20, i + 1))).toBe(true);
    await expect(dropCachedPages(path.join(dir, "missing"))).resolves.toBeUndefined();
  });
});
