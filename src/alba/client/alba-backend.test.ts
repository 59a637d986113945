// The ObjectBackend contract suite on AlbaBackend: 6 real ASDs in-process on 127.0.0.1 (runAsd, temp
// dirs), an EmbeddedStore in a temp dir, the single-node default preset of DESIGN.md §6 (policies
// [(4,2,5,6), (2,2,3,6)], crc32c, no compression). Every test gets a fresh AlbaBackend on the same ASDs;
// the suite runs with the default read strategy (all fragments) and with data-first reads without cache.
import { afterAll, beforeAll } from "vitest";
import { objectBackendContract } from "../../backend/object-backend.contract.js";
import { startTestCluster, type TestCluster } from "./test-support.js";

let cluster: TestCluster;

beforeAll(async () => {
  cluster = await startTestCluster({ asdCount: 6 });
});

afterAll(async () => {
  await cluster.close();
});

objectBackendContract("AlbaBackend (6 local ASDs, preset 4+2)", () => cluster.backend());
objectBackendContract("AlbaBackend (6 local ASDs, preset 4+2, data-first reads, no cache)", () => cluster.backend({ readStrategy: "data-first", fragmentCacheBytes: 0 }));
