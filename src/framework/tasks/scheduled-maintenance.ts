// Scheduled tasks of the backend and the volumes (DESIGN.md §6; the original's alba.verify_namespaces
// and generic.execute_scrub):
// - alba.verify-namespaces (cluster-wide, by the scheduler's leader; weekly, Sunday 04:00 UTC): verifies
//   every namespace of the ALBA backend; bad fragments are queued for repair by the verify itself.
// - vdisk.scrub (each node for its own vDisks; daily 03:00 UTC): scrubs every vDisk the node serves (not
//   templates) with the default options, through a ScrubFunction (node.ts passes VDiskService.scrub).
// Both report progress and stop between items when their task is cancelled. Imported by scheduler/tasks.ts.

import { OvsError, isOvsError } from "../../base/index.js";
import type { ScheduledTask } from "../scheduler/scheduler.js";
import type { AlbaService } from "../alba-service.js";
import type { VDiskService } from "../vdisk-service.js";
import type { ScrubProgress } from "../../volume/index.js";

export const verifyTaskName = "alba.verify-namespaces";
export const scrubTaskName = "vdisk.scrub";

/** Scrubs one vDisk with the default options, telling its progress: VDiskService.scrub. */
export type ScrubFunction = (name: string, options: Record<string, never>, onProgress: (progress: Pick<ScrubProgress, "phase" | "done" | "total">) => void) => Promise<unknown>;

export function verifyNamespacesTask(alba: AlbaService): ScheduledTask {
  return {
    name: verifyTaskName,
    description: "verify every object of every ALBA namespace (checksums and redundancy); bad fragments are queued for repair",
    defaultSchedule: { intervalSeconds: 7 * 86400, offsetSeconds: 3 * 86400 + 4 * 3600 },
    unit: "namespaces",
    run: async (context) => {
      const namespaces = (await alba.listNamespaces()).map((namespace) => namespace.name);
      context.progress({ done: 0, total: namespaces.length });
      let objects = 0;
      let bad = 0;
      let unavailable = 0;
      for (const [index, namespace] of namespaces.entries()) {
        if (context.signal.aborted) throw new OvsError("CONFLICT", `cancelled after ${index} of ${namespaces.length} namespaces.`);
        context.progress({ done: index, detail: namespace });
        try {
          const report = await alba.verifyNamespace(namespace, {
            signal: context.signal,
            onProgress: (done, total) => context.progress({ detail: `${namespace}: ${done}/${total} objects` }),
          });
          objects += report.objectCount;
          bad += report.badCount;
          unavailable += report.unavailableCount;
        } catch (error) {
          if (isOvsError(error, "NOT_FOUND")) continue; // deleted meanwhile
          throw error;
        }
      }
      const line = `${namespaces.length} namespaces, ${objects} objects verified: ${bad} bad fragments (queued for repair), ${unavailable} unavailable`;
      if (bad > 0) throw new Error(line);
      return line;
    },
  };
}

export function scrubTask(vdisks: VDiskService, scrub: ScrubFunction): ScheduledTask {
  return {
    name: scrubTaskName,
    description: "scrub every vDisk of each node: rewrite its data without what snapshots deleted since no longer need",
    defaultSchedule: { intervalSeconds: 86400, offsetSeconds: 3 * 3600 },
    scope: "node",
    unit: "vdisks",
    run: async (context) => {
      const names = vdisks.list().filter((info) => !info.template).map((info) => info.name);
      context.progress({ done: 0, total: names.length });
      const failed: string[] = [];
      for (const [index, name] of names.entries()) {
        if (context.signal.aborted) throw new OvsError("CONFLICT", `cancelled after ${index} of ${names.length} vDisks.`);
        context.progress({ done: index, detail: name });
        try {
          await scrub(name, {}, (progress) => context.progress({ detail: `${name}: ${progress.phase} ${progress.done}/${progress.total}` }));
        } catch (error) {
          if (isOvsError(error, "NOT_FOUND")) continue;
          failed.push(`${name} (${error instanceof Error ? error.message.replace(/\.$/, "") : String(error)})`);
          context.log.warn({ err: error, vdisk: name }, "scrub failed");
        }
      }
      const line = `${names.length - failed.length} of ${names.length} vDisks scrubbed`;
      if (failed.length > 0) throw new Error(`${line}; failed: ${failed.join(", ")}`);
      return line;
    },
  };
}
