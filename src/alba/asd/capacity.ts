// A capacity limit for an ASD (`ovs asd --capacity SIZE`): a StatfsSource that reports the smaller of the
// filesystem and `capacityBytes` as the ASD's total, and the bytes its directory holds (allocated blocks
// of every file under it) as used. For a directory that shares a disk with other things, for small test
// ASDs that must fill up, and for demos. Imported through src/alba/asd/index.ts.
//
// Invariants: freeBytes ≤ totalBytes; both ≥ 0; never more free than the filesystem has.
// Limits: the walk visits every file of the ASD (the store caches statfs results for statfsCacheMs, and
// the directory holds one file per value of 16 KiB or more), so it is meant for small ASDs.

import { lstat, readdir } from "node:fs/promises";
import path from "node:path";
import { OvsError } from "../../base/index.js";
import { statfsSpace, type FilesystemSpace, type StatfsSource } from "./asd-store.js";

/** Bytes allocated to the files under `dir` (st_blocks × 512; sparse files count what they use). */
export async function directoryUsedBytes(dir: string): Promise<number> {
  let total = 0;
  const pending = [dir];
  while (pending.length > 0) {
    const current = pending.pop()!;
    let entries;
    try {
      entries = await readdir(current, { withFileTypes: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") continue; // removed meanwhile
      throw error;
    }
    for (const entry of entries) {
      const full = path.join(current, entry.name);
      if (entry.isDirectory()) {
        pending.push(full);
        continue;
      }
      try {
        total += (await lstat(full)).blocks * 512;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
      }
    }
  }
  return total;
}

export function capacityStatfs(capacityBytes: number, filesystem: StatfsSource = statfsSpace): StatfsSource {
  if (!Number.isSafeInteger(capacityBytes) || capacityBytes < 1) throw new OvsError("INVALID_ARGUMENT", `An ASD capacity is a positive number of bytes; got ${capacityBytes}.`);
  return async (dir: string): Promise<FilesystemSpace> => {
    const [space, usedBytes] = await Promise.all([filesystem(dir), directoryUsedBytes(dir)]);
    const totalBytes = Math.min(capacityBytes, space.totalBytes);
    const freeBytes = Math.max(0, Math.min(space.freeBytes, totalBytes - usedBytes));
    return { totalBytes, freeBytes };
  };
}
