// The auth routes: the OAuth2 token endpoint (password grant for people, client_credentials for
// programs; JSON or form-encoded; client credentials in the body or HTTP Basic), revocation, who am I,
// users, clients and the auth settings. The token endpoint is public and rate-limited per remote
// address; user and client management needs role manage (a user may change their own password).

import type { FastifyInstance, FastifyRequest } from "fastify";
import { Type, type Static } from "@sinclair/typebox";
import { NoBody, NoQuery } from "../schemas.js";
import { OvsError } from "../../base/index.js";
import { RateLimiter } from "./rate-limiter.js";
import { generateSecret, passwordBytesMax, passwordBytesMin } from "./passwords.js";
import { roleNames, tokenRequestsPerMinuteMax, tokenTtlSecondsMax, tokenTtlSecondsMin, type AuthService, type Role } from "./auth-service.js";

const Name = Type.String({ minLength: 1, maxLength: 64, pattern: "^[A-Za-z0-9][A-Za-z0-9._-]*$" });
const Password = Type.String({ minLength: passwordBytesMin, maxLength: passwordBytesMax });
const RoleSchema = Type.Union(roleNames.map((role) => Type.Literal(role)), { description: "a role level; each includes the ones below it: read < write < manage" });
const ErrorReply = Type.Object({ error: Type.Object({ code: Type.String(), message: Type.String() }) }, { description: "an error: a stable code and one sentence" });

const TokenBody = Type.Object(
  {
    grant_type: Type.Union([Type.Literal("password"), Type.Literal("client_credentials")]),
    username: Type.Optional(Type.String({ maxLength: 64 })),
    password: Type.Optional(Type.String({ maxLength: passwordBytesMax })),
    client_id: Type.Optional(Type.String({ maxLength: 64 })),
    client_secret: Type.Optional(Type.String({ maxLength: passwordBytesMax })),
    scope: Type.Optional(Type.String({ maxLength: 64, description: "space-separated roles to narrow the token to" })),
  },
  { additionalProperties: false },
);
const TokenReply = Type.Object({ access_token: Type.String(), token_type: Type.Literal("Bearer"), expires_in: Type.Integer(), scope: Type.String() });
const CreateUserBody = Type.Object({ username: Name, password: Type.Optional(Password), role: RoleSchema }, { additionalProperties: false });
const UserParams = Type.Object({ username: Name });
const PasswordBody = Type.Object({ password: Password }, { additionalProperties: false });
const CreateClientBody = Type.Object({ clientId: Name, role: RoleSchema }, { additionalProperties: false });
const ClientParams = Type.Object({ clientId: Name });
const Ttl = Type.Integer({ minimum: tokenTtlSecondsMin, maximum: tokenTtlSecondsMax });
const SettingsBody = Type.Object(
  { userTokenTtlSeconds: Type.Optional(Ttl), clientTokenTtlSeconds: Type.Optional(Ttl), tokenRequestsPerMinute: Type.Optional(Type.Integer({ minimum: 1, maximum: tokenRequestsPerMinuteMax })) },
  { additionalProperties: false, minProperties: 1 },
);

function parseScope(scope: string | undefined): Role[] | undefined {
  if (scope === undefined || scope.trim() === "") return undefined;
  const roles = scope.trim().split(/\s+/);
  for (const role of roles) {
    if (!(roleNames as readonly string[]).includes(role)) throw new OvsError("INVALID_ARGUMENT", `scope: "${role}" is not a role (read, write or manage).`);
  }
  return roles as Role[];
}

