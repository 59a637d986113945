// The task record (docs/formats/task-keys.md): the spec's example is a golden vector; ids are UUIDv7
// that sort by time; bad records are refused with a reason.

import { describe, expect, it } from "vitest";
import fs from "node:fs";
import path from "node:path";
import { boundedResult, decodeTask, encodeTask, isTaskId, newTaskId, taskIdTimeMs, taskResultBytesMax, type TaskRecord } from "./task-record.js";

const goldenId = "01a2182a-ca72-7123-8567-89abcdef0123";
const golden =
  '{"version":1,"id":"01a2182a-ca72-7123-8567-89abcdef0123","kind":"alba.verify","target":"vdisk-3f6c","node":"node-a","state":"succeeded",' +
  '"progress":{"done":412,"total":412,"unit":"objects","detail":"vdisk-3f6c"},"createdAt":"2026-11-26T14:03:07.250Z","startedAt":"2026-11-26T14:03:07.251Z",' +
  '"finishedAt":"2026-11-26T14:03:09.804Z","startedBy":"user:admin","requestId":"trace-4711","cancellable":true,' +
  '"result":{"namespace":"vdisk-3f6c","objectCount":412,"fragmentsChecked":2472,"bad":[],"badCount":0,"missingCount":0,"unavailableCount":0,"holeCount":0}}';

const record: TaskRecord = {
  version: 1, id: goldenId, kind: "alba.verify", target: "vdisk-3f6c", node: "node-a", state: "succeeded",
  progress: { done: 412, total: 412, unit: "objects", detail: "vdisk-3f6c" }, createdAt: "2026-11-26T14:03:07.250Z",
  startedAt: "2026-11-26T14:03:07.251Z", finishedAt: "2026-11-26T14:03:09.804Z", startedBy: "user:admin", requestId: "trace-4711", cancellable: true,
  result: { namespace: "vdisk-3f6c", objectCount: 412, fragmentsChecked: 2472, bad: [], badCount: 0, missingCount: 0, unavailableCount: 0, holeCount: 0 },
};

describe("task records (docs/formats/task-keys.md)", () => {
  it("encodes and decodes the spec's example byte for byte", () => {
    expect(newTaskId(Date.parse("2026-11-26T14:03:07.250Z"), Buffer.from("0123456789abcdef0123", "hex"))).toBe(goldenId);
    expect(encodeTask(record).toString("utf8")).toBe(golden);
    expect(decodeTask(Buffer.from(golden))).toEqual({ ok: true, value: record });
    const spec = fs.readFileSync(path.resolve("docs/formats/task-keys.md"), "utf8");
    expect(spec).toContain(`ovs/tasks/${goldenId} →\n${golden}\n`);
    expect(taskIdTimeMs(goldenId)).toBe(Date.parse(record.createdAt));
  });

  it("makes ids that are UUID version 7 and sort by creation time", () => {
    const ids = [0, 1, 999, Date.UTC(2026, 0, 1), Date.UTC(2026, 0, 1) + 1, 2 ** 47].map((ms) => newTaskId(ms));
    for (const id of ids) expect(isTaskId(id), id).toBe(true);
    expect([...ids].sort()).toEqual(ids);
    expect(taskIdTimeMs(ids[3]!)).toBe(Date.UTC(2026, 0, 1));
    expect(isTaskId("01a2182a-ca72-4123-8567-89abcdef0123")).toBe(false); // version 4
    expect(isTaskId(goldenId.toUpperCase())).toBe(false);
  });

  it("refuses records that are not valid, with a reason", () => {
    const bad = (change: Record<string, unknown>): string => {
      const decoded = decodeTask(Buffer.from(JSON.stringify({ ...record, ...change })));
      return decoded.ok ? "accepted" : decoded.reason;
    };
    expect(bad({ version: 2 })).toBe("version 2 is not 1");
    expect(bad({ id: "nope" })).toBe("id is not a UUID version 7");
    expect(bad({ state: "paused" })).toBe("state paused is unknown");
    expect(bad({ progress: { done: -1, unit: "x" } })).toBe("progress is not { done, total?, unit }");
    expect(bad({ state: "running" })).toBe("finishedAt must be set exactly when the task is finished");
    expect(bad({ error: { code: 1 } })).toBe("error is not { code, message }");
    expect(bad({ createdAt: "yesterday" })).toBe("createdAt is not a time");
    expect(decodeTask(Buffer.from("{"))).toEqual({ ok: false, reason: "not JSON" });
  });

  it("bounds a result", () => {
    expect(boundedResult({ a: 1 })).toEqual({ a: 1 });
    expect(boundedResult("x".repeat(taskResultBytesMax))).toEqual({ truncated: true, bytes: taskResultBytesMax + 2 });
    expect(boundedResult(undefined)).toBeUndefined();
  });
});
