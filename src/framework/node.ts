// A storage node (`ovs up`, `ovs node`): the cluster store (embedded, or etcd for several nodes), the
// object backend (ALBA by default: local ASD child processes, the ALBA client and maintenance, see
// alba-service.ts; or `--backend local`), the vDisks, the NBD server and the REST API, under one data
// directory:
//   <dataDir>/store     embedded ClusterStore (LMDB), when the store is embedded
//   <dataDir>/asds      ALBA: the local ASDs (asd-N), their layout and the cluster secret (docs/formats/asd-layout.md)
//   <dataDir>/backend   local object backend (--backend local)
//   <dataDir>/volumes   one directory per vDisk (write buffer, TLogs, metadata)
//   <dataDir>/read-cache the node's read cache file (dropped at every start; volume/read-cache.ts)
//   <dataDir>/audit.log the audit log of changes made through this node's API
// At the first start of a cluster the first admin is created (auth/auth-service.ts bootstrap); its
// password is handed out once through `firstAdmin` for the CLI to print.
// start() brings them up in dependency order; stop() takes them down in reverse: tasks, scheduler, API, NBD, maintenance,
// every vDisk synced, the backend client, the ASD children (SIGTERM, then SIGKILL), the store.

import path from "node:path";
import fsp from "node:fs/promises";
import type { FastifyInstance } from "fastify";
import { OvsError, type Logger } from "../base/index.js";
import type { ClusterStore } from "../store/index.js";
import { openStore, parseStoreUrl } from "./store-url.js";
import { LocalBackend, type ObjectBackend } from "../backend/index.js";
import { ReadCache, readCacheLimits, scoDropBehind } from "../volume/index.js";
import { NbdServer } from "../frontend/index.js";
import { VDiskService } from "./vdisk-service.js";
import { buildApi, type NodeInfo } from "./api.js";
import { AlbaService } from "./alba-service.js";
import { AuthService } from "./auth/auth-service.js";
import { AuditLog } from "./auth/audit-log.js";
import { NodeMetrics } from "./metrics/metrics.js";
import { AsdProbes } from "./metrics/asd-metrics.js";
import { Scheduler } from "./scheduler/scheduler.js";
import { frameworkTasks } from "./scheduler/tasks.js";
import { TaskService } from "./tasks/task-service.js";
import type { ScrubFunction } from "./tasks/scheduled-maintenance.js";
import type { HealthContext } from "./health/healthcheck.js";
import type { AsdCommand } from "./asd-supervisor.js";
import { ManagementModel } from "./model/model-service.js";
import { VPoolBackend } from "./model/vpool-backend.js";

export type BackendKind = "alba" | "local";

export interface NodeOptions {
  dataDir: string;
  /** `--store`: embedded (default), embedded:DIR or etcd://HOST:PORT,... (see store-url.ts). */
  store?: string;
  /** This node's id: the vDisks it serves are the registry's records with this node id. */
  nodeId: string;
  nbdHost: string;
  nbdPort: number;
  apiHost: string;
  apiPort: number;
  log: Logger;
  version: string;
  /** `--backend`: alba (default: local ASD processes) or local (a directory). */
  backend?: BackendKind;
  /** How to start an ASD process (the CLI passes itself: [main.js, "asd"]); needed for alba. */
  asdCommand?: AsdCommand;
  /** Local ASDs at the first start (default 6). */
  asdCount?: number;
  /** Capacity cap of each local ASD (small test and demo nodes). */
  asdCapacityBytes?: number;
  maintenancePassIntervalMs?: number;
  /** The cluster secret of ASDs this node probes (OVS_CLUSTER_SECRET); default: the local ASDs' secret. */
  clusterSecret?: string;
  /** The first admin's password at the first start of a cluster (OVS_ADMIN_PASSWORD); generated when absent. */
  adminPassword?: string;
  /** `--read-cache-size`: the node's read cache in bytes (default readCacheLimits.sizeBytesDefault; 0 = off). */
  readCacheSizeBytes?: number;
  /**
   * `--page-cache-window`: bytes of stored SCO files whose pages may stay in the page cache (the
   * process-wide drop-behind, src/volume/file-io.ts; default 1/8 of RAM, 256 MiB–2 GiB; 0 drops each
   * SCO's pages once it is stored).
   */
  pageCacheWindowBytes?: number;
  /** `--heartbeat-interval`: how often the node writes its heartbeat (default 30 s). */
  heartbeatIntervalMs?: number;
  /** `--offline-after`: how long after its last heartbeat the scheduler's leader marks it offline (default 3 intervals). */
  offlineAfterMs?: number;
}

