// Health check, metrics, OpenAPI and logs through the front door: a real `ovs up` (JSON logs at info),
// the real `ovs` CLI, HTTP, and qemu-io for I/O that must move the vDisk counters.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fsp from "node:fs/promises";
import path from "node:path";
import { RunningNode, expectOk, runTool, tempDir } from "./platform.js";
import { parsePrometheusText, sampleValue } from "./prometheus-text.js";

let node: RunningNode;
let dataDir: string;
let nodeId: string;

beforeAll(async () => {
  dataDir = await tempDir("ovs-observe-");
  node = await RunningNode.start(dataDir, { nbd: 0, api: 0 }, [], "up", { OVS_LOG_LEVEL: "info" });
  nodeId = ((await (await node.fetch("/api/v1/node")).json()) as { nodeId: string }).nodeId;
});

afterAll(async () => {
  await node?.stop();
  await fsp.rm(dataDir, { recursive: true, force: true });
});

interface Report {
  recap: Record<string, number>;
  result: Record<string, { state: string; messages: Record<string, Array<{ code: string; message: string }>> }>;
}

describe("ovs healthcheck and /api/v1/health", () => {
  it("reports every module of a healthy node, its 6 ASDs included", async () => {
    const text = await node.ovs(["healthcheck"]);
    expectOk(text, "healthcheck");
    expect(text.stdout).toMatch(/^\[SUCCESS\] store\.health\s+STO0001\s+the embedded store is healthy/m);
    expect(text.stdout).toMatch(/^\[SUCCESS\] store\.read-write\s+STO0010 /m);
    expect(text.stdout).toMatch(/^\[SUCCESS\] alba\.backend\s+ALBA0002\s+ALBA backend alba-[0-9a-f]{16} with 6 claimed ASDs\.$/m);
    expect(text.stdout).toMatch(/^\[SUCCESS\] node\.nbd\s+NODE0010\s+the NBD server accepts connections/m);
    expect(text.stdout).toMatch(/^recap: SUCCESS \d+, WARNING \d+, FAILED 0, SKIPPED 0, EXCEPTION 0\n$/m);
    const json = await node.ovs(["healthcheck", "--json"]);
    expectOk(json, "healthcheck --json");
    const report = JSON.parse(json.stdout) as Report;
    expect(Object.keys(report.result)).toEqual([
      "store.health", "store.read-write", "alba.backend", "alba.asds", "volumedriver.halted", "volumedriver.checksums", "volumedriver.registry", "node.disk-space", "node.nbd", "node.memory",
    ]);
    expect(Object.values(report.recap).reduce((a, b) => a + b, 0)).toBe(10);
    for (const [name, result] of Object.entries(report.result)) {
      const codes = Object.values(result.messages).flat().map((m) => m.code);
      expect(codes.length, name).toBeGreaterThan(0);
      for (const code of codes) expect(code).toMatch(/^(STO|ALBA|VOL|NODE|HC)\d{4}$/);
    }
    // Every one of the node's 6 ASDs answers (with room, or over 90 % full on a crowded test disk).
    const asds = report.result["alba.asds"]!;
    expect(asds.messages.error).toBeUndefined();
    expect(Object.values(asds.messages).flat().map((m) => m.code).every((code) => code === "ALBA0010" || code === "ALBA0013")).toBe(true);
    if (asds.state === "SUCCESS") expect(asds.messages.success![0]!.message).toBe("6 of 6 claimed ASDs answer with room to write.");
    // The disk may be fuller on some machines: then the state and its code must agree.
    const disk = report.result["node.disk-space"]!;
    expect({ SUCCESS: "NODE0001", WARNING: "NODE0002", FAILED: "NODE0003" }[disk.state]).toBe(Object.values(disk.messages).flat()[0]!.code);
    const viaApi = await node.fetch("/api/v1/health?module=store");
    expect(viaApi.status).toBe(200);
    expect(Object.keys(((await viaApi.json()) as Report).result)).toEqual(["store.health", "store.read-write"]);
    expect((await node.fetch("/api/v1/health", {}, "")).status).toBe(401);
    expect((await fetch(`${node.apiUrl}/api/v1/health/live`)).status).toBe(200);
  });

  it("finds a vDisk registered to this node that it does not serve, and names it", async () => {
    const record = { id: "00000000-0000-4000-8000-000000000000", name: "ghost", nodeId, namespace: "vdisk-none", sizeBytes: 1048576, createdAt: new Date().toISOString() };
    expectOk(await node.ovs(["config", "set", "ovs/vdisks/ghost", JSON.stringify(record)]), "plant a registry record");
    try {
      const failed = await node.ovs(["healthcheck", "volumedriver", "registry"]);
      expect(failed.exitCode).toBe(1);
      expect(failed.stdout).toBe(`[FAILED] volumedriver.registry    VOL0006   vDisk ghost is registered to node ${nodeId} but not served by it (restart the node, or remove the record).\nrecap: SUCCESS 0, WARNING 0, FAILED 1, SKIPPED 0, EXCEPTION 0\n`);
    } finally {
      expectOk(await node.ovs(["config", "delete", "ovs/vdisks/ghost"]), "remove it");
    }
    const healed = JSON.parse((await node.ovs(["healthcheck", "volumedriver", "registry", "--json"])).stdout) as Report;
    expect(healed.result["volumedriver.registry"]!.state).toBe("SUCCESS");
  });

  it("refuses an unknown module or test with one sentence", async () => {
    const module = await node.ovs(["healthcheck", "arakoon"]);
    expect(module.exitCode).toBe(1);
    expect(module.stderr).toBe("ovs: there is no health check module arakoon; the modules are store, alba, volumedriver, node.\n");
    const test = await node.ovs(["healthcheck", "node", "fans"]);
    expect(test.stderr).toBe("ovs: module node has no test fans; its tests are disk-space, nbd, memory.\n");
  });
});

