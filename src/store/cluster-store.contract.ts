// The ClusterStore contract suite: one set of vitest tests that every implementation must pass
// (EmbeddedStore in embedded-store.test.ts; the etcd store in its own test). Imported only by tests.
//
// `makeStore` must return a fresh, empty store for each test; the suite closes it after the test.
// Nothing here depends on an implementation's internals: only on the interface, its documented limits
// and its error codes. Watch delivery is asynchronous in general (etcd), so the watch tests wait for
// events with a deadline (watchWaitMs) instead of expecting them on return of the mutating call.

import { afterEach, describe, expect, it } from "vitest";
import { MiB, OvsError, isOvsError, type ErrorCode } from "../base/index.js";
import {
  compareKeys,
  keyBytesMax,
  leaseTtlMsMax,
  leaseTtlMsMin,
  multiGetKeysMax,
  rangeLimitMax,
  rangeResultBytesMax,
  sequenceAssertsMax,
  sequenceOperationsMax,
  sequencePayloadBytesMax,
  valueBytesMax,
  type ClusterStore,
  type Entry,
  type SequenceOperation,
  type WatchEvent,
} from "./cluster-store.js";

/** How long a watch test waits for an event before failing. */
const watchWaitMs = 10_000;

const text = (value: string): Buffer => Buffer.from(value, "utf8");
const keysOf = (entries: Entry[]): string[] => entries.map((entry) => entry.key);

async function expectCode(promise: Promise<unknown> | (() => unknown), code: ErrorCode, messagePattern?: RegExp): Promise<OvsError> {
  let caught: unknown;
  try {
    await (typeof promise === "function" ? promise() : promise);
  } catch (error) {
    caught = error;
  }
  expect(caught, `expected OvsError ${code}`).toBeInstanceOf(OvsError);
  expect((caught as OvsError).code).toBe(code);
  if (messagePattern !== undefined) expect((caught as OvsError).message).toMatch(messagePattern);
  return caught as OvsError;
}

async function putAll(store: ClusterStore, keys: readonly string[]): Promise<void> {
  for (let index = 0; index < keys.length; index += sequenceOperationsMax) {
    const chunk = keys.slice(index, index + sequenceOperationsMax);
    await store.sequence([], chunk.map((key) => ({ kind: "put", key, value: text(`v:${key}`) })));
  }
}

/** Every entry of the store, by paging through prefix("") with the given page size. */
async function everything(store: ClusterStore, limit = rangeLimitMax): Promise<Entry[]> {
  const all: Entry[] = [];
  let after: string | undefined;
  while (true) {
    const page = await store.prefix("", { limit, ...(after === undefined ? {} : { after }) });
    all.push(...page.entries);
    if (!page.more) return all;
    after = page.entries[page.entries.length - 1]!.key;
  }
}

