// /api/v1/alba: the ALBA backend for operators (the original's `alba` CLI and the framework's ALBA
// plugin): ASDs (list, add by address, claim, decommission), presets (list, add), namespaces (list,
// verify), objects (paged list, a manifest with where each fragment is) and maintenance (status, run a
// pass). Every body and parameter is checked by its schema first and then by the manager's own
// validation, before anything changes (bad input → 400 INVALID_ARGUMENT, nothing changed).
// A verify, a maintenance pass and an ASD's drain after its decommission run as tasks
// (tasks/task-api.ts): 202 with the task to poll.
// Roles (auth/auth-plugin.ts): reads need read; verify and a maintenance pass need write; adding,
// claiming and decommissioning ASDs and adding presets change the backend's layout and need manage.
// Imported by api.ts only.

import type { FastifyInstance } from "fastify";
import { Type, type Static } from "@sinclair/typebox";
import { NoBody, NoQuery } from "./schemas.js";
import { OvsError } from "../base/index.js";
import type { PresetRecord } from "../alba/index.js";
import { objectPageMax, type AlbaService } from "./alba-service.js";
import { TaskReply, startTask } from "./tasks/task-api.js";
import type { TaskService } from "./tasks/task-service.js";

const AsdIdParams = Type.Object({ asdId: Type.String({ pattern: "^[0-9a-f]{32}$", description: "32 lowercase hex digits" }) });
const AddAsdBody = Type.Object(
  {
    host: Type.String({ minLength: 1, maxLength: 255, pattern: "^[A-Za-z0-9.:\\-\\[\\]]+$" }),
    port: Type.Integer({ minimum: 1, maximum: 65535 }),
    nodeId: Type.Optional(Type.String({ minLength: 1, maxLength: 255, pattern: "^[A-Za-z0-9._:-]+$" })),
  },
  { additionalProperties: false },
);
const PolicySchema = Type.Object(
  { k: Type.Integer({ minimum: 1, maximum: 32 }), m: Type.Integer({ minimum: 0, maximum: 16 }), c: Type.Integer({ minimum: 1, maximum: 48 }), x: Type.Integer({ minimum: 1, maximum: 48 }) },
  { additionalProperties: false },
);
const AddPresetBody = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 255 }),
    policies: Type.Array(PolicySchema, { minItems: 1, maxItems: 16 }),
    fragmentSizeMaxBytes: Type.Optional(Type.Integer({ minimum: 16 })),
    // The kinds are checked by validatePreset, whose messages name what is accepted.
    compression: Type.Optional(Type.String({ minLength: 1, maxLength: 32 })),
    encryption: Type.Optional(Type.String({ minLength: 1, maxLength: 32 })),
    encryptionKeyHex: Type.Optional(Type.String({ maxLength: 128 })),
    fragmentChecksum: Type.Optional(Type.String({ minLength: 1, maxLength: 32 })),
  },
  { additionalProperties: false },
);
const NamespaceParams = Type.Object({ namespace: Type.String({ minLength: 1, maxLength: 255 }) });
const ObjectParams = Type.Object({ namespace: Type.String({ minLength: 1, maxLength: 255 }), name: Type.String({ minLength: 1, maxLength: 1024 }) });
const ObjectsQuery = Type.Object(
  { after: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })), limit: Type.Optional(Type.Integer({ minimum: 1, maximum: objectPageMax })) },
  { additionalProperties: false },
);

const manage = { role: "manage" } as const;

