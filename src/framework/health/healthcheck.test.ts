// The health check's states on real components: SUCCESS on a working store, EXCEPTION (HC0001) when a
// test cannot run (a closed store), FAILED for an unreachable NBD server, SKIPPED for alba on a local
// backend, and NOT_FOUND for unknown modules and tests.

import { afterEach, beforeEach, describe, expect, it } from "vitest";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { EmbeddedStore } from "../../store/index.js";
import { LocalBackend } from "../../backend/index.js";
import { runHealthCheck, type HealthContext } from "./healthcheck.js";

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

  it("refuses unknown modules and tests", async () => {
    await expect(runHealthCheck(context, "nope")).rejects.toThrow(/no health check module nope/);
    await expect(runHealthCheck(context, "node", "nope")).rejects.toThrow(/module node has no test nope/);
  });
});
