// Front-door test of the page-cache drop-behind (docs/ARCHITECTURE.md "Drop-behind of the page cache"):
// `ovs up --backend local --page-cache-window 8M` as a process, a vDisk written through NBD with qemu-io
// (128 KiB writes, so its SCOs go through the page cache), then /metrics: the window is the one asked for, the SCO files stored beyond it were dropped from the
// page cache (counted in files and bytes), the window's use stays within it, and every byte still reads
// back (from the disk now). A bad --page-cache-window is refused in one sentence, nothing started.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fsp from "node:fs/promises";
import { RunningNode, expectOk, runOvs, runTool, tempDir } from "./platform.js";
import { parsePrometheusText } from "./prometheus-text.js";

const MiB = 1024 * 1024;
let node: RunningNode;
let dataDir: string;

beforeAll(async () => {
  dataDir = await tempDir("ovs-page-cache-");
  node = await RunningNode.start(dataDir, { nbd: 0, api: 0 }, ["--backend", "local", "--page-cache-window", "8M"]);
});

afterAll(async () => {
  await node?.stop();
  await fsp.rm(dataDir, { recursive: true, force: true });
});

async function metrics(): Promise<(name: string) => number> {
  const families = parsePrometheusText(await (await node.fetch("/metrics")).text());
  return (name) => {
    const samples = families.get(name)?.samples ?? [];
    expect(samples, name).toHaveLength(1);
    return samples[0]!.value;
  };
}

describe("page-cache drop-behind through ovs up", () => {
  it("drops the pages of SCO files stored beyond --page-cache-window, counts them, and reads every byte back", async () => {
    const before = await metrics();
    expect(before("ovs_page_cache_window_bytes")).toBe(8 * MiB);
    expect(before("ovs_page_cache_dropped_files_total")).toBe(0);

    // 4 MiB SCOs (not the default 8): the counts below are of 4 MiB SCOs.
    expectOk(await node.ovs(["vdisk", "create", "pc1", "--size", "128M", "--sco-size", "4M", "--tlog-multiplier", "16"]), "vdisk create");
    const io = (commands: string[]) => runTool("qemu-io", ["-f", "raw", node.uri("pc1"), ...commands.flatMap((c) => ["-c", c])], 120_000);
    // Writes of 128 KiB: SCOs started by writes of 256 KiB or more are written with O_DIRECT and leave
    // nothing in the page cache to drop (docs/ARCHITECTURE.md, write path step 4).
    const writes = Array.from({ length: 640 }, (_, index) => `write -P 0x5a ${index * 128 * 1024} 128k`);
    expectOk(await io([...writes, "flush"]), "qemu-io write");
    // A snapshot closes the open SCO and TLog: every SCO written gets stored, however the TLogs were cut
    // (under write pressure a TLog closes after 4 SCOs, else after 16).
    expectOk(await node.ovs(["snapshot", "create", "pc1", "written"]), "snapshot create");

    // Stored SCOs join the window as their TLogs reach the backend, in the background.
    let metric = await metrics();
    for (let waited = 0; metric("ovs_page_cache_dropped_files_total") < 14 && waited < 30_000; waited += 250) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      metric = await metrics();
    }
    // The 20 SCOs of 4 MiB are stored; with an 8 MiB window at least 14 of them were dropped (18 once all
    // are in; the wait stops at 14).
    expect(metric("ovs_page_cache_dropped_files_total")).toBeGreaterThanOrEqual(14);
    expect(metric("ovs_page_cache_dropped_bytes_total")).toBeGreaterThanOrEqual(56 * MiB);
    expect(metric("ovs_page_cache_window_used_bytes")).toBeLessThanOrEqual(8 * MiB);

    const read = await io(["read -P 0x5a 0 80M"]);
    expectOk(read, "qemu-io read");
    expect(read.stdout).not.toMatch(/Pattern verification failed/);
  });

  it("refuses a bad --page-cache-window in one sentence and starts nothing", async () => {
    const scratch = await tempDir("ovs-page-cache-bad-");
    try {
      const result = await runOvs(["up", "--data-dir", scratch, "--page-cache-window", "lots", "--nbd-port", "0", "--api-port", "0"], { timeoutMs: 30_000 });
      expect(result.exitCode).not.toBe(0);
      expect(result.stderr).toMatch(/size/i);
      expect(result.stderr).not.toMatch(/\n\s+at /); // no stack trace
      expect(await fsp.readdir(scratch)).toEqual([]);
    } finally {
      await fsp.rm(scratch, { recursive: true, force: true });
    }
  });
});