export function registerAlbaRoutes(app: FastifyInstance, alba: AlbaService | undefined, tasks: TaskService): void {
  const need = (): AlbaService => {
    if (alba === undefined) throw new OvsError("UNAVAILABLE", "This node runs the local backend (--backend local); the ALBA commands need the ALBA backend.");
    return alba;
  };

  app.get("/api/v1/alba/asds", { schema: { tags: ["alba"], summary: "ASDs of the backend with their state, usage and health", querystring: NoQuery } }, async () => ({ asds: await need().listAsds() }));

  app.post<{ Body: Static<typeof AddAsdBody> }>("/api/v1/alba/asds", { config: manage, schema: { tags: ["alba"], summary: "add an ASD by address (it is claimed for this backend)", body: AddAsdBody, querystring: NoQuery } }, async (request, reply) =>
    reply.status(201).send(await need().addAsd(request.body.host, request.body.port, request.body.nodeId)),
  );

  app.post<{ Params: Static<typeof AsdIdParams> }>("/api/v1/alba/asds/:asdId/claim", { config: manage, schema: { tags: ["alba"], summary: "claim a known ASD for this backend", params: AsdIdParams, querystring: NoQuery, body: NoBody } }, async (request) =>
    need().claimAsd(request.params.asdId),
  );

  app.post<{ Params: Static<typeof AsdIdParams> }>(
    "/api/v1/alba/asds/:asdId/decommission",
    {
      config: manage,
      schema: {
        tags: ["alba"], params: AsdIdParams, querystring: NoQuery, body: NoBody, response: { 202: TaskReply },
        summary: "decommission an ASD: marked at once (no new fragments), then drained as a task: 202 with the task to poll (progress: fragments moved); its result is the drain report; 404/409 at once for an unknown or already decommissioned ASD",
      },
    },
    async (request, reply) => {
      const { asdId } = request.params;
      const service = need();
      await service.decommissionAsd(asdId);
      return startTask(tasks, request, reply, {
        kind: "alba.decommission", target: asdId, unit: "fragments", cancellable: true,
        run: (task) => service.drainAsd(asdId, { signal: task.signal, onProgress: (done, total, detail) => task.progress({ done, total, detail }) }),
      });
    },
  );

  app.get("/api/v1/alba/presets", { schema: { tags: ["alba"], summary: "presets: policies, compression, encryption, checksums", querystring: NoQuery } }, async () => ({ presets: await need().listPresets() }));

  app.post<{ Body: Static<typeof AddPresetBody> }>("/api/v1/alba/presets", { config: manage, schema: { tags: ["alba"], summary: "add a preset", body: AddPresetBody, querystring: NoQuery } }, async (request, reply) => {
    const body = request.body;
    const preset = await need().addPreset({
      name: body.name,
      policies: body.policies,
      fragmentSizeMaxBytes: body.fragmentSizeMaxBytes ?? 1024 * 1024,
      compression: (body.compression ?? "none") as PresetRecord["compression"],
      encryption: (body.encryption ?? "none") as PresetRecord["encryption"],
      ...(body.encryptionKeyHex === undefined ? {} : { encryptionKeyHex: body.encryptionKeyHex }),
      fragmentChecksum: (body.fragmentChecksum ?? "crc32c") as PresetRecord["fragmentChecksum"],
    });
    return reply.status(201).send(preset);
  });

  app.get("/api/v1/alba/namespaces", { schema: { tags: ["alba"], summary: "namespaces (one per vDisk) with their preset", querystring: NoQuery } }, async () => ({ namespaces: await need().listNamespaces() }));

  app.post<{ Params: Static<typeof NamespaceParams> }>(
    "/api/v1/alba/namespaces/:namespace/verify",
    { config: { role: "write" }, schema: { tags: ["alba"], summary: "verify every object of a namespace (checksums, redundancy) as a task: 202 with the task to poll; its result is the report", params: NamespaceParams, querystring: NoQuery, body: NoBody } },
    async (request, reply) => {
      const { namespace } = request.params;
      await need().requireNamespace(namespace);
      return startTask(tasks, request, reply, {
        kind: "alba.verify", target: namespace, unit: "objects", cancellable: true,
        run: (task) => need().verifyNamespace(namespace, { signal: task.signal, onProgress: (done, total, detail) => task.progress({ done, total, detail }) }),
      });
    },
  );

  app.get<{ Params: Static<typeof NamespaceParams>; Querystring: Static<typeof ObjectsQuery> }>(
    "/api/v1/alba/namespaces/:namespace/objects",
    { schema: { tags: ["alba"], summary: "objects of a namespace, one page at a time", params: NamespaceParams, querystring: ObjectsQuery } },
    async (request) => need().listObjects(request.params.namespace, { after: request.query.after, limit: request.query.limit ?? 100 }),
  );

  app.get<{ Params: Static<typeof ObjectParams> }>("/api/v1/alba/namespaces/:namespace/objects/:name", { schema: { tags: ["alba"], summary: "an object's manifest with where each fragment is", params: ObjectParams, querystring: NoQuery } }, async (request) =>
    need().objectManifest(request.params.namespace, request.params.name),
  );

  app.get("/api/v1/alba/maintenance", { schema: { tags: ["alba"], summary: "maintenance status: repair, rebalance, garbage collection", querystring: NoQuery } }, async () => need().maintenanceStatus());

  app.post("/api/v1/alba/maintenance/pass", { config: { role: "write" }, schema: { tags: ["alba"], summary: "run one maintenance pass now, as a task: 202 with the task to poll; its result is the maintenance status", querystring: NoQuery, body: NoBody } }, async (request, reply) => {
    need().requireReady();
    return startTask(tasks, request, reply, {
      kind: "alba.maintenance-pass", target: "", unit: "steps", cancellable: true,
      run: (task) => need().runMaintenancePass({ signal: task.signal, onProgress: (done, total, step) => task.progress({ done, total, detail: step }) }),
    });
  });
}
