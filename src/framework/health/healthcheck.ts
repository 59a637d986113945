// The health check (the original's openvstorage-health-check, modernised): modules of tests, each test
// ending in one state — SUCCESS, WARNING, FAILED, SKIPPED or EXCEPTION (the test itself threw) — with
// messages that carry stable codes (docs/healthcheck.md lists them; never renumber a code). Served by
// GET /api/v1/health and printed by `ovs healthcheck`.
//
// Modules: store (the cluster store), alba (SKIPPED while no ALBA backend is registered), volumedriver
// (the vDisks this node serves), node (data dir space, the NBD server). Every test is bounded in time
// (testTimeoutMs): a test that hangs ends as EXCEPTION, so the check always answers.

import fsp from "node:fs/promises";
import net from "node:net";
import { OvsError } from "../../base/index.js";
import type { ClusterStore } from "../../store/index.js";
import type { ObjectBackend } from "../../backend/index.js";
import { AsdClient, managerKeys, type AsdRecord, type BackendRecord } from "../../alba/index.js";
import type { VDiskInfo, VDiskRecord } from "../vdisk-service.js";

export const healthStates = ["SUCCESS", "WARNING", "FAILED", "SKIPPED", "EXCEPTION"] as const;
export type HealthState = (typeof healthStates)[number];
type Level = "success" | "warning" | "error" | "skip" | "exception";

export interface HealthMessage {
  message: string;
  code: string;
}

export interface HealthTestResult {
  state: HealthState;
  messages: Partial<Record<Level, HealthMessage[]>>;
}

/** The report, shaped like the original's --to-json output: a recap of counts and one result per test. */
export interface HealthReport {
  recap: Record<HealthState, number>;
  result: Record<string, HealthTestResult>;
}

export interface HealthContext {
  nodeId: string;
  dataDir: string;
  store: ClusterStore;
  backend: ObjectBackend;
  vdisks: () => VDiskInfo[];
  nbd: () => { host: string; port: number } | undefined;
  /** The ALBA manager's root in the store (default ovs/alba/) and the cluster secret ASDs check. */
  alba?: { root?: string; clusterSecret?: string };
}

/** A test adds messages; its state is the worst level it reported. */
class Recorder {
  readonly messages: Partial<Record<Level, HealthMessage[]>> = {};
  add(level: Level, code: string, message: string): void {
    (this.messages[level] ??= []).push({ code, message });
  }
  success(code: string, message: string): void {
    this.add("success", code, message);
  }
  warning(code: string, message: string): void {
    this.add("warning", code, message);
  }
  failure(code: string, message: string): void {
    this.add("error", code, message);
  }
  skip(code: string, message: string): void {
    this.add("skip", code, message);
  }
  state(): HealthState {
    if (this.messages.exception) return "EXCEPTION";
    if (this.messages.error) return "FAILED";
    if (this.messages.warning) return "WARNING";
    if (this.messages.skip && !this.messages.success) return "SKIPPED";
    return "SUCCESS";
  }
}

type HealthTest = (context: HealthContext, out: Recorder) => Promise<void>;

export const testTimeoutMs = 10_000;
/** Free space of the data dir's file system below which node.disk-space warns / fails. */
export const diskFreeRatioWarning = 0.1;
export const diskFreeRatioFailure = 0.02;
/** Store database size above which store.db-size warns (etcd's default quota is 2 GiB). */
export const storeDbBytesWarning = 1.5 * 1024 * 1024 * 1024;

async function storeHealth(context: HealthContext, out: Recorder): Promise<void> {
  const status = await context.store.status();
  for (const member of status.members) {
    if (!member.reachable) out.failure("STO0002", `store member ${member.name} (${member.endpoint}) is not reachable${member.error ? `: ${member.error}` : ""}.`);
  }
  for (const alarm of status.alarms) out.failure("STO0003", `store alarm ${alarm}${status.recovery ? `; ${status.recovery}` : ""}`);
  if (status.leader === undefined) out.failure("STO0004", "the store has no leader: writes cannot commit.");
  if (status.healthy && status.leader !== undefined) out.success("STO0001", `the ${status.kind} store is healthy (${status.members.length} member${status.members.length === 1 ? "" : "s"}, leader ${status.leader}).`);
  if (status.dbSizeBytes > storeDbBytesWarning) out.warning("STO0005", `the store database is ${Math.round(status.dbSizeBytes / 2 ** 20)} MiB, close to etcd's default 2 GiB quota.`);
}

async function storeRoundTrip(context: HealthContext, out: Recorder): Promise<void> {
  const key = `ovs/health/${context.nodeId}`;
  const value = Buffer.from(`${Date.now()}`);
  await context.store.put(key, value);
  const back = await context.store.get(key);
  await context.store.delete(key);
  if (back !== undefined && back.equals(value)) out.success("STO0010", "a value written to the store read back unchanged and was deleted.");
  else out.failure("STO0011", "a value written to the store did not read back unchanged.");
}

/** Fill level of an ASD above which alba.asds warns (it refuses writes at its own threshold, 99 %). */
export const asdFillRatioWarning = 0.9;
const asdProbeTimeoutMs = 3000;

