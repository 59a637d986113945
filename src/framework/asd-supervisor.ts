// AsdSupervisor: runs the node's local ASDs as child processes (`ovs asd`) on <dataDir>/asds/asd-N, on
// the addresses of <dataDir>/asds/layout.json (free ports on the host, chosen at the first start and
// kept), with the cluster secret of <dataDir>/asds/cluster-secret (asd-layout.ts). A child that dies is
// restarted after a backoff (restartDelayMsMin doubling to restartDelayMsMax; reset once it ran
// stableRunMs), and the death is logged. Imported by node.ts.
//
// Invariants: at most one live child per ASD; stop() leaves no child behind (SIGTERM, then SIGKILL after
// stopTimeoutMs) and no restart is scheduled after it; every child runs with --exit-with-stdin and a pipe
// as its stdin, so it exits when this process dies, even by SIGKILL (the kernel closes the pipe); each
// child is in its own process group, so signals to the node's group (Ctrl-C) reach only the node.
// A port found taken by someone else when its ASD cannot start is replaced by a fresh free port, saved,
// and reported through onAddressChanged (the node re-registers the ASD's address).
// Limits: localAsdCountMax ASDs; the backoff bounds restarts to one per restartDelayMsMax when a child
// keeps dying; readyTimeoutMs for start(); the last stderrLinesMax lines of a child are kept for errors.

import { spawn, type ChildProcess } from "node:child_process";
import fsp from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import { assert, OvsError, type Logger } from "../base/index.js";
import { loadOrCreateSecret, localAsdCountMax, readAsdLayout, writeAsdLayout, type AsdLayout } from "./asd-layout.js";

const stderrLinesMax = 20;

export interface AsdCommand {
  /** The program (normally process.execPath) and the arguments before the ASD's own: e.g. [main.js, "asd"]. */
  execPath: string;
  args: string[];
}

export interface AsdSupervisorOptions {
  dataDir: string;
  /** ASDs to run (default 6). A layout on disk with another count wins: ASDs are never dropped or added silently. */
  count?: number;
  /** Address the ASDs listen on (default 127.0.0.1; only used at the first start). */
  host?: string;
  command: AsdCommand;
  log: Logger;
  /** Capacity cap of every local ASD (`ovs asd --capacity`), for small test and demo nodes. */
  capacityBytes?: number;
  restartDelayMsMin?: number;
  restartDelayMsMax?: number;
  stableRunMs?: number;
  readyTimeoutMs?: number;
  stopTimeoutMs?: number;
  onAddressChanged?: (asd: LocalAsdInfo) => void;
}

export type LocalAsdState = "starting" | "running" | "backoff" | "stopped";

export interface LocalAsdInfo {
  index: number;
  dir: string;
  host: string;
  port: number;
  asdId: string | null;
  pid: number | null;
  state: LocalAsdState;
  restarts: number;
  lastExit: string | null;
}

interface Slot {
  index: number;
  dir: string;
  port: number;
  asdId: string | null;
  child: ChildProcess | undefined;
  state: LocalAsdState;
  restarts: number;
  failuresInRow: number;
  startedAtMs: number;
  lastExit: string | null;
  stderr: string[];
  timer: NodeJS.Timeout | undefined;
  readyWaiters: Array<() => void>;
}

/** A port that was free on `host` a moment ago. */
export async function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, host, () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

async function portIsFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once("error", () => resolve(false));
    server.listen(port, host, () => server.close(() => resolve(true)));
  });
}

export class AsdSupervisor {
  readonly asdsDir: string;
  readonly secretFile: string;
  readonly clusterSecret: string;
  private layout: AsdLayout;
  private readonly slots: Slot[];
  private readonly settings: { restartDelayMsMin: number; restartDelayMsMax: number; stableRunMs: number; readyTimeoutMs: number; stopTimeoutMs: number };
  private stopping = false;
  /** Layout writes, one at a time, each of the state when it runs (they share one temporary file name). */
  private saving: Promise<void> = Promise.resolve();

