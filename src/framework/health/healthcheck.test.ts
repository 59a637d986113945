// The health check's states on real components: SUCCESS on a working store, EXCEPTION (HC0001) when a
// test cannot run (a closed store), FAILED for an unreachable NBD server, SKIPPED for alba without an
// ALBA backend, a killed and a full ASD among real ones, and NOT_FOUND for unknown modules and tests.

import { afterEach, beforeEach, describe, expect, it } from "vitest";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { EmbeddedStore } from "../../store/index.js";
import { LocalBackend } from "../../backend/index.js";
import { runHealthCheck, type HealthContext } from "./healthcheck.js";
import { AlbaManager } from "../../alba/index.js";
import { FakeStatfs, startTestAsd, testSecret, type TestAsd } from "../../alba/asd/test-support.js";

let dir: string;
let store: EmbeddedStore;
let backend: LocalBackend;
let context: HealthContext;

beforeEach(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), "ovs-health-"));
  store = await EmbeddedStore.open({ dir: path.join(dir, "store") });
  backend = await LocalBackend.open({ dir: path.join(dir, "backend") });
  context = { nodeId: "n1", dataDir: dir, store, backend, vdisks: () => [], nbd: () => ({ host: "127.0.0.1", port: 1 }) };
});

afterEach(async () => {
  await backend.close();
  await store.close();
  await fsp.rm(dir, { recursive: true, force: true });
});

describe("runHealthCheck", () => {
  it("reports SUCCESS, SKIPPED and FAILED with their codes", async () => {
    const report = await runHealthCheck(context);
    expect(report.result["store.health"]).toMatchObject({ state: "SUCCESS", messages: { success: [{ code: "STO0001" }] } });
    expect(report.result["alba.backend"]).toMatchObject({ state: "SKIPPED", messages: { skip: [{ code: "ALBA0001" }] } });
    expect(report.result["node.nbd"]).toMatchObject({ state: "FAILED", messages: { error: [{ code: "NODE0011" }] } });
    expect(report.recap.FAILED).toBe(1);
    expect(await store.exists("ovs/health/n1")).toBe(false); // the round trip cleans up
  });

  it("reports EXCEPTION when a test cannot run", async () => {
    await store.close();
    const report = await runHealthCheck(context, "store");
    expect(report.result["store.read-write"]).toMatchObject({ state: "EXCEPTION", messages: { exception: [{ code: "HC0001" }] } });
    expect(report.recap.EXCEPTION).toBeGreaterThanOrEqual(1);
  });

  it("finds a killed ASD and a full ASD among the claimed ones", async () => {
    const manager = await AlbaManager.open({ store });
    const statfs = new FakeStatfs();
    const asds: TestAsd[] = [];
    try {
      for (let index = 0; index < 3; index++) {
        const asd = await startTestAsd(path.join(dir, `asd${index}`), index === 2 ? { statfs: statfs.source, statfsCacheMs: 0 } : {});
        asds.push(asd);
        await manager.registerAsd({ asdId: asd.server.asdId, nodeId: `node${index}`, host: "127.0.0.1", port: asd.port });
      }
      const albaContext = { ...context, alba: { clusterSecret: testSecret } };
      const healthy = await runHealthCheck(albaContext, "alba");
      expect(healthy.result["alba.backend"]).toMatchObject({ state: "SUCCESS", messages: { success: [{ code: "ALBA0002" }] } });
      expect(healthy.result["alba.asds"]).toMatchObject({ state: "SUCCESS", messages: { success: [{ code: "ALBA0010", message: "3 of 3 claimed ASDs answer with room to write." }] } });
      await asds[0]!.stop();
      statfs.fill(0.995);
      const report = await runHealthCheck(albaContext, "alba", "asds");
      const result = report.result["alba.asds"]!;
      expect(result.state).toBe("FAILED");
      const errors = result.messages.error!.map((m) => [m.code, m.message]);
      expect(errors).toHaveLength(2);
      expect(errors).toContainEqual(["ALBA0011", expect.stringContaining(`ASD ${asds[0]!.server.asdId} (node node0, 127.0.0.1:${asds[0]!.port}) does not answer`)]);
      expect(errors).toContainEqual(["ALBA0012", expect.stringContaining(`ASD ${asds[2]!.server.asdId} (node node2, 127.0.0.1:${asds[2]!.port}) is full (99.5 % used)`)]);
      expect(result.messages.success).toEqual([{ code: "ALBA0010", message: "1 of 3 claimed ASDs answer with room to write." }]);
      statfs.fill(0.95);
      const warning = await runHealthCheck(albaContext, "alba", "asds");
      expect(warning.result["alba.asds"]!.messages.warning).toEqual([{ code: "ALBA0013", message: expect.stringContaining("is 95.0 % full; it refuses writes at 99 %") }]);
    } finally {
      for (const asd of asds) await asd.stop();
    }
  });

  it("refuses unknown modules and tests", async () => {
    await expect(runHealthCheck(context, "nope")).rejects.toThrow(/no health check module nope/);
    await expect(runHealthCheck(context, "node", "nope")).rejects.toThrow(/module node has no test nope/);
  });
});
