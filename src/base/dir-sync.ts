// Directory fsyncs for files created, linked or renamed in a directory: coalesced, on a descriptor kept
// open. Used by the local backend (a namespace's directory) and the volume (its SCO and TLog folders).

import fs from "node:fs";

function noop(): void {}

function open(path: string): Promise<number> {
  return new Promise((resolve, reject) => fs.open(path, fs.constants.O_RDONLY, (error, fd) => (error ? reject(error) : resolve(fd))));
}

function fsync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fsync(fd, (error) => (error ? reject(error) : resolve())));
}

/**
 * Coalesces the fsyncs of one directory: callers that ask while one is running share the next one, so N
 * concurrent creates cost about two directory fsyncs, not N (group commit).
 *
 * The directory stays open: a sync is one fsync, not open + fsync + close. Each of those is a trip
 * through libuv's thread pool and back through the event loop, which under load costs milliseconds (the
 * put of a linked SCO in the local backend went from about 20 such trips to 9). The owner calls close()
 * when it is done with the directory, and before a directory of the same path may be a new one (a
 * namespace deleted and created again), since the descriptor keeps naming the old one.
 */
export class DirSync {
  private running: Promise<void> | undefined;
  private next: Promise<void> | undefined;
  private fd: Promise<number> | undefined;
  private closed = false;

  /** `wrap` turns a system error into the owner's error (`action` says what failed). */
  constructor(
    private readonly path: string,
    private readonly wrap: (error: unknown, action: string) => Error,
  ) {}

  /** Resolves once every change made in the directory before the call is durable. */
  sync(): Promise<void> {
    if (this.next !== undefined) return this.next; // not started yet, so it covers this caller's changes
    if (this.running === undefined) return this.start();
    this.next = this.running.then(noop, noop).then(() => {
      this.next = undefined;
      return this.start();
    });
    return this.next;
  }

  /** Closes the descriptor (once a running sync is done with it); later syncs open the path each time. */
  close(): void {
    this.closed = true;
    const fd = this.fd;
    this.fd = undefined;
    if (fd === undefined) return;
    void Promise.resolve(this.running)
      .then(noop, noop)
      .then(() => fd)
      .then((opened) => fs.close(opened, noop), noop);
  }

  private start(): Promise<void> {
    const run: Promise<void> = this.fsyncOnce().finally(() => {
      if (this.running === run) this.running = undefined;
    });
    this.running = run;
    return run;
  }

  private async fsyncOnce(): Promise<void> {
    // Cached: the descriptor is this object's, closed by close() or, after a failure, here (whoever
    // detaches it from this.fd closes it, exactly once). Not cached (after close): this sync's own.
    const cached = !this.closed;
    const opening = cached ? (this.fd ??= open(this.path)) : open(this.path);
    let fd: number;
    try {
      fd = await opening;
    } catch (error) {
      if (this.fd === opening) this.fd = undefined;
      throw this.wrap(error, `open ${this.path} to fsync it`);
    }
    try {
      await fsync(fd);
    } catch (error) {
      // Reopen next time rather than trust a descriptor whose fsync failed.
      if (!cached) {
        fs.close(fd, noop);
      } else if (this.fd === opening) {
        this.fd = undefined;
        fs.close(fd, noop);
      }
      throw this.wrap(error, `fsync ${this.path}`);
    }
    if (!cached) fs.close(fd, noop);
  }
}