/** The ALBA backend record and its ASDs, or undefined when no ALBA backend is registered. */
async function albaRegistry(context: HealthContext): Promise<{ backend: BackendRecord; asds: AsdRecord[] } | undefined> {
  const keys = managerKeys(context.alba?.root ?? "ovs/alba/");
  const backend = await context.store.get(keys.backend);
  if (backend === undefined) return undefined;
  const asds: AsdRecord[] = [];
  let after: string | undefined;
  for (;;) {
    const page = await context.store.prefix(keys.asdPrefix, { after, limit: 1000 });
    for (const entry of page.entries) asds.push(JSON.parse(entry.value.toString("utf8")) as AsdRecord);
    if (!page.more || page.entries.length === 0) break;
    after = page.entries.at(-1)!.key;
  }
  return { backend: JSON.parse(backend.toString("utf8")) as BackendRecord, asds };
}

function skipLocal(context: HealthContext, out: Recorder): void {
  out.skip("ALBA0001", `no ALBA backend is registered; this node's backend is ${context.backend.description}.`);
}

async function albaBackend(context: HealthContext, out: Recorder): Promise<void> {
  const registry = await albaRegistry(context);
  if (registry === undefined) return skipLocal(context, out);
  const claimed = registry.asds.filter((asd) => asd.state === "claimed").length;
  if (claimed === 0) out.failure("ALBA0003", `ALBA backend ${registry.backend.backendId} has no claimed ASD: nothing can be stored.`);
  else out.success("ALBA0002", `ALBA backend ${registry.backend.backendId} with ${claimed} claimed ASD${claimed === 1 ? "" : "s"}.`);
}

/** Asks every claimed ASD for its disk usage: one that does not answer, or is full, is reported by id. */
async function albaAsds(context: HealthContext, out: Recorder): Promise<void> {
  const registry = await albaRegistry(context);
  if (registry === undefined) return skipLocal(context, out);
  const claimed = registry.asds.filter((asd) => asd.state === "claimed");
  let healthy = 0;
  await Promise.all(claimed.map(async (asd) => {
    const where = `ASD ${asd.asdId} (node ${asd.nodeId}, ${asd.host}:${asd.port})`;
    let client: AsdClient | undefined;
    try {
      client = await AsdClient.connect({
        host: asd.host, port: asd.port, clusterSecret: context.alba?.clusterSecret, backendId: registry.backend.backendId, expectedAsdId: asd.asdId,
        connectTimeoutMs: asdProbeTimeoutMs, requestTimeoutMs: asdProbeTimeoutMs, reconnect: false,
      });
      const usage = await client.diskUsage();
      const fill = usage.totalBytes > 0 ? usage.usedBytes / usage.totalBytes : 0;
      const percent = `${(fill * 100).toFixed(1)} %`;
      if (usage.refusingWrites) out.failure("ALBA0012", `${where} is full (${percent} used): it refuses writes; add capacity or let maintenance rebalance.`);
      else if (fill >= asdFillRatioWarning) out.warning("ALBA0013", `${where} is ${percent} full; it refuses writes at ${(usage.fullThresholdPpm / 10_000).toFixed(0)} %.`);
      else healthy++;
    } catch (error) {
      out.failure("ALBA0011", `${where} does not answer (${error instanceof Error ? error.message : String(error)}); maintenance repairs its fragments away after 900 s.`);
    } finally {
      await client?.close().catch(() => undefined);
    }
  }));
  if (healthy > 0 || claimed.length === 0) out.success("ALBA0010", `${healthy} of ${claimed.length} claimed ASD${claimed.length === 1 ? "" : "s"} answer with room to write.`);
}

async function volumesHalted(context: HealthContext, out: Recorder): Promise<void> {
  const vdisks = context.vdisks();
  const halted = vdisks.filter((v) => v.stats.halted !== undefined);
  for (const vdisk of halted) out.failure("VOL0002", `vDisk ${vdisk.name} is halted (${vdisk.stats.halted}); every I/O fails until the node restarts it.`);
  if (halted.length === 0) out.success("VOL0001", `${vdisks.length} vDisk${vdisks.length === 1 ? "" : "s"} served, none halted.`);
}

async function volumesChecksums(context: HealthContext, out: Recorder): Promise<void> {
  let clean = 0;
  for (const vdisk of context.vdisks()) {
    if (vdisk.stats.checksumErrors > 0) out.warning("VOL0004", `vDisk ${vdisk.name} saw ${vdisk.stats.checksumErrors} checksum error${vdisk.stats.checksumErrors === 1 ? "" : "s"} (bad bytes were never returned; see the node's log).`);
    else clean++;
  }
  if (clean > 0 || context.vdisks().length === 0) out.success("VOL0003", `no checksum errors on ${clean} vDisk${clean === 1 ? "" : "s"}.`);
}

