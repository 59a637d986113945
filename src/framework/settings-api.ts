// REST routes for a vDisk's settings and QoS limits (one plugin, registered by api.ts; errors go through
// api.ts's handler: JSON { error: { code, message } }, bad bodies → 400 with nothing changed).
//
//   GET   /api/v1/vdisks/:name/settings   { qos: {6 limits}, scoCacheMaxBytes, cache: { mode, quotaBytes }, scoSizeBytes, tlogMultiplier }
//   PATCH /api/v1/vdisks/:name/settings   { qos?: {any of the 6 limits}, scoCacheMax?, cache?: { mode?, quota? }, scoSize?, tlogMultiplier? }
//
// cache.mode is cache-on-read, cache-on-write or none; cache.quota is the vDisk's share of the node's
// read cache (0 = no quota).
// Sizes (bandwidth limits, scoCacheMax, cache.quota) are integers of bytes or strings with a binary unit ("50M";
// bandwidths may end in "/s"); IOPS are integers; 0 = no limit. Changes apply while the vDisk serves I/O.
// scoSize and tlogMultiplier are fixed at creation: a different value is refused with a clear message.

import type { FastifyInstance } from "fastify";
import { Type, type Static } from "@sinclair/typebox";
import { NoQuery } from "./schemas.js";
import { parseSizeBytes } from "../base/index.js";
import type { QosLimits, ReadCacheMode } from "../volume/index.js";
import type { VDiskService, VDiskSettingsChange } from "./vdisk-service.js";

const NameParams = Type.Object({ name: Type.String({ minLength: 1, maxLength: 64 }) });
const Iops = Type.Integer({ minimum: 0, description: "operations per second; 0 = no limit" });
const Bandwidth = Type.Union([Type.String({ minLength: 1, maxLength: 32 }), Type.Integer({ minimum: 0 })], {
  description: "bytes per second, or a size per second with a binary unit such as 50M or 50M/s; 0 = no limit",
});
const SizeOrZero = Type.Union([Type.String({ minLength: 1, maxLength: 32 }), Type.Integer({ minimum: 0 })], {
  description: "bytes, or a size with a binary unit such as 256M; 0 = none",
});
const QosChange = Type.Object(
  {
    readIops: Type.Optional(Iops),
    writeIops: Type.Optional(Iops),
    totalIops: Type.Optional(Iops),
    readBytesPerSecond: Type.Optional(Bandwidth),
    writeBytesPerSecond: Type.Optional(Bandwidth),
    totalBytesPerSecond: Type.Optional(Bandwidth),
  },
  { additionalProperties: false },
);
const CacheChange = Type.Object(
  {
    // A string checked by the service, so that a bad mode is answered with the list of modes.
    mode: Type.Optional(Type.String({ minLength: 1, maxLength: 32, description: "cache-on-read, cache-on-write or none: what fills the vDisk's read cache entries (backend reads, writes, nothing)" })),
    quota: Type.Optional(SizeOrZero),
  },
  { additionalProperties: false },
);
const SettingsChange = Type.Object(
  {
    qos: Type.Optional(QosChange),
    cache: Type.Optional(CacheChange),
    scoCacheMax: Type.Optional(SizeOrZero),
    scoSize: Type.Optional(Type.Union([Type.String({ minLength: 1, maxLength: 32 }), Type.Integer({ minimum: 0 })], { description: "fixed at creation: only the current value is accepted" })),
    tlogMultiplier: Type.Optional(Type.Integer({ minimum: 0, description: "fixed at creation: only the current value is accepted" })),
    version: Type.Optional(Type.Integer({ minimum: 0, description: "the version (from GET) this change is based on: 409 CONFLICT, nothing changed, if the vDisk changed since" })),
  },
  { additionalProperties: false },
);

function sizeOf(value: string | number): number {
  return typeof value === "number" ? value : parseSizeBytes(value);
}

function bandwidthOf(value: string | number): number {
  return typeof value === "number" ? value : parseSizeBytes(value.replace(/\/s$/i, ""));
}

/** The API body as the service's change (sizes parsed: a bad size is INVALID_ARGUMENT, nothing changed). */
export function settingsChangeOf(body: Static<typeof SettingsChange>): VDiskSettingsChange {
  const change: VDiskSettingsChange = {};
  if (body.qos !== undefined) {
    const qos: Partial<QosLimits> = {};
    const { readIops, writeIops, totalIops, readBytesPerSecond, writeBytesPerSecond, totalBytesPerSecond } = body.qos;
    if (readIops !== undefined) qos.readIops = readIops;
    if (writeIops !== undefined) qos.writeIops = writeIops;
    if (totalIops !== undefined) qos.totalIops = totalIops;
    if (readBytesPerSecond !== undefined) qos.readBytesPerSecond = bandwidthOf(readBytesPerSecond);
    if (writeBytesPerSecond !== undefined) qos.writeBytesPerSecond = bandwidthOf(writeBytesPerSecond);
    if (totalBytesPerSecond !== undefined) qos.totalBytesPerSecond = bandwidthOf(totalBytesPerSecond);
    change.qos = qos;
  }
  if (body.scoCacheMax !== undefined) change.scoCacheMaxBytes = sizeOf(body.scoCacheMax);
  if (body.cache !== undefined) {
    change.cache = {};
    if (body.cache.mode !== undefined) change.cache.mode = body.cache.mode as ReadCacheMode;
    if (body.cache.quota !== undefined) change.cache.quotaBytes = sizeOf(body.cache.quota);
  }
  if (body.scoSize !== undefined) change.scoSizeBytes = sizeOf(body.scoSize);
  if (body.tlogMultiplier !== undefined) change.tlogMultiplier = body.tlogMultiplier;
  if (body.version !== undefined) change.version = body.version;
  return change;
}

export function registerSettingsRoutes(app: FastifyInstance, vdisks: VDiskService): void {
  app.get<{ Params: Static<typeof NameParams> }>(
    "/api/v1/vdisks/:name/settings",
    { schema: { tags: ["vdisks"], summary: "a vDisk's settings: QoS limits, SCO cache cap, read cache mode and quota (changeable), SCO size and TLog multiplier (fixed)", params: NameParams, querystring: NoQuery } },
    async (request) => vdisks.settings(request.params.name),
  );

  app.patch<{ Params: Static<typeof NameParams>; Body: Static<typeof SettingsChange> }>(
    "/api/v1/vdisks/:name/settings",
    { schema: { tags: ["vdisks"], summary: "change QoS limits, the SCO cache cap or the read cache mode and quota while the vDisk serves I/O (0 = no limit)", params: NameParams, body: SettingsChange, querystring: NoQuery } },
    async (request) => vdisks.setSettings(request.params.name, settingsChangeOf(request.body)),
  );
}
