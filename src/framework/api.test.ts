// The REST API in-process on real components (embedded store, local backend, vDisk service) with a
// controllable clock: every route — including one added later by another plugin without declaring a
// role — is protected by default; the OpenAPI document lists every route with its role and is
// structurally valid; validation errors name the field.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { FastifyInstance } from "fastify";
import { Type } from "@sinclair/typebox";
import { EmbeddedStore } from "../store/index.js";
import { LocalBackend } from "../backend/index.js";
import { silentLogger } from "../base/index.js";
import { VDiskService } from "./vdisk-service.js";
import { AuthService } from "./auth/auth-service.js";
import { buildApi } from "./api.js";
import { NodeMetrics } from "./metrics/metrics.js";
import { ManagementModel } from "./model/model-service.js";

let dir: string;
let store: EmbeddedStore;
let backend: LocalBackend;
let vdisks: VDiskService;
let app: FastifyInstance;
let nowMs = Date.UTC(2026, 10, 26);
const tokens: Record<string, string> = {};

beforeAll(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), "ovs-api-unit-"));
  store = await EmbeddedStore.open({ dir: path.join(dir, "store") });
  backend = await LocalBackend.open({ dir: path.join(dir, "backend") });
  const log = silentLogger();
  vdisks = new VDiskService({ dataDir: dir, nodeId: "n1", store, backend, log });
  await vdisks.start();
  const auth = new AuthService({ store, log, now: () => nowMs });
  await auth.bootstrap("admin password");
  await auth.createUser("reader", "reader password", "read");
  await auth.createUser("writer", "writer password", "write");
  const model = new ManagementModel({ store, vdisks, nodeId: "n1", log });
  await model.registerNode({ name: "n1", ip: "127.0.0.1", ports: { nbd: 1, api: 2 } });
  app = await buildApi({ vdisks, store, backend, auth, model, metrics: new NodeMetrics({ nodeId: "n1", processMetrics: false }), log, now: () => nowMs, nodeInfo: () => ({ version: "t", nodeId: "n1", dataDir: dir, store: "s", backend: "b", nbd: { host: "127.0.0.1", port: 1 }, api: { host: "h", port: 2 }, asds: [] }) });
  // Another component's plugin, registered after buildApi with no auth configuration at all.
  await app.register(async (plugin) => {
    plugin.get("/api/v1/later", { schema: { summary: "a route added later" } }, async () => ({ ok: true }));
    plugin.post("/api/v1/later", { schema: { summary: "a change added later", body: Type.Object({ n: Type.Integer() }) } }, async () => ({ ok: true }));
  });
  await app.ready();
  for (const user of ["admin", "reader", "writer"]) tokens[user] = (await auth.issueForPassword(user, `${user} password`)).access_token;
});

afterAll(async () => {
  await app?.close();
  await vdisks?.stop();
  await backend?.close();
  await store?.close();
  await fsp.rm(dir, { recursive: true, force: true });
});

function as(user: string | undefined): Record<string, string> {
  return user === undefined ? {} : { authorization: `Bearer ${tokens[user]}` };
}

