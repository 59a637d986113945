// Tests of LocalBackend: the ObjectBackend contract, then what only a local directory can show —
// damaged object files, crashes in the middle of apply (in process, and a child killed with SIGKILL),
// recovery on open, and the golden vector of docs/formats/local-backend.md.

import { spawn } from "node:child_process";
import { randomFillSync } from "node:crypto";
import { existsSync, statSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";

import { crc32c, isOvsError } from "../base/index.js";
import { LocalBackend, putCopyBytesMax, type ApplyCrashPoint } from "./local-backend.js";
import {
  decodeJournal,
  decodeObjectHeader,
  encodeJournal,
  encodeObjectPrefix,
  journalFileName,
  linkedDataFileName,
  objectBlockBytes,
  objectDataOffsetBytes,
  objectHeaderBytes,
  parseLinkedDataFileName,
  stagedObjectName,
} from "./local-backend-format.js";
import { expectOvsError, objectBackendContract } from "./object-backend.contract.js";

const roots: string[] = [];

async function newDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "ovs-local-backend-"));
  roots.push(dir);
  return dir;
}

afterAll(async () => {
  for (const dir of roots) await rm(dir, { recursive: true, force: true });
});

objectBackendContract("LocalBackend", async () => LocalBackend.open({ dir: await newDir() }));
objectBackendContract("LocalBackend with a 2-handle cache", async () => LocalBackend.open({ dir: await newDir(), handleCacheCountMax: 2 }));
objectBackendContract("LocalBackend without handle cache", async () => LocalBackend.open({ dir: await newDir(), handleCacheCountMax: 0 }));

/** The golden vector of docs/formats/local-backend.md, "A worked example": the object "hello". */
const goldenHelloHex =
  "4f56534c01000c010500000000000000" +
  "000000000000000000000000afa7de34" +
  "4cbb719a" +
  "68656c6c6f";
/** The same object stored linked (version 2, link id 0123456789abcdef): header and table only. */
const goldenLinkedHelloHex = "4f56534c02000c0105000000000000000123456789abcdef00000000e270d3e1" + "4cbb719a";
const goldenEmptyHex = "4f56534c01000c010000000000000000000000000000000000000000e68e92de";

describe("LocalBackend object file format", () => {
  it("writes exactly the bytes of the spec's worked example (golden vector)", async () => {
    const dir = await newDir();
    const backend = await LocalBackend.open({ dir });
    await backend.createNamespace("golden");
    await backend.put("golden", "hello", Buffer.from("hello"));
    await backend.put("golden", "empty", Buffer.alloc(0));
    expect((await readFile(join(dir, "golden", "hello"))).toString("hex")).toBe(goldenHelloHex);
    expect((await readFile(join(dir, "golden", "empty"))).toString("hex")).toBe(goldenEmptyHex);
    expect(crc32c(Buffer.from("123456789"))).toBe(0xe3069283); // the crc32c check value: same algorithm
    expect(crc32c(Buffer.from("hello"))).toBe(0x9a71bb4c);
  });

  it("encodes and decodes the linked header of the spec's worked example (golden vector, version 2)", () => {
    const data = Buffer.from("hello");
    const out = Buffer.alloc(objectDataOffsetBytes(data.length));
    encodeObjectPrefix(data, out, "0123456789abcdef");
    expect(out.toString("hex")).toBe(goldenLinkedHelloHex);
    expect(decodeObjectHeader(out)).toEqual({ ok: true, dataBytes: 5, linkId: "0123456789abcdef" });
    expect(linkedDataFileName("0123456789abcdef", "hello")).toBe(".d-0123456789abcdef-hello");
    expect(parseLinkedDataFileName(".d-0123456789abcdef-hello")).toEqual({ linkId: "0123456789abcdef", name: "hello" });
    for (const bad of [".d-0123456789abcde-hello", ".d-0000000000000000-hello", ".d-0123456789abcdef_hello", ".d-0123456789ABCDEF-hello", ".tmp-0123456789abcdef"]) {
      expect(parseLinkedDataFileName(bad)).toBeUndefined();
    }
    // A version 2 header with a zero link id, or a non-zero byte after the id, is CORRUPT.
    const zeroId = Buffer.from(out);
    zeroId.fill(0, 16, 24);
    zeroId.writeUInt32LE(crc32c(zeroId.subarray(0, 28)), 28);
    expect(decodeObjectHeader(zeroId)).toMatchObject({ ok: false, code: "CORRUPT" });
    const reserved = Buffer.from(out);
    reserved[25] = 1;
    reserved.writeUInt32LE(crc32c(reserved.subarray(0, 28)), 28);
    expect(decodeObjectHeader(reserved)).toMatchObject({ ok: false, code: "CORRUPT" });
  });

  it("reads a file made by hand from the spec's hex", async () => {
    const dir = await newDir();
    const backend = await LocalBackend.open({ dir });
    await backend.createNamespace("golden");
    await writeFile(join(dir, "golden", "by-hand"), Buffer.from(goldenHelloHex, "hex"));
    expect((await backend.get("golden", "by-hand")).toString()).toBe("hello");
    expect(await backend.sizeBytes("golden", "by-hand")).toBe(5);
    const header = decodeObjectHeader(Buffer.from(goldenHelloHex, "hex"));
    expect(header).toEqual({ ok: true, dataBytes: 5 });
  });

  it("round-trips an apply journal and refuses a damaged one", () => {
    const encoded = encodeJournal({ applyId: "0123456789abcdef", updates: [{ kind: "put", name: "a" }, { kind: "delete", name: "b" }] });
    expect(decodeJournal(encoded)).toEqual({
      ok: true, journal: { applyId: "0123456789abcdef", updates: [{ kind: "put", name: "a" }, { kind: "delete", name: "b" }] },
    });
    for (let index = 0; index < encoded.length; index += 1) {
      const damaged = Buffer.from(encoded);
      damaged[index]! ^= 0x01;
      expect(decodeJournal(damaged).ok).toBe(false);
    }
    expect(decodeJournal(encoded.subarray(0, encoded.length - 1)).ok).toBe(false);
  });
});

