// The REST API under /api/v1: node information, the vDisk lifecycle, the store's keys (config-api.ts)
// and auth (auth/). Errors are JSON { error: { code, message } } with the catalogue's stable code and
// HTTP status; every body, query and path parameter is validated by its schema first (bad input → 400
// naming the field, nothing changed): every route declares a querystring schema (NoQuery when it takes
// none) and every POST/PUT/PATCH/DELETE a body schema (NoBody when it takes none; schemas.ts). Every route is protected by the auth hooks (auth/auth-plugin.ts),
// installed before any route: a route declares its role in `config.role`, else GET/HEAD need read and
// other methods write; only the token endpoint and the liveness probe are public.

import swagger from "@fastify/swagger";
import Fastify, { type FastifyInstance, type FastifyError, type FastifyBaseLogger, type FastifyRequest } from "fastify";
import { Type, type Static } from "@sinclair/typebox";
import { NoBody, NoQuery, isNoBodySchema } from "./schemas.js";
import { OvsError, isOvsError, parseSizeBytes, type Logger } from "../base/index.js";
import { deleteSteps, type VDiskService } from "./vdisk-service.js";
import type { ClusterStore } from "../store/index.js";
import type { ObjectBackend } from "../backend/index.js";
import type { ReadCacheMode } from "../volume/index.js";
import { registerHealthRoutes } from "./health/health-api.js";
import type { NodeMetrics } from "./metrics/metrics.js";
import type { Scheduler } from "./scheduler/scheduler.js";
import { registerSchedulerRoutes } from "./scheduler/scheduler-api.js";
import { randomUUID } from "node:crypto";
import { registerConfigRoutes } from "./config-api.js";
import { registerAuth, defaultRole, type RouteAccess } from "./auth/auth-plugin.js";
import { registerAuthRoutes } from "./auth/auth-api.js";
import type { AuthService } from "./auth/auth-service.js";
import type { AuditLog } from "./auth/audit-log.js";
import { registerAlbaRoutes } from "./alba-api.js";
import type { AlbaService } from "./alba-service.js";
import { registerSnapshotRoutes } from "./snapshot-api.js";
import { registerSettingsRoutes } from "./settings-api.js";
import { TaskReply, registerTaskRoutes, startTask } from "./tasks/task-api.js";
import { TaskService } from "./tasks/task-service.js";
import { registerModelRoutes, VDiskListQuery, VDiskPageReply } from "./model-api.js";
import type { ManagementModel } from "./model/model-service.js";
import { registerScrubRoutes } from "./scrub-api.js";

export interface NodeInfo {
  version: string;
  nodeId: string;
  dataDir: string;
  store: string;
  backend: string;
  nbd: { host: string; port: number };
  api: { host: string; port: number };
  /** The local ASD processes (ALBA backend), empty with --backend local. */
  asds: Array<{ index: number; asdId: string | null; host: string; port: number; dir: string; pid: number | null }>;
  /** The node's read cache: where and how large (`ovs up --read-cache-size`); GET /api/v1/node adds its statistics. */
  readCache?: { dir: string; capacityBytes: number };
}

const Size = Type.Union([Type.String({ minLength: 1, maxLength: 32 }), Type.Integer({ minimum: 1 })], {
  description: "bytes, or a size with a binary unit such as 10G",
});
const CreateBody = Type.Object(
  { name: Type.String({ minLength: 1, maxLength: 64 }), size: Size, vpool: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: "default: this node's default vPool" })), scoCacheMax: Type.Optional(Type.Union([Type.String({ minLength: 1, maxLength: 32 }), Type.Integer({ minimum: 0 })])),
    cacheMode: Type.Optional(Type.String({ minLength: 1, maxLength: 16, description: "read cache mode: cache-on-read, cache-on-write or none; default: the vPool's" })),
    scoSize: Type.Optional(Type.Union([Type.String({ minLength: 1, maxLength: 32 }), Type.Integer({ minimum: 1 })], { description: "SCO size, 1 MiB to 128 MiB, a multiple of 4 KiB, fixed for the vDisk's life; default: the vPool's" })),
    tlogMultiplier: Type.Optional(Type.Integer({ minimum: 1, maximum: 1024, description: "SCOs per TLog, fixed for the vDisk's life; default: the vPool's" })) },
  { additionalProperties: false },
);
const ResizeBody = Type.Object(
  { size: Size, version: Type.Optional(Type.Integer({ minimum: 0, description: "the version (from GET) this change is based on: 409 CONFLICT, nothing changed, if the vDisk changed since" })) },
  { additionalProperties: false },
);
const NameParams = Type.Object({ name: Type.String({ minLength: 1, maxLength: 64 }) });
const DeleteQuery = Type.Object({ force: Type.Optional(Type.Boolean()) }, { additionalProperties: false });

