// AsdSupervisor with real `ovs asd` children (from dist/): it keeps the layout and the secret, restarts a
// killed ASD with the same identity and port, moves an ASD whose port another process took (and says
// so), and stop() leaves no child behind, SIGKILLing one that ignores SIGTERM.

import { afterEach, describe, expect, it } from "vitest";
import fsp from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import { silentLogger } from "../src/base/index.js";
import { AsdSupervisor, readAsdLayout, type LocalAsdInfo } from "../src/framework/index.js";
import { alive, assertBuilt, ovsBin, tempDir } from "./platform.js";

const dirs: string[] = [];
const supervisors: AsdSupervisor[] = [];
afterEach(async () => {
  for (const supervisor of supervisors.splice(0)) await supervisor.stop();
  for (const dir of dirs.splice(0)) await fsp.rm(dir, { recursive: true, force: true });
});

async function until<T>(what: string, timeoutMs: number, probe: () => T | undefined): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function open(dataDir: string, extra: Partial<Parameters<typeof AsdSupervisor.open>[0]> = {}): Promise<AsdSupervisor> {
  const supervisor = await AsdSupervisor.open({
    dataDir, count: 2, command: { execPath: process.execPath, args: [ovsBin, "asd"] }, log: silentLogger(), restartDelayMsMin: 100, restartDelayMsMax: 400, ...extra,
  });
  supervisors.push(supervisor);
  return supervisor;
}

describe("AsdSupervisor", () => {
  it("restarts a killed ASD on the same port with the same identity, and keeps both across restarts", async () => {
    assertBuilt();
    const dataDir = await tempDir("ovs-supervisor-");
    dirs.push(dataDir);
    const supervisor = await open(dataDir);
    const first = await supervisor.start();
    expect(first.map((asd) => asd.state)).toEqual(["running", "running"]);
    const layout = (await readAsdLayout(path.join(dataDir, "asds")))!;
    expect(layout.asds.map((entry) => [entry.port, entry.asdId])).toEqual(first.map((asd) => [asd.port, asd.asdId]));
    process.kill(first[0]!.pid!, "SIGKILL");
    const back = await until("the killed ASD runs again", 30_000, () => {
      const asd = supervisor.list()[0]!;
      return asd.state === "running" && asd.pid !== first[0]!.pid ? asd : undefined;
    });
    expect(back).toMatchObject({ port: first[0]!.port, asdId: first[0]!.asdId, restarts: 1, lastExit: "killed by SIGKILL" });
    const pids = supervisor.list().map((asd) => asd.pid!);
    await supervisor.stop();
    for (const pid of pids) expect(alive(pid)).toBe(false);
    // A second supervisor on the data dir finds the same ASDs at the same ports, with the same secret.
    const again = await open(dataDir);
    expect(again.clusterSecret).toBe(supervisor.clusterSecret);
    expect((await again.start()).map((asd) => [asd.port, asd.asdId])).toEqual(first.map((asd) => [asd.port, asd.asdId]));
  });

  it("moves an ASD whose port another process took, and reports the new address", async () => {
    assertBuilt();
    const dataDir = await tempDir("ovs-supervisor-port-");
    dirs.push(dataDir);
    const first = await open(dataDir);
    const before = await first.start();
    await first.stop();
    const squatter = net.createServer();
    await new Promise<void>((resolve) => squatter.listen(before[1]!.port, "127.0.0.1", resolve));
    try {
      const moved: LocalAsdInfo[] = [];
      const second = await open(dataDir, { onAddressChanged: (asd) => moved.push(asd) });
      const after = await second.start();
      expect(after[0]!.port).toBe(before[0]!.port);
      expect(after[1]!.port).not.toBe(before[1]!.port);
      expect(after[1]!.asdId).toBe(before[1]!.asdId);
      expect(moved.map((asd) => [asd.index, asd.port])).toEqual([[1, after[1]!.port]]);
      expect((await readAsdLayout(path.join(dataDir, "asds")))!.asds[1]!.port).toBe(after[1]!.port);
    } finally {
      await new Promise((resolve) => squatter.close(resolve));
    }
  });

  it("kills a child that ignores SIGTERM once stopTimeoutMs has passed", async () => {
    const dataDir = await tempDir("ovs-supervisor-stubborn-");
    dirs.push(dataDir);
    // A stand-in for a hung ASD: it announces itself like `ovs asd` and then ignores SIGTERM.
    const script = [
      "process.on('SIGTERM', () => {});",
      "const i = process.argv.indexOf('--port');",
      "process.stdout.write('ASD ' + '0123456789abcdef0123456789abcdef'.slice(0, 31) + process.argv[i + 1].slice(-1) + ' listening on 127.0.0.1:' + process.argv[i + 1] + '\\n');",
      "setInterval(() => {}, 1000);",
    ].join("");
    const supervisor = await open(dataDir, { count: 1, command: { execPath: process.execPath, args: ["-e", script, "--"] }, stopTimeoutMs: 300 });
    const [asd] = await supervisor.start();
    expect(alive(asd!.pid!)).toBe(true);
    const startedMs = Date.now();
    await supervisor.stop();
    expect(Date.now() - startedMs).toBeGreaterThanOrEqual(250);
    expect(alive(asd!.pid!)).toBe(false);
    expect(supervisor.list()[0]!.lastExit).toBe("killed by SIGKILL");
  });
});
