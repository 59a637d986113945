// The volume's map updates that are not yet committed to LMDB (the in-memory layer over the metadata
// store), each tagged with the TLog entry that describes it.
//
// Updates are appended in TLog order (a write appends its TLog entry and its update in one synchronous
// step; recovery replays in TLog order), so the updates a cork covers are always a prefix of the log: a
// commit takes a prefix, and once it is in LMDB the prefix is dropped.
//
// Why typed arrays and not a Map of objects: at 1 MiB writes the volume records 256 updates per request;
// as objects they lived about a second (until their commit), survived young-generation GCs and were
// promoted, and old-generation GC took 10–15 % of the node's CPU. Here an update is a row in typed arrays
// and the per-address state is a RowMap (base/row-map.ts, typed arrays too) from address to global row
// number.
// A clone's unmapped cluster is an explicit zero (scoNumber 0) that hides its parent: get() returns
// zeroLocation for it, and undefined only when the address has no uncommitted update at all.

import { assert, RowMap } from "../base/index.js";
import { zeroLocation, type ClusterLocation, type Cork, type MapUpdate } from "./metadata-store.js";

const initialCapacity = 4096;
/** Capacity kept at least (rows of 36 bytes: 2.4 MB), once grown to it. */
const shrinkAboveRows = 65_536;

export class DirtyMap {
  /** Row number (global, ≥ base) of the newest update of each address. */
  private readonly latest = new RowMap();
  private base = 0; // global row number of row 0
  private length = 0;
  private capacity = initialCapacity;
  private address = new Float64Array(initialCapacity);
  private scoNumber = new Uint32Array(initialCapacity);
  private offsetClusters = new Uint32Array(initialCapacity);
  private dataCrc = new Uint32Array(initialCapacity);
  private cloneVersion = new Uint16Array(initialCapacity); // cloneId << 8 | scoVersion
  private tlogSeq = new Float64Array(initialCapacity);
  private entryIndex = new Uint32Array(initialCapacity);
  /** Reused by the commit iterator: its consumer must not keep it. */
  private readonly scratch: MapUpdate = [0, { cloneId: 0, scoNumber: 0, scoVersion: 0, offsetClusters: 0, dataCrc: 0 }, 0];

  /** Addresses with an uncommitted update. */
  get size(): number {
    return this.latest.size;
  }

  /** Records an update of `address` (scoNumber 0 = unmapped: reads as zeros), described by TLog entry (tlogSeq, entryIndex). */
  set(address: number, location: ClusterLocation, tlogSeq: number, entryIndex: number): void {
    this.setRow(address, location.scoNumber, location.offsetClusters, location.dataCrc, (location.cloneId << 8) | location.scoVersion, tlogSeq, entryIndex);
  }

  /** set() of a location in clone 0, version 0, without building its object: the write path's per-cluster call. */
  setWritten(address: number, scoNumber: number, offsetClusters: number, dataCrc: number, tlogSeq: number, entryIndex: number): void {
    this.setRow(address, scoNumber, offsetClusters, dataCrc, 0, tlogSeq, entryIndex);
  }

  private setRow(address: number, scoNumber: number, offsetClusters: number, dataCrc: number, cloneVersion: number, tlogSeq: number, entryIndex: number): void {
    if (this.length > 0) {
      const previousSeq = this.tlogSeq[this.length - 1]!;
      assert(previousSeq < tlogSeq || (previousSeq === tlogSeq && this.entryIndex[this.length - 1]! <= entryIndex), "map updates out of TLog order");
    }
    if (this.length === this.capacity) this.grow();
    const row = this.length++;
    this.address[row] = address;
    this.scoNumber[row] = scoNumber;
    this.offsetClusters[row] = offsetClusters;
    this.dataCrc[row] = dataCrc;
    this.cloneVersion[row] = cloneVersion;
    this.tlogSeq[row] = tlogSeq;
    this.entryIndex[row] = entryIndex;
    this.latest.set(address, this.base + row);
  }

  /**
   * The newest uncommitted location of `address`: undefined when there is none (ask the metadata store),
   * zeroLocation when it was unmapped.
   */
  get(address: number): ClusterLocation | undefined {
    const global = this.latest.get(address);
    if (global === undefined) return undefined;
    const row = global - this.base;
    const scoNumber = this.scoNumber[row]!;
    if (scoNumber === 0) return zeroLocation;
    const cloneVersion = this.cloneVersion[row]!;
    return { cloneId: cloneVersion >> 8, scoNumber, scoVersion: cloneVersion & 0xff, offsetClusters: this.offsetClusters[row]!, dataCrc: this.dataCrc[row]! };
  }

