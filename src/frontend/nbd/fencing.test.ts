// Fencing seen by an NBD client nobody here wrote (qemu-io): once a newer start of the vDisk took its
// owner tag, the stale instance's next backend write is refused, it halts, and its clients get EIO;
// the new owner serves the data that was on the backend.

import { afterEach, describe, expect, it } from "vitest";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { randomUUID } from "node:crypto";
import { silentLogger } from "../../base/index.js";
import { LocalBackend } from "../../backend/index.js";
import { Volume, defaultVolumeSettings } from "../../volume/index.js";
import { NbdServer } from "./server.js";
import { StaticExportProvider } from "./memory-export.js";
import { VolumeExport } from "./volume-export.js";
import { runTool } from "./test-support.js";

const log = silentLogger();
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe("a fenced vDisk through NBD", () => {
  it("answers EIO once another start owns it, and the new owner has the stored data", async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), "ovs-fencing-"));
    cleanups.push(() => fsp.rm(dir, { recursive: true, force: true }));
    const backend = await LocalBackend.open({ dir: path.join(dir, "backend") });
    cleanups.push(() => backend.close());
    const id = randomUUID();
    const config = { ...defaultVolumeSettings(), id, name: "fenced", namespace: `vdisk-${id}`, sizeBytes: 64 * 1024 * 1024, createdAt: new Date().toISOString(), scoSizeBytes: 1024 * 1024 };
    const stale = await Volume.create({ dir: path.join(dir, "a"), backend, config, log });
    cleanups.push(() => stale.close());
    const server = new NbdServer({ provider: new StaticExportProvider([new VolumeExport(stale)]), host: "127.0.0.1", port: 0, logger: log });
    const port = await server.listen();
    cleanups.push(() => server.close());
    const uri = `nbd://127.0.0.1:${port}/fenced`;

    expect((await runTool("qemu-io", ["-f", "raw", uri, "-c", "write -P 0x31 0 2M", "-c", "flush"])).exitCode).toBe(0);
    await stale.syncToBackend();
    // Another node starts the vDisk from the backend: it takes the owner tag.
    const owner = await Volume.openFromBackend({ dir: path.join(dir, "b"), backend, namespace: config.namespace, log });
    cleanups.push(() => owner.close());
    // The stale instance's next upload (a 1 MiB SCO rolls over) is refused and fences it.
    await runTool("qemu-io", ["-f", "raw", uri, "-c", "write -P 0x32 4M 3M", "-c", "flush"]);
    const deadline = Date.now() + 10_000;
    while (!stale.stats().fenced && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(stale.stats().fenced).toBe(true);
    expect(stale.stats().halted).toMatch(/fenced: a newer start of it took its owner tag/);
    const read = await runTool("qemu-io", ["-f", "raw", uri, "-c", "read -P 0x31 0 4096"]);
    expect(`${read.stdout}${read.stderr}`).toMatch(/Input\/output error/);
    expect((await owner.read(0, 2 * 1024 * 1024)).equals(Buffer.alloc(2 * 1024 * 1024, 0x31))).toBe(true);
    expect(owner.stats().fenced).toBe(false);
  });
});
