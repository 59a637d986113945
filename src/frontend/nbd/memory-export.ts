// An in-memory NbdExport: a sparse Map of 4 KiB blocks (absent = zeroes). For tests and quick
// benchmarks of the NBD server itself; it is not durable (flush and FUA are counted, not honoured).
// Imported by the NBD tests and, through index.ts, by anyone who needs a throwaway export.
// Buffers: read() returns a new Buffer the caller owns; write() copies `data` before it resolves,
// so it never keeps the server's (possibly chunk-sharing) Buffer.
// Fault injection: failNext(operation, error) makes the next call of that operation reject.
// Limits: memory grows with the blocks written, at most sizeBytes.

import { assert, OvsError } from "../../base/index.js";
import { extentsOfUnits } from "./block-status.js";
import type { NbdExport, NbdExportProvider } from "./nbd-export.js";
import type { BlockStatusExtent } from "./protocol.js";

const BLOCK_BYTES = 4096;

export type MemoryExportOperation = "read" | "write" | "flush" | "trim" | "writeZeroes";

export interface MemoryExportOptions {
  name: string;
  sizeBytes: number;
  description?: string;
  readOnly?: boolean;
  flushSemanticsAcrossConnections?: boolean;
}

export class MemoryExport implements NbdExport {
  readonly name: string;
  readonly description?: string;
  readonly readOnly: boolean;
  readonly flushSemanticsAcrossConnections: boolean;
  private size: number;
  private readonly blocks = new Map<number, Buffer>();
  private readonly failures = new Map<MemoryExportOperation, Error>();
  attachedCount = 0;
  flushCount = 0;
  fuaCount = 0;
  trimCount = 0;
  writeZeroesCount = 0;

  constructor(options: MemoryExportOptions) {
    assert(Number.isSafeInteger(options.sizeBytes) && options.sizeBytes >= 0, "MemoryExport: size");
    this.name = options.name;
    this.description = options.description;
    this.size = options.sizeBytes;
    this.readOnly = options.readOnly ?? false;
    this.flushSemanticsAcrossConnections = options.flushSemanticsAcrossConnections ?? true;
  }

  sizeBytes(): number {
    return this.size;
  }

  /** Grows the export (seen by connections made afterwards). */
  grow(sizeBytes: number): void {
    assert(sizeBytes >= this.size, "MemoryExport.grow: cannot shrink");
    this.size = sizeBytes;
  }

  failNext(operation: MemoryExportOperation, error: Error): void {
    this.failures.set(operation, error);
  }

  attach(): void {
    this.attachedCount++;
  }

  detach(): void {
    assert(this.attachedCount > 0, "MemoryExport.detach without attach");
    this.attachedCount--;
  }

  async read(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    this.injected("read");
    this.checkRange(offsetBytes, lengthBytes);
    const out = Buffer.alloc(lengthBytes);
    this.forEachBlock(offsetBytes, lengthBytes, (block, inBlock, outOffset, n) => {
      const stored = this.blocks.get(block);
      if (stored !== undefined) stored.copy(out, outOffset, inBlock, inBlock + n);
    });
    return out;
  }

  async write(offsetBytes: number, data: Buffer, fua: boolean): Promise<void> {
    this.injected("write");
    this.checkRange(offsetBytes, data.length);
    this.forEachBlock(offsetBytes, data.length, (block, inBlock, dataOffset, n) => {
      let stored = this.blocks.get(block);
      if (stored === undefined) {
        stored = Buffer.alloc(BLOCK_BYTES);
        this.blocks.set(block, stored);
      }
      data.copy(stored, inBlock, dataOffset, dataOffset + n);
    });
    if (fua) this.fuaCount++;
  }

  async flush(): Promise<void> {
    this.injected("flush");
    this.flushCount++;
  }

  async trim(offsetBytes: number, lengthBytes: number): Promise<void> {
    this.injected("trim");
    this.checkRange(offsetBytes, lengthBytes);
    this.trimCount++;
    this.zero(offsetBytes, lengthBytes);
  }

  async writeZeroes(offsetBytes: number, lengthBytes: number, _noHole: boolean, fua: boolean): Promise<void> {
    this.injected("writeZeroes");
    this.checkRange(offsetBytes, lengthBytes);
    this.writeZeroesCount++;
    this.zero(offsetBytes, lengthBytes);
    if (fua) this.fuaCount++;
  }

  /** Blocks written (and not wholly trimmed or zeroed) are data; the rest is reported as zero holes. */
  async blockStatus(offsetBytes: number, lengthBytes: number, extentCountMax: number): Promise<BlockStatusExtent[]> {
    this.checkRange(offsetBytes, lengthBytes);
    const first = Math.floor(offsetBytes / BLOCK_BYTES);
    const end = Math.ceil((offsetBytes + lengthBytes) / BLOCK_BYTES);
    const dataBlocks = [...this.blocks.keys()].filter((block) => block >= first && block < end).sort((a, b) => a - b);
    return extentsOfUnits(offsetBytes, lengthBytes, BLOCK_BYTES, dataBlocks, extentCountMax);
  }

  /** Number of 4 KiB blocks holding data. */
  get allocatedBlockCount(): number {
    return this.blocks.size;
  }

  private zero(offsetBytes: number, lengthBytes: number): void {
    this.forEachBlock(offsetBytes, lengthBytes, (block, inBlock, _offset, n) => {
      if (n === BLOCK_BYTES) this.blocks.delete(block);
      else this.blocks.get(block)?.fill(0, inBlock, inBlock + n);
    });
  }

  private injected(operation: MemoryExportOperation): void {
    const error = this.failures.get(operation);
    if (error !== undefined) {
      this.failures.delete(operation);
      throw error;
    }
  }

  private checkRange(offsetBytes: number, lengthBytes: number): void {
    if (offsetBytes < 0 || lengthBytes < 0 || offsetBytes + lengthBytes > this.size) {
      throw new OvsError("OUT_OF_RANGE", `range ${offsetBytes}+${lengthBytes} is past the end of export ${this.name} (${this.size} bytes)`);
    }
  }

  /** Calls fn(blockIndex, offsetInBlock, offsetInRange, byteCount) for each block piece of the range. */
  private forEachBlock(offsetBytes: number, lengthBytes: number, fn: (block: number, inBlock: number, rangeOffset: number, n: number) => void): void {
    let done = 0;
    while (done < lengthBytes) {
      const at = offsetBytes + done;
      const block = Math.floor(at / BLOCK_BYTES);
      const inBlock = at - block * BLOCK_BYTES;
      const n = Math.min(BLOCK_BYTES - inBlock, lengthBytes - done);
      fn(block, inBlock, done, n);
      done += n;
    }
  }
}

/** A provider over a fixed set of exports. */
export class StaticExportProvider implements NbdExportProvider {
  private readonly exports = new Map<string, NbdExport>();

  constructor(exports: NbdExport[]) {
    for (const nbdExport of exports) this.exports.set(nbdExport.name, nbdExport);
  }

  listExports(): Array<{ name: string; description?: string }> {
    return [...this.exports.values()].map((e) => ({ name: e.name, description: e.description }));
  }

  openExport(name: string): NbdExport | undefined {
    return this.exports.get(name);
  }
}
