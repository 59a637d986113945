// Shared TypeBox schemas of the REST API for routes that take no query parameters or no body: every
// route under /api/v1 declares a querystring schema, and every POST/PUT/PATCH/DELETE a body schema
// (api.test.ts checks; GET and HEAD bodies are never read), so that unknown input is refused with 400 INVALID_ARGUMENT before anything
// changes instead of being ignored.
//
// NoBody accepts a request without a body (what the CLI sends) or an empty JSON object, and nothing
// else: api.ts fills in {} for a missing body of such a route before validation, and leaves it out of
// the OpenAPI document (the operation has no requestBody).

import { Type } from "@sinclair/typebox";

/** The querystring of a route that takes no query parameters: any parameter is refused. */
export const NoQuery = Type.Object({}, { additionalProperties: false });

/** The body of a POST/PUT/PATCH/DELETE route that takes none: no body or {}; any field is refused. */
export const NoBody = Type.Object({}, { additionalProperties: false, description: "none: send no body (or {})" });

/** Whether a (JSON) schema is NoBody's shape: an object with no properties and no others allowed. */
export function isNoBodySchema(schema: unknown): boolean {
  if (typeof schema !== "object" || schema === null) return false;
  const s = schema as { type?: unknown; properties?: Record<string, unknown>; additionalProperties?: unknown };
  return s.type === "object" && s.additionalProperties === false && Object.keys(s.properties ?? {}).length === 0;
}
