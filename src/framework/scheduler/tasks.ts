// The scheduled tasks of a node today. The volume engine's snapshot retention, scrubbing and namespace
// verification register here as they land (DESIGN.md §6: hourly snapshots, daily scrub).

import type { AuthService } from "../auth/auth-service.js";
import { runHealthCheck, type HealthContext } from "../health/healthcheck.js";
import type { ScheduledTask } from "./scheduler.js";

export function frameworkTasks(options: { auth: AuthService; health: () => HealthContext }): ScheduledTask[] {
  return [
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
