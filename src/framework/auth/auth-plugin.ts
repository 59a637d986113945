// Authentication and authorization for EVERY route of the API, installed by buildApi on the root
// instance before any route is added, so routes added anywhere later (other plugins included) are
// protected by default:
// - A route declares what it needs in its config: `config: { role: "read" | "write" | "manage" }`, or
//   `"public"` (only the token endpoint and the liveness probe are). Without a declaration GET and HEAD
//   need read and every other method needs write; a request that matches no route needs read.
// - onRequest (before the body is read): the bearer token is looked up (AuthService.authenticate);
//   no or a bad token → 401 UNAUTHENTICATED, a missing role → 403 FORBIDDEN.
// - onResponse: every request that may change something (not GET, HEAD, OPTIONS) is written to the
//   audit log with its outcome.

import type { FastifyInstance, FastifyRequest, FastifySchema } from "fastify";
import { OvsError } from "../../base/index.js";
import type { AuditLog } from "./audit-log.js";
import { roleNames, type AuthService, type Principal, type Role } from "./auth-service.js";

export type RouteAccess = Role | "public";

declare module "fastify" {
  interface FastifyContextConfig {
    /** What a caller needs for this route (see auth-plugin.ts); default read for GET/HEAD, else write. */
    role?: RouteAccess;
  }
  interface FastifyInstance {
    /** Every route added after registerAuth, with the access it needs (tests, documentation). */
    ovsRoutes: RouteEntry[];
  }
  interface FastifyRequest {
    /** The authenticated caller; undefined on public routes. */
    principal: Principal | undefined;
    /** Who the audit log names for a request without a principal (the token endpoint sets it). */
    auditSubject: string | undefined;
  }
}

export interface RouteEntry {
  method: string;
  url: string;
  access: RouteAccess;
  /** The route's schemas (api.test.ts checks every route declares its querystring and body). */
  schema?: FastifySchema;
}

const readMethods = new Set(["GET", "HEAD", "OPTIONS"]);

export function defaultRole(method: string): Role {
  return readMethods.has(method) ? "read" : "write";
}

/** The access a request needs: its route's declaration, else the method's default. */
export function requiredAccess(request: FastifyRequest): RouteAccess {
  return request.routeOptions.config?.role ?? defaultRole(request.method);
}

export function registerAuth(app: FastifyInstance, options: { auth: AuthService; audit: AuditLog | undefined }): void {
  app.decorateRequest("principal", undefined);
  app.decorateRequest("auditSubject", undefined);

  const routes: RouteEntry[] = [];
  app.decorate("ovsRoutes", routes);
  app.addHook("onRoute", (route) => {
    const role = (route.config as { role?: unknown } | undefined)?.role;
    if (role !== undefined && role !== "public" && !(roleNames as readonly unknown[]).includes(role)) {
      throw new Error(`route ${String(route.method)} ${route.url} declares an unknown role ${String(role)}`);
    }
    for (const method of Array.isArray(route.method) ? route.method : [route.method]) {
      routes.push({ method, url: route.url, access: (role as RouteAccess | undefined) ?? defaultRole(method), ...(route.schema === undefined ? {} : { schema: route.schema }) });
    }
  });

  app.addHook("onRequest", async (request) => {
    const access = requiredAccess(request);
    if (access === "public") return;
    const header = request.headers.authorization;
    if (header === undefined || header === "") {
      throw new OvsError("UNAUTHENTICATED", "not logged in: send Authorization: Bearer TOKEN (from POST /api/v1/oauth/token, or run `ovs login`).");
    }
    const match = /^Bearer +([^\s]+) *$/i.exec(header);
    if (!match) throw new OvsError("UNAUTHENTICATED", "the Authorization header must be: Bearer TOKEN.");
    const principal = await options.auth.authenticate(match[1]!);
    request.principal = principal;
    if (!principal.roles.includes(access)) {
      throw new OvsError("FORBIDDEN", `role ${access} required (${principal.kind} ${principal.name} has ${principal.roles.length > 0 ? principal.roles.join(", ") : "no role"}).`);
    }
  });

  const audit = options.audit;
  if (audit !== undefined) {
    app.addHook("onResponse", async (request, reply) => {
      if (readMethods.has(request.method)) return;
      const principal = request.principal;
      // The object a create names only in its body (POST /vdisks { name }, POST /users { username }).
      const body = request.body as Record<string, unknown> | null | undefined;
      const named = body !== null && typeof body === "object" ? (body.name ?? body.username ?? body.clientId) : undefined;
      audit.write({
        time: new Date().toISOString(),
        reqId: String(request.id),
        method: request.method,
        route: request.routeOptions.url ?? request.url.split("?")[0]!,
        url: request.url,
        status: reply.statusCode,
        subject: principal ? `${principal.kind}:${principal.name}` : (request.auditSubject ?? "-"),
        remoteAddress: request.ip,
        durationMs: Math.round(reply.elapsedTime * 1000) / 1000,
        ...((request as { taskId?: string }).taskId === undefined ? {} : { taskId: (request as { taskId?: string }).taskId }),
        ...(typeof named === "string" && named.length <= 256 ? { target: named } : {}),
      });
    });
  }
}
