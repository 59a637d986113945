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
    const nowait = nowaitFileSystems.has(fs.statfsSync(dir).type);
    const source = path.join(dir, "source");
    const file = path.join(dir, "data");
    const content = Buffer.alloc(8 << 20);
    for (let i = 0; i < content.length; i += 4) content.writeUInt32LE((i * 2654435761) >>> 0, i);
    await fsp.writeFile(source, content);
    // Written with O_DIRECT (dd aligns its buffer), the file has no page in the cache: a cold page is
    // certain, where dropping the cache (POSIX_FADV_DONTNEED) is advice the kernel may skip for a busy folio.
    const copied = spawnSync("dd", [`if=${source}`, `of=${file}`, "bs=1M", "oflag=direct", "status=none"]);
    if (nowait) expect(copied.stderr.toString()).toBe("");
    if (copied.status !== 0) await fsp.writeFile(file, content); // a file system without O_DIRECT: no cold-page check below
    const fd = fs.openSync(file, "r");
    try {
      const addon = isal();
      const page = Buffer.alloc(4096);
      if (nowait) expect(addon.preadNoWait(fd, page, 0, 4096, 6 << 20)).toBe(-1); // never read: would wait for the disk
      expect(fs.readSync(fd, Buffer.alloc(4096), 0, 4096, 8192)).toBe(4096); // a buffered read caches it
      const cached = addon.preadNoWait(fd, page, 0, 4096, 8192);
      if (nowait) expect(cached).toBe(4096);
      if (cached === 4096) expect(page.equals(content.subarray(8192, 12288))).toBe(true);
      else expect(cached).toBe(-1);
      // Short at the end of the file; nothing past it.
      const tail = Buffer.alloc(4096);
      expect(fs.readSync(fd, Buffer.alloc(100), 0, 100, content.length - 100)).toBe(100);
      const atEnd = addon.preadNoWait(fd, tail, 0, 4096, content.length - 100);
      if (nowait) expect(atEnd).toBe(100);
      expect([100, -1]).toContain(atEnd);
      if (atEnd === 100) expect(tail.subarray(0, 100).equals(content.subarray(content.length - 100))).toBe(true);
      expect(addon.preadNoWait(fd, tail, 0, 4096, content.length)).toBe(0);

      // preadAll returns the right bytes whether the page is cold (through the pool) or cached.
      const viaPool = Buffer.alloc(64 * 1024);
      await preadAll(fd, viaPool, 0, viaPool.length, 5 << 20);
      expect(viaPool.equals(content.subarray(5 << 20, (5 << 20) + 64 * 1024))).toBe(true);
      const small = Buffer.alloc(4096);
      await preadAll(fd, small, 0, 4096, 3 << 20);
      expect(small.equals(content.subarray(3 << 20, (3 << 20) + 4096))).toBe(true);
      await preadAll(fd, small, 0, 4096, 8192);
      expect(small.equals(content.subarray(8192, 12288))).toBe(true);
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
    const dropped: string[] = [];
    const window = new DropBehind(2.5 * (1 << 20), async (file) => {
      dropped.push(file);
      await dropCachedPages(file);
    });
    await window.add(files[0]!, 1 << 20);
    await window.add(files[1]!, 1 << 20);
    expect(window.stats()).toEqual({ droppedFiles: 0, droppedBytes: 0 });
    await window.add(files[2]!, 1 << 20); // 3 MiB > 2.5 MiB: the oldest goes
    expect(window.stats()).toEqual({ droppedFiles: 1, droppedBytes: 1 << 20 });
    expect(window.windowUse).toEqual({ files: 2, bytes: 2 << 20 });
    expect(dropped).toEqual([files[0]]);
    const deleted = path.join(dir, "deleted-meanwhile");
    await window.add(deleted, 1 << 20);
    await window.add(files[3]!, 1 << 20);
    expect(window.stats()).toEqual({ droppedFiles: 3, droppedBytes: 3 << 20 });
    expect(dropped).toEqual([files[0], files[1], files[2]]);
    expect(window.windowUse).toEqual({ files: 2, bytes: 2 << 20 }); // the deleted file and files[3]
    if (nowait) {
      // The kernel skips a folio that is busy at that instant (locked, under writeback, referenced), so
      // a file may need the advice again; one that never leaves the cache means dropCachedPages is broken.
      // Each probe is taken once: a non-blocking read that misses starts readahead, so a second probe of
      // the same page would find it cached again.
      for (const file of [files[0]!, files[1]!]) {
        let probe = cachedBytes(file);
        for (let attempt = 0; attempt < 5 && probe !== -1; attempt++) {
          await new Promise((resolve) => setTimeout(resolve, 20));
          await dropCachedPages(file);
          probe = cachedBytes(file);
        }
        expect(probe).toBe(-1);
      }
      expect(cachedBytes(files[3]!)).toBe(4096);
    }
    // Dropped pages are only a cache: the bytes are all there.
    for (let i = 0; i < 4; i++) expect(fs.readFileSync(files[i]!).equals(Buffer.alloc(1 << 20, i + 1))).toBe(true);
    await expect(dropCachedPages(path.join(dir, "missing"))).resolves.toBeUndefined();
  });
});
