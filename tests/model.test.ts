// The management model through the front door: a real `ovs up` (ALBA on its 6 ASDs), the REST API over
// HTTP and the `ovs` CLI as a process. Storage router registration and heartbeat, the default vPool,
// vPools (create on a preset with its settings, extend, shrink, delete when empty), vDisks in vPools
// (their namespace gets the vPool's preset), the vDisk list with filter/sort/paging, the restart action,
// backends with usage and safety, domains; for every new resource 401 without a token, 403 for a
// missing role, 400 with nothing changed, 404 for unknown names, 409 on a stale version and for two
// concurrent updates of one record (exactly one wins); the audit log; a node restart sets it online.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fs from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import { RawClient } from "../src/frontend/nbd/test-support.js";
import { RunningNode, expectOk, runTool, tempDir, type ToolResult } from "./platform.js";

let node: RunningNode;
let dataDir: string;
let readerToken: string;
let writerToken: string;
let backendName: string;
let asdIds: string[];
const nodeId = "sr-test";

beforeAll(async () => {
  dataDir = await tempDir("ovs-model-");
  node = await RunningNode.start(dataDir, { nbd: 0, api: 0 }, ["--node-id", nodeId, "--asd-capacity", "256M"]);
  expectOk(await node.ovs(["auth", "settings", "--token-requests-per-minute", "1000"]), "raise the token rate limit");
  for (const [user, role] of [["reader", "read"], ["writer", "write"]] as const) {
    const created = await node.fetch("/api/v1/users", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ username: user, password: `${user} password 123`, role }) });
    expect(created.status).toBe(201);
  }
  readerToken = await node.login("reader", "reader password 123");
  writerToken = await node.login("writer", "writer password 123");
  backendName = ((await json("/api/v1/backends")) as { backends: Array<{ name: string }> }).backends[0]!.name;
  asdIds = node.output.match(/ASD \d+\s+\S+\s+([0-9a-f]{32})/g)!.map((line) => /([0-9a-f]{32})/.exec(line)![1]!);
}, 120_000);

afterAll(async () => {
  await node?.stop();
  await fsp.rm(dataDir, { recursive: true, force: true });
});

async function json(url: string, init: RequestInit = {}, token?: string): Promise<unknown> {
  const response = await node.fetch(url, init, token);
  const body = response.status === 204 ? undefined : await response.json();
  if (!response.ok) throw new Error(`${init.method ?? "GET"} ${url}: ${response.status} ${JSON.stringify(body)}`);
  return body;
}

function send(method: string, url: string, body?: unknown, token?: string): Promise<Response> {
  return node.fetch(url, { method, headers: body === undefined ? {} : { "content-type": "application/json" }, body: body === undefined ? undefined : JSON.stringify(body) }, token);
}

async function errorOf(response: Response): Promise<{ code: string; message: string }> {
  return ((await response.json()) as { error: { code: string; message: string } }).error;
}

async function ovsJson<T>(args: string[]): Promise<T> {
  const result = await node.ovs([...args, "--json"]);
  expectOk(result, args.join(" "));
  return JSON.parse(result.stdout) as T;
}

function expectFailure(result: ToolResult, pattern: RegExp, what: string): void {
  expect(result.exitCode, what).toBe(1);
  expect(result.stderr.trim(), what).toMatch(pattern);
  expect(result.stderr.trim().split("\n"), what).toHaveLength(1);
}

/** Everything a bad request must not change (the heartbeat moves on its own). */
async function snapshotOfModel(): Promise<string> {
  const routers = ((await json("/api/v1/storagerouters")) as { storageRouters: Array<Record<string, unknown>> }).storageRouters.map(({ lastHeartbeat: _time, alive: _alive, ...rest }) => rest);
  return JSON.stringify([await json("/api/v1/vpools"), await json("/api/v1/domains"), routers]);
}

