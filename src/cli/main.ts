#!/usr/bin/env -S UV_THREADPOOL_SIZE=16 node --initial-old-space-size=128
// (--initial-old-space-size: the node's heap is small (~10 MB) while the data path promotes a steady
// trickle of short-lived objects, so V8's initial old-generation limit made it run a full mark-compact
// GC 15-30 times per GiB written; at 128 MB it runs 2-3 and the node spends ~12 % less CPU per GiB.
// UV_THREADPOOL_SIZE=16, not libuv's 4: every fsync of the data path (SCO files, TLogs, backend
// objects) holds a pool thread while the disk works, and with 4 a few uploads waiting on fsyncs
// stalled the write path's own pwrites behind them: in-process 1 MiB sequential writes went from
// 225 to 282 MB/s and 5.0 to 3.5 CPU-s/GiB. It must be in the environment before node starts (the ES
// module loader already uses the pool). Debian's env supports -S. `npm start` and the benchmarks that
// start `ovs` pass the same settings.)
// The `ovs` command. `ovs up` runs the single-node platform in the foreground; the other commands talk to
// its REST API (--api URL, else $OVS_API_URL, else http://127.0.0.1:8080) with the token of `ovs login`
// (or $OVS_TOKEN). Errors are one sentence on stderr and a non-zero exit, never a stack trace.

import fs from "node:fs";
import os from "node:os";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { Command, CommanderError, InvalidArgumentError } from "commander";
import { createLogger, formatBytes, isOvsError, parseSizeBytes } from "../base/index.js";
import { PlatformNode, checkHeartbeatSettings, heartbeatIntervalMsDefault, type NodeInfo, type VDiskInfo, type VDiskSettings } from "../framework/index.js";
import { registerAuthCommands } from "./auth-commands.js";
import { registerHealthCommands } from "./health-commands.js";
import { registerScheduleCommands } from "./schedule-commands.js";
import { registerTaskCommands, runTask } from "./task-commands.js";
import { runAsd } from "../alba/index.js";
import { CliError, callApi, resolveApiUrl, streamApi } from "./api-client.js";
import { registerAlbaCommands, sizeOption } from "./alba-commands.js";
import { registerModelCommands } from "./model-commands.js";
import type { ScrubReport } from "../volume/index.js";

const version = readVersion();

function readVersion(): string {
  try {
    const packageJson = path.join(path.dirname(fileURLToPath(import.meta.url)), "../../../package.json");
    return (JSON.parse(fs.readFileSync(packageJson, "utf8")) as { version: string }).version;
  } catch {
    return "unknown";
  }
}

function portOption(value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidArgumentError("a port is an integer from 0 to 65535.");
  return port;
}

const program = new Command();
program
  .name("ovs")
  .description("openvstorage: thin block volumes (vDisks) over NBD on an object backend")
  .version(version)
  .option("--api <url>", "the REST API of a running node (default: $OVS_API_URL or http://127.0.0.1:8080)")
  .showHelpAfterError()
  .exitOverride();

interface NodeCommandOptions {
  /** Required (commander checks it for `ovs up`, runNode for `ovs node`). */
  dataDir?: string;
  backend: "alba" | "local";
  asdCapacity?: string;
  store: string;
  nodeId: string;
  nbdPort: number;
  nbdHost: string;
  apiPort: number;
  apiHost: string;
  readCacheSize: string;
  pageCacheWindow?: string;
  heartbeatInterval?: number;
  offlineAfter?: number;
}

/** `ovs up` and `ovs node`; the latter's --data-dir is checked by runNode (commander would demand it of `ovs node info` too). */
function nodeCommand(name: string, description: string): Command {
  const command = program.command(name).description(description);
  const dataDir = "where the node keeps its backend, vDisks and (embedded) store";
  return (name === "node" ? command.option("--data-dir <dir>", `${dataDir} (required)`) : command.requiredOption("--data-dir <dir>", dataDir))
    .option("--store <url>", "cluster store: embedded, embedded:DIR or etcd://HOST:PORT[,HOST:PORT...][/PREFIX]", "embedded")
    .option("--node-id <id>", "this node's id (its vDisks are registered under it)", os.hostname())
    .option("--nbd-port <port>", "NBD port", portOption, 10809)
    .option("--nbd-host <host>", "address the NBD server listens on", "127.0.0.1")
    .option("--api-port <port>", "REST API port", portOption, 8080)
    .option("--api-host <host>", "address the REST API listens on (plain HTTP: put TLS in front of it before exposing it)", "127.0.0.1")
    .option("--backend <kind>", "object backend: alba (6 local ASD processes under the data dir) or local (a directory)", backendOption, "alba")
    .option("--asd-capacity <size>", "cap each local ASD at this size, e.g. 256M (small test and demo nodes)", sizeOption)
    .option("--read-cache-size <size>", "the node's read cache for data no longer in a vDisk's write buffer, in DATA-DIR/read-cache (0 = off; emptied at every start)", sizeOption, "1G")
    .option("--page-cache-window <size>", "stored SCO files whose pages may stay in the OS page cache, process-wide; older ones are dropped from it (drop-behind; default 1/8 of RAM, 256M to 2G)", sizeOption)
    .option("--heartbeat-interval <seconds>", "how often the node writes its heartbeat (default 30)", secondsOption)
    .option("--offline-after <seconds>", "how long after its last heartbeat the scheduler's leader marks this node offline and fails its tasks (default 3 heartbeat intervals)", secondsOption)
    .action(runNode);
}

