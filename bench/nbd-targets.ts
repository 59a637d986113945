// The NBD targets the benchmarks compare (bench/nbd.ts, bench/sparse-copy.ts): our vDisk on `ovs up`,
// qemu-nbd and nbd-server serving raw files on the same disk. Each is stopped by the benchmark that
// started it (by pid).

import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { freePort, run, stopChild, waitForPort } from "./process-helpers.js";

export interface Target {
  name: string;
  uri: string;
  stop: () => Promise<void>;
}

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

/** `ovs up` on `backend` with one vDisk "bench" of sizeBytes; `bin`: the ovs entry point (this tree's by default). */
export async function startOurs(dir: string, sizeBytes: number, backend: string, vdiskOptions: string[], bin = path.join(root, "dist/src/cli/main.js")): Promise<Target> {
  const dataDir = path.join(dir, "ovs-data");
  const [nbdPort, apiPort] = [await freePort(), await freePort()];
  // The API needs a token: the first start takes its admin password from OVS_ADMIN_PASSWORD.
  const adminPassword = randomBytes(18).toString("base64url");
  // The same V8 flag and thread-pool size as the `ovs` command's shebang and `npm start` (src/cli/main.ts).
  const child = spawn(process.execPath, ["--initial-old-space-size=128", bin, "up", "--data-dir", dataDir, "--nbd-port", String(nbdPort), "--api-port", String(apiPort), "--backend", backend], {
    stdio: ["ignore", "ignore", "inherit"],
    env: { ...process.env, UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? "16", OVS_LOG_LEVEL: "warn", OVS_ADMIN_PASSWORD: adminPassword },
  });
  try {
    await waitForPort(apiPort, 90_000);
    const response = await fetch(`http://127.0.0.1:${apiPort}/api/v1/oauth/token`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ grant_type: "password", username: "admin", password: adminPassword }),
    });
    const token = ((await response.json()) as { access_token?: string }).access_token;
    if (token === undefined) throw new Error(`login failed: HTTP ${response.status}`);
    const created = await run(process.execPath, [bin, "--api", `http://127.0.0.1:${apiPort}`, "vdisk", "create", "bench", "--size", String(sizeBytes), ...vdiskOptions], 60_000, { ...process.env, OVS_TOKEN: token });
    if (created.code !== 0) throw new Error(`vdisk create failed: ${created.stderr}`);
  } catch (error) {
    await stopChild(child);
    throw error;
  }
  return { name: "ovs", uri: `nbd://127.0.0.1:${nbdPort}/bench`, stop: () => stopChild(child) };
}

/** qemu-nbd serving a sparse raw file of sizeBytes as "bench". */
export async function startQemuNbd(dir: string, sizeBytes: number): Promise<Target> {
  const image = path.join(dir, "qemu-nbd.raw");
  await fsp.writeFile(image, "");
  await fsp.truncate(image, sizeBytes);
  const port = await freePort();
  const child = spawn("qemu-nbd", ["-f", "raw", "--persistent", "-b", "127.0.0.1", "-p", String(port), "-x", "bench", image], { stdio: "ignore" });
  await waitForPort(port, 30_000);
  return { name: "qemu-nbd", uri: `nbd://127.0.0.1:${port}/bench`, stop: () => stopChild(child) };
}

/** Debian's nbd-server serving a sparse raw file as "bench", when installed. */
export async function startNbdServer(dir: string, sizeBytes: number): Promise<Target | undefined> {
  if (!fs.existsSync("/usr/bin/nbd-server")) return undefined;
  const image = path.join(dir, "nbd-server.raw");
  await fsp.writeFile(image, "");
  await fsp.truncate(image, sizeBytes);
  const port = await freePort();
  const config = path.join(dir, "nbd-server.conf");
  const pidFile = path.join(dir, "nbd-server.pid");
  await fsp.writeFile(config, `[generic]\nport = ${port}\nlistenaddr = 127.0.0.1\npid_file = ${pidFile}\n[bench]\nexportname = ${image}\nflush = true\nfua = true\n`);
  // nbd-server daemonizes (with -d it would serve one connection only); it is stopped by its pid file.
  const started = await run("nbd-server", ["-C", config, "-p", pidFile], 30_000);
  if (started.code !== 0) throw new Error(`nbd-server failed to start: ${started.stderr}`);
  await waitForPort(port, 30_000);
  const pid = Number((await fsp.readFile(pidFile, "utf8")).trim());
  return {
    name: "nbd-server",
    uri: `nbd://127.0.0.1:${port}/bench`,
    stop: async () => {
      process.kill(pid, "SIGTERM");
      for (let i = 0; i < 300; i++) {
        try {
          process.kill(pid, 0);
        } catch {
          return;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    },
  };
}
