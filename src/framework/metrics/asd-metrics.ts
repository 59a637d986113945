// Per-ASD metrics in the node's /metrics: at scrape time the node asks every claimed ASD of the ALBA
// backend registered in the store (the manager's records under ovs/alba/) for its disk usage and
// statistics over the ASD protocol, in parallel, each bounded by probeTimeoutMs. One probe round serves
// all the families of one scrape (cached for probeCacheMs). No ALBA backend: the families have no
// samples. An ASD that does not answer has ovs_asd_up 0 and no other samples.

import { AsdClient, managerKeys, type AsdDiskUsage, type AsdRecord, type AsdStatistics, type BackendRecord } from "../../alba/index.js";
import type { ClusterStore } from "../../store/index.js";

export const asdProbeTimeoutMs = 2000;
const probeCacheMs = 2000;

export interface AsdProbe {
  record: AsdRecord;
  usage?: AsdDiskUsage;
  statistics?: AsdStatistics;
}

type Sample = { value: number; labels: Record<string, string | number> };

export class AsdProbes {
  private cached: { atMs: number; probes: Promise<AsdProbe[]> } | undefined;

  constructor(private readonly options: { store: ClusterStore; root?: string; clusterSecret?: string }) {}

  /** The latest probe round (a new one when the cached one is older than probeCacheMs). */
  probes(): Promise<AsdProbe[]> {
    const nowMs = Date.now();
    if (this.cached === undefined || nowMs - this.cached.atMs > probeCacheMs) this.cached = { atMs: nowMs, probes: this.probeAll() };
    return this.cached.probes;
  }

  private async probeAll(): Promise<AsdProbe[]> {
    const keys = managerKeys(this.options.root ?? "ovs/alba/");
    const backendBytes = await this.options.store.get(keys.backend);
    if (backendBytes === undefined) return [];
    const backend = JSON.parse(backendBytes.toString("utf8")) as BackendRecord;
    const records: AsdRecord[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await this.options.store.prefix(keys.asdPrefix, { after, limit: 1000 });
      for (const entry of page.entries) records.push(JSON.parse(entry.value.toString("utf8")) as AsdRecord);
      if (!page.more || page.entries.length === 0) break;
      after = page.entries.at(-1)!.key;
    }
    return Promise.all(records.filter((r) => r.state === "claimed").map(async (record): Promise<AsdProbe> => {
      let client: AsdClient | undefined;
      try {
        client = await AsdClient.connect({
          host: record.host, port: record.port, clusterSecret: this.options.clusterSecret, backendId: backend.backendId, expectedAsdId: record.asdId,
          connectTimeoutMs: asdProbeTimeoutMs, requestTimeoutMs: asdProbeTimeoutMs, reconnect: false,
        });
        return { record, usage: await client.diskUsage(), statistics: await client.statistics() };
      } catch {
        return { record };
      } finally {
        await client?.close().catch(() => undefined);
      }
    }));
  }

  /** The metric families, in the shape prom-client's registry takes (get() may be async). */
  families(): Array<{ name: string; help: string; type: string; aggregator: "sum"; get: () => Promise<{ name: string; help: string; type: string; aggregator: "sum"; values: Sample[] }>; reset: () => void }> {
    const family = (name: string, help: string, type: "gauge" | "counter", pick: (probe: AsdProbe) => Array<[Record<string, string>, number]>) => ({
      name, help, type, aggregator: "sum" as const, reset: () => undefined,
      get: async () => {
        const values: Sample[] = [];
        for (const probe of await this.probes()) for (const [labels, value] of pick(probe)) values.push({ value, labels: { asd: probe.record.asdId, ...labels } });
        return { name, help, type, aggregator: "sum" as const, values };
      },
    });
    const ops = (probe: AsdProbe, pick: (op: { count: number; errorCount: number; latencyUsTotal: number }) => number): Array<[Record<string, string>, number]> =>
      Object.entries(probe.statistics?.ops ?? {}).map(([op, stats]) => [{ op }, pick(stats!)]);
    return [
      family("ovs_asd_up", "1 when the claimed ASD answered this scrape's probe, 0 when not", "gauge", (p) => [[{ asd_node: p.record.nodeId, address: `${p.record.host}:${p.record.port}` }, p.usage ? 1 : 0]]),
      family("ovs_asd_capacity_bytes", "size of the ASD's file system", "gauge", (p) => (p.usage ? [[{}, p.usage.totalBytes]] : [])),
      family("ovs_asd_used_bytes", "bytes used on the ASD's file system", "gauge", (p) => (p.usage ? [[{}, p.usage.usedBytes]] : [])),
      family("ovs_asd_values", "values (fragments and other keys) stored on the ASD", "gauge", (p) => (p.usage ? [[{}, p.usage.valueCount]] : [])),
      family("ovs_asd_refusing_writes", "1 when the ASD is full and refuses writes", "gauge", (p) => (p.usage ? [[{}, p.usage.refusingWrites ? 1 : 0]] : [])),
      family("ovs_asd_operations_total", "requests the ASD served, by operation (since it started)", "counter", (p) => ops(p, (s) => s.count)),
      family("ovs_asd_errors_total", "requests the ASD answered with an error, by operation", "counter", (p) => ops(p, (s) => s.errorCount)),
      family("ovs_asd_latency_seconds_total", "total time the ASD spent serving requests, by operation (divide by operations for the mean)", "counter", (p) => ops(p, (s) => s.latencyUsTotal / 1e6)),
    ];
  }
}
