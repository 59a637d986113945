// Test support for front-door tests: starts `ovs up` (the built CLI in dist/) as a child process on free
// ports in a temporary data dir, reads where it listens from what it prints, runs the `ovs` CLI, and
// stops the node it started by its pid. Every wait is bounded.
// Auth: at a data dir's first start the node prints the generated admin password once; start() reads it
// from the output, remembers it per data dir (for restarts, which do not print it again) and logs in
// through the token endpoint, so `ovs()` (through OVS_TOKEN) and `fetch()` act as admin.
// Automatic hourly snapshots and the daily scrub are turned off in the nodes it starts unless asked for
// (options.autoSnapshots).

import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { runTool, type ToolResult } from "../src/frontend/nbd/test-support.js";

export { runTool, type ToolResult };

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const ovsBin = path.join(root, "dist/src/cli/main.js");
const startTimeoutMs = 30_000;
/** Admin passwords printed at first starts, by data dir (a restart does not print it again). */
const adminPasswords = new Map<string, string>();
const stopTimeoutMs = 30_000;

export function assertBuilt(): void {
  const source = path.join(root, "src/cli/main.ts");
  if (!fs.existsSync(ovsBin) || fs.statSync(ovsBin).mtimeMs < fs.statSync(source).mtimeMs) {
    throw new Error(`${ovsBin} is missing or older than its source: run \`npx tsc -p .\` first (npm test does).`);
  }
}

export class RunningNode {
  nbdPort = 0;
  apiPort = 0;
  output = "";
  /** Everything the node wrote to stderr (its JSON log lines). */
  stderr = "";
  adminPassword = "";
  /** The admin's bearer token, from the token endpoint after start. */
  token = "";
  private exited: Promise<number | null>;

  private constructor(readonly dataDir: string, readonly child: ChildProcess) {
    this.exited = new Promise((resolve) => child.on("exit", (code) => resolve(code)));
  }

  get apiUrl(): string {
    return `http://127.0.0.1:${this.apiPort}`;
  }

  uri(name: string): string {
    return `nbd://127.0.0.1:${this.nbdPort}/${name}`;
  }