function secondsOption(value: string): number {
  const seconds = Number(value);
  if (!/^\d+(\.\d+)?$/.test(value.trim()) || !(seconds > 0)) throw new InvalidArgumentError("give a number of seconds above 0.");
  return Math.round(seconds * 1000);
}

function backendOption(value: string): "alba" | "local" {
  if (value !== "alba" && value !== "local") throw new InvalidArgumentError("the backend is alba or local.");
  return value;
}

async function runNode(options: NodeCommandOptions): Promise<void> {
  const log = createLogger("ovs");
  const { asdCapacity, readCacheSize, pageCacheWindow, heartbeatInterval, offlineAfter, dataDir, ...rest } = options;
  if (dataDir === undefined) throw new CliError("give the node's data directory with --data-dir DIR (or see a running node with: ovs node info).");
  // Refused here, before anything starts, in one sentence (INVALID_ARGUMENT).
  checkHeartbeatSettings(heartbeatInterval ?? heartbeatIntervalMsDefault, offlineAfter);
  // OVS_ADMIN_PASSWORD: the first admin's password at a cluster's first start (automation, tests);
  // without it one is generated. Either way it is printed once, at that first start only.
  const node = new PlatformNode({
    ...rest,
    dataDir,
    log,
    version,
    asdCommand: { execPath: process.execPath, args: [fileURLToPath(import.meta.url), "asd"] },
    ...(asdCapacity === undefined ? {} : { asdCapacityBytes: parseSizeBytes(asdCapacity) }),
    readCacheSizeBytes: parseSizeBytes(readCacheSize),
    ...(pageCacheWindow === undefined ? {} : { pageCacheWindowBytes: parseSizeBytes(pageCacheWindow) }),
    ...(heartbeatInterval === undefined ? {} : { heartbeatIntervalMs: heartbeatInterval }),
    ...(offlineAfter === undefined ? {} : { offlineAfterMs: offlineAfter }),
    adminPassword: process.env.OVS_ADMIN_PASSWORD,
    clusterSecret: process.env.OVS_CLUSTER_SECRET,
  });
  const info = await node.start();
  printStarted(info, node.firstAdmin);
  node.firstAdmin = undefined;
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      process.stdout.write(`\n${signal}: stopping (syncing every vDisk)...\n`);
      void node.stop().then(() => {
        process.stdout.write("stopped.\n");
        resolve();
      });
    };
    process.on("SIGINT", () => stop("SIGINT"));
    process.on("SIGTERM", () => stop("SIGTERM"));
  });
}

program
  .command("asd")
  .description("run one ASD (a key/value daemon for one disk or directory) in the foreground")
  .requiredOption("--dir <dir>", "the ASD's directory (on the disk it stands for)")
  .option("--port <port>", "TCP port (8600 + n by convention)", portOption, 8600)
  .option("--host <host>", "address to listen on", "127.0.0.1")
  .option("--secret-file <file>", "file whose first line is the cluster secret (else $OVS_CLUSTER_SECRET)")
  .option("--capacity <size>", "report at most this size as the ASD's capacity (it refuses writes at 99 % of it), e.g. 64M", sizeOption)
  .option("--exit-with-stdin", "stop when standard input closes (how a supervising node makes sure its ASDs never outlive it)")
  .action(async (options: { dir: string; port: number; host: string; secretFile?: string; capacity?: string; exitWithStdin?: boolean }) => {
    const clusterSecret = options.secretFile !== undefined ? fs.readFileSync(options.secretFile, "utf8").split("\n")[0]! : process.env.OVS_CLUSTER_SECRET;
    const capacityBytes = options.capacity === undefined ? undefined : parseSizeBytes(options.capacity);
    const handle = await runAsd({ dir: options.dir, host: options.host, port: options.port, clusterSecret, logger: createLogger("asd"), capacityBytes });
    process.stdout.write(`ASD ${handle.asdId} listening on ${options.host}:${handle.port} (${options.dir})\n`);
    await new Promise<void>((resolve) => {
      let stopping = false;
      const stop = (): void => {
        if (stopping) return;
        stopping = true;
        void handle.close().then(resolve);
      };
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
      if (options.exitWithStdin) {
        process.stdin.on("end", stop);
        process.stdin.on("close", stop);
        process.stdin.on("error", stop);
        process.stdin.resume();
      }
    });
    process.stdin.destroy();
  });

nodeCommand("up", "start the single-node platform in the foreground on embedded defaults (Ctrl-C stops it)");
const nodeProgram = nodeCommand("node", "run a storage node in the foreground, e.g. on an etcd cluster: --store etcd://h1:2379,h2:2379; `ovs node info` shows a running one");

interface NodeInfoView extends Omit<NodeInfo, "readCache"> {
  /** Where and how large, with its statistics (GET /api/v1/node). */
  readCache?: { dir?: string; capacityBytes?: number; usedBytes?: number; entryCount?: number };
}