export class PlatformNode {
  private store: ClusterStore | undefined;
  private backend: ObjectBackend | undefined;
  private alba: AlbaService | undefined;
  private vdisks: VDiskService | undefined;
  private readCache: ReadCache | undefined;
  private nbd: NbdServer | undefined;
  private api: FastifyInstance | undefined;
  private info: NodeInfo | undefined;
  private audit: AuditLog | undefined;
  private scheduler: Scheduler | undefined;
  private tasks: TaskService | undefined;
  private model: ManagementModel | undefined;
  /** Set by start() when this start created the first admin: print it once, then forget it. */
  firstAdmin: { username: string; password: string; generated: boolean } | undefined;

  constructor(private readonly options: NodeOptions) {}

  async start(): Promise<NodeInfo> {
    const { log } = this.options;
    const dataDir = path.resolve(this.options.dataDir);
    try {
      await fsp.mkdir(dataDir, { recursive: true });
      this.store = await openStore(parseStoreUrl(this.options.store ?? "embedded", dataDir), log);
      if ((this.options.backend ?? "alba") === "alba") {
        if (this.options.asdCommand === undefined) throw new OvsError("INVALID_ARGUMENT", "The ALBA backend needs the command that starts an ASD (asdCommand).");
        this.alba = new AlbaService({
          dataDir, store: this.store, nodeId: this.options.nodeId, log, asdCommand: this.options.asdCommand, asdCount: this.options.asdCount,
          asdCapacityBytes: this.options.asdCapacityBytes, maintenancePassIntervalMs: this.options.maintenancePassIntervalMs,
        });
        this.backend = await this.alba.start();
      } else {
        this.backend = await LocalBackend.open({ dir: path.join(dataDir, "backend") });
      }
      const clusterSecret = this.options.clusterSecret ?? this.alba?.clusterSecret;
      const alba = this.alba;
      const metrics = new NodeMetrics({
        nodeId: this.options.nodeId,
        asds: new AsdProbes({ store: this.store, clusterSecret }),
        ...(alba === undefined ? {} : { maintenance: () => { try { return alba.maintenanceStatus(); } catch { return undefined; } } }),
      });
      if (this.options.pageCacheWindowBytes !== undefined) scoDropBehind.windowBytes = this.options.pageCacheWindowBytes;
      this.readCache = await ReadCache.open({ dir: path.join(dataDir, "read-cache"), capacityBytes: this.options.readCacheSizeBytes ?? readCacheLimits.sizeBytesDefault, log });
      // With ALBA, a vDisk's namespace gets its vPool's preset (model/vpool-backend.ts).
      const manager = this.alba?.manager;
      const vdiskBackend = manager === undefined ? this.backend : new VPoolBackend(this.backend, (namespace, preset) => manager.createNamespace(namespace, preset));
      this.vdisks = new VDiskService({ dataDir, nodeId: this.options.nodeId, store: this.store, backend: vdiskBackend, log, metrics, readCache: this.readCache });
      this.model = new ManagementModel({
        store: this.store, vdisks: this.vdisks, nodeId: this.options.nodeId, alba: this.alba, localBackendDir: this.alba ? undefined : path.join(dataDir, "backend"), log,
        ...(this.options.heartbeatIntervalMs === undefined ? {} : { heartbeatIntervalMs: this.options.heartbeatIntervalMs }),
        ...(this.options.offlineAfterMs === undefined ? {} : { offlineAfterMs: this.options.offlineAfterMs }),
      });
      await this.vdisks.start();
      this.nbd = new NbdServer({ provider: this.vdisks, host: this.options.nbdHost, port: this.options.nbdPort, logger: log });
      const nbdPort = await this.nbd.listen();
      const nbd = this.nbd;
      this.vdisks.disconnect = (name) => nbd.disconnectExport(name);
      const auth = new AuthService({ store: this.store, log });
      this.firstAdmin = await auth.bootstrap(this.options.adminPassword);
      this.audit = AuditLog.inDataDir(dataDir);
      const vdisks = this.vdisks;
      const store = this.store;
      const backend = this.backend;
      const health = (): HealthContext => ({ nodeId: this.options.nodeId, dataDir, store, backend, vdisks: () => vdisks.list(), nbd: () => this.info?.nbd, alba: { clusterSecret } });
      // Tasks this node left queued or running when it stopped are marked failed (INTERRUPTED) here.
      this.tasks = new TaskService({ store, nodeId: this.options.nodeId, log });
      await this.tasks.start();
      const scrub: ScrubFunction = (name, options, onProgress) => vdisks.scrub(name, options, onProgress);
      const model = this.model;
      const tasks = this.tasks;
      this.scheduler = new Scheduler({
        store, nodeId: this.options.nodeId, log, taskService: this.tasks,
        // The leader marks storage routers without a recent heartbeat offline and fails their tasks.
        leaderChecks: [{ name: "storagerouter.heartbeats", run: async () => void (await model.checkStorageRouters((nodeId, reason) => tasks.failTasksOf(nodeId, reason))) }],
        tasks: frameworkTasks({ auth, health, vdisks, scrub, ...(this.alba === undefined ? {} : { alba: this.alba }) }),
        // Changes the scheduler makes on its own (automatic snapshots, scrubs) are audited like API changes.
        audit: (run) => this.audit?.write({
          time: run.finishedAt, reqId: run.taskId ?? "-", method: "SCHEDULE", route: `scheduler/${run.task}`, url: `scheduler/${run.task}`,
          status: run.state === "SUCCESS" ? 200 : 500, subject: "scheduler", remoteAddress: "-", durationMs: run.durationMs,
          ...(run.taskId === undefined ? {} : { taskId: run.taskId }), message: run.message,
        }),
      });
      this.api = await buildApi({
        vdisks: this.vdisks, store: this.store, backend: this.backend, alba: this.alba, auth, audit: this.audit, metrics, scheduler: this.scheduler, tasks: this.tasks,
        nodeInfo: () => this.info!, log, version: this.options.version, clusterSecret, model: this.model,
      });
      await this.scheduler.start();
      await this.api.listen({ host: this.options.apiHost, port: this.options.apiPort });
      const address = this.api.server.address();
      const apiPort = typeof address === "object" && address ? address.port : this.options.apiPort;
      // Not fatal: a node whose model records cannot be written (a record edited by hand) still serves its
      // vDisks; the log says why, and the next start registers again.
      await this.model.registerNode({ name: this.options.nodeId, ip: this.options.apiHost, ports: { nbd: nbdPort, api: apiPort } }).catch((error: unknown) => {
        log.error({ err: error }, "registering this storage router in the model failed; vDisks are served, the model shows it stale until the next start");
      });
      this.model.startHeartbeat();
      this.info = {
        version: this.options.version,
        nodeId: this.options.nodeId,
        dataDir,
        store: this.store.description,
        backend: this.backend.description,
        nbd: { host: this.options.nbdHost, port: nbdPort },
        api: { host: this.options.apiHost, port: apiPort },
        asds: this.alba?.localAsds().map((asd) => ({ index: asd.index, asdId: asd.asdId, host: asd.host, port: asd.port, dir: asd.dir, pid: asd.pid })) ?? [],
        readCache: { dir: path.join(dataDir, "read-cache"), capacityBytes: this.readCache.capacityBytes },
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
    this.model?.stop();
    // Running tasks first (aborted; what does not end within 5 s is marked INTERRUPTED), so that the
    // scheduler does not wait for a long scheduled run.
    await step("the tasks", this.tasks && (() => this.tasks!.stop()));
    await step("the scheduler", this.scheduler && (() => this.scheduler!.stop()));
    await step("the API", this.api && (() => this.api!.close()));
    await step("the audit log", this.audit && (() => this.audit!.close()));
    await step("the NBD server", this.nbd && (() => this.nbd!.close()));
    await step("maintenance", this.alba && (() => this.alba!.stopMaintenance()));
    await step("the vDisks", this.vdisks && (() => this.vdisks!.stop()));
    await step("the read cache", this.readCache && (() => this.readCache!.close()));
    if (this.alba) await step("the ALBA backend and its ASDs", () => this.alba!.stop());
    else await step("the backend", this.backend && (() => this.backend!.close()));
    await step("the store", this.store && (() => this.store!.close()));
    this.api = this.nbd = this.vdisks = this.readCache = this.backend = this.store = this.alba = this.audit = this.scheduler = this.model = this.tasks = undefined;
  }
}