async function volumesRegistry(context: HealthContext, out: Recorder): Promise<void> {
  const served = new Set(context.vdisks().map((v) => v.name));
  const missing: string[] = [];
  let after: string | undefined;
  let registered = 0;
  for (;;) {
    const page = await context.store.prefix("ovs/vdisks/", { after, limit: 1000 });
    for (const entry of page.entries) {
      let record: VDiskRecord;
      try {
        record = JSON.parse(entry.value.toString("utf8")) as VDiskRecord;
      } catch {
        out.failure("VOL0007", `the registry record ${entry.key} is not valid JSON.`);
        continue;
      }
      if (record.nodeId !== context.nodeId) continue;
      registered++;
      if (record.deleting) out.warning("VOL0008", `vDisk ${record.name} is being deleted; the next start of node ${context.nodeId} finishes it.`);
      else if (!served.has(record.name)) missing.push(record.name);
    }
    if (!page.more || page.entries.length === 0) break;
    after = page.entries.at(-1)!.key;
  }
  for (const name of missing) out.failure("VOL0006", `vDisk ${name} is registered to node ${context.nodeId} but not served by it (restart the node, or remove the record).`);
  if (missing.length === 0) out.success("VOL0005", `the registry and the served vDisks agree (${registered} on node ${context.nodeId}).`);
}

async function nodeDiskSpace(context: HealthContext, out: Recorder): Promise<void> {
  const stats = await fsp.statfs(context.dataDir);
  const totalBytes = stats.blocks * stats.bsize;
  const freeBytes = stats.bavail * stats.bsize;
  const ratio = totalBytes > 0 ? freeBytes / totalBytes : 0;
  const text = `${Math.round(freeBytes / 2 ** 20)} MiB of ${Math.round(totalBytes / 2 ** 20)} MiB free (${(ratio * 100).toFixed(1)} %) under ${context.dataDir}`;
  if (ratio < diskFreeRatioFailure) out.failure("NODE0003", `${text}: writes will soon fail.`);
  else if (ratio < diskFreeRatioWarning) out.warning("NODE0002", `${text}: the write buffer and read cache need room.`);
  else out.success("NODE0001", `${text}.`);
}

async function nodeNbd(context: HealthContext, out: Recorder): Promise<void> {
  const nbd = context.nbd();
  if (nbd === undefined) return out.failure("NODE0012", "the NBD server is not running.");
  const host = nbd.host === "0.0.0.0" ? "127.0.0.1" : nbd.host === "::" ? "::1" : nbd.host;
  await new Promise<void>((resolve) => {
    const socket = net.connect({ host, port: nbd.port });
    const done = (error?: Error): void => {
      socket.destroy();
      if (error) out.failure("NODE0011", `the NBD server at ${host}:${nbd.port} does not accept connections (${error.message}).`);
      else out.success("NODE0010", `the NBD server accepts connections on ${host}:${nbd.port}.`);
      resolve();
    };
    socket.setTimeout(5000, () => done(new Error("timeout")));
    socket.once("connect", () => done());
    socket.once("error", (error) => done(error));
  });
}

async function nodeMemory(_context: HealthContext, out: Recorder): Promise<void> {
  const usage = process.memoryUsage();
  out.success("NODE0020", `resident memory ${Math.round(usage.rss / 2 ** 20)} MiB, JavaScript heap ${Math.round(usage.heapUsed / 2 ** 20)} MiB.`);
}

/** Every module and its tests, in the order they run and print. */
export const healthModules: Record<string, Record<string, HealthTest>> = {
  store: { health: storeHealth, "read-write": storeRoundTrip },
  alba: { backend: albaBackend, asds: albaAsds },
  volumedriver: { halted: volumesHalted, checksums: volumesChecksums, registry: volumesRegistry },
  node: { "disk-space": nodeDiskSpace, nbd: nodeNbd, memory: nodeMemory },
};

/** Runs every test, one module, or one test; NOT_FOUND for an unknown module or test. */
export async function runHealthCheck(context: HealthContext, module?: string, test?: string): Promise<HealthReport> {
  if (module !== undefined && healthModules[module] === undefined) {
    throw new OvsError("NOT_FOUND", `there is no health check module ${module}; the modules are ${Object.keys(healthModules).join(", ")}.`);
  }
  if (module !== undefined && test !== undefined && healthModules[module]![test] === undefined) {
    throw new OvsError("NOT_FOUND", `module ${module} has no test ${test}; its tests are ${Object.keys(healthModules[module]!).join(", ")}.`);
  }
  const report: HealthReport = { recap: { SUCCESS: 0, WARNING: 0, FAILED: 0, SKIPPED: 0, EXCEPTION: 0 }, result: {} };
  for (const [moduleName, tests] of Object.entries(healthModules)) {
    if (module !== undefined && moduleName !== module) continue;
    for (const [testName, run] of Object.entries(tests)) {
      if (test !== undefined && testName !== test) continue;
      const out = new Recorder();
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          run(context, out),
          new Promise<never>((_resolve, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${testTimeoutMs} ms`)), testTimeoutMs))),
        ]);
      } catch (error) {
        out.add("exception", "HC0001", `the test failed to run: ${error instanceof Error ? error.message : String(error)}`);
      } finally {
        clearTimeout(timer);
      }
      const state = out.state();
      report.recap[state]++;
      report.result[`${moduleName}.${testName}`] = { state, messages: out.messages };
    }
  }
  return report;
}
