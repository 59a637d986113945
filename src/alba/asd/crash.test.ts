// kill -9 of an ASD process in the middle of a write loop: after a restart every acknowledged write is
// there byte for byte, and no half-written value file is left behind (every file in blobs/ belongs to a
// value in the index). The ASD runs as a real process from dist/ (built by `npx tsc -p .` before
// vitest), started with asd-main.js and killed by its own pid only.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { readdir } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { isOvsError } from "../../base/index.js";
import { AsdClient } from "./asd-client.js";
import { asdLimits } from "./limits.js";
import { makeTempDir, patternBytes, testBackendId, testSecret, text } from "./test-support.js";

const mainScript = fileURLToPath(new URL("../../../dist/src/alba/asd/asd-main.js", import.meta.url));

interface RunningAsd {
  child: ChildProcess;
  port: number;
  exited: Promise<void>;
}

const running = new Set<ChildProcess>();

afterEach(() => {
  for (const child of running) {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) process.kill(child.pid, "SIGKILL");
  }
  running.clear();
});

async function startAsdProcess(dir: string): Promise<RunningAsd> {
  if (!existsSync(mainScript)) throw new Error(`${mainScript} is missing: run \`npx tsc -p .\` before vitest`);
  const child = spawn(process.execPath, [mainScript, "--dir", dir, "--port", "0"], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, OVS_CLUSTER_SECRET: testSecret, OVS_LOG_LEVEL: "warn" },
  });
  running.add(child);
  let stdout = "";
  let stderr = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const exited = new Promise<void>((resolve) => child.once("close", () => resolve()));
  const deadline = Date.now() + 30_000;
  for (;;) {
    const match = /^READY (\d+) ([0-9a-f]{32})$/m.exec(stdout);
    if (match !== null) return { child, port: Number(match[1]), exited };
    if (child.exitCode !== null) throw new Error(`the ASD exited (${child.exitCode}): ${stderr}`);
    if (Date.now() > deadline) throw new Error(`the ASD did not start: ${stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function killHard(asd: RunningAsd): Promise<void> {
  process.kill(asd.child.pid!, "SIGKILL");
  await asd.exited;
  expect(asd.child.signalCode).toBe("SIGKILL");
  running.delete(asd.child);
}

/** The value written under key number `index`: every third one is a file value (16 KiB or more). */
function crashValue(index: number): Buffer {
  return index % 3 === 0 ? patternBytes(16 * 1024 + ((index * 7919) % 60_000), index) : patternBytes(50 + (index % 200), index);
}

async function blobFileCount(dir: string): Promise<number> {
  let count = 0;
  for (const sub of await readdir(path.join(dir, "blobs"))) count += (await readdir(path.join(dir, "blobs", sub))).length;
  return count;
}

describe("kill -9 during a write loop", () => {
  it("keeps every acknowledged write and cleans up half-written files, over three crashes", async () => {
    const temp = await makeTempDir();
    try {
      const acknowledged = new Map<string, number>();
      let nextIndex = 0;
      for (const ackCountBeforeKill of [150, 400, 60]) {
        const asd = await startAsdProcess(temp.dir);
        const client = await AsdClient.connect({ host: "127.0.0.1", port: asd.port, clusterSecret: testSecret, backendId: testBackendId, reconnect: false });
        await client.claim();
        let ackedThisRound = 0;
        let stopped = false;
        const writer = async (): Promise<void> => {
          while (!stopped) {
            const index = nextIndex++;
            const key = `crash/${String(index).padStart(6, "0")}`;
            try {
              // Half of the writes are guarded by an assert, as uploads are.
              const asserts = index % 2 === 0 ? [{ kind: "absent" as const, key: text(key) }] : [];
              await client.apply(asserts, [{ kind: "set", key: text(key), value: crashValue(index) }, { kind: "set", key: text(`last/${index % 8}`), value: text(key) }]);
            } catch (error) {
              if (isOvsError(error, "UNAVAILABLE") || isOvsError(error, "CLOSED")) return; // killed mid-request: unknown outcome
              throw error;
            }
            acknowledged.set(key, index);
            ackedThisRound++;
          }
        };
        const writers = Array.from({ length: 8 }, () => writer());
        while (ackedThisRound < ackCountBeforeKill) await new Promise((resolve) => setTimeout(resolve, 2));
        await killHard(asd);
        stopped = true;
        await Promise.all(writers);
        await client.close();

        // Restart: every acknowledged write is there, and every file in blobs/ is a live value.
        const restarted = await startAsdProcess(temp.dir);
        const reader = await AsdClient.connect({ host: "127.0.0.1", port: restarted.port, clusterSecret: testSecret, backendId: testBackendId });
        expect(reader.claimedByYou).toBe(true);
        const keys = [...acknowledged.keys()];
        for (let start = 0; start < keys.length; start += 256) {
          const batch = keys.slice(start, start + 256);
          const results = await reader.multiGet(batch.map(text));
          results.forEach((result, offset) => {
            const key = batch[offset]!;
            expect(result.status, `acknowledged key ${key} after kill -9`).toBe("ok");
            if (result.status === "ok") expect(result.value.equals(crashValue(acknowledged.get(key)!)), `value of ${key}`).toBe(true);
          });
        }
        let fileValueCount = 0;
        let first: Buffer | undefined;
        for (;;) {
          const page = await reader.rangeEntries({ first, limit: 500 });
          for (const entry of page.entries) {
            expect(entry.result.status).toBe("ok");
            if (entry.result.status === "ok" && entry.result.value.length > asdLimits.inlineValueBytesMax) fileValueCount++;
          }
          if (!page.more) break;
          first = Buffer.concat([page.entries.at(-1)!.key, Buffer.from([0])]);
        }
        expect(await blobFileCount(temp.dir)).toBe(fileValueCount);
        expect((await reader.statistics()).counters.checksumErrors).toBe(0);
        await reader.close();
        process.kill(restarted.child.pid!, "SIGTERM");
        await restarted.exited;
        running.delete(restarted.child);
        expect(restarted.child.exitCode).toBe(0);
      }
      expect(acknowledged.size).toBeGreaterThanOrEqual(610);
    } finally {
      await temp.remove();
    }
  });
});