describe("every route is protected by default", () => {
  it("answers 401 without a token on every route but the public ones", async () => {
    const publicRoutes = app.ovsRoutes.filter((r) => r.access === "public").map((r) => `${r.method} ${r.url}`);
    expect(publicRoutes.sort()).toEqual(["GET /api/v1/health/live", "HEAD /api/v1/health/live", "POST /api/v1/oauth/token"]);
    for (const route of app.ovsRoutes.filter((r) => r.access !== "public")) {
      const url = route.url.replace(/:(\w+)/g, "x");
      const response = await app.inject({ method: route.method as "GET", url, payload: route.method === "GET" || route.method === "HEAD" ? undefined : {} });
      expect(response.statusCode, `${route.method} ${route.url}`).toBe(401);
    }
  });

  it("applies the method defaults to a route that declares nothing", async () => {
    expect((await app.inject({ method: "GET", url: "/api/v1/later", headers: as("reader") })).statusCode).toBe(200);
    const refused = await app.inject({ method: "POST", url: "/api/v1/later", headers: as("reader"), payload: { n: 1 } });
    expect(refused.statusCode).toBe(403);
    expect(refused.json()).toEqual({ error: { code: "FORBIDDEN", message: "role write required (user reader has read)." } });
    expect((await app.inject({ method: "POST", url: "/api/v1/later", headers: as("writer"), payload: { n: 1 } })).statusCode).toBe(200);
    // Authentication comes before validation: no token → 401 even for a bad body.
    expect((await app.inject({ method: "POST", url: "/api/v1/later", payload: { n: "x" } })).statusCode).toBe(401);
  });

  it("expires tokens by the clock", async () => {
    const auth = new AuthService({ store, log: silentLogger(), now: () => nowMs });
    const token = (await auth.issueForPassword("reader", "reader password")).access_token;
    const headers = { authorization: `Bearer ${token}` };
    expect((await app.inject({ method: "GET", url: "/api/v1/vdisks", headers })).statusCode).toBe(200);
    nowMs += 12 * 3600 * 1000;
    const expired = await app.inject({ method: "GET", url: "/api/v1/vdisks", headers });
    expect(expired.statusCode).toBe(401);
    expect(expired.json().error.message).toBe("the bearer token has expired.");
    nowMs -= 12 * 3600 * 1000;
  });
});

describe("validation", () => {
  it("answers 400 naming the field and creates nothing", async () => {
    for (const [payload, message] of [
      [{ name: "a" }, 'invalid request: body needs the field "size".'],
      [{ name: "a", size: "1M", colour: "red" }, 'invalid request: body has an unknown field "colour".'],
      [{ name: "", size: "1M" }, "invalid request: body.name must NOT have fewer than 1 characters."],
    ] as const) {
      const response = await app.inject({ method: "POST", url: "/api/v1/vdisks", headers: as("writer"), payload });
      expect(response.statusCode).toBe(400);
      expect(response.json()).toEqual({ error: { code: "INVALID_ARGUMENT", message } });
    }
    const query = await app.inject({ method: "DELETE", url: "/api/v1/vdisks/x?force=maybe", headers: as("writer") });
    expect(query.json().error.message).toBe("invalid request: querystring.force must be boolean.");
    expect(vdisks.list()).toEqual([]);
    for (const [url, message] of [
      ["/api/v1/vdisks?sort=colour", 'cannot sort by "colour": use name, size or created, with a leading - for descending order.'],
      ["/api/v1/vdisks?limit=0", "invalid request: querystring.limit must be >= 1."],
      ["/api/v1/vdisks?page=2", 'invalid request: querystring has an unknown field "page".'],
    ] as const) {
      const response = await app.inject({ method: "GET", url, headers: as("reader") });
      expect(response.statusCode, url).toBe(400);
      expect(response.json()).toEqual({ error: { code: "INVALID_ARGUMENT", message } });
    }
  });
});

