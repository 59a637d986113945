// Tests of EmbeddedStore: the ClusterStore contract suite, plus what only the embedded store promises:
// its data survives close/reopen and kill -9 with every acknowledged write present, its on-disk layout is
// the one docs/formats/embedded-store.md describes, and one directory is open in one process at a time.
// The crash and lock tests run dist/src/store/embedded-store.child.js (built by `npx tsc -p .`).

import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm, stat, symlink } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { open as openLmdb } from "lmdb";
import { afterAll, describe, expect, it } from "vitest";
import { OvsError } from "../base/index.js";
import { clusterStoreContract } from "./cluster-store.contract.js";
import { EmbeddedStore } from "./embedded-store.js";

const temporaryRoot = await mkdtemp(path.join(os.tmpdir(), "ovs-embedded-store-"));
let directoryCount = 0;
const freshDir = (): string => path.join(temporaryRoot, `store-${directoryCount++}`);

afterAll(async () => {
  await rm(temporaryRoot, { recursive: true, force: true });
});

clusterStoreContract("EmbeddedStore", () => EmbeddedStore.open({ dir: freshDir() }));

const repositoryRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const childScript = path.join(repositoryRoot, "dist/src/store/embedded-store.child.js");

/** Fails clearly when dist/ is missing or older than the sources the child runs. */
async function checkChildBuilt(): Promise<void> {
  const built = await stat(childScript).catch(() => undefined);
  if (built === undefined) throw new Error(`${childScript} is missing: run \`npx tsc -p .\` before the tests.`);
  for (const source of ["embedded-store.child.ts", "embedded-store.ts", "cluster-store.ts"]) {
    const sourceStat = await stat(path.join(repositoryRoot, "src/store", source));
    if (sourceStat.mtimeMs > built.mtimeMs) throw new Error(`dist/ is older than src/store/${source}: run \`npx tsc -p .\` first.`);
  }
}

/** Same as the child's: the value stored under `key`. */
function crashTestValue(key: string): Buffer {
  return Buffer.from(`value of ${key};`.repeat(16), "utf8");
}

interface RunningChild {
  child: ChildProcess;
  lines: string[];
  exited: Promise<void>;
  stderr: () => string;
}

function startChild(mode: "writer" | "hold", dir: string): RunningChild {
  const child = spawn(process.execPath, [childScript, mode, dir], { stdio: ["ignore", "pipe", "pipe"] });
  const lines: string[] = [];
  let partial = "";
  let stderrText = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
    const parts = (partial + chunk).split("\n");
    partial = parts.pop()!;
    lines.push(...parts);
  });
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (stderrText += chunk));
  const exited = new Promise<void>((resolve) => child.once("close", () => resolve()));
  return { child, lines, exited, stderr: () => stderrText };
}

