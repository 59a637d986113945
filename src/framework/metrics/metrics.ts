// Prometheus metrics of a node, served at GET /metrics on the API port (prom-client's text format).
//
// The I/O path is counted without allocating: each vDisk gets a VDiskMeters object when it is opened,
// holding plain numbers and one Float64Array of latency buckets per operation; MeteredExport (the NBD
// export of a vDisk, wrapping VolumeExport) adds to them after each request. Nothing is formatted or
// looked up by label on the hot path: the label sets exist once per vDisk and operation, and the text is
// built only when Prometheus scrapes. Scrape-time values (write buffer, uploads, size, connections, read
// cache hits and misses, QoS delays) come from Volume.stats() and the vDisk's limiter through the callback
// the vDisk service gives; the node's read cache from ReadCache.stats().
// Also: the API's requests by route and status with their latency, and prom-client's process metrics.
//
// Families (docs/ARCHITECTURE.md, docs/grafana/openvstorage.json):
//   ovs_vdisk_operations_total{vdisk,op}   ovs_vdisk_errors_total{vdisk,op}   ovs_vdisk_bytes_total{vdisk,op}
//   ovs_vdisk_latency_seconds{vdisk,op}    (histogram)
//   ovs_vdisk_size_bytes, ovs_vdisk_connections, ovs_vdisk_write_buffer_bytes{vdisk,state},
//   ovs_vdisk_pending_uploads, ovs_vdisk_halted, ovs_vdisk_backend_reads_total,
//   ovs_vdisk_checksum_errors_total, ovs_vdisk_uploads_total{vdisk,kind}, ovs_vdisk_write_buffer_limit_bytes,
//   ovs_vdisk_write_buffer_throttled_total, ovs_vdisk_write_buffer_throttle_seconds_total,
//   ovs_vdisk_qos_delayed_total, ovs_vdisk_qos_delay_seconds_total,
//   ovs_vdisk_read_cache_hits_total, ovs_vdisk_read_cache_misses_total, ovs_vdisk_read_cache_bytes,
//   ovs_read_cache_capacity_bytes, ovs_read_cache_used_bytes, ovs_read_cache_entries,
//   ovs_read_cache_evictions_total, ovs_read_cache_checksum_errors_total, ovs_read_cache_write_errors_total
//   ovs_page_cache_window_bytes, ovs_page_cache_window_used_bytes, ovs_page_cache_dropped_files_total,
//   ovs_page_cache_dropped_bytes_total (the process's drop-behind of stored SCO files)
//   ovs_api_requests_total{method,route,status}, ovs_api_request_duration_seconds{method,route}
//   ovs_asd_up, ovs_asd_capacity_bytes, ovs_asd_used_bytes, ovs_asd_values, ovs_asd_refusing_writes,
//   ovs_asd_operations_total{asd,op}, ovs_asd_errors_total, ovs_asd_latency_seconds_total (asd-metrics.ts)
//   process_*, nodejs_* (prom-client defaults)

import { Counter, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { NbdExport } from "../../frontend/index.js";
import { scoDropBehind, type ReadCacheStats, type VolumeStats } from "../../volume/index.js";
import type { AsdProbes } from "./asd-metrics.js";
import type { MaintenanceStatus } from "../../alba/index.js";

export const vdiskOps = ["read", "write", "flush", "trim", "write_zeroes"] as const;
export type VDiskOp = (typeof vdiskOps)[number];

/** Latency bucket upper bounds in seconds: 50 µs to 2.5 s. */
export const latencyBucketsSeconds = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5] as const;
/** Most vDisks with their own label sets on one node (each costs a few hundred bytes and scrape lines). */
export const meteredVDisksMax = 4096;

export class OpMeter {
  count = 0;
  errors = 0;
  bytes = 0;
  sumSeconds = 0;
  /** Observations per bucket (not cumulative); the last slot counts those above every bound. */
  readonly buckets = new Float64Array(latencyBucketsSeconds.length + 1);

  observe(seconds: number, bytes: number): void {
    this.count++;
    this.bytes += bytes;
    this.sumSeconds += seconds;
    let index = 0;
    while (index < latencyBucketsSeconds.length && seconds > latencyBucketsSeconds[index]!) index++;
    this.buckets[index]!++;
  }
}

