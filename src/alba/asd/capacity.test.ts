// `ovs asd --capacity`: the capped disk-space source, and an ASD that fills up at 99 % of its capacity,
// refuses writes with NO_SPACE and still serves reads and deletes.

import { afterEach, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { isOvsError, silentLogger } from "../../base/index.js";
import { AsdClient } from "./asd-client.js";
import { runAsd, type AsdHandle } from "./asd-server.js";
import { capacityStatfs, directoryUsedBytes } from "./capacity.js";

const dirs: string[] = [];
const handles: AsdHandle[] = [];
afterEach(async () => {
  for (const handle of handles.splice(0)) await handle.close();
  for (const dir of dirs.splice(0)) await fsp.rm(dir, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), "ovs-capacity-"));
  dirs.push(dir);
  return dir;
}

describe("ASD capacity", () => {
  it("reports the cap as the total and the directory's allocated bytes as used", async () => {
    const dir = await tempDir();
    await fsp.mkdir(path.join(dir, "a", "b"), { recursive: true });
    await fsp.writeFile(path.join(dir, "a", "b", "f"), randomBytes(100 * 1024));
    const usedBytes = await directoryUsedBytes(dir);
    expect(usedBytes).toBeGreaterThanOrEqual(100 * 1024);
    const space = await capacityStatfs(1024 * 1024)(dir);
    expect(space.totalBytes).toBe(1024 * 1024);
    expect(space.freeBytes).toBe(1024 * 1024 - usedBytes);
    expect((await capacityStatfs(64 * 1024)(dir)).freeBytes).toBe(0); // never negative
    expect(() => capacityStatfs(0)).toThrow(/positive number of bytes/);
  });

  it("an ASD at its capacity refuses writes with NO_SPACE and serves reads and deletes", async () => {
    const dir = await tempDir();
    const handle = await runAsd({ dir: path.join(dir, "asd"), host: "127.0.0.1", port: 0, clusterSecret: "s", logger: silentLogger(), capacityBytes: 2 * 1024 * 1024 });
    handles.push(handle);
    const client = await AsdClient.connect({ host: "127.0.0.1", port: handle.port, clusterSecret: "s", backendId: "b" });
    try {
      await client.claim();
      const value = randomBytes(256 * 1024);
      let stored = 0;
      let refusal: unknown;
      for (let index = 0; index < 32 && refusal === undefined; index++) {
        try {
          await client.apply([], [{ kind: "set", key: Buffer.from(`k${index}`), value }]);
          stored++;
        } catch (error) {
          refusal = error;
        }
      }
      expect(isOvsError(refusal, "NO_SPACE")).toBe(true);
      expect(stored).toBeGreaterThan(0);
      expect(stored).toBeLessThan(8);
      const usage = await client.diskUsage();
      expect(usage.totalBytes).toBe(2 * 1024 * 1024);
      expect((await client.get(Buffer.from("k0")))?.equals(value)).toBe(true);
      await client.apply([], [{ kind: "delete", key: Buffer.from("k0") }]);
      expect(await client.get(Buffer.from("k0"))).toBeUndefined();
    } finally {
      await client.close();
    }
  });
});
