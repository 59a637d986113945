// The Task record: one long operation (a namespace verify, a maintenance pass, a rollback, a scheduled
// run) kept in the cluster store under ovs/tasks/<id> (docs/formats/task-keys.md), so that any node's API
// answers for it and it survives the node. This file is the codec: ids, encode, decode with validation.
// Imported by task-service.ts, task-api.ts and tests.
//
// Invariants: an id is a UUID version 7 (RFC 9562), whose text sorts by creation time, so the store's
// key order is the tasks' age order; a record's state only moves forward (queued → running →
// succeeded | failed | cancelled; queued → cancelled); a finished record has finishedAt and, when
// failed or cancelled, an error { code, message }. Results are JSON of at most taskResultBytesMax.

import { randomBytes } from "node:crypto";

export const taskRecordVersion = 1;
export const taskKeyPrefix = "ovs/tasks/";
/** Requests to cancel a task running on another node: ovs/task-cancel/<id> (watched by every node). */
export const taskCancelPrefix = "ovs/task-cancel/";
/** A result bigger than this (as JSON) is replaced by { truncated: true, bytes } in the record. */
export const taskResultBytesMax = 256 * 1024;
export const taskDetailBytesMax = 256;

export const taskStates = ["queued", "running", "succeeded", "failed", "cancelled"] as const;
export type TaskState = (typeof taskStates)[number];
export const finishedStates: readonly TaskState[] = ["succeeded", "failed", "cancelled"];

export interface TaskProgress {
  done: number;
  /** Undefined while the total is not known yet. */
  total?: number;
  /** What done and total count: objects, vdisks, steps, ... */
  unit: string;
  /** What the task is doing now (a namespace/object, a phase), at most taskDetailBytesMax. */
  detail?: string;
}

export interface TaskError {
  /** A code of the error catalogue, or INTERRUPTED (the node stopped while it ran) or CANCELLED. */
  code: string;
  message: string;
}

export interface TaskRecord {
  version: number;
  id: string;
  /** What it does, e.g. alba.verify, alba.maintenance-pass, vdisk.rollback, schedule.vdisk.auto-snapshot. */
  kind: string;
  /** What it acts on, e.g. a namespace or a vDisk name ("" for the whole cluster). */
  target: string;
  /** The node that runs it. */
  node: string;
  state: TaskState;
  progress: TaskProgress;
  createdAt: string;
  startedAt?: string;
  finishedAt?: string;
  /** "user:NAME", "client:ID" or "scheduler". */
  startedBy: string;
  /** The request id of the API request that started it (X-Request-Id). */
  requestId?: string;
  /** Whether a running task can be cancelled (a queued one always can). */
  cancellable: boolean;
  result?: unknown;
  error?: TaskError;
}

const uuidV7Pattern = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** A UUID version 7: 48 bits of milliseconds since the epoch, then random bits (RFC 9562 §5.7). */
export function newTaskId(nowMs: number, random: Buffer = randomBytes(10)): string {
  const bytes = Buffer.alloc(16);
  bytes.writeUIntBE(Math.max(0, Math.floor(nowMs)), 0, 6);
  random.copy(bytes, 6, 0, 10);
  bytes[6] = 0x70 | (bytes[6]! & 0x0f);
  bytes[8] = 0x80 | (bytes[8]! & 0x3f);
  const hex = bytes.toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export function isTaskId(value: string): boolean {
  return uuidV7Pattern.test(value);
}

/** The creation time in a task id (ms since the epoch). */
export function taskIdTimeMs(id: string): number {
  return parseInt(id.slice(0, 8) + id.slice(9, 13), 16);
}

export function taskKey(id: string): string {
  return taskKeyPrefix + id;
}

export function encodeTask(record: TaskRecord): Buffer {
  return Buffer.from(JSON.stringify(record));
}

export function isFinished(state: TaskState): boolean {
  return finishedStates.includes(state);
}

/** A result as stored: JSON-safe and bounded. */
export function boundedResult(result: unknown): unknown {
  if (result === undefined) return undefined;
  const json = JSON.stringify(result);
  if (json === undefined) return undefined;
  const bytes = Buffer.byteLength(json);
  return bytes > taskResultBytesMax ? { truncated: true, bytes } : (JSON.parse(json) as unknown);
}

export function boundedDetail(detail: string | undefined): string | undefined {
  if (detail === undefined) return undefined;
  return Buffer.byteLength(detail) <= taskDetailBytesMax ? detail : Buffer.from(detail).subarray(0, taskDetailBytesMax).toString("utf8").replace(/\uFFFD$/, "");
}

const isCount = (value: unknown): value is number => typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
const isTime = (value: unknown): value is string => typeof value === "string" && !Number.isNaN(Date.parse(value));

/** Decodes a stored record; a reason instead when it is not a valid version-1 task record. */
export function decodeTask(bytes: Uint8Array): { ok: true; value: TaskRecord } | { ok: false; reason: string } {
  let parsed: Partial<TaskRecord>;
  try {
    parsed = JSON.parse(Buffer.from(bytes).toString("utf8")) as Partial<TaskRecord>;
  } catch {
    return { ok: false, reason: "not JSON" };
  }
  if (typeof parsed !== "object" || parsed === null) return { ok: false, reason: "not an object" };
  if (parsed.version !== taskRecordVersion) return { ok: false, reason: `version ${String(parsed.version)} is not ${taskRecordVersion}` };
  if (typeof parsed.id !== "string" || !isTaskId(parsed.id)) return { ok: false, reason: "id is not a UUID version 7" };
  for (const field of ["kind", "target", "node", "startedBy"] as const) {
    if (typeof parsed[field] !== "string") return { ok: false, reason: `${field} is not a string` };
  }
  if (!taskStates.includes(parsed.state as TaskState)) return { ok: false, reason: `state ${String(parsed.state)} is unknown` };
  const progress = parsed.progress;
  if (typeof progress !== "object" || progress === null || !isCount(progress.done) || typeof progress.unit !== "string" || (progress.total !== undefined && !isCount(progress.total))) {
    return { ok: false, reason: "progress is not { done, total?, unit }" };
  }
  if (!isTime(parsed.createdAt)) return { ok: false, reason: "createdAt is not a time" };
  for (const field of ["startedAt", "finishedAt"] as const) {
    if (parsed[field] !== undefined && !isTime(parsed[field])) return { ok: false, reason: `${field} is not a time` };
  }
  if (typeof parsed.cancellable !== "boolean") return { ok: false, reason: "cancellable is not a boolean" };
  if (parsed.error !== undefined && (typeof parsed.error !== "object" || parsed.error === null || typeof parsed.error.code !== "string" || typeof parsed.error.message !== "string")) {
    return { ok: false, reason: "error is not { code, message }" };
  }
  if (isFinished(parsed.state!) !== (parsed.finishedAt !== undefined)) return { ok: false, reason: "finishedAt must be set exactly when the task is finished" };
  return { ok: true, value: parsed as TaskRecord };
}