nodeProgram
  .command("info")
  .description("the node you talk to (--api): version, id, data dir, store, backend, where it listens, its local ASDs and its read cache")
  .option("--json", "print JSON")
  .action(async (options: { json?: boolean }) => {
    const info = await callApi<NodeInfoView>(api(), "GET", "/api/v1/node");
    if (options.json) return printJson(info);
    const cache = info.readCache;
    const lines = [
      `node       ${info.nodeId} (openvstorage ${info.version})`,
      `data dir   ${info.dataDir}`,
      `store      ${info.store}`,
      `backend    ${info.backend}`,
      `REST API   http://${info.api.host.includes(":") ? `[${info.api.host}]` : info.api.host}:${info.api.port}/api/v1`,
      `NBD        nbd://${info.nbd.host.includes(":") ? `[${info.nbd.host}]` : info.nbd.host}:${info.nbd.port}/<vdisk>`,
      ...(cache === undefined ? [] : [`read cache ${!cache.capacityBytes ? "off" : `${formatBytes(cache.capacityBytes)} in ${cache.dir ?? "?"}${typeof cache.usedBytes === "number" ? `, ${formatBytes(cache.usedBytes)} used by ${cache.entryCount ?? 0} clusters` : ""}`}`]),
      ...info.asds.map((asd) => `ASD ${String(asd.index).padEnd(6)} ${asd.host}:${asd.port}  ${asd.asdId ?? "(id unknown)"}  pid ${asd.pid ?? "-"}  ${asd.dir}`),
    ];
    process.stdout.write(lines.join("\n") + "\n");
  });

function printStarted(info: NodeInfo, firstAdmin: PlatformNode["firstAdmin"]): void {
  const nbdHost = info.nbd.host.includes(":") ? `[${info.nbd.host}]` : info.nbd.host;
  const apiFlag = info.api.port === 8080 ? "" : ` --api http://${info.api.host}:${info.api.port}`;
  const admin = firstAdmin === undefined ? [] : [
    ``,
    firstAdmin.generated
      ? `First start: created the user ${firstAdmin.username} with password ${firstAdmin.password}`
      : `First start: created the user ${firstAdmin.username} with the password from OVS_ADMIN_PASSWORD`,
    `  (shown only this once; change it with: ovs user passwd ${firstAdmin.username})`,
  ];
  const lines = [
    `openvstorage ${info.version}: node ${info.nodeId} is up`,
    `  data dir   ${info.dataDir}`,
    `  store      ${info.store}`,
    `  backend    ${info.backend}`,
    `  REST API   http://${info.api.host}:${info.api.port}/api/v1`,
    `  NBD        nbd://${nbdHost}:${info.nbd.port}/<vdisk>`,
    ...(info.readCache ? [`  read cache ${info.readCache.capacityBytes === 0 ? "off" : `${formatBytes(info.readCache.capacityBytes)} in ${info.readCache.dir}`}`] : []),
    ...info.asds.map((asd) => `  ASD ${String(asd.index).padEnd(6)} ${asd.host}:${asd.port}  ${asd.asdId ?? "(id unknown)"}  pid ${asd.pid ?? "-"}  ${asd.dir}`),
    ...admin,
    ``,
    `Log in:          ovs${apiFlag} login --user admin`,
    `Create a vDisk:  ovs${apiFlag} vdisk create disk1 --size 10G`,
    `Use it:          qemu-img info nbd://${nbdHost}:${info.nbd.port}/disk1`,
    `Stop with Ctrl-C.`,
  ];
  process.stdout.write(lines.join("\n") + "\n");
}

const vdisk = program.command("vdisk").description("manage vDisks");

function api(): string {
  return resolveApiUrl(program.opts<{ api?: string }>().api);
}

function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + "\n");
}

function printInfo(info: VDiskInfo): void {
  const rows: Array<[string, string]> = [
    ["name", info.name],
    ["size", `${info.size} (${info.sizeBytes} bytes)`],
    ["id", info.id],
    ["namespace", info.namespace],
    ["created", info.createdAt],
    ["connections", String(info.connectionCount)],
    ["write buffer", `${formatBytes(info.stats.localScoBytes)} local, ${formatBytes(info.stats.nonDisposableBytes)} not yet on the backend (writes wait above ${formatBytes(info.writeBufferLimitBytes)}; ${info.stats.throttledWrites} waited)`],
    ["SCO memory", `${formatBytes(info.stats.scoBufferBytes)} of SCO buffers (open and unsynced SCOs)`],
    ["uploads", `${info.stats.scoUploads} SCOs, ${info.stats.tlogUploads} TLogs, ${info.stats.pendingUploads} pending`],
    ["I/O", `${info.stats.reads} reads (${formatBytes(info.stats.readBytes)}), ${info.stats.writes} writes (${formatBytes(info.stats.writeBytes)}), ${info.stats.flushes} flushes`],
    ["checksum errors", String(info.stats.checksumErrors)],
  ];
  const cache = info.stats.readCache;
  if (cache) {
    const ratio = cache.hits + cache.misses === 0 ? "" : ` (${((100 * cache.hits) / (cache.hits + cache.misses)).toFixed(1)} % hits)`;
    rows.push(["read cache", `${cache.mode}, ${cache.quotaBytes === 0 ? "no quota" : `quota ${formatBytes(cache.quotaBytes)}`}; ${cache.hits} hits, ${cache.misses} misses${ratio}; ${formatBytes(cache.usedBytes)} in ${cache.entryCount} clusters`]);
    rows.push(["node read cache", `${formatBytes(cache.node.usedBytes)} of ${formatBytes(cache.node.capacityBytes)} used (${cache.node.entryCount} clusters), ${cache.node.evictions} evictions, ${cache.node.checksumErrors} checksum errors`]);
  }
  rows.push(["state", info.state]);
  if (info.parent) rows.push(["clone of", `${info.parent.name} at snapshot ${info.parent.snapshot} (depth ${info.cloneDepth})`]);
  if (info.template) rows.push(["template", "yes (read-only; clone it with: ovs vdisk clone NAME NEW)"]);
  if (info.clones.length > 0) rows.push(["clones", info.clones.join(", ")]);
  rows.push(["snapshots", String(info.snapshotCount)]);
  if (info.restore) rows.push(["restored", `from the backend: ${info.restore.tlogCount} TLogs, ${info.restore.entryCount} entries in ${info.restore.durationMs} ms`]);
  rows.push(["QoS", qosSummary(info.qos)]);
  if (info.stats.halted) rows.push(["HALTED", info.stats.halted]);
  for (const [key, value] of rows) process.stdout.write(`${key.padEnd(16)}${value}\n`);
}

