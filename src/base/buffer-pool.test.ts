import { describe, expect, it } from "vitest";
import { BufferPool, SizeClassPool } from "./buffer-pool.js";

describe("BufferPool", () => {
  it("reuses released buffers, keeps at most countMax idle, and refuses a double release", () => {
    const pool = new BufferPool(1024, 2);
    const a = pool.take();
    const b = pool.take();
    const c = pool.take();
    expect(a.length).toBe(1024);
    expect(new Set([a, b, c]).size).toBe(3);
    pool.release(a);
    pool.release(b);
    pool.release(c); // beyond countMax: left to the GC
    expect(pool.idleCount).toBe(2);
    expect(() => pool.release(b)).toThrow(/returned twice/);
    const d = pool.take();
    expect(d === a || d === b).toBe(true);
    expect(() => pool.release(Buffer.alloc(10))).toThrow(/not a buffer of this pool/);
  });
});

describe("SizeClassPool", () => {
  it("hands out exact-length views of power-of-two buffers, reuses released ones, and ignores foreign or repeated releases", () => {
    const pool = new SizeClassPool(1024, 64 * 1024, 128 * 1024);
    const a = pool.take(1500);
    expect(a.length).toBe(1500);
    expect(a.buffer.byteLength).toBe(2048);
    pool.release(a);
    expect(pool.idleByteCount).toBe(2048);
    pool.release(a); // already back: ignored, not pooled twice
    expect(pool.idleByteCount).toBe(2048);
    const b = pool.take(2000);
    expect(b.buffer).toBe(a.buffer); // same class, reused
    expect(pool.idleByteCount).toBe(0);
    const small = pool.take(100); // below minBytes: a plain allocation
    const huge = pool.take(100_000); // above maxBytes
    pool.release(small);
    pool.release(huge);
    pool.release(Buffer.alloc(4096));
    expect(pool.idleByteCount).toBe(0);
    // Idle memory stays under idleBytesMax: the third 64 KiB buffer is left to the GC.
    const big = [pool.take(64 * 1024), pool.take(64 * 1024), pool.take(40_000)];
    for (const buffer of big) pool.release(buffer);
    expect(pool.idleByteCount).toBe(128 * 1024);
    pool.release(b);
    expect(pool.idleByteCount).toBe(128 * 1024); // full: b is not kept
  });
});
