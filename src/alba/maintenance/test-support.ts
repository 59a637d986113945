// Test helpers of the maintenance agent: a local ALBA cluster of real ASDs (in-process, 127.0.0.1, free
// ports, temp dirs) with an EmbeddedStore, an AlbaManager with the single-node default preset, the ASDs
// claimed; ASDs can be stopped, started again on their port and directory, and added; each reads its disk
// space from a settable statfs (to make it look full or empty). Helpers to inspect fragments on ASDs.
// Imported only by src/alba/maintenance/*.test.ts.
// Limits: everything created is removed by close(); waits are bounded by the ASD and store timeouts.

import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { silentLogger } from "../../base/index.js";
import { EmbeddedStore } from "../../store/index.js";
import { AsdClient, AsdServer } from "../asd/index.js";
import { AlbaBackend, type AlbaBackendOptions } from "../client/index.js";
import { AlbaManager, fragmentKey, singleNodePreset, type Manifest } from "../manager/index.js";
import { MaintenanceAgent, type MaintenanceOptions } from "./agent.js";
import { SettableStatfs } from "../client/test-support.js";

export const testClusterSecret = "alba-maintenance-test-secret";

export { SettableStatfs } from "../client/test-support.js";

export interface TestAsd {
  dir: string;
  port: number;
  asdId: string;
  nodeId: string;
  server: AsdServer | undefined;
  statfs: SettableStatfs;
}

export class TestCluster {
  private readonly backends: AlbaBackend[] = [];
  private readonly agents: MaintenanceAgent[] = [];
  private claimer: AlbaBackend | undefined;

  private constructor(
    readonly root: string,
    readonly store: EmbeddedStore,
    readonly manager: AlbaManager,
    readonly asds: TestAsd[],
  ) {}

  static async start(asdCount = 6): Promise<TestCluster> {
    const root = await mkdtemp(path.join(os.tmpdir(), "ovs-alba-maintenance-"));
    const store = await EmbeddedStore.open({ dir: path.join(root, "store") });
    const manager = await AlbaManager.open({ store });
    await manager.createPreset(singleNodePreset());
    const cluster = new TestCluster(root, store, manager, []);
    for (let index = 0; index < asdCount; index++) await cluster.addAsd();
    return cluster;
  }

  /** Starts a new ASD and claims it for the backend (node "node-1" unless given). */
  async addAsd(nodeId = "node-1"): Promise<TestAsd> {
    const asd: TestAsd = { dir: path.join(this.root, `asd-${this.asds.length}`), port: 0, asdId: "", nodeId, server: undefined, statfs: new SettableStatfs() };
    await this.run(asd);
    this.asds.push(asd);
    this.claimer ??= await this.backend();
    await this.claimer.claimAsd({ host: "127.0.0.1", port: asd.port, nodeId }, testClusterSecret);
    return asd;
  }

  private async run(asd: TestAsd): Promise<void> {
    asd.server = await AsdServer.start({
      dir: asd.dir, host: "127.0.0.1", port: asd.port, clusterSecret: testClusterSecret, logger: silentLogger(), statfs: asd.statfs.source, statfsCacheMs: 0,
    });
    asd.port = asd.server.port;
    asd.asdId = asd.server.asdId;
  }

  async backend(options: Partial<AlbaBackendOptions> = {}): Promise<AlbaBackend> {
    const backend = await AlbaBackend.open({ manager: this.manager, clusterSecret: testClusterSecret, observationsFlushMs: 0, fragmentCacheBytes: 0, ...options });
    this.backends.push(backend);
    return backend;
  }

  agent(options: Partial<MaintenanceOptions> = {}): MaintenanceAgent {
    const agent = new MaintenanceAgent({ manager: this.manager, clusterSecret: testClusterSecret, requestTimeoutMs: 2_000, ...options });
    this.agents.push(agent);
    return agent;
  }

  indexOf(asdId: string): number {
    return this.asds.findIndex((asd) => asd.asdId === asdId);
  }

  async stopAsd(index: number): Promise<void> {
    const asd = this.asds[index]!;
    await asd.server?.close();
    asd.server = undefined;
  }

  async startAsd(index: number): Promise<void> {
    const asd = this.asds[index]!;
    if (asd.server === undefined) await this.run(asd);
  }

  /** A client of one ASD (closed by the caller). */
  async client(index: number): Promise<AsdClient> {
    return AsdClient.connect({ host: "127.0.0.1", port: this.asds[index]!.port, clusterSecret: testClusterSecret, backendId: this.manager.backendId });
  }

  /** Every key on an ASD (hex). */
  async keysOn(index: number): Promise<string[]> {
    const client = await this.client(index);
    try {
      return (await client.range({ limit: 10_000 })).keys.map((key) => key.toString("hex"));
    } finally {
      await client.close();
    }
  }

  async namespaceId(namespace: string): Promise<number> {
    return (await this.manager.getNamespace(namespace))!.namespaceId;
  }

  /** Flips one byte of a fragment's blob file (fragments ≥ 16 KiB are files): the ASD's checksum catches it. */
  async flipFileByte(index: number, offsetBytes: number): Promise<void> {
    const blobs = path.join(this.asds[index]!.dir, "blobs");
    const files: string[] = [];
    for (const sub of await readdir(blobs)) for (const file of await readdir(path.join(blobs, sub))) files.push(path.join(blobs, sub, file));
    if (files.length !== 1) throw new Error(`expected one blob file on ASD ${index}, found ${files.length}`);
    const bytes = await readFile(files[0]!);
    bytes[offsetBytes] = bytes[offsetBytes]! ^ 0x5a;
    await writeFile(files[0]!, bytes);
  }

  /** Rewrites a fragment through the protocol with one payload byte flipped (the ASD's checksum stays valid). */
  async rewriteFlipped(namespace: string, manifest: Manifest, chunkIndex: number, fragmentIndex: number): Promise<void> {
    const fragment = manifest.chunks[chunkIndex]!.fragments[fragmentIndex]!;
    const client = await this.client(this.indexOf(fragment.asdId));
    try {
      const key = fragmentKey(await this.namespaceId(namespace), manifest.objectId, chunkIndex, fragmentIndex, fragment.version);
      const value = Buffer.from((await client.get(key))!);
      value[value.length - 1] = value[value.length - 1]! ^ 0x01;
      await client.apply([], [{ kind: "set", key, value }]);
    } finally {
      await client.close();
    }
  }

  async close(): Promise<void> {
    for (const agent of this.agents) await agent.close();
    for (const backend of this.backends) await backend.close();
    for (const asd of this.asds) await asd.server?.close();
    await this.store.close();
    await rm(this.root, { recursive: true, force: true });
  }
}

/** Every object of `manifest` has k+m fragments, each on a distinct ASD of `healthy`, ≤ x per node. */
export function fullyRedundant(manifest: Manifest, healthy: ReadonlySet<string>): boolean {
  return manifest.chunks.every((chunk) => {
    const asdIds = chunk.fragments.map((fragment) => fragment?.asdId);
    return asdIds.every((asdId) => asdId !== undefined && healthy.has(asdId)) && new Set(asdIds).size === asdIds.length;
  });
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
