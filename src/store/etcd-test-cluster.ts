// Test helper: starts a 1- or 3-member etcd cluster (Debian's etcd-server) on loopback, on free ports,
// with its data under a fresh temporary directory, and stops it. Used by the etcd store's tests and the
// store benchmark; not part of the store's public face (store/index.ts does not export it).
//
// Invariants:
// - Only processes this helper spawned are ever signalled, by their pid; stop() kills every member it
//   started (SIGKILL after a grace period) and removes the data directory.
// - Starting is bounded by startTimeoutMs: a cluster that is not healthy by then is stopped and the call
//   fails with the members' stderr.
// - A missing etcd binary is an error naming the package to install, never a silent skip.
// - Members run like production ones: auto-compaction (periodic, 1h) and a backend quota.

import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";

/** How long start() waits for a healthy cluster with a leader. */
export const etcdStartTimeoutMsDefault = 30_000;
/** How long stop() waits after SIGTERM before SIGKILL. */
export const etcdStopGraceMs = 5_000;
/** Default backend quota of test clusters (etcd's own default is 2 GiB). */
export const etcdTestQuotaBytesDefault = 256 * 1024 * 1024;

export interface EtcdMember {
  name: string;
  endpoint: string;
  peerUrl: string;
  dataDir: string;
  process: ChildProcess | undefined;
  stderr: string[];
}

export interface EtcdTestCluster {
  endpoints: string[];
  members: EtcdMember[];
  dir: string;
  /** Index of the member that currently leads (asks every live member), or -1. */
  leaderIndex(): Promise<number>;
  /** Sends `signal` to member `index` and waits for it to exit. */
  kill(index: number, signal: NodeJS.Signals): Promise<void>;
  /** Stops every member still running and removes the data directory. Idempotent. */
  stop(): Promise<void>;
}

export interface EtcdClusterOptions {
  members: 1 | 3;
  quotaBackendBytes?: number;
  startTimeoutMs?: number;
}

