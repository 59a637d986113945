// VolumeExport.blockStatus on a real volume (in-memory backend): the extents it reports, and the work
// bounds that make a long request answer a prefix (more extents than asked for, or more data clusters
// than one request may look up), which clients continue from its end.

import { afterEach, describe, expect, it } from "vitest";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { randomUUID } from "node:crypto";
import { silentLogger } from "../../base/index.js";
import { Volume, defaultVolumeSettings } from "../../volume/index.js";
import { MemoryBackend } from "../../volume/testing/memory-backend.js";
import { NBD_STATE_HOLE, NBD_STATE_ZERO, type BlockStatusExtent } from "./protocol.js";
import { VolumeExport } from "./volume-export.js";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const zero = NBD_STATE_HOLE | NBD_STATE_ZERO;
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function volumeExport(sizeBytes: number): Promise<{ volume: Volume; nbdExport: VolumeExport }> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), "ovs-volume-export-"));
  cleanups.push(() => fsp.rm(dir, { recursive: true, force: true }));
  const id = randomUUID();
  const config = { ...defaultVolumeSettings(), id, name: "bs", namespace: `vdisk-${id}`, sizeBytes, createdAt: new Date().toISOString() };
  const volume = await Volume.create({ dir, backend: new MemoryBackend(), config, log: silentLogger() });
  cleanups.push(() => volume.close());
  return { volume, nbdExport: new VolumeExport(volume) };
}

/** Asks from `offset` to the end as a client does: again from where each reply ended. */
async function walk(nbdExport: VolumeExport, sizeBytes: number, extentCountMax: number): Promise<{ extents: BlockStatusExtent[]; requests: number }> {
  const extents: BlockStatusExtent[] = [];
  let requests = 0;
  for (let at = 0; at < sizeBytes; requests++) {
    const reply = await nbdExport.blockStatus(at, Math.min(sizeBytes - at, 0xffff_ffff), extentCountMax);
    expect(reply.length).toBeGreaterThan(0);
    expect(reply.length).toBeLessThanOrEqual(extentCountMax);
    for (const extent of reply) {
      const last = extents.at(-1);
      if (last !== undefined && last.flags === extent.flags) last.lengthBytes += extent.lengthBytes;
      else extents.push({ ...extent });
      at += extent.lengthBytes;
    }
  }
  return { extents, requests };
}

describe("VolumeExport.blockStatus", () => {
  it("stops at the extent limit: every other cluster written gives exactly extentCountMax extents", async () => {
    const { volume, nbdExport } = await volumeExport(64 * MiB);
    for (let cluster = 0; cluster < 4096; cluster += 2) await volume.write(cluster * 4096, Buffer.alloc(4096, 1));
    const reply = await nbdExport.blockStatus(0, 64 * MiB, 1024);
    expect(reply).toHaveLength(1024);
    reply.forEach((extent, i) => expect(extent).toEqual({ lengthBytes: 4096, flags: i % 2 === 0 ? 0 : zero }));
    // REQ_ONE: one extent, here the hole up to the first data.
    await volume.trim(0, 8192);
    expect(await nbdExport.blockStatus(0, 64 * MiB, 1)).toEqual([{ lengthBytes: 8192, flags: zero }]);
  });

  it("answers a prefix once it has looked up enough data clusters; walking on covers the disk exactly", async () => {
    const { volume, nbdExport } = await volumeExport(GiB);
    const chunk = Buffer.alloc(4 * MiB, 7);
    for (let at = 100 * MiB; at < 260 * MiB; at += chunk.length) await volume.write(at, chunk);
    await volume.flush();
    const first = await nbdExport.blockStatus(0, GiB, 1024);
    expect(first[0]).toEqual({ lengthBytes: 100 * MiB, flags: zero });
    const covered = first.reduce((sum, extent) => sum + extent.lengthBytes, 0);
    expect(covered).toBeLessThan(260 * MiB); // 160 MiB of data is more than one request looks up
    const { extents, requests } = await walk(nbdExport, GiB, 1024);
    expect(extents).toEqual([
      { lengthBytes: 100 * MiB, flags: zero },
      { lengthBytes: 160 * MiB, flags: 0 },
      { lengthBytes: GiB - 260 * MiB, flags: zero },
    ]);
    expect(requests).toBeGreaterThan(1);
    expect(requests).toBeLessThan(10);
  });

  it("covers a 1 TiB thin vDisk with a few requests of at most 1 GiB each", async () => {
    const TiB = 1024 * GiB;
    const { volume, nbdExport } = await volumeExport(TiB);
    await volume.write(TiB - 4096, Buffer.alloc(4096, 3));
    const reply = await nbdExport.blockStatus(0, 0xffff_ffff, 1024);
    expect(reply).toEqual([{ lengthBytes: GiB, flags: zero }]);
    expect(await nbdExport.blockStatus(TiB - 8192, 8192, 1024)).toEqual([{ lengthBytes: 4096, flags: zero }, { lengthBytes: 4096, flags: 0 }]);
  });
});
