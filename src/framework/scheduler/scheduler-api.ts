// /api/v1/schedule: the scheduled tasks, their schedules (read; change with manage), their history
// (read), and running one now (write; as a task, tasks/task-api.ts, when the node records runs as tasks).

import type { FastifyInstance } from "fastify";
import { Type, type Static } from "@sinclair/typebox";
import { NoBody, NoQuery } from "../schemas.js";
import { intervalSecondsMax, intervalSecondsMin } from "./schedule.js";
import type { Scheduler } from "./scheduler.js";
import { requester, startTask } from "../tasks/task-api.js";

const TaskParams = Type.Object({ task: Type.String({ minLength: 1, maxLength: 64 }) });
const ScheduleBody = Type.Union([
  Type.Object({ intervalSeconds: Type.Integer({ minimum: intervalSecondsMin, maximum: intervalSecondsMax }), offsetSeconds: Type.Integer({ minimum: 0 }) }, { additionalProperties: false }),
  Type.Object({ enabled: Type.Literal(false) }, { additionalProperties: false }),
  Type.Object({ default: Type.Literal(true) }, { additionalProperties: false }),
]);
const HistoryQuery = Type.Object({ task: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })), limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 })) }, { additionalProperties: false });

export function registerSchedulerRoutes(app: FastifyInstance, scheduler: Scheduler): void {
  app.get("/api/v1/schedule", { schema: { tags: ["schedule"], summary: "scheduled tasks: schedule, last slot, next run, and which node leads", querystring: NoQuery } }, async () => ({
    leader: scheduler.isLeader(),
    tasks: await scheduler.status(),
  }));

  app.put<{ Params: Static<typeof TaskParams>; Body: Static<typeof ScheduleBody> }>(
    "/api/v1/schedule/:task",
    { config: { role: "manage" }, schema: { tags: ["schedule"], summary: "set a task's schedule (interval and offset in seconds, UTC-aligned), turn it off, or restore its default", params: TaskParams, body: ScheduleBody, querystring: NoQuery } },
    async (request) => {
      const body = request.body;
      return scheduler.setSchedule(request.params.task, "enabled" in body ? null : "default" in body ? "default" : { intervalSeconds: body.intervalSeconds, offsetSeconds: body.offsetSeconds });
    },
  );

  app.get<{ Querystring: Static<typeof HistoryQuery> }>(
    "/api/v1/schedule/history",
    { schema: { tags: ["schedule"], summary: "the latest runs, newest first", querystring: HistoryQuery } },
    async (request) => ({ runs: await scheduler.history(request.query.task, request.query.limit ?? 20) }),
  );

  app.post<{ Params: Static<typeof TaskParams> }>(
    "/api/v1/schedule/:task/run",
    { config: { role: "write" }, schema: { tags: ["schedule"], summary: "run a task now on this node, as a task: 202 with the task to poll (its result is the run's summary; the run is in the history once the task has finished)", params: TaskParams, querystring: NoQuery, body: NoBody } },
    async (request, reply) => {
      const tasks = scheduler.taskService;
      if (tasks === undefined) return scheduler.runNow(request.params.task, requester(request), String(request.id));
      return startTask(tasks, request, reply, scheduler.manualRunSpec(request.params.task));
    },
  );
}