/** client_id and client_secret from an HTTP Basic header (RFC 6749 §2.3.1: each part form-encoded). */
function basicCredentials(request: FastifyRequest): { id: string; secret: string } | undefined {
  const match = /^Basic +([A-Za-z0-9+/=]+) *$/i.exec(request.headers.authorization ?? "");
  if (!match) return undefined;
  const decoded = Buffer.from(match[1]!, "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  if (colon < 0) throw new OvsError("INVALID_ARGUMENT", "the Basic credentials must be client_id:client_secret.");
  const unescape = (text: string): string => decodeURIComponent(text.replace(/\+/g, " "));
  return { id: unescape(decoded.slice(0, colon)), secret: unescape(decoded.slice(colon + 1)) };
}

export function registerAuthRoutes(app: FastifyInstance, auth: AuthService, now: () => number): void {
  const limiter = new RateLimiter(now);

  // OAuth2 clients send form-encoded bodies (RFC 6749 §4.3.2, §4.4.2).
  app.addContentTypeParser("application/x-www-form-urlencoded", { parseAs: "string", bodyLimit: 64 * 1024 }, (_request, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(body as string)));
  });

  app.post<{ Body: Static<typeof TokenBody> }>(
    "/api/v1/oauth/token",
    {
      config: { role: "public" },
      schema: {
        tags: ["auth"],
        summary: "get a bearer token (password grant for people, client_credentials for programs)",
        body: TokenBody,
        response: { 200: TokenReply, 400: ErrorReply, 401: ErrorReply, 429: ErrorReply }, querystring: NoQuery
      },
      onRequest: async (request, reply) => {
        const retryAfterSeconds = limiter.take(request.ip, (await auth.settings()).tokenRequestsPerMinute);
        if (retryAfterSeconds > 0) {
          reply.header("retry-after", String(retryAfterSeconds));
          throw new OvsError("RATE_LIMITED", `too many token requests from ${request.ip}; try again in ${retryAfterSeconds} s.`);
        }
      },
    },
    async (request) => {
      const body = request.body;
      const scope = parseScope(body.scope);
      if (body.grant_type === "password") {
        request.auditSubject = `user:${body.username ?? "-"}`;
        if (body.username === undefined || body.password === undefined) throw new OvsError("INVALID_ARGUMENT", "the password grant needs username and password.");
        return auth.issueForPassword(body.username, body.password, scope);
      }
      const basic = basicCredentials(request);
      const id = basic?.id ?? body.client_id;
      const secret = basic?.secret ?? body.client_secret;
      request.auditSubject = `client:${id ?? "-"}`;
      if (id === undefined || secret === undefined) throw new OvsError("INVALID_ARGUMENT", "the client_credentials grant needs client_id and client_secret (in the body or as HTTP Basic).");
      return auth.issueForClient(id, secret, scope);
    },
  );

  app.delete("/api/v1/oauth/token", { config: { role: "read" }, schema: { tags: ["auth"], summary: "revoke the token of this request (log out)", querystring: NoQuery, body: NoBody } }, async (request, reply) => {
    const token = /^Bearer +([^\s]+)/i.exec(request.headers.authorization ?? "")?.[1];
    if (token !== undefined) await auth.revoke(token);
    return reply.status(204).send();
  });

  app.get("/api/v1/oauth/me", { config: { role: "read" }, schema: { tags: ["auth"], summary: "who this token belongs to and its roles", querystring: NoQuery } }, async (request) => request.principal);

  // ---- users ----
  app.get("/api/v1/users", { config: { role: "manage" }, schema: { tags: ["users"], summary: "list users", querystring: NoQuery } }, async () => ({ users: await auth.listUsers() }));

  app.post<{ Body: Static<typeof CreateUserBody> }>(
    "/api/v1/users",
    { config: { role: "manage" }, schema: { tags: ["users"], summary: "create a user (a password is generated and returned once when none is given)", body: CreateUserBody, querystring: NoQuery } },
    async (request, reply) => {
      const password = request.body.password ?? generateSecret();
      const user = await auth.createUser(request.body.username, password, request.body.role);
      return reply.status(201).send(request.body.password === undefined ? { ...user, password } : user);
    },
  );

  app.delete<{ Params: Static<typeof UserParams> }>(
    "/api/v1/users/:username",
    { config: { role: "manage" }, schema: { tags: ["users"], summary: "delete a user (not the last one with role manage)", params: UserParams, querystring: NoQuery, body: NoBody } },
    async (request, reply) => {
      await auth.deleteUser(request.params.username);
      return reply.status(204).send();
    },
  );

  app.put<{ Params: Static<typeof UserParams>; Body: Static<typeof PasswordBody> }>(
    "/api/v1/users/:username/password",
    {
      // Role read, so people can change their own password; someone else's needs manage (checked below).
      config: { role: "read" },
      schema: { tags: ["users"], summary: "change a password (your own, or anyone's with role manage); ends the user's tokens", params: UserParams, body: PasswordBody, querystring: NoQuery },
    },
    async (request, reply) => {
      const principal = request.principal!;
      const self = principal.kind === "user" && principal.name === request.params.username;
      if (!self && !principal.roles.includes("manage")) throw new OvsError("FORBIDDEN", "role manage required to change another user's password.");
      await auth.setPassword(request.params.username, request.body.password);
      return reply.status(204).send();
    },
  );

  // ---- clients ----
  app.get("/api/v1/clients", { config: { role: "manage" }, schema: { tags: ["clients"], summary: "list OAuth2 clients (programs)", querystring: NoQuery } }, async () => ({ clients: await auth.listClients() }));

  app.post<{ Body: Static<typeof CreateClientBody> }>(
    "/api/v1/clients",
    { config: { role: "manage" }, schema: { tags: ["clients"], summary: "create a client; its secret is returned once", body: CreateClientBody, querystring: NoQuery } },
    async (request, reply) => reply.status(201).send(await auth.createClient(request.body.clientId, request.body.role)),
  );

  app.delete<{ Params: Static<typeof ClientParams> }>(
    "/api/v1/clients/:clientId",
    { config: { role: "manage" }, schema: { tags: ["clients"], summary: "delete a client (its tokens stop working)", params: ClientParams, querystring: NoQuery, body: NoBody } },
    async (request, reply) => {
      await auth.deleteClient(request.params.clientId);
      return reply.status(204).send();
    },
  );

  // ---- settings ----
  app.get("/api/v1/auth/settings", { config: { role: "manage" }, schema: { tags: ["auth"], summary: "token lifetimes and the token request rate limit", querystring: NoQuery } }, async () => auth.settings());

  app.patch<{ Body: Static<typeof SettingsBody> }>(
    "/api/v1/auth/settings",
    { config: { role: "manage" }, schema: { tags: ["auth"], summary: "change token lifetimes or the token request rate limit", body: SettingsBody, querystring: NoQuery } },
    async (request) => auth.setSettings(request.body),
  );
}
