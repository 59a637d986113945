// A FIFO of socket chunks that binary-protocol connections (the NBD server, the ASD server and client)
// parse from without needless copies: a header that lies within one chunk is read in place, a payload
// within one chunk is handed out as a view, and only what spans chunks is copied.
// Buffers: push() takes ownership of the chunk (the caller must not modify it afterwards; Node's
// socket chunks are never reused). Views returned by take() share memory with those chunks.
// Limits: the queue holds what the socket delivered; the connection bounds it by pausing the socket.

import { assert } from "./assert.js";

export class ChunkQueue {
  private chunks: Array<Buffer | undefined> = [];
  /** Index of the first chunk with unread bytes; chunks before it are spent. */
  private headIndex = 0;
  /** Read position inside chunks[headIndex]. */
  private headOffset = 0;
  /** Unread bytes in the queue. */
  byteCount = 0;

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.byteCount += chunk.length;
  }

  /**
   * The chunk holding the next byte and the offset of that byte in it, if at least `byteCount` bytes
   * are contiguous there; else undefined. Does not consume.
   */
  contiguous(byteCount: number): Buffer | undefined {
    const head = this.chunks[this.headIndex];
    if (head === undefined || head.length - this.headOffset < byteCount) return undefined;
    return head;
  }

  /** Offset of the next unread byte inside the chunk that contiguous() returned. */
  get offsetInHead(): number {
    return this.headOffset;
  }

  /**
   * Removes and returns the next `byteCount` bytes: a view when they lie in one chunk, else a copy
   * (into `scratch` when it is given and large enough, which the caller then owns until it reuses it).
   */
  take(byteCount: number, scratch?: Buffer): Buffer {
    assert(byteCount <= this.byteCount, "ChunkQueue.take: not enough bytes");
    const head = this.chunks[this.headIndex];
    if (head !== undefined && head.length - this.headOffset >= byteCount) {
      const view = head.subarray(this.headOffset, this.headOffset + byteCount);
      this.skip(byteCount);
      return view;
    }
    const target = scratch !== undefined && scratch.length >= byteCount ? scratch.subarray(0, byteCount) : Buffer.allocUnsafe(byteCount);
    this.copyInto(target, 0, byteCount);
    return target;
  }

  /**
   * Removes the next `byteCount` bytes and returns them as views of the chunks that hold them, in order
   * (no copy; they keep those chunks alive while referenced).
   */
  takeViews(byteCount: number): Buffer[] {
    assert(byteCount <= this.byteCount, "ChunkQueue.takeViews: not enough bytes");
    const views: Buffer[] = [];
    let left = byteCount;
    while (left > 0) {
      const head = this.chunks[this.headIndex]!;
      const n = Math.min(head.length - this.headOffset, left);
      views.push(head.subarray(this.headOffset, this.headOffset + n));
      left -= n;
      this.skip(n);
    }
    return views;
  }

  /** Moves the next `byteCount` bytes into target[targetOffset...] and consumes them. */
  copyInto(target: Buffer, targetOffset: number, byteCount: number): void {
    assert(byteCount <= this.byteCount && targetOffset + byteCount <= target.length, "ChunkQueue.copyInto: out of bounds");
    let copiedBytes = 0;
    while (copiedBytes < byteCount) {
      const head = this.chunks[this.headIndex]!;
      const n = Math.min(head.length - this.headOffset, byteCount - copiedBytes);
      head.copy(target, targetOffset + copiedBytes, this.headOffset, this.headOffset + n);
      copiedBytes += n;
      this.skip(n);
    }
  }

  /** Discards the next `byteCount` bytes (at most byteCount of what is queued). */
  skip(byteCount: number): void {
    assert(byteCount <= this.byteCount, "ChunkQueue.skip: not enough bytes");
    this.byteCount -= byteCount;
    let left = byteCount;
    while (left > 0) {
      const head = this.chunks[this.headIndex]!;
      const available = head.length - this.headOffset;
      if (left < available) {
        this.headOffset += left;
        return;
      }
      left -= available;
      this.chunks[this.headIndex] = undefined; // drop the reference now
      this.headIndex++;
      this.headOffset = 0;
    }
    const head = this.chunks[this.headIndex];
    if (head !== undefined && this.headOffset === head.length) {
      this.chunks[this.headIndex] = undefined;
      this.headIndex++;
      this.headOffset = 0;
    }
    if (this.headIndex === this.chunks.length) {
      this.chunks.length = 0;
      this.headIndex = 0;
    } else if (this.headIndex >= 64) {
      this.chunks = this.chunks.slice(this.headIndex);
      this.headIndex = 0;
    }
  }

  clear(): void {
    this.chunks = [];
    this.headIndex = 0;
    this.headOffset = 0;
    this.byteCount = 0;
  }
}