  /** Starts `ovs up` on free ports (or the given ones, to restart on the same ports). */
  static async start(
    dataDir: string,
    ports: { nbd: number; api: number } = { nbd: 0, api: 0 },
    extraArgs: string[] = [],
    command: "up" | "node" = "up",
    env: Record<string, string> = {},
    options: { autoSnapshots?: boolean } = {},
  ): Promise<RunningNode> {
    assertBuilt();
    const child = spawn(process.execPath, [ovsBin, command, "--data-dir", dataDir, "--nbd-port", String(ports.nbd), "--api-port", String(ports.api), ...extraArgs], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...cleanEnv(), OVS_LOG_LEVEL: process.env.OVS_LOG_LEVEL ?? "warn", ...env },
    });
    const node = new RunningNode(dataDir, child);
    child.stderr!.on("data", (d: Buffer) => (node.stderr += d.toString()));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        node.kill("SIGKILL");
        reject(new Error(`ovs up did not start within ${startTimeoutMs} ms; stderr: ${node.stderr}`));
      }, startTimeoutMs);
      child.stdout!.on("data", (d: Buffer) => {
        node.output += d.toString();
        const api = /REST API\s+http:\/\/[^:]+:(\d+)/.exec(node.output);
        const nbd = /NBD\s+nbd:\/\/[^\s]+:(\d+)\//.exec(node.output);
        if (api && nbd && node.apiPort === 0 && /Stop with Ctrl-C/.test(node.output)) {
          node.apiPort = Number(api[1]);
          node.nbdPort = Number(nbd[1]);
          clearTimeout(timer);
          resolve();
        }
      });
      child.on("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`ovs up exited with ${code} before it was up; stderr: ${node.stderr}`));
      });
    });
    const printed = /created the user admin with password (\S+)/.exec(node.output)?.[1];
    if (printed !== undefined) adminPasswords.set(path.resolve(dataDir), printed);
    node.adminPassword = env.OVS_ADMIN_PASSWORD ?? printed ?? adminPasswords.get(path.resolve(dataDir)) ?? "";
    if (node.adminPassword !== "") node.token = await node.login("admin", node.adminPassword);
    if (node.token !== "" && options.autoSnapshots !== true) {
      // Hourly automatic snapshots would add snapshots to tests that cross an hour, and the daily scrub
      // rewrite objects under tests that cross 03:00 UTC (the scheduler's first tick is 10 s after the
      // start, so this comes first); tests of them run them by hand.
      for (const task of ["vdisk.auto-snapshot", "vdisk.scrub"]) {
        const off = await node.fetch(`/api/v1/schedule/${task}`, { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify({ enabled: false }) });
        if (off.status !== 200) throw new Error(`turning ${task} off failed: ${off.status} ${await off.text()}`);
      }
    }
    return node;
  }

  /** A token for a user from the token endpoint (password grant). */
  async login(username: string, password: string): Promise<string> {
    const response = await fetch(`${this.apiUrl}/api/v1/oauth/token`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ grant_type: "password", username, password }),
    });
    const body = (await response.json()) as { access_token?: string };
    if (response.status !== 200 || body.access_token === undefined) throw new Error(`login of ${username} failed: ${response.status} ${JSON.stringify(body)}`);
    return body.access_token;
  }

  /** fetch() against the API as admin (or with the given token, or none when token is ""). */
  fetch(pathAndQuery: string, init: RequestInit = {}, token = this.token): Promise<Response> {
    const headers = new Headers(init.headers);
    if (token !== "" && !headers.has("authorization")) headers.set("authorization", `Bearer ${token}`);
    return fetch(`${this.apiUrl}${pathAndQuery}`, { ...init, headers });
  }

  kill(signal: NodeJS.Signals): void {
    if (this.child.pid !== undefined && this.child.exitCode === null && this.child.signalCode === null) process.kill(this.child.pid, signal);
  }

  /** Sends `signal` and waits for the process to exit (SIGKILL after stopTimeoutMs). Returns the exit code. */
  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<number | null> {
    this.kill(signal);
    const timer = setTimeout(() => this.kill("SIGKILL"), stopTimeoutMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Runs the `ovs` CLI against this node, as admin unless env says otherwise (OVS_TOKEN, XDG_CONFIG_HOME). */
  ovs(args: string[], timeoutMs = 60_000, options: { env?: Record<string, string>; input?: string } = {}): Promise<ToolResult> {
    return runOvs(["--api", this.apiUrl, ...args], { timeoutMs, input: options.input, env: { OVS_TOKEN: this.token, ...options.env } });
  }
}

/** The environment without anything that would change who the CLI is (tests set those explicitly). */
export function cleanEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) if (value !== undefined && key !== "OVS_TOKEN" && key !== "OVS_ADMIN_PASSWORD" && key !== "OVS_API_URL") env[key] = value;
  return env;
}

/** Runs the built `ovs` CLI with extra environment and optional standard input; bounded by timeoutMs. */
export function runOvs(args: string[], options: { timeoutMs?: number; input?: string; env?: Record<string, string> } = {}): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [ovsBin, ...args], { stdio: ["pipe", "pipe", "pipe"], env: { ...cleanEnv(), ...options.env } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.stdin.end(options.input ?? "");
    const timer = setTimeout(() => {
      if (child.pid !== undefined) process.kill(child.pid, "SIGKILL");
    }, options.timeoutMs ?? 60_000);
    child.on("error", (error) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ovs: ${error.message}`));
    });
    child.on("close", (exitCode, signal) => {
      clearTimeout(timer);
      resolve({ exitCode, signal, stdout, stderr });
    });
  });
}

/** True while the process `pid` exists (signal 0: nothing is sent). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function tempDir(prefix: string): Promise<string> {
  return fsp.mkdtemp(path.join(os.tmpdir(), prefix));
}

export function expectOk(result: ToolResult, what: string): void {
  if (result.exitCode !== 0) throw new Error(`${what} failed (exit ${result.exitCode}, signal ${result.signal}): ${result.stderr}${result.stdout}`);
}