/** Every error reply (documented as each operation's default response). */
export const ErrorReply = Type.Object(
  { error: Type.Object({ code: Type.String({ description: "stable code from the error catalogue, e.g. INVALID_ARGUMENT, UNAUTHENTICATED, FORBIDDEN, NOT_FOUND" }), message: Type.String({ description: "one sentence" }) }) },
  { description: "an error: a stable code and a one-sentence message" },
);

function sizeOf(value: string | number): number {
  return typeof value === "number" ? value : parseSizeBytes(value);
}

export interface ApiOptions {
  vdisks: VDiskService;
  store: ClusterStore;
  backend: ObjectBackend;
  /** The ALBA backend's operations (routes under /api/v1/alba); none with --backend local. */
  alba?: AlbaService;
  auth: AuthService;
  /** The scheduled tasks (routes under /api/v1/schedule); none in unit tests that do not look at it. */
  scheduler?: Scheduler;
  /** Served at GET /metrics; none in unit tests that do not look at it. */
  metrics?: NodeMetrics;
  /** Where changes are recorded; none in unit tests that do not look at it. */
  audit?: AuditLog;
  nodeInfo: () => NodeInfo;
  log: Logger;
  version?: string;
  /** The management model (storage routers, vPools, backends, domains; vDisks in vPools). */
  model?: ManagementModel;
  /** The cluster secret ASDs check, for the health check's ASD probes. */
  clusterSecret?: string;
  /** Milliseconds since the epoch; tests pass a controllable clock. */
  now?: () => number;
  /** Long operations (/api/v1/tasks); unit tests that do not pass one get one of their own. */
  tasks?: TaskService;
}

/** One sentence naming the field that failed validation (fastify/ajv reports the first error). */
export function validationMessage(error: FastifyError): string {
  const first = error.validation?.[0] as { instancePath?: string; message?: string; params?: Record<string, unknown> } | undefined;
  const where = `${error.validationContext ?? "request"}${first?.instancePath ? first.instancePath.replace(/\//g, ".") : ""}`;
  if (first?.params?.additionalProperty !== undefined) return `invalid request: ${where} has an unknown field "${String(first.params.additionalProperty)}".`;
  if (first?.params?.missingProperty !== undefined) return `invalid request: ${where} needs the field "${String(first.params.missingProperty)}".`;
  if (first?.message) return `invalid request: ${where} ${first.message}.`;
  return `invalid request: ${error.message}.`;
}

