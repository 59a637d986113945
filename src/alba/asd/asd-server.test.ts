// The ASD through the front door: a real server on 127.0.0.1 driven by AsdClient. Every operation,
// asserts that fail and change nothing, pipelining, checksums caught on read (a flipped byte in a value
// file and in an inline value edited with lmdb directly), a full disk (injected statfs), the claim, a
// wrong cluster secret and a wrong backend, fault injection, timeouts and reconnection.
import { readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { open as openLmdb } from "lmdb";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { crc32c, isOvsError, type OvsError } from "../../base/index.js";
import { AsdClient } from "./asd-client.js";
import { asdLimits } from "./limits.js";
import { connectTestClient, FakeStatfs, makeTempDir, patternBytes, startTestAsd, text, type TestAsd } from "./test-support.js";

async function expectCode(promise: Promise<unknown>, code: OvsError["code"], message?: RegExp): Promise<OvsError> {
  try {
    await promise;
  } catch (error) {
    if (!isOvsError(error)) throw error;
    expect(error.code, error.message).toBe(code);
    if (message !== undefined) expect(error.message).toMatch(message);
    return error;
  }
  throw new Error(`expected ${code}, but the call succeeded`);
}

let temp: { dir: string; remove: () => Promise<void> };
let asd: TestAsd;
let client: AsdClient;
let statfs: FakeStatfs;

beforeEach(async () => {
  temp = await makeTempDir();
  statfs = new FakeStatfs();
  asd = await startTestAsd(temp.dir, { statfs: statfs.source, statfsCacheMs: 0 });
  client = await connectTestClient(asd.port);
  expect(await client.claim()).toBe(true);
});

afterEach(async () => {
  await client.close();
  await asd.stop();
  expect(asd.server.connectionCount).toBe(0);
  await temp.remove();
});

const small = text("a small value");
const large = patternBytes(200_000, 1); // a file value: 4 checksum blocks, the last one partial

describe("operations", () => {
  test("capabilities advertise the ops and the limits", async () => {
    const capabilities = await client.capabilities();
    expect(capabilities.version).toBe(1);
    expect(capabilities.ops).toEqual(["capabilities", "claim", "multiGet", "partialGet", "apply", "range", "rangeEntries", "diskUsage", "statistics"]);
    expect(capabilities.keyBytesMax).toBe(asdLimits.keyBytesMax);
    expect(capabilities.inlineValueBytesMax).toBe(16 * 1024 - 1);
    expect(capabilities.inFlightRequestsMax).toBe(asdLimits.inFlightRequestsMax);
  });

  test("apply sets and deletes; multiGet returns values with their checksums, absent keys as absent", async () => {
    await client.apply([], [
      { kind: "set", key: text("s"), value: small },
      { kind: "set", key: text("l"), value: large },
      { kind: "set", key: text("e"), value: Buffer.alloc(0) },
      { kind: "set", key: text("edge"), value: patternBytes(16 * 1024, 2) },
    ]);
    const results = await client.multiGet([text("s"), text("l"), text("nope"), text("e"), text("edge")]);
    expect(results).toEqual([
      { status: "ok", value: small, crc32c: crc32c(small) },
      { status: "ok", value: large, crc32c: crc32c(large) },
      { status: "absent" },
      { status: "ok", value: Buffer.alloc(0), crc32c: 0 },
      { status: "ok", value: patternBytes(16 * 1024, 2), crc32c: crc32c(patternBytes(16 * 1024, 2)) },
    ]);
    // Values of 16 KiB and more are files; smaller ones are not.
    expect(await blobFileCount(asd.dir)).toBe(2);
    await client.apply([], [{ kind: "delete", key: text("l") }, { kind: "delete", key: text("s") }, { kind: "delete", key: text("never-there") }]);
    expect((await client.multiGet([text("s"), text("l")])).map((r) => r.status)).toEqual(["absent", "absent"]);
    expect(await client.get(text("edge"))).toEqual(patternBytes(16 * 1024, 2));
    await waitFor(async () => (await blobFileCount(asd.dir)) === 1, "the deleted value's file is removed");
  });

  test("overwriting a file value with a small one (and back) keeps exactly the live files", async () => {
    await client.apply([], [{ kind: "set", key: text("k"), value: large }]);
    await client.apply([], [{ kind: "set", key: text("k"), value: small }]);
    expect(await client.get(text("k"))).toEqual(small);
    await client.apply([], [{ kind: "set", key: text("k"), value: patternBytes(70_000, 3) }]);
    await client.apply([], [{ kind: "set", key: text("k"), value: patternBytes(80_000, 4) }]);
    expect(await client.get(text("k"))).toEqual(patternBytes(80_000, 4));
    await waitFor(async () => (await blobFileCount(asd.dir)) === 1, "replaced files are removed");
  });

  test("partialGet reads exact byte ranges of inline and file values", async () => {
    await client.apply([], [{ kind: "set", key: text("s"), value: small }, { kind: "set", key: text("l"), value: large }]);
    const ranges = [{ offsetBytes: 65_530, lengthBytes: 20 }, { offsetBytes: 0, lengthBytes: 3 }, { offsetBytes: 199_990, lengthBytes: 10 }];
    const results = await client.partialGet([
      { key: text("l"), ranges },
      { key: text("s"), ranges: [{ offsetBytes: 2, lengthBytes: 5 }] },
      { key: text("s"), ranges: [{ offsetBytes: 10, lengthBytes: 100 }] },
      { key: text("missing"), ranges: [{ offsetBytes: 0, lengthBytes: 1 }] },
    ]);
    const expected = Buffer.concat(ranges.map((r) => large.subarray(r.offsetBytes, r.offsetBytes + r.lengthBytes)));
    expect(results[0]).toEqual({ status: "ok", value: expected, crc32c: crc32c(expected) });
    expect(results[1]).toEqual({ status: "ok", value: text("small"), crc32c: crc32c(text("small")) });
    expect(results[2]).toEqual({ status: "outOfRange" });
    expect(results[3]).toEqual({ status: "absent" });
  });

  test("range and rangeEntries page forward and backward with limits", async () => {
    const keys = Array.from({ length: 25 }, (_, index) => `key/${String(index).padStart(3, "0")}`);
    await client.apply([], keys.map((key, index) => ({ kind: "set" as const, key: text(key), value: index === 7 ? large : text(`v${index}`) })));
    await client.apply([], [{ kind: "set", key: text("other"), value: small }, { kind: "set", key: text("a"), value: small }]);
    // Forward pages of 10 over [key/, key0).
    const seen: string[] = [];
    let first: Buffer = text("key/");
    for (;;) {
      const page = await client.range({ first, end: text("key0"), limit: 10 });
      seen.push(...page.keys.map((k) => k.toString()));
      if (!page.more) break;
      first = Buffer.concat([page.keys.at(-1)!, Buffer.from([0])]);
    }
    expect(seen).toEqual(keys);
    // Backward pages of 7 below "key/010".
    const backward: string[] = [];
    let end: Buffer = text("key/010");
    for (;;) {
      const page = await client.range({ first: text("key/"), end, limit: 7, reverse: true });
      backward.push(...page.keys.map((k) => k.toString()));
      if (!page.more) break;
      end = page.keys.at(-1)!;
    }
    expect(backward).toEqual(keys.slice(0, 10).reverse());
    expect((await client.range({ limit: 100 })).keys.map(String)).toEqual(["a", ...keys, "other"]);
    expect((await client.range({ limit: 1, reverse: true })).keys.map(String)).toEqual(["other"]);
    const entries = await client.rangeEntries({ first: text("key/005"), end: text("key/009"), limit: 100 });
    expect(entries.more).toBe(false);
    expect(entries.entries.map((e) => [e.key.toString(), e.result.status === "ok" ? e.result.value.length : -1])).toEqual([
      ["key/005", 2], ["key/006", 2], ["key/007", large.length], ["key/008", 2],
    ]);
    expect(entries.entries[2]!.result).toEqual({ status: "ok", value: large, crc32c: crc32c(large) });
    const limited = await client.rangeEntries({ first: text("key/"), limit: 3 });
    expect(limited.entries.map((e) => e.key.toString())).toEqual(keys.slice(0, 3));
    expect(limited.more).toBe(true);
  });

  test("diskUsage reports statfs and the ASD's own totals", async () => {
    await client.apply([], [{ kind: "set", key: text("s"), value: small }, { kind: "set", key: text("l"), value: large }]);
    const usage = await client.diskUsage();
    expect(usage).toEqual({
      totalBytes: statfs.space.totalBytes,
      usedBytes: statfs.space.totalBytes - statfs.space.freeBytes,
      freeBytes: statfs.space.freeBytes,
      valueCount: 2,
      valueBytes: small.length + large.length,
      fullThresholdPpm: 990_000,
      refusingWrites: false,
    });
    await client.apply([], [{ kind: "delete", key: text("l") }]);
    expect((await client.diskUsage()).valueBytes).toBe(small.length);
  });

  test("statistics count operations, latencies and errors; reset clears them", async () => {
    await client.apply([], [{ kind: "set", key: text("k"), value: small }]);
    await client.multiGet([text("k")]);
    await expectCode(client.apply([{ kind: "absent", key: text("k") }], []), "ASSERT_FAILED");
    const statistics = await client.statistics(true);
    expect(statistics.ops.apply).toMatchObject({ count: 2, errorCount: 1 });
    expect(statistics.ops.multiGet).toMatchObject({ count: 1, errorCount: 0 });
    expect(statistics.ops.apply!.latencyUsMax).toBeGreaterThan(0);
    expect(statistics.ops.apply!.latencyUsTotal).toBeGreaterThanOrEqual(statistics.ops.apply!.latencyUsMax);
    expect(statistics.counters).toMatchObject({ assertFailures: 1, connectionsOpen: 1, connectionsAccepted: 1, checksumErrors: 0 });
    expect(statistics.counters.groupCommits).toBeGreaterThanOrEqual(1);
    const after = await client.statistics();
    expect(after.ops.apply).toBeUndefined();
    expect(after.counters.assertFailures).toBe(0);
  });
});

describe("asserts", () => {
  test("a failing assert changes nothing, and says which assert failed", async () => {
    await client.apply([], [{ kind: "set", key: text("owner"), value: text("node-1") }, { kind: "set", key: text("x"), value: text("1") }]);
    const before = await client.rangeEntries({ limit: 100 });
    const error = await expectCode(
      client.apply(
        [{ kind: "equals", key: text("owner"), value: text("node-1") }, { kind: "absent", key: text("x") }],
        [{ kind: "set", key: text("y"), value: large }, { kind: "delete", key: text("x") }, { kind: "set", key: text("owner"), value: text("node-2") }],
      ),
      "ASSERT_FAILED",
      /Assert 1/,
    );
    expect(error.details).toMatchObject({ assertIndex: 1 });
    await expectCode(client.apply([{ kind: "equals", key: text("owner"), value: text("node-2") }], [{ kind: "delete", key: text("owner") }]), "ASSERT_FAILED");
    await expectCode(client.apply([{ kind: "equals", key: text("missing"), value: text("") }], [{ kind: "delete", key: text("owner") }]), "ASSERT_FAILED");
    expect(await client.rangeEntries({ limit: 100 })).toEqual(before);
    await waitFor(async () => (await blobFileCount(asd.dir)) === 0, "the failed apply's file is removed");
    // Asserts that hold let the apply through; equals works on file values too.
    await client.apply([{ kind: "equals", key: text("owner"), value: text("node-1") }, { kind: "absent", key: text("y") }], [{ kind: "set", key: text("y"), value: large }]);
    await client.apply([{ kind: "equals", key: text("y"), value: large }], [{ kind: "set", key: text("owner"), value: text("node-2") }]);
    await expectCode(client.apply([{ kind: "equals", key: text("y"), value: patternBytes(large.length, 99) }], [{ kind: "delete", key: text("y") }]), "ASSERT_FAILED");
    expect(await client.get(text("owner"))).toEqual(text("node-2"));
  });

  test("concurrent applies with the same absent assert: exactly one wins", async () => {
    const attempts = Array.from({ length: 20 }, (_, index) =>
      client.apply([{ kind: "absent", key: text("lock") }], [{ kind: "set", key: text("lock"), value: text(`holder-${index}`) }]).then(
        () => index,
        (error: unknown) => {
          if (!isOvsError(error, "ASSERT_FAILED")) throw error;
          return -1;
        },
      ),
    );
    const winners = (await Promise.all(attempts)).filter((index) => index >= 0);
    expect(winners).toHaveLength(1);
    expect(await client.get(text("lock"))).toEqual(text(`holder-${winners[0]}`));
  });

  test("a set whose checksum does not match its value is refused", async () => {
    await expectCode(client.apply([], [{ kind: "set", key: text("k"), value: small, crc32c: crc32c(small) ^ 1 }]), "CHECKSUM_MISMATCH");
    expect(await client.get(text("k"))).toBeUndefined();
  });

  test("limits are checked before anything is sent", async () => {
    await expectCode(client.multiGet([Buffer.alloc(0)]), "INVALID_ARGUMENT", /keys are 1/);
    await expectCode(client.multiGet(Array.from({ length: asdLimits.keysPerRequestMax + 1 }, (_, i) => text(`k${i}`))), "INVALID_ARGUMENT");
    await expectCode(client.apply([], [{ kind: "delete", key: text("a") }, { kind: "delete", key: text("a") }]), "INVALID_ARGUMENT", /repeats/);
    await expectCode(client.range({ limit: 0 }), "INVALID_ARGUMENT");
    expect(await client.get(text("a"))).toBeUndefined();
  });
});

describe("pipelining", () => {
  test("1000 requests in flight on one connection all complete, replies matched by id", async () => {
    const writes = Array.from({ length: 1000 }, (_, index) =>
      client.apply([], [{ kind: "set", key: text(`p/${String(index).padStart(4, "0")}`), value: index % 100 === 0 ? patternBytes(20_000, index) : text(`value ${index}`) }]),
    );
    await Promise.all(writes);
    const reads = Array.from({ length: 1000 }, (_, index) => client.get(text(`p/${String(index).padStart(4, "0")}`)));
    const values = await Promise.all(reads);
    values.forEach((value, index) => expect(value).toEqual(index % 100 === 0 ? patternBytes(20_000, index) : text(`value ${index}`)));
    const statistics = await client.statistics();
    // Group commit: far fewer fsynced transactions than applies.
    expect(statistics.counters.groupCommittedApplies).toBe(1000);
    expect(statistics.counters.groupCommits!).toBeLessThan(500);
  });

  test("a mix of fast reads and slow writes come back out of order", async () => {
    asd.server.setFaults({});
    const order: string[] = [];
    const write = client.apply([], [{ kind: "set", key: text("big"), value: patternBytes(4 << 20, 5) }]).then(() => order.push("write"));
    const read = client.capabilities().then(() => order.push("read"));
    await Promise.all([write, read]);
    expect(order[0]).toBe("read");
  });
});

describe("checksums", () => {
  test("a flipped byte in a value file is an error for that key only, counted", async () => {
    await client.apply([], [{ kind: "set", key: text("bad"), value: large }, { kind: "set", key: text("good"), value: patternBytes(100_000, 7) }, { kind: "set", key: text("s"), value: small }]);
    const files = await blobFiles(asd.dir);
    expect(files).toHaveLength(2);
    // Find the file holding "bad" by content and flip one byte in its third block.
    let flipped = false;
    for (const file of files) {
      const content = await readFile(file);
      if (content.equals(large)) {
        content[150_000] = content[150_000]! ^ 0x01;
        await writeFile(file, content);
        flipped = true;
      }
    }
    expect(flipped).toBe(true);
    const results = await client.multiGet([text("bad"), text("good"), text("s")]);
    expect(results[0]).toEqual({ status: "corrupt" });
    expect(results[1]).toEqual({ status: "ok", value: patternBytes(100_000, 7), crc32c: crc32c(patternBytes(100_000, 7)) });
    expect(results[2]!.status).toBe("ok");
    await expectCode(client.get(text("bad")), "CHECKSUM_MISMATCH");
    // A partial read that touches only good blocks still works; one that touches the bad block does not.
    const partial = await client.partialGet([{ key: text("bad"), ranges: [{ offsetBytes: 10, lengthBytes: 100 }] }, { key: text("bad"), ranges: [{ offsetBytes: 149_999, lengthBytes: 2 }] }]);
    expect(partial[0]).toEqual({ status: "ok", value: large.subarray(10, 110), crc32c: crc32c(large.subarray(10, 110)) });
    expect(partial[1]).toEqual({ status: "corrupt" });
    const entries = await client.rangeEntries({ limit: 10 });
    expect(entries.entries.map((e) => [e.key.toString(), e.result.status])).toEqual([["bad", "corrupt"], ["good", "ok"], ["s", "ok"]]);
    expect((await client.statistics()).counters.checksumErrors).toBe(4);
    // Overwriting the bad value repairs it.
    await client.apply([], [{ kind: "set", key: text("bad"), value: large }]);
    expect(await client.get(text("bad"))).toEqual(large);
  });

  test("a truncated value file is corrupt, not short data", async () => {
    await client.apply([], [{ kind: "set", key: text("t"), value: large }]);
    const [file] = await blobFiles(asd.dir);
    await writeFile(file!, large.subarray(0, 100_000));
    expect(await client.multiGet([text("t")])).toEqual([{ status: "corrupt" }]);
  });

  test("a flipped byte in an inline value (edited in lmdb directly) is an error for that key only", async () => {
    await client.apply([], [{ kind: "set", key: text("inline-bad"), value: text("0123456789") }, { kind: "set", key: text("inline-good"), value: text("abcdefghij") }]);
    await client.close();
    await asd.stop();
    const root = openLmdb<Buffer, Buffer>({ path: path.join(temp.dir, "index"), keyEncoding: "binary", encoding: "binary", pageSize: 8192, maxDbs: 4, cache: false });
    const values = root.openDB<Buffer, Buffer>({ name: "values", keyEncoding: "binary", encoding: "binary", cache: false });
    const record = Buffer.from(values.getBinary(text("inline-bad"))!);
    expect(record.subarray(record.length - 10).toString()).toBe("0123456789");
    record[record.length - 3] = record[record.length - 3]! ^ 0x20;
    await values.put(text("inline-bad"), record);
    await root.close();
    asd = await startTestAsd(temp.dir, { statfs: statfs.source, statfsCacheMs: 0 });
    client = await connectTestClient(asd.port);
    expect(await client.multiGet([text("inline-bad"), text("inline-good")])).toEqual([
      { status: "corrupt" },
      { status: "ok", value: text("abcdefghij"), crc32c: crc32c(text("abcdefghij")) },
    ]);
    expect((await client.partialGet([{ key: text("inline-bad"), ranges: [{ offsetBytes: 0, lengthBytes: 2 }] }]))[0]).toEqual({ status: "corrupt" });
    expect((await client.statistics()).counters.checksumErrors).toBe(2);
  });
});

describe("restart", () => {
  test("values survive a restart; a half-written value file (id not yet committed) is removed on open", async () => {
    await client.apply([], [{ kind: "set", key: text("l"), value: large }, { kind: "set", key: text("s"), value: small }]);
    await client.close();
    await asd.stop();
    // What a batch killed between its file writes and its commit leaves behind.
    const orphan = path.join(temp.dir, "blobs", "ff", "00000000000000ff");
    await writeFile(orphan, patternBytes(30_000, 9));
    expect(await blobFileCount(asd.dir)).toBe(2);
    asd = await startTestAsd(temp.dir, { statfs: statfs.source, statfsCacheMs: 0 });
    client = await connectTestClient(asd.port);
    expect(await blobFileCount(asd.dir)).toBe(1);
    expect(await client.get(text("l"))).toEqual(large);
    expect(await client.get(text("s"))).toEqual(small);
    expect((await client.diskUsage()).valueCount).toBe(2);
  });
});

describe("a full disk", () => {
  test("at 99 % writes are refused with a clear error; reads and deletes still work", async () => {
    await client.apply([], [{ kind: "set", key: text("a"), value: small }, { kind: "set", key: text("b"), value: large }]);
    statfs.fill(0.995);
    const usage = await client.diskUsage();
    expect(usage.refusingWrites).toBe(true);
    await expectCode(client.apply([], [{ kind: "set", key: text("c"), value: small }]), "NO_SPACE", /full.*reads and deletes still work/);
    await expectCode(client.apply([], [{ kind: "set", key: text("c"), value: small }, { kind: "delete", key: text("a") }]), "NO_SPACE");
    expect(await client.get(text("b"))).toEqual(large);
    expect(await client.get(text("a"))).toEqual(small);
    await client.apply([], [{ kind: "delete", key: text("b") }]);
    expect(await client.get(text("b"))).toBeUndefined();
    expect((await client.statistics()).counters.fullRefusals).toBe(2);
    // A write that would itself cross the threshold is refused too; below it writes work again.
    statfs.fill(0.98);
    statfs.space = { totalBytes: 10_000_000, freeBytes: 250_000 };
    await expectCode(client.apply([], [{ kind: "set", key: text("big"), value: large }]), "NO_SPACE");
    await client.apply([], [{ kind: "set", key: text("c"), value: small }]);
    expect(await client.get(text("c"))).toEqual(small);
  });

  test("the threshold is configurable", async () => {
    await client.close();
    await asd.stop();
    asd = await startTestAsd(temp.dir, { statfs: statfs.source, statfsCacheMs: 0, fullThreshold: 0.5 });
    client = await connectTestClient(asd.port);
    statfs.fill(0.6);
    expect((await client.diskUsage()).fullThresholdPpm).toBe(500_000);
    await expectCode(client.apply([], [{ kind: "set", key: text("c"), value: small }]), "NO_SPACE");
  });
});

describe("claim, cluster secret and backend", () => {
  test("a wrong cluster secret is refused, and the ASD keeps serving others", async () => {
    const error = await expectCode(connectTestClient(asd.port, { clusterSecret: "wrong" }), "INVALID_ARGUMENT", /cluster secret/);
    expect(error.details).toMatchObject({ reason: "wrongSecret" });
    await client.apply([], [{ kind: "set", key: text("k"), value: small }]);
    expect(await client.get(text("k"))).toEqual(small);
    expect((await client.statistics()).counters.authFailures).toBe(1);
  });

  test("a claimed ASD refuses another backend in the prologue, and per request for older connections", async () => {
    await expectCode(connectTestClient(asd.port, { backendId: "backend-other" }), "CONFLICT", /claimed by backend backend-test-1/);
    expect(client.claimedByYou).toBe(true);
    expect(await client.claim()).toBe(false);
    await client.apply([], [{ kind: "set", key: text("k"), value: small }]);
    expect(await client.get(text("k"))).toEqual(small);
  });

  test("a fresh ASD serves data only once claimed, and only one backend can claim it", async () => {
    const fresh = await makeTempDir();
    const other = await startTestAsd(fresh.dir);
    try {
      const first = await connectTestClient(other.port, { backendId: "backend-A" });
      const second = await connectTestClient(other.port, { backendId: "backend-B" });
      expect(first.claimedByYou).toBe(false);
      await expectCode(first.multiGet([text("k")]), "CONFLICT", /not claimed/);
      expect((await first.diskUsage()).valueCount).toBe(0);
      expect(await first.claim()).toBe(true);
      await expectCode(second.claim(), "CONFLICT", /claimed by another backend/);
      await expectCode(second.apply([], [{ kind: "set", key: text("k"), value: small }]), "CONFLICT", /backend-A/);
      await first.apply([], [{ kind: "set", key: text("k"), value: small }]);
      await first.close();
      await second.close();
      // The claim is persisted.
      await other.stop();
      const again = await startTestAsd(fresh.dir);
      try {
        await expectCode(connectTestClient(again.port, { backendId: "backend-B" }), "CONFLICT");
        const back = await connectTestClient(again.port, { backendId: "backend-A", expectedAsdId: again.server.asdId });
        expect(back.claimedByYou).toBe(true);
        expect(await back.get(text("k"))).toEqual(small);
        await back.close();
      } finally {
        await again.stop();
      }
    } finally {
      await other.stop();
      await fresh.remove();
    }
  });

  test("a client that expects another ASD id refuses to talk to this one", async () => {
    await expectCode(connectTestClient(asd.port, { expectedAsdId: "00".repeat(16) }), "CONFLICT", /not the expected/);
    expect(client.asdId).toBe(asd.server.asdId);
    expect(client.asdId).toMatch(/^[0-9a-f]{32}$/);
  });

  test("one ASD per directory", async () => {
    await expectCode(startTestAsd(temp.dir), "IN_USE");
  });
});

describe("faults, timeouts and reconnection", () => {
  test("injected failures and delays", async () => {
    asd.server.setFaults({ failOps: ["apply"], failCode: "IO_ERROR" });
    await expectCode(client.apply([], [{ kind: "set", key: text("k"), value: small }]), "IO_ERROR", /Injected fault/);
    expect(await client.get(text("k"))).toBeUndefined();
    asd.server.setFaults({ delayMs: 300 });
    const started = Date.now();
    await client.capabilities();
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    asd.server.setFaults({});
    expect((await client.statistics()).counters.injectedFaults).toBe(1);
  });

  test("a request times out; the connection stays usable", async () => {
    const slow = await connectTestClient(asd.port, { requestTimeoutMs: 100 });
    asd.server.setFaults({ delayMs: 400 });
    await expectCode(slow.capabilities(), "TIMEOUT");
    asd.server.setFaults({});
    await new Promise((resolve) => setTimeout(resolve, 400)); // the late reply arrives and is dropped
    expect((await slow.capabilities()).version).toBe(1);
    await slow.close();
  });

  test("a client reconnects after the ASD restarts; requests in flight fail with UNAVAILABLE", async () => {
    await client.apply([], [{ kind: "set", key: text("k"), value: small }]);
    asd.server.setFaults({ delayMs: 2000 });
    const inFlight = expectCode(client.capabilities(), "UNAVAILABLE", /shutting down/);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const port = asd.port;
    await asd.stop(); // waits for the in-flight request, which is answered "shutting down"
    await inFlight;
    asd = await startTestAsd(temp.dir, { port, statfs: statfs.source, statfsCacheMs: 0 });
    await waitFor(async () => !client.connected, "the client notices the loss");
    expect(await client.get(text("k"))).toEqual(small);
    expect(client.connected).toBe(true);
  });

  test("a client with reconnect off reports the loss", async () => {
    const once = await connectTestClient(asd.port, { reconnect: false });
    await asd.stop();
    await waitFor(async () => !once.connected, "the client notices the loss");
    await expectCode(once.capabilities(), "UNAVAILABLE", /does not reconnect/);
    await once.close();
    asd = await startTestAsd(temp.dir, { statfs: statfs.source, statfsCacheMs: 0 });
    await client.close();
    client = await connectTestClient(asd.port);
  });
});

async function blobFiles(dir: string): Promise<string[]> {
  const files: string[] = [];
  const blobs = path.join(dir, "blobs");
  for (const sub of await readdir(blobs)) {
    for (const name of await readdir(path.join(blobs, sub))) files.push(path.join(blobs, sub, name));
  }
  return files.sort();
}

async function blobFileCount(dir: string): Promise<number> {
  return (await blobFiles(dir)).length;
}

async function waitFor(predicate: () => Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