// `ovs vdisk set` keys: the QoS limits (IOPS as whole numbers, bandwidths as sizes per second) and the
// settings of the API's PATCH .../settings body. scoSize and tlogMultiplier are passed on so the node says
// clearly that they are fixed at creation.
const qosSettingKeys = {
  "qos.readIops": { field: "readIops", bandwidth: false },
  "qos.writeIops": { field: "writeIops", bandwidth: false },
  "qos.totalIops": { field: "totalIops", bandwidth: false },
  "qos.readBandwidth": { field: "readBytesPerSecond", bandwidth: true },
  "qos.writeBandwidth": { field: "writeBytesPerSecond", bandwidth: true },
  "qos.totalBandwidth": { field: "totalBytesPerSecond", bandwidth: true },
} as const;
const cacheModes = ["cache-on-read", "cache-on-write", "none"];
const settingKeys = [...Object.keys(qosSettingKeys), "scoCacheMax", "cache.mode", "cache.quota", "scoSize", "tlogMultiplier"];

/** KEY=VALUE arguments as the PATCH body; throws one sentence on an unknown key or a bad value. */
function settingsBody(assignments: string[]): Record<string, unknown> {
  const qos: Record<string, number> = {};
  const cache: Record<string, unknown> = {};
  const body: Record<string, unknown> = {};
  for (const assignment of assignments) {
    const equals = assignment.indexOf("=");
    const key = equals < 0 ? assignment : assignment.slice(0, equals);
    const value = equals < 0 ? "" : assignment.slice(equals + 1).trim();
    if (!settingKeys.includes(key)) throw new CliError(`"${key}" is not a vDisk setting; use ${settingKeys.join(", ")}.`);
    if (equals < 0 || value === "") throw new CliError(`give ${key} a value, as in ${key}=VALUE.`);
    if (key === "cache.mode") {
      if (!cacheModes.includes(value)) throw new CliError(`"${value}" is not a valid cache.mode: use ${cacheModes.join(", ")}.`);
      cache.mode = value;
      continue;
    }
    const qosKey = qosSettingKeys[key as keyof typeof qosSettingKeys] as (typeof qosSettingKeys)[keyof typeof qosSettingKeys] | undefined;
    if ((qosKey !== undefined && !qosKey.bandwidth) || key === "tlogMultiplier") {
      if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value))) {
        throw new CliError(`"${value}" is not a valid ${key}: use a whole number${key === "tlogMultiplier" ? "" : " of operations per second (0 = no limit)"}.`);
      }
      if (qosKey !== undefined) qos[qosKey.field] = Number(value);
      else body[key] = Number(value);
      continue;
    }
    let bytes: number;
    try {
      bytes = parseSizeBytes(qosKey !== undefined ? value.replace(/\/s$/i, "") : value);
    } catch {
      throw new CliError(`"${value}" is not a valid ${key}: use a size${qosKey !== undefined ? " per second" : ""} such as 50M${qosKey !== undefined || key === "scoCacheMax" || key === "cache.quota" ? " (0 = no limit)" : ""}.`);
    }
    if (qosKey !== undefined) qos[qosKey.field] = bytes;
    else if (key === "cache.quota") cache.quota = bytes;
    else body[key] = bytes;
  }
  if (Object.keys(qos).length > 0) body.qos = qos;
  if (Object.keys(cache).length > 0) body.cache = cache;
  return body;
}

const perSecond = (n: number, unit: string): string => (n === 0 ? "no limit" : `${n} ${unit}/s`);
const bandwidth = (n: number): string => (n === 0 ? "no limit" : `${formatBytes(n)}/s`);

function printSettings(settings: VDiskSettings): void {
  const rows: Array<[string, string]> = [
    ["qos.readIops", perSecond(settings.qos.readIops, "ops")],
    ["qos.writeIops", perSecond(settings.qos.writeIops, "ops")],
    ["qos.totalIops", perSecond(settings.qos.totalIops, "ops")],
    ["qos.readBandwidth", bandwidth(settings.qos.readBytesPerSecond)],
    ["qos.writeBandwidth", bandwidth(settings.qos.writeBytesPerSecond)],
    ["qos.totalBandwidth", bandwidth(settings.qos.totalBytesPerSecond)],
    ["scoCacheMax", settings.scoCacheMaxBytes === 0 ? "no cap" : formatBytes(settings.scoCacheMaxBytes)],
    ["cache.mode", settings.cache.mode],
    ["cache.quota", settings.cache.quotaBytes === 0 ? "no quota" : formatBytes(settings.cache.quotaBytes)],
    ["scoSize", `${formatBytes(settings.scoSizeBytes)} (fixed at creation)`],
    ["tlogMultiplier", `${settings.tlogMultiplier} (fixed at creation)`],
  ];
  for (const [key, value] of rows) process.stdout.write(`${key.padEnd(20)}${value}
`);
}

