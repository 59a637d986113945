import { afterEach, describe, expect, it } from "vitest";
import fs from "node:fs";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { ReadFdCache, preadAll } from "./file-io.js";

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
