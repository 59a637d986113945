// The scheduler's pure core: when is a task due. A schedule is an interval and an offset in seconds,
// aligned to the Unix epoch (UTC): slots are offset + k × interval. Hourly at :00 is
// { intervalSeconds: 3600, offsetSeconds: 0 }; daily at 03:00 UTC is { 86400, 10800 }. null is off.
// A task runs at most once per slot; after downtime it runs once for the latest slot missed, never once
// per missed slot. Time is passed in (milliseconds), so tests control it.

import { OvsError } from "../../base/index.js";

export interface Schedule {
  intervalSeconds: number;
  offsetSeconds: number;
}

export const intervalSecondsMin = 60;
export const intervalSecondsMax = 366 * 24 * 3600;

export function checkSchedule(schedule: unknown, task: string): Schedule | null {
  if (schedule === null) return null;
  const candidate = schedule as Partial<Schedule>;
  if (typeof schedule !== "object" || typeof candidate.intervalSeconds !== "number" || typeof candidate.offsetSeconds !== "number") {
    throw new OvsError("INVALID_ARGUMENT", `the schedule of ${task} must be null (off) or { intervalSeconds, offsetSeconds }.`);
  }
  const { intervalSeconds, offsetSeconds } = candidate;
  if (!Number.isInteger(intervalSeconds) || intervalSeconds < intervalSecondsMin || intervalSeconds > intervalSecondsMax) {
    throw new OvsError("INVALID_ARGUMENT", `the interval of ${task} must be ${intervalSecondsMin} to ${intervalSecondsMax} seconds.`);
  }
  if (!Number.isInteger(offsetSeconds) || offsetSeconds < 0 || offsetSeconds >= intervalSeconds) {
    throw new OvsError("INVALID_ARGUMENT", `the offset of ${task} must be 0 to ${intervalSeconds - 1} seconds (under its interval).`);
  }
  return { intervalSeconds, offsetSeconds };
}

/** The start (ms) of the latest slot at or before nowMs. */
export function latestSlotMs(schedule: Schedule, nowMs: number): number {
  const intervalMs = schedule.intervalSeconds * 1000;
  const offsetMs = schedule.offsetSeconds * 1000;
  return Math.floor((nowMs - offsetMs) / intervalMs) * intervalMs + offsetMs;
}

/** The start (ms) of the first slot after nowMs. */
export function nextSlotMs(schedule: Schedule, nowMs: number): number {
  return latestSlotMs(schedule, nowMs) + schedule.intervalSeconds * 1000;
}

/** The slot to run now, or undefined: due when the latest slot is after the last slot that ran. */
export function dueSlotMs(schedule: Schedule | null, lastSlotMs: number | undefined, nowMs: number): number | undefined {
  if (schedule === null) return undefined;
  const slot = latestSlotMs(schedule, nowMs);
  return lastSlotMs === undefined || slot > lastSlotMs ? slot : undefined;
}