/** Polls a task until it has finished (bounded). */
async function waitTask(id: string): Promise<Record<string, unknown>> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const task = (await json(`/api/v1/tasks/${id}`)) as Record<string, unknown>;
    if (["succeeded", "failed", "cancelled"].includes(task.state as string)) return task;
    if (Date.now() > deadline) throw new Error(`task ${id} still ${String(task.state)} after 60 s`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** A refused option (commander): exit 2, the reason on the first line of stderr. */
function expectUsageError(result: ToolResult, pattern: RegExp, what: string): void {
  expect(result.exitCode, what).toBe(2);
  expect(result.stderr.split("\n")[0], what).toMatch(pattern);
}

describe("registration", () => {
  it("registers the storage router with its address, ports and heartbeat, and a default vPool on its backend", async () => {
    const routers = await ovsJson<Array<Record<string, unknown>>>(["storagerouter", "list"]);
    expect(routers).toHaveLength(1);
    expect(routers[0]).toMatchObject({
      id: nodeId, name: nodeId, ip: "127.0.0.1", ports: { nbd: node.nbdPort, api: node.apiPort }, status: "online", alive: true,
      backend: { kind: "alba", backendId: backendName }, defaultVPool: "default", vpools: ["default"], domains: [], version: 1,
    });
    expect(Date.now() - Date.parse(routers[0]!.lastHeartbeat as string)).toBeLessThan(120_000);
    const show = await node.ovs(["storagerouter", "show", nodeId]);
    expectOk(show, "storagerouter show");
    expect(show.stdout).toMatch(/^status\s+online$/m);
    // `ovs node info`: the node the CLI talks to (GET /api/v1/node), as JSON or text.
    const nodeInfo = await ovsJson<{ nodeId: string; dataDir: string; nbd: { port: number }; api: { port: number }; asds: Array<{ index: number; asdId: string; port: number }>; readCache: { capacityBytes: number } }>(["node", "info"]);
    expect(nodeInfo).toMatchObject({ nodeId, dataDir, nbd: { port: node.nbdPort }, api: { port: node.apiPort }, readCache: { capacityBytes: 1 << 30 } });
    expect(nodeInfo.asds.map((asd) => asd.index)).toEqual([0, 1, 2, 3, 4, 5]);
    const nodeText = await node.ovs(["node", "info"]);
    expectOk(nodeText, "node info");
    expect(nodeText.stdout).toMatch(new RegExp(`^node {7}${nodeId} \\(openvstorage \\S+\\)\n`));
    expect(nodeText.stdout).toContain(`\ndata dir   ${dataDir}\n`);
    expect(nodeText.stdout).toContain(`\nNBD        nbd://127.0.0.1:${node.nbdPort}/<vdisk>\n`);
    expect(nodeText.stdout).toMatch(/\nread cache 1 ?Gi?B in \S+/);
    expect(nodeText.stdout.match(/^ASD \d/gm)).toHaveLength(6);
    const pool = await ovsJson<Record<string, unknown>>(["vpool", "show", "default"]);
    expect(pool).toMatchObject({
      name: "default", backend: { kind: "alba", backendId: backendName }, preset: "default", status: "running",
      settings: { scoSizeBytes: 8 << 20, tlogMultiplier: 8, scoCacheMaxBytes: 0, cacheMode: "cache-on-read" }, writeBufferBytes: 96 << 20,
      storageDrivers: [{ storageRouterId: nodeId, status: "running" }], vdiskCount: 0,
    });
  });

  it("creates vDisks in the default vPool with `ovs vdisk create` unchanged", async () => {
    expectOk(await node.ovs(["vdisk", "create", "plain", "--size", "64M"]), "create without --vpool");
    const list = await ovsJson<Array<Record<string, unknown>>>(["vdisk", "list"]);
    expect(list).toEqual([expect.objectContaining({ name: "plain", vpool: "default", storageRouterId: nodeId, state: "running", template: false })]);
    expect((await ovsJson<Record<string, unknown>>(["vpool", "show", "default"])).vdiskCount).toBe(1);
    const info = await node.ovs(["vdisk", "info", "plain"]);
    expectOk(info, "vdisk info");
    expect(info.stdout).toMatch(/^vPool\s+default$/m);
    // Not written: its open SCO has taken no buffer yet.
    expect(info.stdout).toMatch(/^SCO memory\s+0 B of SCO buffers/m);
    expect((await ovsJson<{ stats: { scoBufferBytes: number } }>(["vdisk", "info", "plain"])).stats.scoBufferBytes).toBe(0);
  });
});

describe("auth on every new resource", () => {
  const routes: Array<[string, string, unknown, "read" | "write" | "manage"]> = [
    ["GET", "/api/v1/storagerouters", undefined, "read"],
    ["GET", `/api/v1/storagerouters/${nodeId}`, undefined, "read"],
    ["POST", `/api/v1/storagerouters/${nodeId}/offline`, {}, "manage"],
    ["GET", "/api/v1/vpools", undefined, "read"],
    ["GET", "/api/v1/vpools/default", undefined, "read"],
    ["POST", "/api/v1/vpools", { name: "nope" }, "manage"],
    ["PATCH", "/api/v1/vpools/default", { cacheMode: "none" }, "manage"],
    ["POST", "/api/v1/vpools/default/extend", { storageRouter: nodeId }, "manage"],
    ["POST", "/api/v1/vpools/default/shrink", { storageRouter: nodeId }, "manage"],
    ["DELETE", "/api/v1/vpools/default", undefined, "manage"],
    ["GET", "/api/v1/vdisks?vpool=default", undefined, "read"],
    ["POST", "/api/v1/vdisks/plain/restart", {}, "write"],
    ["GET", "/api/v1/backends", undefined, "read"],
    ["GET", "/api/v1/domains", undefined, "read"],
    ["POST", "/api/v1/domains", { name: "nope" }, "manage"],
    ["DELETE", "/api/v1/domains/nope", undefined, "manage"],
    ["POST", "/api/v1/domains/nope/assign", { storageRouters: [nodeId] }, "manage"],
    ["POST", "/api/v1/domains/nope/unassign", { storageRouters: [nodeId] }, "manage"],
  ];

  it("answers 401 without a token and 403 without the role, changing nothing", async () => {
    const before = await snapshotOfModel();
    for (const [method, url, body, role] of routes) {
      const anonymous = await send(method, url, body, "");
      expect(anonymous.status, `${method} ${url} without a token`).toBe(401);
      expect((await errorOf(anonymous)).code).toBe("UNAUTHENTICATED");
      const bad = await send(method, url, body, "ovs_" + "C".repeat(43));
      expect(bad.status, `${method} ${url} with an unknown token`).toBe(401);
      if (role === "read") continue;
      const reader = await send(method, url, body, readerToken);
      expect(reader.status, `${method} ${url} as reader`).toBe(403);
      expect(await errorOf(reader)).toEqual({ code: "FORBIDDEN", message: `role ${role} required (user reader has read).` });
      if (role === "manage") {
        const writer = await send(method, url, body, writerToken);
        expect(writer.status, `${method} ${url} as writer`).toBe(403);
      }
    }
    expect(await snapshotOfModel()).toBe(before);
    // The reader can read them all.
    for (const [method, url, , role] of routes) if (role === "read") expect((await send(method, url, undefined, readerToken)).status, url).toBe(200);
  });

  it("refuses the CLI without a login in one sentence", async () => {
    const result = await node.ovs(["vpool", "list"], 60_000, { env: { OVS_TOKEN: "", XDG_CONFIG_HOME: path.join(dataDir, "no-config") } });
    expectFailure(result, /^ovs: not logged in: run `ovs login`\.$/, "vpool list without login");
  });
});

describe("bad input", () => {
  it("answers 400 with a stable code and one sentence, changing nothing", async () => {
    const before = await snapshotOfModel();
    const cases: Array<[string, string, unknown, RegExp]> = [
      ["POST", "/api/v1/vpools", { name: "bad name" }, /body\.name must match pattern/],
      ["POST", "/api/v1/vpools", { name: "p1", colour: "red" }, /unknown field "colour"/],
      ["POST", "/api/v1/vpools", { name: "p1", scoSize: "3K" }, /^the SCO size must be a multiple of 4 KiB from 1 MiB to 128 MiB\.$/],
      ["POST", "/api/v1/vpools", { name: "p1", scoSize: "lots" }, /"lots" is not a size/],
      ["POST", "/api/v1/vpools", { name: "p1", tlogMultiplier: 0 }, /tlogMultiplier must be >= 1/],
      ["POST", "/api/v1/vpools", { name: "p1", cacheMode: "fast" }, /^"fast" is not a cache mode: use cache-on-read, cache-on-write, none\.$/],
      ["POST", "/api/v1/vpools", { name: "p1", cacheMode: "write" }, /^"write" is not a cache mode: use cache-on-read, cache-on-write, none \("write" is now called cache-on-write\)\.$/],
      ["POST", "/api/v1/vdisks", { name: "v1", size: "8M", cacheMode: "fast" }, /^"fast" is not a cache mode: use cache-on-read, cache-on-write, none\.$/],
      ["POST", "/api/v1/vpools", { name: "p1", writeBuffer: "96M", tlogMultiplier: 3 }, /means a TLog multiplier of 8, not 3/],
      ["POST", "/api/v1/vpools", { name: "p1", storageRouters: [] }, /storageRouters must NOT have fewer than 1 items/],
      ["PATCH", "/api/v1/vpools/default", {}, /must NOT have fewer than 1 properties/],
      ["PATCH", "/api/v1/vpools/default", { version: 0 }, /body\.version must be >= 1/],
      ["POST", "/api/v1/vpools/default/extend", {}, /needs the field "storageRouter"/],
      ["DELETE", "/api/v1/vpools/default?version=x", undefined, /querystring\.version must be integer/],
      ["POST", "/api/v1/domains", { name: "" }, /body\.name must NOT have fewer than 1 characters/],
      ["POST", "/api/v1/domains", { name: "x".repeat(65) }, /must NOT have more than 64 characters/],
      ["POST", `/api/v1/storagerouters/${nodeId}/offline`, { version: "two" }, /body\.version must be integer/],
      ["POST", "/api/v1/vdisks/plain/restart", { force: "maybe" }, /body\.force must be boolean/],
      ["GET", "/api/v1/vdisks?sort=colour", undefined, /^cannot sort by "colour"/],
      ["GET", "/api/v1/vdisks?limit=5000", undefined, /querystring\.limit must be <= 1000/],
      ["POST", "/api/v1/vdisks", { name: "v1", size: "1M", vpool: "" }, /body\.vpool must NOT have fewer than 1 characters/],
    ];
    for (const [method, url, body, pattern] of cases) {
      const response = await send(method, url, body);
      expect(response.status, `${method} ${url} ${JSON.stringify(body)}`).toBe(400);
      const error = await errorOf(response);
      expect(error.code).toBe("INVALID_ARGUMENT");
      expect(error.message, `${method} ${url} ${JSON.stringify(body)}`).toMatch(pattern);
    }
    // A domain to assign to, then bad assignments.
    expect((await send("POST", "/api/v1/domains", { name: "d-bad" })).status).toBe(201);
    const domainBefore = await snapshotOfModel();
    for (const [body, pattern] of [
      [{}, /^name at least one storage router or ASD\.$/],
      [{ asds: ["xyz"] }, /^"xyz" is not an ASD id/],
      [{ storageRouters: Array.from({ length: 33 }, (_, i) => `r${i}`) }, /must NOT have more than 32 items/],
    ] as const) {
      const response = await send("POST", "/api/v1/domains/d-bad/assign", body);
      expect(response.status, JSON.stringify(body)).toBe(400);
      expect((await errorOf(response)).message).toMatch(pattern);
    }
    expect(await snapshotOfModel()).toBe(domainBefore);
    expect((await send("DELETE", "/api/v1/domains/d-bad")).status).toBe(204);
    expect(await snapshotOfModel()).toBe(before);
    // The CLI: one sentence and exit 1, nothing changed.
    expectFailure(await node.ovs(["vpool", "create", "p2", "--cache-mode", "fast"]), /^ovs: "fast" is not a cache mode/, "bad cache mode");
    expectUsageError(await node.ovs(["vpool", "create", "p2", "--sco-size", "1X"]), /^error: option '--sco-size <size>' argument '1X' is invalid\. "1X" is not a size/, "bad size");
    expectUsageError(await node.ovs(["vpool", "extend", "default", nodeId, "--expect-version", "zero"]), /a version is a whole number from 1/, "bad version");
    expectFailure(await node.ovs(["domain", "assign", "d-bad"]), /^ovs: name at least one --storagerouter ID or --asd ID\.$/, "assign nothing");
    expect(await snapshotOfModel()).toBe(before);
  });

  it("answers 404 for unknown names", async () => {
    for (const [method, url, body, message] of [
      ["GET", "/api/v1/storagerouters/nosuch", undefined, "there is no storage router named nosuch."],
      ["POST", "/api/v1/storagerouters/nosuch/offline", {}, "there is no storage router named nosuch."],
      ["GET", "/api/v1/vpools/nosuch", undefined, "there is no vPool named nosuch."],
      ["PATCH", "/api/v1/vpools/nosuch", { cacheMode: "none" }, "there is no vPool named nosuch."],
      ["DELETE", "/api/v1/vpools/nosuch", undefined, "there is no vPool named nosuch."],
      ["POST", "/api/v1/vpools/default/extend", { storageRouter: "nosuch" }, "there is no storage router named nosuch."],
      ["POST", "/api/v1/vpools/default/shrink", { storageRouter: "nosuch" }, "vPool default is not on storage router nosuch."],
      ["POST", "/api/v1/vpools", { name: "p3", preset: "nosuch" }, `backend ${backendName} has no preset named nosuch.`],
      ["POST", "/api/v1/vpools", { name: "p3", backend: "nosuch" }, "there is no backend named nosuch."],
      ["POST", "/api/v1/vdisks", { name: "v3", size: "8M", vpool: "nosuch" }, "there is no vPool named nosuch."],
      ["GET", "/api/v1/vdisks?vpool=nosuch", undefined, "there is no vPool named nosuch."],
      ["POST", "/api/v1/vdisks/nosuch/restart", {}, "there is no vDisk named nosuch."],
      ["GET", "/api/v1/backends/nosuch", undefined, "there is no backend named nosuch."],
      ["GET", "/api/v1/domains/nosuch", undefined, "there is no domain named nosuch."],
      ["DELETE", "/api/v1/domains/nosuch", undefined, "there is no domain named nosuch."],
      ["POST", "/api/v1/domains/nosuch/assign", { storageRouters: [nodeId] }, "there is no domain named nosuch."],
    ] as const) {
      const response = await send(method, url, body);
      expect(response.status, `${method} ${url}`).toBe(404);
      expect(await errorOf(response)).toEqual({ code: "NOT_FOUND", message });
    }
    expectFailure(await node.ovs(["vpool", "delete", "nosuch"]), /^ovs: there is no vPool named nosuch\.$/, "delete unknown vPool");
    expectFailure(await node.ovs(["backend", "show", "nosuch"]), /^ovs: there is no backend named nosuch\.$/, "show unknown backend");
  });
});

describe("vPools", () => {
  it("creates a vPool on a preset with its settings; its vDisks get them; delete and shrink wait until it is empty", async () => {
    expectOk(await node.ovs(["alba", "preset", "add", "fast", "--policies", "2,1,2,6"]), "add preset");
    const created = await ovsJson<Record<string, unknown>>(["vpool", "create", "fastpool", "--preset", "fast", "--sco-size", "8M", "--write-buffer", "96M", "--cache-mode", "none"]);
    expect(created).toMatchObject({ name: "fastpool", preset: "fast", backendName, settings: { scoSizeBytes: 8 << 20, tlogMultiplier: 8, cacheMode: "none" }, writeBufferBytes: 96 << 20, version: 1 });
    const again = await send("POST", "/api/v1/vpools", { name: "fastpool" });
    expect(again.status).toBe(409);
    expect(await errorOf(again)).toEqual({ code: "ALREADY_EXISTS", message: "a vPool named fastpool already exists." });

    expectOk(await node.ovs(["vdisk", "create", "fast1", "--size", "32M", "--vpool", "fastpool"]), "create in fastpool");
    const settings = await ovsJson<Record<string, unknown>>(["vdisk", "settings", "fast1"]);
    expect(settings).toMatchObject({ scoSizeBytes: 8 << 20, tlogMultiplier: 8 });
    // Per vDisk, at creation: its own SCO size and TLog multiplier over the vPool's; bad ones change nothing.
    expectOk(await node.ovs(["vdisk", "create", "fast2", "--size", "32M", "--vpool", "fastpool", "--sco-size", "2M", "--tlog-multiplier", "4"]), "create with its own SCO size");
    expect(await ovsJson<Record<string, unknown>>(["vdisk", "settings", "fast2"])).toMatchObject({ scoSizeBytes: 2 << 20, tlogMultiplier: 4 });
    expectOk(await runTool("qemu-io", ["-f", "raw", node.uri("fast2"), "-c", "write -P 0x3c 0 6M", "-c", "flush", "-c", "read -P 0x3c 0 6M"]), "qemu-io on fast2");
    expectFailure(await node.ovs(["vdisk", "create", "fast3", "--size", "32M", "--sco-size", "200M"]), /^ovs: the SCO size must be a multiple of the cluster size between 1 MiB and 128 MiB\.?$/, "SCO size too large");
    const badMultiplier = await send("POST", "/api/v1/vdisks", { name: "fast3", size: "32M", tlogMultiplier: 0 });
    expect(badMultiplier.status).toBe(400);
    expect((await errorOf(badMultiplier)).code).toBe("INVALID_ARGUMENT");
    expect((await send("GET", "/api/v1/vdisks/fast3")).status).toBe(404);
    expectOk(await node.ovs(["vdisk", "delete", "fast2"]), "delete fast2");
    const info = await ovsJson<{ namespace: string; vpool: string }>(["vdisk", "info", "fast1"]);
    expect(info.vpool).toBe("fastpool");
    const namespaces = await ovsJson<Array<{ name: string; presetName: string }>>(["alba", "namespace", "list"]);
    expect(namespaces.find((ns) => ns.name === info.namespace)?.presetName).toBe("fast");
    // Data written through NBD lands on the backend under that preset.
    expectOk(await runTool("qemu-io", ["-f", "raw", node.uri("fast1"), "-c", "write -P 0x5a 0 8M", "-c", "flush"]), "qemu-io write");
    expectOk(await runTool("qemu-io", ["-f", "raw", node.uri("fast1"), "-c", "read -P 0x5a 0 8M"]), "qemu-io read");

    const before = await snapshotOfModel();
    expectFailure(await node.ovs(["vpool", "delete", "fastpool"]), /^ovs: vPool fastpool has 1 vDisk \(fast1\); delete them first\.$/, "delete with vDisks");
    const shrink = await send("POST", "/api/v1/vpools/fastpool/shrink", { storageRouter: nodeId });
    expect(shrink.status).toBe(409);
    expect(await errorOf(shrink)).toEqual({ code: "IN_USE", message: `storage router ${nodeId} serves 1 vDisk of vPool fastpool (fast1); delete or move them first.` });
    expect(await snapshotOfModel()).toBe(before);

    expectOk(await node.ovs(["vdisk", "delete", "fast1"]), "delete the vDisk");
    expect((await ovsJson<Record<string, unknown>>(["vpool", "shrink", "fastpool", nodeId])).storageDrivers).toEqual([]);
    const notHere = await send("POST", "/api/v1/vdisks", { name: "fast2", size: "8M", vpool: "fastpool" });
    expect(notHere.status).toBe(409);
    expect(await errorOf(notHere)).toEqual({ code: "CONFLICT", message: `vPool fastpool is not on this storage router (${nodeId}); extend it first: ovs vpool extend fastpool ${nodeId}.` });
    const extended = await ovsJson<{ storageDrivers: unknown[]; version: number }>(["vpool", "extend", "fastpool", nodeId]);
    expect(extended.storageDrivers).toEqual([expect.objectContaining({ storageRouterId: nodeId, status: "running" })]);
    const twice = await send("POST", "/api/v1/vpools/fastpool/extend", { storageRouter: nodeId });
    expect(twice.status).toBe(409);
    expect((await errorOf(twice)).code).toBe("ALREADY_EXISTS");
    // A stale version is refused and the vPool stays.
    expectFailure(await node.ovs(["vpool", "delete", "fastpool", "--expect-version", "1"]), /^ovs: the vPool changed since version 1 \(it is at version \d+\); read it again and retry\.$/, "stale delete");
    expectOk(await node.ovs(["vpool", "delete", "fastpool", "--expect-version", String(extended.version)]), "delete");
    expect((await node.fetch("/api/v1/vpools/fastpool")).status).toBe(404);
    const list = await node.ovs(["vpool", "list"]);
    expect(list.stdout).not.toMatch(/fastpool/);
  });

  it("of two concurrent updates naming the same version, exactly one wins and the other gets 409 CONFLICT", async () => {
    const { version } = (await json("/api/v1/vpools/default")) as { version: number };
    for (let round = 0; round < 3; round++) {
      const current = ((await json("/api/v1/vpools/default")) as { version: number }).version;
      const modes = ["none", "cache-on-write"];
      const replies = await Promise.all(modes.map((cacheMode) => send("PATCH", "/api/v1/vpools/default", { version: current, cacheMode })));
      const statuses = replies.map((reply) => reply.status).sort();
      expect(statuses).toEqual([200, 409]);
      const loser = replies.find((reply) => reply.status === 409)!;
      expect((await errorOf(loser)).code).toBe("CONFLICT");
      const winner = (await replies.find((reply) => reply.status === 200)!.json()) as { version: number; settings: { cacheMode: string } };
      const after = (await json("/api/v1/vpools/default")) as { version: number; settings: { cacheMode: string } };
      expect(after.version).toBe(current + 1);
      expect(after.settings.cacheMode).toBe(winner.settings.cacheMode); // the winner's change, never overwritten
    }
    // The same through the CLI on a storage router: a stale version is refused.
    const router = (await json(`/api/v1/storagerouters/${nodeId}`)) as { version: number };
    expectFailure(await node.ovs(["storagerouter", "offline", nodeId, "--expect-version", String(router.version + 5)]), /^ovs: the storage router changed since version/, "stale offline");
    expect(((await json(`/api/v1/storagerouters/${nodeId}`)) as { status: string }).status).toBe("online");
    const stale = await node.ovs(["vpool", "set", "default", "--cache-mode", "cache-on-read", "--expect-version", String(version)]);
    expectFailure(stale, new RegExp(`^ovs: the vPool changed since version ${version} \\(it is at version ${version + 3}\\); read it again and retry\\.$`), "stale vpool set");
    expectFailure(await node.ovs(["vpool", "set", "default"]), /^ovs: give at least one setting to change/, "vpool set nothing");
    const restored = await ovsJson<{ version: number; settings: { cacheMode: string } }>(["vpool", "set", "default", "--cache-mode", "cache-on-read", "--expect-version", String(version + 3)]);
    expect(restored).toMatchObject({ version: version + 4, settings: { cacheMode: "cache-on-read" } });
  });
});

describe("vDisks", () => {
  it("refuses a settings change or resize based on a stale version (409, nothing changed), through the API and the CLI", async () => {
    expectOk(await node.ovs(["vdisk", "create", "ver1", "--size", "16M"]), "create ver1");
    const first = await ovsJson<{ version: number; qos: { writeIops: number } }>(["vdisk", "settings", "ver1"]);
    expect(first.version).toBe(0);
    // Two clients read version 0; the first change lands, the second (still based on 0) is refused.
    const landed = await send("PATCH", "/api/v1/vdisks/ver1/settings", { qos: { writeIops: 100 }, version: 0 });
    expect(landed.status).toBe(200);
    expect(await landed.json()).toMatchObject({ version: 1, qos: { writeIops: 100 } });
    const stale = await send("PATCH", "/api/v1/vdisks/ver1/settings", { qos: { writeIops: 500 }, version: 0 });
    expect(stale.status).toBe(409);
    expect(await errorOf(stale)).toEqual({ code: "CONFLICT", message: "vDisk ver1 changed since version 0 (it is at version 1); read it again and retry." });
    expect(await ovsJson<{ version: number; qos: { writeIops: number } }>(["vdisk", "settings", "ver1"])).toMatchObject({ version: 1, qos: { writeIops: 100 } });
    expectFailure(await node.ovs(["vdisk", "set", "ver1", "scoCacheMax=64M", "--expect-version", "0"]), /^ovs: vDisk ver1 changed since version 0 \(it is at version 1\); read it again and retry\.$/, "stale set");
    expectFailure(await node.ovs(["vdisk", "resize", "ver1", "--size", "32M", "--expect-version", "7"]), /^ovs: vDisk ver1 changed since version 7 \(it is at version 1\); read it again and retry\.$/, "stale resize");
    expect(await ovsJson<{ sizeBytes: number; version: number }>(["vdisk", "info", "ver1"])).toMatchObject({ sizeBytes: 16 << 20, version: 1 });
    const badVersion = await node.ovs(["vdisk", "resize", "ver1", "--size", "32M", "--expect-version", "x"]);
    expect(badVersion.exitCode, "bad version").not.toBe(0);
    expect(badVersion.stderr.trim()).toMatch(/--expect-version.*a version is a whole number/);
    // Based on the current version, or without one (last writer wins): applied, the version moves on.
    expect(await ovsJson<{ sizeBytes: number; version: number }>(["vdisk", "resize", "ver1", "--size", "32M", "--expect-version", "1"])).toMatchObject({ sizeBytes: 32 << 20, version: 2 });
    expect(await ovsJson<{ version: number; scoCacheMaxBytes: number }>(["vdisk", "set", "ver1", "scoCacheMax=64M"])).toMatchObject({ version: 3, scoCacheMaxBytes: 64 << 20 });
    expectOk(await node.ovs(["vdisk", "delete", "ver1"]), "delete ver1");
  });

  it("lists the cluster's vDisks with filter, sort and paging, through the API and the CLI", async () => {
    expectOk(await node.ovs(["vpool", "create", "listpool"]), "create listpool");
    for (const [name, size, vpool] of [["la", "10M", "listpool"], ["lb", "30M", "listpool"], ["lc", "20M", "listpool"], ["other", "5M", "default"]] as const) {
      expectOk(await node.ovs(["vdisk", "create", name, "--size", size, "--vpool", vpool]), `create ${name}`);
    }
    const page = (await json("/api/v1/vdisks?vpool=listpool&sort=-size&limit=2")) as { vdisks: Array<{ name: string; vpool: string }>; total: number; offset: number; limit: number };
    expect(page.vdisks.map((v) => v.name)).toEqual(["lb", "lc"]);
    expect(page).toMatchObject({ total: 3, offset: 0, limit: 2 });
    expect(((await json("/api/v1/vdisks?vpool=listpool&sort=-size&limit=2&offset=2")) as { vdisks: Array<{ name: string }> }).vdisks.map((v) => v.name)).toEqual(["la"]);
    expect(((await json("/api/v1/vdisks?name=l&sort=name")) as { vdisks: Array<{ name: string }>; total: number }).total).toBe(3);
    expect(((await json("/api/v1/vdisks?sort=created")) as { vdisks: Array<{ name: string }> }).vdisks.map((v) => v.name)).toEqual(["plain", "la", "lb", "lc", "other"]);
    expect((await json("/api/v1/vdisks?template=true")) as { total: number }).toMatchObject({ total: 0 });
    expectOk(await node.ovs(["vdisk", "template", "la"]), "template");
    expect(((await json("/api/v1/vdisks?template=true")) as { vdisks: Array<{ name: string; vpool: string }> }).vdisks).toEqual([expect.objectContaining({ name: "la", vpool: "listpool", template: true })]);
    const cli = await ovsJson<Array<{ name: string; stats: { writes: number } }>>(["vdisk", "list", "--vpool", "listpool", "--sort", "-size", "--limit", "2"]);
    expect(cli.map((v) => v.name)).toEqual(["lb", "lc"]);
    expect(cli[0]!.stats).toMatchObject({ writes: 0 }); // live statistics of this node's vDisks
    const table = await node.ovs(["vdisk", "list", "--vpool", "listpool", "--limit", "1"]);
    expectOk(table, "vdisk list table");
    expect(table.stdout).toMatch(/^NAME\s+SIZE\s+CONNECTIONS\s+NAMESPACE\s+VPOOL\s+STORAGE ROUTER\s+STATE\n/);
    expect(table.stdout).toMatch(/^la\s+10 MiB\s+0\s+vdisk-\S+\s+listpool\s+sr-test\s+running$/m);
    expect(table.stderr).toMatch(/^showing 1 to 1 of 3 vDisks; the next ones with --after [A-Za-z0-9_-]+\n$/);
    expectFailure(await node.ovs(["vdisk", "list", "--sort", "colour"]), /^ovs: cannot sort by "colour"/, "bad sort");

    // Cursor paging: `next` names the last vDisk of the page; the next page starts after it even when a
    // vDisk was created meanwhile before it (where offset paging would show one twice).
    type Page = { vdisks: Array<{ name: string }>; total: number; offset: number; limit: number; next: string | null };
    const first = (await json("/api/v1/vdisks?vpool=listpool&sort=-size&limit=2")) as Page;
    expect(first).toMatchObject({ total: 3, offset: 0, limit: 2 });
    expect(first.next).toMatch(/^[A-Za-z0-9_-]+$/);
    expectOk(await node.ovs(["vdisk", "create", "lz", "--size", "25M", "--vpool", "listpool"]), "create lz");
    const second = (await json(`/api/v1/vdisks?vpool=listpool&sort=-size&limit=2&after=${first.next!}`)) as Page;
    expect(second).toMatchObject({ vdisks: [expect.objectContaining({ name: "la" })], total: 4, offset: 3, next: null });
    expect(((await json("/api/v1/vdisks?vpool=listpool&sort=-size&limit=2&offset=2")) as Page).vdisks.map((v) => v.name)).toEqual(["lc", "la"]);
    const byName = (await json("/api/v1/vdisks?sort=name&limit=2")) as Page;
    const names: string[] = byName.vdisks.map((v) => v.name);
    for (let next = byName.next, pages = 0; next !== null && pages < 10; pages++) {
      const page = (await json(`/api/v1/vdisks?sort=name&limit=2&after=${next}`)) as Page;
      names.push(...page.vdisks.map((v) => v.name));
      next = page.next;
    }
    expect(names).toEqual(["la", "lb", "lc", "lz", "other", "plain"]);
    const cliPage = await node.ovs(["vdisk", "list", "--vpool", "listpool", "--sort", "-size", "--limit", "3"]);
    expectOk(cliPage, "vdisk list page 1");
    const cursor = /--after (\S+)\n$/.exec(cliPage.stderr)?.[1];
    expect(cursor, cliPage.stderr).toBeDefined();
    const rest = await ovsJson<Array<{ name: string }>>(["vdisk", "list", "--vpool", "listpool", "--sort", "-size", "--limit", "3", "--after", cursor!]);
    expect(rest.map((v) => v.name)).toEqual(["la"]);
    const namesOf = async (): Promise<string> => JSON.stringify(((await json("/api/v1/vdisks")) as Page).vdisks.map((v) => v.name));
    const before = await namesOf();
    for (const [query, pattern] of [
      [`sort=name&after=${byName.next!}&offset=1`, /^page with offset or with after \(a cursor\), not both\.$/],
      ["after=bm90IGEgY3Vyc29y", /^"bm90IGEgY3Vyc29y" is not a cursor of the vDisk list: pass the "next" of a previous page as after\.$/],
      ["after=%2B%2F%3D", /is not a cursor of the vDisk list/],
      [`sort=-size&after=${byName.next!}`, /^the cursor was made for sort=name, not sort=-size: page with the sort it was made for\.$/],
      [`after=${"A".repeat(600)}`, /querystring\.after must NOT have more than 512 characters/],
    ] as const) {
      const response = await send("GET", `/api/v1/vdisks?${query}`);
      expect(response.status, query).toBe(400);
      const error = await errorOf(response);
      expect(error.code).toBe("INVALID_ARGUMENT");
      expect(error.message, query).toMatch(pattern);
    }
    expect(await namesOf()).toBe(before);
    expectFailure(await node.ovs(["vdisk", "list", "--after", "junk!"]), /^ovs: "junk!" is not a cursor of the vDisk list/, "bad cursor");
    const doc = (await json("/api/openapi.json")) as { paths: Record<string, { get: { parameters: Array<{ name: string; in: string }>; responses: Record<string, { content: Record<string, { schema: { properties: Record<string, unknown> } }> }> } }> };
    const list = doc.paths["/api/v1/vdisks"]!.get;
    expect(list.parameters.filter((p) => p.in === "query").map((p) => p.name)).toEqual(expect.arrayContaining(["after", "offset", "limit", "sort"]));
    expect(Object.keys(list.responses["200"]!.content["application/json"]!.schema.properties)).toEqual(["vdisks", "total", "offset", "limit", "next"]);
    expectOk(await node.ovs(["vdisk", "delete", "lz"]), "delete lz");
    expectFailure(await node.ovs(["vpool", "delete", "listpool"]), /has 3 vDisks \(la, lb, lc\)/, "delete a vPool with vDisks");
    for (const name of ["la", "lb", "lc", "other"]) expectOk(await node.ovs(["vdisk", "delete", name]), `delete ${name}`);
    expectOk(await node.ovs(["vpool", "delete", "listpool"]), "delete listpool");
  });

  it("restarts a vDisk as a task, keeping its data; refused at once while a client is connected unless forced", async () => {
    expectOk(await runTool("qemu-io", ["-f", "raw", node.uri("plain"), "-c", "write -P 0x3c 1M 2M", "-c", "flush"]), "write");
    // qemu-io has exited; the server notices its disconnect a moment later (a restart is refused while a client is connected).
    for (let i = 0; i < 100 && ((await json("/api/v1/vdisks/plain")) as { connectionCount: number }).connectionCount > 0; i++) await new Promise((resolve) => setTimeout(resolve, 100));
    // The API: 202 with the task and its Location; the task ends succeeded with the vDisk as its result.
    const started = await send("POST", "/api/v1/vdisks/plain/restart", {}, writerToken);
    expect(started.status, JSON.stringify(await started.clone().json())).toBe(202);
    const queued = (await started.json()) as { id: string; kind: string; target: string; node: string; state: string; progress: { total: number; unit: string }; startedBy: string };
    expect(queued).toMatchObject({ kind: "vdisk.restart", target: "plain", node: nodeId, progress: { total: 3, unit: "steps" }, startedBy: "user:writer" });
    expect(started.headers.get("location")).toBe(`/api/v1/tasks/${queued.id}`);
    const finished = await waitTask(queued.id);
    expect(finished).toMatchObject({ state: "succeeded", progress: { done: 3, total: 3 }, result: { name: "plain", state: "running" } });
    // The CLI follows the task: progress lines on stderr, one line on stdout; --json prints the final task.
    const text = await node.ovs(["vdisk", "restart", "plain"]);
    expectOk(text, "vdisk restart");
    expect(text.stdout).toBe("restarted vDisk plain (running)\n");
    expect(text.stderr).toMatch(/^task [0-9a-f-]{36} vdisk\.restart plain: (queued|running|succeeded), \d\/3 steps/);
    expect(text.stderr.trim().split("\n").at(-1)).toMatch(/^task [0-9a-f-]{36} vdisk\.restart plain: succeeded, 3\/3 steps/);
    const restarted = await ovsJson<{ kind: string; state: string; result: { name: string; state: string } }>(["vdisk", "restart", "plain"]);
    expect(restarted).toMatchObject({ kind: "vdisk.restart", state: "succeeded", result: { name: "plain", state: "running" } });
    expectOk(await runTool("qemu-io", ["-f", "raw", node.uri("plain"), "-c", "read -P 0x3c 1M 2M", "-c", "read -P 0 0 1M"]), "read back after the restart");
    const restartTasks = async (): Promise<number> => ((await json("/api/v1/tasks?kind=vdisk.restart&limit=1000")) as { tasks: unknown[] }).tasks.length;
    const before = await restartTasks();
    const client = await RawClient.connect(node.nbdPort);
    try {
      await client.go("plain");
      const refused = await send("POST", "/api/v1/vdisks/plain/restart", {}, writerToken);
      expect(refused.status).toBe(409);
      expect(await errorOf(refused)).toEqual({ code: "IN_USE", message: "vDisk plain has 1 NBD client connected; disconnect it or restart with --force." });
      expectFailure(await node.ovs(["vdisk", "restart", "plain"]), /^ovs: vDisk plain has 1 NBD client connected; disconnect it or restart with --force\.$/, "restart while connected");
      expect(await restartTasks()).toBe(before); // refused before any task existed
      const forced = await node.ovs(["vdisk", "restart", "plain", "--force"]);
      expectOk(forced, "forced restart");
      expect(forced.stdout).toBe("restarted vDisk plain (running)\n");
      expect(await client.waitClosed()).toBe(true);
    } finally {
      client.close();
    }
    expect(await restartTasks()).toBe(before + 1);
    expectOk(await runTool("qemu-io", ["-f", "raw", node.uri("plain"), "-c", "read -P 0x3c 1M 2M"]), "read back after the forced restart");
    const noWait = await node.ovs(["vdisk", "restart", "plain", "--no-wait"]);
    expectOk(noWait, "restart --no-wait");
    const id = /^started task ([0-9a-f-]{36}) \(vdisk\.restart\); follow it with: ovs task wait \1\n$/.exec(noWait.stdout)?.[1];
    expect(id, noWait.stdout).toBeDefined();
    expect(await waitTask(id!)).toMatchObject({ state: "succeeded" });
    // The OpenAPI document says what the route answers.
    const doc = (await json("/api/openapi.json")) as { paths: Record<string, Record<string, { summary: string; responses: Record<string, unknown>; "x-ovs-role": string }>> };
    const restart = doc.paths["/api/v1/vdisks/{name}/restart"]!.post!;
    expect(restart["x-ovs-role"]).toBe("write");
    expect(restart.summary).toMatch(/as a task: 202/);
    expect(Object.keys(restart.responses)).toEqual(expect.arrayContaining(["202", "default"]));
  });
});

describe("backends and domains", () => {
  it("shows the backend's usage, presets with the safety of each policy, ASD nodes and ASDs", async () => {
    const list = await ovsJson<Array<Record<string, unknown>>>(["backend", "list"]);
    expect(list).toEqual([{ name: backendName, kind: "alba", storageRouters: [nodeId], vpools: ["default"] }]);
    const backend = await ovsJson<{
      usage: { capacityBytes: number; usedBytes: number; freeBytes: number };
      presets: Array<{ name: string; isDefault: boolean; policies: Array<Record<string, unknown>> }>;
      asdNodes: Array<Record<string, unknown>>;
      asds: Array<{ asdId: string; domain: string | null }>;
    }>(["backend", "show", backendName]);
    expect(backend.usage.capacityBytes).toBeGreaterThanOrEqual(6 * 250 * 1024 * 1024);
    expect(backend.usage.capacityBytes).toBeLessThanOrEqual(6 * 256 * 1024 * 1024);
    expect(backend.usage.usedBytes).toBeGreaterThanOrEqual(0);
    expect(backend.usage.freeBytes).toBe(backend.usage.capacityBytes - backend.usage.usedBytes);
    const preset = backend.presets.find((p) => p.name === "default")!;
    expect(preset.isDefault).toBe(true);
    expect(preset.policies).toEqual([
      { k: 4, m: 2, c: 5, x: 6, satisfiable: true, fragmentsPlaced: 6, asdFailuresTolerated: 2, nodeFailuresTolerated: 0, domainFailuresTolerated: null },
      { k: 2, m: 2, c: 3, x: 6, satisfiable: true, fragmentsPlaced: 4, asdFailuresTolerated: 2, nodeFailuresTolerated: 0, domainFailuresTolerated: null },
    ]);
    expect(backend.asdNodes).toEqual([expect.objectContaining({ nodeId, asdCount: 6 })]);
    expect(backend.asds.map((asd) => asd.asdId).sort()).toEqual([...asdIds].sort());
    const text = await node.ovs(["backend", "show", backendName]);
    expectOk(text, "backend show");
    expect(text.stdout).toMatch(/^\(4,2,5,6\)\s+yes\s+6\s+2\s+0\s+-$/m);
  });

  it("creates domains, assigns storage routers and ASDs (safety per domain follows), refuses deleting one in use", async () => {
    expectOk(await node.ovs(["domain", "create", "room-a"]), "create room-a");
    expectOk(await node.ovs(["domain", "create", "room-b"]), "create room-b");
    const dup = await send("POST", "/api/v1/domains", { name: "room-a" });
    expect(dup.status).toBe(409);
    expect(await errorOf(dup)).toEqual({ code: "ALREADY_EXISTS", message: "a domain named room-a already exists." });
    const assigned = await ovsJson<{ storageRouters: string[]; asds: string[]; version: number }>(["domain", "assign", "room-a", "--storagerouter", nodeId, ...asdIds.slice(0, 3).flatMap((id) => ["--asd", id])]);
    expect(assigned).toMatchObject({ storageRouters: [nodeId], version: 2 });
    expect(assigned.asds.sort()).toEqual(asdIds.slice(0, 3).sort());
    expectOk(await node.ovs(["domain", "assign", "room-b", ...asdIds.slice(3).flatMap((id) => ["--asd", id])]), "assign room-b");
    const unknownAsd = await send("POST", "/api/v1/domains/room-b/assign", { asds: ["0".repeat(32)] });
    expect(unknownAsd.status).toBe(404);
    expect((await json(`/api/v1/storagerouters/${nodeId}`)) as { domains: string[] }).toMatchObject({ domains: ["room-a"] });
    // Two rooms of 3 ASDs on one node: losing a room loses 3 fragments, more than the 2 spare ones.
    const backend = (await json(`/api/v1/backends/${backendName}`)) as { presets: Array<{ name: string; policies: Array<{ domainFailuresTolerated: number | null }> }>; asds: Array<{ asdId: string; domain: string | null }> };
    expect(backend.presets.find((p) => p.name === "default")!.policies.map((p) => p.domainFailuresTolerated)).toEqual([0, 0]);
    expect(backend.asds.find((asd) => asd.asdId === asdIds[0])!.domain).toBe("room-a");
    // Moving an ASD to another domain.
    expectOk(await node.ovs(["domain", "assign", "room-b", "--asd", asdIds[0]!]), "move an ASD");
    expect(((await json("/api/v1/domains/room-a")) as { asds: string[] }).asds).toHaveLength(2);
    // `ovs domain show`: the domain as GET /api/v1/domains/{name} has it, as text or JSON.
    const roomAView = (await json("/api/v1/domains/room-a")) as { name: string; storageRouters: string[]; asds: string[]; version: number; createdAt: string };
    expect(await ovsJson(["domain", "show", "room-a"])).toEqual(roomAView);
    const shownDomain = await node.ovs(["domain", "show", "room-a"]);
    expectOk(shownDomain, "domain show");
    expect(shownDomain.stdout).toBe(
      `name            room-a\nstorage routers ${nodeId}\nASDs            ${roomAView.asds.join(", ")}\ncreated         ${roomAView.createdAt}\nversion         ${roomAView.version}\n`,
    );
    expectFailure(await node.ovs(["domain", "show", "room-z"]), /^ovs: there is no domain named room-z\.$/, "show an unknown domain");

    // Concurrent assignments naming the same domain version: exactly one wins.
    const { version } = (await json("/api/v1/domains/room-b")) as { version: number };
    const replies = await Promise.all([asdIds[1]!, asdIds[2]!].map((asd) => send("POST", "/api/v1/domains/room-b/assign", { asds: [asd], version })));
    expect(replies.map((reply) => reply.status).sort()).toEqual([200, 409]);
    expect((await errorOf(replies.find((reply) => reply.status === 409)!)).code).toBe("CONFLICT");
    expect(((await json("/api/v1/domains/room-a")) as { asds: string[] }).asds).toHaveLength(1);

    const inUse = await send("DELETE", "/api/v1/domains/room-a");
    expect(inUse.status).toBe(409);
    expect((await errorOf(inUse)).code).toBe("IN_USE");
    expectFailure(await node.ovs(["domain", "delete", "room-b"]), /^ovs: domain room-b is assigned to ASD /, "delete in use");
    const notIn = await send("POST", "/api/v1/domains/room-b/unassign", { storageRouters: [nodeId] });
    expect(notIn.status).toBe(400);
    expect((await errorOf(notIn)).message).toBe(`storage router ${nodeId} is not in domain room-b.`);
    const roomA = (await json("/api/v1/domains/room-a")) as { asds: string[] };
    expectOk(await node.ovs(["domain", "assign", "room-a", "--unassign", "--storagerouter", nodeId, ...roomA.asds.flatMap((id) => ["--asd", id])]), "unassign room-a");
    const roomB = (await json("/api/v1/domains/room-b")) as { asds: string[]; version: number };
    expectFailure(await node.ovs(["domain", "delete", "room-a", "--expect-version", "1"]), /^ovs: the domain changed since version 1/, "stale domain delete");
    expectOk(await node.ovs(["domain", "delete", "room-a"]), "delete room-a");
    expectOk(await node.ovs(["domain", "assign", "room-b", "--unassign", ...roomB.asds.flatMap((id) => ["--asd", id])]), "unassign room-b");
    expectOk(await node.ovs(["domain", "delete", "room-b"]), "delete room-b");
    expect(await ovsJson<unknown[]>(["domain", "list"])).toEqual([]);
  });
});

describe("audit and restart", () => {
  it("writes an audit entry for every change, with its outcome", async () => {
    const lines = fs.readFileSync(path.join(dataDir, "audit.log"), "utf8").trim().split("\n").map((line) => JSON.parse(line) as { method: string; route: string; status: number; subject: string });
    for (const [method, route, status] of [
      ["POST", "/api/v1/vpools", 201], ["DELETE", "/api/v1/vpools/:name", 204], ["DELETE", "/api/v1/vpools/:name", 409], ["PATCH", "/api/v1/vpools/:name", 200],
      ["PATCH", "/api/v1/vpools/:name", 409], ["POST", "/api/v1/vpools/:name/extend", 200], ["POST", "/api/v1/vpools/:name/shrink", 200], ["POST", "/api/v1/vdisks/:name/restart", 202], ["POST", "/api/v1/vdisks/:name/restart", 409],
      ["POST", "/api/v1/domains", 201], ["POST", "/api/v1/domains/:name/assign", 200], ["DELETE", "/api/v1/domains/:name", 204], ["POST", "/api/v1/vpools", 403],
    ] as const) {
      expect(lines.some((line) => line.method === method && line.route === route && line.status === status), `${method} ${route} ${status}`).toBe(true);
    }
    expect(lines.find((line) => line.route === "/api/v1/vpools" && line.status === 403)!.subject).toBe("user:reader");
  });

  it("marks a storage router offline; the node marks itself online when it starts again, keeping its vDisks", async () => {
    const offline = await node.ovs(["storagerouter", "offline", nodeId]);
    expectOk(offline, "offline");
    expect(offline.stdout).toBe(`storage router ${nodeId} is marked offline\n`);
    expect((await ovsJson<{ status: string }>(["storagerouter", "show", nodeId])).status).toBe("offline");
    const ports = { nbd: node.nbdPort, api: node.apiPort };
    expect(await node.stop()).toBe(0);
    node = await RunningNode.start(dataDir, ports, ["--node-id", nodeId, "--asd-capacity", "256M"]);
    const router = await ovsJson<{ status: string; alive: boolean; vpools: string[]; vdiskCount: number }>(["storagerouter", "show", nodeId]);
    expect(router).toMatchObject({ status: "online", alive: true, vpools: ["default"], vdiskCount: 1 });
    expect((await ovsJson<Array<{ name: string; vpool: string; state: string }>>(["vdisk", "list"]))).toEqual([expect.objectContaining({ name: "plain", vpool: "default", state: "running" })]);
    expect(await ovsJson<unknown[]>(["vpool", "list"])).toHaveLength(1);
  });
});
