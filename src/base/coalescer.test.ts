import { describe, expect, it } from "vitest";
import { Coalescer } from "./coalescer.js";

function deferred(): { promise: Promise<void>; resolve: () => void; reject: (e: unknown) => void } {
  let resolve!: () => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

describe("Coalescer", () => {
  it("shares a queued run between callers and runs once more after a running one", async () => {
    const gates: Array<ReturnType<typeof deferred>> = [];
    const seen: number[] = [];
    let state = 0;
    const coalescer = new Coalescer(async () => {
      seen.push(state);
      const gate = deferred();
      gates.push(gate);
      await gate.promise;
    });
    state = 1;
    const first = coalescer.run();
    await Promise.resolve(); // the first run starts
    await Promise.resolve();
    expect(seen).toEqual([1]);
    state = 2;
    const second = coalescer.run();
    state = 3;
    const third = coalescer.run();
    expect(third).toBe(second); // queued behind the running one: shared
    gates[0]!.resolve();
    await first;
    await new Promise((resolve) => setImmediate(resolve));
    expect(seen).toEqual([1, 3]); // the shared run saw the state of the later call
    gates[1]!.resolve();
    await second;
    expect(gates.length).toBe(2);
  });

  it("rejects the callers of a failed run and starts a new run for later calls", async () => {
    let fail = true;
    let runs = 0;
    const coalescer = new Coalescer(async () => {
      runs++;
      if (fail) throw new Error("boom");
    });
    await expect(coalescer.run()).rejects.toThrow("boom");
    fail = false;
    await coalescer.run();
    expect(runs).toBe(2);
    await coalescer.settled();
  });
});
