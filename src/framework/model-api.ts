// REST routes of the management model (model/model-service.ts): storage routers, vPools, backends (with
// presets, ASD nodes, ASDs, usage and safety), domains, and the vDisk restart action (a task). One plugin,
// registered by api.ts; errors go through api.ts's handler (JSON { error: { code, message } }); every
// body, query and parameter is validated by its schema first, then by the model, before anything changes.
//
// Optimistic concurrency: every record has a `version`; a change may name the version it was made from
// (`version` in the body, or `?version=` on DELETE): a stale one is refused with 409 CONFLICT, and of two
// changes racing from the same read exactly one commits, the other gets 409 CONFLICT.
// Roles: reads need read; the vDisk restart needs write; storage routers, vPools and domains need manage.

import type { FastifyInstance } from "fastify";
import { Type, type Static } from "@sinclair/typebox";
import { NoBody, NoQuery } from "./schemas.js";
import { parseSizeBytes } from "../base/index.js";
import { restartSteps, type VDiskService } from "./vdisk-service.js";
import { TaskReply, startTask } from "./tasks/task-api.js";
import type { TaskService } from "./tasks/task-service.js";
import { assignTargetsMax, vdiskCursorBytesMax, type ManagementModel, type VPoolChange } from "./model/model-service.js";
import { cacheModes } from "./model/records.js";

const ModelName = Type.String({ minLength: 1, maxLength: 64, pattern: "^[A-Za-z0-9][A-Za-z0-9._-]*$" });
const RouterId = Type.String({ minLength: 1, maxLength: 255 });
const Version = Type.Integer({ minimum: 1, description: "the version the change was made from; a stale one is refused with 409 CONFLICT" });
const Size = Type.Union([Type.String({ minLength: 1, maxLength: 32 }), Type.Integer({ minimum: 0 })], { description: "bytes, or a size with a binary unit such as 4M" });
// Checked by the model, whose message names the accepted values.
const CacheMode = Type.String({ minLength: 1, maxLength: 16, description: `the read cache mode new vDisks get (their cache.mode) unless created with another: ${cacheModes.join(", ")}` });

const RouterParams = Type.Object({ id: RouterId });
const NameParams = Type.Object({ name: ModelName });
const VDiskParams = Type.Object({ name: Type.String({ minLength: 1, maxLength: 64 }) });
const BackendParams = Type.Object({ name: Type.String({ minLength: 1, maxLength: 255 }) });
const VersionBody = Type.Object({ version: Type.Optional(Version) }, { additionalProperties: false });
const VersionQuery = Type.Object({ version: Type.Optional(Version) }, { additionalProperties: false });
const SettingsFields = {
  scoSize: Type.Optional(Size),
  tlogMultiplier: Type.Optional(Type.Integer({ minimum: 1, maximum: 1024 })),
  writeBuffer: Type.Optional(Size),
  scoCacheMax: Type.Optional(Size),
  cacheMode: Type.Optional(CacheMode),
};
const CreateVPoolBody = Type.Object(
  {
    name: ModelName,
    backend: Type.Optional(Type.String({ minLength: 1, maxLength: 255, description: "a backend name from GET /api/v1/backends; default: this node's" })),
    preset: Type.Optional(Type.String({ minLength: 1, maxLength: 255, description: "ALBA preset of its vDisks' namespaces; default: the backend's default preset" })),
    storageRouters: Type.Optional(Type.Array(RouterId, { minItems: 1, maxItems: assignTargetsMax, description: "default: this node" })),
    ...SettingsFields,
  },
  { additionalProperties: false },
);
const UpdateVPoolBody = Type.Object({ version: Type.Optional(Version), ...SettingsFields }, { additionalProperties: false, minProperties: 1 });
const RouterBody = Type.Object({ storageRouter: RouterId, version: Type.Optional(Version) }, { additionalProperties: false });
const CreateDomainBody = Type.Object({ name: ModelName }, { additionalProperties: false });
const AssignBody = Type.Object(
  {
    storageRouters: Type.Optional(Type.Array(RouterId, { maxItems: assignTargetsMax })),
    asds: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 64 }), { maxItems: assignTargetsMax })),
    version: Type.Optional(Version),
  },
  { additionalProperties: false },
);
const RestartBody = Type.Object({ force: Type.Optional(Type.Boolean()) }, { additionalProperties: false });

/** The query of GET /api/v1/vdisks (registered in api.ts): filter, sort and paging. */
export const VDiskListQuery = Type.Object(
  {
    vpool: Type.Optional(ModelName),
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: "names starting with this" })),
    template: Type.Optional(Type.Boolean()),
    storageRouter: Type.Optional(RouterId),
    sort: Type.Optional(Type.String({ minLength: 1, maxLength: 16, description: "name, size or created; a leading - sorts descending" })),
    offset: Type.Optional(Type.Integer({ minimum: 0, description: "skip this many first (not with after)" })),
    after: Type.Optional(Type.String({ minLength: 1, maxLength: vdiskCursorBytesMax, description: "an opaque cursor: the next of the previous page (same sort); the page starts after the vDisk it names, whatever was created or deleted meanwhile" })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
  },
  { additionalProperties: false },
);

