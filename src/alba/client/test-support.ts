// Test helpers of the ALBA client: a local cluster of real ASDs (in-process, 127.0.0.1, free ports, temp
// dirs), an EmbeddedStore in a temp dir (or a given ClusterStore, which close() closes) with an AlbaManager and the single-node default preset, and the
// ASDs claimed for the backend. ASDs can be stopped and started again on their port and directory, and
// each has a settable statfs (to make it look full). Imported only by src/alba/client/*.test.ts.
// Limits: everything created is removed by close(); waits are bounded by the ASD and store timeouts.

import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { silentLogger } from "../../base/index.js";
import { EmbeddedStore, type ClusterStore } from "../../store/index.js";
import { AsdServer, runAsd, type FilesystemSpace } from "../asd/index.js";
import { AlbaManager, singleNodePreset } from "../manager/index.js";
import { AlbaBackend, type AlbaBackendOptions } from "./alba-backend.js";

export const testClusterSecret = "alba-client-test-secret";

/** A statfs whose answer the test sets. */
export class SettableStatfs {
  space: FilesystemSpace = { totalBytes: 100 * 2 ** 30, freeBytes: 90 * 2 ** 30 };
  readonly source = async (_dir: string): Promise<FilesystemSpace> => ({ ...this.space });
  fill(fraction: number): void {
    this.space = { totalBytes: this.space.totalBytes, freeBytes: Math.round(this.space.totalBytes * (1 - fraction)) };
  }
}

export interface TestAsd {
  dir: string;
  port: number;
  asdId: string;
  server: AsdServer | undefined;
  statfs: SettableStatfs | undefined;
}

export interface TestCluster {
  root: string;
  store: ClusterStore;
  manager: AlbaManager;
  asds: TestAsd[];
  backend(options?: Partial<AlbaBackendOptions>): Promise<AlbaBackend>;
  stopAsd(index: number): Promise<void>;
  startAsd(index: number): Promise<void>;
  close(): Promise<void>;
}

/**
 * Starts `asdCount` ASDs on one node and a manager with the single-node default preset, and claims the
 * ASDs. With `settableStatfs`, every ASD reads its disk space from a SettableStatfs (no caching).
 */
export async function startTestCluster(options: { asdCount?: number; settableStatfs?: boolean; store?: ClusterStore } = {}): Promise<TestCluster> {
  const asdCount = options.asdCount ?? 6;
  const root = await mkdtemp(path.join(os.tmpdir(), "ovs-alba-client-"));
  const store = options.store ?? (await EmbeddedStore.open({ dir: path.join(root, "store") }));
  const manager = await AlbaManager.open({ store });
  await manager.createPreset(singleNodePreset());
  const asds: TestAsd[] = [];
  const backends: AlbaBackend[] = [];

  const start = async (asd: TestAsd, port: number): Promise<void> => {
    if (asd.statfs !== undefined) {
      asd.server = await AsdServer.start({ dir: asd.dir, host: "127.0.0.1", port, clusterSecret: testClusterSecret, logger: silentLogger(), statfs: asd.statfs.source, statfsCacheMs: 0 });
    } else {
      asd.server = (await runAsd({ dir: asd.dir, host: "127.0.0.1", port, clusterSecret: testClusterSecret, logger: silentLogger() })).server;
    }
    asd.port = asd.server.port;
    asd.asdId = asd.server.asdId;
  };

  for (let index = 0; index < asdCount; index++) {
    const asd: TestAsd = { dir: path.join(root, `asd-${index}`), port: 0, asdId: "", server: undefined, statfs: options.settableStatfs === true ? new SettableStatfs() : undefined };
    await start(asd, 0);
    asds.push(asd);
  }

  const cluster: TestCluster = {
    root, store, manager, asds,
    async backend(extra = {}) {
      const backend = await AlbaBackend.open({ manager, clusterSecret: testClusterSecret, observationsFlushMs: 0, ...extra });
      backends.push(backend);
      return backend;
    },
    async stopAsd(index) {
      const asd = asds[index]!;
      await asd.server?.close();
      asd.server = undefined;
    },
    async startAsd(index) {
      const asd = asds[index]!;
      if (asd.server === undefined) await start(asd, asd.port);
    },
    async close() {
      for (const backend of backends) await backend.close();
      for (const asd of asds) await asd.server?.close();
      await store.close();
      await rm(root, { recursive: true, force: true });
    },
  };

  const claimer = await cluster.backend();
  for (const asd of asds) await claimer.claimAsd({ host: "127.0.0.1", port: asd.port, nodeId: "node-1" }, testClusterSecret);
  return cluster;
}
