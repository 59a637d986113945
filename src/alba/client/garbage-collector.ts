// Garbage collection of fragments, one pass: deletes on the ASDs what the NSM's garbage records and the
// manager's deleted-namespace records name (docs/formats/alba-keys.md), then forgets each record with an
// asserted delete. A stop-gap until maintenance (issue 3 item 6) runs it throttled and in the background;
// AlbaBackend.collectGarbage() calls it. Imported by alba-backend.ts only.
//
// Invariants: a record is forgotten only after every ASD it concerns answered (a down ASD keeps the
// record for the next pass); an "uploading" record is left alone until it is older than uploadGraceMs
// (longer than any upload); only keys under the object's (or namespace's) fragment prefix are deleted,
// and such objects are by construction not referenced by any manifest.
// Limits: rangePageMax keys per range request and per delete apply; records are paged rangeLimitMax.

import { isOvsError, type Logger } from "../../base/index.js";
import { rangeLimitMax } from "../../store/index.js";
import {
  fragmentKey, namespaceFragmentPrefix, objectFragmentPrefix, prefixEnd, type AlbaManager, type GcRecord,
} from "../manager/index.js";
import type { AsdPool } from "./asd-pool.js";

const rangePageMax = 1000;

export interface GarbageCollectionReport {
  recordsForgotten: number;
  recordsKept: number;
  fragmentsDeleted: number;
  deletedNamespacesForgotten: number;
}

export async function collectGarbageOnce(
  manager: AlbaManager,
  pool: AsdPool,
  options: { nowMs: number; uploadGraceMs: number; logger: Logger },
): Promise<GarbageCollectionReport> {
  const report: GarbageCollectionReport = { recordsForgotten: 0, recordsKept: 0, fragmentsDeleted: 0, deletedNamespacesForgotten: 0 };
  const allAsdIds = pool.all().filter((state) => state.record.state === "claimed" || state.record.state === "decommissioned").map((state) => state.record.asdId);

  /** Deletes every key in [prefix, prefixEnd) on one ASD; false if the ASD could not be reached. */
  const deleteRange = async (asdId: string, prefix: Buffer): Promise<boolean> => {
    try {
      const client = await pool.client(asdId);
      for (;;) {
        const page = await client.range({ first: prefix, end: prefixEnd(prefix), limit: rangePageMax });
        if (page.keys.length === 0) return true;
        await client.apply([], page.keys.map((key) => ({ kind: "delete" as const, key })));
        report.fragmentsDeleted += page.keys.length;
        if (!page.more) return true;
      }
    } catch (error) {
      if (isOvsError(error, "CLOSED")) throw error;
      options.logger.info({ err: error, asdId }, "alba gc: ASD unavailable; the record is kept for the next pass");
      return false;
    }
  };

  const collect = async (namespaceId: number, record: GcRecord): Promise<boolean> => {
    switch (record.kind) {
      case "upload": {
        if (record.state === "uploading" && options.nowMs - record.startedAtMs < options.uploadGraceMs) return false;
        const prefix = objectFragmentPrefix(namespaceId, record.objectId);
        const results = await Promise.all(allAsdIds.map((asdId) => deleteRange(asdId, prefix)));
        return results.every(Boolean);
      }
      case "object": {
        const prefix = objectFragmentPrefix(namespaceId, record.objectId);
        const results = await Promise.all(record.asdIds.map((asdId) => deleteRange(asdId, prefix)));
        return results.every(Boolean);
      }
      case "strays": {
        const results = await Promise.all(
          record.fragments.map(async (fragment) => {
            try {
              const client = await pool.client(fragment.asdId);
              await client.apply([], [{ kind: "delete", key: fragmentKey(namespaceId, record.objectId, fragment.chunkIndex, fragment.fragmentIndex, fragment.version) }]);
              report.fragmentsDeleted++;
              return true;
            } catch (error) {
              if (isOvsError(error, "CLOSED")) throw error;
              return false;
            }
          }),
        );
        return results.every(Boolean);
      }
    }
  };

  let after: string | undefined;
  for (;;) {
    const page = await manager.listNamespaces({ prefix: "", after, limit: rangeLimitMax });
    for (const namespace of page.records) {
      const nsm = await manager.nsm(namespace.nsmId);
      let gcAfter: string | undefined;
      for (;;) {
        const garbage = await nsm.listGarbage(namespace.namespaceId, { limit: rangeLimitMax, ...(gcAfter === undefined ? {} : { after: gcAfter }) });
        for (const entry of garbage.entries) {
          if (await collect(namespace.namespaceId, entry.record)) {
            if (await nsm.forgetGarbage(entry.key, entry.bytes)) report.recordsForgotten++;
          } else {
            report.recordsKept++;
          }
        }
        if (!garbage.more || garbage.entries.length === 0) break;
        gcAfter = garbage.entries[garbage.entries.length - 1]!.key;
      }
    }
    if (!page.more || page.records.length === 0) break;
    after = page.records[page.records.length - 1]!.name;
  }

  for (const deleted of await manager.listDeletedNamespaces()) {
    const prefix = namespaceFragmentPrefix(deleted.namespaceId);
    const results = await Promise.all(allAsdIds.map((asdId) => deleteRange(asdId, prefix)));
    if (results.every(Boolean)) {
      await manager.forgetDeletedNamespace(deleted.namespaceId);
      report.deletedNamespacesForgotten++;
    }
  }
  return report;
}
