// In-process reader/writer locks keyed by name (one per backend namespace). Shared holders run
// together; an exclusive holder runs alone. Waiters are served in arrival order, so a waiting exclusive
// request holds back later shared ones (writers are not starved). Imported by backend/ only.
//
// Invariants: `sharedCount > 0` and `exclusive` are never both true; an idle lock (no holder, no
// waiter) is removed from its table, so the table holds only keys in use.
// Limits: the waiter queue is bounded by the caller's in-flight requests (the volume's queue depth);
// this file adds no queue of its own beyond that.

import { assert } from "../base/index.js";

interface Waiter {
  exclusive: boolean;
  resolve: () => void;
}

class RwLock {
  sharedCount = 0;
  exclusive = false;
  readonly waiters: Waiter[] = [];

  canGrant(exclusive: boolean): boolean {
    return exclusive ? !this.exclusive && this.sharedCount === 0 : !this.exclusive;
  }

  grant(exclusive: boolean): void {
    assert(this.canGrant(exclusive), "lock granted while held incompatibly");
    if (exclusive) this.exclusive = true;
    else this.sharedCount += 1;
  }

  release(exclusive: boolean): void {
    if (exclusive) {
      assert(this.exclusive, "exclusive release without hold");
      this.exclusive = false;
    } else {
      assert(this.sharedCount > 0, "shared release without hold");
      this.sharedCount -= 1;
    }
    while (this.waiters.length > 0 && this.canGrant(this.waiters[0]!.exclusive)) {
      const waiter = this.waiters.shift()!;
      this.grant(waiter.exclusive);
      waiter.resolve();
    }
  }

  idle(): boolean {
    return this.sharedCount === 0 && !this.exclusive && this.waiters.length === 0;
  }
}

export class LockTable {
  private readonly locks = new Map<string, RwLock>();

  /** Runs `fn` holding `key` shared (other shared holders may run at the same time). */
  withShared<T>(key: string, fn: () => Promise<T>): Promise<T> {
    return this.run(key, false, fn);
  }

  /** Runs `fn` holding `key` exclusively. */
  withExclusive<T>(key: string, fn: () => Promise<T>): Promise<T> {
    return this.run(key, true, fn);
  }

  /** Number of keys with a holder or waiter (for tests and metrics). */
  get activeKeyCount(): number {
    return this.locks.size;
  }

  private async run<T>(key: string, exclusive: boolean, fn: () => Promise<T>): Promise<T> {
    let lock = this.locks.get(key);
    if (lock === undefined) {
      lock = new RwLock();
      this.locks.set(key, lock);
    }
    if (lock.waiters.length === 0 && lock.canGrant(exclusive)) {
      lock.grant(exclusive);
    } else {
      const waiting = lock;
      await new Promise<void>((resolve) => waiting.waiters.push({ exclusive, resolve }));
    }
    try {
      return await fn();
    } finally {
      lock.release(exclusive);
      if (lock.idle()) this.locks.delete(key);
    }
  }
}