export class VDiskMeters {
  readonly read = new OpMeter();
  readonly write = new OpMeter();
  readonly flush = new OpMeter();
  readonly trim = new OpMeter();
  readonly write_zeroes = new OpMeter();
  constructor(readonly name: string) {}
}

/** The NBD export of a vDisk with its I/O counted (see the header). */
export class MeteredExport implements NbdExport {
  /** Passed through when the inner export has it (the server offers base:allocation only then); not metered. */
  readonly blockStatus?: NbdExport["blockStatus"];

  constructor(private readonly inner: NbdExport, private readonly meters: VDiskMeters) {
    if (inner.blockStatus !== undefined) this.blockStatus = (offsetBytes, lengthBytes, extentCountMax) => inner.blockStatus!(offsetBytes, lengthBytes, extentCountMax);
  }

  get name(): string {
    return this.inner.name;
  }
  get description(): string | undefined {
    return this.inner.description;
  }
  get readOnly(): boolean {
    return this.inner.readOnly;
  }
  get flushSemanticsAcrossConnections(): boolean {
    return this.inner.flushSemanticsAcrossConnections;
  }
  sizeBytes(): number {
    return this.inner.sizeBytes();
  }
  attach(): void {
    this.inner.attach();
  }
  detach(): void {
    this.inner.detach();
  }

  async read(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    const start = performance.now();
    try {
      const data = await this.inner.read(offsetBytes, lengthBytes);
      this.meters.read.observe((performance.now() - start) / 1000, lengthBytes);
      return data;
    } catch (error) {
      this.meters.read.errors++;
      throw error;
    }
  }

  async write(offsetBytes: number, data: Buffer, fua: boolean): Promise<void> {
    const start = performance.now();
    const lengthBytes = data.length;
    try {
      await this.inner.write(offsetBytes, data, fua);
      this.meters.write.observe((performance.now() - start) / 1000, lengthBytes);
    } catch (error) {
      this.meters.write.errors++;
      throw error;
    }
  }

  /** Present whatever the inner export offers (the server uses it when present): gathers if needed. */
  async writeChunks(offsetBytes: number, chunks: readonly Buffer[], lengthBytes: number, fua: boolean): Promise<void> {
    const start = performance.now();
    try {
      if (this.inner.writeChunks !== undefined) await this.inner.writeChunks(offsetBytes, chunks, lengthBytes, fua);
      else await this.inner.write(offsetBytes, Buffer.concat(chunks, lengthBytes), fua);
      this.meters.write.observe((performance.now() - start) / 1000, lengthBytes);
    } catch (error) {
      this.meters.write.errors++;
      throw error;
    }
  }

  async flush(): Promise<void> {
    const start = performance.now();
    try {
      await this.inner.flush();
      this.meters.flush.observe((performance.now() - start) / 1000, 0);
    } catch (error) {
      this.meters.flush.errors++;
      throw error;
    }
  }

  async trim(offsetBytes: number, lengthBytes: number): Promise<void> {
    const start = performance.now();
    try {
      await this.inner.trim(offsetBytes, lengthBytes);
      this.meters.trim.observe((performance.now() - start) / 1000, lengthBytes);
    } catch (error) {
      this.meters.trim.errors++;
      throw error;
    }
  }

  async writeZeroes(offsetBytes: number, lengthBytes: number, noHole: boolean, fua: boolean): Promise<void> {
    const start = performance.now();
    try {
      await this.inner.writeZeroes(offsetBytes, lengthBytes, noHole, fua);
      this.meters.write_zeroes.observe((performance.now() - start) / 1000, lengthBytes);
    } catch (error) {
      this.meters.write_zeroes.errors++;
      throw error;
    }
  }
}

/** What the scrape reads of a vDisk besides its meters. */
export interface VDiskScrape {
  stats: VolumeStats;
  sizeBytes: number;
  connectionCount: number;
  /** The vDisk's QoS limiter: requests it delayed and their total delay. */
  qos: { delayedRequests: number; delayedMsTotal: number };
  writeBufferLimitBytes: number;
}

type Sample = { value: number; labels: Record<string, string | number>; metricName?: string };

/** A metric family computed at scrape time (prom-client's registry accepts any object of this shape). */
class ScrapeMetric {
  readonly aggregator = "sum" as const;
  constructor(readonly name: string, readonly help: string, readonly type: "counter" | "gauge" | "histogram", private readonly samples: () => Sample[]) {}
  get(): { name: string; help: string; type: string; values: Sample[]; aggregator: "sum" } {
    return { name: this.name, help: this.help, type: this.type, values: this.samples(), aggregator: this.aggregator };
  }
  reset(): void {}
}

