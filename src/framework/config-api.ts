// /api/v1/config: the cluster store's keys for operators (the original's `ovs config` and Arakoon client
// tools): get, set, list (paged by prefix), delete, watch (NDJSON stream) and status (members, leader,
// DB size, alarms with their documented recovery). Values travel as UTF-8 text, or base64 when they are
// not valid UTF-8 (or when asked). Every route needs role manage, reads included: the store holds the
// password hashes and every record the other routes guard, so raw access to it is an administrator's.

import type { FastifyInstance } from "fastify";
import { Type, type Static } from "@sinclair/typebox";
import { NoBody, NoQuery } from "./schemas.js";
import { OvsError } from "../base/index.js";
import { rangeLimitMax, type ClusterStore } from "../store/index.js";

const Key = Type.String({ minLength: 1, maxLength: 4000 });
const KeyQuery = Type.Object({ key: Key }, { additionalProperties: false });
const ListQuery = Type.Object(
  { prefix: Type.Optional(Type.String({ maxLength: 4000 })), after: Type.Optional(Key), limit: Type.Optional(Type.Integer({ minimum: 1, maximum: rangeLimitMax })) },
  { additionalProperties: false },
);
const SetBody = Type.Object(
  { key: Key, value: Type.String({ maxLength: 2 * 1024 * 1024 }), encoding: Type.Optional(Type.Union([Type.Literal("utf8"), Type.Literal("base64")])) },
  { additionalProperties: false },
);
const WatchQuery = Type.Object({ prefix: Type.String({ maxLength: 4000 }) }, { additionalProperties: false });

export interface ConfigValue {
  key: string;
  value: string;
  encoding: "utf8" | "base64";
}

function present(key: string, value: Buffer): ConfigValue {
  const text = value.toString("utf8");
  return Buffer.from(text, "utf8").equals(value) ? { key, value: text, encoding: "utf8" } : { key, value: value.toString("base64"), encoding: "base64" };
}

const manage = { role: "manage" } as const;

export function registerConfigRoutes(app: FastifyInstance, store: ClusterStore): void {
  app.get("/api/v1/config/status", { config: manage, schema: { tags: ["config"], summary: "the cluster store's members, leader, size and alarms", querystring: NoQuery } }, async () => store.status());

  app.get<{ Querystring: Static<typeof KeyQuery> }>("/api/v1/config/value", { config: manage, schema: { tags: ["config"], summary: "a key's value", querystring: KeyQuery } }, async (request) => {
    const value = await store.get(request.query.key);
    if (value === undefined) throw new OvsError("NOT_FOUND", `there is no key ${request.query.key}.`);
    return present(request.query.key, value);
  });

  app.get<{ Querystring: Static<typeof ListQuery> }>("/api/v1/config", { config: manage, schema: { tags: ["config"], summary: "keys and values under a prefix, one page at a time", querystring: ListQuery } }, async (request) => {
    const page = await store.prefix(request.query.prefix ?? "", { after: request.query.after, limit: request.query.limit ?? 100 });
    return { entries: page.entries.map((e) => present(e.key, e.value)), more: page.more };
  });

  app.put<{ Body: Static<typeof SetBody> }>("/api/v1/config", { config: manage, schema: { tags: ["config"], summary: "set a key", body: SetBody, querystring: NoQuery } }, async (request, reply) => {
    const { key, value, encoding } = request.body;
    const bytes = encoding === "base64" ? Buffer.from(value, "base64") : Buffer.from(value, "utf8");
    await store.put(key, bytes);
    return reply.status(204).send();
  });

  app.delete<{ Querystring: Static<typeof KeyQuery> }>("/api/v1/config", { config: manage, schema: { tags: ["config"], summary: "delete a key", querystring: KeyQuery, body: NoBody } }, async (request, reply) => {
    if (!(await store.delete(request.query.key))) throw new OvsError("NOT_FOUND", `there is no key ${request.query.key}.`);
    return reply.status(204).send();
  });

  // One JSON line per change under the prefix, until the client goes away.
  app.get<{ Querystring: Static<typeof WatchQuery> }>("/api/v1/config/watch", { config: manage, schema: { tags: ["config"], summary: "every change under a prefix as NDJSON lines, until the client goes away", querystring: WatchQuery } }, async (request, reply) => {
    reply.hijack();
    reply.raw.writeHead(200, { "content-type": "application/x-ndjson", "cache-control": "no-cache" });
    reply.raw.write(JSON.stringify({ type: "watching", prefix: request.query.prefix }) + "\n");
    const watcher = store.watch(request.query.prefix, (event) => {
      const line = event.type === "put" && event.value !== undefined ? { type: "put", ...present(event.key, Buffer.from(event.value)) } : { type: event.type, key: event.key };
      reply.raw.write(JSON.stringify(line) + "\n");
    });
    request.raw.on("close", () => watcher.close());
  });
}
