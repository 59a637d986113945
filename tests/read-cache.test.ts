// Front-door test of the node's read cache (issue 4 item 3): `ovs up --backend local --read-cache-size
// 64M` as a process, vDisks with a tiny write buffer (scoCacheMax=4K: every SCO leaves the local disk as
// soon as it is safe on the backend), written and read with qemu-io and nbdcopy through NBD, settings
// changed with `ovs vdisk set`, counters read from `ovs vdisk info`, the REST API and /metrics.
// Checked: the second read of evicted data is served by the cache (hits counted, no new backend partial
// get), mode none bypasses it (no hits, partial gets again), a quota holds, bad settings change nothing.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import fsp from "node:fs/promises";
import path from "node:path";
import { RunningNode, expectOk, runTool, tempDir } from "./platform.js";
import { parsePrometheusText } from "./prometheus-text.js";

const MiB = 1024 * 1024;
let node: RunningNode;
let dataDir: string;
let scratch: string;

beforeAll(async () => {
  dataDir = await tempDir("ovs-read-cache-");
  scratch = await tempDir("ovs-read-cache-scratch-");
  node = await RunningNode.start(dataDir, { nbd: 0, api: 0 }, ["--backend", "local", "--read-cache-size", "64M"]);
});

afterAll(async () => {
  await node?.stop();
  await fsp.rm(dataDir, { recursive: true, force: true });
  await fsp.rm(scratch, { recursive: true, force: true });
});

interface CacheView {
  mode: string;
  quotaBytes: number;
  hits: number;
  misses: number;
  usedBytes: number;
  entryCount: number;
  node: { capacityBytes: number; usedBytes: number; entryCount: number; evictions: number; checksumErrors: number };
}

interface InfoView {
  stats: { localScoBytes: number; pendingUploads: number; backendReads: number; readCache: CacheView };
}

async function info(vdisk: string): Promise<InfoView> {
  const response = await node.fetch(`/api/v1/vdisks/${vdisk}`);
  expect(response.status).toBe(200);
  return (await response.json()) as InfoView;
}

async function qemuIo(vdisk: string, commands: string[]): Promise<void> {
  expectOk(await runTool("qemu-io", ["-f", "raw", node.uri(vdisk), ...commands.flatMap((c) => ["-c", c])], 120_000), `qemu-io ${commands.join("; ")}`);
}

