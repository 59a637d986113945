// Test-only: a tiny, slow and independent Reed-Solomon reference over GF(2^8) (polynomial 0x11d,
// generator 2) with the Cauchy matrix ISA-L's gf_gen_cauchy1_matrix defines (rows k..k+m-1, column j:
// 1/(i xor j)). Written from the definitions, sharing no code with ISA-L, to cross-check the addon's
// parity bytes in tests. Also a seeded byte generator. Not exported from index.ts; used by tests only.

const exp = new Uint8Array(512);
const log = new Uint8Array(256);
{
  let x = 1;
  for (let i = 0; i < 255; i++) {
    exp[i] = x;
    log[x] = i;
    x <<= 1;
    if (x & 0x100) x ^= 0x11d;
  }
  for (let i = 255; i < 512; i++) exp[i] = exp[i - 255]!;
}

export function gfMul(a: number, b: number): number {
  return a === 0 || b === 0 ? 0 : exp[log[a]! + log[b]!]!;
}

export function gfInv(a: number): number {
  if (a === 0) throw new Error("0 has no inverse");
  return exp[255 - log[a]!]!;
}

/** The (k+m)×k Cauchy matrix, row-major. */
export function referenceCauchyMatrix(k: number, m: number): Uint8Array {
  const matrix = new Uint8Array((k + m) * k);
  for (let i = 0; i < k; i++) matrix[i * k + i] = 1;
  for (let i = k; i < k + m; i++) for (let j = 0; j < k; j++) matrix[i * k + j] = gfInv(i ^ j);
  return matrix;
}

/** The m parity fragments of `data` (k fragments of `sizeBytes`). */
export function referenceParity(data: readonly Uint8Array[], m: number, sizeBytes: number): Uint8Array[] {
  const k = data.length;
  const matrix = referenceCauchyMatrix(k, m);
  const parity: Uint8Array[] = [];
  for (let p = 0; p < m; p++) {
    const out = new Uint8Array(sizeBytes);
    for (let j = 0; j < k; j++) {
      const coefficient = matrix[(k + p) * k + j]!;
      const source = data[j]!;
      for (let b = 0; b < sizeBytes; b++) out[b]! ^= gfMul(coefficient, source[b]!);
    }
    parity.push(out);
  }
  return parity;
}

/** Deterministic pseudo-random bytes (xorshift32) for a seed. */
export function seededBytes(seed: number, sizeBytes: number): Buffer {
  const out = Buffer.allocUnsafe(sizeBytes);
  let state = seed >>> 0 || 0x9e3779b9;
  for (let i = 0; i < sizeBytes; i++) {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    out[i] = state & 0xff;
  }
  return out;
}

/** A seeded generator of integers in [0, bound). */
export function seededIntegers(seed: number): (bound: number) => number {
  let state = seed >>> 0 || 0x9e3779b9;
  return (bound: number) => {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state % bound;
  };
}

/** Every subset of `size` elements of [0, n), in lexicographic order. */
export function combinations(n: number, size: number): number[][] {
  const result: number[][] = [];
  const current: number[] = [];
  const visit = (start: number): void => {
    if (current.length === size) {
      result.push([...current]);
      return;
    }
    for (let i = start; i < n; i++) {
      current.push(i);
      visit(i + 1);
      current.pop();
    }
  };
  visit(0);
  return result;
}