export class NodeMetrics {
  readonly registry = new Registry();
  private readonly meters = new Map<string, VDiskMeters>();
  private scrapeOf: (name: string) => VDiskScrape | undefined = () => undefined;
  private readCacheOf: () => ReadCacheStats | undefined = () => undefined;
  readonly apiRequests: Counter<"method" | "route" | "status">;
  readonly apiDuration: Histogram<"method" | "route">;

  constructor(options: { nodeId: string; processMetrics?: boolean; asds?: AsdProbes; maintenance?: () => MaintenanceStatus | undefined }) {
    this.registry.setDefaultLabels({ node: options.nodeId });
    if (options.processMetrics !== false) collectDefaultMetrics({ register: this.registry });
    this.apiRequests = new Counter({ name: "ovs_api_requests_total", help: "REST API requests by route pattern and status", labelNames: ["method", "route", "status"], registers: [this.registry] });
    this.apiDuration = new Histogram({
      name: "ovs_api_request_duration_seconds",
      help: "REST API request latency",
      labelNames: ["method", "route"],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
      registers: [this.registry],
    });
    const perOp = (name: string, help: string, type: "counter", pick: (meter: OpMeter) => number): void => {
      this.add(new ScrapeMetric(name, help, type, () => {
        const samples: Sample[] = [];
        for (const meters of this.meters.values()) for (const op of vdiskOps) samples.push({ value: pick(meters[op]), labels: { vdisk: meters.name, op } });
        return samples;
      }));
    };
    perOp("ovs_vdisk_operations_total", "vDisk requests completed, by operation (NBD read, write, flush, trim, write_zeroes)", "counter", (m) => m.count);
    perOp("ovs_vdisk_errors_total", "vDisk requests that failed, by operation", "counter", (m) => m.errors);
    perOp("ovs_vdisk_bytes_total", "bytes of completed vDisk requests, by operation", "counter", (m) => m.bytes);
    this.add(new ScrapeMetric("ovs_vdisk_latency_seconds", "vDisk request latency at the NBD export, by operation", "histogram", () => {
      const samples: Sample[] = [];
      for (const meters of this.meters.values()) {
        for (const op of vdiskOps) {
          const meter = meters[op];
          let cumulative = 0;
          for (let index = 0; index < latencyBucketsSeconds.length; index++) {
            cumulative += meter.buckets[index]!;
            samples.push({ metricName: "ovs_vdisk_latency_seconds_bucket", value: cumulative, labels: { vdisk: meters.name, op, le: latencyBucketsSeconds[index]! } });
          }
          samples.push({ metricName: "ovs_vdisk_latency_seconds_bucket", value: meter.count, labels: { vdisk: meters.name, op, le: "+Inf" } });
          samples.push({ metricName: "ovs_vdisk_latency_seconds_sum", value: meter.sumSeconds, labels: { vdisk: meters.name, op } });
          samples.push({ metricName: "ovs_vdisk_latency_seconds_count", value: meter.count, labels: { vdisk: meters.name, op } });
        }
      }
      return samples;
    }));
    const perVDisk = (name: string, help: string, type: "counter" | "gauge", pick: (scrape: VDiskScrape) => Array<[Record<string, string>, number]>): void => {
      this.add(new ScrapeMetric(name, help, type, () => {
        const samples: Sample[] = [];
        for (const vdisk of this.meters.keys()) {
          const scrape = this.scrapeOf(vdisk);
          if (scrape !== undefined) for (const [labels, value] of pick(scrape)) samples.push({ value, labels: { vdisk, ...labels } });
        }
        return samples;
      }));
    };
    for (const family of options.asds?.families() ?? []) this.registry.registerMetric(family as unknown as Parameters<Registry["registerMetric"]>[0]);
    // The ALBA maintenance agent of this node (no ALBA backend: no samples).
    const maintenance = (name: string, help: string, type: "counter" | "gauge", pick: (status: MaintenanceStatus) => Array<[Record<string, string>, number]>): void => {
      this.add(new ScrapeMetric(name, help, type, () => {
        const status = options.maintenance?.();
        return status === undefined ? [] : pick(status).map(([labels, value]) => ({ value, labels }));
      }));
    };
    maintenance("ovs_alba_repair_queue_objects", "objects queued for repair because a read or a verify found a bad fragment (the repair scan also finds objects below full redundancy)", "gauge", (s) => [[{}, s.queued.repairs]]);
    maintenance("ovs_alba_verify_queue_namespaces", "namespaces queued for verification", "gauge", (s) => [[{}, s.queued.verifies.length]]);
    maintenance("ovs_alba_decommissions_draining", "ASDs being drained by decommission", "gauge", (s) => [[{}, s.queued.decommissions.length]]);
    maintenance("ovs_alba_maintenance_objects_total", "objects repaired, upgraded to a better policy, or whose repair was dropped (the writer won), since the node started", "counter", (s) => [
      [{ outcome: "repaired" }, s.counters.objectsRepaired],
      [{ outcome: "upgraded" }, s.counters.objectsUpgraded],
      [{ outcome: "dropped" }, s.counters.repairsDropped],
    ]);
    maintenance("ovs_alba_maintenance_fragments_total", "fragments handled by maintenance since the node started, by action", "counter", (s) => [
      [{ action: "rebuilt" }, s.counters.fragmentsRebuilt],
      [{ action: "copied" }, s.counters.fragmentsCopied],
      [{ action: "verified" }, s.counters.fragmentsVerified],
      [{ action: "bad_found" }, s.counters.badFragmentsFound],
      [{ action: "collected" }, s.counters.fragmentsCollected],
      [{ action: "moved" }, s.counters.fragmentsMoved],
    ]);
    maintenance("ovs_alba_repair_queue_overflows_total", "bad-fragment reports not queued because the repair queue was full", "counter", (s) => [[{}, s.counters.repairQueueOverflows]]);
    perVDisk("ovs_vdisk_size_bytes", "vDisk size", "gauge", (s) => [[{}, s.sizeBytes]]);
    perVDisk("ovs_vdisk_connections", "NBD connections using the vDisk", "gauge", (s) => [[{}, s.connectionCount]]);
    perVDisk("ovs_vdisk_write_buffer_bytes", "SCO bytes in the local write buffer: all of them (local), and those not yet safe on the backend (not_disposable; writes are throttled above the limit)", "gauge", (s) => [
      [{ state: "local" }, s.stats.localScoBytes],
      [{ state: "not_disposable" }, s.stats.nonDisposableBytes],
    ]);
    perVDisk("ovs_vdisk_pending_uploads", "SCOs and TLogs waiting for the backend", "gauge", (s) => [[{}, s.stats.pendingUploads]]);
    perVDisk("ovs_vdisk_halted", "1 when the vDisk is halted (every I/O fails until a restart)", "gauge", (s) => [[{}, s.stats.halted === undefined ? 0 : 1]]);
    perVDisk("ovs_vdisk_backend_reads_total", "reads served from the backend because the data was no longer in the local SCO cache (read cache misses)", "counter", (s) => [[{}, s.stats.backendReads]]);
    perVDisk("ovs_vdisk_checksum_errors_total", "clusters whose checksum failed on read (bad bytes are never returned)", "counter", (s) => [[{}, s.stats.checksumErrors]]);
    perVDisk("ovs_vdisk_uploads_total", "objects stored on the backend, by kind", "counter", (s) => [
      [{ kind: "sco" }, s.stats.scoUploads],
      [{ kind: "tlog" }, s.stats.tlogUploads],
    ]);
    perVDisk("ovs_vdisk_write_buffer_limit_bytes", "non-disposable write buffer bytes above which writes wait (SCO size × TLog multiplier × 1.5)", "gauge", (s) => [[{}, s.writeBufferLimitBytes]]);
    perVDisk("ovs_vdisk_write_buffer_throttled_total", "writes that waited because the write buffer was above its limit (they slow down, never fail)", "counter", (s) => [[{}, s.stats.throttledWrites]]);
    perVDisk("ovs_vdisk_write_buffer_throttle_seconds_total", "time writes waited for the write buffer", "counter", (s) => [[{}, s.stats.throttledMsTotal / 1000]]);
    perVDisk("ovs_vdisk_qos_delayed_total", "requests the vDisk's QoS limits delayed", "counter", (s) => [[{}, s.qos.delayedRequests]]);
    perVDisk("ovs_vdisk_qos_delay_seconds_total", "total delay the vDisk's QoS limits imposed", "counter", (s) => [[{}, s.qos.delayedMsTotal / 1000]]);
    perVDisk("ovs_vdisk_read_cache_hits_total", "clusters served from the node's read cache", "counter", (s) => (s.stats.readCache ? [[{}, s.stats.readCache.hits]] : []));
    perVDisk("ovs_vdisk_read_cache_misses_total", "clusters in neither the write buffer nor the read cache (read from the backend)", "counter", (s) => (s.stats.readCache ? [[{}, s.stats.readCache.misses]] : []));
    perVDisk("ovs_vdisk_read_cache_bytes", "bytes of the node's read cache holding this vDisk's entries", "gauge", (s) => (s.stats.readCache ? [[{}, s.stats.readCache.usedBytes]] : []));
    const node = (name: string, help: string, type: "counter" | "gauge", pick: (stats: ReadCacheStats) => number): void => {
      this.add(new ScrapeMetric(name, help, type, () => {
        const stats = this.readCacheOf();
        return stats === undefined ? [] : [{ value: pick(stats), labels: {} }];
      }));
    };
    node("ovs_read_cache_capacity_bytes", "size of the node's read cache (ovs up --read-cache-size)", "gauge", (c) => c.capacityBytes);
    node("ovs_read_cache_used_bytes", "bytes of cached clusters in the node's read cache", "gauge", (c) => c.usedBytes);
    node("ovs_read_cache_entries", "clusters in the node's read cache", "gauge", (c) => c.entryCount);
    node("ovs_read_cache_evictions_total", "read cache entries evicted to make room (CLOCK, or a vDisk's quota)", "counter", (c) => c.evictions);
    node("ovs_read_cache_checksum_errors_total", "cached clusters that failed their checksum (dropped; read from the backend)", "counter", (c) => c.checksumErrors);
    node("ovs_read_cache_write_errors_total", "read cache file writes that failed (those clusters were not cached)", "counter", (c) => c.writeErrors);
    // The process's page-cache drop-behind of stored SCO files (src/volume/file-io.ts).
    const dropBehind = (name: string, help: string, type: "counter" | "gauge", pick: () => number): void => {
      this.add(new ScrapeMetric(name, help, type, () => [{ value: pick(), labels: {} }]));
    };
    dropBehind("ovs_page_cache_window_bytes", "bytes of stored SCO files whose pages may stay in the page cache (drop-behind window)", "gauge", () => scoDropBehind.windowBytes);
    dropBehind("ovs_page_cache_window_used_bytes", "bytes of stored SCO files in the drop-behind window", "gauge", () => scoDropBehind.windowUse.bytes);
    dropBehind("ovs_page_cache_dropped_files_total", "stored SCO files whose pages were dropped from the page cache", "counter", () => scoDropBehind.stats().droppedFiles);
    dropBehind("ovs_page_cache_dropped_bytes_total", "bytes of stored SCO files whose pages were dropped from the page cache", "counter", () => scoDropBehind.stats().droppedBytes);
  }