describe("LocalBackend corruption", () => {
  let dir: string;
  let backend: LocalBackend;
  const blockCount = 3;
  const data = Buffer.alloc(blockCount * objectBlockBytes);
  for (let index = 0; index < data.length; index += 1) data[index] = (index * 7 + (index >> 12)) & 0xff;
  const dataOffsetBytes = objectDataOffsetBytes(data.length);
  const filePath = (): string => join(dir, "ns", "obj");
  const block = (blockIndex: number): { offsetBytes: number; lengthBytes: number } =>
    ({ offsetBytes: blockIndex * objectBlockBytes, lengthBytes: objectBlockBytes });

  async function flipByte(fileOffsetBytes: number): Promise<void> {
    const bytes = await readFile(filePath());
    bytes[fileOffsetBytes]! ^= 0x40;
    await writeFile(filePath(), bytes);
  }

  async function expectMismatch(promise: Promise<unknown>): Promise<void> {
    const error = await promise.then(() => undefined, (reason: unknown) => reason);
    expect(isOvsError(error, "CHECKSUM_MISMATCH")).toBe(true);
    expect((error as Error).message).toContain("ns/obj");
    expect((error as { details: Record<string, unknown> }).details).toMatchObject({ namespace: "ns", name: "obj" });
  }

  beforeEach(async () => {
    dir = await newDir();
    backend = await LocalBackend.open({ dir });
    await backend.createNamespace("ns");
    await backend.put("ns", "obj", data);
  });

  afterEach(async () => {
    await backend.close(); // releases its cached file handles
  });

  it("fails get and the damaged block's getRanges, and still serves the other blocks", async () => {
    await flipByte(dataOffsetBytes + objectBlockBytes + 123); // inside block 1
    await expectMismatch(backend.get("ns", "obj"));
    await expectMismatch(backend.getRanges("ns", "obj", [block(1)]));
    await expectMismatch(backend.getRanges("ns", "obj", [{ offsetBytes: objectBlockBytes + 123, lengthBytes: 1 }]));
    await expectMismatch(backend.getRanges("ns", "obj", [block(0), block(1), block(2)]));
    await expectMismatch(backend.getRanges("ns", "obj", [{ offsetBytes: objectBlockBytes - 1, lengthBytes: 2 }]));
    const [first, last] = await backend.getRanges("ns", "obj", [block(0), block(2)]);
    expect(first!.equals(data.subarray(0, objectBlockBytes))).toBe(true);
    expect(last!.equals(data.subarray(2 * objectBlockBytes))).toBe(true);
    const error = await backend.get("ns", "obj").catch((reason: unknown) => reason);
    expect((error as { details: Record<string, unknown> }).details.blockIndex).toBe(1);
  });

  it("fails only the block whose checksum entry is damaged", async () => {
    await flipByte(objectHeaderBytes + 4 * 2); // the entry of block 2
    await expectMismatch(backend.get("ns", "obj"));
    await expectMismatch(backend.getRanges("ns", "obj", [block(2)]));
    expect((await backend.getRanges("ns", "obj", [block(0)]))[0]!.equals(data.subarray(0, objectBlockBytes))).toBe(true);
  });

  it.each([0, 6, 8, 9, 20, 28])("fails everything when header byte %i is damaged", async (offset) => {
    await flipByte(offset);
    await expectMismatch(backend.get("ns", "obj"));
    await expectMismatch(backend.getRanges("ns", "obj", [block(0)]));
    await expectMismatch(backend.sizeBytes("ns", "obj"));
  });

  it("fails a truncated file, and one longer than its header says", async () => {
    const bytes = await readFile(filePath());
    await writeFile(filePath(), bytes.subarray(0, bytes.length - 1));
    await expectMismatch(backend.get("ns", "obj"));
    await expectMismatch(backend.getRanges("ns", "obj", [block(2)]));
    expect((await backend.getRanges("ns", "obj", [block(0)]))[0]!.equals(data.subarray(0, objectBlockBytes))).toBe(true);
    await writeFile(filePath(), bytes.subarray(0, 10));
    await expectMismatch(backend.get("ns", "obj"));
    await writeFile(filePath(), Buffer.concat([bytes, Buffer.from([0])]));
    await expectMismatch(backend.get("ns", "obj"));
  });

  it("fails an equals assert on a damaged object rather than guessing", async () => {
    await flipByte(dataOffsetBytes);
    await expectMismatch(backend.apply("ns", [{ kind: "equals", name: "obj", value: data }], [{ kind: "delete", name: "obj" }]));
    expect(await backend.exists("ns", "obj")).toBe(true);
  });

  it("verifies blocks far into a large object (past the table entries read with the header)", async () => {
    const large = Buffer.alloc(1100 * objectBlockBytes, 0x5a);
    await backend.put("ns", "large", large);
    const largeOffset = objectDataOffsetBytes(large.length);
    const [tail] = await backend.getRanges("ns", "large", [{ offsetBytes: 1090 * objectBlockBytes + 5, lengthBytes: 9000 }]);
    expect(tail!.equals(large.subarray(1090 * objectBlockBytes + 5, 1090 * objectBlockBytes + 9005))).toBe(true);
    const bytes = await readFile(join(dir, "ns", "large"));
    bytes[largeOffset + 1095 * objectBlockBytes]! ^= 1;
    await writeFile(join(dir, "ns", "large"), bytes);
    await expectOvsError(backend.getRanges("ns", "large", [{ offsetBytes: 1095 * objectBlockBytes, lengthBytes: 1 }]), "CHECKSUM_MISMATCH");
    await expectOvsError(backend.getRanges("ns", "large", [block(0), { offsetBytes: 1094 * objectBlockBytes, lengthBytes: 8192 }]),
      "CHECKSUM_MISMATCH");
    expect((await backend.getRanges("ns", "large", [{ offsetBytes: 1096 * objectBlockBytes, lengthBytes: 4 }]))[0]!.length).toBe(4);
  });
});