describe("GET /metrics", () => {
  it("is Prometheus text with the vDisk, API and process families; the counters move with I/O", async () => {
    expect((await node.fetch("/metrics", {}, "")).status).toBe(401);
    expectOk(await node.ovs(["vdisk", "create", "metered", "--size", "16M"]), "create");
    const scrape = async () => {
      const response = await node.fetch("/metrics");
      expect(response.status).toBe(200);
      expect(response.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
      return parsePrometheusText(await response.text());
    };
    const before = await scrape();
    for (const [name, type] of [
      ["ovs_vdisk_operations_total", "counter"], ["ovs_vdisk_bytes_total", "counter"], ["ovs_vdisk_errors_total", "counter"],
      ["ovs_vdisk_latency_seconds", "histogram"], ["ovs_vdisk_write_buffer_bytes", "gauge"], ["ovs_vdisk_backend_reads_total", "counter"],
      ["ovs_vdisk_size_bytes", "gauge"], ["ovs_api_requests_total", "counter"], ["ovs_api_request_duration_seconds", "histogram"],
      ["process_cpu_user_seconds_total", "counter"], ["process_resident_memory_bytes", "gauge"], ["nodejs_eventloop_lag_seconds", "gauge"],
    ] as const) {
      expect(before.get(name)?.type, name).toBe(type);
    }
    const labels = { vdisk: "metered", node: nodeId };
    expect(sampleValue(before, "ovs_vdisk_size_bytes", labels)).toBe(16 * 1024 * 1024);
    const writesBefore = sampleValue(before, "ovs_vdisk_operations_total", { ...labels, op: "write" });
    const bytesBefore = sampleValue(before, "ovs_vdisk_bytes_total", { ...labels, op: "write" });
    expectOk(await runTool("qemu-io", ["-f", "raw", node.uri("metered"), "-c", "write -P 0x42 0 1M", "-c", "write -P 0x43 4194304 65536", "-c", "read -P 0x42 0 1M", "-c", "flush"]), "qemu-io");
    const after = await scrape();
    expect(sampleValue(after, "ovs_vdisk_bytes_total", { ...labels, op: "write" }) - bytesBefore).toBe(1048576 + 65536);
    expect(sampleValue(after, "ovs_vdisk_operations_total", { ...labels, op: "write" }) - writesBefore).toBeGreaterThanOrEqual(2);
    expect(sampleValue(after, "ovs_vdisk_bytes_total", { ...labels, op: "read" })).toBeGreaterThanOrEqual(1048576);
    expect(sampleValue(after, "ovs_vdisk_operations_total", { ...labels, op: "flush" })).toBeGreaterThanOrEqual(1);
    expect(sampleValue(after, "ovs_vdisk_latency_seconds_count", { ...labels, op: "write" })).toBe(sampleValue(after, "ovs_vdisk_operations_total", { ...labels, op: "write" }));
    for (const state of ["local", "not_disposable"]) expect(sampleValue(after, "ovs_vdisk_write_buffer_bytes", { ...labels, state })).toBeGreaterThanOrEqual(0);
    expect(sampleValue(after, "ovs_api_requests_total", { method: "POST", route: "/api/v1/vdisks", status: "201" })).toBeGreaterThanOrEqual(1);
    const up = after.get("ovs_asd_up")!.samples;
    expect(up).toHaveLength(6);
    expect(up.every((sample) => sample.value === 1)).toBe(true);
    expect(after.get("ovs_asd_capacity_bytes")!.samples).toHaveLength(6);
    // The node's ALBA maintenance: queues and what it did (a verify of the vDisk's namespace counts).
    for (const [name, type] of [
      ["ovs_alba_repair_queue_objects", "gauge"], ["ovs_alba_verify_queue_namespaces", "gauge"], ["ovs_alba_decommissions_draining", "gauge"],
      ["ovs_alba_maintenance_objects_total", "counter"], ["ovs_alba_maintenance_fragments_total", "counter"], ["ovs_alba_repair_queue_overflows_total", "counter"],
    ] as const) {
      expect(after.get(name)?.type, name).toBe(type);
    }
    expect(sampleValue(after, "ovs_alba_repair_queue_objects", { node: nodeId })).toBe(0);
    const verifiedBefore = sampleValue(after, "ovs_alba_maintenance_fragments_total", { node: nodeId, action: "verified" });
    const namespace = (JSON.parse((await node.ovs(["vdisk", "info", "metered", "--json"])).stdout) as { namespace: string }).namespace;
    expectOk(await node.ovs(["alba", "namespace", "verify", namespace], 180_000), "verify");
    const verified = await scrape();
    expect(sampleValue(verified, "ovs_alba_maintenance_fragments_total", { node: nodeId, action: "verified" })).toBeGreaterThan(verifiedBefore);
    expect(sampleValue(verified, "ovs_alba_maintenance_fragments_total", { node: nodeId, action: "bad_found" })).toBe(0);
    // The Grafana dashboard asks only for families this node exports.
    const dashboard = await fsp.readFile(path.resolve("docs/grafana/openvstorage.json"), "utf8");
    const asked = new Set([...dashboard.matchAll(/\b((?:ovs|process|nodejs)_[a-z0-9_]+)/g)].map((m) => m[1]!.replace(/_bucket$/, "")));
    expect(asked.size).toBeGreaterThan(10);
    for (const name of asked) expect(after.has(name), `dashboard metric ${name}`).toBe(true);
    expectOk(await node.ovs(["vdisk", "delete", "metered"]), "delete");
    expect((await scrape()).get("ovs_vdisk_operations_total")!.samples.some((s) => s.labels.vdisk === "metered")).toBe(false);
  });
});

describe("GET /api/openapi.json", () => {
  it("documents every route the CLI uses, with the role each needs", async () => {
    expect((await node.fetch("/api/openapi.json", {}, "")).status).toBe(401);
    const doc = (await (await node.fetch("/api/openapi.json")).json()) as { openapi: string; paths: Record<string, Record<string, { summary: string; "x-ovs-role": string }>> };
    expect(doc.openapi).toBe("3.0.3");
    for (const [route, method, role] of [
      ["/api/v1/oauth/token", "post", "public"], ["/api/v1/health/live", "get", "public"], ["/api/v1/health", "get", "read"], ["/metrics", "get", "read"],
      ["/api/v1/vdisks", "post", "write"], ["/api/v1/vdisks/{name}", "delete", "write"], ["/api/v1/vdisks/{name}/resize", "post", "write"],
      ["/api/v1/users", "post", "manage"], ["/api/v1/users/{username}/password", "put", "read"], ["/api/v1/clients/{clientId}", "delete", "manage"],
      ["/api/v1/config", "get", "manage"], ["/api/v1/auth/settings", "patch", "manage"], ["/api/openapi.json", "get", "read"],
      ["/api/v1/alba/asds", "get", "read"], ["/api/v1/alba/asds", "post", "manage"], ["/api/v1/alba/asds/{asdId}/decommission", "post", "manage"],
      ["/api/v1/alba/maintenance/pass", "post", "write"],
    ] as const) {
      expect(doc.paths[route]?.[method]?.["x-ovs-role"], `${method} ${route}`).toBe(role);
    }
  });
});

describe("logs", () => {
  it("writes JSON lines carrying the request id, echoed to the client and in the audit log", async () => {
    const response = await node.fetch("/api/v1/vdisks", { method: "POST", headers: { "content-type": "application/json", "x-request-id": "trace-4711" }, body: JSON.stringify({ name: "logged", size: "1M" }) });
    expect(response.status).toBe(201);
    expect(response.headers.get("x-request-id")).toBe("trace-4711");
    const generated = await node.fetch("/api/v1/vdisks");
    expect(generated.headers.get("x-request-id")).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-/);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const lines = node.stderr.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Record<string, unknown>);
    const ours = lines.filter((l) => l.reqId === "trace-4711");
    expect(ours.map((l) => l.msg)).toEqual(expect.arrayContaining(["incoming request", "request completed"]));
    expect(ours.every((l) => typeof l.time === "number" && typeof l.level === "number")).toBe(true);
    const audit = await fsp.readFile(path.join(dataDir, "audit.log"), "utf8");
    expect(audit).toContain('"reqId":"trace-4711"');
    expectOk(await node.ovs(["vdisk", "delete", "logged"]), "cleanup");
  });
});

