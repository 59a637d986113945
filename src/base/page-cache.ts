// Page-cache drop-behind (DropBehind): bounds how much of the files a process writes once and keeps (a
// volume's SCOs, an ASD's values) stays in the OS page cache. See DropBehind for why.

import fs from "node:fs";
import { isal } from "./isal.js";

/**
 * Drop-behind for the page cache of files written once and kept: the owner adds a file once it is on the
 * disk (the volume a SCO once its TLog is stored — for the local backend, which links the file, that
 * means fsynced; an ASD its value files once their batch committed), and once the files added exceed
 * `windowBytes` the oldest lose their cached pages (posix_fadvise DONTNEED). Reads of them then come from
 * the disk, like the original's SCO cache on SSD.
 *
 * Why: a log-structured writer never overwrites in place, so without it every write takes fresh
 * page-cache pages and the cache grows until the kernel reclaims. Fresh pages are expensive where free
 * memory is handed back to the hypervisor (free page reporting, as on this VM): a write + fdatasync of 4
 * MiB files ran at 389–470 MiB/s letting the cache grow and at 827–918 MiB/s dropping files 256 MiB–1 GiB
 * behind (bench/drop-behind.ts: 1.64× in docs/BENCHMARKS.md; qemu-nbd, overwriting its raw file in place,
 * never pays it). Bounding our footprint in the page cache is also plain good manners on a host that
 * runs the guests' own caches.
 *
 * One per process and kind of file (the page cache is the process's). Files deleted meanwhile are skipped.
 */
export class DropBehind {
  private readonly files: Array<{ path: string; bytes: number }> = [];
  private head = 0;
  private totalBytes = 0;
  private readonly counters = { droppedFiles: 0, droppedBytes: 0 };

  /**
   * `drop` drops one file's pages (dropCachedPages; tests pass a recorder around it, as the kernel may
   * skip a folio that is busy at that instant, so residency alone cannot show which files were dropped).
   */
  constructor(
    public windowBytes: number,
    public drop: (path: string) => Promise<void> = dropCachedPages,
  ) {}

  /**
   * Records `path` (`bytes` long, on the disk); drops the pages of the oldest files beyond the window.
   * The promise (callers need not wait for it) resolves once those drops are done.
   */
  add(path: string, bytes: number): Promise<void> {
    const drops: Promise<void>[] = [];
    this.files.push({ path, bytes });
    this.totalBytes += bytes;
    while (this.totalBytes > this.windowBytes && this.head < this.files.length) {
      const oldest = this.files[this.head]!;
      this.head++;
      this.totalBytes -= oldest.bytes;
      this.counters.droppedFiles++;
      this.counters.droppedBytes += oldest.bytes;
      drops.push(this.drop(oldest.path));
    }
    if (this.head > 1024 && this.head * 2 > this.files.length) {
      this.files.splice(0, this.head);
      this.head = 0;
    }
    return drops.length === 0 ? Promise.resolve() : Promise.all(drops).then(() => undefined);
  }

  /** Files and bytes recorded and not dropped yet. */
  get windowUse(): { files: number; bytes: number } {
    return { files: this.files.length - this.head, bytes: this.totalBytes };
  }

  stats(): { droppedFiles: number; droppedBytes: number } {
    return { ...this.counters };
  }
}

/** Drops a file's clean pages from the page cache; a missing file or a failure only costs the drop. */
export async function dropCachedPages(path: string): Promise<void> {
  let fd: number | undefined;
  try {
    fd = await new Promise<number>((resolve, reject) => fs.open(path, "r", (error, opened) => (error ? reject(error) : resolve(opened))));
    isal().dropCachedPages(fd);
  } catch {
    // deleted meanwhile (evicted, scrubbed, collected), or the call failed: the pages stay cached
  } finally {
    if (fd !== undefined) fs.close(fd, () => undefined);
  }
}
