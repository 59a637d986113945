import { describe, expect, it } from "vitest";
import { seededRandom as random } from "./random.js";
import { RowMap, rowMapCapacityMin, rowMapShrinkAboveSlots } from "./row-map.js";

describe("RowMap", () => {
  it("answers like a Map under random sets, deletes and compactions", () => {
    for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
      const next = random(seed);
      const model = new Map<number, number>();
      const map = new RowMap();
      // Keys from dense runs (cluster addresses), some above 2^32, some strided, a few sparse ones.
      const keyOf = (): number => {
        const r = next();
        if (r < 0.4) return Math.floor(next() * 3000);
        if (r < 0.6) return 2 ** 32 + Math.floor(next() * 3000);
        if (r < 0.8) return Math.floor(next() * 3000) * 1024;
        return Math.floor(next() * 2 ** 40);
      };
      for (let step = 0; step < 40_000; step++) {
        const key = keyOf();
        const r = next();
        if (r < 0.6) {
          const value = Math.floor(next() * 2 ** 40);
          const previous = map.set(key, value);
          if (previous !== (model.get(key) ?? -1)) expect.fail(`seed ${seed} step ${step}: set(${key}) returned ${previous}`);
          model.set(key, value);
        } else if (r < 0.999) {
          // Half the time the right value (deleted), else a wrong one (kept).
          const asked = next() < 0.5 ? (model.get(key) ?? 5) : (model.get(key) ?? 5) + 1;
          const removed = map.deleteIfValue(key, asked);
          if (removed !== (model.get(key) === asked)) expect.fail(`seed ${seed} step ${step}: deleteIfValue(${key}, ${asked}) returned ${removed}`);
          if (removed) model.delete(key);
        } else {
          map.compact();
        }
        // Plain comparisons: an expect() per step would make the test slow.
        if (map.get(key) !== model.get(key) || map.size !== model.size) {
          expect.fail(`seed ${seed} step ${step}: get(${key}) = ${map.get(key)}, size ${map.size}; expected ${model.get(key)}, size ${model.size}`);
        }
      }
      for (const [key, v] of model) expect(map.get(key), `seed ${seed}`).toBe(v);
      expect(new Map(Array.from(map.entries(), ([k, v]) => [k, v] as const))).toEqual(model);
    }
  });

  it("grows with its entries and shrinks a large table only once nearly empty", () => {
    const map = new RowMap();
    const count = rowMapShrinkAboveSlots / 2; // grows past rowMapShrinkAboveSlots (1/4 load)
    for (let key = 0; key < count; key++) map.set(key, key * 3);
    expect(map.size).toBe(count);
    expect(map.capacity).toBeGreaterThan(rowMapShrinkAboveSlots);
    for (let key = 0; key < count; key++) if (map.get(key) !== key * 3) expect.fail(`get(${key}) = ${map.get(key)}`);
    expect(map.set(7, 1)).toBe(21);
    expect(map.deleteIfValue(7, 21)).toBe(false);
    const grown = map.capacity;
    for (let key = 0; key < count / 2; key++) map.deleteIfValue(key, key === 7 ? 1 : key * 3);
    map.compact();
    expect(map.capacity).toBe(grown); // half full: kept
    for (let key = count / 2; key < count - 3; key++) map.deleteIfValue(key, key * 3);
    map.compact();
    expect(map.size).toBe(3);
    expect(map.capacity).toBe(rowMapCapacityMin);
    expect(map.get(count - 2)).toBe((count - 2) * 3);
    expect(map.get(7)).toBeUndefined();
    const small = new RowMap();
    small.set(1, 1);
    small.compact();
    expect(small.capacity).toBe(rowMapCapacityMin);
  });

  it("refuses keys it cannot hold, and changes nothing", () => {
    const map = new RowMap();
    map.set(1, 1);
    expect(() => map.set(-1, 0)).toThrow(/non-negative integer/);
    expect(() => map.set(1.5, 0)).toThrow(/non-negative integer/);
    expect(() => map.set(2 ** 53, 0)).toThrow(/non-negative integer/);
    expect(map.size).toBe(1);
    expect(map.get(1)).toBe(1);
  });
});
