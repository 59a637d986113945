// Assertions that stay on in production (STYLE.md, TigerBeetle): a broken invariant is a bug, and the
// process crashes and recovers from disk rather than go on with corrupt state. Operating errors (bad
// input, ENOSPC, a lost peer) are not assertions: they are OvsErrors from errors.ts.
// Imported by every layer.

export class AssertionError extends Error {
  override name = "AssertionError";
}

export function assert(condition: unknown, message = "assertion failed"): asserts condition {
  if (!condition) throw new AssertionError(message);
}

export function unreachable(value: never, message = "unreachable"): never {
  throw new AssertionError(`${message}: ${String(value)}`);
}
