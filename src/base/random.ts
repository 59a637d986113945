// A small seeded random generator (mulberry32), so tests and simulations replay from their seed: the
// ALBA placement's tie-breaks, the model tests' operation streams. Not for anything secret (use
// node:crypto for nonces and ids).

/** A random number in [0, 1). */
export type RandomSource = () => number;

/** mulberry32: a small seeded generator, so tests and simulations replay from their seed. */
export function seededRandom(seed: number): RandomSource {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
