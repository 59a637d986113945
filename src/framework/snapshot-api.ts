// REST routes for snapshots, rollback, clones and templates of a vDisk (one plugin, registered by
// api.ts; errors go through api.ts's handler: JSON { error: { code, message } }, bad bodies → 400 with
// nothing changed).
//
//   GET    /api/v1/vdisks/:name/snapshots              list, with state "stored" | "pending"
//   POST   /api/v1/vdisks/:name/snapshots              { name, sticky?, metadata? } → 201
//   DELETE /api/v1/vdisks/:name/snapshots/:snapshot    → 204
//   POST   /api/v1/vdisks/:name/rollback               { snapshot } → 202 with a task (no NBD client may be connected)
//   POST   /api/v1/vdisks/:name/clones                 { name, snapshot? } → 201 (snapshot implied for a template)
//   POST   /api/v1/vdisks/:name/template               set as template → 202 with a task (409 at once with clones)

import type { FastifyInstance } from "fastify";
import { Type, type Static } from "@sinclair/typebox";
import { NoBody, NoQuery } from "./schemas.js";
import { snapshotLimits } from "../volume/index.js";
import { templateSteps, type VDiskService } from "./vdisk-service.js";
import { TaskReply, startTask } from "./tasks/task-api.js";
import type { TaskService } from "./tasks/task-service.js";

const NameParams = Type.Object({ name: Type.String({ minLength: 1, maxLength: 64 }) });
const SnapshotParams = Type.Object({ name: Type.String({ minLength: 1, maxLength: 64 }), snapshot: Type.String({ minLength: 1, maxLength: 64 }) });
const SnapshotName = Type.String({ minLength: 1, maxLength: snapshotLimits.nameBytesMax });
const CreateSnapshotBody = Type.Object(
  { name: SnapshotName, sticky: Type.Optional(Type.Boolean()), metadata: Type.Optional(Type.String({ maxLength: snapshotLimits.metadataBytesMax })) },
  { additionalProperties: false },
);
const RollbackBody = Type.Object({ snapshot: SnapshotName }, { additionalProperties: false });
const CloneBody = Type.Object({ name: Type.String({ minLength: 1, maxLength: 64 }), snapshot: Type.Optional(SnapshotName) }, { additionalProperties: false });

export function registerSnapshotRoutes(app: FastifyInstance, vdisks: VDiskService, tasks: TaskService): void {
  app.get<{ Params: Static<typeof NameParams> }>("/api/v1/vdisks/:name/snapshots", { schema: { tags: ["vdisks"], summary: "snapshots of a vDisk, each with its state (stored or pending)", params: NameParams, querystring: NoQuery } }, async (request) => ({
    snapshots: vdisks.listSnapshots(request.params.name),
  }));

  app.post<{ Params: Static<typeof NameParams>; Body: Static<typeof CreateSnapshotBody> }>(
    "/api/v1/vdisks/:name/snapshots",
    { schema: { tags: ["vdisks"], summary: "take a snapshot (a cut in the TLog list; constant time)", params: NameParams, body: CreateSnapshotBody, querystring: NoQuery } },
    async (request, reply) => {
      const { name, sticky, metadata } = request.body;
      const info = await vdisks.createSnapshot(request.params.name, name, { ...(sticky !== undefined ? { sticky } : {}), ...(metadata !== undefined ? { metadata } : {}) });
      return reply.status(201).send(info);
    },
  );

  app.delete<{ Params: Static<typeof SnapshotParams> }>("/api/v1/vdisks/:name/snapshots/:snapshot", { schema: { tags: ["vdisks"], summary: "delete a snapshot (its TLogs merge into the next); 409 if clones use it", params: SnapshotParams, querystring: NoQuery, body: NoBody } }, async (request, reply) => {
    await vdisks.deleteSnapshot(request.params.name, request.params.snapshot);
    return reply.status(204).send();
  });

  app.post<{ Params: Static<typeof NameParams>; Body: Static<typeof RollbackBody> }>(
    "/api/v1/vdisks/:name/rollback",
    { schema: { tags: ["vdisks"], summary: "roll back to a stored snapshot, as a task: 202 with the task to poll (its result is the vDisk); 409 at once while a client is connected", params: NameParams, body: RollbackBody, querystring: NoQuery } },
    async (request, reply) => {
      const { name } = request.params;
      const { snapshot } = request.body;
      vdisks.checkRollback(name, snapshot);
      return startTask(tasks, request, reply, {
        kind: "vdisk.rollback", target: name, unit: "steps", total: 1,
        run: async (task) => {
          task.progress({ done: 0, detail: `rolling back to ${snapshot}` });
          return vdisks.rollback(name, snapshot);
        },
      });
    },
  );

  app.post<{ Params: Static<typeof NameParams>; Body: Static<typeof CloneBody> }>(
    "/api/v1/vdisks/:name/clones",
    { schema: { tags: ["vdisks"], summary: "create a linked clone of a stored snapshot (or of a template)", params: NameParams, body: CloneBody, querystring: NoQuery } },
    async (request, reply) => reply.status(201).send(await vdisks.clone(request.params.name, request.body.snapshot, request.body.name)),
  );

  app.post<{ Params: Static<typeof NameParams> }>(
    "/api/v1/vdisks/:name/template",
    {
      schema: {
        tags: ["vdisks"], params: NameParams, querystring: NoQuery, body: NoBody, response: { 202: TaskReply },
        summary: "make the vDisk a template (read-only, one snapshot kept, its write buffer uploaded), as a task: 202 with the task to poll (its result is the vDisk); 409 at once with clones or when it is a template already",
      },
    },
    async (request, reply) => {
      const { name } = request.params;
      vdisks.checkSetAsTemplate(name);
      return startTask(tasks, request, reply, {
        kind: "vdisk.template", target: name, unit: "steps", total: templateSteps,
        run: (task) => vdisks.setAsTemplate(name, (step, detail) => task.progress({ done: step, detail })),
      });
    },
  );
}