  private constructor(private readonly options: AsdSupervisorOptions, asdsDir: string, secret: { secret: string; file: string }, layout: AsdLayout) {
    this.asdsDir = asdsDir;
    this.clusterSecret = secret.secret;
    this.secretFile = secret.file;
    this.layout = layout;
    this.settings = {
      restartDelayMsMin: options.restartDelayMsMin ?? 250,
      restartDelayMsMax: options.restartDelayMsMax ?? 5_000,
      stableRunMs: options.stableRunMs ?? 30_000,
      readyTimeoutMs: options.readyTimeoutMs ?? 60_000,
      stopTimeoutMs: options.stopTimeoutMs ?? 10_000,
    };
    this.slots = layout.asds.map((entry) => ({
      index: entry.index, dir: path.join(asdsDir, entry.dir), port: entry.port, asdId: entry.asdId, child: undefined, state: "stopped", restarts: 0,
      failuresInRow: 0, startedAtMs: 0, lastExit: null, stderr: [], timer: undefined, readyWaiters: [],
    }));
  }

  /** Loads (or at the first start creates) the secret and the layout; starts nothing yet. */
  static async open(options: AsdSupervisorOptions): Promise<AsdSupervisor> {
    const asdsDir = path.join(options.dataDir, "asds");
    await fsp.mkdir(asdsDir, { recursive: true, mode: 0o700 });
    const secret = await loadOrCreateSecret(asdsDir);
    let layout = await readAsdLayout(asdsDir);
    if (layout === undefined) {
      const count = options.count ?? 6;
      if (!Number.isInteger(count) || count < 1 || count > localAsdCountMax) throw new OvsError("INVALID_ARGUMENT", `A node runs 1 to ${localAsdCountMax} local ASDs; got ${count}.`);
      const host = options.host ?? "127.0.0.1";
      const ports = new Set<number>();
      for (let attempt = 0; ports.size < count; attempt++) {
        if (attempt >= count * 10) throw new OvsError("UNAVAILABLE", `Could not find ${count} free ports on ${host} for the local ASDs.`);
        ports.add(await freePort(host));
      }
      layout = { host, asds: [...ports].map((port, index) => ({ index, dir: `asd-${index}`, port, asdId: null })) };
      await writeAsdLayout(asdsDir, layout);
    }
    return new AsdSupervisor(options, asdsDir, secret, layout);
  }

  get host(): string {
    return this.layout.host;
  }

  /** Starts every ASD and resolves once each has said it listens (UNAVAILABLE after readyTimeoutMs). */
  async start(): Promise<LocalAsdInfo[]> {
    for (const slot of this.slots) this.launch(slot);
    const deadline = Date.now() + this.settings.readyTimeoutMs;
    await Promise.all(
      this.slots.map(
        (slot) =>
          new Promise<void>((resolve, reject) => {
            if (slot.state === "running") return resolve();
            const timer = setTimeout(() => {
              reject(new OvsError("UNAVAILABLE", `Local ASD ${slot.index} (${slot.dir}) did not start within ${this.settings.readyTimeoutMs} ms: ${slot.lastExit ?? "no answer"}${slot.stderr.length > 0 ? `; its last words: ${slot.stderr.slice(-3).join(" | ")}` : ""}.`));
            }, Math.max(0, deadline - Date.now()));
            slot.readyWaiters.push(() => {
              clearTimeout(timer);
              resolve();
            });
          }),
      ),
    );
    await this.saving;
    return this.list();
  }

  list(): LocalAsdInfo[] {
    return this.slots.map((slot) => ({
      index: slot.index, dir: slot.dir, host: this.layout.host, port: slot.port, asdId: slot.asdId, pid: slot.child?.pid ?? null, state: slot.state,
      restarts: slot.restarts, lastExit: slot.lastExit,
    }));
  }

