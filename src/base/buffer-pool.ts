// A free list of equal-sized buffers for the data path: reused instead of allocated per request.
// Why: every fresh 1 MiB Buffer is a new ArrayBuffer counted as V8 external memory; at a few hundred MB/s
// of NBD writes those allocations alone made V8 run a full (mark-compact) GC several times per second
// (DESIGN.md §7 notes the trap). Owners return a buffer only when nothing refers to it any more.
// Limits: at most `countMax` idle buffers are kept; more are left to the GC.

import { assert } from "./assert.js";

export class BufferPool {
  private readonly free: Buffer[] = [];
  private readonly idle = new Set<Buffer>(); // guards against a buffer returned twice

  /** `allocate` makes a new buffer of bufferBytes (default Buffer.allocUnsafeSlow; e.g. aligned memory). */
  constructor(readonly bufferBytes: number, readonly countMax: number, private readonly allocate: () => Buffer = () => Buffer.allocUnsafeSlow(bufferBytes)) {
    assert(bufferBytes > 0 && countMax >= 0);
  }

  /** A buffer of exactly bufferBytes (contents undefined), owned by the caller until release(). */
  take(): Buffer {
    const buffer = this.free.pop();
    if (buffer === undefined) {
      const created = this.allocate();
      assert(created.length === this.bufferBytes, "BufferPool: the allocator made a buffer of another size");
      return created;
    }
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

/**
 * Free lists of buffers in power-of-two size classes, for messages of varying size (ASD frames): take(n)
 * returns a view of exactly n bytes at the start of a pooled ArrayBuffer of the next class up;
 * release(view) gives that ArrayBuffer back. Sizes outside [minBytes, maxBytes] are plain allocations
 * that release() ignores, as it ignores any view it did not hand out (so a caller may release whatever
 * it got). Idle memory is bounded by idleBytesMax; beyond it released buffers are left to the GC.
 */
export class SizeClassPool {
  private readonly free = new Map<number, ArrayBuffer[]>();
  private readonly issued = new WeakSet<ArrayBuffer>(); // ours, currently out
  private idleBytes = 0;

  constructor(
    readonly minBytes = 64 * 1024,
    readonly maxBytes = 16 * 1024 * 1024,
    readonly idleBytesMax = 64 * 1024 * 1024,
  ) {
    assert(minBytes > 0 && maxBytes >= minBytes && idleBytesMax >= 0);
  }

  /** A buffer of exactly byteCount bytes (contents undefined), owned by the caller until release(). */
  take(byteCount: number): Buffer {
    if (byteCount < this.minBytes || byteCount > this.maxBytes) return Buffer.allocUnsafe(byteCount);
    const classBytes = 2 ** Math.ceil(Math.log2(byteCount));
    const list = this.free.get(classBytes);
    let arrayBuffer = list?.pop();
    if (arrayBuffer === undefined) arrayBuffer = new ArrayBuffer(classBytes);
    else this.idleBytes -= classBytes;
    this.issued.add(arrayBuffer);
    return Buffer.from(arrayBuffer, 0, byteCount);
  }

  /** Gives back a buffer from take(); the caller must not use it (or views of it) afterwards. */
  release(view: Uint8Array): void {
    const arrayBuffer = view.buffer;
    if (!(arrayBuffer instanceof ArrayBuffer) || !this.issued.has(arrayBuffer)) return; // not ours, or already back
    this.issued.delete(arrayBuffer);
    const classBytes = arrayBuffer.byteLength;
    if (this.idleBytes + classBytes > this.idleBytesMax) return;
    let list = this.free.get(classBytes);
    if (list === undefined) this.free.set(classBytes, (list = []));
    list.push(arrayBuffer);
    this.idleBytes += classBytes;
  }

  get idleByteCount(): number {
    return this.idleBytes;
  }
}
