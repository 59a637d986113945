// RowMap: a hash map from non-negative integer keys (< 2^53) to non-negative integer values (< 2^53),
// held in two Float64Arrays with open addressing (linear probing; deletion by backward shift, so no
// tombstones).
//
// Why by hand and not a Map<number, number>: the volume records one entry per 4 KiB cluster written
// (262,144 per GiB) and deletes it once committed (volume/dirty-map.ts). With a Map at tens of thousands
// of entries a set plus its later delete cost 220–320 ns on this machine (a churning OrderedHashMap on
// the JS heap), and `DirtyMap.set` and `drop` were ~7 % of the main thread under 1 MiB sequential
// writes. Here each is a few typed-array accesses. The npm packages for integer hash maps we found are
// unmaintained or wrap a Map.
//
// Limits and memory: capacity is a power of two from `rowMapCapacityMin`, doubled above 1/4 load (short
// probe runs), at most `rowMapCapacityMax` slots of 16 bytes. It shrinks only from above
// `rowMapShrinkAboveSlots` and when nearly empty: reallocating in step with the volume's commits made V8
// collect over and over (the arrays are external memory), so the table keeps its peak size otherwise.
// Iteration order is unspecified; the map must not be changed while an iterator over it is live.

import { assert } from "./assert.js";

export const rowMapCapacityMin = 1024;
export const rowMapCapacityMax = 2 ** 30;
export const rowMapShrinkAboveSlots = 2 ** 20;

/** The empty-slot key (keys are ≥ 0). */
const empty = -1;

export class RowMap {
  private keys: Float64Array;
  private values: Float64Array;
  private mask: number;
  /** 32 − log2(capacity): a slot is the top bits of the multiplicative hash (its low bits are weak). */
  private shift: number;
  private count = 0;

  constructor(capacity = rowMapCapacityMin) {
    assert(capacity >= rowMapCapacityMin && capacity <= rowMapCapacityMax && (capacity & (capacity - 1)) === 0, "RowMap capacity: a power of two in range");
    this.keys = new Float64Array(capacity).fill(empty);
    this.values = new Float64Array(capacity);
    this.mask = capacity - 1;
    this.shift = 32 - Math.log2(capacity);
  }

  get size(): number {
    return this.count;
  }

  get capacity(): number {
    return this.keys.length;
  }

  /** The value of `key`, or undefined. */
  get(key: number): number | undefined {
    const keys = this.keys;
    for (let slot = this.slotOf(key); ; slot = (slot + 1) & this.mask) {
      const k = keys[slot]!;
      if (k === key) return this.values[slot];
      if (k === empty) return undefined;
    }
  }

  /** Sets `key` (an integer in [0, 2^53)) to `value`; returns the previous value, or -1 if there was none. */
  set(key: number, value: number): number {
    assert(Number.isSafeInteger(key) && key >= 0, "RowMap key: a safe non-negative integer");
    if ((this.count + 1) * 4 > this.keys.length) this.resize(this.keys.length * 2);
    const keys = this.keys;
    for (let slot = this.slotOf(key); ; slot = (slot + 1) & this.mask) {
      const k = keys[slot]!;
      if (k === key) {
        const previous = this.values[slot]!;
        this.values[slot] = value;
        return previous;
      }
      if (k === empty) {
        keys[slot] = key;
        this.values[slot] = value;
        this.count++;
        return -1;
      }
    }
  }

  /** Removes `key` if its value is `value`; returns whether it did. */
  deleteIfValue(key: number, value: number): boolean {
    const keys = this.keys;
    for (let slot = this.slotOf(key); ; slot = (slot + 1) & this.mask) {
      const k = keys[slot]!;
      if (k === empty) return false;
      if (k !== key) continue;
      if (this.values[slot] !== value) return false;
      this.removeSlot(slot);
      return true;
    }
  }

  /** Shrinks a large table that is nearly empty (see the header); a no-op otherwise. */
  compact(): void {
    let capacity = this.keys.length;
    if (capacity <= rowMapShrinkAboveSlots || this.count * 32 >= capacity) return;
    while (capacity > rowMapCapacityMin && this.count * 8 < capacity) capacity /= 2;
    this.resize(capacity);
  }

  /** Entries as [key, value] pairs (one reused array: copy what must be kept). */
  *entries(): Generator<[number, number]> {
    const pair: [number, number] = [0, 0];
    const keys = this.keys;
    for (let slot = 0; slot < keys.length; slot++) {
      if (keys[slot] === empty) continue;
      pair[0] = keys[slot]!;
      pair[1] = this.values[slot]!;
      yield pair;
    }
  }

  private slotOf(key: number): number {
    // Fibonacci hashing of the low 32 bits mixed with the high ones: consecutive cluster addresses
    // spread over the table instead of filling one run of slots.
    const low = key >>> 0;
    const high = (key - low) / 2 ** 32;
    return Math.imul(low ^ Math.imul(high, 0x85ebca6b), 0x9e3779b1) >>> this.shift;
  }

  /** Backward-shift deletion: moves later members of the probe run into the hole, so lookups stay correct. */
  private removeSlot(slot: number): void {
    const keys = this.keys;
    const values = this.values;
    const mask = this.mask;
    let hole = slot;
    for (let next = (hole + 1) & mask; ; next = (next + 1) & mask) {
      const k = keys[next]!;
      if (k === empty) break;
      // The entry at `next` may fill the hole unless its home slot lies in (hole, next].
      if (((next - this.slotOf(k)) & mask) >= ((next - hole) & mask)) {
        keys[hole] = k;
        values[hole] = values[next]!;
        hole = next;
      }
    }
    keys[hole] = empty;
    this.count--;
  }

  private resize(capacity: number): void {
    assert(capacity <= rowMapCapacityMax, `RowMap: more than ${rowMapCapacityMax / 4} entries`);
    const oldKeys = this.keys;
    const oldValues = this.values;
    this.keys = new Float64Array(capacity).fill(empty);
    this.values = new Float64Array(capacity);
    this.mask = capacity - 1;
    this.shift = 32 - Math.log2(capacity);
    const keys = this.keys;
    for (let i = 0; i < oldKeys.length; i++) {
      const key = oldKeys[i]!;
      if (key === empty) continue;
      let slot = this.slotOf(key);
      while (keys[slot] !== empty) slot = (slot + 1) & this.mask;
      keys[slot] = key;
      this.values[slot] = oldValues[i]!;
    }
  }
}
