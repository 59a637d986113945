// Thin promise wrappers over node:fs callbacks for the data path: positional reads and writes on raw file
// descriptors, without FileHandle objects (cheaper per call), and a bounded cache of read descriptors.
// Reads and writes loop until complete (short reads/writes are legal for pread/pwrite).

import fs from "node:fs";
import os from "node:os";
import { OvsError, systemErrorCode } from "../base/index.js";
import { isal } from "../base/isal.js";
import { DropBehind } from "../base/page-cache.js";

export { DropBehind, dropCachedPages } from "../base/page-cache.js";

export function pwriteAll(fd: number, buffer: Buffer, offsetInBuffer: number, lengthBytes: number, position: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const step = (done: number): void => {
      if (done === lengthBytes) return resolve();
      fs.write(fd, buffer, offsetInBuffer + done, lengthBytes - done, position + done, (error, written) => {
        if (error) return reject(ioError(error, "write"));
        step(done + written);
      });
    };
    step(0);
  });
}

/**
 * Reads up to this many bytes on the calling thread when they are in the page cache (preadNoWait); larger
 * reads go through the pool at once, so that the copy of a big cached read runs beside the event loop.
 */
export const preadNowMaxBytes = 128 * 1024;

/**
 * Reads exactly lengthBytes, or rejects with IO_ERROR on a short file. A small read first tries the page
 * cache without blocking (preadv2 RWF_NOWAIT, ~0.6 µs for 4 KiB against ~7 µs of event-loop time for a
 * thread-pool round trip); what is not cached is read through libuv's pool.
 */
export function preadAll(fd: number, buffer: Buffer, offsetInBuffer: number, lengthBytes: number, position: number): Promise<void> {
  let now = 0;
  if (lengthBytes <= preadNowMaxBytes && lengthBytes > 0) {
    try {
      now = isal().preadNoWait(fd, buffer, offsetInBuffer, lengthBytes, position);
    } catch (error) {
      return Promise.reject(ioError(error, "read"));
    }
    if (now === lengthBytes) return Promise.resolve();
    if (now < 0) now = 0;
  }
  return new Promise((resolve, reject) => {
    const step = (done: number): void => {
      if (done === lengthBytes) return resolve();
      fs.read(fd, buffer, offsetInBuffer + done, lengthBytes - done, position + done, (error, read) => {
        if (error) return reject(ioError(error, "read"));
        if (read === 0) return reject(new OvsError("IO_ERROR", `short read: wanted ${lengthBytes} bytes at ${position}, file ends after ${done}`));
        step(done + read);
      });
    };
    step(now);
  });
}

export function fdatasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fdatasync(fd, (error) => (error ? reject(ioError(error, "fdatasync")) : resolve())));
}

/**
 * Removes a file; a missing one is fine. A plain unlink: fsp.rm with force goes through rimraf's lstat
 * and retry machinery, which showed up at 2–3 % of the write path's CPU (one TLog file per 64 MiB).
 */
export async function removeFile(path: string): Promise<void> {
  try {
    await new Promise<void>((resolve, reject) => fs.unlink(path, (error) => (error ? reject(error) : resolve())));
  } catch (error) {
    if (systemErrorCode(error) !== "ENOENT") throw error;
  }
}

export function openFile(path: string, flags: string | number): Promise<number> {
  return new Promise((resolve, reject) => fs.open(path, flags, 0o644, (error, fd) => (error ? reject(error) : resolve(fd))));
}

export function closeFile(fd: number): Promise<void> {
  return new Promise((resolve) => fs.close(fd, () => resolve()));
}

export function ioError(error: unknown, operation: string): OvsError {
  const code = systemErrorCode(error);
  if (code === "ENOSPC" || code === "EDQUOT") return new OvsError("NO_SPACE", `${operation} failed: no space left on the device`, undefined, { cause: error });
  return new OvsError("IO_ERROR", `${operation} failed: ${error instanceof Error ? error.message : String(error)}`, undefined, { cause: error });
}