describe("vDisk settings", () => {
  it("reads with the read role, changes with the write role, parses sizes and refuses bad bodies whole", async () => {
    await vdisks.create("settings1", 16 * 1024 * 1024);
    try {
      const url = "/api/v1/vdisks/settings1/settings";
      const read = await app.inject({ method: "GET", url, headers: as("reader") });
      expect(read.statusCode).toBe(200);
      expect(read.json()).toMatchObject({ qos: { writeIops: 0 }, scoCacheMaxBytes: 0, scoSizeBytes: 4194304, tlogMultiplier: 16 });
      expect((await app.inject({ method: "PATCH", url, headers: as("reader"), payload: { qos: { writeIops: 1 } } })).statusCode).toBe(403);
      const changed = await app.inject({ method: "PATCH", url, headers: as("writer"), payload: { qos: { writeIops: 300, readBytesPerSecond: "50M/s", totalBytesPerSecond: 1048576 }, scoCacheMax: "64M", cache: { mode: "cache-on-write", quota: "512M" } } });
      expect(changed.statusCode).toBe(200);
      const expected = {
        qos: { readIops: 0, writeIops: 300, totalIops: 0, readBytesPerSecond: 52428800, writeBytesPerSecond: 0, totalBytesPerSecond: 1048576 }, scoCacheMaxBytes: 67108864,
        cache: { mode: "cache-on-write", quotaBytes: 536870912 }, scoSizeBytes: 4194304, tlogMultiplier: 16, version: 1,
      };
      expect(changed.json()).toEqual(expected);
      for (const [payload, message] of [
        [{ qos: { writeIops: 1, colour: 2 } }, 'invalid request: body.qos has an unknown field "colour".'],
        [{ qos: { readIops: 1.5 } }, "invalid request: body.qos.readIops must be integer."],
        [{ qos: { readIops: 1, readBytesPerSecond: "fast" } }, '"fast" is not a size; use a number with an optional unit K, M, G or T (e.g. 10G).'],
        [{ qos: { readIops: 1 }, tlogMultiplier: 2 }, "the TLog multiplier of vDisk settings1 is fixed at creation (16); create a new vDisk to use another."],
        [{ cache: { mode: "sometimes" } }, '"sometimes" is not a read cache mode; use cache-on-read, cache-on-write, none.'],
        [{ qos: { readIops: 1 }, cache: { quota: "lots" } }, '"lots" is not a size; use a number with an optional unit K, M, G or T (e.g. 10G).'],
        [{ cache: { quota: 1000 } }, "the read cache quota must be at least 4 KiB (one cluster), or 0 for no quota."],
      ] as const) {
        const response = await app.inject({ method: "PATCH", url, headers: as("writer"), payload });
        expect(response.statusCode, JSON.stringify(payload)).toBe(400);
        expect(response.json()).toEqual({ error: { code: "INVALID_ARGUMENT", message } });
      }
      expect((await app.inject({ method: "GET", url, headers: as("reader") })).json()).toEqual(expected);
      const info = await app.inject({ method: "GET", url: "/api/v1/vdisks/settings1", headers: as("reader") });
      expect(info.json().qos).toEqual({ limits: expected.qos, delayedRequests: 0, delayedMsTotal: 0 });
    } finally {
      await vdisks.delete("settings1", true);
    }
  });
});

describe("vDisk scrub", () => {
  it("scrubs with the write role as a task whose result is the report; bad bodies 400 and an unknown vDisk 404, no task", async () => {
    await vdisks.create("scrub1", 16 * 1024 * 1024);
    try {
      const url = "/api/v1/vdisks/scrub1/scrub";
      expect((await app.inject({ method: "POST", url, headers: as("reader"), payload: {} })).statusCode).toBe(403);
      for (const [payload, message] of [
        [{ threshold: 0 }, "invalid request: body.threshold must be > 0."],
        [{ threshold: 1.5 }, "invalid request: body.threshold must be <= 1."],
        [{ threshold: "half" }, "invalid request: body.threshold must be number."],
        [{ colour: 1 }, 'invalid request: body has an unknown field "colour".'],
        [{ bandwidth: "fast" }, '"fast" is not a size; use a number with an optional unit K, M, G or T (e.g. 10G).'],
        [{ bandwidth: -1 }, null],
      ] as const) {
        const response = await app.inject({ method: "POST", url, headers: as("writer"), payload });
        expect(response.statusCode, JSON.stringify(payload)).toBe(400);
        expect(response.json().error.code).toBe("INVALID_ARGUMENT");
        if (message !== null) expect(response.json().error.message).toBe(message);
      }
      const missing = await app.inject({ method: "POST", url: "/api/v1/vdisks/nope/scrub", headers: as("writer"), payload: {} });
      expect(missing.statusCode).toBe(404);
      expect(missing.json().error.code).toBe("NOT_FOUND");
      const tasksBefore = (await app.inject({ method: "GET", url: "/api/v1/tasks?kind=vdisk.scrub", headers: as("reader") })).json().tasks.length;
      expect(tasksBefore).toBe(0); // the refused requests started none
      const started = await app.inject({ method: "POST", url, headers: as("writer"), payload: { threshold: 0.75, bandwidth: "32M/s" } });
      expect(started.statusCode).toBe(202);
      const taskId = started.json().id as string;
      expect(started.headers.location).toBe(`/api/v1/tasks/${taskId}`);
      expect(started.json()).toMatchObject({ kind: "vdisk.scrub", target: "scrub1" });
      let task = started.json();
      for (const deadline = Date.now() + 60_000; task.state !== "succeeded" && task.state !== "failed" && Date.now() < deadline; ) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        task = (await app.inject({ method: "GET", url: `/api/v1/tasks/${taskId}`, headers: as("reader") })).json();
      }
      expect(task.state).toBe("succeeded");
      expect(task.result).toMatchObject({ threshold: 0.75, bandwidthBytesPerSecond: 32 * 1024 * 1024, scosRewritten: 0, bytesReclaimed: 0 });
      expect(typeof task.result.durationMs).toBe("number");
    } finally {
      await vdisks.delete("scrub1", true);
    }
  });
});

