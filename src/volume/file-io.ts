// Thin promise wrappers over node:fs callbacks for the data path: positional reads and writes on raw file
// descriptors, without FileHandle objects (cheaper per call), and a bounded cache of read descriptors.
// Reads and writes loop until complete (short reads/writes are legal for pread/pwrite).

import fs from "node:fs";
import { OvsError, systemErrorCode } from "../base/index.js";

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

/** Reads exactly lengthBytes, or rejects with IO_ERROR on a short file. */
export function preadAll(fd: number, buffer: Buffer, offsetInBuffer: number, lengthBytes: number, position: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const step = (done: number): void => {
      if (done === lengthBytes) return resolve();
      fs.read(fd, buffer, offsetInBuffer + done, lengthBytes - done, position + done, (error, read) => {
        if (error) return reject(ioError(error, "read"));
        if (read === 0) return reject(new OvsError("IO_ERROR", `short read: wanted ${lengthBytes} bytes at ${position}, file ends after ${done}`));
        step(done + read);
      });
    };
    step(0);
  });
}

export function fdatasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fdatasync(fd, (error) => (error ? reject(ioError(error, "fdatasync")) : resolve())));
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
 * Read-only descriptors of SCO files, at most `fdCountMax` open (least recently used closed first).
 * A file deleted while its descriptor is open stays readable through it (POSIX), so eviction of a SCO
 * never breaks a read in flight.
 */
export class ReadFdCache {
  private readonly fds = new Map<string, Promise<number>>();

  constructor(private readonly fdCountMax: number) {}

  /** The descriptor of `path`, or undefined if the file does not exist. */
  async get(path: string): Promise<number | undefined> {
    let pending = this.fds.get(path);
    if (pending) {
      this.fds.delete(path); // re-insert: most recently used last
      this.fds.set(path, pending);
    } else {
      pending = openFile(path, "r");
      this.fds.set(path, pending);
      pending.catch(() => this.fds.delete(path));
      this.evict();
    }
    try {
      return await pending;
    } catch (error) {
      if (systemErrorCode(error) === "ENOENT") return undefined;
      throw ioError(error, "open");
    }
  }

  forget(path: string): void {
    const pending = this.fds.get(path);
    if (!pending) return;
    this.fds.delete(path);
    // Close after a grace period: a read that already has the descriptor may still be using it.
    void pending.then((fd) => setTimeout(() => void closeFile(fd), 5000).unref(), () => undefined);
  }

  async closeAll(): Promise<void> {
    const all = [...this.fds.values()];
    this.fds.clear();
    await Promise.all(all.map((p) => p.then(closeFile, () => undefined)));
  }

  private evict(): void {
    while (this.fds.size > this.fdCountMax) {
      const oldest = this.fds.keys().next().value as string;
      this.forget(oldest);
    }
  }
}