/** The etcd binary, or an error telling how to install it. */
export function etcdBinary(): string {
  for (const candidate of ["/usr/bin/etcd", "/usr/local/bin/etcd"]) if (existsSync(candidate)) return candidate;
  const which = spawnSync("sh", ["-c", "command -v etcd"], { encoding: "utf8" });
  const found = which.stdout.trim();
  if (which.status === 0 && found !== "") return found;
  throw new Error(
    "etcd is not installed: the etcd store's tests need a real etcd. Install Debian's packages as root: " +
      "`apt-get update && apt-get install -y etcd-server etcd-client` (scripts/etcd-cluster does this).",
  );
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen({ host: "127.0.0.1", port: 0 }, () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address !== null ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}

async function postJson(url: string, body: unknown, timeoutMs: number): Promise<unknown> {
  const response = await fetch(url, { method: "POST", body: JSON.stringify(body), signal: AbortSignal.timeout(timeoutMs) });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

async function isHealthy(endpoint: string): Promise<boolean> {
  try {
    const response = await fetch(`${endpoint}/health`, { signal: AbortSignal.timeout(1_000) });
    const body = (await response.json()) as { health?: unknown };
    return response.ok && (body.health === "true" || body.health === true);
  } catch {
    return false;
  }
}

export async function startEtcdCluster(options: EtcdClusterOptions): Promise<EtcdTestCluster> {
  const binary = etcdBinary();
  const memberCount = options.members;
  if (memberCount !== 1 && memberCount !== 3) throw new Error("an etcd test cluster has 1 or 3 members");
  const startTimeoutMs = options.startTimeoutMs ?? etcdStartTimeoutMsDefault;
  const quotaBytes = options.quotaBackendBytes ?? etcdTestQuotaBytesDefault;
  const dir = await mkdtemp(path.join(os.tmpdir(), "ovs-etcd-"));
  const members: EtcdMember[] = [];
  const usedPorts = new Set<number>();
  const port = async (): Promise<number> => {
    for (let tries = 0; tries < 20; tries++) {
      const candidate = await freePort();
      if (!usedPorts.has(candidate)) {
        usedPorts.add(candidate);
        return candidate;
      }
    }
    throw new Error("could not find free ports for etcd");
  };
  for (let index = 0; index < memberCount; index++) {
    const name = `m${index}`;
    members.push({
      name,
      endpoint: `http://127.0.0.1:${await port()}`,
      peerUrl: `http://127.0.0.1:${await port()}`,
      dataDir: path.join(dir, name),
      process: undefined,
      stderr: [],
    });
  }
  const initialCluster = members.map((member) => `${member.name}=${member.peerUrl}`).join(",");
  const token = `ovs-test-${path.basename(dir)}`;
  const exited = new Map<EtcdMember, Promise<void>>();
  const startMember = (member: EtcdMember): void => {
    const child = spawn(
      binary,
      [
        "--name", member.name,
        "--data-dir", member.dataDir,
        "--listen-client-urls", member.endpoint,
        "--advertise-client-urls", member.endpoint,
        "--listen-peer-urls", member.peerUrl,
        "--initial-advertise-peer-urls", member.peerUrl,
        "--initial-cluster", initialCluster,
        "--initial-cluster-state", "new",
        "--initial-cluster-token", token,
        "--auto-compaction-mode", "periodic",
        "--auto-compaction-retention", "1h",
        "--quota-backend-bytes", String(quotaBytes),
        "--logger", "zap",
        "--log-level", "warn",
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    member.process = child;
    child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
      member.stderr.push(chunk);
      if (member.stderr.length > 200) member.stderr.shift();
    });
    exited.set(member, new Promise<void>((resolve) => child.once("exit", () => resolve())));
  };
  for (const member of members) startMember(member);

  const running = (member: EtcdMember): boolean => member.process !== undefined && member.process.exitCode === null && member.process.signalCode === null;

  const cluster: EtcdTestCluster = {
    endpoints: members.map((member) => member.endpoint),
    members,
    dir,
    leaderIndex: async () => {
      for (const [index, member] of members.entries()) {
        if (!running(member)) continue;
        try {
          const status = (await postJson(`${member.endpoint}/v3/maintenance/status`, {}, 2_000)) as {
            header?: { member_id?: string };
            leader?: string;
          };
          if (status.leader !== undefined && status.leader !== "0" && status.leader === status.header?.member_id) return index;
        } catch {
          // Not answering: ask the next one.
        }
      }
      return -1;
    },
    kill: async (index, signal) => {
      const member = members[index];
      if (member === undefined || !running(member)) return;
      member.process!.kill(signal);
      await exited.get(member);
    },
    stop: async () => {
      await Promise.all(
        members.map(async (member) => {
          if (!running(member)) return;
          member.process!.kill("SIGTERM");
          const timer = setTimeout(() => {
            if (running(member)) member.process!.kill("SIGKILL");
          }, etcdStopGraceMs);
          await exited.get(member);
          clearTimeout(timer);
        }),
      );
      await rm(dir, { recursive: true, force: true });
    },
  };

  const deadlineMs = Date.now() + startTimeoutMs;
  try {
    while (true) {
      const dead = members.find((member) => !running(member));
      if (dead !== undefined) throw new Error(`etcd member ${dead.name} exited while starting: ${dead.stderr.join("").slice(-2000)}`);
      const healthy = await Promise.all(members.map((member) => isHealthy(member.endpoint)));
      if (healthy.every(Boolean) && (await cluster.leaderIndex()) >= 0) return cluster;
      if (Date.now() > deadlineMs) {
        throw new Error(
          `etcd (${memberCount} members) was not healthy within ${startTimeoutMs} ms: ` +
            members.map((member) => `${member.name}: ${member.stderr.join("").slice(-1000)}`).join("\n"),
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  } catch (error) {
    await cluster.stop();
    throw error;
  }
}
