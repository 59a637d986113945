// `ovs asd` through the front door: the CLI starts an ASD process, a client claims it with the cluster
// secret, writes and reads a value, a wrong secret is refused, and SIGTERM stops it cleanly.

import { afterAll, expect, it } from "vitest";
import { spawn } from "node:child_process";
import fsp from "node:fs/promises";
import path from "node:path";
import { AsdClient } from "../src/alba/index.js";
import { assertBuilt, ovsBin, tempDir } from "./platform.js";

const dirs: string[] = [];
afterAll(async () => {
  for (const dir of dirs) await fsp.rm(dir, { recursive: true, force: true });
});

it("ovs asd serves a claimed ASD and stops on SIGTERM", async () => {
  assertBuilt();
  const dir = await tempDir("ovs-asd-cmd-");
  dirs.push(dir);
  const secretFile = path.join(dir, "secret");
  await fsp.writeFile(secretFile, "s3cret\n");
  const child = spawn(process.execPath, [ovsBin, "asd", "--dir", path.join(dir, "asd"), "--port", "0", "--secret-file", secretFile], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, OVS_LOG_LEVEL: "warn" },
  });
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  try {
    const port = await new Promise<number>((resolve, reject) => {
      let out = "";
      const timer = setTimeout(() => reject(new Error(`ovs asd did not start: ${out}`)), 20_000);
      child.stdout!.on("data", (d: Buffer) => {
        out += d.toString();
        const match = /listening on 127\.0\.0\.1:(\d+)/.exec(out);
        if (match) {
          clearTimeout(timer);
          resolve(Number(match[1]));
        }
      });
    });
    const client = await AsdClient.connect({ host: "127.0.0.1", port, backendId: "backend-1", clusterSecret: "s3cret" });
    expect(await client.claim()).toBe(true);
    await client.apply([], [{ kind: "set", key: Buffer.from("k"), value: Buffer.from("value") }]);
    expect((await client.get(Buffer.from("k")))?.toString()).toBe("value");
    await client.close();
    await expect(AsdClient.connect({ host: "127.0.0.1", port, backendId: "backend-1", clusterSecret: "wrong", reconnect: false })).rejects.toThrow();
  } finally {
    if (child.pid !== undefined && child.exitCode === null) process.kill(child.pid, "SIGTERM");
  }
  expect(await exited).toBe(0);
});
