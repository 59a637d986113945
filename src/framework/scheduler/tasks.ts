// The scheduled tasks of a node (DESIGN.md §6): hourly automatic snapshots with retention, the daily
// scrub (when the node has a scrubber), periodic namespace verification (ALBA), token sweeping and the
// health check. Each can be changed or turned off with `ovs schedule set` (/api/v1/schedule).

import type { AuthService } from "../auth/auth-service.js";
import { runHealthCheck, type HealthContext } from "../health/healthcheck.js";
import type { ScheduledTask } from "./scheduler.js";
import type { VDiskService } from "../vdisk-service.js";
import type { AlbaService } from "../alba-service.js";
import { autoSnapshotTask } from "../tasks/auto-snapshots.js";
import { scrubTask, verifyNamespacesTask, type ScrubFunction } from "../tasks/scheduled-maintenance.js";

export function frameworkTasks(options: {
  auth: AuthService;
  health: () => HealthContext;
  /** The node's vDisks: hourly automatic snapshots with retention (and the daily scrub with `scrub`). */
  vdisks?: VDiskService;
  /** The ALBA backend: periodic namespace verification (none with --backend local). */
  alba?: AlbaService;
  /** Scrubs one vDisk (VDiskService.scrub once it exists): the daily scrub. */
  scrub?: ScrubFunction;
}): ScheduledTask[] {
  const optional: ScheduledTask[] = [];
  if (options.vdisks !== undefined) optional.push(autoSnapshotTask(options.vdisks));
  if (options.vdisks !== undefined && options.scrub !== undefined) optional.push(scrubTask(options.vdisks, options.scrub));
  if (options.alba !== undefined) optional.push(verifyNamespacesTask(options.alba));
  return [
    ...optional,
    {
      name: "auth.sweep-tokens",
      description: "delete expired bearer token records",
      defaultSchedule: { intervalSeconds: 600, offsetSeconds: 0 },
      run: async () => {
        const count = await options.auth.sweepExpiredTokens();
        return `deleted ${count} expired token${count === 1 ? "" : "s"}`;
      },
    },
    {
      name: "health.check",
      description: "run the health check of the leading node and record its recap (FAILED when a test failed)",
      defaultSchedule: { intervalSeconds: 3600, offsetSeconds: 300 },
      run: async () => {
        const report = await runHealthCheck(options.health());
        const recap = Object.entries(report.recap).map(([state, count]) => `${state} ${count}`).join(", ");
        const bad = Object.entries(report.result).filter(([, r]) => r.state === "FAILED" || r.state === "EXCEPTION").map(([name]) => name);
        if (bad.length > 0) throw new Error(`${recap}; failing: ${bad.join(", ")}`);
        return recap;
      },
    },
  ];
}
