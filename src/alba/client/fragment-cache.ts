// FragmentCache: a bounded in-memory LRU of packed data fragments, by bytes, with hit and miss
// counters (the original proxy's "local" fragment cache, in memory). Keys are fragment keys (hex), which
// are unique per upload and version, so a cached fragment never goes stale: an overwrite has new keys.
// Imported by alba-backend.ts only.
//
// Invariants: storedBytes ≤ capacityBytes after every call; an entry larger than capacityBytes /
// entryShareMax is never stored (one huge fragment cannot flush the cache); a cached fragment is still
// verified by the pipeline on every use (its checksum travels with it).
// Buffers: put() copies the bytes it keeps (the caller's may be views into a response frame); get()
// returns the cached Buffer, which callers must treat as read-only.

import { assert } from "../../base/index.js";

/** An entry may take at most 1/entryShareMax of the cache. */
const entryShareMax = 4;

export interface FragmentCacheStatistics {
  hits: number;
  misses: number;
  entryCount: number;
  storedBytes: number;
  capacityBytes: number;
  evictions: number;
}

export class FragmentCache {
  private readonly entries = new Map<string, Buffer>();
  private storedBytes = 0;
  private hits = 0;
  private misses = 0;
  private evictions = 0;

  constructor(readonly capacityBytes: number) {
    assert(Number.isSafeInteger(capacityBytes) && capacityBytes >= 0, "cache capacity is a non-negative integer");
  }

  /** The cached fragment (refreshing its recency), or undefined; counts a hit or a miss. */
  get(key: string): Buffer | undefined {
    const value = this.entries.get(key);
    if (value === undefined) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    this.entries.delete(key);
    this.entries.set(key, value);
    return value;
  }

  /** Caches a copy of `value` (if it fits), evicting the least recently used entries. */
  put(key: string, value: Uint8Array): void {
    if (this.capacityBytes === 0 || value.length * entryShareMax > this.capacityBytes) return;
    const old = this.entries.get(key);
    if (old !== undefined) {
      this.entries.delete(key);
      this.storedBytes -= old.length;
    }
    while (this.storedBytes + value.length > this.capacityBytes) {
      const oldest = this.entries.keys().next();
      assert(!oldest.done, "bytes stored means entries exist");
      this.storedBytes -= this.entries.get(oldest.value)!.length;
      this.entries.delete(oldest.value);
      this.evictions++;
    }
    this.entries.set(key, Buffer.from(value));
    this.storedBytes += value.length;
    assert(this.storedBytes <= this.capacityBytes, "the cache stays within its capacity");
  }

  clear(): void {
    this.entries.clear();
    this.storedBytes = 0;
  }

  statistics(): FragmentCacheStatistics {
    return {
      hits: this.hits,
      misses: this.misses,
      entryCount: this.entries.size,
      storedBytes: this.storedBytes,
      capacityBytes: this.capacityBytes,
      evictions: this.evictions,
    };
  }
}
