// The audit log file: one JSON line per entry, mode 0600, appended across reopenings, rotated by size
// into audit.log.1 without losing a line.

import { afterEach, beforeEach, describe, expect, it } from "vitest";
import fs from "node:fs";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { AuditLog, type AuditEntry } from "./audit-log.js";

let dir: string;

beforeEach(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), "ovs-audit-"));
});

afterEach(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

function entry(index: number): AuditEntry {
  return { time: new Date(0).toISOString(), reqId: `r${index}`, method: "POST", route: "/api/v1/vdisks", url: "/api/v1/vdisks", status: 201, subject: "user:admin", remoteAddress: "127.0.0.1", durationMs: 1 };
}

describe("AuditLog", () => {
  it("appends JSON lines, keeps them across reopenings and rotates by size without losing one", async () => {
    const file = path.join(dir, "audit.log");
    const lineBytes = JSON.stringify(entry(0)).length + 1;
    let log = new AuditLog(file, lineBytes * 10);
    for (let index = 0; index < 4; index++) log.write(entry(index));
    await log.close();
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    log = new AuditLog(file, lineBytes * 10);
    for (let index = 4; index < 25; index++) log.write(entry(index));
    await log.close();
    const rotated = (await fsp.readFile(`${file}.1`, "utf8")).trim().split("\n");
    const current = (await fsp.readFile(file, "utf8")).trim().split("\n");
    expect(current.length).toBeLessThanOrEqual(10);
    // Two rotations happened: the first generation was replaced; what is kept is contiguous and in order.
    const kept = [...rotated, ...current].map((line) => (JSON.parse(line) as AuditEntry).reqId);
    expect(kept).toEqual(Array.from({ length: kept.length }, (_, i) => `r${25 - kept.length + i}`));
    expect(kept.length).toBeGreaterThanOrEqual(11);
  });
});
