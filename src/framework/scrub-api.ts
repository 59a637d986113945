// REST route for scrubbing a vDisk (one plugin, registered by api.ts; errors go through api.ts's
// handler: JSON { error: { code, message } }, bad bodies → 400 with nothing changed).
//
//   POST /api/v1/vdisks/:name/scrub   { threshold?, bandwidth? } → 202 with a task; its result is the report
//
// A long operation, so a task (tasks/): bad options and an unknown vDisk are refused before any task
// exists (400, 404); the task's progress follows the scrub's phases (the vDisk serves I/O meanwhile). threshold is
// the live fraction under which a SCO is rewritten, in (0, 1] (default 0.5); bandwidth is bytes per
// second or a size per second such as 64M (default 64M; 0 = no limit).

import type { FastifyInstance } from "fastify";
import { Type, type Static } from "@sinclair/typebox";
import { NoQuery } from "./schemas.js";
import { parseSizeBytes } from "../base/index.js";
import { scrubLimits } from "../volume/index.js";
import type { VDiskService } from "./vdisk-service.js";
import { startTask } from "./tasks/task-api.js";
import type { TaskService } from "./tasks/task-service.js";

const NameParams = Type.Object({ name: Type.String({ minLength: 1, maxLength: 64 }) });
const ScrubBody = Type.Object(
  {
    threshold: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1, description: `SCOs whose live fraction is under it are rewritten (default ${scrubLimits.thresholdDefault})` })),
    bandwidth: Type.Optional(
      Type.Union([Type.String({ minLength: 1, maxLength: 32 }), Type.Integer({ minimum: 0 })], {
        description: "backend bytes per second the scrub may read and write, or a size per second such as 64M; 0 = no limit (default 64M)",
      }),
    ),
  },
  { additionalProperties: false },
);

export function registerScrubRoutes(app: FastifyInstance, vdisks: VDiskService, tasks: TaskService): void {
  app.post<{ Params: Static<typeof NameParams>; Body: Static<typeof ScrubBody> }>(
    "/api/v1/vdisks/:name/scrub",
    {
      schema: { tags: ["vdisks"], summary: "scrub a vDisk: rewrite SCOs under a live-fraction threshold and free the garbage on the backend; runs as a task (202) whose result is the report", params: NameParams, body: ScrubBody, querystring: NoQuery },
      config: { role: "write" },
    },
    async (request, reply) => {
      const { name } = request.params;
      const { threshold, bandwidth } = request.body;
      const options = {
        ...(threshold !== undefined ? { threshold } : {}),
        ...(bandwidth !== undefined ? { bandwidthBytesPerSecond: typeof bandwidth === "number" ? bandwidth : parseSizeBytes(bandwidth.replace(/\/s$/i, "")) } : {}),
      };
      vdisks.checkScrub(name, options);
      return startTask(tasks, request, reply, {
        kind: "vdisk.scrub", target: name, unit: "items",
        run: (task) => vdisks.scrub(name, options, (progress) => task.progress({ done: progress.done, total: progress.total, detail: `${progress.phase} (round ${progress.round})` })),
      });
    },
  );
}