describe("LocalBackend crash during apply (in process)", () => {
  const crashPoints: Array<[ApplyCrashPoint, number, "nothing" | "everything"]> = [
    ["staged", -1, "nothing"],
    ["committed", -1, "everything"],
    ["update-applied", 0, "everything"],
    ["update-applied", 1, "everything"],
    ["updates-synced", -1, "everything"],
  ];

  it.each(crashPoints)("after a crash at %s (update %i) reopening leaves %s applied", async (point, updateIndex, expected) => {
    const dir = await newDir();
    const setup = await LocalBackend.open({ dir });
    await seed(setup);
    await setup.close();

    const crashing = await LocalBackend.open({
      dir,
      crashPoint: (at, index) => {
        if (at === point && index === updateIndex) throw new Error("simulated crash");
      },
    });
    const outcome = await runApply(crashing).then(() => "ok", (error: unknown) => error);
    expect(outcome).not.toBe("ok");
    if (expected === "everything") {
      // A committed apply that could not finish stops the backend until it is reopened.
      await expectOvsError(crashing.get("ns", "owner"), "IO_ERROR");
    }

    const reopened = await LocalBackend.open({ dir });
    expect(await snapshot(reopened)).toEqual(expected === "everything" ? afterApply : beforeApply);
    expect((await readdir(join(dir, "ns"))).filter((entry) => entry.startsWith("."))).toEqual([]);
    await reopened.close();
  });

  it("replays a journal left on disk as a crash would leave it, twice without harm", async () => {
    const dir = await newDir();
    const backend = await LocalBackend.open({ dir });
    await seed(backend);
    await backend.close();
    // Hand-made state of a crash right after the commit point: staged object + journal.
    const applyId = "00000000000000aa";
    await writeFile(join(dir, "ns", stagedObjectName(applyId, 0)), await readFile(join(dir, "ns", "owner")));
    await writeFile(join(dir, "ns", journalFileName(applyId)),
      encodeJournal({ applyId, updates: [{ kind: "put", name: "copy" }, { kind: "delete", name: "old" }] }));
    await writeFile(join(dir, "ns", ".tmp-0123"), "stale temp file");
    await writeFile(join(dir, "ns", stagedObjectName("00000000000000bb", 0)), "staged by an apply that never committed");
    const journalCopy = await readFile(join(dir, "ns", journalFileName(applyId)));

    const reopened = await LocalBackend.open({ dir });
    expect(await snapshot(reopened)).toEqual({ copy: "node-1", owner: "node-1", keep: "keep" });
    expect((await readdir(join(dir, "ns"))).filter((entry) => entry.startsWith("."))).toEqual([]);
    await reopened.close();

    // The journal reappears (its unlink never reached the disk, and no later change fsynced the
    // directory) with its staged object already renamed: replaying it again changes nothing.
    await writeFile(join(dir, "ns", journalFileName(applyId)), journalCopy);
    const again = await LocalBackend.open({ dir });
    expect(await snapshot(again)).toEqual({ copy: "node-1", owner: "node-1", keep: "keep" });
    await again.close();
  });

  it("refuses to open with a damaged journal, or two journals (CORRUPT)", async () => {
    const dir = await newDir();
    const backend = await LocalBackend.open({ dir });
    await seed(backend);
    await backend.close();
    const journal = encodeJournal({ applyId: "00000000000000cc", updates: [{ kind: "delete", name: "old" }] });
    journal[journal.length - 2]! ^= 1;
    await writeFile(join(dir, "ns", journalFileName("00000000000000cc")), journal);
    await expectOvsError(LocalBackend.open({ dir }), "CORRUPT");
    journal[journal.length - 2]! ^= 1;
    await writeFile(join(dir, "ns", journalFileName("00000000000000cc")), journal);
    await writeFile(join(dir, "ns", journalFileName("00000000000000dd")),
      encodeJournal({ applyId: "00000000000000dd", updates: [{ kind: "delete", name: "keep" }] }));
    await expectOvsError(LocalBackend.open({ dir }), "CORRUPT");
  });
});

