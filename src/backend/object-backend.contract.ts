// The ObjectBackend contract suite: one set of vitest tests that every implementation must pass
// (LocalBackend now, the ALBA client later). Call objectBackendContract(name, makeBackend) from a
// *.test.ts file; it registers a describe block. Imported by tests only (it imports vitest).
//
// Each test gets a fresh backend from makeBackend and closes it afterwards; namespaces carry a random
// suffix, so an implementation backed by a shared service (ALBA) may hand out the same service to every
// test. Cleaning up whatever makeBackend created (directories, processes) is the caller's job.
// Limits: the largest object written is 4 MiB + 1 byte; listing tests write a few dozen objects.

import { randomBytes } from "node:crypto";
import { afterEach, beforeEach, describe, expect, it } from "vitest";

import { isOvsError, MiB, type ErrorCode } from "../base/index.js";
import { listLimitMax, type ObjectBackend } from "./object-backend.js";

/** Resolves if `promise` rejects with an OvsError of `code`; fails the test otherwise. */
export async function expectOvsError(promise: Promise<unknown>, code: ErrorCode): Promise<void> {
  let outcome: unknown = "resolved";
  try {
    await promise;
  } catch (error) {
    outcome = error;
  }
  if (!isOvsError(outcome, code)) {
    throw new Error(`expected OvsError ${code}, got ${outcome instanceof Error ? `${outcome.name}: ${outcome.message}` : String(outcome)}`);
  }
}

function randomData(sizeBytes: number): Buffer {
  return randomBytes(sizeBytes);
}