describe("ovs schedule", () => {
  it("lists, changes, runs and records the scheduled tasks; bad input changes nothing", async () => {
    const list = await node.ovs(["schedule", "list"]);
    expectOk(list, "schedule list");
    expect(list.stdout).toMatch(/^TASK\s+SCHEDULE\s+LAST SLOT\s+NEXT RUN\s+DESCRIPTION\n/);
    expect(list.stdout).toMatch(/\nauth\.sweep-tokens\s+every 10m\s/);
    expect(list.stdout).toMatch(/\nhealth\.check\s+every 1h \+5m\s/);
    const set = await node.ovs(["schedule", "set", "health.check", "--every", "1d", "--offset", "3h"]);
    expectOk(set, "schedule set");
    expect(set.stdout).toMatch(/^health\.check: every 1d \+3h, next run \d{4}-\d\d-\d\dT03:00:00\.000Z\n$/);
    for (const [args, message] of [
      [["schedule", "set", "health.check", "--every", "10s"], /interval|must be >= 60/],
      [["schedule", "set", "health.check", "--every", "1h", "--offset", "2h"], /offset of health\.check must be 0 to 3599 seconds/],
      [["schedule", "set", "nosuch", "--off"], /no scheduled task nosuch/],
      [["schedule", "set", "health.check"], /exactly one of --every INTERVAL, --off or --default/],
    ] as const) {
      const result = await node.ovs([...args]);
      expect(result.exitCode, args.join(" ")).not.toBe(0);
      expect(result.stderr).toMatch(message);
    }
    expect((await node.ovs(["schedule", "list"])).stdout).toMatch(/\nhealth\.check\s+every 1d \+3h\s/);
    expectOk(await node.ovs(["schedule", "set", "health.check", "--off"]), "off");
    expect((await node.ovs(["schedule", "list"])).stdout).toMatch(/\nhealth\.check\s+off\s/);
    const setJson = await node.ovs(["schedule", "set", "health.check", "--every", "2h", "--json"]);
    expectOk(setJson, "schedule set --json");
    expect(JSON.parse(setJson.stdout)).toMatchObject({ task: "health.check", schedule: { intervalSeconds: 7200, offsetSeconds: 0 }, scope: expect.any(String) });
    expectOk(await node.ovs(["schedule", "set", "health.check", "--default"]), "default");
    const run = await node.ovs(["schedule", "run", "health.check"]);
    expectOk(run, "schedule run");
    expect(run.stdout).toMatch(/^health\.check: SUCCESS in \d+ ms: SUCCESS \d+, WARNING \d+, FAILED 0, SKIPPED 0, EXCEPTION 0\n$/);
    const history = JSON.parse((await node.ovs(["schedule", "history", "health.check", "--json"])).stdout) as Array<{ task: string; trigger: string; state: string; node: string }>;
    expect(history[0]).toMatchObject({ task: "health.check", trigger: "manual", state: "SUCCESS", node: nodeId });
    const viewer = await node.ovs(["user", "create", "scheduler-viewer", "--role", "read", "--json"]);
    const token = await node.login("scheduler-viewer", (JSON.parse(viewer.stdout) as { password: string }).password);
    const refused = await node.ovs(["schedule", "set", "health.check", "--off"], 60_000, { env: { OVS_TOKEN: token } });
    expect(refused.stderr).toBe("ovs: role manage required (user scheduler-viewer has read).\n");
  });
});
