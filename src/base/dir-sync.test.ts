import { afterEach, describe, expect, it, vi } from "vitest";
import fs from "node:fs";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { DirSync } from "./dir-sync.js";

const dirs: string[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  for (const dir of dirs.splice(0)) await fsp.rm(dir, { recursive: true, force: true });
});

const wrap = (error: unknown, action: string): Error => new Error(`${action}: ${(error as NodeJS.ErrnoException).code}`);

describe("DirSync", () => {
  it("keeps the directory open across syncs, coalesces concurrent callers, and closes the descriptor once", async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), "ovs-dirsync-"));
    dirs.push(dir);
    const opens = vi.spyOn(fs, "open");
    const fsyncs = vi.spyOn(fs, "fsync");
    const closes = vi.spyOn(fs, "close");
    const sync = new DirSync(dir, wrap);
    await sync.sync();
    await Promise.all(Array.from({ length: 10 }, () => sync.sync()));
    await sync.sync();
    expect(opens.mock.calls.filter(([file]) => file === dir)).toHaveLength(1);
    // The first call of the ten starts one; the other nine share the next (or, if it already ran, one more).
    expect(fsyncs.mock.calls.length).toBeGreaterThanOrEqual(3);
    expect(fsyncs.mock.calls.length).toBeLessThanOrEqual(4);
    const fd = fsyncs.mock.calls[0]![0];
    expect(fsyncs.mock.calls.every(([used]) => used === fd)).toBe(true);
    sync.close();
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(closes.mock.calls.filter(([closed]) => closed === fd)).toHaveLength(1);
    // After close a sync still works, on a descriptor of its own that it closes (the number may be reused).
    const closesBefore = closes.mock.calls.length;
    await sync.sync();
    expect(opens.mock.calls.filter(([file]) => file === dir)).toHaveLength(2);
    const own = fsyncs.mock.calls.at(-1)![0];
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(closes.mock.calls.slice(closesBefore).filter(([closed]) => closed === own)).toHaveLength(1);
  });

  it("reports a missing directory through the owner's error, and opens it again once it exists", async () => {
    const parent = await fsp.mkdtemp(path.join(os.tmpdir(), "ovs-dirsync-"));
    dirs.push(parent);
    const dir = path.join(parent, "later");
    const sync = new DirSync(dir, wrap);
    await expect(sync.sync()).rejects.toThrow(`open ${dir} to fsync it: ENOENT`);
    await fsp.mkdir(dir);
    await expect(sync.sync()).resolves.toBeUndefined();
    sync.close();
  });
});
