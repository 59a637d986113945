// The REST API (minimal, foundation issue): node information and the vDisk lifecycle under /api/v1.
// Errors are JSON { error: { code, message } } with the catalogue's stable code and HTTP status; every
// body is validated by its schema first (bad input → 400, nothing changed). Authentication and the
// full resource set come with the framework issue.

import Fastify, { type FastifyInstance, type FastifyError, type FastifyBaseLogger } from "fastify";
import { Type, type Static } from "@sinclair/typebox";
import { OvsError, isOvsError, parseSizeBytes, type Logger } from "../base/index.js";
import type { VDiskService } from "./vdisk-service.js";
import type { ClusterStore } from "../store/index.js";
import { registerConfigRoutes } from "./config-api.js";
import { registerAlbaRoutes } from "./alba-api.js";
import type { AlbaService } from "./alba-service.js";
import { registerSnapshotRoutes } from "./snapshot-api.js";

export interface NodeInfo {
  version: string;
  nodeId: string;
  dataDir: string;
  store: string;
  backend: string;
  nbd: { host: string; port: number };
  api: { host: string; port: number };
  /** The local ASD processes (ALBA backend), empty with --backend local. */
  asds: Array<{ index: number; asdId: string | null; host: string; port: number; dir: string; pid: number | null }>;
}

const Size = Type.Union([Type.String({ minLength: 1, maxLength: 32 }), Type.Integer({ minimum: 1 })], {
  description: "bytes, or a size with a binary unit such as 10G",
});
const CreateBody = Type.Object(
  { name: Type.String({ minLength: 1, maxLength: 64 }), size: Size, scoCacheMax: Type.Optional(Type.Union([Type.String({ minLength: 1, maxLength: 32 }), Type.Integer({ minimum: 0 })])) },
  { additionalProperties: false },
);
const ResizeBody = Type.Object({ size: Size }, { additionalProperties: false });
const NameParams = Type.Object({ name: Type.String({ minLength: 1, maxLength: 64 }) });
const DeleteQuery = Type.Object({ force: Type.Optional(Type.Boolean()) }, { additionalProperties: false });

function sizeOf(value: string | number): number {
  return typeof value === "number" ? value : parseSizeBytes(value);
}

export async function buildApi(options: { vdisks: VDiskService; store: ClusterStore; alba?: AlbaService; nodeInfo: () => NodeInfo; log: Logger }): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: options.log as unknown as FastifyBaseLogger,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: true, allErrors: false } },
  });

  app.setErrorHandler((error: FastifyError | OvsError | Error, request, reply) => {
    if (isOvsError(error)) {
      return reply.status(error.httpStatus).send({ error: { code: error.code, message: error.message } });
    }
    const fastifyError = error as FastifyError;
    if (fastifyError.validation) {
      return reply.status(400).send({ error: { code: "INVALID_ARGUMENT", message: `invalid request: ${fastifyError.message}` } });
    }
    if (fastifyError.statusCode !== undefined && fastifyError.statusCode < 500) {
      return reply.status(fastifyError.statusCode).send({ error: { code: "INVALID_ARGUMENT", message: fastifyError.message } });
    }
    request.log.error({ err: error }, "request failed");
    return reply.status(500).send({ error: { code: "INTERNAL", message: "internal error; see the node's log" } });
  });
  app.setNotFoundHandler((request, reply) => {
    reply.status(404).send({ error: { code: "NOT_FOUND", message: `no route ${request.method} ${request.url}` } });
  });

  app.get("/api/v1/node", async () => {
    const info = options.nodeInfo();
    const local = options.alba?.localAsds();
    return local === undefined ? info : { ...info, asds: local.map((asd) => ({ index: asd.index, asdId: asd.asdId, host: asd.host, port: asd.port, dir: asd.dir, pid: asd.pid })) };
  });

  app.get("/api/v1/vdisks", async () => ({ vdisks: options.vdisks.list() }));

  app.post<{ Body: Static<typeof CreateBody> }>("/api/v1/vdisks", { schema: { body: CreateBody } }, async (request, reply) => {
    const { scoCacheMax } = request.body;
    const info = await options.vdisks.create(request.body.name, sizeOf(request.body.size), scoCacheMax === undefined ? {} : { scoCacheMaxBytes: scoCacheMax === 0 || scoCacheMax === "0" ? 0 : sizeOf(scoCacheMax) });
    return reply.status(201).send(info);
  });

  app.get<{ Params: Static<typeof NameParams> }>("/api/v1/vdisks/:name", { schema: { params: NameParams } }, async (request) =>
    options.vdisks.info(request.params.name),
  );

  app.post<{ Params: Static<typeof NameParams>; Body: Static<typeof ResizeBody> }>(
    "/api/v1/vdisks/:name/resize",
    { schema: { params: NameParams, body: ResizeBody } },
    async (request) => options.vdisks.resize(request.params.name, sizeOf(request.body.size)),
  );

  app.delete<{ Params: Static<typeof NameParams>; Querystring: Static<typeof DeleteQuery> }>(
    "/api/v1/vdisks/:name",
    { schema: { params: NameParams, querystring: DeleteQuery } },
    async (request, reply) => {
      await options.vdisks.delete(request.params.name, request.query.force === true);
      return reply.status(204).send();
    },
  );

  registerConfigRoutes(app, options.store);
  registerAlbaRoutes(app, options.alba);
  registerSnapshotRoutes(app, options.vdisks);
  return app;
}