async function waitForLines(running: RunningChild, predicate: (lines: string[]) => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!predicate(running.lines)) {
    if (running.child.exitCode !== null) throw new Error(`the child exited (${running.child.exitCode}) before ${what}: ${running.stderr()}`);
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; stderr: ${running.stderr()}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

async function killHard(running: RunningChild): Promise<void> {
  const pid = running.child.pid;
  expect(pid).toBeTypeOf("number");
  process.kill(pid!, "SIGKILL");
  await running.exited;
  expect(running.child.signalCode).toBe("SIGKILL");
}

describe("EmbeddedStore persistence", () => {
  it("keeps every change across close and reopen", async () => {
    const dir = freshDir();
    const first = await EmbeddedStore.open({ dir });
    await first.put("config/a", Buffer.from("1"));
    await first.put("config/b", Buffer.from("2"));
    await first.put("gone/x", Buffer.from("3"));
    await first.sequence([{ kind: "absent", key: "config/c" }], [
      { kind: "put", key: "config/c", value: Buffer.from("4") },
      { kind: "deletePrefix", prefix: "gone/" },
    ]);
    await first.delete("config/b");
    await first.close();

    const second = await EmbeddedStore.open({ dir });
    const page = await second.prefix("", { limit: 10 });
    expect(page.entries.map((entry) => `${entry.key}=${entry.value.toString()}`)).toEqual(["config/a=1", "config/c=4"]);
    await second.put("config/d", Buffer.from("5"));
    await second.close();

    const third = await EmbeddedStore.open({ dir });
    expect((await third.get("config/d"))?.toString()).toBe("5");
    await third.close();
  });

  it("lays its data out as docs/formats/embedded-store.md says (golden example)", async () => {
    const dir = freshDir();
    const store = await EmbeddedStore.open({ dir });
    await store.put("/ovs/vpools/é", Buffer.from([0x00, 0x01, 0xff]));
    await store.close();

    const root = openLmdb<Buffer, Buffer>({ path: dir, keyEncoding: "binary", encoding: "binary", readOnly: true });
    try {
      const meta = root.openDB<Buffer, Buffer>({ name: "meta", keyEncoding: "binary", encoding: "binary" });
      const kv = root.openDB<Buffer, Buffer>({ name: "kv", keyEncoding: "binary", encoding: "binary" });
      expect(meta.getBinary(Buffer.from("format"))?.toString("hex")).toBe(
        Buffer.from("openvstorage-embedded-store 1").toString("hex"),
      );
      const entries = [...kv.getRange({})].map(({ key, value }) => [Buffer.from(key).toString("hex"), Buffer.from(value).toString("hex")]);
      // "/ovs/vpools/é" in UTF-8: 2f 6f 76 73 2f 76 70 6f 6f 6c 73 2f c3 a9; the value is stored raw.
      expect(entries).toEqual([["2f6f76732f76706f6f6c732fc3a9", "0001ff"]]);
    } finally {
      await root.close();
    }
  });

  it("refuses a directory whose format marker is not its own", async () => {
    const dir = freshDir();
    const store = await EmbeddedStore.open({ dir });
    await store.close();
    const root = openLmdb<Buffer, Buffer>({ path: dir, keyEncoding: "binary", encoding: "binary", pageSize: 8192 });
    const meta = root.openDB<Buffer, Buffer>({ name: "meta", keyEncoding: "binary", encoding: "binary" });
    await meta.put(Buffer.from("format"), Buffer.from("openvstorage-embedded-store 99"));
    await root.close();
    await expect(EmbeddedStore.open({ dir })).rejects.toMatchObject({ code: "CORRUPT" });
  });
});

describe("EmbeddedStore crash safety", () => {
  for (const ackCountBeforeKill of [50, 400, 1500]) {
    it(`keeps every acknowledged write when killed with SIGKILL after ${ackCountBeforeKill} acknowledgements`, async () => {
      await checkChildBuilt();
      const dir = freshDir();
      const running = startChild("writer", dir);
      await waitForLines(running, (lines) => lines.filter((line) => line.startsWith("ACK ")).length >= ackCountBeforeKill, "acknowledgements");
      await killHard(running);
      const acknowledged = running.lines.filter((line) => line.startsWith("ACK ")).map((line) => line.slice(4));
      expect(acknowledged.length).toBeGreaterThanOrEqual(ackCountBeforeKill);

      const store = await EmbeddedStore.open({ dir });
      try {
        const present = new Map<string, Buffer>();
        let after: string | undefined;
        while (true) {
          const page = await store.range({ first: "w", last: "x", limit: 1000, ...(after === undefined ? {} : { after }) });
          for (const entry of page.entries) present.set(entry.key, entry.value);
          if (!page.more) break;
          after = page.entries[page.entries.length - 1]!.key;
        }
        const missing = acknowledged.filter((key) => !present.has(key));
        expect(missing, "acknowledged keys missing after kill -9").toEqual([]);
        // No torn or foreign values anywhere, acknowledged or not.
        for (const [key, value] of present) expect(value.equals(crashTestValue(key)), `value of ${key}`).toBe(true);
        // Each writer's sequence also set last/wN; it names a key that is present (sequences are atomic).
        for (let writer = 0; writer < 4; writer++) {
          const last = await store.get(`last/w${writer}`);
          if (last !== undefined) expect(present.has(last.toString())).toBe(true);
        }
        // The store works normally after the crash.
        await store.put("after-crash", Buffer.from("ok"));
        expect((await store.get("after-crash"))?.toString()).toBe("ok");
      } finally {
        await store.close();
      }
    });
  }
});

describe("EmbeddedStore one-process lock", () => {
  it("refuses a second open of the same directory in one process, also through a symlink", async () => {
    const dir = freshDir();
    const first = await EmbeddedStore.open({ dir });
    await expect(EmbeddedStore.open({ dir })).rejects.toMatchObject({ code: "IN_USE" });
    const link = `${dir}-link`;
    await symlink(dir, link);
    await expect(EmbeddedStore.open({ dir: link })).rejects.toMatchObject({ code: "IN_USE" });
    await first.put("still", Buffer.from("works"));
    await first.close();
    const second = await EmbeddedStore.open({ dir: link });
    expect((await second.get("still"))?.toString()).toBe("works");
    await second.close();
  });

  it("refuses a directory another process holds, naming it, and frees it when that process is killed", async () => {
    await checkChildBuilt();
    const dir = freshDir();
    const running = startChild("hold", dir);
    try {
      await waitForLines(running, (lines) => lines.some((line) => line.startsWith("READY ")), "the child to open the store");
      let refused: unknown;
      try {
        const store = await EmbeddedStore.open({ dir });
        await store.close();
      } catch (error) {
        refused = error;
      }
      expect(refused).toBeInstanceOf(OvsError);
      expect((refused as OvsError).code).toBe("IN_USE");
      expect((refused as OvsError).message).toContain(`process ${running.child.pid}`);
      expect((refused as OvsError).message).toContain(dir);
    } finally {
      await killHard(running);
    }
    const store = await EmbeddedStore.open({ dir });
    await store.put("mine", Buffer.from("now"));
    await store.close();
  });
});
