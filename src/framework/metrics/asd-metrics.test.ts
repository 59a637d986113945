// Per-ASD metrics from real ASDs registered through the ALBA manager: capacity, use, operations, and
// ovs_asd_up 0 for a stopped one; no samples without an ALBA backend. Parsed with the strict reader.

import { afterEach, beforeEach, describe, expect, it } from "vitest";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { EmbeddedStore } from "../../store/index.js";
import { AlbaManager } from "../../alba/index.js";
import { FakeStatfs, connectTestClient, startTestAsd, testSecret, type TestAsd } from "../../alba/asd/test-support.js";
import { parsePrometheusText, sampleValue } from "../../../tests/prometheus-text.js";
import { AsdProbes } from "./asd-metrics.js";
import { NodeMetrics } from "./metrics.js";

let dir: string;
let store: EmbeddedStore;

beforeEach(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), "ovs-asd-metrics-"));
  store = await EmbeddedStore.open({ dir: path.join(dir, "store") });
});

afterEach(async () => {
  await store.close();
  await fsp.rm(dir, { recursive: true, force: true });
});

describe("ASD metrics", () => {
  it("has the families and no samples without an ALBA backend", async () => {
    const families = parsePrometheusText(await new NodeMetrics({ nodeId: "n1", processMetrics: false, asds: new AsdProbes({ store }) }).text());
    expect(families.get("ovs_asd_up")?.type).toBe("gauge");
    expect(families.get("ovs_asd_up")?.samples).toEqual([]);
  });

  it("reports capacity, use and operations per claimed ASD, and up 0 for a stopped one", async () => {
    const manager = await AlbaManager.open({ store });
    const statfs = new FakeStatfs();
    statfs.fill(0.25);
    const asds: TestAsd[] = [];
    try {
      for (let index = 0; index < 2; index++) {
        const asd = await startTestAsd(path.join(dir, `asd${index}`), { statfs: statfs.source, statfsCacheMs: 0 });
        asds.push(asd);
        await manager.registerAsd({ asdId: asd.server.asdId, nodeId: `node${index}`, host: "127.0.0.1", port: asd.port });
      }
      const client = await connectTestClient(asds[0]!.port, { backendId: manager.backendId });
      await client.claim();
      await client.get(Buffer.from("nothing-here"));
      await client.close();
      await asds[1]!.stop();
      const metrics = new NodeMetrics({ nodeId: "n1", processMetrics: false, asds: new AsdProbes({ store, clusterSecret: testSecret }) });
      const families = parsePrometheusText(await metrics.text());
      const first = { asd: asds[0]!.server.asdId, node: "n1" };
      expect(sampleValue(families, "ovs_asd_up", { ...first, asd_node: "node0", address: `127.0.0.1:${asds[0]!.port}` })).toBe(1);
      expect(sampleValue(families, "ovs_asd_up", { asd: asds[1]!.server.asdId, asd_node: "node1" })).toBe(0);
      expect(sampleValue(families, "ovs_asd_capacity_bytes", first)).toBe(100 * 2 ** 30);
      expect(sampleValue(families, "ovs_asd_used_bytes", first)).toBe(25 * 2 ** 30);
      expect(sampleValue(families, "ovs_asd_refusing_writes", first)).toBe(0);
      expect(sampleValue(families, "ovs_asd_operations_total", { ...first, op: "multiGet" })).toBeGreaterThanOrEqual(1);
      expect(families.get("ovs_asd_capacity_bytes")!.samples.some((s) => s.labels.asd === asds[1]!.server.asdId)).toBe(false);
    } finally {
      for (const asd of asds) await asd.stop();
    }
  });
});
