// GET /api/v1/health: the detailed health check (role read), optionally one module or one test.
// The liveness probe GET /api/v1/health/live (public) is in api.ts.

import type { FastifyInstance } from "fastify";
import { Type, type Static } from "@sinclair/typebox";
import { runHealthCheck, type HealthContext } from "./healthcheck.js";

const HealthQuery = Type.Object(
  { module: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })), test: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })) },
  { additionalProperties: false },
);

export function registerHealthRoutes(app: FastifyInstance, context: () => HealthContext): void {
  app.get<{ Querystring: Static<typeof HealthQuery> }>(
    "/api/v1/health",
    { config: { role: "read" }, schema: { tags: ["health"], summary: "run the health check (all modules, one module, or one test)", querystring: HealthQuery } },
    async (request) => runHealthCheck(context(), request.query.module, request.query.module === undefined ? undefined : request.query.test),
  );
}