/** Creates a vDisk with a tiny write buffer, writes `sizeMiB` of a pattern and waits until it left the local disk. */
async function writeAndEvict(vdisk: string, sizeMiB: number, pattern: number, extraSettings: string[] = []): Promise<void> {
  expectOk(await node.ovs(["vdisk", "create", vdisk, "--size", "64M"]), "vdisk create");
  expectOk(await node.ovs(["vdisk", "set", vdisk, "scoCacheMax=4K", ...extraSettings]), "vdisk set");
  await qemuIo(vdisk, [`write -P ${pattern} 0 ${sizeMiB}M`, "flush"]);
  // A snapshot closes the TLog: once it is stored its SCOs are disposable and leave the write buffer.
  expectOk(await node.ovs(["snapshot", "create", vdisk, "s1"]), "snapshot create");
  const deadline = Date.now() + 30_000;
  for (;;) {
    const { stats } = await info(vdisk);
    if (stats.localScoBytes === 0 && stats.pendingUploads === 0) return;
    if (Date.now() > deadline) throw new Error(`${vdisk}'s SCOs are still local after 30 s: ${JSON.stringify(stats)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * One scrape of /metrics (one only: prom-client's event-loop lag summaries can read NaN when scraped
 * again within milliseconds), as a lookup of a family's one sample for a vDisk or the node.
 */
async function scrape(): Promise<(name: string, vdisk?: string) => number> {
  const families = parsePrometheusText(await (await node.fetch("/metrics")).text());
  return (name, vdisk) => {
    const samples = (families.get(name)?.samples ?? []).filter((s) => vdisk === undefined || s.labels.vdisk === vdisk);
    expect(samples, name).toHaveLength(1);
    return samples[0]!.value;
  };
}

/** Waits (bounded) until the cache's writes have landed: its entry count stops growing. */
async function settle(vdisk: string): Promise<void> {
  let last = -1;
  for (let i = 0; i < 50; i++) {
    const entries = (await info(vdisk)).stats.readCache.entryCount;
    if (entries === last) return;
    last = entries;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe("the read cache through the front door", () => {
  it("serves a second read of evicted data from the cache: hits counted, no new backend partial get", async () => {
    await writeAndEvict("rc1", 16, 0xab);
    const clusters = (16 * MiB) / 4096;
    await qemuIo("rc1", ["read -P 0xab 0 16M"]);
    const cold = (await info("rc1")).stats;
    expect(cold.readCache).toMatchObject({ mode: "cache-on-read", hits: 0, misses: clusters });
    expect(cold.backendReads).toBeGreaterThan(0);
    await settle("rc1");
    expect((await info("rc1")).stats.readCache).toMatchObject({ entryCount: clusters, usedBytes: 16 * MiB, node: { capacityBytes: 64 * MiB, entryCount: clusters } });

    await qemuIo("rc1", ["read -P 0xab 0 16M"]);
    const warm = (await info("rc1")).stats;
    expect(warm.readCache).toMatchObject({ hits: clusters, misses: clusters });
    expect(warm.backendReads).toBe(cold.backendReads);

    // A second client (nbdcopy) sees the same bytes, from the cache.
    const file = path.join(scratch, "rc1.raw");
    expectOk(await runTool("nbdcopy", [node.uri("rc1"), file], 120_000), "nbdcopy");
    const image = await fsp.readFile(file);
    expect(createHash("sha256").update(image.subarray(0, 16 * MiB)).digest("hex")).toBe(createHash("sha256").update(Buffer.alloc(16 * MiB, 0xab)).digest("hex"));
    expect((await info("rc1")).stats.backendReads).toBe(cold.backendReads);
    expect((await info("rc1")).stats.readCache.hits).toBe(2 * clusters);

    // The same counters in `ovs vdisk info`, GET /api/v1/node and /metrics.
    const shown = await node.ovs(["vdisk", "info", "rc1"]);
    expectOk(shown, "vdisk info");
    expect(shown.stdout).toMatch(new RegExp(`read cache\\s+cache-on-read, no quota; ${2 * clusters} hits, ${clusters} misses \\(66\\.7 % hits\\); 16 MiB in ${clusters} clusters`));
    expect(shown.stdout).toMatch(/node read cache\s+16 MiB of 64 MiB used/);
    const nodeInfo = (await (await node.fetch("/api/v1/node")).json()) as { readCache: { capacityBytes: number; entryCount: number; dir: string } };
    expect(nodeInfo.readCache).toMatchObject({ capacityBytes: 64 * MiB, entryCount: clusters, dir: path.join(dataDir, "read-cache") });
    const metric = await scrape();
    expect(metric("ovs_vdisk_read_cache_hits_total", "rc1")).toBe(2 * clusters);
    expect(metric("ovs_vdisk_read_cache_misses_total", "rc1")).toBe(clusters);
    expect(metric("ovs_vdisk_read_cache_bytes", "rc1")).toBe(16 * MiB);
    expect(metric("ovs_vdisk_backend_reads_total", "rc1")).toBe(cold.backendReads);
    expect(metric("ovs_read_cache_capacity_bytes")).toBe(64 * MiB);
    expect(metric("ovs_read_cache_entries")).toBe(clusters);
    expect(metric("ovs_vdisk_qos_delayed_total", "rc1")).toBe(0);
    expect(metric("ovs_vdisk_write_buffer_limit_bytes", "rc1")).toBe(96 * MiB);
  });

  it("mode none bypasses the cache: no hits, every read goes to the backend; changed back live", async () => {
    const set = await node.ovs(["vdisk", "set", "rc1", "cache.mode=none"]);
    expectOk(set, "vdisk set cache.mode=none");
    expect(set.stdout).toMatch(/cache\.mode\s+none/);
    const before = (await info("rc1")).stats;
    expect(before.readCache).toMatchObject({ mode: "none", usedBytes: 0 });
    await qemuIo("rc1", ["read -P 0xab 0 16M"]);
    await qemuIo("rc1", ["read -P 0xab 0 16M"]);
    const after = (await info("rc1")).stats;
    expect(after.readCache.hits).toBe(before.readCache.hits);
    expect(after.readCache.entryCount).toBe(0);
    expect(after.backendReads).toBeGreaterThan(before.backendReads);

    expectOk(await node.ovs(["vdisk", "set", "rc1", "cache.mode=cache-on-read"]), "vdisk set cache.mode=cache-on-read");
    await qemuIo("rc1", ["read -P 0xab 0 16M"]);
    await settle("rc1");
    const backendReads = (await info("rc1")).stats.backendReads;
    await qemuIo("rc1", ["read -P 0xab 0 16M"]);
    expect((await info("rc1")).stats.backendReads).toBe(backendReads);
  });

  it("holds a vDisk's quota; cache-on-write serves data it never read", async () => {
    await writeAndEvict("rc2", 8, 0x5c, ["cache.quota=1M"]);
    await qemuIo("rc2", ["read -P 0x5c 0 8M"]);
    await settle("rc2");
    await qemuIo("rc2", ["read -P 0x5c 0 8M"]);
    const stats = (await info("rc2")).stats;
    expect(stats.readCache).toMatchObject({ quotaBytes: MiB, usedBytes: MiB, entryCount: 256 });
    expect(stats.readCache.misses).toBeGreaterThan(2 * 7 * 256 - 1); // beyond the quota reads miss again

    expectOk(await node.ovs(["vdisk", "create", "rc3", "--size", "64M"]), "vdisk create");
    expectOk(await node.ovs(["vdisk", "set", "rc3", "scoCacheMax=4K", "cache.mode=cache-on-write"]), "vdisk set");
    await qemuIo("rc3", ["write -P 0x77 0 4M", "flush"]);
    expectOk(await node.ovs(["snapshot", "create", "rc3", "s1"]), "snapshot create");
    const deadline = Date.now() + 30_000;
    while ((await info("rc3")).stats.localScoBytes > 0) {
      if (Date.now() > deadline) throw new Error("rc3's SCOs are still local after 30 s");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await qemuIo("rc3", ["read -P 0x77 0 4M"]);
    expect((await info("rc3")).stats).toMatchObject({ backendReads: 0, readCache: { hits: 1024, misses: 0 } });
  });

  it("refuses bad cache settings with one sentence (CLI) or a 400 (API) and changes nothing", async () => {
    const settingsOf = async (): Promise<unknown> => JSON.parse((await node.ovs(["vdisk", "settings", "rc2", "--json"])).stdout);
    const before = await settingsOf();
    expect(before).toMatchObject({ cache: { mode: "cache-on-read", quotaBytes: MiB } });
    for (const [args, message] of [
      [["cache.mode=sometimes"], /^ovs: "sometimes" is not a valid cache\.mode: use cache-on-read, cache-on-write, none\./],
      [["cache.quota=lots"], /^ovs: "lots" is not a valid cache\.quota: use a size such as 50M \(0 = no limit\)\./],
      [["cache.quota=1000"], /^ovs: the read cache quota must be at least 4 KiB \(one cluster\), or 0 for no quota\./],
      [["cache.mode=none", "cache.quota=1T"], /^ovs: the read cache quota must be at most 256 GiB\./],
      [["cache.size=1G"], /^ovs: "cache\.size" is not a vDisk setting; use .*cache\.mode, cache\.quota/],
    ] as const) {
      const result = await node.ovs(["vdisk", "set", "rc2", ...args]);
      expect(result.exitCode, args.join(" ")).not.toBe(0);
      expect(result.stderr).toMatch(message);
      expect(result.stderr.trim().split("\n")).toHaveLength(1);
      expect(await settingsOf()).toEqual(before);
    }
    for (const body of [{ cache: { mode: "sometimes" } }, { cache: { quota: -1 } }, { cache: { quota: 100 } }, { cache: { colour: "red" } }, { qos: { readIops: 5 }, cache: { mode: "none", quota: "lots" } }]) {
      const response = await node.fetch("/api/v1/vdisks/rc2/settings", { method: "PATCH", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
      expect(response.status, JSON.stringify(body)).toBe(400);
      expect(((await response.json()) as { error: { code: string } }).error.code).toBe("INVALID_ARGUMENT");
      expect(await settingsOf()).toEqual(before);
    }
    // Kept across a restart (the record), while the cache itself starts empty.
    const ports = { nbd: node.nbdPort, api: node.apiPort };
    expect(await node.stop()).toBe(0);
    node = await RunningNode.start(dataDir, ports, ["--backend", "local", "--read-cache-size", "64M"]);
    expect(await settingsOf()).toEqual(before);
    expect((await info("rc1")).stats.readCache).toMatchObject({ hits: 0, entryCount: 0, node: { entryCount: 0 } });
    await qemuIo("rc1", ["read -P 0xab 0 16M"]);
  });
});

describe("a vPool's cache mode", () => {
  /** Writes 4 MiB of a pattern with a tiny write buffer and waits until it left the local disk. */
  async function writeEvicted(vdisk: string, pattern: number): Promise<void> {
    expectOk(await node.ovs(["vdisk", "set", vdisk, "scoCacheMax=4K"]), "vdisk set");
    await qemuIo(vdisk, [`write -P ${pattern} 0 4M`, "flush"]);
    expectOk(await node.ovs(["snapshot", "create", vdisk, "s1"]), "snapshot create");
    const deadline = Date.now() + 30_000;
    for (;;) {
      const { stats } = await info(vdisk);
      if (stats.localScoBytes === 0 && stats.pendingUploads === 0) return;
      if (Date.now() > deadline) throw new Error(`${vdisk}'s SCOs are still local after 30 s`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  async function settingsOf(vdisk: string): Promise<{ cache: { mode: string; quotaBytes: number }; scoSizeBytes: number; tlogMultiplier: number }> {
    const result = await node.ovs(["vdisk", "settings", vdisk, "--json"]);
    expectOk(result, "vdisk settings");
    return JSON.parse(result.stdout) as { cache: { mode: string; quotaBytes: number }; scoSizeBytes: number; tlogMultiplier: number };
  }

  it("is what a vDisk created in the vPool gets (with its SCO size and TLog multiplier), and the cache behaves by it", async () => {
    expectOk(await node.ovs(["vpool", "create", "nocache", "--cache-mode", "none", "--sco-size", "8M", "--tlog-multiplier", "4"]), "vpool create nocache");
    expectOk(await node.ovs(["vpool", "create", "onwrite", "--cache-mode", "cache-on-write"]), "vpool create onwrite");
    const shown = await node.ovs(["vpool", "show", "nocache"]);
    expect(shown.stdout).toMatch(/^cache mode\s+none$/m);

    // none: no hits and no entries; every read of evicted data goes to the backend.
    expectOk(await node.ovs(["vdisk", "create", "pn", "--size", "64M", "--vpool", "nocache"]), "vdisk create pn");
    expect(await settingsOf("pn")).toMatchObject({ cache: { mode: "none", quotaBytes: 0 }, scoSizeBytes: 8 * MiB, tlogMultiplier: 4 });
    expect((await info("pn")).stats.readCache).toMatchObject({ mode: "none" });
    const text = await node.ovs(["vdisk", "info", "pn"]);
    expect(text.stdout).toMatch(/^read cache\s+none, no quota; 0 hits/m);
    await writeEvicted("pn", 0x31);
    await qemuIo("pn", ["read -P 0x31 0 4M"]);
    const first = (await info("pn")).stats;
    await qemuIo("pn", ["read -P 0x31 0 4M"]);
    const second = (await info("pn")).stats;
    expect(second.readCache).toMatchObject({ mode: "none", hits: 0, entryCount: 0 });
    expect(second.backendReads).toBeGreaterThan(first.backendReads);

    // cache-on-write: the writes populated the cache, so reads of evicted data never reach the backend.
    expectOk(await node.ovs(["vdisk", "create", "pw", "--size", "64M", "--vpool", "onwrite"]), "vdisk create pw");
    expect((await settingsOf("pw")).cache.mode).toBe("cache-on-write");
    await writeEvicted("pw", 0x32);
    await qemuIo("pw", ["read -P 0x32 0 4M"]);
    expect((await info("pw")).stats).toMatchObject({ backendReads: 0, readCache: { mode: "cache-on-write", hits: 1024, misses: 0 } });

    // Named at creation, a mode overrides the vPool's; a bad one is refused before anything exists.
    expectOk(await node.ovs(["vdisk", "create", "po", "--size", "8M", "--vpool", "nocache", "--cache-mode", "cache-on-read"]), "vdisk create po");
    expect(await settingsOf("po")).toMatchObject({ cache: { mode: "cache-on-read" }, scoSizeBytes: 8 * MiB });
    const bad = await node.ovs(["vdisk", "create", "pb", "--size", "8M", "--vpool", "nocache", "--cache-mode", "read"]);
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toBe('ovs: "read" is not a cache mode: use cache-on-read, cache-on-write, none ("read" is now called cache-on-read).\n');
    expect((await node.fetch("/api/v1/vdisks/pb")).status).toBe(404);
  });

  it("reads a vPool record stored with an old mode name under the new name", async () => {
    const key = "ovs/model/vpools/onwrite";
    const stored = (await (await node.fetch(`/api/v1/config/value?key=${encodeURIComponent(key)}`)).json()) as { value: string };
    const old = stored.value.replace('"cacheMode":"cache-on-write"', '"cacheMode":"both"');
    expect(old).not.toBe(stored.value);
    const put = await node.fetch("/api/v1/config", { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify({ key, value: old }) });
    expect(put.status).toBeLessThan(300);
    const pool = (await (await node.fetch("/api/v1/vpools/onwrite")).json()) as { settings: { cacheMode: string } };
    expect(pool.settings.cacheMode).toBe("cache-on-write");
    expectOk(await node.ovs(["vdisk", "create", "pl", "--size", "8M", "--vpool", "onwrite"]), "vdisk create pl");
    expect((await settingsOf("pl")).cache.mode).toBe("cache-on-write");
    for (const name of ["pn", "pw", "po", "pl"]) expectOk(await node.ovs(["vdisk", "delete", name]), `delete ${name}`);
    for (const name of ["nocache", "onwrite"]) expectOk(await node.ovs(["vpool", "delete", name]), `delete ${name}`);
  });
});