function qosSummary(qos: VDiskInfo["qos"]): string {
  const { limits } = qos;
  const parts = [
    limits.readIops > 0 ? `read ${limits.readIops} ops/s` : "",
    limits.writeIops > 0 ? `write ${limits.writeIops} ops/s` : "",
    limits.totalIops > 0 ? `total ${limits.totalIops} ops/s` : "",
    limits.readBytesPerSecond > 0 ? `read ${bandwidth(limits.readBytesPerSecond)}` : "",
    limits.writeBytesPerSecond > 0 ? `write ${bandwidth(limits.writeBytesPerSecond)}` : "",
    limits.totalBytesPerSecond > 0 ? `total ${bandwidth(limits.totalBytesPerSecond)}` : "",
  ].filter((part) => part !== "");
  return `${parts.length === 0 ? "no limits" : parts.join(", ")}; ${qos.delayedRequests} requests delayed (${qos.delayedMsTotal} ms in all)`;
}

/** A version number for --if-version: a non-negative integer, else a one-sentence error. */
function versionOption(value: string): number {
  const version = Number(value);
  if (!/^[0-9]+$/.test(value) || !Number.isSafeInteger(version)) throw new InvalidArgumentError("a version is a whole number (from vdisk info or vdisk settings).");
  return version;
}

vdisk
  .command("create <name>")
  .description("create a thin vDisk")
  .requiredOption("--size <size>", "size, e.g. 10G (binary units)", sizeOption)
  .option("--sco-cache-max <size>", "keep at most this much of its data in local SCO files once it is on the backend (default: the vPool's)", sizeOption)
  .option("--vpool <name>", "the vPool (default: the node's default vPool); the vDisk gets its SCO size, TLog multiplier, SCO cache cap and cache mode")
  .option("--cache-mode <mode>", "its read cache mode: cache-on-read, cache-on-write or none (default: the vPool's)")
  .option("--sco-size <size>", "its SCO size, 1M to 128M, fixed for its life (default: the vPool's)", sizeOption)
  .option("--tlog-multiplier <n>", "SCOs per TLog, 1 to 1024, fixed for its life (default: the vPool's)", (value: string) => Number(value))
  .option("--json", "print JSON")
  .action(async (name: string, options: { size: string; scoCacheMax?: string; vpool?: string; cacheMode?: string; scoSize?: string; tlogMultiplier?: number; json?: boolean }) => {
    const info = await callApi<VDiskInfo>(api(), "POST", "/api/v1/vdisks", {
      name, size: options.size, ...(options.scoCacheMax === undefined ? {} : { scoCacheMax: options.scoCacheMax }), ...(options.vpool === undefined ? {} : { vpool: options.vpool }),
      ...(options.cacheMode === undefined ? {} : { cacheMode: options.cacheMode }),
      ...(options.scoSize === undefined ? {} : { scoSize: options.scoSize }),
      ...(options.tlogMultiplier === undefined ? {} : { tlogMultiplier: options.tlogMultiplier }),
    });
    if (options.json) printJson(info);
    else process.stdout.write(`created vDisk ${info.name} (${info.size})\n`);
  });

vdisk
  .command("list")
  .description("list the cluster's vDisks")
  .option("--vpool <name>", "only this vPool's")
  .option("--name <prefix>", "only names starting with this")
  .option("--sort <key>", "name, size or created; a leading - sorts descending", "name")
  .option("--limit <n>", "at most this many (1 to 1000)", (value: string) => Number(value))
  .option("--offset <n>", "skip this many first", (value: string) => Number(value))
  .option("--after <cursor>", "the page after this cursor (printed with the previous page; same --sort)")
  .option("--json", "print JSON")
  .action(async (options: { vpool?: string; name?: string; sort: string; limit?: number; offset?: number; after?: string; json?: boolean }) => {
    const query = new URLSearchParams({ sort: options.sort });
    if (options.vpool !== undefined) query.set("vpool", options.vpool);
    if (options.name !== undefined) query.set("name", options.name);
    if (options.limit !== undefined) query.set("limit", String(options.limit));
    if (options.offset !== undefined) query.set("offset", String(options.offset));
    if (options.after !== undefined) query.set("after", options.after);
    const { vdisks, total, offset, next } = await callApi<{
      vdisks: Array<{ name: string; size: string; namespace: string; vpool: string; storageRouterId: string; connectionCount: number | null; state: string }>; total: number; offset: number; next: string | null;
    }>(api(), "GET", `/api/v1/vdisks?${query.toString()}`);
    // The next page's cursor goes to stderr, so that --json stays the list of this page.
    const more = next === null ? "" : `; the next ones with --after ${next}`;
    if (options.json) {
      if (next !== null) process.stderr.write(`showing ${offset + 1} to ${offset + vdisks.length} of ${total} vDisks${more}\n`);
      return printJson(vdisks);
    }
    if (total === 0) return void process.stdout.write("no vDisks (create one with: ovs vdisk create NAME --size 10G)\n");
    const header = ["NAME", "SIZE", "CONNECTIONS", "NAMESPACE", "VPOOL", "STORAGE ROUTER", "STATE"];
    const rows = vdisks.map((v) => [v.name, v.size, v.connectionCount === null ? "-" : String(v.connectionCount), v.namespace, v.vpool, v.storageRouterId, v.state]);
    if (vdisks.length < total) process.stderr.write(offset === 0 && next === null ? `showing ${vdisks.length} of ${total} vDisks\n` : `showing ${offset + 1} to ${offset + vdisks.length} of ${total} vDisks${more}\n`);
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    for (const row of [header, ...rows]) process.stdout.write(row.map((cell, i) => cell.padEnd(widths[i]!)).join("  ").trimEnd() + "\n");
  });

