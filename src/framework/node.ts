// A single-node platform (`ovs up`): the embedded cluster store, the local object backend, the vDisks,
// the NBD server and the REST API, all in this process, under one data directory:
//   <dataDir>/store     embedded ClusterStore (LMDB)
//   <dataDir>/backend   local object backend
//   <dataDir>/volumes   one directory per vDisk (write buffer, TLogs, metadata)
// start() brings them up in dependency order; stop() takes them down in reverse, syncing every vDisk.

import path from "node:path";
import fsp from "node:fs/promises";
import type { FastifyInstance } from "fastify";
import type { Logger } from "../base/index.js";
import { EmbeddedStore, type ClusterStore } from "../store/index.js";
import { LocalBackend, type ObjectBackend } from "../backend/index.js";
import { NbdServer } from "../frontend/index.js";
import { VDiskService } from "./vdisk-service.js";
import { buildApi, type NodeInfo } from "./api.js";

export interface NodeOptions {
  dataDir: string;
  nbdHost: string;
  nbdPort: number;
  apiHost: string;
  apiPort: number;
  log: Logger;
  version: string;
}

export class PlatformNode {
  private store: ClusterStore | undefined;
  private backend: ObjectBackend | undefined;
  private vdisks: VDiskService | undefined;
  private nbd: NbdServer | undefined;
  private api: FastifyInstance | undefined;
  private info: NodeInfo | undefined;

  constructor(private readonly options: NodeOptions) {}

  async start(): Promise<NodeInfo> {
    const { dataDir, log } = this.options;
    try {
      await fsp.mkdir(dataDir, { recursive: true });
      this.store = await EmbeddedStore.open({ dir: path.join(dataDir, "store"), logger: log });
      this.backend = await LocalBackend.open({ dir: path.join(dataDir, "backend") });
      this.vdisks = new VDiskService({ dataDir, store: this.store, backend: this.backend, log });
      await this.vdisks.start();
      this.nbd = new NbdServer({ provider: this.vdisks, host: this.options.nbdHost, port: this.options.nbdPort, logger: log });
      const nbdPort = await this.nbd.listen();
      const nbd = this.nbd;
      this.vdisks.disconnect = (name) => nbd.disconnectExport(name);
      this.api = await buildApi({ vdisks: this.vdisks, nodeInfo: () => this.info!, log });
      await this.api.listen({ host: this.options.apiHost, port: this.options.apiPort });
      const address = this.api.server.address();
      const apiPort = typeof address === "object" && address ? address.port : this.options.apiPort;
      this.info = {
        version: this.options.version,
        dataDir: path.resolve(dataDir),
        store: this.store.description,
        backend: this.backend.description,
        nbd: { host: this.options.nbdHost, port: nbdPort },
        api: { host: this.options.apiHost, port: apiPort },
      };
      return this.info;
    } catch (error) {
      await this.stop();
      throw error;
    }
  }

  async stop(): Promise<void> {
    const { log } = this.options;
    const step = async (what: string, work: (() => Promise<unknown>) | undefined): Promise<void> => {
      if (!work) return;
      try {
        await work();
      } catch (error) {
        log.error({ err: error }, `stopping ${what} failed`);
      }
    };
    await step("the API", this.api && (() => this.api!.close()));
    await step("the NBD server", this.nbd && (() => this.nbd!.close()));
    await step("the vDisks", this.vdisks && (() => this.vdisks!.stop()));
    await step("the backend", this.backend && (() => this.backend!.close()));
    await step("the store", this.store && (() => this.store!.close()));
    this.api = this.nbd = this.vdisks = this.backend = this.store = undefined;
  }
}
