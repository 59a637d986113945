// Health check, metrics, OpenAPI and logs through the front door: a real `ovs up` (JSON logs at info),
// the real `ovs` CLI, HTTP, and qemu-io for I/O that must move the vDisk counters.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import fsp from "node:fs/promises";
import path from "node:path";
import { RunningNode, alive, expectOk, ovsBin, runTool, tempDir } from "./platform.js";
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

  it("reports a registry record that is not JSON (VOL0007) and a vDisk being deleted (VOL0008)", async () => {
    expectOk(await node.ovs(["config", "set", "ovs/vdisks/garbled", "{not json"]), "plant a garbled record");
    const record = { id: "00000000-0000-4000-8000-000000000001", name: "leaving", nodeId, namespace: "vdisk-none", sizeBytes: 1048576, createdAt: new Date().toISOString(), deleting: true };
    expectOk(await node.ovs(["config", "set", "ovs/vdisks/leaving", JSON.stringify(record)]), "plant a record being deleted");
    try {
      const failed = await node.ovs(["healthcheck", "volumedriver", "registry", "--json"]);
      expect(failed.exitCode).toBe(1);
      const result = (JSON.parse(failed.stdout) as Report).result["volumedriver.registry"]!;
      expect(result.state).toBe("FAILED");
      expect(result.messages.error).toEqual([{ code: "VOL0007", message: "the registry record ovs/vdisks/garbled is not valid JSON." }]);
      expect(result.messages.warning).toEqual([{ code: "VOL0008", message: `vDisk leaving is being deleted; the next start of node ${nodeId} finishes it.` }]);
    } finally {
      expectOk(await node.ovs(["config", "delete", "ovs/vdisks/garbled"]), "remove the garbled record");
    }
    // A record being deleted alone is a warning: the check exits 0.
    const warned = await node.fetch("/api/v1/health?module=volumedriver&test=registry");
    expect(warned.status).toBe(200);
    expect((await warned.json()) as Report).toMatchObject({ recap: { WARNING: 1, FAILED: 0 }, result: { "volumedriver.registry": { state: "WARNING" } } });
    expectOk(await node.ovs(["config", "delete", "ovs/vdisks/leaving"]), "remove the record being deleted");
    expect(((await (await node.fetch("/api/v1/health?module=volumedriver&test=registry")).json()) as Report).result["volumedriver.registry"]!.state).toBe("SUCCESS");
  });

  it("counts a local SCO copy with a flipped byte as a checksum error (VOL0004) and still returns the right bytes", async () => {
    expectOk(await node.ovs(["vdisk", "create", "flipped", "--size", "16M", "--sco-size", "4M", "--tlog-multiplier", "16"]), "create"); // not the default 8 MiB
    // 5 MiB: the first 4 MiB SCO closes and uploads; its local copy stays in the write buffer.
    expectOk(await runTool("qemu-io", ["-f", "raw", node.uri("flipped"), "-c", "write -P 0x61 0 4M", "-c", "write -P 0x62 4M 1M", "-c", "flush"]), "qemu-io write");
    const id = ((await (await node.fetch("/api/v1/vdisks/flipped")).json()) as { id: string }).id;
    const deadline = Date.now() + 60_000;
    while (((await (await node.fetch("/api/v1/vdisks/flipped")).json()) as { stats: { pendingUploads: number } }).stats.pendingUploads > 0) {
      if (Date.now() > deadline) throw new Error("the SCOs of vDisk flipped were not uploaded within 60 s");
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    const volumeDir = path.join(dataDir, "volumes", id);
    const entries = await fsp.readdir(volumeDir, { withFileTypes: true, recursive: true });
    const sco = entries.find((entry) => entry.isFile() && entry.name === "00_00000001_00");
    expect(sco, `the first SCO's local copy under ${volumeDir}`).toBeDefined();
    const handle = await fsp.open(path.join(sco!.parentPath, sco!.name), "r+");
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, 1000);
    byte[0] = byte[0]! ^ 0xff;
    await handle.write(byte, 0, 1, 1000);
    await handle.close();
    // The read gets the right bytes (from the backend), and the health check warns about the vDisk.
    expectOk(await runTool("qemu-io", ["-f", "raw", node.uri("flipped"), "-c", "read -P 0x61 0 4M"]), "qemu-io read past the flipped byte");
    const checked = await node.ovs(["healthcheck", "--json", "volumedriver", "checksums"]);
    expect(checked.exitCode, checked.stderr).toBe(0); // a warning, not a failure
    const result = (JSON.parse(checked.stdout) as Report).result["volumedriver.checksums"]!;
    expect(result.state).toBe("WARNING");
    expect(result.messages.warning).toEqual([{ code: "VOL0004", message: expect.stringMatching(/^vDisk flipped saw \d+ checksum errors? \(bad bytes were never returned; see the node's log\)\.$/) }]);
    expectOk(await node.ovs(["vdisk", "delete", "flipped"]), "delete");
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

describe("the ALBA routes' role and input checks", () => {
  it("refuse a read token (403) and unknown input (400) on claim, decommission, add ASD and add preset, changing nothing", async () => {
    const viewer = await node.ovs(["user", "create", "alba-viewer", "--role", "read", "--json"]);
    expectOk(viewer, "create alba-viewer");
    const token = await node.login("alba-viewer", (JSON.parse(viewer.stdout) as { password: string }).password);
    const state = async (): Promise<unknown> => ({
      asds: ((await (await node.fetch("/api/v1/alba/asds")).json()) as { asds: Array<{ asdId: string; state: string; port: number }> }).asds.map((a) => `${a.asdId} ${a.state}`).sort(),
      presets: ((await (await node.fetch("/api/v1/alba/presets")).json()) as { presets: Array<{ name: string }> }).presets.map((p) => p.name).sort(),
      tasks: ((await (await node.fetch("/api/v1/tasks?limit=1000")).json()) as { tasks: unknown[] }).tasks.length,
    });
    const before = (await state()) as { asds: string[]; presets: string[] };
    expect(before.asds.length).toBe(6);
    const asdId = before.asds[0]!.split(" ")[0]!;
    const preset = { name: "viewer-preset", policies: [{ k: 2, m: 1, c: 2, x: 3 }] };
    const call = (method: string, url: string, body: unknown, as: string): Promise<Response> =>
      node.fetch(url, { method, ...(body === undefined ? {} : { headers: { "content-type": "application/json" }, body: JSON.stringify(body) }) }, as);
    for (const [method, url, body, role] of [
      ["POST", `/api/v1/alba/asds/${asdId}/claim`, undefined, "manage"],
      ["POST", `/api/v1/alba/asds/${asdId}/decommission`, undefined, "manage"],
      ["POST", "/api/v1/alba/asds", { host: "127.0.0.1", port: 1 }, "manage"],
      ["POST", "/api/v1/alba/presets", preset, "manage"],
      ["POST", "/api/v1/alba/maintenance/pass", undefined, "write"],
    ] as const) {
      const response = await call(method, url, body, token);
      expect(response.status, `${method} ${url}`).toBe(403);
      expect(((await response.json()) as { error: unknown }).error).toEqual({ code: "FORBIDDEN", message: `role ${role} required (user alba-viewer has read).` });
    }
    for (const [method, url, body, message] of [
      ["POST", `/api/v1/alba/asds/${asdId}/decommission`, { colour: "red" }, 'invalid request: body has an unknown field "colour".'],
      ["POST", `/api/v1/alba/asds/${asdId}/decommission?now=1`, undefined, 'invalid request: querystring has an unknown field "now".'],
      ["POST", `/api/v1/alba/asds/${asdId}/claim`, { force: true }, 'invalid request: body has an unknown field "force".'],
      ["POST", "/api/v1/alba/presets?default=1", preset, 'invalid request: querystring has an unknown field "default".'],
      ["POST", "/api/v1/alba/maintenance/pass", { steps: 1 }, 'invalid request: body has an unknown field "steps".'],
      ["GET", "/api/v1/alba/asds?state=claimed", undefined, 'invalid request: querystring has an unknown field "state".'],
    ] as const) {
      const response = await call(method, url, body, node.token);
      expect(response.status, `${method} ${url}`).toBe(400);
      expect(await response.json()).toEqual({ error: { code: "INVALID_ARGUMENT", message } });
    }
    expect(await state()).toEqual(before);
  });
});

interface AsdView {
  asdId: string; host: string; port: number; nodeId: string; state: string;
  local?: { index: number; dir: string; pid: number | null; process: string; restarts: number };
}

/** The alba.asds result, through GET /api/v1/health (fast enough to catch a local ASD between restarts). */
async function albaAsdsViaApi(): Promise<Report["result"][string]> {
  const response = await node.fetch("/api/v1/health?module=alba&test=asds");
  expect(response.status).toBe(200);
  return ((await response.json()) as Report).result["alba.asds"]!;
}

/** Bytes allocated to the files under `dir` (what an ASD with --capacity counts as used). */
async function allocatedBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await fsp.readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += (await fsp.stat(path.join(entry.parentPath, entry.name))).blocks * 512;
  }
  return total;
}

describe("the health check reports a killed ASD and a full ASD", () => {
  let external: ChildProcess | undefined;
  let scratch: string | undefined;

  afterAll(async () => {
    if (external?.pid !== undefined && external.exitCode === null && external.signalCode === null) process.kill(external.pid, "SIGKILL");
    if (scratch !== undefined) await fsp.rm(scratch, { recursive: true, force: true });
  });

  it("names a local ASD killed with SIGKILL (ALBA0011) until its supervisor has restarted it", async () => {
    const list = async (): Promise<AsdView[]> => ((await (await node.fetch("/api/v1/alba/asds")).json()) as { asds: AsdView[] }).asds.filter((asd) => asd.local !== undefined);
    const victim = (await list()).find((asd) => asd.local!.index === 2)!;
    expect(victim.local!.process).toBe("running");
    // The supervisor restarts a killed ASD after 250 ms, doubling while it keeps dying young (up to 5 s):
    // ask the node right after each kill; kill the new process again (bounded) until one answer saw it down.
    const killed: number[] = [];
    let seen: Report["result"][string] | undefined;
    const deadline = Date.now() + 60_000;
    while (seen === undefined) {
      if (Date.now() > deadline || killed.length >= 6) throw new Error(`the health check never saw ASD ${victim.asdId} down (killed pids ${killed.join(", ")})`);
      const current = (await list()).find((asd) => asd.asdId === victim.asdId)!;
      const pid = current.local!.pid;
      if (current.local!.process !== "running" || pid === null || killed.includes(pid)) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        continue;
      }
      process.kill(pid, "SIGKILL");
      killed.push(pid);
      const result = await albaAsdsViaApi();
      if ((result.messages.error ?? []).some((m) => m.code === "ALBA0011")) seen = result;
    }
    process.stdout.write(`the health check saw local ASD ${victim.local!.index} down after ${killed.length} SIGKILL(s)\n`);
    expect(seen.state).toBe("FAILED");
    expect(seen.messages.error).toHaveLength(1);
    expect(seen.messages.error![0]!.message).toMatch(new RegExp(`^ASD ${victim.asdId} \\(node ${victim.nodeId}, 127\\.0\\.0\\.1:${victim.port}\\) does not answer \\(.+\\); maintenance repairs its fragments away after 900 s\\.$`));
    if (seen.messages.warning === undefined) expect(seen.messages.success).toEqual([{ code: "ALBA0010", message: "5 of 6 claimed ASDs answer with room to write." }]);
    // Back under a new pid, the check is clean again.
    const back = await (async () => {
      const until = Date.now() + 60_000;
      for (;;) {
        const current = (await list()).find((asd) => asd.asdId === victim.asdId)!;
        if (current.local!.process === "running" && current.local!.pid !== null && !killed.includes(current.local!.pid)) {
          const result = await albaAsdsViaApi();
          if (result.messages.error === undefined) return { current, result };
        }
        if (Date.now() > until) throw new Error(`ASD ${victim.asdId} did not come back within 60 s`);
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    })();
    expect(back.current.local!.restarts).toBeGreaterThanOrEqual(killed.length);
    for (const pid of killed) expect(alive(pid)).toBe(false);
    expect(Object.values(back.result.messages).flat().every((m) => m.code === "ALBA0010" || m.code === "ALBA0013")).toBe(true);
  }, 120_000);

  it("reports a claimed ASD filling up (ALBA0013), full (ALBA0012), then killed for good (ALBA0011), by CLI and API", async () => {
    scratch = await tempDir("ovs-health-asd-");
    const asdDir = path.join(scratch, "asd");
    // An ASD outside the node's supervisor (nothing restarts it), capped at 8 MiB: it counts the bytes
    // allocated under its directory as used, so a file written there fills it as any other data would.
    external = spawn(process.execPath, [ovsBin, "asd", "--dir", asdDir, "--port", "0", "--secret-file", path.join(dataDir, "asds", "cluster-secret"), "--capacity", "8M"], {
      stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, OVS_LOG_LEVEL: "warn" },
    });
    const port = await new Promise<number>((resolve, reject) => {
      let out = "";
      const timer = setTimeout(() => reject(new Error(`ovs asd did not start: ${out}`)), 30_000);
      external!.stdout!.on("data", (d: Buffer) => {
        out += d.toString();
        const match = /listening on 127\.0\.0\.1:(\d+)/.exec(out);
        if (match) {
          clearTimeout(timer);
          resolve(Number(match[1]));
        }
      });
    });
    const added = await node.ovs(["alba", "asd", "add", `127.0.0.1:${port}`, "--node-id", "health-node", "--json"]);
    expectOk(added, "asd add");
    const asdId = (JSON.parse(added.stdout) as AsdView).asdId;
    expectOk(await node.ovs(["alba", "asd", "claim", asdId]), "asd claim");
    const where = `ASD ${asdId} (node health-node, 127.0.0.1:${port})`;
    const about = (result: Report["result"][string]): Array<{ code: string; message: string }> => Object.values(result.messages).flat().filter((m) => m.message.includes(asdId));
    const claimedView = await albaAsdsViaApi();
    expect(about(claimedView)).toEqual([]); // it answers with room (the success message counts it)
    if (claimedView.state === "SUCCESS") expect(claimedView.messages.success).toEqual([{ code: "ALBA0010", message: "7 of 7 claimed ASDs answer with room to write." }]);

    const capacity = 8 * 1024 * 1024;
    const filler = path.join(asdDir, "filler");
    const fillTo = async (ratio: number): Promise<void> => {
      const others = (await allocatedBytes(asdDir)) - (await fsp.stat(filler).then((s) => s.blocks * 512, () => 0));
      await fsp.writeFile(filler, Buffer.alloc(Math.ceil(ratio * capacity) - others, 0x5a));
    };
    // Over 90 %: a warning naming it; the check still exits 0.
    await fillTo(0.94);
    const warned = await node.ovs(["healthcheck", "--json", "alba", "asds"]);
    expect(warned.exitCode, warned.stderr).toBe(0);
    const warning = (JSON.parse(warned.stdout) as Report).result["alba.asds"]!;
    expect(warning.state).toBe("WARNING");
    expect(about(warning)).toEqual([{ code: "ALBA0013", message: expect.stringMatching(new RegExp(`^${where.replace(/[().]/g, "\\$&")} is 9[4-8]\\.\\d % full; it refuses writes at 99 %\\.$`)) }]);
    if (warning.messages.warning!.length === 1) expect(warning.messages.success).toEqual([{ code: "ALBA0010", message: "6 of 7 claimed ASDs answer with room to write." }]);

    // At its capacity: it refuses writes, and the check fails naming it (CLI exit 1; the API the same).
    await fillTo(1);
    const full = await node.ovs(["healthcheck", "--json", "alba"]);
    expect(full.exitCode).toBe(1);
    const fullReport = JSON.parse(full.stdout) as Report;
    expect(fullReport.result["alba.backend"]).toMatchObject({ state: "SUCCESS", messages: { success: [{ code: "ALBA0002", message: expect.stringMatching(/ with 7 claimed ASDs\.$/) }] } });
    expect(fullReport.result["alba.asds"]!.state).toBe("FAILED");
    expect(about(fullReport.result["alba.asds"]!)).toEqual([{ code: "ALBA0012", message: expect.stringMatching(new RegExp(`^${where.replace(/[().]/g, "\\$&")} is full \\((99|100)\\.\\d % used\\): it refuses writes; add capacity or let maintenance rebalance\\.$`)) }]);
    expect((await albaAsdsViaApi()).messages.error![0]!.code).toBe("ALBA0012");

    // Killed with SIGKILL, with no supervisor to restart it: the CLI's text output names it with ALBA0011.
    const exited = new Promise((resolve) => external!.once("exit", resolve));
    process.kill(external.pid!, "SIGKILL");
    await exited;
    const text = await node.ovs(["healthcheck", "alba", "asds"]);
    expect(text.exitCode).toBe(1);
    expect(text.stdout).toMatch(new RegExp(`^\\[FAILED\\] alba\\.asds\\s+ALBA0011\\s+${where.replace(/[().]/g, "\\$&")} does not answer \\(.+\\); maintenance repairs its fragments away after 900 s\\.$`, "m"));
    expect(text.stdout).toMatch(/^recap: SUCCESS 0, WARNING 0, FAILED 1, SKIPPED 0, EXCEPTION 0$/m);
    const viaApi = await albaAsdsViaApi();
    expect(viaApi.state).toBe("FAILED");
    expect(viaApi.messages.error).toEqual([{ code: "ALBA0011", message: expect.stringContaining(where) }]);
    if (viaApi.messages.warning === undefined) expect(viaApi.messages.success).toEqual([{ code: "ALBA0010", message: "6 of 7 claimed ASDs answer with room to write." }]);
  }, 120_000);
});