/** The reply of GET /api/v1/vdisks (with the model), for the OpenAPI document. */
export const VDiskPageReply = Type.Object(
  {
    vdisks: Type.Array(Type.Object({}, { additionalProperties: true, description: "a vDisk: name, id, namespace, vpool, storageRouterId, sizes, state, statistics (null when another node serves it)" })),
    total: Type.Integer({ description: "how many match the filters" }),
    offset: Type.Integer({ description: "where this page starts in the sorted list" }),
    limit: Type.Integer(),
    next: Type.Union([Type.String(), Type.Null()], { description: "the cursor of the next page (pass it as after), null on the last page" }),
  },
  { description: "one page of vDisks" },
);

function sizeOf(value: string | number | undefined): number | undefined {
  return value === undefined ? undefined : typeof value === "number" ? value : parseSizeBytes(value);
}

function settingsChange(body: { scoSize?: string | number; tlogMultiplier?: number; writeBuffer?: string | number; scoCacheMax?: string | number; cacheMode?: string }): VPoolChange {
  const change: VPoolChange = {};
  const scoSizeBytes = sizeOf(body.scoSize);
  const writeBufferBytes = sizeOf(body.writeBuffer);
  const scoCacheMaxBytes = body.scoCacheMax === "0" ? 0 : sizeOf(body.scoCacheMax);
  if (scoSizeBytes !== undefined) change.scoSizeBytes = scoSizeBytes;
  if (body.tlogMultiplier !== undefined) change.tlogMultiplier = body.tlogMultiplier;
  if (writeBufferBytes !== undefined) change.writeBufferBytes = writeBufferBytes;
  if (scoCacheMaxBytes !== undefined) change.scoCacheMaxBytes = scoCacheMaxBytes;
  if (body.cacheMode !== undefined) change.cacheMode = body.cacheMode;
  return change;
}

const manage = { role: "manage" } as const;