export function objectBackendContract(name: string, makeBackend: () => Promise<ObjectBackend>): void {
  describe(`ObjectBackend contract: ${name}`, () => {
    let backend: ObjectBackend;
    let ns: string;
    let namespacesMade: string[];

    /** A new namespace name unique to this test run (not created). */
    function uniqueNamespace(label: string): string {
      const namespace = `${label}-${randomBytes(6).toString("hex")}`;
      namespacesMade.push(namespace);
      return namespace;
    }

    beforeEach(async () => {
      backend = await makeBackend();
      namespacesMade = [];
      ns = uniqueNamespace("contract");
      await backend.createNamespace(ns);
    });

    afterEach(async () => {
      for (const namespace of namespacesMade) {
        if (await backend.namespaceExists(namespace)) await backend.deleteNamespace(namespace);
      }
      await backend.close();
    });

    it("has a description", () => {
      expect(typeof backend.description).toBe("string");
      expect(backend.description.length).toBeGreaterThan(0);
    });

    describe("namespaces", () => {
      it("creates, reports and deletes a namespace", async () => {
        const other = uniqueNamespace("ns");
        expect(await backend.namespaceExists(other)).toBe(false);
        await backend.createNamespace(other);
        expect(await backend.namespaceExists(other)).toBe(true);
        await backend.deleteNamespace(other);
        expect(await backend.namespaceExists(other)).toBe(false);
      });

      it("refuses to create a namespace twice (ALREADY_EXISTS)", async () => {
        await expectOvsError(backend.createNamespace(ns), "ALREADY_EXISTS");
      });

      it("refuses to delete a missing namespace (NOT_FOUND)", async () => {
        await expectOvsError(backend.deleteNamespace(uniqueNamespace("missing")), "NOT_FOUND");
      });

      it("deletes every object with its namespace", async () => {
        await backend.put(ns, "a", Buffer.from("a"));
        await backend.put(ns, "b", Buffer.from("b"));
        await backend.deleteNamespace(ns);
        await backend.createNamespace(ns);
        expect(await backend.list(ns)).toEqual({ names: [], more: false });
        await expectOvsError(backend.get(ns, "a"), "NOT_FOUND");
      });

      it("lists namespaces sorted, by prefix and in pages", async () => {
        const prefix = `pg${randomBytes(4).toString("hex")}-`;
        const made = ["c", "a", "b", "e", "d"].map((suffix) => `${prefix}${suffix}`);
        for (const namespace of made) {
          namespacesMade.push(namespace);
          await backend.createNamespace(namespace);
        }
        const sorted = [...made].sort();
        expect(await backend.listNamespaces({ prefix })).toEqual({ names: sorted, more: false });
        const first = await backend.listNamespaces({ prefix, limit: 2 });
        expect(first).toEqual({ names: sorted.slice(0, 2), more: true });
        const second = await backend.listNamespaces({ prefix, limit: 2, after: first.names[1]! });
        expect(second).toEqual({ names: sorted.slice(2, 4), more: true });
        const third = await backend.listNamespaces({ prefix, limit: 2, after: second.names[1]! });
        expect(third).toEqual({ names: sorted.slice(4), more: false });
        const all = await backend.listNamespaces();
        expect(all.names).toContain(ns);
      });
    });

    describe("put and get", () => {
      it.each([0, 1, 4095, 4096, 4097, 3 * 4096 + 5, 4 * MiB, 4 * MiB + 1])("round-trips an object of %i bytes", async (sizeBytes) => {
        const data = randomData(sizeBytes);
        await backend.put(ns, "object", data);
        const read = await backend.get(ns, "object");
        expect(Buffer.isBuffer(read)).toBe(true);
        expect(read.equals(data)).toBe(true);
        expect(await backend.sizeBytes(ns, "object")).toBe(sizeBytes);
        expect(await backend.exists(ns, "object")).toBe(true);
      });

      it("stores an empty object", async () => {
        await backend.put(ns, "empty", new Uint8Array(0));
        expect((await backend.get(ns, "empty")).length).toBe(0);
        expect(await backend.sizeBytes(ns, "empty")).toBe(0);
        expect(await backend.getRanges(ns, "empty", [{ offsetBytes: 0, lengthBytes: 0 }])).toEqual([Buffer.alloc(0)]);
        expect(await backend.list(ns)).toEqual({ names: ["empty"], more: false });
      });

      it("overwrites an object, longer then shorter", async () => {
        await backend.put(ns, "x", Buffer.from("first"));
        const longer = randomData(10_000);
        await backend.put(ns, "x", longer);
        expect((await backend.get(ns, "x")).equals(longer)).toBe(true);
        await backend.put(ns, "x", Buffer.from("s"));
        expect((await backend.get(ns, "x")).toString()).toBe("s");
        expect(await backend.sizeBytes(ns, "x")).toBe(1);
        expect(await backend.list(ns)).toEqual({ names: ["x"], more: false });
      });

      it("accepts a Uint8Array view into a larger buffer and stores only the view", async () => {
        const whole = Buffer.from("0123456789");
        await backend.put(ns, "view", new Uint8Array(whole.buffer, whole.byteOffset + 2, 5));
        expect((await backend.get(ns, "view")).toString()).toBe("23456");
      });

      it("hands out Buffers the caller owns: changing them or the input changes nothing stored", async () => {
        const data = Buffer.from("owned by the caller");
        await backend.put(ns, "o", data);
        data.fill(0);
        const read = await backend.get(ns, "o");
        expect(read.toString()).toBe("owned by the caller");
        read.fill(1);
        const [range] = await backend.getRanges(ns, "o", [{ offsetBytes: 0, lengthBytes: 5 }]);
        expect(range!.toString()).toBe("owned");
        range!.fill(2);
        expect((await backend.get(ns, "o")).toString()).toBe("owned by the caller");
      });

      it("deletes an object and reports whether it existed", async () => {
        await backend.put(ns, "d", Buffer.from("d"));
        expect(await backend.delete(ns, "d")).toBe(true);
        expect(await backend.delete(ns, "d")).toBe(false);
        expect(await backend.exists(ns, "d")).toBe(false);
        expect(await backend.sizeBytes(ns, "d")).toBeUndefined();
        await expectOvsError(backend.get(ns, "d"), "NOT_FOUND");
      });
    });

    describe("missing things", () => {
      it("reports a missing object", async () => {
        await expectOvsError(backend.get(ns, "nope"), "NOT_FOUND");
        await expectOvsError(backend.getRanges(ns, "nope", [{ offsetBytes: 0, lengthBytes: 1 }]), "NOT_FOUND");
        await expectOvsError(backend.getRanges(ns, "nope", []), "NOT_FOUND");
        expect(await backend.sizeBytes(ns, "nope")).toBeUndefined();
        expect(await backend.exists(ns, "nope")).toBe(false);
        expect(await backend.delete(ns, "nope")).toBe(false);
      });

      it("reports a missing namespace on every object operation (NOT_FOUND)", async () => {
        const missing = uniqueNamespace("missing");
        await expectOvsError(backend.put(missing, "a", Buffer.from("a")), "NOT_FOUND");
        await expectOvsError(backend.get(missing, "a"), "NOT_FOUND");
        await expectOvsError(backend.getRanges(missing, "a", [{ offsetBytes: 0, lengthBytes: 1 }]), "NOT_FOUND");
        await expectOvsError(backend.sizeBytes(missing, "a"), "NOT_FOUND");
        await expectOvsError(backend.exists(missing, "a"), "NOT_FOUND");
        await expectOvsError(backend.delete(missing, "a"), "NOT_FOUND");
        await expectOvsError(backend.list(missing), "NOT_FOUND");
        await expectOvsError(backend.apply(missing, [], [{ kind: "put", name: "a", data: Buffer.from("a") }]), "NOT_FOUND");
        expect(await backend.namespaceExists(missing)).toBe(false);
      });
    });

    describe("getRanges", () => {
      const sizeBytes = 3 * 4096 + 100;
      let data: Buffer;

      beforeEach(async () => {
        data = randomData(sizeBytes);
        await backend.put(ns, "r", data);
      });

      it("returns exact ranges, one Buffer per range, in the order asked", async () => {
        const ranges = [
          { offsetBytes: 4096, lengthBytes: 4096 }, // an aligned cluster
          { offsetBytes: 0, lengthBytes: 1 }, // first byte
          { offsetBytes: 4000, lengthBytes: 200 }, // across a block boundary
          { offsetBytes: 5, lengthBytes: sizeBytes - 5 }, // to the end from inside the first block
          { offsetBytes: sizeBytes - 1, lengthBytes: 1 }, // last byte
          { offsetBytes: 3 * 4096, lengthBytes: 100 }, // the short last block exactly
          { offsetBytes: 4096, lengthBytes: 4096 }, // the same range twice
          { offsetBytes: 0, lengthBytes: sizeBytes }, // everything
        ];
        const read = await backend.getRanges(ns, "r", ranges);
        expect(read.length).toBe(ranges.length);
        ranges.forEach((range, index) => {
          expect(Buffer.isBuffer(read[index])).toBe(true);
          expect(read[index]!.equals(data.subarray(range.offsetBytes, range.offsetBytes + range.lengthBytes))).toBe(true);
        });
      });

      it("returns empty Buffers for zero-length ranges up to and at the end", async () => {
        const read = await backend.getRanges(ns, "r", [{ offsetBytes: 0, lengthBytes: 0 }, { offsetBytes: sizeBytes, lengthBytes: 0 }]);
        expect(read.map((buffer) => buffer.length)).toEqual([0, 0]);
      });

      it("returns nothing for no ranges", async () => {
        expect(await backend.getRanges(ns, "r", [])).toEqual([]);
      });

      it("refuses ranges past the end (OUT_OF_RANGE)", async () => {
        await expectOvsError(backend.getRanges(ns, "r", [{ offsetBytes: sizeBytes - 1, lengthBytes: 2 }]), "OUT_OF_RANGE");
        await expectOvsError(backend.getRanges(ns, "r", [{ offsetBytes: sizeBytes + 1, lengthBytes: 0 }]), "OUT_OF_RANGE");
        await expectOvsError(backend.getRanges(ns, "r", [{ offsetBytes: 2 ** 40, lengthBytes: 4096 }]), "OUT_OF_RANGE");
        await expectOvsError(
          backend.getRanges(ns, "r", [{ offsetBytes: 0, lengthBytes: 1 }, { offsetBytes: 0, lengthBytes: sizeBytes + 1 }]), "OUT_OF_RANGE");
        await backend.put(ns, "empty", Buffer.alloc(0));
        await expectOvsError(backend.getRanges(ns, "empty", [{ offsetBytes: 0, lengthBytes: 1 }]), "OUT_OF_RANGE");
      });

      it("refuses malformed ranges (INVALID_ARGUMENT)", async () => {
        for (const range of [{ offsetBytes: -1, lengthBytes: 1 }, { offsetBytes: 0, lengthBytes: -1 }, { offsetBytes: 0.5, lengthBytes: 1 },
          { offsetBytes: 0, lengthBytes: Number.NaN }]) {
          await expectOvsError(backend.getRanges(ns, "r", [range]), "INVALID_ARGUMENT");
        }
      });
    });

    describe("list", () => {
      it("lists nothing in an empty namespace", async () => {
        expect(await backend.list(ns)).toEqual({ names: [], more: false });
      });

      it("sorts by name bytes", async () => {
        const names = ["a", "_x", "Z", "0", "-dash", "a.b", "a-b", "ab", "A"];
        for (const name of names) await backend.put(ns, name, Buffer.from(name));
        const bytewise = [...names].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
        expect((await backend.list(ns)).names).toEqual(bytewise);
      });

      it("pages through more than one page with prefix, after and limit", async () => {
        const names: string[] = [];
        for (let index = 0; index < 25; index += 1) names.push(`sco_${index.toString(16).padStart(8, "0")}`);
        for (const name of [...names].reverse()) await backend.put(ns, name, Buffer.from(name));
        await backend.put(ns, "tlog_1", Buffer.from("t"));
        await backend.put(ns, "rsco_1", Buffer.from("r"));

        const seen: string[] = [];
        let after: string | undefined;
        let pageCount = 0;
        for (;;) {
          const page = await backend.list(ns, { prefix: "sco_", limit: 10, ...(after === undefined ? {} : { after }) });
          pageCount += 1;
          expect(page.names.length).toBeLessThanOrEqual(10);
          seen.push(...page.names);
          if (!page.more) break;
          after = page.names[page.names.length - 1];
        }
        expect(pageCount).toBe(3);
        expect(seen).toEqual(names);

        expect(await backend.list(ns, { prefix: "sco_", after: names[23]! })).toEqual({ names: [names[24]], more: false });
        expect(await backend.list(ns, { prefix: "sco_", after: names[24]! })).toEqual({ names: [], more: false });
        expect(await backend.list(ns, { after: "sco_00000004x", limit: 2 })).toEqual({ names: [names[5], names[6]], more: true });
        expect(await backend.list(ns, { prefix: "t" })).toEqual({ names: ["tlog_1"], more: false });
        expect(await backend.list(ns, { prefix: "nothing" })).toEqual({ names: [], more: false });
        expect((await backend.list(ns, { limit: listLimitMax + 1 })).names.length).toBe(27);
        const exactly = await backend.list(ns, { prefix: "sco_", limit: 25 });
        expect(exactly).toEqual({ names, more: false });
      });

      it("refuses bad list options (INVALID_ARGUMENT)", async () => {
        await expectOvsError(backend.list(ns, { limit: 0 }), "INVALID_ARGUMENT");
        await expectOvsError(backend.list(ns, { limit: -1 }), "INVALID_ARGUMENT");
        await expectOvsError(backend.list(ns, { limit: 1.5 }), "INVALID_ARGUMENT");
        await expectOvsError(backend.list(ns, { prefix: "a/b" }), "INVALID_ARGUMENT");
        await expectOvsError(backend.listNamespaces({ limit: 0 }), "INVALID_ARGUMENT");
      });
    });

    describe("names", () => {
      const invalidNames = ["", ".hidden", ".", "..", "a/b", "../x", "a b", "a\0b", "é", "a:b", "x".repeat(256)];

      it("accepts names of 1 and 255 characters with every allowed character", async () => {
        const long = "x".repeat(255);
        await backend.put(ns, long, Buffer.from("long"));
        await backend.put(ns, "a", Buffer.from("short"));
        await backend.put(ns, "Az09._-", Buffer.from("all"));
        expect((await backend.get(ns, long)).toString()).toBe("long");
        expect((await backend.list(ns)).names).toEqual(["Az09._-", "a", long]);
        const longNamespace = `${"n".repeat(243)}${randomBytes(6).toString("hex")}`;
        namespacesMade.push(longNamespace);
        await backend.createNamespace(longNamespace);
        expect(await backend.namespaceExists(longNamespace)).toBe(true);
      });

      it.each(invalidNames)("refuses the name %j (INVALID_ARGUMENT)", async (bad) => {
        await expectOvsError(backend.put(ns, bad, Buffer.from("x")), "INVALID_ARGUMENT");
        await expectOvsError(backend.get(ns, bad), "INVALID_ARGUMENT");
        await expectOvsError(backend.getRanges(ns, bad, []), "INVALID_ARGUMENT");
        await expectOvsError(backend.sizeBytes(ns, bad), "INVALID_ARGUMENT");
        await expectOvsError(backend.exists(ns, bad), "INVALID_ARGUMENT");
        await expectOvsError(backend.delete(ns, bad), "INVALID_ARGUMENT");
        await expectOvsError(backend.apply(ns, [{ kind: "absent", name: bad }], []), "INVALID_ARGUMENT");
        await expectOvsError(backend.apply(ns, [], [{ kind: "delete", name: bad }]), "INVALID_ARGUMENT");
        await expectOvsError(backend.createNamespace(bad), "INVALID_ARGUMENT");
        await expectOvsError(backend.deleteNamespace(bad), "INVALID_ARGUMENT");
        await expectOvsError(backend.namespaceExists(bad), "INVALID_ARGUMENT");
        await expectOvsError(backend.list(bad), "INVALID_ARGUMENT");
        await expectOvsError(backend.put(bad, "a", Buffer.from("x")), "INVALID_ARGUMENT");
        expect(await backend.list(ns)).toEqual({ names: [], more: false });
      });
    });

    describe("apply", () => {
      async function contents(): Promise<Record<string, string>> {
        const result: Record<string, string> = {};
        for (const name of (await backend.list(ns)).names) result[name] = (await backend.get(ns, name)).toString();
        return result;
      }

      beforeEach(async () => {
        await backend.put(ns, "owner", Buffer.from("node-1"));
        await backend.put(ns, "old", Buffer.from("old"));
      });

      it("applies puts and deletes together when the asserts hold", async () => {
        await backend.apply(ns,
          [{ kind: "equals", name: "owner", value: Buffer.from("node-1") }, { kind: "absent", name: "new" }],
          [{ kind: "put", name: "new", data: Buffer.from("new") }, { kind: "delete", name: "old" },
            { kind: "put", name: "owner", data: Buffer.from("node-2") }, { kind: "delete", name: "never-existed" }]);
        expect(await contents()).toEqual({ new: "new", owner: "node-2" });
      });

      it("changes nothing when an absent assert fails (ASSERT_FAILED)", async () => {
        await expectOvsError(backend.apply(ns, [{ kind: "absent", name: "old" }],
          [{ kind: "put", name: "new", data: Buffer.from("new") }, { kind: "delete", name: "owner" }]), "ASSERT_FAILED");
        expect(await contents()).toEqual({ old: "old", owner: "node-1" });
      });

      it("changes nothing when an equals assert fails (ASSERT_FAILED)", async () => {
        for (const value of [Buffer.from("node-2"), Buffer.from("node-1 "), Buffer.alloc(0)]) {
          await expectOvsError(backend.apply(ns, [{ kind: "equals", name: "owner", value }],
            [{ kind: "put", name: "new", data: Buffer.from("new") }, { kind: "delete", name: "old" }]), "ASSERT_FAILED");
        }
        await expectOvsError(backend.apply(ns, [{ kind: "equals", name: "missing", value: Buffer.alloc(0) }],
          [{ kind: "delete", name: "old" }]), "ASSERT_FAILED");
        expect(await contents()).toEqual({ old: "old", owner: "node-1" });
      });

      it("changes nothing when any one of several asserts fails", async () => {
        await expectOvsError(backend.apply(ns,
          [{ kind: "equals", name: "owner", value: Buffer.from("node-1") }, { kind: "absent", name: "new" }, { kind: "absent", name: "old" }],
          [{ kind: "put", name: "new", data: Buffer.from("new") }]), "ASSERT_FAILED");
        expect(await contents()).toEqual({ old: "old", owner: "node-1" });
      });

      it("treats an empty object as equal to an empty value", async () => {
        await backend.put(ns, "empty", Buffer.alloc(0));
        await backend.apply(ns, [{ kind: "equals", name: "empty", value: new Uint8Array(0) }], [{ kind: "delete", name: "empty" }]);
        expect(await backend.exists(ns, "empty")).toBe(false);
      });

      it("lets the last update of a name win", async () => {
        await backend.apply(ns, [], [
          { kind: "put", name: "twice", data: Buffer.from("1") }, { kind: "put", name: "twice", data: Buffer.from("2") },
          { kind: "put", name: "gone", data: Buffer.from("1") }, { kind: "delete", name: "gone" },
          { kind: "delete", name: "old" }, { kind: "put", name: "old", data: Buffer.from("back") },
        ]);
        expect(await contents()).toEqual({ old: "back", owner: "node-1", twice: "2" });
      });

      it("accepts asserts without updates and an empty apply", async () => {
        await backend.apply(ns, [{ kind: "equals", name: "owner", value: Buffer.from("node-1") }], []);
        await backend.apply(ns, [], []);
        await expectOvsError(backend.apply(ns, [{ kind: "absent", name: "owner" }], []), "ASSERT_FAILED");
        expect(await contents()).toEqual({ old: "old", owner: "node-1" });
      });

      it("lets exactly one of many racing compare-and-sets win", async () => {
        const contenders = Array.from({ length: 16 }, (_, index) => `node-${index + 2}`);
        const outcomes = await Promise.allSettled(contenders.map((contender) => backend.apply(ns,
          [{ kind: "equals", name: "owner", value: Buffer.from("node-1") }],
          [{ kind: "put", name: "owner", data: Buffer.from(contender) }, { kind: "put", name: `won-by-${contender}`, data: Buffer.alloc(1) }])));
        const winners = outcomes.flatMap((outcome, index) => (outcome.status === "fulfilled" ? [contenders[index]!] : []));
        expect(winners.length).toBe(1);
        for (const outcome of outcomes) {
          if (outcome.status === "rejected") expect(isOvsError(outcome.reason, "ASSERT_FAILED")).toBe(true);
        }
        expect((await backend.get(ns, "owner")).toString()).toBe(winners[0]);
        expect((await backend.list(ns, { prefix: "won-by-" })).names).toEqual([`won-by-${winners[0]}`]);
      });

      it("refuses unknown assert and update kinds (INVALID_ARGUMENT)", async () => {
        const badAssert = { kind: "present", name: "owner" } as unknown as { kind: "absent"; name: string };
        const badUpdate = { kind: "append", name: "owner", data: Buffer.from("x") } as unknown as { kind: "delete"; name: string };
        await expectOvsError(backend.apply(ns, [badAssert], []), "INVALID_ARGUMENT");
        await expectOvsError(backend.apply(ns, [], [{ kind: "delete", name: "old" }, badUpdate]), "INVALID_ARGUMENT");
        expect(await contents()).toEqual({ old: "old", owner: "node-1" });
      });
    });

    describe("concurrency", () => {
      it("serves many puts and gets in flight at once", async () => {
        const objects = Array.from({ length: 48 }, (_, index) => ({ name: `c${index}`, data: randomData(index * 1000 + (index % 3) * 4096) }));
        await Promise.all(objects.map((object) => backend.put(ns, object.name, object.data)));
        const [reads, ranges] = await Promise.all([
          Promise.all(objects.map((object) => backend.get(ns, object.name))),
          Promise.all(objects.map((object) => backend.getRanges(ns, object.name, [{ offsetBytes: 0, lengthBytes: object.data.length }]))),
        ]);
        objects.forEach((object, index) => {
          expect(reads[index]!.equals(object.data)).toBe(true);
          expect(ranges[index]![0]!.equals(object.data)).toBe(true);
        });
        expect((await backend.list(ns)).names.length).toBe(objects.length);
      });

      it("keeps one whole version when puts to one name race with gets", async () => {
        const versions = Array.from({ length: 12 }, (_, index) => Buffer.alloc(20_000 + index * 4096, index + 1));
        const gets: Array<Promise<Buffer | undefined>> = [];
        const puts = versions.map(async (version) => {
          await backend.put(ns, "hot", version);
          gets.push(backend.get(ns, "hot"));
        });
        await Promise.all(puts);
        const seen = await Promise.all(gets);
        const final = await backend.get(ns, "hot");
        for (const read of [...seen, final]) {
          expect(versions.some((version) => version.equals(read!))).toBe(true);
        }
      });

      it("runs puts, deletes, lists and applies in one namespace at once", async () => {
        await Promise.all([
          ...Array.from({ length: 10 }, (_, index) => backend.put(ns, `p${index}`, Buffer.from(`p${index}`))),
          ...Array.from({ length: 5 }, (_, index) => backend.apply(ns, [{ kind: "absent", name: `a${index}` }],
            [{ kind: "put", name: `a${index}`, data: Buffer.from(`a${index}`) }])),
          backend.list(ns),
          backend.delete(ns, "p-missing"),
        ]);
        expect((await backend.list(ns)).names.length).toBe(15);
      });
    });

    describe("close", () => {
      it("refuses operations after close (CLOSED)", async () => {
        const closing = await makeBackend();
        await closing.close();
        await expectOvsError(closing.put(ns, "a", Buffer.from("a")), "CLOSED");
        await expectOvsError(closing.get(ns, "a"), "CLOSED");
        await expectOvsError(closing.list(ns), "CLOSED");
      });
    });
  });
}