vdisk
  .command("info <name>")
  .description("show a vDisk with its live statistics")
  .option("--json", "print JSON")
  .action(async (name: string, options: { json?: boolean }) => {
    const info = await callApi<Omit<VDiskInfo, "state"> & { state: VDiskInfo["state"] | "remote"; vpool?: string; storageRouterId?: string }>(api(), "GET", `/api/v1/vdisks/${encodeURIComponent(name)}`);
    if (options.json) printJson(info);
    else if (info.state === "remote") process.stdout.write(`vDisk ${info.name} (${info.size}, vPool ${info.vpool ?? "?"}) is served by storage router ${info.storageRouterId ?? "?"}; ask its API for live statistics.\n`);
    else printInfo(info as VDiskInfo);
    if (!options.json && info.vpool !== undefined && info.state !== "remote") process.stdout.write(`${"vPool".padEnd(16)}${info.vpool}\n`);
  });

vdisk
  .command("resize <name>")
  .description("grow a vDisk (clients see the new size when they reconnect)")
  .requiredOption("--size <size>", "new size, e.g. 20G", sizeOption)
  .option("--expect-version <n>", "only if the vDisk is still at this version (from vdisk info / settings); else refused", versionOption)
  .option("--json", "print JSON")
  .action(async (name: string, options: { size: string; expectVersion?: number; json?: boolean }) => {
    const info = await callApi<VDiskInfo>(api(), "POST", `/api/v1/vdisks/${encodeURIComponent(name)}/resize`, {
      size: options.size, ...(options.expectVersion === undefined ? {} : { version: options.expectVersion }),
    });
    if (options.json) printJson(info);
    else process.stdout.write(`resized vDisk ${info.name} to ${info.size}\n`);
  });

vdisk
  .command("delete <name>")
  .description("delete a vDisk and its data, as a task with a progress bar (refused while a client is connected, unless --force, and while it has clones)")
  .option("--force", "delete even with NBD clients connected (they are disconnected)")
  .option("--json", "print the final task as JSON")
  .option("--no-wait", "print the task id and return at once")
  .action(async (name: string, options: { force?: boolean; json?: boolean; wait: boolean }) => {
    const task = await runTask(api(), "DELETE", `/api/v1/vdisks/${encodeURIComponent(name)}${options.force ? "?force=true" : ""}`, undefined, { json: options.json, wait: options.wait, printJson });
    if (task === undefined) return;
    const result = task.result as { disconnectedClients: number };
    process.stdout.write(`deleted vDisk ${name}${result.disconnectedClients > 0 ? ` (${result.disconnectedClients} NBD client${result.disconnectedClients === 1 ? "" : "s"} disconnected)` : ""}\n`);
  });

vdisk
  .command("set <vdisk> <settings...>")
  .description(`change settings while the vDisk serves I/O, as KEY=VALUE: qos.readIops, qos.writeIops, qos.totalIops (operations per second), qos.readBandwidth, qos.writeBandwidth, qos.totalBandwidth (per second, e.g. 50M), scoCacheMax (e.g. 1G), cache.mode (cache-on-read, cache-on-write or none), cache.quota (its share of the node's read cache, e.g. 512M); 0 = no limit`)
  .option("--expect-version <n>", "only if the vDisk is still at this version (from vdisk settings); else refused", versionOption)
  .option("--json", "print the settings as JSON")
  .action(async (name: string, assignments: string[], options: { expectVersion?: number; json?: boolean }) => {
    const body = { ...settingsBody(assignments), ...(options.expectVersion === undefined ? {} : { version: options.expectVersion }) };
    const settings = await callApi<VDiskSettings>(api(), "PATCH", `/api/v1/vdisks/${encodeURIComponent(name)}/settings`, body);
    if (options.json) return printJson(settings);
    process.stdout.write(`vDisk ${name}: set ${assignments.map((a) => a.trim()).join(" ")} (in effect now)\n`);
    printSettings(settings);
  });

vdisk
  .command("settings <vdisk>")
  .description("show a vDisk's settings: QoS limits, SCO cache cap, read cache mode and quota (changeable with ovs vdisk set), SCO size and TLog multiplier (fixed)")
  .option("--json", "print JSON")
  .action(async (name: string, options: { json?: boolean }) => {
    const settings = await callApi<VDiskSettings>(api(), "GET", `/api/v1/vdisks/${encodeURIComponent(name)}/settings`);
    if (options.json) printJson(settings);
    else printSettings(settings);
  });

vdisk
  .command("rollback <vdisk>")
  .description("roll a vDisk back to a snapshot on the backend; later snapshots and writes are dropped (no NBD client may be connected)")
  .requiredOption("--snapshot <name>", "the snapshot to roll back to")
  .option("--json", "print the final task as JSON (its result is the vDisk)")
  .option("--no-wait", "print the task id and return at once")
  .action(async (name: string, options: { snapshot: string; json?: boolean; wait: boolean }) => {
    const task = await runTask(api(), "POST", `/api/v1/vdisks/${encodeURIComponent(name)}/rollback`, { snapshot: options.snapshot }, { json: options.json, wait: options.wait, printJson });
    if (task !== undefined) process.stdout.write(`rolled vDisk ${name} back to snapshot ${options.snapshot}\n`);
  });

