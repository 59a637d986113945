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
import { Scheduler } from "./scheduler/scheduler.js";

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
  const scheduler = new Scheduler({ store, nodeId: "n1", log, tasks: [] }); // never started: its routes only
  app = await buildApi({ vdisks, store, backend, auth, model, scheduler, metrics: new NodeMetrics({ nodeId: "n1", processMetrics: false }), log, now: () => nowMs, nodeInfo: () => ({ version: "t", nodeId: "n1", dataDir: dir, store: "s", backend: "b", nbd: { host: "127.0.0.1", port: 1 }, api: { host: "h", port: 2 }, asds: [] }) });
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

/** Polls a task through the API until it has finished (bounded); returns its final record. */
async function waitTask(id: string): Promise<{ state: string; result?: unknown; error?: unknown }> {
  for (let attempt = 0; attempt < 600; attempt++) {
    const task = (await app.inject({ method: "GET", url: `/api/v1/tasks/${id}`, headers: as("reader") })).json() as { state: string };
    if (["succeeded", "failed", "cancelled"].includes(task.state)) return task;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`task ${id} did not finish within 30 s`);
}

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
      expect(read.json()).toMatchObject({ qos: { writeIops: 0 }, scoCacheMaxBytes: 0, scoSizeBytes: 8388608, tlogMultiplier: 8 });
      expect((await app.inject({ method: "PATCH", url, headers: as("reader"), payload: { qos: { writeIops: 1 } } })).statusCode).toBe(403);
      const changed = await app.inject({ method: "PATCH", url, headers: as("writer"), payload: { qos: { writeIops: 300, readBytesPerSecond: "50M/s", totalBytesPerSecond: 1048576 }, scoCacheMax: "64M", cache: { mode: "cache-on-write", quota: "512M" } } });
      expect(changed.statusCode).toBe(200);
      const expected = {
        qos: { readIops: 0, writeIops: 300, totalIops: 0, readBytesPerSecond: 52428800, writeBytesPerSecond: 0, totalBytesPerSecond: 1048576 }, scoCacheMaxBytes: 67108864,
        cache: { mode: "cache-on-write", quotaBytes: 536870912 }, scoSizeBytes: 8388608, tlogMultiplier: 8, version: 1,
      };
      expect(changed.json()).toEqual(expected);
      for (const [payload, message] of [
        [{ qos: { writeIops: 1, colour: 2 } }, 'invalid request: body.qos has an unknown field "colour".'],
        [{ qos: { readIops: 1.5 } }, "invalid request: body.qos.readIops must be integer."],
        [{ qos: { readIops: 1, readBytesPerSecond: "fast" } }, '"fast" is not a size; use a number with an optional unit K, M, G or T (e.g. 10G).'],
        [{ qos: { readIops: 1 }, tlogMultiplier: 2 }, "the TLog multiplier of vDisk settings1 is fixed at creation (8); create a new vDisk to use another."],
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

describe("every route's input is checked by schema", () => {
  type JsonSchema = { type?: string; anyOf?: JsonSchema[]; additionalProperties?: unknown; properties?: Record<string, JsonSchema> };
  /** Every object a request may be (each member of a union) refuses fields it does not name. */
  function strictObjects(schema: JsonSchema, where: string): void {
    if (schema.anyOf !== undefined) {
      for (const member of schema.anyOf) strictObjects(member, where);
      return;
    }
    expect(schema.type, where).toBe("object");
    expect(schema.additionalProperties, `${where} refuses unknown fields`).toBe(false);
  }

  it("declares a querystring schema on every /api/v1 route, and a body schema on every POST, PUT, PATCH and DELETE", () => {
    const routes = app.ovsRoutes.filter((r) => r.url.startsWith("/api/v1/") && r.url !== "/api/v1/later" && r.method !== "HEAD");
    // The enumeration covers every plugin's routes (model, ALBA, schedule, tasks, auth, config, vDisks).
    for (const expected of ["POST /api/v1/vdisks/:name/template", "POST /api/v1/alba/asds/:asdId/claim", "POST /api/v1/schedule/:task/run", "POST /api/v1/tasks/:id/cancel", "GET /api/v1/vpools", "DELETE /api/v1/vdisks/:name/snapshots/:snapshot", "PUT /api/v1/config", "POST /api/v1/oauth/token"]) {
      expect(routes.map((r) => `${r.method} ${r.url}`)).toContain(expected);
    }
    expect(routes.length).toBeGreaterThan(60);
    for (const route of routes) {
      const where = `${route.method} ${route.url}`;
      const schema = route.schema as { querystring?: JsonSchema; body?: JsonSchema } | undefined;
      expect(schema?.querystring, `${where} declares its querystring`).toBeDefined();
      strictObjects(schema!.querystring!, `${where} querystring`);
      if (["POST", "PUT", "PATCH", "DELETE"].includes(route.method)) {
        expect(schema?.body, `${where} declares its body`).toBeDefined();
        strictObjects(schema!.body!, `${where} body`);
      }
    }
  });

  it("documents no request body for a route that takes none, and the body of one that takes one", async () => {
    const doc = (await app.inject({ method: "GET", url: "/api/openapi.json", headers: as("reader") })).json() as { paths: Record<string, Record<string, { requestBody?: unknown; parameters?: Array<{ in: string; name: string }> }>> };
    for (const [url, method] of [["/api/v1/vdisks/{name}/template", "post"], ["/api/v1/alba/asds/{asdId}/claim", "post"], ["/api/v1/alba/maintenance/pass", "post"], ["/api/v1/tasks/{id}/cancel", "post"], ["/api/v1/schedule/{task}/run", "post"], ["/api/v1/vdisks/{name}/snapshots/{snapshot}", "delete"], ["/api/v1/users/{username}", "delete"]] as const) {
      expect(doc.paths[url]?.[method], `${method} ${url}`).toBeDefined();
      expect(doc.paths[url]![method]!.requestBody, `${method} ${url}`).toBeUndefined();
      expect((doc.paths[url]![method]!.parameters ?? []).filter((p) => p.in === "query"), `${method} ${url}`).toEqual([]);
    }
    expect(doc.paths["/api/v1/vdisks/{name}/snapshots"]!.post!.requestBody).toMatchObject({ content: { "application/json": { schema: { required: ["name"] } } } });
    expect(doc.paths["/api/v1/vpools/{name}"]!.delete!.parameters!.filter((p) => p.in === "query").map((p) => p.name)).toEqual(["version"]);
  });

  it("answers unknown body fields and query parameters with 400 naming them, and changes nothing", async () => {
    await vdisks.create("probe1", 16 * 1024 * 1024);
    try {
      await vdisks.createSnapshot("probe1", "s1");
      const state = async (): Promise<unknown> => ({
        info: (await app.inject({ method: "GET", url: "/api/v1/vdisks/probe1", headers: as("reader") })).json().template,
        snapshots: vdisks.listSnapshots("probe1").map((s) => s.name),
        vdisks: vdisks.list().map((v) => v.name).sort(),
        router: (await app.inject({ method: "GET", url: "/api/v1/storagerouters/n1", headers: as("reader") })).json().status,
        tasks: (await app.inject({ method: "GET", url: "/api/v1/tasks", headers: as("reader") })).json().tasks.length,
        config: (await store.get("probe/key")) === undefined,
      });
      const before = await state();
      expect(before).toMatchObject({ info: false, snapshots: ["s1"], vdisks: ["probe1"], router: "online", config: true });
      const unknownField = (where: string, field: string): string => `invalid request: ${where} has an unknown field "${field}".`;
      const cases: Array<[string, string, string, unknown, string]> = [
        ["writer", "POST", "/api/v1/vdisks/probe1/template", { colour: "red" }, unknownField("body", "colour")],
        ["writer", "POST", "/api/v1/vdisks/probe1/template?colour=red", undefined, unknownField("querystring", "colour")],
        ["writer", "POST", "/api/v1/vdisks/probe1/template", "null", "invalid request: body must be object."],
        ["writer", "POST", "/api/v1/vdisks/probe1/template", "[]", "invalid request: body must be object."],
        ["reader", "GET", "/api/v1/vpools?bogus=1", undefined, unknownField("querystring", "bogus")],
        ["reader", "GET", "/api/v1/vdisks/probe1/snapshots?x=1", undefined, unknownField("querystring", "x")],
        ["reader", "GET", "/api/v1/storagerouters?x=1", undefined, unknownField("querystring", "x")],
        ["writer", "DELETE", "/api/v1/vdisks/probe1/snapshots/s1?x=1", undefined, unknownField("querystring", "x")],
        ["writer", "DELETE", "/api/v1/vdisks/probe1?x=1", undefined, unknownField("querystring", "x")],
        ["writer", "DELETE", "/api/v1/vdisks/probe1/snapshots/s1", { force: true }, unknownField("body", "force")],
        ["writer", "DELETE", "/api/v1/vdisks/probe1", { force: true }, unknownField("body", "force")],
        ["writer", "POST", "/api/v1/vdisks/probe1/snapshots?sticky=true", { name: "s2" }, unknownField("querystring", "sticky")],
        ["writer", "POST", "/api/v1/vdisks/probe1/clones?x=1", { name: "probe1-clone", snapshot: "s1" }, unknownField("querystring", "x")],
        ["writer", "POST", "/api/v1/vdisks/probe1/rollback?x=1", { snapshot: "s1" }, unknownField("querystring", "x")],
        ["admin", "POST", "/api/v1/storagerouters/n1/offline?now=1", {}, unknownField("querystring", "now")],
        ["admin", "POST", "/api/v1/alba/asds/0123456789abcdef0123456789abcdef/claim", { force: true }, unknownField("body", "force")],
        ["admin", "POST", "/api/v1/alba/asds/0123456789abcdef0123456789abcdef/decommission?force=1", undefined, unknownField("querystring", "force")],
        ["admin", "POST", "/api/v1/alba/presets?x=1", { name: "p", policies: [{ k: 1, m: 0, c: 1, x: 1 }] }, unknownField("querystring", "x")],
        ["writer", "POST", "/api/v1/alba/namespaces/ns1/verify", { deep: true }, unknownField("body", "deep")],
        ["writer", "POST", "/api/v1/alba/maintenance/pass", { steps: 1 }, unknownField("body", "steps")],
        ["writer", "POST", "/api/v1/schedule/health.check/run", { now: true }, unknownField("body", "now")],
        ["writer", "POST", "/api/v1/tasks/0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b/cancel", { reason: "x" }, unknownField("body", "reason")],
        ["admin", "PUT", "/api/v1/config?x=1", { key: "probe/key", value: "v" }, unknownField("querystring", "x")],
        ["admin", "DELETE", "/api/v1/users/reader?x=1", undefined, unknownField("querystring", "x")],
        ["reader", "GET", "/api/v1/oauth/me?x=1", undefined, unknownField("querystring", "x")],
      ];
      for (const [user, method, url, payload, message] of cases) {
        const raw = typeof payload === "string";
        const response = await app.inject({
          method: method as "GET", url, headers: { ...as(user), ...(raw ? { "content-type": "application/json" } : {}) },
          ...(payload === undefined ? {} : { payload: raw ? payload : (payload as object) }),
        });
        expect(response.statusCode, `${method} ${url} ${JSON.stringify(payload)}`).toBe(400);
        expect(response.json(), `${method} ${url}`).toEqual({ error: { code: "INVALID_ARGUMENT", message } });
      }
      expect(await state()).toEqual(before);
      expect((await app.inject({ method: "GET", url: "/api/v1/users", headers: as("admin") })).json().users.map((u: { username: string }) => u.username)).toContain("reader");

      // Without a body (what the CLI sends) or with an empty one, the same routes work.
      const templated = await app.inject({ method: "POST", url: "/api/v1/vdisks/probe1/template", headers: as("writer") });
      expect(templated.statusCode, templated.body).toBe(202); // a task
      expect(await waitTask(templated.json().id)).toMatchObject({ state: "succeeded", result: { template: true } });
      const again = await app.inject({ method: "POST", url: "/api/v1/vdisks/probe1/template", headers: as("writer"), payload: {} });
      expect(again.json().error?.code).not.toBe("INVALID_ARGUMENT");
    } finally {
      await vdisks.delete("probe1", true);
    }
  });
});

describe("the write and manage routes", () => {
  it("refuse a token with too small a role with 403 and change nothing", async () => {
    await vdisks.create("roles1", 16 * 1024 * 1024);
    try {
      await vdisks.createSnapshot("roles1", "s1");
      const state = async (): Promise<unknown> => ({
        info: await vdisks.info("roles1"),
        snapshots: vdisks.listSnapshots("roles1").map((s) => s.name),
        vdisks: vdisks.list().map((v) => v.name).sort(),
        tasks: (await app.inject({ method: "GET", url: "/api/v1/tasks", headers: as("reader") })).json().tasks.length,
        settings: (await app.inject({ method: "GET", url: "/api/v1/vdisks/roles1/settings", headers: as("reader") })).json(),
      });
      const before = await state();
      const asd = "/api/v1/alba/asds/0123456789abcdef0123456789abcdef";
      const cases: Array<[string, string, string, object | undefined, string]> = [
        ["reader", "POST", "/api/v1/vdisks/roles1/snapshots", { name: "s2" }, "write"],
        ["reader", "DELETE", "/api/v1/vdisks/roles1/snapshots/s1", undefined, "write"],
        ["reader", "POST", "/api/v1/vdisks/roles1/clones", { name: "roles1-clone", snapshot: "s1" }, "write"],
        ["reader", "POST", "/api/v1/vdisks/roles1/template", undefined, "write"],
        ["reader", "POST", "/api/v1/vdisks/roles1/rollback", { snapshot: "s1" }, "write"],
        ["reader", "POST", "/api/v1/vdisks/roles1/resize", { size: "32M" }, "write"],
        ["reader", "POST", "/api/v1/vdisks/roles1/restart", {}, "write"],
        ["reader", "POST", "/api/v1/vdisks/roles1/scrub", {}, "write"],
        ["reader", "PATCH", "/api/v1/vdisks/roles1/settings", { qos: { writeIops: 5 } }, "write"],
        ["reader", "DELETE", "/api/v1/vdisks/roles1", undefined, "write"],
        ["reader", "POST", "/api/v1/vdisks", { name: "roles2", size: "16M" }, "write"],
        ["reader", "POST", "/api/v1/alba/namespaces/ns1/verify", undefined, "write"],
        ["reader", "POST", "/api/v1/alba/maintenance/pass", undefined, "write"],
        ["reader", "POST", `${asd}/claim`, undefined, "manage"],
        ["writer", "POST", `${asd}/claim`, undefined, "manage"],
        ["reader", "POST", `${asd}/decommission`, undefined, "manage"],
        ["writer", "POST", `${asd}/decommission`, undefined, "manage"],
        ["writer", "POST", "/api/v1/alba/asds", { host: "127.0.0.1", port: 8000 }, "manage"],
        ["reader", "POST", "/api/v1/alba/presets", { name: "p1", policies: [{ k: 1, m: 0, c: 1, x: 1 }] }, "manage"],
        ["writer", "POST", "/api/v1/alba/presets", { name: "p1", policies: [{ k: 1, m: 0, c: 1, x: 1 }] }, "manage"],
        ["writer", "POST", "/api/v1/vpools", { name: "pool2" }, "manage"],
        ["writer", "POST", "/api/v1/domains", { name: "d1" }, "manage"],
        ["writer", "POST", "/api/v1/storagerouters/n1/offline", {}, "manage"],
        ["reader", "POST", "/api/v1/schedule/health.check/run", undefined, "write"],
      ];
      for (const [user, method, url, payload, role] of cases) {
        const response = await app.inject({ method: method as "GET", url, headers: as(user), ...(payload === undefined ? {} : { payload }) });
        expect(response.statusCode, `${user} ${method} ${url}`).toBe(403);
        expect(response.json().error, `${user} ${method} ${url}`).toEqual({ code: "FORBIDDEN", message: expect.stringContaining(`role ${role} required (user ${user} has `) });
      }
      expect(await state()).toEqual(before);
      expect((await app.inject({ method: "GET", url: "/api/v1/storagerouters/n1", headers: as("reader") })).json().status).toBe("online");
      expect((await app.inject({ method: "GET", url: "/api/v1/domains", headers: as("reader") })).json().domains).toEqual([]);
    } finally {
      await vdisks.delete("roles1", true);
    }
  });
});

describe("deleting a template's snapshot", () => {
  it("answers 404 for a snapshot it does not have and 409 for its one snapshot, which stays", async () => {
    await vdisks.create("tmpl1", 16 * 1024 * 1024);
    try {
      const templated = await app.inject({ method: "POST", url: "/api/v1/vdisks/tmpl1/template", headers: as("writer") });
      expect(templated.statusCode).toBe(202); // a task
      expect(await waitTask(templated.json().id)).toMatchObject({ state: "succeeded" });
      const [kept] = vdisks.listSnapshots("tmpl1");
      expect(kept).toBeDefined();
      const missing = await app.inject({ method: "DELETE", url: "/api/v1/vdisks/tmpl1/snapshots/nosuch", headers: as("writer") });
      expect(missing.statusCode).toBe(404);
      expect(missing.json()).toEqual({ error: { code: "NOT_FOUND", message: "volume tmpl1 has no snapshot named nosuch" } });
      const refused = await app.inject({ method: "DELETE", url: `/api/v1/vdisks/tmpl1/snapshots/${kept!.name}`, headers: as("writer") });
      expect(refused.statusCode).toBe(409);
      expect(refused.json()).toEqual({ error: { code: "CONFLICT", message: "volume tmpl1 is a template: its one snapshot is kept" } });
      expect(vdisks.listSnapshots("tmpl1").map((s) => s.name)).toEqual([kept!.name]);
    } finally {
      await vdisks.delete("tmpl1", true);
    }
  });
});