describe("LocalBackend crash during apply (child process killed with SIGKILL)", () => {
  const here = dirname(fileURLToPath(import.meta.url));
  const compiled = resolve(here, "../../dist/src/backend/local-backend.js");
  const source = resolve(here, "local-backend.ts");
  const compiledIsFresh = existsSync(compiled) && statSync(compiled).mtimeMs >= statSync(source).mtimeMs;

  it.each([
    ["staged", -1, "nothing"],
    ["update-applied", 0, "everything"],
  ] as const)("kill -9 at %s (update %i) leaves %s applied", async (point, updateIndex, expected) => {
    expect(compiledIsFresh, `${compiled} is missing or older than its source: run \`npx tsc -p .\` first`).toBe(true);
    const dir = await newDir();
    const setup = await LocalBackend.open({ dir });
    await seed(setup);
    await setup.close();

    const script = join(dir, "..", `${dir.split("/").pop()}-child.mjs`);
    roots.push(script);
    await writeFile(script, `
      import { LocalBackend } from ${JSON.stringify(pathToFileURL(compiled).href)};
      const [dir, point, updateIndex] = process.argv.slice(2);
      const backend = await LocalBackend.open({ dir, crashPoint: async (at, index) => {
        if (at !== point || index !== Number(updateIndex)) return;
        process.stdout.write("at-crash-point\\n");
        setInterval(() => {}, 1000);
        await new Promise(() => {});
      } });
      await backend.apply("ns", ${applyArgumentsSource});
      process.stdout.write("finished\\n");
    `);
    const child = spawn(process.execPath, [script, dir, point, String(updateIndex)], { stdio: ["ignore", "pipe", "inherit"] });
    const exited = new Promise<NodeJS.Signals | number | null>((resolveExit) => child.on("exit", (code, signal) => resolveExit(signal ?? code)));
    let output = "";
    await new Promise<void>((resolveReady, rejectReady) => {
      child.stdout.on("data", (chunk: Buffer) => {
        output += chunk.toString();
        if (output.includes("at-crash-point")) resolveReady();
      });
      child.on("exit", () => rejectReady(new Error(`child exited before its crash point: ${output}`)));
    });
    process.kill(child.pid!, "SIGKILL");
    expect(await exited).toBe("SIGKILL");

    const reopened = await LocalBackend.open({ dir });
    expect(await snapshot(reopened)).toEqual(expected === "everything" ? afterApply : beforeApply);
    expect((await readdir(join(dir, "ns"))).filter((entry) => entry.startsWith("."))).toEqual([]);
    await reopened.close();
  });
});