vdisk
  .command("clone <vdisk> <new>")
  .description("create a linked clone of a vDisk's snapshot (for a template, its snapshot is implied)")
  .option("--snapshot <name>", "the snapshot to clone (must be on the backend)")
  .option("--json", "print JSON")
  .action(async (name: string, clone: string, options: { snapshot?: string; json?: boolean }) => {
    const info = await callApi<VDiskInfo>(api(), "POST", `/api/v1/vdisks/${encodeURIComponent(name)}/clones`, { name: clone, ...(options.snapshot ? { snapshot: options.snapshot } : {}) });
    if (options.json) printJson(info);
    else process.stdout.write(`created vDisk ${info.name}, a clone of ${name} at snapshot ${info.parent?.snapshot ?? "?"}\n`);
  });

vdisk
  .command("template <vdisk>")
  .description("make a vDisk a template: read-only, one snapshot kept, to clone from; a task with a progress bar (its write buffer is uploaded first)")
  .option("--json", "print the final task as JSON (its result is the vDisk)")
  .option("--no-wait", "print the task id and return at once")
  .action(async (name: string, options: { json?: boolean; wait: boolean }) => {
    const task = await runTask(api(), "POST", `/api/v1/vdisks/${encodeURIComponent(name)}/template`, undefined, { json: options.json, wait: options.wait, printJson });
    if (task !== undefined) process.stdout.write(`vDisk ${name} is now a template (clone it with: ovs vdisk clone ${name} NEW)\n`);
  });

function thresholdOption(value: string): number {
  const threshold = Number(value);
  if (!/^\d*\.?\d+$/.test(value.trim()) || !(threshold > 0 && threshold <= 1)) {
    throw new InvalidArgumentError("the threshold is a live fraction above 0 and at most 1, e.g. 0.5.");
  }
  return threshold;
}

vdisk
  .command("scrub <vdisk>")
  .description("give back the backend space of overwritten, trimmed and unsnapshotted data: SCOs less live than the threshold are rewritten (the vDisk serves I/O meanwhile)")
  .option("--threshold <fraction>", "rewrite SCOs whose live fraction is under it, above 0 and at most 1 (default 0.5)", thresholdOption)
  .option("--bandwidth <size>", "backend bytes per second the scrub may read and write, e.g. 64M (default 64M; 0 = no limit)", (value: string) => (value === "0" ? value : sizeOption(value)))
  .option("--json", "print the final task as JSON (its result is the report)")
  .option("--no-wait", "print the task id and return at once")
  .action(async (name: string, options: { threshold?: number; bandwidth?: string; json?: boolean; wait: boolean }) => {
    const body = { ...(options.threshold !== undefined ? { threshold: options.threshold } : {}), ...(options.bandwidth !== undefined ? { bandwidth: options.bandwidth === "0" ? 0 : options.bandwidth } : {}) };
    const task = await runTask(api(), "POST", `/api/v1/vdisks/${encodeURIComponent(name)}/scrub`, body, { json: options.json, wait: options.wait, printJson });
    if (task === undefined) return;
    const report = task.result as ScrubReport;
    process.stdout.write(`scrubbed vDisk ${name} in ${(report.durationMs / 1000).toFixed(1)} s: ${report.scosRewritten} of ${report.scosExamined} SCOs rewritten into ${report.scosWritten}, ${formatBytes(report.liveBytesRewritten)} of live data moved, ${formatBytes(Math.max(0, report.bytesReclaimed))} reclaimed on the backend\n`);
  });

interface SnapshotView {
  number: number;
  name: string;
  createdAt: string;
  sticky: boolean;
  state: string;
  metadata?: string;
}

const snapshot = program.command("snapshot").description("manage the snapshots of a vDisk");

snapshot
  .command("create <vdisk> <name>")
  .description("take a snapshot (it can be rolled back to or cloned once its state is \"stored\")")
  .option("--sticky", "keep it when automatic retention deletes old snapshots")
  .option("--metadata <text>", "free text kept with the snapshot (at most 4096 bytes)")
  .option("--json", "print JSON")
  .action(async (vdiskName: string, name: string, options: { sticky?: boolean; metadata?: string; json?: boolean }) => {
    const body = { name, ...(options.sticky ? { sticky: true } : {}), ...(options.metadata !== undefined ? { metadata: options.metadata } : {}) };
    const info = await callApi<SnapshotView>(api(), "POST", `/api/v1/vdisks/${encodeURIComponent(vdiskName)}/snapshots`, body);
    if (options.json) printJson(info);
    else process.stdout.write(`created snapshot ${info.name} of vDisk ${vdiskName} (${info.state})\n`);
  });

snapshot
  .command("list <vdisk>")
  .description("list a vDisk's snapshots with their state (stored: on the backend; pending: not yet)")
  .option("--json", "print JSON")
  .action(async (vdiskName: string, options: { json?: boolean }) => {
    const { snapshots } = await callApi<{ snapshots: SnapshotView[] }>(api(), "GET", `/api/v1/vdisks/${encodeURIComponent(vdiskName)}/snapshots`);
    if (options.json) return printJson(snapshots);
    if (snapshots.length === 0) return void process.stdout.write(`vDisk ${vdiskName} has no snapshots (take one with: ovs snapshot create ${vdiskName} NAME)\n`);
    const header = ["NAME", "STATE", "STICKY", "CREATED"];
    const rows = snapshots.map((s) => [s.name, s.state, s.sticky ? "yes" : "no", s.createdAt]);
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    for (const row of [header, ...rows]) process.stdout.write(row.map((cell, i) => cell.padEnd(widths[i]!)).join("  ").trimEnd() + "\n");
  });