  private add(metric: ScrapeMetric): void {
    this.registry.registerMetric(metric as unknown as Parameters<Registry["registerMetric"]>[0]);
  }

  /** Where the scrape reads a vDisk's volume statistics (the vDisk service). */
  setScrapeSource(scrapeOf: (name: string) => VDiskScrape | undefined): void {
    this.scrapeOf = scrapeOf;
  }

  /** Where the scrape reads the node's read cache statistics. */
  setReadCacheSource(readCacheOf: () => ReadCacheStats | undefined): void {
    this.readCacheOf = readCacheOf;
  }

  /** The meters of a vDisk that is opened; its label sets appear from now on. */
  meter(exportToMeter: NbdExport): MeteredExport {
    let meters = this.meters.get(exportToMeter.name);
    if (meters === undefined) {
      if (this.meters.size >= meteredVDisksMax) return new MeteredExport(exportToMeter, new VDiskMeters(exportToMeter.name)); // counted, not exported
      meters = new VDiskMeters(exportToMeter.name);
      this.meters.set(exportToMeter.name, meters);
    }
    return new MeteredExport(exportToMeter, meters);
  }

  /** A deleted vDisk's series disappear. */
  forget(name: string): void {
    this.meters.delete(name);
  }

  contentType(): string {
    return this.registry.contentType;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}
