// NodeMetrics and MeteredExport on a real in-memory NBD export: counts, bytes, errors and latency
// buckets per operation, the scrape text, and a deleted vDisk's series leaving.

import { describe, expect, it } from "vitest";
import { MemoryExport } from "../../frontend/index.js";
import { NodeMetrics, OpMeter, latencyBucketsSeconds } from "./metrics.js";

describe("OpMeter", () => {
  it("puts each latency in the first bucket whose bound it does not exceed", () => {
    const meter = new OpMeter();
    meter.observe(0.00005, 10); // exactly on the first bound
    meter.observe(0.0003, 10);
    meter.observe(99, 10); // above every bound
    expect(meter.count).toBe(3);
    expect(meter.bytes).toBe(30);
    expect(meter.buckets[0]).toBe(1);
    expect(meter.buckets[latencyBucketsSeconds.indexOf(0.0005)]).toBe(1);
    expect(meter.buckets[latencyBucketsSeconds.length]).toBe(1);
  });
});

describe("NodeMetrics", () => {
  it("counts requests through a metered export and exposes them at scrape time", async () => {
    const metrics = new NodeMetrics({ nodeId: "n1", processMetrics: false });
    const inner = new MemoryExport({ name: "d1", sizeBytes: 1 << 20 });
    const metered = metrics.meter(inner);
    await metered.write(0, Buffer.alloc(4096, 1), false);
    await metered.write(4096, Buffer.alloc(512, 2), true);
    expect((await metered.read(0, 4096)).equals(Buffer.alloc(4096, 1))).toBe(true);
    await metered.flush();
    await expect(metered.read(1 << 20, 4096)).rejects.toThrow();
    const text = await metrics.text();
    expect(text).toContain('ovs_vdisk_operations_total{vdisk="d1",op="write",node="n1"} 2');
    expect(text).toContain('ovs_vdisk_bytes_total{vdisk="d1",op="write",node="n1"} 4608');
    expect(text).toContain('ovs_vdisk_operations_total{vdisk="d1",op="read",node="n1"} 1');
    expect(text).toContain('ovs_vdisk_errors_total{vdisk="d1",op="read",node="n1"} 1');
    expect(text).toContain('ovs_vdisk_latency_seconds_count{vdisk="d1",op="write",node="n1"} 2');
    expect(text).toContain('ovs_vdisk_latency_seconds_bucket{vdisk="d1",op="write",le="+Inf",node="n1"} 2');
    expect(text).toMatch(/# TYPE ovs_vdisk_latency_seconds histogram/);
    metrics.forget("d1");
    expect(await metrics.text()).not.toContain('vdisk="d1"');
  });
});
