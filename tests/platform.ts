// Test support for front-door tests: starts `ovs up` (the built CLI in dist/) as a child process on free
// ports in a temporary data dir, reads where it listens from what it prints, runs the `ovs` CLI, and
// stops the node it started by its pid. Every wait is bounded.

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
  static async start(dataDir: string, ports: { nbd: number; api: number } = { nbd: 0, api: 0 }, extraArgs: string[] = [], command: "up" | "node" = "up"): Promise<RunningNode> {
    assertBuilt();
    const child = spawn(process.execPath, [ovsBin, command, "--data-dir", dataDir, "--nbd-port", String(ports.nbd), "--api-port", String(ports.api), ...extraArgs], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, OVS_LOG_LEVEL: process.env.OVS_LOG_LEVEL ?? "warn" },
    });
    const node = new RunningNode(dataDir, child);
    let stderr = "";
    child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        node.kill("SIGKILL");
        reject(new Error(`ovs up did not start within ${startTimeoutMs} ms; stderr: ${stderr}`));
      }, startTimeoutMs);
      child.stdout!.on("data", (d: Buffer) => {
        node.output += d.toString();
        const api = /REST API\s+http:\/\/[^:]+:(\d+)/.exec(node.output);
        const nbd = /NBD\s+nbd:\/\/[^\s]+:(\d+)\//.exec(node.output);
        if (api && nbd && node.apiPort === 0) {
          node.apiPort = Number(api[1]);
          node.nbdPort = Number(nbd[1]);
          clearTimeout(timer);
          resolve();
        }
      });
      child.on("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`ovs up exited with ${code} before it was up; stderr: ${stderr}`));
      });
    });
    return node;
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

  /** Runs the `ovs` CLI against this node. */
  ovs(args: string[], timeoutMs = 60_000): Promise<ToolResult> {
    return runTool(process.execPath, [ovsBin, "--api", this.apiUrl, ...args], timeoutMs);
  }
}

export async function tempDir(prefix: string): Promise<string> {
  return fsp.mkdtemp(path.join(os.tmpdir(), prefix));
}

export function expectOk(result: ToolResult, what: string): void {
  if (result.exitCode !== 0) throw new Error(`${what} failed (exit ${result.exitCode}, signal ${result.signal}): ${result.stderr}${result.stdout}`);
}
