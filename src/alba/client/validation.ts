// Argument checks of the ObjectBackend calls (list options and byte ranges from backend/, assert and
// update shapes here), so AlbaBackend refuses the same input as LocalBackend with the same
// INVALID_ARGUMENT. Imported by alba-backend.ts only. Pure functions.

import { OvsError } from "../../base/index.js";
import { validateName, type ObjectAssert, type ObjectUpdate } from "../../backend/index.js";

export { checkListOptions, validateRanges, type CheckedListOptions } from "../../backend/index.js";

export function validateAsserts(asserts: readonly ObjectAssert[]): void {
  if (!Array.isArray(asserts)) throw new OvsError("INVALID_ARGUMENT", "asserts must be an array.");
  for (const item of asserts) {
    if (typeof item !== "object" || item === null) throw new OvsError("INVALID_ARGUMENT", "An assert must be an object.");
    if (item.kind !== "absent" && item.kind !== "equals") throw new OvsError("INVALID_ARGUMENT", `Unknown assert kind ${JSON.stringify((item as { kind: unknown }).kind)}.`);
    validateName(item.name, "object name");
    if (item.kind === "equals" && !(item.value instanceof Uint8Array)) throw new OvsError("INVALID_ARGUMENT", "An equals assert needs a Uint8Array value.");
  }
}

export function validateUpdates(updates: readonly ObjectUpdate[]): void {
  if (!Array.isArray(updates)) throw new OvsError("INVALID_ARGUMENT", "updates must be an array.");
  for (const item of updates) {
    if (typeof item !== "object" || item === null) throw new OvsError("INVALID_ARGUMENT", "An update must be an object.");
    if (item.kind !== "put" && item.kind !== "delete") throw new OvsError("INVALID_ARGUMENT", `Unknown update kind ${JSON.stringify((item as { kind: unknown }).kind)}.`);
    validateName(item.name, "object name");
    if (item.kind === "put" && !(item.data instanceof Uint8Array)) throw new OvsError("INVALID_ARGUMENT", "A put needs Uint8Array data.");
  }
}
