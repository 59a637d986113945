import { describe, expect, it } from "vitest";
import { BufferPool } from "./buffer-pool.js";

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
