// The ObjectBackend contract suite on AlbaBackend with its manager and NSM on a real 1-member etcd
// (Debian's etcd-server, started on loopback by the test) instead of the EmbeddedStore: 6 in-process
// ASDs, the single-node default preset. A missing etcd binary fails this test (never a skip).
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll } from "vitest";
import { objectBackendContract } from "../../backend/object-backend.contract.js";
import { EtcdStore } from "../../store/index.js";
import { startEtcdCluster, type EtcdTestCluster } from "../../store/etcd-test-cluster.js";
import { startTestCluster, type TestCluster } from "./test-support.js";

let etcd: EtcdTestCluster;
let cluster: TestCluster;

beforeAll(async () => {
  etcd = await startEtcdCluster({ members: 1 });
  const store = await EtcdStore.open({ endpoints: etcd.endpoints, prefix: `alba-${randomBytes(4).toString("hex")}/` });
  cluster = await startTestCluster({ asdCount: 6, store });
}, 60_000);

afterAll(async () => {
  await cluster?.close();
  await etcd?.stop();
}, 60_000);

objectBackendContract("AlbaBackend on etcd (6 local ASDs, preset 4+2)", () => cluster.backend());