describe("LocalBackend handle cache", () => {
  const cluster = { offsetBytes: 4096, lengthBytes: 4096 };
  const read = async (backend: LocalBackend, name: string): Promise<number> =>
    (await backend.getRanges("ns", name, [cluster]))[0]![0]!;

  it("never serves a file that lost its name to a put, delete, apply or namespace deletion", async () => {
    const backend = await LocalBackend.open({ dir: await newDir(), handleCacheCountMax: 4 });
    await backend.createNamespace("ns");
    await backend.put("ns", "a", Buffer.alloc(8192, 1));
    expect(await read(backend, "a")).toBe(1);
    await backend.put("ns", "a", Buffer.alloc(8192, 2));
    expect(await read(backend, "a")).toBe(2);
    await backend.apply("ns", [], [{ kind: "put", name: "a", data: Buffer.alloc(8192, 3) }]);
    expect(await read(backend, "a")).toBe(3);
    await backend.delete("ns", "a");
    await expectOvsError(read(backend, "a"), "NOT_FOUND");
    await backend.put("ns", "a", Buffer.alloc(8192, 4));
    expect(await read(backend, "a")).toBe(4);
    await backend.deleteNamespace("ns");
    await backend.createNamespace("ns");
    await expectOvsError(read(backend, "a"), "NOT_FOUND");
    await backend.put("ns", "a", Buffer.alloc(8192, 5));
    expect(await read(backend, "a")).toBe(5);
    await backend.close();
  });

  it("stays correct when reads, overwrites and evictions interleave", async () => {
    const backend = await LocalBackend.open({ dir: await newDir(), handleCacheCountMax: 3 });
    await backend.createNamespace("ns");
    const names = Array.from({ length: 8 }, (_, index) => `o${index}`);
    const version = new Map<string, number>();
    for (const name of names) {
      await backend.put("ns", name, Buffer.alloc(8192, 1));
      version.set(name, 1);
    }
    for (let round = 0; round < 20; round += 1) {
      const name = names[(round * 5) % names.length]!;
      const next = (version.get(name)! % 250) + 1;
      const reads = names.map((other) => read(backend, other));
      await backend.put("ns", name, Buffer.alloc(8192, next));
      version.set(name, next);
      await Promise.all(reads);
      for (const other of names) expect(await read(backend, other)).toBe(version.get(other));
    }
    await backend.close();
  });
});

describe("LocalBackend open", () => {
  it("removes stale temporary files and half-deleted namespaces", async () => {
    const dir = await newDir();
    const backend = await LocalBackend.open({ dir });
    await backend.createNamespace("ns");
    await backend.put("ns", "kept", Buffer.from("kept"));
    await backend.close();
    await writeFile(join(dir, "ns", ".tmp-deadbeef"), "half a put");
    await writeFile(join(dir, ".tmp-cafe"), "half a marker");
    await mkdir(join(dir, ".deleting-0011223344556677", "inner"), { recursive: true });
    const reopened = await LocalBackend.open({ dir });
    expect((await readdir(dir)).sort()).toEqual([".ovs-local-backend", "ns"]);
    expect(await readdir(join(dir, "ns"))).toEqual(["kept"]);
    expect(await reopened.listNamespaces()).toEqual({ names: ["ns"], more: false });
  });

  it("refuses a non-empty directory that is not a local backend", async () => {
    const dir = await newDir();
    await writeFile(join(dir, "precious.txt"), "not ours");
    await expectOvsError(LocalBackend.open({ dir }), "INVALID_ARGUMENT");
    expect(await readdir(dir)).toEqual(["precious.txt"]);
  });

  it("creates a missing directory and reopens it", async () => {
    const dir = join(await newDir(), "a", "b");
    const backend = await LocalBackend.open({ dir });
    await backend.createNamespace("ns");
    await backend.put("ns", "x", Buffer.from("x"));
    await backend.close();
    const reopened = await LocalBackend.open({ dir });
    expect((await reopened.get("ns", "x")).toString()).toBe("x");
    expect(reopened.description).toBe(`local:${dir}`);
  });
});

// ---- the apply that the crash tests interrupt ----

const beforeApply = { owner: "node-1", old: "old", keep: "keep" };
const afterApply = { owner: "node-2", keep: "keep", new: "new" };
const applyArgumentsSource = `[{ kind: "equals", name: "owner", value: Buffer.from("node-1") }],
  [{ kind: "put", name: "owner", data: Buffer.from("node-2") }, { kind: "delete", name: "old" },
   { kind: "put", name: "new", data: Buffer.from("new") }]`;

async function seed(backend: LocalBackend): Promise<void> {
  await backend.createNamespace("ns");
  for (const [name, value] of Object.entries(beforeApply)) await backend.put("ns", name, Buffer.from(value));
}

function runApply(backend: LocalBackend): Promise<void> {
  return backend.apply("ns", [{ kind: "equals", name: "owner", value: Buffer.from("node-1") }], [
    { kind: "put", name: "owner", data: Buffer.from("node-2") },
    { kind: "delete", name: "old" },
    { kind: "put", name: "new", data: Buffer.from("new") },
  ]);
}

async function snapshot(backend: LocalBackend): Promise<Record<string, string>> {
  const result: Record<string, string> = {};
  for (const name of (await backend.list("ns")).names) result[name] = (await backend.get("ns", name)).toString();
  return result;
}