export async function buildApi(options: ApiOptions): Promise<FastifyInstance> {
  const now = options.now ?? Date.now;
  const app = Fastify({
    loggerInstance: options.log as unknown as FastifyBaseLogger,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: true, allErrors: false } },
    // The request id of every log line (reqId) and audit entry: the caller's X-Request-Id when it sends a
    // sane one, else a UUID; echoed in the reply so a client can quote it.
    requestIdHeader: false,
    genReqId: (raw) => {
      const given = raw.headers["x-request-id"];
      return typeof given === "string" && /^[A-Za-z0-9._:-]{1,128}$/.test(given) ? given : randomUUID();
    },
  });
  app.addHook("onRequest", async (request, reply) => {
    reply.header("x-request-id", request.id);
  });

  app.setErrorHandler((error: FastifyError | OvsError | Error, request, reply) => {
    if (isOvsError(error)) {
      if (error.code === "UNAUTHENTICATED") reply.header("www-authenticate", 'Bearer realm="openvstorage"');
      return reply.status(error.httpStatus).send({ error: { code: error.code, message: error.message } });
    }
    const fastifyError = error as FastifyError;
    if (fastifyError.validation) {
      return reply.status(400).send({ error: { code: "INVALID_ARGUMENT", message: validationMessage(fastifyError) } });
    }
    if (fastifyError.statusCode !== undefined && fastifyError.statusCode < 500) {
      return reply.status(fastifyError.statusCode).send({ error: { code: "INVALID_ARGUMENT", message: fastifyError.message } });
    }
    request.log.error({ err: error }, "request failed");
    return reply.status(500).send({ error: { code: "INTERNAL", message: "internal error; see the node's log" } });
  });
  app.setNotFoundHandler((request, reply) => {
    reply.status(404).send({ error: { code: "NOT_FOUND", message: `no route ${request.method} ${request.url}` } });
  });

  // Before any route: every route added after this, here or in any plugin, is protected and documented.
  registerAuth(app, { auth: options.auth, audit: options.audit });
  // A route whose body schema is NoBody (schemas.ts) takes no body: a request without one is validated
  // as {}, so that only a missing or empty body passes (a JSON null, false or 0 is refused, not coerced).
  app.addHook("onRoute", (route) => {
    if (!isNoBodySchema(route.schema?.body)) return;
    const fill = async (request: FastifyRequest): Promise<void> => {
      if (request.body === undefined) request.body = {};
    };
    route.preValidation = [...(route.preValidation === undefined ? [] : Array.isArray(route.preValidation) ? route.preValidation : [route.preValidation]), fill];
  });
  await app.register(swagger, {
    openapi: {
      openapi: "3.0.3",
      info: { title: "openvstorage API", version: options.version ?? "unknown", description: "Every route but the token endpoint and the liveness probe needs a bearer token from POST /api/v1/oauth/token; x-ovs-role is the role it needs." },
      components: { securitySchemes: { bearer: { type: "http", scheme: "bearer" } } },
    },
    transform: ({ schema, url, route }) => {
      const methods = Array.isArray(route.method) ? route.method : [route.method];
      const access: RouteAccess = (route.config as { role?: RouteAccess } | undefined)?.role ?? defaultRole(methods[0]!);
      const response = { ...((schema?.response as Record<string, unknown> | undefined) ?? {}), default: ErrorReply };
      // A route that takes no body (NoBody) documents none.
      const { body, ...rest } = schema ?? {};
      const documented = { ...rest, ...(body === undefined || isNoBodySchema(body) ? {} : { body }), response, ...(access === "public" ? { security: [] } : { security: [{ bearer: [] }] }), "x-ovs-role": access };
      return { schema: documented, url };
    },
  });
  app.get("/api/openapi.json", { schema: { tags: ["meta"], summary: "this OpenAPI document" } }, async () => app.swagger());

  app.get("/api/v1/health/live", { config: { role: "public" }, logLevel: "warn", schema: { tags: ["health"], summary: "liveness: the API answers (no token needed)", querystring: NoQuery } }, async () => ({ status: "ok" }));

  const metrics = options.metrics;
  if (metrics !== undefined) {
    app.addHook("onResponse", async (request, reply) => {
      const route = request.routeOptions.url ?? "unmatched";
      metrics.apiRequests.inc({ method: request.method, route, status: reply.statusCode });
      metrics.apiDuration.observe({ method: request.method, route }, reply.elapsedTime / 1000);
    });
    app.get("/metrics", { logLevel: "warn", schema: { tags: ["metrics"], summary: "Prometheus metrics of this node (text format 0.0.4)" } }, async (_request, reply) => {
      reply.header("content-type", metrics.contentType());
      return metrics.text();
    });
  }

  app.get("/api/v1/node", { schema: { tags: ["node"], summary: "this node: version, id, store, backend, where it listens, its local ASDs and its read cache", querystring: NoQuery } }, async () => {
    const info = options.nodeInfo();
    const local = options.alba?.localAsds();
    const stats = options.vdisks.readCacheStats();
    const readCache = info.readCache === undefined && stats === undefined ? undefined : { ...info.readCache, ...stats };
    return local === undefined ? { ...info, readCache } : { ...info, readCache, asds: local.map((asd) => ({ index: asd.index, asdId: asd.asdId, host: asd.host, port: asd.port, dir: asd.dir, pid: asd.pid })) };
  });

  const model = options.model;
  app.get<{ Querystring: Static<typeof VDiskListQuery> }>(
    "/api/v1/vdisks",
    {
      schema: {
        tags: ["vdisks"], summary: "list vDisks (filter by vPool, name prefix, template, storage router; sort; page by offset, or by cursor: after = the next of the previous page), with live statistics for this node's",
        querystring: VDiskListQuery, ...(model ? { response: { 200: VDiskPageReply } } : {}),
      },
    },
    async (request) => (model ? model.listVDisks(request.query) : { vdisks: options.vdisks.list() }),
  );

  app.post<{ Body: Static<typeof CreateBody> }>("/api/v1/vdisks", { schema: { tags: ["vdisks"], summary: "create a thin vDisk", body: CreateBody, querystring: NoQuery } }, async (request, reply) => {
    const { scoCacheMax, vpool, cacheMode, scoSize, tlogMultiplier } = request.body;
    const settings = {
      ...(scoCacheMax === undefined ? {} : { scoCacheMaxBytes: scoCacheMax === 0 || scoCacheMax === "0" ? 0 : sizeOf(scoCacheMax) }),
      ...(scoSize === undefined ? {} : { scoSizeBytes: sizeOf(scoSize) }),
      ...(tlogMultiplier === undefined ? {} : { tlogMultiplier }),
    };
    const info = model
      ? await model.createVDisk(request.body.name, sizeOf(request.body.size), { ...settings, ...(vpool === undefined ? {} : { vpool }), ...(cacheMode === undefined ? {} : { cacheMode }) })
      : await options.vdisks.create(request.body.name, sizeOf(request.body.size), { ...settings, ...(cacheMode === undefined ? {} : { cache: { mode: cacheMode as ReadCacheMode } }) });
    return reply.status(201).send(info);
  });

  app.get<{ Params: Static<typeof NameParams> }>("/api/v1/vdisks/:name", { schema: { tags: ["vdisks"], summary: "a vDisk with its vPool and live statistics (state remote when another storage router serves it)", params: NameParams, querystring: NoQuery } }, async (request) =>
    model ? model.getVDisk(request.params.name) : options.vdisks.info(request.params.name),
  );

  app.post<{ Params: Static<typeof NameParams>; Body: Static<typeof ResizeBody> }>(
    "/api/v1/vdisks/:name/resize",
    { schema: { tags: ["vdisks"], summary: "grow a vDisk (clients see the new size when they reconnect)", params: NameParams, body: ResizeBody, querystring: NoQuery } },
    async (request) => options.vdisks.resize(request.params.name, sizeOf(request.body.size), request.body.version),
  );

  const tasks = options.tasks ?? new TaskService({ store: options.store, nodeId: options.nodeInfo().nodeId, log: options.log, now });

  // A long operation (the volume's last writes synced, its namespace removed from the backend): refused
  // at once (404; 409 with clones, while a client is connected unless force, or while another delete is
  // pending) before any task exists, else 202 with the task (its result names the vDisk and namespace).
  app.delete<{ Params: Static<typeof NameParams>; Querystring: Static<typeof DeleteQuery> }>(
    "/api/v1/vdisks/:name",
    {
      schema: {
        tags: ["vdisks"], params: NameParams, querystring: DeleteQuery, body: NoBody, response: { 202: TaskReply },
        summary: "delete a vDisk and its data, as a task: 202 with the task to poll; 409 at once with clones, or while a client is connected unless force",
      },
    },
    async (request, reply) => {
      const { name } = request.params;
      const force = request.query.force === true;
      const reservation = options.vdisks.reserveDelete(name, force);
      try {
        return await startTask(tasks, request, reply, {
          kind: "vdisk.delete", target: name, unit: "steps", total: deleteSteps,
          run: (task) => options.vdisks.delete(name, force, { reservation, onStep: (step, detail) => task.progress({ done: step, detail }) }),
        });
      } catch (error) {
        reservation.release(); // no task started
        throw error;
      }
    },
  );
  registerTaskRoutes(app, tasks);
  registerConfigRoutes(app, options.store);
  registerAlbaRoutes(app, options.alba, tasks);
  registerSnapshotRoutes(app, options.vdisks, tasks);
  registerSettingsRoutes(app, options.vdisks);
  if (model) registerModelRoutes(app, model, options.vdisks, tasks);
  registerScrubRoutes(app, options.vdisks, tasks);
  registerAuthRoutes(app, options.auth, now);
  if (options.scheduler !== undefined) registerSchedulerRoutes(app, options.scheduler);
  registerHealthRoutes(app, () => {
    const info = options.nodeInfo();
    return { nodeId: info.nodeId, dataDir: info.dataDir, store: options.store, backend: options.backend, vdisks: () => options.vdisks.list(), nbd: () => info.nbd, alba: { clusterSecret: options.clusterSecret } };
  });
  return app;
}