  /** The newest uncommitted SCO number of each address in [first, end) that has one (0: unmapped). */
  scoNumbersInRange(first: number, end: number): Map<number, number> {
    const found = new Map<number, number>();
    for (const [address, global] of this.latest.entries()) {
      if (address >= first && address < end) found.set(address, this.scoNumber[global - this.base]!);
    }
    return found;
  }

  /** Addresses in [first, end) whose newest uncommitted update maps them (not unmapped). */
  *mappedAddressesInRange(first: number, end: number): Generator<number> {
    for (const [address, global] of this.latest.entries()) {
      if (address >= first && address < end && this.scoNumber[global - this.base] !== 0) yield address;
    }
  }

  /** Number of leading updates covered by `cork` (their TLog entries are durable). */
  coveredCount(cork: Cork): number {
    let count = 0;
    while (count < this.length) {
      const seq = this.tlogSeq[count]!;
      if (seq > cork.seq || (seq === cork.seq && this.entryIndex[count]! >= cork.entryCount)) break;
      count++;
    }
    return count;
  }

  /**
   * The first `count` updates in TLog order, as [address, location, TLog seq]: every replacement of an
   * address, oldest first (later ones win; the metadata store moves replaced values that a snapshot
   * still sees to its history). The triple and the location are reused between steps: copy what must
   * be kept.
   */
  *updates(count: number): Generator<MapUpdate> {
    assert(count <= this.length);
    const startBase = this.base;
    const location = this.scratch[1];
    for (let row = 0; row < count; row++) {
      assert(this.base === startBase, "the map updates were dropped during a commit");
      this.scratch[0] = this.address[row]!;
      location.scoNumber = this.scoNumber[row]!;
      location.offsetClusters = this.offsetClusters[row]!;
      location.dataCrc = this.dataCrc[row]!;
      location.cloneId = this.cloneVersion[row]! >> 8;
      location.scoVersion = this.cloneVersion[row]! & 0xff;
      this.scratch[2] = this.tlogSeq[row]!;
      yield this.scratch;
    }
  }

  /** Forgets the first `count` updates (committed): addresses with no newer update leave the map. */
  drop(count: number): void {
    assert(count <= this.length);
    for (let row = 0; row < count; row++) {
      this.latest.deleteIfValue(this.address[row]!, this.base + row); // unless a newer update replaced it
    }
    this.latest.compact();
    const rest = this.length - count;
    if (rest > 0) {
      for (const column of this.columns()) column.copyWithin(0, count, this.length);
    }
    this.base += count;
    this.length = rest;
    // Shrink only from a large capacity that is mostly unused: resizing in step with every commit would
    // reallocate the columns (external memory, which makes V8 collect) over and over.
    if (this.capacity > shrinkAboveRows && rest < this.capacity / 8) this.resize(Math.max(shrinkAboveRows, this.capacity / 2));
  }

  private columns(): Array<Float64Array | Uint32Array | Uint16Array> {
    return [this.address, this.scoNumber, this.offsetClusters, this.dataCrc, this.cloneVersion, this.tlogSeq, this.entryIndex];
  }

  private grow(): void {
    this.resize(this.capacity * 2);
  }

  private resize(capacity: number): void {
    const copy = <T extends Float64Array | Uint32Array | Uint16Array>(old: T, make: (n: number) => T): T => {
      const next = make(capacity);
      next.set(old.subarray(0, this.length));
      return next;
    };
    this.address = copy(this.address, (n) => new Float64Array(n));
    this.scoNumber = copy(this.scoNumber, (n) => new Uint32Array(n));
    this.offsetClusters = copy(this.offsetClusters, (n) => new Uint32Array(n));
    this.dataCrc = copy(this.dataCrc, (n) => new Uint32Array(n));
    this.cloneVersion = copy(this.cloneVersion, (n) => new Uint16Array(n));
    this.tlogSeq = copy(this.tlogSeq, (n) => new Float64Array(n));
    this.entryIndex = copy(this.entryIndex, (n) => new Uint32Array(n));
    this.capacity = capacity;
  }
}