/**
 * Read-only descriptors of SCO files, shared by every volume of the process: at most `fdCountMax` cached
 * (least recently used evicted first). Descriptors are reference-counted: an evicted one is closed when
 * its last reader releases it, so eviction never breaks a read in flight and descriptors never pile up
 * (a regression: closing after a grace period leaked thousands under random reads, ending in EMFILE).
 * A file deleted while its descriptor is open stays readable through it (POSIX).
 */
export class ReadFdCache {
  private readonly entries = new Map<string, FdEntry>();

  constructor(private readonly fdCountMax: number) {}

  /**
   * A descriptor of `path` and the function to release it (call it exactly once, when the read is done),
   * or undefined if the file does not exist.
   */
  async acquire(path: string): Promise<FdHandle | undefined> {
    let entry = this.entries.get(path);
    if (entry?.resolvedFd !== undefined) {
      // The common case, without an await; re-inserted: most recently used last.
      this.entries.delete(path);
      this.entries.set(path, entry);
      return this.handle(entry, entry.resolvedFd);
    }
    if (entry) {
      this.entries.delete(path); // re-insert: most recently used last
      this.entries.set(path, entry);
    } else {
      const created: FdEntry = { fd: openFile(path, "r"), resolvedFd: undefined, refs: 0, evicted: false };
      created.fd.then((fd) => (created.resolvedFd = fd), () => undefined);
      entry = created;
      this.entries.set(path, entry);
      this.evict();
    }
    entry.refs++;
    const held = entry;
    let fd: number;
    try {
      fd = await held.fd;
    } catch (error) {
      held.refs--;
      if (this.entries.get(path) === held) this.entries.delete(path);
      if (systemErrorCode(error) === "ENOENT") return undefined;
      throw ioError(error, "open");
    }
    held.refs--; // handle() takes the reference again
    return this.handle(held, fd);
  }

  private handle(entry: FdEntry, fd: number): FdHandle {
    entry.refs++;
    let released = false;
    return {
      fd,
      release: () => {
        if (released) return;
        released = true;
        entry.refs--;
        if (entry.evicted && entry.refs === 0) void closeFile(fd);
      },
    };
  }

  /** Drops `path` from the cache (its descriptor closes once no read holds it). */
  forget(path: string): void {
    const entry = this.entries.get(path);
    if (!entry) return;
    this.entries.delete(path);
    this.retire(entry);
  }

  get cachedCount(): number {
    return this.entries.size;
  }

  private retire(entry: FdEntry): void {
    entry.evicted = true;
    if (entry.refs === 0) void entry.fd.then(closeFile, () => undefined);
  }

  private evict(): void {
    for (const [path, entry] of this.entries) {
      if (this.entries.size <= this.fdCountMax) break;
      this.entries.delete(path);
      this.retire(entry);
    }
  }
}

export interface FdHandle {
  fd: number;
  /** Gives the descriptor back; call exactly once (further calls do nothing). */
  release: () => void;
}

interface FdEntry {
  fd: Promise<number>;
  resolvedFd: number | undefined;
  refs: number;
  evicted: boolean;
}

/**
 * The process-wide cache of SCO read descriptors (every volume shares it): a quarter of the process's
 * open-file limit (read from /proc/self/limits; 1024 assumed when unknown), between 64 and 8192. Random
 * reads over a large write buffer touch many SCO files; a cache miss costs an open() and a close().
 */
export const scoReadFds = new ReadFdCache(readFdCountMax());

function readFdCountMax(): number {
  let softLimit = 1024;
  try {
    const match = /^Max open files\s+(\d+|unlimited)/m.exec(fs.readFileSync("/proc/self/limits", "utf8"));
    if (match) softLimit = match[1] === "unlimited" ? 1_048_576 : Number(match[1]);
  } catch {
    // not Linux: keep the conservative default
  }
  return Math.min(8192, Math.max(64, Math.floor(softLimit / 4)));
}

/**
 * The process-wide drop-behind of SCO files: an eighth of the machine's memory, between 256 MiB and
 * 2 GiB (the NBD benchmark's random reads over a 1 GiB vDisk stay in the cache).
 */
export const scoDropBehind = new DropBehind(Math.min(2 * 1024 ** 3, Math.max(256 * 1024 ** 2, Math.floor(os.totalmem() / 8))));