  /** Stops every child: SIGTERM, then SIGKILL after stopTimeoutMs; no restart afterwards. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.saving;
    await Promise.all(
      this.slots.map(async (slot) => {
        if (slot.timer !== undefined) clearTimeout(slot.timer);
        slot.timer = undefined;
        const child = slot.child;
        if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
        const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
        child.kill("SIGTERM");
        const killer = setTimeout(() => {
          this.options.log.warn({ asd: slot.index, pid: child.pid }, "local ASD did not stop on SIGTERM; killing it");
          child.kill("SIGKILL");
        }, this.settings.stopTimeoutMs);
        await exited;
        clearTimeout(killer);
      }),
    );
  }

  private launch(slot: Slot): void {
    assert(slot.child === undefined, "one child per ASD");
    if (this.stopping) return;
    const { command, log } = this.options;
    const args = [
      ...command.args, "--dir", slot.dir, "--port", String(slot.port), "--host", this.layout.host, "--secret-file", this.secretFile, "--exit-with-stdin",
      ...(this.options.capacityBytes === undefined ? [] : ["--capacity", String(this.options.capacityBytes)]),
    ];
    const child = spawn(command.execPath, args, {
      stdio: ["pipe", "pipe", "pipe"],
      // Its own process group: a Ctrl-C (SIGINT to the terminal's foreground group) reaches the node, which
      // stops the ASDs after the vDisks synced, not the ASDs themselves.
      detached: true,
      env: { ...process.env, MALLOC_MMAP_THRESHOLD_: "67108864", MALLOC_TRIM_THRESHOLD_: "268435456" },
    });
    slot.child = child;
    slot.state = "starting";
    slot.startedAtMs = Date.now();
    slot.stderr = [];
    child.stdin!.on("error", () => undefined); // the child went away; its exit is handled below
    let stdout = "";
    child.stdout!.on("data", (data: Buffer) => {
      if (slot.state !== "starting") return;
      stdout += data.toString();
      const match = /ASD ([0-9a-f]{32}) listening on \S+:(\d+)/.exec(stdout);
      if (match) this.ready(slot, match[1]!);
    });
    let partial = "";
    child.stderr!.on("data", (data: Buffer) => {
      process.stderr.write(data); // the ASD's own log (pino JSON) goes with the node's
      partial += data.toString();
      const lines = partial.split("\n");
      partial = lines.pop()!;
      slot.stderr.push(...lines.filter((line) => line.trim() !== ""));
      if (slot.stderr.length > stderrLinesMax) slot.stderr.splice(0, slot.stderr.length - stderrLinesMax);
    });
    child.once("error", (error) => log.error({ err: error, asd: slot.index }, "local ASD could not be started"));
    child.once("exit", (code, signal) => void this.exited(slot, child, code, signal));
  }

  private ready(slot: Slot, asdId: string): void {
    slot.state = "running";
    if (slot.asdId !== asdId) {
      if (slot.asdId !== null) this.options.log.warn({ asd: slot.index, was: slot.asdId, now: asdId }, "local ASD has a new identity (its directory was replaced)");
      slot.asdId = asdId;
      void this.saveLayout();
    }
    this.options.log.info({ asd: slot.index, asdId, port: slot.port, pid: slot.child?.pid }, "local ASD running");
    for (const waiter of slot.readyWaiters.splice(0)) waiter();
  }

  private async exited(slot: Slot, child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): Promise<void> {
    if (slot.child !== child) return;
    slot.child = undefined;
    const wasRunning = slot.state === "running";
    slot.lastExit = signal !== null ? `killed by ${signal}` : `exited with code ${code}`;
    slot.state = "stopped";
    if (this.stopping) return;
    const ranMs = Date.now() - slot.startedAtMs;
    slot.failuresInRow = wasRunning && ranMs >= this.settings.stableRunMs ? 1 : slot.failuresInRow + 1;
    if (!wasRunning && slot.failuresInRow >= 3 && !(await portIsFree(this.layout.host, slot.port)) && slot.child === undefined && !this.stopping) {
      // The port is someone else's now (nothing of ours holds it: the child is gone): move to a free one.
      const port = await freePort(this.layout.host);
      this.options.log.warn({ asd: slot.index, oldPort: slot.port, port }, "local ASD port is taken by another process; moving the ASD");
      slot.port = port;
      await this.saveLayout();
      this.options.onAddressChanged?.(this.list()[slot.index]!);
    }
    if (this.stopping) return;
    const delayMs = Math.min(this.settings.restartDelayMsMax, this.settings.restartDelayMsMin * 2 ** Math.min(16, slot.failuresInRow - 1));
    this.options.log.warn({ asd: slot.index, asdId: slot.asdId, pid: child.pid, exit: slot.lastExit, restartInMs: delayMs, lastWords: slot.stderr.slice(-2) }, "local ASD died; restarting it");
    slot.state = "backoff";
    slot.restarts++;
    slot.timer = setTimeout(() => {
      slot.timer = undefined;
      this.launch(slot);
    }, delayMs);
  }

  private saveLayout(): Promise<void> {
    this.saving = this.saving.then(async () => {
      this.layout = { host: this.layout.host, asds: this.slots.map((slot) => ({ index: slot.index, dir: `asd-${slot.index}`, port: slot.port, asdId: slot.asdId })) };
      try {
        await writeAsdLayout(this.asdsDir, this.layout);
      } catch (error) {
        this.options.log.error({ err: error }, "saving the ASD layout failed");
      }
    });
    return this.saving;
  }
}
