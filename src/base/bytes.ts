// Little-endian stores into byte arrays for the per-cluster hot paths (TLog entries, map pages): plain
// typed-array stores, which V8 compiles to a few instructions, where Buffer.writeUInt32LE checks its
// arguments on every call (~9 % of the main thread under sequential writes, in the TLog encoder alone).
// The caller passes values in range: a store keeps the low bits of each shift, silently.

/** Little-endian uint32 at target[offset] (value in [0, 2^32)). */
export function storeUint32(target: Uint8Array, offset: number, value: number): void {
  target[offset] = value;
  target[offset + 1] = value >>> 8;
  target[offset + 2] = value >>> 16;
  target[offset + 3] = value >>> 24;
}

/** Little-endian uint16 at target[offset] (value in [0, 2^16)). */
export function storeUint16(target: Uint8Array, offset: number, value: number): void {
  target[offset] = value;
  target[offset + 1] = value >>> 8;
}