export function registerModelRoutes(app: FastifyInstance, model: ManagementModel, vdisks: VDiskService, tasks: TaskService): void {
  // ---- storage routers ----
  app.get("/api/v1/storagerouters", { schema: { tags: ["storagerouters"], summary: "storage routers (nodes): address, ports, status, heartbeat, vPools, domains", querystring: NoQuery } }, async () => ({
    storageRouters: await model.listStorageRouters(),
  }));

  app.get<{ Params: Static<typeof RouterParams> }>("/api/v1/storagerouters/:id", { schema: { tags: ["storagerouters"], summary: "a storage router", params: RouterParams, querystring: NoQuery } }, async (request) =>
    model.getStorageRouter(request.params.id),
  );

  app.post<{ Params: Static<typeof RouterParams>; Body: Static<typeof VersionBody> }>(
    "/api/v1/storagerouters/:id/offline",
    { config: manage, schema: { tags: ["storagerouters"], summary: "mark a storage router offline (it marks itself online when it starts)", params: RouterParams, body: VersionBody, querystring: NoQuery } },
    async (request) => model.markOffline(request.params.id, request.body?.version),
  );

  // ---- vPools ----
  app.get("/api/v1/vpools", { schema: { tags: ["vpools"], summary: "vPools: backend, preset, vDisk defaults, storage drivers, vDisk count", querystring: NoQuery } }, async () => ({ vpools: await model.listVPools() }));

  app.get<{ Params: Static<typeof NameParams> }>("/api/v1/vpools/:name", { schema: { tags: ["vpools"], summary: "a vPool", params: NameParams, querystring: NoQuery } }, async (request) => model.getVPool(request.params.name));

  app.post<{ Body: Static<typeof CreateVPoolBody> }>(
    "/api/v1/vpools",
    { config: manage, schema: { tags: ["vpools"], summary: "create a vPool on a backend and preset, with the defaults of its vDisks", body: CreateVPoolBody, querystring: NoQuery } },
    async (request, reply) => {
      const { name, backend, preset, storageRouters } = request.body;
      const view = await model.createVPool({ name, ...(backend ? { backend } : {}), ...(preset ? { preset } : {}), ...(storageRouters ? { storageRouters } : {}), ...settingsChange(request.body) });
      return reply.status(201).send(view);
    },
  );

  app.patch<{ Params: Static<typeof NameParams>; Body: Static<typeof UpdateVPoolBody> }>(
    "/api/v1/vpools/:name",
    { config: manage, schema: { tags: ["vpools"], summary: "change the defaults new vDisks of a vPool get (existing vDisks keep theirs)", params: NameParams, body: UpdateVPoolBody, querystring: NoQuery } },
    async (request) => model.updateVPool(request.params.name, settingsChange(request.body), request.body.version),
  );

  app.post<{ Params: Static<typeof NameParams>; Body: Static<typeof RouterBody> }>(
    "/api/v1/vpools/:name/extend",
    { config: manage, schema: { tags: ["vpools"], summary: "extend a vPool to a storage router (which can then create its vDisks)", params: NameParams, body: RouterBody, querystring: NoQuery } },
    async (request) => model.extendVPool(request.params.name, request.body.storageRouter, request.body.version),
  );

  app.post<{ Params: Static<typeof NameParams>; Body: Static<typeof RouterBody> }>(
    "/api/v1/vpools/:name/shrink",
    { config: manage, schema: { tags: ["vpools"], summary: "take a vPool off a storage router; 409 IN_USE while it serves vDisks of the vPool", params: NameParams, body: RouterBody, querystring: NoQuery } },
    async (request) => model.shrinkVPool(request.params.name, request.body.storageRouter, request.body.version),
  );

  app.delete<{ Params: Static<typeof NameParams>; Querystring: Static<typeof VersionQuery> }>(
    "/api/v1/vpools/:name",
    { config: manage, schema: { tags: ["vpools"], summary: "delete an empty vPool; 409 IN_USE while it has vDisks", params: NameParams, querystring: VersionQuery, body: NoBody } },
    async (request, reply) => {
      await model.deleteVPool(request.params.name, request.query.version);
      return reply.status(204).send();
    },
  );

  // ---- vDisk actions ----
  // A long operation (the volume is closed and opened again, from the backend when its local data is
  // gone): refused at once (404, 409) before any task exists, else 202 with the task (its result is the vDisk).
  app.post<{ Params: Static<typeof VDiskParams>; Body: Static<typeof RestartBody> }>(
    "/api/v1/vdisks/:name/restart",
    {
      config: { role: "write" },
      schema: {
        tags: ["vdisks"],
        summary: "restart a vDisk's volume (e.g. after a halt), as a task: 202 with the task to poll (its result is the vDisk); 409 at once while a client is connected, unless force, or while a scrub runs",
        params: VDiskParams, body: RestartBody, response: { 202: TaskReply }, querystring: NoQuery
      },
    },
    async (request, reply) => {
      const { name } = request.params;
      const force = request.body?.force === true;
      vdisks.checkRestart(name, force);
      return startTask(tasks, request, reply, {
        kind: "vdisk.restart", target: name, unit: "steps", total: restartSteps,
        run: (task) => vdisks.restart(name, force, (step, detail) => task.progress({ done: step, detail })),
      });
    },
  );

  // ---- backends ----
  app.get("/api/v1/backends", { schema: { tags: ["backends"], summary: "backends: the ALBA backend and local backends, with their storage routers and vPools", querystring: NoQuery } }, async () => ({
    backends: await model.listBackends(),
  }));

  app.get<{ Params: Static<typeof BackendParams> }>(
    "/api/v1/backends/:name",
    { schema: { tags: ["backends"], summary: "a backend with usage, presets (safety of each policy), ASD nodes and ASDs", params: BackendParams, querystring: NoQuery } },
    async (request) => model.getBackend(request.params.name),
  );

  // ---- domains ----
  app.get("/api/v1/domains", { schema: { tags: ["domains"], summary: "domains with their storage routers and ASDs", querystring: NoQuery } }, async () => ({ domains: await model.listDomains() }));

  app.get<{ Params: Static<typeof NameParams> }>("/api/v1/domains/:name", { schema: { tags: ["domains"], summary: "a domain", params: NameParams, querystring: NoQuery } }, async (request) => model.getDomain(request.params.name));

  app.post<{ Body: Static<typeof CreateDomainBody> }>("/api/v1/domains", { config: manage, schema: { tags: ["domains"], summary: "create a domain", body: CreateDomainBody, querystring: NoQuery } }, async (request, reply) =>
    reply.status(201).send(await model.createDomain(request.body.name)),
  );

  app.delete<{ Params: Static<typeof NameParams>; Querystring: Static<typeof VersionQuery> }>(
    "/api/v1/domains/:name",
    { config: manage, schema: { tags: ["domains"], summary: "delete a domain; 409 IN_USE while storage routers or ASDs are in it", params: NameParams, querystring: VersionQuery, body: NoBody } },
    async (request, reply) => {
      await model.deleteDomain(request.params.name, request.query.version);
      return reply.status(204).send();
    },
  );

  app.post<{ Params: Static<typeof NameParams>; Body: Static<typeof AssignBody> }>(
    "/api/v1/domains/:name/assign",
    { config: manage, schema: { tags: ["domains"], summary: "put storage routers and ASDs in a domain (an ASD moves from its previous one)", params: NameParams, body: AssignBody, querystring: NoQuery } },
    async (request) => model.assignDomain(request.params.name, request.body, true, request.body.version),
  );

  app.post<{ Params: Static<typeof NameParams>; Body: Static<typeof AssignBody> }>(
    "/api/v1/domains/:name/unassign",
    { config: manage, schema: { tags: ["domains"], summary: "take storage routers and ASDs out of a domain", params: NameParams, body: AssignBody, querystring: NoQuery } },
    async (request) => model.assignDomain(request.params.name, request.body, false, request.body.version),
  );
}
