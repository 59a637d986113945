// The fragment cache: LRU by bytes within capacity, counters, copies of what it keeps, oversized entries refused.
import { describe, expect, test } from "vitest";
import { FragmentCache } from "./fragment-cache.js";

describe("FragmentCache", () => {
  test("evicts the least recently used entries to stay within capacity", () => {
    const cache = new FragmentCache(400);
    cache.put("a", Buffer.alloc(100, 1));
    cache.put("b", Buffer.alloc(100, 2));
    cache.put("c", Buffer.alloc(100, 3));
    expect(cache.get("a")![0]).toBe(1); // a is now the most recent
    cache.put("d", Buffer.alloc(100, 4));
    cache.put("e", Buffer.alloc(100, 5)); // evicts b
    expect(cache.get("b")).toBeUndefined();
    expect(cache.get("a")).toBeDefined();
    const statistics = cache.statistics();
    expect(statistics).toMatchObject({ hits: 2, misses: 1, entryCount: 4, storedBytes: 400, evictions: 1 });
  });

  test("keeps a copy and refuses entries over a quarter of the capacity", () => {
    const cache = new FragmentCache(400);
    const value = Buffer.alloc(100, 7);
    cache.put("k", value);
    value.fill(0);
    expect(cache.get("k")![0]).toBe(7);
    cache.put("big", Buffer.alloc(101));
    expect(cache.get("big")).toBeUndefined();
    const none = new FragmentCache(0);
    none.put("k", Buffer.alloc(1));
    expect(none.statistics().storedBytes).toBe(0);
  });
});
