// A free list of equal-sized buffers for the data path: reused instead of allocated per request.
// Why: every fresh 1 MiB Buffer is a new ArrayBuffer counted as V8 external memory; at a few hundred MB/s
// of NBD writes those allocations alone made V8 run a full (mark-compact) GC several times per second
// (DESIGN.md §7 notes the trap). Owners return a buffer only when nothing refers to it any more.
// Limits: at most `countMax` idle buffers are kept; more are left to the GC.

import { assert } from "./assert.js";

export class BufferPool {
  private readonly free: Buffer[] = [];
  private readonly idle = new Set<Buffer>(); // guards against a buffer returned twice

  constructor(readonly bufferBytes: number, readonly countMax: number) {
    assert(bufferBytes > 0 && countMax >= 0);
  }

  /** A buffer of exactly bufferBytes (contents undefined), owned by the caller until release(). */
  take(): Buffer {
    const buffer = this.free.pop();
    if (buffer === undefined) return Buffer.allocUnsafeSlow(this.bufferBytes);
    this.idle.delete(buffer);
    return buffer;
  }

  /** Gives back a buffer from take(); the caller must not use it (or views of it) afterwards. */
  release(buffer: Buffer): void {
    assert(buffer.length === this.bufferBytes, "BufferPool.release: not a buffer of this pool");
    assert(!this.idle.has(buffer), "BufferPool.release: buffer returned twice");
    if (this.free.length >= this.countMax) return;
    this.free.push(buffer);
    this.idle.add(buffer);
  }

  get idleCount(): number {
    return this.free.length;
  }
}