describe("the OpenAPI document", () => {
  it("lists every route with its summary, role and parameters, and is structurally valid", async () => {
    const response = await app.inject({ method: "GET", url: "/api/openapi.json", headers: as("reader") });
    expect(response.statusCode).toBe(200);
    const doc = response.json() as {
      openapi: string;
      info: { title: string; version: string };
      components: { securitySchemes: Record<string, unknown> };
      paths: Record<string, Record<string, { summary?: string; "x-ovs-role"?: string; security?: unknown[]; responses?: Record<string, unknown>; parameters?: Array<{ name: string; in: string; schema?: unknown; required?: boolean }>; requestBody?: { content: Record<string, { schema: unknown }> } }>>;
    };
    expect(doc.openapi).toBe("3.0.3");
    expect(doc.info).toMatchObject({ title: "openvstorage API", version: "unknown" });
    expect(doc.components.securitySchemes.bearer).toEqual({ type: "http", scheme: "bearer" });
    for (const route of app.ovsRoutes.filter((r) => r.method !== "HEAD")) {
      const openapiPath = route.url.replace(/:(\w+)/g, "{$1}");
      const operation = doc.paths[openapiPath]?.[route.method.toLowerCase()];
      expect(operation, `${route.method} ${route.url} in the document`).toBeDefined();
      expect(operation!.summary, `${route.method} ${route.url} summary`).toMatch(/\w/);
      expect(operation!["x-ovs-role"]).toBe(route.access);
      expect(operation!.security).toEqual(route.access === "public" ? [] : [{ bearer: [] }]);
      expect(operation!.responses?.default, `${route.method} ${route.url} documents its errors`).toMatchObject({ description: expect.stringMatching(/error/) });
      for (const name of [...openapiPath.matchAll(/\{(\w+)\}/g)].map((m) => m[1])) {
        expect(operation!.parameters?.find((p) => p.in === "path" && p.name === name), `${openapiPath} declares ${name}`).toMatchObject({ required: true });
      }
      for (const parameter of operation!.parameters ?? []) expect(["path", "query", "header"]).toContain(parameter.in);
      if (operation!.requestBody) expect(Object.keys(operation!.requestBody.content)).toContain("application/json");
    }
    const operations = Object.values(doc.paths).reduce((count, methods) => count + Object.keys(methods).length, 0);
    expect(operations).toBe(app.ovsRoutes.filter((r) => r.method !== "HEAD").length);
    expect(JSON.stringify(doc)).not.toMatch(/"\$ref":"(?!#\/components\/)/);
  });
});