snapshot
  .command("delete <vdisk> <name>")
  .description("delete a snapshot (its data merges into the next one; refused while clones use it)")
  .action(async (vdiskName: string, name: string) => {
    await callApi(api(), "DELETE", `/api/v1/vdisks/${encodeURIComponent(vdiskName)}/snapshots/${encodeURIComponent(name)}`);
    process.stdout.write(`deleted snapshot ${name} of vDisk ${vdiskName}\n`);
  });

const config = program.command("config").description("read and change the cluster store's keys (as operators did with the original's ovs config)");

interface ConfigValue {
  key: string;
  value: string;
  encoding: "utf8" | "base64";
}

function showValue(value: ConfigValue): string {
  return value.encoding === "utf8" ? value.value : `base64:${value.value}`;
}

config
  .command("get <key>")
  .description("print a key's value")
  .option("--json", "print JSON")
  .action(async (key: string, options: { json?: boolean }) => {
    const value = await callApi<ConfigValue>(api(), "GET", `/api/v1/config/value?key=${encodeURIComponent(key)}`);
    if (options.json) printJson(value);
    else process.stdout.write(showValue(value) + "\n");
  });

config
  .command("set <key> [value]")
  .description("set a key (the value from the argument, or from --file, or '-' for standard input)")
  .option("--file <path>", "take the value from a file")
  .action(async (key: string, value: string | undefined, options: { file?: string }) => {
    let bytes: Buffer;
    if (options.file !== undefined) bytes = fs.readFileSync(options.file);
    else if (value === "-") bytes = fs.readFileSync(0);
    else if (value !== undefined) bytes = Buffer.from(value, "utf8");
    else throw new CliError("give a value, --file PATH, or - to read standard input.");
    await callApi(api(), "PUT", "/api/v1/config", { key, value: bytes.toString("base64"), encoding: "base64" });
    process.stdout.write(`set ${key} (${bytes.length} bytes)\n`);
  });

config
  .command("list [prefix]")
  .description("list keys and values under a prefix (all keys without one)")
  .option("--keys", "print only the keys")
  .option("--json", "print JSON")
  .action(async (prefix: string | undefined, options: { keys?: boolean; json?: boolean }) => {
    const all: ConfigValue[] = [];
    let after: string | undefined;
    for (;;) {
      const query = new URLSearchParams({ prefix: prefix ?? "", limit: "1000", ...(after === undefined ? {} : { after }) });
      const page = await callApi<{ entries: ConfigValue[]; more: boolean }>(api(), "GET", `/api/v1/config?${query.toString()}`);
      all.push(...page.entries);
      if (!page.more || page.entries.length === 0) break;
      after = page.entries.at(-1)!.key;
    }
    if (options.json) return printJson(all);
    for (const entry of all) process.stdout.write(options.keys ? `${entry.key}\n` : `${entry.key} = ${showValue(entry)}\n`);
  });

config
  .command("delete <key>")
  .description("delete a key")
  .action(async (key: string) => {
    await callApi(api(), "DELETE", `/api/v1/config?key=${encodeURIComponent(key)}`);
    process.stdout.write(`deleted ${key}\n`);
  });

config
  .command("watch <prefix>")
  .description("print every change under a prefix as it happens (Ctrl-C stops)")
  .action(async (prefix: string) => {
    await streamApi(api(), `/api/v1/config/watch?prefix=${encodeURIComponent(prefix)}`, (line) => {
      const event = JSON.parse(line) as { type: string; key?: string; value?: string; encoding?: "utf8" | "base64" };
      if (event.type === "watching") process.stdout.write(`watching ${prefix}\n`);
      else if (event.type === "put") process.stdout.write(`put ${event.key} = ${showValue(event as ConfigValue)}\n`);
      else process.stdout.write(`delete ${event.key}\n`);
    });
  });

config
  .command("status")
  .description("the cluster store's members, leader, size and alarms")
  .option("--json", "print JSON")
  .action(async (options: { json?: boolean }) => {
    const status = await callApi<{
      kind: string; description: string; healthy: boolean; leader?: string; dbSizeBytes: number; alarms: string[]; recovery?: string;
      members: Array<Record<string, unknown>>;
    }>(api(), "GET", "/api/v1/config/status");
    if (options.json) return printJson(status);
    process.stdout.write(`store    ${status.description} (${status.kind})\n`);
    process.stdout.write(`healthy  ${status.healthy ? "yes" : "NO"}\n`);
    process.stdout.write(`leader   ${status.leader ?? "none"}\n`);
    process.stdout.write(`size     ${formatBytes(status.dbSizeBytes)}\n`);
    for (const member of status.members) process.stdout.write(`member   ${Object.entries(member).map(([k, v]) => `${k}=${String(v)}`).join(" ")}\n`);
    for (const alarm of status.alarms) process.stdout.write(`ALARM    ${alarm}\n`);
    if (status.recovery) process.stdout.write(`recovery ${status.recovery}\n`);
  });

registerAuthCommands(program, api, printJson);
registerHealthCommands(program, api, printJson);
registerScheduleCommands(program, api, printJson);
registerTaskCommands(program, api, printJson);
registerAlbaCommands(program, { api, printJson });
registerModelCommands(program, { api, printJson });

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) {
    process.exitCode = error.exitCode === 0 ? 0 : 2;
  } else {
    const message = error instanceof CliError || isOvsError(error) ? error.message : error instanceof Error ? error.message : String(error);
    process.stderr.write(`ovs: ${message}\n`);
    process.exitCode = 1;
  }
}