describe("LocalBackend fenced puts (one put asserting another object)", () => {
  it("lands each put before the owner changes or refuses it, never after, with many in flight", async () => {
    const backend = await LocalBackend.open({ dir: await newDir() });
    try {
      await backend.createNamespace("ns");
      await backend.put("ns", "owner", Buffer.from("A"));
      const results: Array<Promise<"ok" | "refused">> = [];
      let ownerChange: Promise<void> | undefined;
      for (let i = 0; i < 40; i++) {
        const data = Buffer.alloc(64 * 1024, i);
        results.push(
          backend.apply("ns", [{ kind: "equals", name: "owner", value: Buffer.from("A") }], [{ kind: "put", name: `sco_${i}`, data }]).then(
            () => "ok" as const,
            (error: unknown) => {
              if (!isOvsError(error, "ASSERT_FAILED")) throw error;
              return "refused" as const;
            },
          ),
        );
        if (i === 20) ownerChange = backend.apply("ns", [{ kind: "equals", name: "owner", value: Buffer.from("A") }], [{ kind: "put", name: "owner", data: Buffer.from("B") }]);
      }
      const outcomes = await Promise.all(results);
      await ownerChange;
      expect(outcomes.slice(0, 20).every((o) => o === "ok")).toBe(true); // queued before the change
      expect(outcomes.includes("refused")).toBe(true); // some came after it
      for (const [i, outcome] of outcomes.entries()) {
        expect(await backend.exists("ns", `sco_${i}`)).toBe(outcome === "ok");
        if (outcome === "ok") expect((await backend.get("ns", `sco_${i}`)).equals(Buffer.alloc(64 * 1024, i))).toBe(true);
      }
      // After the change every put asserting the old owner is refused and writes nothing.
      await expect(backend.apply("ns", [{ kind: "equals", name: "owner", value: Buffer.from("A") }], [{ kind: "put", name: "late", data: Buffer.from("x") }])).rejects.toMatchObject({ code: "ASSERT_FAILED" });
      expect(await backend.exists("ns", "late")).toBe(false);
      expect((await backend.get("ns", "owner")).toString()).toBe("B");
    } finally {
      await backend.close();
    }
  });

  it("never passes an assert on a cached owner value that a put, delete, apply or namespace deletion changed", async () => {
    const backend = await LocalBackend.open({ dir: await newDir() });
    const owner = (value: string) => [{ kind: "equals" as const, name: "owner", value: Buffer.from(value) }];
    const put = (name: string) => [{ kind: "put" as const, name, data: Buffer.from(name) }];
    try {
      await backend.createNamespace("ns");
      await backend.put("ns", "owner", Buffer.from("A"));
      await backend.apply("ns", owner("A"), put("x1")); // reads and caches "A"
      await backend.apply("ns", owner("A"), put("x2")); // from the cache
      await backend.put("ns", "owner", Buffer.from("B")); // plain put
      await expect(backend.apply("ns", owner("A"), put("x3"))).rejects.toMatchObject({ code: "ASSERT_FAILED" });
      await backend.apply("ns", owner("B"), put("x4"));
      await backend.apply("ns", owner("B"), [{ kind: "put", name: "owner", data: Buffer.from("C") }]); // single-put apply of the owner itself
      await expect(backend.apply("ns", owner("B"), put("x5"))).rejects.toMatchObject({ code: "ASSERT_FAILED" });
      await backend.apply("ns", owner("C"), [...put("y"), { kind: "put", name: "owner", data: Buffer.from("D") }]); // journaled apply
      await expect(backend.apply("ns", owner("C"), put("x6"))).rejects.toMatchObject({ code: "ASSERT_FAILED" });
      await backend.apply("ns", owner("D"), put("x7"));
      await backend.delete("ns", "owner");
      await expect(backend.apply("ns", owner("D"), put("x8"))).rejects.toMatchObject({ code: "ASSERT_FAILED" });
      await backend.put("ns", "owner", Buffer.from("E"));
      await backend.apply("ns", owner("E"), put("x9"));
      await backend.deleteNamespace("ns");
      await backend.createNamespace("ns");
      await backend.put("ns", "owner", Buffer.from("F"));
      await expect(backend.apply("ns", owner("E"), put("x10"))).rejects.toMatchObject({ code: "ASSERT_FAILED" });
      await backend.apply("ns", owner("F"), put("x11"));
      const names = (await backend.list("ns")).names;
      expect(names.sort()).toEqual(["owner", "x11"]);
    } finally {
      await backend.close();
    }
  });
});

