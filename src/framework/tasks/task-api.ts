// /api/v1/tasks: the long operations of the cluster (task-service.ts), and startTask(), the helper with
// which any route runs its operation as a task: it answers 202 Accepted with the task record and a
// Location header naming /api/v1/tasks/<id>, which the client polls until the state is succeeded,
// failed or cancelled (the result, or the error { code, message }, is in the record).
//
//   GET  /api/v1/tasks?state=&kind=&limit=&after=   newest first, one page (after: the last id seen)   read
//   GET  /api/v1/tasks/:id                          one task                                           read
//   POST /api/v1/tasks/:id/cancel                   cancel a queued task, or a running cancellable one write
//
// Imported by api.ts and by the plugins whose routes start tasks.

import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { Type, type Static } from "@sinclair/typebox";
import { NoBody, NoQuery } from "../schemas.js";
import { OvsError, type Logger } from "../../base/index.js";
import { taskStates, type TaskRecord } from "./task-record.js";
import { taskLimits, type TaskService, type TaskSpec } from "./task-service.js";

const IdParams = Type.Object({ id: Type.String({ pattern: "^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", description: "a task id (UUID version 7)" }) });
const ListQuery = Type.Object(
  {
    state: Type.Optional(Type.Union(taskStates.map((state) => Type.Literal(state)))),
    kind: Type.Optional(Type.String({ minLength: 1, maxLength: 128, pattern: "^[a-z0-9.:-]+$" })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: taskLimits.listLimitMax })),
    after: Type.Optional(IdParams.properties.id),
  },
  { additionalProperties: false },
);

/**
 * The task record (task-record.ts) as a response schema: what a route that starts a task answers with
 * 202 (its Location header names /api/v1/tasks/<id>), for the OpenAPI document.
 */
export const TaskReply = Type.Object(
  {
    version: Type.Integer(),
    id: Type.String({ description: "UUID version 7; poll GET /api/v1/tasks/<id>" }),
    kind: Type.String(),
    target: Type.String(),
    node: Type.String({ description: "the storage router that runs it" }),
    state: Type.Union(taskStates.map((state) => Type.Literal(state))),
    progress: Type.Object({ done: Type.Integer(), total: Type.Optional(Type.Integer()), unit: Type.String(), detail: Type.Optional(Type.String()) }),
    createdAt: Type.String(),
    startedAt: Type.Optional(Type.String()),
    finishedAt: Type.Optional(Type.String()),
    startedBy: Type.String(),
    requestId: Type.Optional(Type.String()),
    cancellable: Type.Boolean(),
    result: Type.Optional(Type.Unknown({ description: "what the operation returned, once succeeded" })),
    error: Type.Optional(Type.Object({ code: Type.String(), message: Type.String() })),
  },
  { description: "the task (202 Accepted; Location: /api/v1/tasks/<id>)" },
);

/** Who started a request's task: its principal, as the audit log names it. */
export function requester(request: FastifyRequest): string {
  const principal = request.principal;
  return principal === undefined ? "-" : `${principal.kind}:${principal.name}`;
}

/**
 * Runs `spec` as a task started by this request and answers 202 with the task (Location: its URL). The
 * task's log lines carry the request id; the record names who started it and the request id.
 */
export async function startTask<T>(
  tasks: TaskService, request: FastifyRequest, reply: FastifyReply, spec: Omit<TaskSpec<T>, "startedBy" | "requestId" | "log">,
): Promise<FastifyReply> {
  const record = await tasks.submit({ ...spec, startedBy: requester(request), requestId: String(request.id), log: request.log as unknown as Logger });
  request.taskId = record.id;
  return reply.status(202).header("location", `/api/v1/tasks/${record.id}`).send(record);
}

declare module "fastify" {
  interface FastifyRequest {
    /** The task this request started (audit log). */
    taskId: string | undefined;
  }
}

export function registerTaskRoutes(app: FastifyInstance, tasks: TaskService): void {
  if (!app.hasRequestDecorator("taskId")) app.decorateRequest("taskId", undefined);

  app.get<{ Querystring: Static<typeof ListQuery> }>(
    "/api/v1/tasks",
    { schema: { tags: ["tasks"], summary: "tasks (long operations), newest first; filter by state and kind; page with limit and after (the last id of the previous page)", querystring: ListQuery } },
    async (request) => tasks.list({ state: request.query.state, kind: request.query.kind, after: request.query.after, limit: request.query.limit ?? 50 }),
  );

  app.get<{ Params: Static<typeof IdParams> }>(
    "/api/v1/tasks/:id",
    { schema: { tags: ["tasks"], summary: "a task: state, progress, times, who started it, and its result or error", params: IdParams, querystring: NoQuery } },
    async (request): Promise<TaskRecord> => {
      const record = await tasks.get(request.params.id);
      if (record === undefined) throw new OvsError("NOT_FOUND", `there is no task ${request.params.id} (finished tasks are kept for ${taskLimits.historyAgeMs / 86_400_000} days, at most ${taskLimits.historyMax}).`);
      return record;
    },
  );

  app.post<{ Params: Static<typeof IdParams> }>(
    "/api/v1/tasks/:id/cancel",
    { config: { role: "write" }, schema: { tags: ["tasks"], summary: "cancel a queued task, or a running one that can be cancelled (202; poll the task)", params: IdParams, querystring: NoQuery, body: NoBody } },
    async (request, reply) => reply.status(202).send(await tasks.cancel(request.params.id, requester(request))),
  );
}