async function waitFor(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + watchWaitMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${watchWaitMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function eventSummary(event: WatchEvent): string {
  return event.type === "put" ? `put ${event.key}=${event.value.toString("utf8")}` : `delete ${event.key}`;
}

export function clusterStoreContract(name: string, makeStore: () => Promise<ClusterStore>): void {
  describe(`ClusterStore contract: ${name}`, () => {
    let opened: ClusterStore[] = [];
    const fresh = async (): Promise<ClusterStore> => {
      const store = await makeStore();
      opened.push(store);
      return store;
    };
    afterEach(async () => {
      for (const store of opened) await store.close();
      opened = [];
    });

    describe("get, put, exists, delete", () => {
      it("returns undefined for a missing key and the value after a put", async () => {
        const store = await fresh();
        expect(await store.get("missing")).toBeUndefined();
        expect(await store.exists("missing")).toBe(false);
        await store.put("a", text("one"));
        expect((await store.get("a"))?.toString()).toBe("one");
        expect(await store.exists("a")).toBe(true);
        await store.put("a", text("two"));
        expect((await store.get("a"))?.toString()).toBe("two");
      });

      it("keeps empty values and every byte value exactly", async () => {
        const store = await fresh();
        const allBytes = Buffer.from(Array.from({ length: 256 }, (_, index) => index));
        await store.put("empty", new Uint8Array(0));
        await store.put("bytes", allBytes);
        await store.put("plain", new Uint8Array([1, 2, 3]));
        const empty = await store.get("empty");
        expect(empty).toBeDefined();
        expect(empty!.length).toBe(0);
        expect(await store.exists("empty")).toBe(true);
        expect(Buffer.compare((await store.get("bytes"))!, allBytes)).toBe(0);
        expect([...(await store.get("plain"))!]).toEqual([1, 2, 3]);
      });

      it("hands out Buffers the caller owns and copies what it is given", async () => {
        const store = await fresh();
        const input = text("original");
        await store.put("k", input);
        input.fill(0);
        const first = (await store.get("k"))!;
        expect(first.toString()).toBe("original");
        first.fill(0x41);
        const second = (await store.get("k"))!;
        expect(second.toString()).toBe("original");
        const [fromMultiGet] = await store.multiGet(["k"]);
        const page = await store.prefix("", { limit: 10 });
        fromMultiGet!.fill(0x42);
        page.entries[0]!.value.fill(0x43);
        expect((await store.get("k"))!.toString()).toBe("original");
        expect(second.toString()).toBe("original");
      });

      it("delete reports whether the key existed", async () => {
        const store = await fresh();
        await store.put("k", text("v"));
        expect(await store.delete("k")).toBe(true);
        expect(await store.get("k")).toBeUndefined();
        expect(await store.delete("k")).toBe(false);
        expect(await store.exists("k")).toBe(false);
      });

      it("multiGet returns values in order with undefined for missing keys", async () => {
        const store = await fresh();
        await store.put("x", text("1"));
        await store.put("z", text("3"));
        const values = await store.multiGet(["z", "y", "x", "z"]);
        expect(values.map((value) => value?.toString())).toEqual(["3", undefined, "1", "3"]);
        expect(await store.multiGet([])).toEqual([]);
      });

      it(`multiGet refuses more than multiGetKeysMax (${multiGetKeysMax}) keys`, async () => {
        const store = await fresh();
        const keys = Array.from({ length: multiGetKeysMax }, (_, index) => `k${index}`);
        expect((await store.multiGet(keys)).length).toBe(multiGetKeysMax);
        await expectCode(store.multiGet([...keys, "one-more"]), "INVALID_ARGUMENT");
      });

      it("reads after a mutation resolved see it (read your writes)", async () => {
        const store = await fresh();
        for (let index = 0; index < 20; index++) {
          await store.put("counter", text(String(index)));
          expect((await store.get("counter"))!.toString()).toBe(String(index));
        }
      });
    });

    describe("key order and ranges", () => {
      it("orders keys by their UTF-8 bytes, not by UTF-16 code units", async () => {
        const store = await fresh();
        // UTF-16 puts "😀" (D83D…) before "\uFFFD"; UTF-8 puts EF BF BD before F0 9F 98 80.
        const keys = ["b", "a", "a\u0000", "é", "\uFFFD", "😀", "aa", "A", "\u007f"];
        await putAll(store, keys);
        const expected = [...keys].sort(compareKeys);
        expect(expected.indexOf("\uFFFD")).toBeLessThan(expected.indexOf("😀"));
        expect(keysOf(await everything(store))).toEqual(expected);
        expect(keysOf((await store.range({ limit: 100, reverse: true })).entries)).toEqual([...expected].reverse());
      });

      it("an empty prefix lists every key; a prefix matching nothing lists nothing", async () => {
        const store = await fresh();
        expect(await store.prefix("", { limit: 10 })).toEqual({ entries: [], more: false });
        await putAll(store, ["a/1", "a/2", "b/1"]);
        expect(keysOf((await store.prefix("", { limit: 10 })).entries)).toEqual(["a/1", "a/2", "b/1"]);
        expect(await store.prefix("c/", { limit: 10 })).toEqual({ entries: [], more: false });
        const page = await store.prefix("a/", { limit: 10 });
        expect(keysOf(page.entries)).toEqual(["a/1", "a/2"]);
        expect(page.entries[1]!.value.toString()).toBe("v:a/2");
        expect(page.more).toBe(false);
      });

      it("a prefix includes the key equal to it and keys under multi-byte characters", async () => {
        const store = await fresh();
        const top = "z\u{10FFFF}"; // UTF-8 7A F4 8F BF BF: the prefix end must carry over the high bytes
        await putAll(store, [top, `${top}a`, `${top}\u{10FFFF}`, "z", "{", `z\uFFFF`]);
        expect(keysOf((await store.prefix(top, { limit: 10 })).entries)).toEqual([top, `${top}a`, `${top}\u{10FFFF}`]);
        expect(keysOf((await store.prefix("z", { limit: 10 })).entries)).toEqual(["z", "z\uFFFF", top, `${top}a`, `${top}\u{10FFFF}`]);
      });

      it("pages through more entries than the limit with `after`", async () => {
        const store = await fresh();
        const keys = Array.from({ length: 250 }, (_, index) => `p/${String(index).padStart(4, "0")}`);
        await putAll(store, [...keys, "q/outside", "o/outside"]);
        const sizes: number[] = [];
        const seen: string[] = [];
        let after: string | undefined;
        while (true) {
          const page = await store.prefix("p/", { limit: 100, ...(after === undefined ? {} : { after }) });
          sizes.push(page.entries.length);
          seen.push(...keysOf(page.entries));
          if (!page.more) break;
          after = page.entries[page.entries.length - 1]!.key;
        }
        expect(sizes).toEqual([100, 100, 50]);
        expect(seen).toEqual(keys);
        expect(keysOf(await everything(store, 7))).toEqual(["o/outside", ...keys, "q/outside"]);
      });

      it("more is false when the entries fill the limit exactly", async () => {
        const store = await fresh();
        await putAll(store, ["k1", "k2", "k3"]);
        expect((await store.prefix("k", { limit: 3 })).more).toBe(false);
        const two = await store.prefix("k", { limit: 2 });
        expect(keysOf(two.entries)).toEqual(["k1", "k2"]);
        expect(two.more).toBe(true);
        expect(await store.prefix("k", { limit: 2, after: "k3" })).toEqual({ entries: [], more: false });
      });

      it("range covers first (inclusive) to last (exclusive), forward and reverse, with paging", async () => {
        const store = await fresh();
        const keys = ["a", "b", "c", "d", "e", "f"];
        await putAll(store, keys);
        expect(keysOf((await store.range({ first: "b", last: "e", limit: 10 })).entries)).toEqual(["b", "c", "d"]);
        expect(keysOf((await store.range({ first: "bb", last: "e", limit: 10 })).entries)).toEqual(["c", "d"]);
        expect(keysOf((await store.range({ first: "c", limit: 10 })).entries)).toEqual(["c", "d", "e", "f"]);
        expect(keysOf((await store.range({ last: "c", limit: 10 })).entries)).toEqual(["a", "b"]);
        expect(keysOf((await store.range({ limit: 10 })).entries)).toEqual(keys);
        expect(keysOf((await store.range({ first: "b", last: "e", limit: 10, reverse: true })).entries)).toEqual(["d", "c", "b"]);
        expect(keysOf((await store.range({ first: "b", last: "dd", limit: 10, reverse: true })).entries)).toEqual(["d", "c", "b"]);
        expect(keysOf((await store.range({ limit: 10, reverse: true })).entries)).toEqual([...keys].reverse());
        expect(await store.range({ first: "c", last: "c", limit: 10 })).toEqual({ entries: [], more: false });
        expect(await store.range({ first: "d", last: "b", limit: 10 })).toEqual({ entries: [], more: false });
        expect(await store.range({ last: "", limit: 10 })).toEqual({ entries: [], more: false });

        const forward = await store.range({ first: "b", last: "f", limit: 2 });
        expect(keysOf(forward.entries)).toEqual(["b", "c"]);
        expect(forward.more).toBe(true);
        const forwardNext = await store.range({ first: "b", last: "f", limit: 2, after: "c" });
        expect(keysOf(forwardNext.entries)).toEqual(["d", "e"]);
        expect(forwardNext.more).toBe(false);

        const reverse = await store.range({ first: "b", last: "f", limit: 2, reverse: true });
        expect(keysOf(reverse.entries)).toEqual(["e", "d"]);
        expect(reverse.more).toBe(true);
        const reverseNext = await store.range({ first: "b", last: "f", limit: 2, reverse: true, after: "d" });
        expect(keysOf(reverseNext.entries)).toEqual(["c", "b"]);
        expect(reverseNext.more).toBe(false);
        const reverseFromMissing = await store.range({ limit: 10, reverse: true, after: "cc" });
        expect(keysOf(reverseFromMissing.entries)).toEqual(["c", "b", "a"]);
      });

      it("pages backwards through more entries than the limit", async () => {
        const store = await fresh();
        const keys = Array.from({ length: 130 }, (_, index) => `r${String(index).padStart(3, "0")}`);
        await putAll(store, keys);
        const seen: string[] = [];
        let after: string | undefined;
        while (true) {
          const page = await store.range({ first: "r", last: "s", limit: 50, reverse: true, ...(after === undefined ? {} : { after }) });
          seen.push(...keysOf(page.entries));
          if (!page.more) break;
          after = page.entries[page.entries.length - 1]!.key;
        }
        expect(seen).toEqual([...keys].reverse());
      });

      it(`enforces the limit: 1..rangeLimitMax (${rangeLimitMax})`, async () => {
        const store = await fresh();
        const keys = Array.from({ length: rangeLimitMax + 5 }, (_, index) => `l${String(index).padStart(5, "0")}`);
        await putAll(store, keys);
        const page = await store.prefix("l", { limit: rangeLimitMax });
        expect(page.entries.length).toBe(rangeLimitMax);
        expect(page.more).toBe(true);
        await expectCode(store.prefix("l", { limit: rangeLimitMax + 1 }), "INVALID_ARGUMENT", /limit/);
        await expectCode(store.range({ limit: rangeLimitMax + 1 }), "INVALID_ARGUMENT", /limit/);
        await expectCode(store.range({ limit: 0 }), "INVALID_ARGUMENT");
        await expectCode(store.prefix("", { limit: 1.5 }), "INVALID_ARGUMENT");
        await expectCode(store.prefix("", {} as { limit: number }), "INVALID_ARGUMENT");
      });

      it(`ends a page early once it holds rangeResultBytesMax (${rangeResultBytesMax}) bytes`, async () => {
        const store = await fresh();
        const big = Buffer.alloc(valueBytesMax, 7);
        const count = Math.ceil(rangeResultBytesMax / valueBytesMax) + 2;
        for (let index = 0; index < count; index++) await store.put(`big/${index}`, big);
        const first = await store.prefix("big/", { limit: count });
        expect(first.entries.length).toBeGreaterThan(0);
        expect(first.entries.length).toBeLessThan(count);
        expect(first.more).toBe(true);
        const rest = await store.prefix("big/", { limit: count, after: first.entries[first.entries.length - 1]!.key });
        expect(first.entries.length + rest.entries.length).toBe(count);
        expect(rest.more).toBe(false);
        expect(rest.entries.every((entry) => entry.value.equals(big))).toBe(true);
      });
    });

    describe("deletePrefix", () => {
      it("deletes exactly the keys under the prefix and counts them", async () => {
        const store = await fresh();
        await putAll(store, ["a", "a/1", "a/2", "a/2/x", "a0", "b/1"]);
        expect(await store.deletePrefix("a/")).toBe(3);
        expect(keysOf(await everything(store))).toEqual(["a", "a0", "b/1"]);
        expect(await store.deletePrefix("a/")).toBe(0);
        expect(await store.deletePrefix("nothing")).toBe(0);
      });

      it("an empty prefix deletes every key", async () => {
        const store = await fresh();
        const keys = Array.from({ length: 300 }, (_, index) => `k${index}`);
        await putAll(store, keys);
        expect(await store.deletePrefix("")).toBe(300);
        expect(await everything(store)).toEqual([]);
      });
    });

    describe("sequence and testAndSet", () => {
      it("applies every operation atomically when the asserts hold", async () => {
        const store = await fresh();
        await putAll(store, ["old/1", "old/2", "gone", "same"]);
        await store.sequence(
          [
            { kind: "equals", key: "same", value: text("v:same") },
            { kind: "absent", key: "new" },
            { kind: "exists", key: "gone" },
          ],
          [
            { kind: "put", key: "new", value: text("n") },
            { kind: "delete", key: "gone" },
            { kind: "deletePrefix", prefix: "old/" },
            { kind: "delete", key: "never-was" },
          ],
        );
        expect(keysOf(await everything(store))).toEqual(["new", "same"]);
        expect((await store.get("new"))!.toString()).toBe("n");
      });

      it("an empty sequence and an asserts-only sequence change nothing", async () => {
        const store = await fresh();
        await store.put("k", text("v"));
        await store.sequence([], []);
        await store.sequence([{ kind: "exists", key: "k" }], []);
        await expectCode(store.sequence([{ kind: "absent", key: "k" }], []), "ASSERT_FAILED", /"k"/);
        expect(keysOf(await everything(store))).toEqual(["k"]);
      });

      for (const [label, failing] of [
        ["equals on a different value", { kind: "equals", key: "guard", value: text("other") }],
        ["equals on a missing key", { kind: "equals", key: "missing-guard", value: text("x") }],
        ["absent on an existing key", { kind: "absent", key: "guard" }],
        ["exists on a missing key", { kind: "exists", key: "missing-guard" }],
      ] as const) {
        it(`a failed assert (${label}) throws ASSERT_FAILED naming the key and changes nothing`, async () => {
          const store = await fresh();
          await putAll(store, ["guard", "keep/1", "keep/2", "victim"]);
          const before = await everything(store);
          const error = await expectCode(
            store.sequence(
              [{ kind: "exists", key: "victim" }, failing],
              [
                { kind: "put", key: "added", value: text("x") },
                { kind: "put", key: "victim", value: text("changed") },
                { kind: "deletePrefix", prefix: "keep/" },
              ],
            ),
            "ASSERT_FAILED",
          );
          expect(error.message).toContain(failing.key);
          expect(await everything(store)).toEqual(before);
        });
      }

      it("testAndSet sets, replaces and deletes only when the current value is the expected one", async () => {
        const store = await fresh();
        expect(await store.testAndSet("t", undefined, text("1"))).toBe(true);
        expect(await store.testAndSet("t", undefined, text("x"))).toBe(false);
        expect((await store.get("t"))!.toString()).toBe("1");
        expect(await store.testAndSet("t", text("0"), text("x"))).toBe(false);
        expect(await store.testAndSet("t", text("1"), text("2"))).toBe(true);
        expect((await store.get("t"))!.toString()).toBe("2");
        expect(await store.testAndSet("t", text("2"), undefined)).toBe(true);
        expect(await store.exists("t")).toBe(false);
        expect(await store.testAndSet("t", text("2"), undefined)).toBe(false);
        expect(await store.testAndSet("t", undefined, undefined)).toBe(true);
      });

      it("concurrent testAndSet increments on one key lose no update", async () => {
        const store = await fresh();
        await store.put("counter", text("0"));
        const workers = 8;
        const incrementsEach = 10;
        const increment = async (): Promise<void> => {
          for (let done = 0; done < incrementsEach; ) {
            const current = (await store.get("counter"))!;
            if (await store.testAndSet("counter", current, text(String(Number(current.toString()) + 1)))) done++;
          }
        };
        await Promise.all(Array.from({ length: workers }, increment));
        expect((await store.get("counter"))!.toString()).toBe(String(workers * incrementsEach));
      });

      it("many concurrent puts all resolve and are all stored", async () => {
        const store = await fresh();
        const keys = Array.from({ length: 200 }, (_, index) => `c/${String(index).padStart(3, "0")}`);
        await Promise.all(keys.map((key) => store.put(key, text(`v:${key}`))));
        const all = await everything(store);
        expect(keysOf(all)).toEqual(keys);
        expect(all.every((entry) => entry.value.toString() === `v:${entry.key}`)).toBe(true);
      });

      it(`allows sequenceOperationsMax (${sequenceOperationsMax}) operations and refuses one more`, async () => {
        const store = await fresh();
        const operations = (count: number): SequenceOperation[] =>
          Array.from({ length: count }, (_, index) => ({ kind: "put", key: `s${index}`, value: text("v") }));
        await store.sequence([], operations(sequenceOperationsMax));
        expect((await everything(store)).length).toBe(sequenceOperationsMax);
        await store.deletePrefix("");
        await expectCode(store.sequence([], operations(sequenceOperationsMax + 1)), "INVALID_ARGUMENT", /operations/);
        const asserts = Array.from({ length: sequenceAssertsMax + 1 }, (_, index) => ({ kind: "absent" as const, key: `a${index}` }));
        await expectCode(store.sequence(asserts, []), "INVALID_ARGUMENT", /asserts/);
        expect(await everything(store)).toEqual([]);
      });

      it("refuses a sequence that touches a key twice", async () => {
        const store = await fresh();
        await store.put("p/x", text("v"));
        const cases: SequenceOperation[][] = [
          [{ kind: "put", key: "k", value: text("1") }, { kind: "put", key: "k", value: text("2") }],
          [{ kind: "put", key: "k", value: text("1") }, { kind: "delete", key: "k" }],
          [{ kind: "deletePrefix", prefix: "p/" }, { kind: "put", key: "p/y", value: text("1") }],
          [{ kind: "delete", key: "p/x" }, { kind: "deletePrefix", prefix: "p" }],
          [{ kind: "deletePrefix", prefix: "p" }, { kind: "deletePrefix", prefix: "p/" }],
        ];
        for (const operations of cases) await expectCode(store.sequence([], operations), "INVALID_ARGUMENT", /at most once/);
        expect(keysOf(await everything(store))).toEqual(["p/x"]);
      });

      it(`refuses a sequence carrying more than sequencePayloadBytesMax (${sequencePayloadBytesMax}) bytes`, async () => {
        const store = await fresh();
        const value = Buffer.alloc(valueBytesMax, 1);
        await store.sequence([], [{ kind: "put", key: "one", value }]);
        await expectCode(
          store.sequence([], [
            { kind: "put", key: "two", value },
            { kind: "put", key: "three", value },
          ]),
          "INVALID_ARGUMENT",
          /bytes/,
        );
        expect(keysOf(await everything(store))).toEqual(["one"]);
      });
    });

    describe("limits and bad input", () => {
      it(`keys are 1..keyBytesMax (${keyBytesMax}) UTF-8 bytes of well-formed text`, async () => {
        const store = await fresh();
        const longest = "k".repeat(keyBytesMax);
        await store.put(longest, text("v"));
        expect((await store.get(longest))!.toString()).toBe("v");
        expect(keysOf((await store.prefix("kkk", { limit: 1 })).entries)).toEqual([longest]);
        await expectCode(store.put("k".repeat(keyBytesMax + 1), text("v")), "INVALID_ARGUMENT", /bytes/);
        // 1334 three-byte characters: under keyBytesMax characters, over keyBytesMax bytes.
        await expectCode(store.put("€".repeat(Math.ceil((keyBytesMax + 1) / 3)), text("v")), "INVALID_ARGUMENT", /bytes/);
        await expectCode(store.get("k".repeat(keyBytesMax + 1)), "INVALID_ARGUMENT");
        await expectCode(store.put("", text("v")), "INVALID_ARGUMENT", /empty/);
        await expectCode(store.put("lone\uD800surrogate", text("v")), "INVALID_ARGUMENT", /surrogate/);
        await expectCode(store.put(42 as unknown as string, text("v")), "INVALID_ARGUMENT");
        await expectCode(store.prefix("k".repeat(keyBytesMax + 1), { limit: 1 }), "INVALID_ARGUMENT");
        expect(keysOf(await everything(store))).toEqual([longest]);
      });

      it(`values are at most valueBytesMax (${valueBytesMax / MiB} MiB): bulk data never goes into the store`, async () => {
        const store = await fresh();
        await store.put("largest", Buffer.alloc(valueBytesMax, 9));
        expect((await store.get("largest"))!.length).toBe(valueBytesMax);
        await expectCode(store.put("too-large", Buffer.alloc(valueBytesMax + 1)), "INVALID_ARGUMENT", /bulk data never goes into the store/);
        await expectCode(
          store.sequence([], [{ kind: "put", key: "too-large", value: Buffer.alloc(valueBytesMax + 1) }]),
          "INVALID_ARGUMENT",
          /bulk data/,
        );
        await expectCode(store.testAndSet("too-large", undefined, Buffer.alloc(valueBytesMax + 1)), "INVALID_ARGUMENT");
        await expectCode(store.put("not-bytes", "text" as unknown as Uint8Array), "INVALID_ARGUMENT");
        expect(await store.exists("too-large")).toBe(false);
      });

      it("refuses unknown assert and operation kinds", async () => {
        const store = await fresh();
        await expectCode(store.sequence([{ kind: "bogus", key: "k" } as never], []), "INVALID_ARGUMENT", /bogus/);
        await expectCode(store.sequence([], [{ kind: "bogus", key: "k" } as never]), "INVALID_ARGUMENT", /bogus/);
      });

      it("refuses every call after close with CLOSED, and close is idempotent", async () => {
        const store = await fresh();
        await store.put("k", text("v"));
        await store.close();
        await store.close();
        await expectCode(store.get("k"), "CLOSED");
        await expectCode(store.put("k", text("v")), "CLOSED");
        await expectCode(store.prefix("", { limit: 1 }), "CLOSED");
        await expectCode(() => store.watch("", () => undefined), "CLOSED");
      });
    });

    describe("watch", () => {
      it("delivers every committed change under the prefix, in commit order", async () => {
        const store = await fresh();
        await store.put("w/before", text("ignored"));
        const events: string[] = [];
        const watch = store.watch("w/", (event) => events.push(eventSummary(event)));
        await store.put("w/a", text("1"));
        await store.put("other", text("x"));
        await store.put("w/b", text("2"));
        await store.put("w/a", text("3"));
        expect(await store.delete("w/b")).toBe(true);
        expect(await store.delete("w/missing")).toBe(false);
        await store.sequence([{ kind: "exists", key: "w/a" }], [
          { kind: "put", key: "w/c", value: text("4") },
          { kind: "put", key: "elsewhere", value: text("5") },
        ]);
        await expectCode(store.sequence([{ kind: "absent", key: "w/a" }], [{ kind: "put", key: "w/failed", value: text("no") }]), "ASSERT_FAILED");
        expect(await store.testAndSet("w/a", text("3"), text("6"))).toBe(true);
        expect(await store.deletePrefix("w/")).toBe(3);
        await store.put("w/last", text("7"));
        const expected = [
          "put w/a=1",
          "put w/b=2",
          "put w/a=3",
          "delete w/b",
          "put w/c=4",
          "put w/a=6",
          "delete w/a",
          "delete w/before",
          "delete w/c",
          "put w/last=7",
        ];
        await waitFor(() => events.length >= expected.length, "the watch events");
        expect(events).toEqual(expected);
        watch.close();
      });

      it("an event's change is visible to reads when it is delivered", async () => {
        const store = await fresh();
        const checks: Array<Promise<boolean>> = [];
        const watch = store.watch("v/", (event) => {
          checks.push(store.get(event.key).then((value) => value !== undefined && event.type === "put" && value.equals(event.value)));
        });
        for (let index = 0; index < 20; index++) await store.put(`v/${index}`, text(String(index)));
        await waitFor(() => checks.length >= 20, "20 events");
        expect(await Promise.all(checks)).toEqual(Array.from({ length: 20 }, () => true));
        watch.close();
      });

      it("concurrent writers' events arrive in the order the store committed them", async () => {
        const store = await fresh();
        const events: WatchEvent[] = [];
        const watch = store.watch("", (event) => events.push(event));
        await Promise.all(
          Array.from({ length: 4 }, async (_, writer) => {
            for (let index = 0; index < 25; index++) await store.put(`c/${writer}`, text(String(index)));
          }),
        );
        await waitFor(() => events.length >= 100, "100 events");
        expect(events.length).toBe(100);
        for (let writer = 0; writer < 4; writer++) {
          const values = events.filter((event) => event.key === `c/${writer}`).map((event) => (event.type === "put" ? event.value.toString() : "?"));
          expect(values).toEqual(Array.from({ length: 25 }, (_, index) => String(index)));
        }
        // The last event of each key is its stored value.
        for (let writer = 0; writer < 4; writer++) expect((await store.get(`c/${writer}`))!.toString()).toBe("24");
        watch.close();
      });

      it("an empty prefix watches everything; close stops delivery; watches are independent", async () => {
        const store = await fresh();
        const all: string[] = [];
        const some: string[] = [];
        const watchAll = store.watch("", (event) => all.push(eventSummary(event)));
        const watchSome = store.watch("s", (event) => some.push(eventSummary(event)));
        await store.put("a", text("1"));
        await store.put("s1", text("2"));
        await waitFor(() => all.length >= 2 && some.length >= 1, "the first events");
        watchSome.close();
        watchSome.close();
        await store.put("s2", text("3"));
        await waitFor(() => all.length >= 3, "the third event");
        await store.put("marker", text("4"));
        await waitFor(() => all.length >= 4, "the marker event");
        expect(all).toEqual(["put a=1", "put s1=2", "put s2=3", "put marker=4"]);
        expect(some).toEqual(["put s1=2"]);
        watchAll.close();
      });

      it("a listener that throws does not disturb the store or other listeners", async () => {
        const store = await fresh();
        const seen: string[] = [];
        const bad = store.watch("", () => {
          throw new Error("listener bug");
        });
        const good = store.watch("", (event) => seen.push(event.key));
        await store.put("x", text("1"));
        await store.put("y", text("2"));
        await waitFor(() => seen.length >= 2, "two events");
        expect(seen).toEqual(["x", "y"]);
        expect((await store.get("y"))!.toString()).toBe("2");
        bad.close();
        good.close();
      });
    });

    describe("campaign, lock and status", () => {
      const ttlMs = 5_000;

      it("two candidates: exactly one leads, and resign hands over to the other", async () => {
        const store = await fresh();
        const changes: string[] = [];
        const first = await store.campaign("scheduler", "node-1", ttlMs);
        first.onChange((isLeader) => changes.push(`node-1 ${isLeader}`));
        await waitFor(() => first.isLeader(), "the first candidate to lead");
        const second = await store.campaign("scheduler", "node-2", ttlMs);
        second.onChange((isLeader) => changes.push(`node-2 ${isLeader}`));
        // Give a wrong second leader time to show up before checking there is none.
        await new Promise((resolve) => setTimeout(resolve, 300));
        expect([first.isLeader(), second.isLeader()]).toEqual([true, false]);
        expect(await store.leaderOf("scheduler")).toBe("node-1");
        await first.resign();
        expect(first.isLeader()).toBe(false);
        await waitFor(() => second.isLeader(), "the second candidate to lead");
        expect(first.isLeader()).toBe(false);
        expect(await store.leaderOf("scheduler")).toBe("node-2");
        expect(changes).toEqual(["node-1 false", "node-2 true"]);
        await first.resign();
        await second.resign();
        await waitFor(() => !second.isLeader(), "the second candidate to step down");
        expect(await store.leaderOf("scheduler")).toBeUndefined();
      });

      it("elections are independent of each other and of the key space", async () => {
        const store = await fresh();
        const a = await store.campaign("a", "x", ttlMs);
        const b = await store.campaign("b", "y", ttlMs);
        await waitFor(() => a.isLeader() && b.isLeader(), "both leaders");
        expect(await everything(store)).toEqual([]);
        await a.resign();
        await b.resign();
      });

      it("a lock is exclusive: a second taker waits, times out, and gets it after release", async () => {
        const store = await fresh();
        const held = await store.lock("volume/v1", ttlMs, 5_000);
        expect(held.isHeld()).toBe(true);
        const startedMs = Date.now();
        await expectCode(store.lock("volume/v1", ttlMs, 300), "TIMEOUT", /volume\/v1/);
        expect(Date.now() - startedMs).toBeGreaterThanOrEqual(250);
        const other = await store.lock("volume/v2", ttlMs, 5_000);
        expect(other.isHeld()).toBe(true);
        const waiting = store.lock("volume/v1", ttlMs, 10_000);
        await new Promise((resolve) => setTimeout(resolve, 200));
        await held.release();
        expect(held.isHeld()).toBe(false);
        const next = await waiting;
        expect(next.isHeld()).toBe(true);
        await next.release();
        await other.release();
        await held.release();
      });

      it("refuses bad campaign and lock arguments", async () => {
        const store = await fresh();
        await expectCode(store.campaign("e", "c", leaseTtlMsMin - 1), "INVALID_ARGUMENT", /ttlMs/);
        await expectCode(store.campaign("e", "c", leaseTtlMsMax + 1), "INVALID_ARGUMENT", /ttlMs/);
        await expectCode(store.campaign("", "c", ttlMs), "INVALID_ARGUMENT");
        await expectCode(store.campaign("e", "", ttlMs), "INVALID_ARGUMENT");
        await expectCode(store.lock("l", ttlMs, -1), "INVALID_ARGUMENT", /waitMs/);
      });

      it("close ends every campaign; calls after close are CLOSED", async () => {
        const store = await fresh();
        const campaign = await store.campaign("e", "c", ttlMs);
        await waitFor(() => campaign.isLeader(), "the leader");
        const lock = await store.lock("l", ttlMs, 1_000);
        let lost = false;
        lock.onLost(() => (lost = true));
        await store.close();
        expect(campaign.isLeader()).toBe(false);
        expect(lock.isHeld()).toBe(false);
        expect(lost).toBe(true);
        await expectCode(store.campaign("e", "c", ttlMs), "CLOSED");
        await expectCode(store.status(), "CLOSED");
      });

      it("status reports a healthy store with its size and no alarms", async () => {
        const store = await fresh();
        await store.put("k", text("v"));
        const status = await store.status();
        expect(status.healthy).toBe(true);
        expect(status.alarms).toEqual([]);
        expect(status.recovery).toBeUndefined();
        expect(status.dbSizeBytes).toBeGreaterThan(0);
        expect(status.members.length).toBeGreaterThanOrEqual(1);
        expect(status.members.filter((member) => member.isLeader).length).toBe(1);
        expect(status.leader).toBe(status.members.find((member) => member.isLeader)!.name);
        expect(status.description).toBe(store.description);
      });
    });

    it("reports errors as OvsError with a catalogue code", async () => {
      const store = await fresh();
      try {
        await store.put("", text("v"));
        expect.unreachable("an empty key must be refused");
      } catch (error) {
        expect(isOvsError(error, "INVALID_ARGUMENT")).toBe(true);
      }
    });
  });
}