describe("LocalBackend linked objects (a put's file hard-linked, not copied)", () => {
  const sco = (seed: number, bytes = 3 * objectBlockBytes + 100): Buffer => {
    const data = Buffer.alloc(bytes);
    for (let i = 0; i < bytes; i++) data[i] = (i * 31 + seed) & 0xff;
    return data;
  };
  async function setUp(): Promise<{ dir: string; backend: LocalBackend; source: string }> {
    const dir = await newDir();
    const backend = await LocalBackend.open({ dir: join(dir, "backend") });
    await backend.createNamespace("ns");
    await mkdir(join(dir, "sco"));
    return { dir, backend, source: join(dir, "sco") };
  }
  const dataFiles = async (dir: string): Promise<string[]> => (await readdir(join(dir, "backend", "ns"))).filter((name) => name.startsWith(".d-")).sort();

  it("stores a put's file by linking it: one inode, a header-and-table file, every read verified", async () => {
    const { dir, backend, source } = await setUp();
    const data = sco(1);
    const file = join(source, "00_00000001_00");
    await writeFile(file, data);
    await backend.apply("ns", [], [{ kind: "put", name: "00_00000001_00", data, file }]);
    const [dataFile] = await dataFiles(dir);
    expect(dataFile).toMatch(/^\.d-[0-9a-f]{16}-00_00000001_00$/);
    expect(statSync(file).nlink).toBe(2);
    expect(statSync(join(dir, "backend", "ns", dataFile!)).ino).toBe(statSync(file).ino);
    const header = await readFile(join(dir, "backend", "ns", "00_00000001_00"));
    expect(header.length).toBe(objectDataOffsetBytes(data.length)); // header and table only
    const decoded = decodeObjectHeader(header);
    expect(decoded).toEqual({ ok: true, dataBytes: data.length, linkId: dataFile!.slice(3, 19) });
    expect((await backend.get("ns", "00_00000001_00")).equals(data)).toBe(true);
    const [middle] = await backend.getRanges("ns", "00_00000001_00", [{ offsetBytes: objectBlockBytes + 7, lengthBytes: 5000 }]);
    expect(middle!.equals(data.subarray(objectBlockBytes + 7, objectBlockBytes + 5007))).toBe(true);
    expect(await backend.sizeBytes("ns", "00_00000001_00")).toBe(data.length);
    expect((await backend.list("ns")).names).toEqual(["00_00000001_00"]);
    // The volume drops its copy later: the object keeps the bytes.
    await rm(file);
    expect((await backend.get("ns", "00_00000001_00")).equals(data)).toBe(true);
    await backend.close();
  });

  it("takes the caller's block checksums for the table, and a wrong one fails the reads of that block", async () => {
    const { backend, source } = await setUp();
    const data = sco(7);
    const crcs = new Uint32Array(4);
    for (let block = 0; block < 4; block++) crcs[block] = crc32c(data.subarray(block * objectBlockBytes, Math.min(data.length, (block + 1) * objectBlockBytes)));
    await writeFile(join(source, "right"), data);
    await backend.apply("ns", [], [{ kind: "put", name: "right", data, file: join(source, "right"), blockCrcs: crcs }]);
    expect((await backend.get("ns", "right")).equals(data)).toBe(true);
    const wrong = Uint32Array.from(crcs);
    wrong[2] = wrong[2]! ^ 1;
    await writeFile(join(source, "wrong"), data);
    await backend.apply("ns", [], [{ kind: "put", name: "wrong", data, file: join(source, "wrong"), blockCrcs: wrong }]);
    await expectOvsError(backend.get("ns", "wrong"), "CHECKSUM_MISMATCH");
    expect((await backend.getRanges("ns", "wrong", [{ offsetBytes: 0, lengthBytes: 2 * objectBlockBytes }]))[0]!.equals(data.subarray(0, 2 * objectBlockBytes))).toBe(true);
    // Not a Uint32Array: refused, nothing stored.
    await expectOvsError(backend.apply("ns", [], [{ kind: "put", name: "bad", data, file: join(source, "right"), blockCrcs: [1, 2, 3, 4] as unknown as Uint32Array }]), "INVALID_ARGUMENT");
    expect(await backend.exists("ns", "bad")).toBe(false);
    await backend.close();
  });

  it("fails reads of a linked object whose data file is damaged, cut or missing (CHECKSUM_MISMATCH)", async () => {
    const { dir, backend, source } = await setUp();
    const data = sco(2);
    for (const name of ["a", "b", "c"]) {
      await writeFile(join(source, name), data);
      await backend.apply("ns", [], [{ kind: "put", name, data, file: join(source, name) }]);
    }
    const damaged = Buffer.from(data);
    damaged[objectBlockBytes + 1] = damaged[objectBlockBytes + 1]! ^ 0x40;
    await writeFile(join(source, "a"), damaged); // the same inode: the backend's data file changes too
    await expectOvsError(backend.get("ns", "a"), "CHECKSUM_MISMATCH");
    await expectOvsError(backend.getRanges("ns", "a", [{ offsetBytes: objectBlockBytes, lengthBytes: 10 }]), "CHECKSUM_MISMATCH");
    expect((await backend.getRanges("ns", "a", [{ offsetBytes: 0, lengthBytes: 10 }]))[0]!.equals(data.subarray(0, 10))).toBe(true);
    await writeFile(join(source, "b"), data.subarray(0, data.length - 1));
    await expectOvsError(backend.get("ns", "b"), "CHECKSUM_MISMATCH");
    const cFile = (await dataFiles(dir)).find((name) => name.endsWith("-c"))!;
    await rm(join(dir, "backend", "ns", cFile));
    await expectOvsError(backend.get("ns", "c"), "CHECKSUM_MISMATCH");
    await backend.close();
  });

  it("writes the bytes instead when the file is not the object (wrong size) or on another file system", async () => {
    const { dir, backend, source } = await setUp();
    const data = sco(3);
    await writeFile(join(source, "short"), data.subarray(1));
    await backend.apply("ns", [], [{ kind: "put", name: "short", data, file: join(source, "short") }]);
    expect(statSync(join(source, "short")).nlink).toBe(1);
    expect((await backend.get("ns", "short")).equals(data)).toBe(true);
    // /dev/shm is a tmpfs: link(2) across file systems fails with EXDEV and the put copies.
    const shm = await mkdtemp("/dev/shm/ovs-local-backend-");
    try {
      await writeFile(join(shm, "other-fs"), data);
      await backend.apply("ns", [], [{ kind: "put", name: "other-fs", data, file: join(shm, "other-fs") }]);
      expect(statSync(join(shm, "other-fs")).nlink).toBe(1);
      expect((await backend.get("ns", "other-fs")).equals(data)).toBe(true);
    } finally {
      await rm(shm, { recursive: true, force: true });
    }
    expect(await dataFiles(dir)).toEqual([]);
    expect(statSync(join(dir, "backend", "ns", "short")).size).toBe(objectDataOffsetBytes(data.length) + data.length);
    await backend.close();
  });

  it("removes a linked object's data file when it is overwritten, deleted or replaced by an apply", async () => {
    const { dir, backend, source } = await setUp();
    const put = async (name: string, seed: number): Promise<Buffer> => {
      const data = sco(seed);
      await writeFile(join(source, `${name}-${seed}`), data);
      await backend.apply("ns", [], [{ kind: "put", name, data, file: join(source, `${name}-${seed}`) }]);
      return data;
    };
    await put("x", 1);
    const second = await put("x", 2); // linked over linked
    expect((await dataFiles(dir)).length).toBe(1);
    expect(statSync(join(source, "x-1")).nlink).toBe(1);
    expect((await backend.get("ns", "x")).equals(second)).toBe(true);
    await backend.put("ns", "x", Buffer.from("plain")); // plain over linked
    expect(await dataFiles(dir)).toEqual([]);
    // A plain put too large to copy for the put worker (putCopyBytesMax) runs from the event loop.
    await put("v", 7);
    const large = randomFillSync(Buffer.allocUnsafe(putCopyBytesMax + 4096 + 1));
    await backend.put("ns", "v", large);
    expect(await dataFiles(dir)).toEqual([]);
    expect((await backend.get("ns", "v")).equals(large)).toBe(true);
    await put("y", 3);
    expect(await backend.delete("ns", "y")).toBe(true);
    expect(await dataFiles(dir)).toEqual([]);
    await put("z", 4);
    await put("w", 5);
    await backend.apply("ns", [], [{ kind: "delete", name: "z" }, { kind: "put", name: "w", data: Buffer.from("w2") }]); // journaled
    expect(await dataFiles(dir)).toEqual([]);
    expect(await backend.exists("ns", "z")).toBe(false);
    expect((await backend.get("ns", "w")).toString()).toBe("w2");
    await backend.close();
  });

  it("removes data files no header names at open (a crash between link and rename, or after a replace)", async () => {
    const { dir, backend, source } = await setUp();
    const data = sco(6);
    await writeFile(join(source, "kept"), data);
    await backend.apply("ns", [], [{ kind: "put", name: "kept", data, file: join(source, "kept") }]);
    await backend.close();
    const nsDir = join(dir, "backend", "ns");
    const [keptFile] = await dataFiles(dir);
    await writeFile(join(nsDir, ".d-00000000000000aa-kept"), data); // another id than the header's
    await writeFile(join(nsDir, ".d-00000000000000bb-gone"), data); // no object at all
    await writeFile(join(nsDir, ".tmp-00000000000000cc"), Buffer.alloc(10)); // its header file, never renamed
    const reopened = await LocalBackend.open({ dir: join(dir, "backend") });
    expect(await dataFiles(dir)).toEqual([keptFile]);
    expect((await readdir(nsDir)).filter((name) => name.startsWith(".tmp-"))).toEqual([]);
    expect((await reopened.get("ns", "kept")).equals(data)).toBe(true);
    // The namespace is known to hold linked objects after the reopen: a delete removes the data file.
    expect(await reopened.delete("ns", "kept")).toBe(true);
    expect(await dataFiles(dir)).toEqual([]);
    await reopened.close();
  });
});
