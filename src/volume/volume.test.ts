import { afterEach, describe, expect, it, vi } from "vitest";
import fs from "node:fs";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { randomBytes, randomUUID } from "node:crypto";
import { silentLogger, isOvsError } from "../base/index.js";
import { Volume, defaultVolumeSettings, volumeLimits, volumeOs, type VolumeConfig } from "./volume.js";
import { MetadataStore } from "./metadata-store.js";
import { MemoryBackend } from "./testing/memory-backend.js";
import { LocalBackend, type ObjectBackend } from "../backend/index.js";
import { parseTlog, EntryKind } from "./tlog-format.js";
import { scoDropBehind } from "./file-io.js";
import { isal } from "../base/isal.js";

const log = silentLogger();
const dirs: string[] = [];
const volumes: Volume[] = [];

async function tempDir(): Promise<string> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), "ovs-volume-"));
  dirs.push(dir);
  return dir;
}

function config(overrides: Partial<VolumeConfig> = {}): VolumeConfig {
  const id = randomUUID();
  return { id, name: "vd1", namespace: `vdisk-${id}`, sizeBytes: 64 * 1024 * 1024, createdAt: new Date().toISOString(), ...defaultVolumeSettings(), ...overrides };
}

async function create<B extends ObjectBackend = MemoryBackend>(overrides: Partial<VolumeConfig> = {}, backend: B = new MemoryBackend() as unknown as B): Promise<{ volume: Volume; dir: string; backend: B }> {
  const dir = await tempDir();
  const volume = await Volume.create({ dir, backend, config: config(overrides), log });
  volumes.push(volume);
  return { volume, dir, backend };
}

async function reopen(dir: string, backend: MemoryBackend): Promise<Volume> {
  const volume = await Volume.open({ dir, backend, log });
  volumes.push(volume);
  return volume;
}

afterEach(async () => {
  for (const volume of volumes.splice(0)) await volume.close();
  for (const dir of dirs.splice(0)) await fsp.rm(dir, { recursive: true, force: true });
});

describe("Volume", () => {
  it("takes an open SCO's buffer at its first write and holds none once its SCOs are synced", async () => {
    const scoSizeBytes = 1024 * 1024;
    const { volume, dir, backend } = await create({ scoSizeBytes });
    expect(volume.stats().scoBufferBytes).toBe(0); // opened, not written: no memory for its open SCO
    const first = randomBytes(scoSizeBytes + 4096); // fills SCO 1, starts SCO 2
    await volume.write(0, first);
    expect(volume.stats().scoBufferBytes).toBeGreaterThanOrEqual(scoSizeBytes);
    await volume.flush();
    // SCO 1 is synced (its reads go to the file); SCO 2 is open with one cluster in memory.
    expect(volume.stats().scoBufferBytes).toBe(scoSizeBytes);
    expect((await volume.read(0, first.length)).equals(first)).toBe(true);
    await volume.close();
    volumes.splice(volumes.indexOf(volume), 1);
    const reopened = await reopen(dir, backend);
    expect(reopened.stats().scoBufferBytes).toBe(0);
    expect((await reopened.read(0, first.length)).equals(first)).toBe(true);
    expect(reopened.stats().scoBufferBytes).toBe(0); // reads do not take one
  });

  it("reads unwritten regions as zeros", async () => {
    const { volume } = await create();
    expect((await volume.read(0, 8192)).equals(Buffer.alloc(8192))).toBe(true);
    expect((await volume.read(513, 1000)).equals(Buffer.alloc(1000))).toBe(true);
  });

  it("writes chunks (an NBD payload spanning socket chunks) like one buffer, aligned or not", async () => {
    const { volume } = await create({ scoSizeBytes: 1024 * 1024 });
    const data = randomBytes(2560 * 1024);
    // Chunk edges off cluster and SCO boundaries; the write crosses three SCOs of 1 MiB.
    const cuts = [0, 1000, 1_100_000, 1_100_001, 2_200_000, data.length];
    const chunks = cuts.slice(1).map((end, index) => data.subarray(cuts[index]!, end));
    await volume.writeChunks(8192, chunks, data.length);
    expect((await volume.read(8192, data.length)).equals(data)).toBe(true);
    const unaligned = randomBytes(5000);
    await volume.writeChunks(8192 + 100, [unaligned.subarray(0, 3000), unaligned.subarray(3000)], unaligned.length);
    const expected = Buffer.from(data);
    unaligned.copy(expected, 100);
    expect((await volume.read(8192, data.length)).equals(expected)).toBe(true);
    await volume.flush();
    await expect(volume.writeChunks(8192, [data.subarray(0, 4096)], 8192)).rejects.toThrow(/add up/);
  });

  it("reads back aligned and unaligned writes", async () => {
    const { volume } = await create();
    const a = randomBytes(16384);
    await volume.write(4096, a);
    expect((await volume.read(4096, 16384)).equals(a)).toBe(true);
    const b = randomBytes(1000);
    await volume.write(4096 + 513, b);
    const expected = Buffer.from(a);
    b.copy(expected, 513);
    expect((await volume.read(4096, 16384)).equals(expected)).toBe(true);
    expect((await volume.read(4096 + 513, 1000)).equals(b)).toBe(true);
  });

  it("keeps both of two concurrent partial writes to one cluster", async () => {
    const { volume } = await create();
    const first = Buffer.alloc(512, 0x11);
    const second = Buffer.alloc(512, 0x22);
    await Promise.all([volume.write(0, first), volume.write(512, second)]);
    const data = await volume.read(0, 1024);
    expect(data.subarray(0, 512).equals(first)).toBe(true);
    expect(data.subarray(512).equals(second)).toBe(true);
  });

  it("trims whole clusters to zeros and leaves partial clusters alone", async () => {
    const { volume } = await create();
    const data = randomBytes(4 * 4096);
    await volume.write(0, data);
    await volume.trim(2048, 3 * 4096); // whole clusters 1 and 2 only
    const after = await volume.read(0, 4 * 4096);
    expect(after.subarray(0, 4096).equals(data.subarray(0, 4096))).toBe(true);
    expect(after.subarray(4096, 3 * 4096).equals(Buffer.alloc(2 * 4096))).toBe(true);
    expect(after.subarray(3 * 4096).equals(data.subarray(3 * 4096))).toBe(true);
  });

  it("writes zeroes over partial and whole clusters, with and without NO_HOLE", async () => {
    const { volume } = await create();
    const data = randomBytes(8 * 4096);
    await volume.write(0, data);
    await volume.writeZeroes(1000, 3 * 4096, false);
    await volume.writeZeroes(5 * 4096, 4096, true);
    const expected = Buffer.from(data);
    expected.fill(0, 1000, 1000 + 3 * 4096);
    expected.fill(0, 5 * 4096, 6 * 4096);
    expect((await volume.read(0, 8 * 4096)).equals(expected)).toBe(true);
  });

  it("reports as maybe-data exactly the clusters holding data; all others read as zeroes, also after a restart", async () => {
    const clusterBytes = 4096;
    const { volume, dir, backend } = await create({ sizeBytes: 4 * 1024 * 1024, scoSizeBytes: 1024 * 1024 });
    const clusterCount = 1024;
    expect(volume.clustersMaybeData(0, clusterCount)).toEqual([]);
    // Seeded random writes (aligned and not), trims and zeroing, with and without NO_HOLE.
    let seed = 7;
    const random = (n: number) => (seed = (seed * 1103515245 + 12345) % 2147483648) % n;
    for (let i = 0; i < 300; i++) {
      const offset = random(clusterCount * clusterBytes - 70_000);
      const length = 1 + random(65_536);
      const op = random(10);
      if (op < 6) await volume.write(offset, Buffer.alloc(length, 1 + random(255)));
      else if (op < 8) await volume.trim(offset, length);
      else await volume.writeZeroes(offset, length, op === 9);
    }
    const check = async (v: Volume) => {
      const image = await v.read(0, clusterCount * clusterBytes);
      const maybeData = new Set(v.clustersMaybeData(0, clusterCount));
      let nonZero = 0;
      for (let c = 0; c < clusterCount; c++) {
        const bytes = image.subarray(c * clusterBytes, (c + 1) * clusterBytes);
        const zero = bytes.every((b) => b === 0);
        if (!maybeData.has(c)) expect(zero, `cluster ${c} is reported zero but is not`).toBe(true);
        if (!zero) nonZero++;
      }
      expect(nonZero).toBeGreaterThan(100); // the seed leaves data behind: the check above had work to do
      // Precise too: a cluster is reported as data only if it is mapped to data (NO_HOLE zeroes included).
      expect(maybeData.size).toBeLessThan(clusterCount);
      expect(v.clustersMaybeData(100, 200)).toEqual([...maybeData].filter((c) => c >= 100 && c < 200));
      return maybeData;
    };
    const before = await check(volume);
    await volume.close();
    volumes.splice(volumes.indexOf(volume), 1);
    const again = await reopen(dir, backend);
    expect(await check(again)).toEqual(before);
  });

  it("reports zeroed and NO_HOLE-zeroed clusters as a hole and as data", async () => {
    const { volume } = await create();
    await volume.write(0, Buffer.alloc(4 * 4096, 9));
    await volume.writeZeroes(4096, 4096, false);
    await volume.writeZeroes(2 * 4096, 4096, true);
    await volume.trim(3 * 4096, 4096);
    expect(volume.clustersMaybeData(0, 16)).toEqual([0, 2]);
    await volume.flush();
    expect(volume.clustersMaybeData(0, 16)).toEqual([0, 2]);
  });

  it("refuses I/O past the end with OUT_OF_RANGE and changes nothing", async () => {
    const { volume } = await create({ sizeBytes: 1024 * 1024 });
    await expect(volume.write(1024 * 1024 - 512, Buffer.alloc(1024))).rejects.toMatchObject({ code: "OUT_OF_RANGE" });
    await expect(volume.read(1024 * 1024, 1)).rejects.toMatchObject({ code: "OUT_OF_RANGE" });
    expect((await volume.read(1024 * 1024 - 512, 512)).equals(Buffer.alloc(512))).toBe(true);
  });

  it("returns flushed data after a clean close and reopen", async () => {
    const { volume, dir, backend } = await create();
    const data = randomBytes(1024 * 1024);
    await volume.write(8192, data);
    await volume.flush();
    await volume.close();
    volumes.splice(volumes.indexOf(volume), 1);
    const again = await reopen(dir, backend);
    expect((await again.read(8192, data.length)).equals(data)).toBe(true);
  });

  it("groups the metadata commits that queue up while one runs into one transaction, in order", async () => {
    // The first transaction is held 150 ms; meanwhile the writer closes SCOs and TLogs, whose commits
    // (TLog records, map entries, SCO number reservations) must then land together, and a restart must
    // find every one of them.
    const original = MetadataStore.prototype.commitAll;
    const groups: number[] = [];
    const spy = vi.spyOn(MetadataStore.prototype, "commitAll").mockImplementation(async function (this: MetadataStore, batches) {
      groups.push(batches.length);
      if (groups.length === 1) await new Promise((resolve) => setTimeout(resolve, 150));
      return original.call(this, batches);
    });
    try {
      const { volume, dir, backend } = await create({ scoSizeBytes: 1024 * 1024, tlogMultiplier: 2 });
      groups.length = 0; // from the first commit after creation
      const data = randomBytes(12 * 1024 * 1024);
      await Promise.all(Array.from({ length: 12 }, (_, index) => volume.write(index * 1024 * 1024, data.subarray(index * 1024 * 1024, (index + 1) * 1024 * 1024))));
      await volume.flush();
      await volume.close();
      volumes.splice(volumes.indexOf(volume), 1);
      expect(Math.max(...groups)).toBeGreaterThanOrEqual(2);
      const again = await reopen(dir, backend);
      expect((await again.read(0, data.length)).equals(data)).toBe(true);
      expect(again.stats().uncommittedClusterCount).toBe(0); // the map came from LMDB, not a TLog replay
    } finally {
      spy.mockRestore();
    }
  });

  it("uploads SCOs before the TLog that names them, evicts disposable SCOs and reads them back by partial get", async () => {
    const { volume, backend } = await create({ scoSizeBytes: 1024 * 1024, tlogMultiplier: 2, scoCacheMaxBytes: 1024 * 1024 });
    const data = randomBytes(6 * 1024 * 1024);
    await volume.write(0, data);
    await volume.syncToBackend();
    const objects = backend.namespaces.get(volume.config.namespace)!;
    const tlogs = [...objects.keys()].filter((n) => n.startsWith("tlog_"));
    const scos = [...objects.keys()].filter((n) => /^00_/.test(n));
    expect(scos.length).toBe(6);
    expect(tlogs.length).toBe(3);
    for (const tlogName of tlogs) {
      const parsed = parseTlog(objects.get(tlogName)!);
      expect(parsed.closed).toBe(true);
      for (const entry of parsed.entries) if (entry.kind === EntryKind.ScoCrc) expect(scos).toContain(`00_${entry.scoNumber.toString(16).padStart(8, "0")}_00`);
    }
    expect(volume.stats().localScoBytes).toBeLessThanOrEqual(1024 * 1024);
    const before = backend.getRangeCount;
    expect((await volume.read(0, data.length)).equals(data)).toBe(true);
    expect(backend.getRangeCount).toBeGreaterThan(before);
  });

  it("changes the SCO cache cap while open: evicts down to it at once and keeps it across a reopen", async () => {
    const { volume, dir, backend } = await create({ scoSizeBytes: 1024 * 1024, tlogMultiplier: 2 });
    const data = randomBytes(6 * 1024 * 1024);
    await volume.write(0, data);
    await volume.syncToBackend();
    expect(volume.stats().localScoBytes).toBeGreaterThan(2 * 1024 * 1024);
    await volume.setScoCacheMax(2 * 1024 * 1024);
    expect(volume.stats().localScoBytes).toBeLessThanOrEqual(2 * 1024 * 1024);
    await expect(volume.setScoCacheMax(-1)).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    expect(volume.config.scoCacheMaxBytes).toBe(2 * 1024 * 1024);
    expect((await volume.read(0, data.length)).equals(data)).toBe(true);
    await volume.close();
    volumes.splice(volumes.indexOf(volume), 1);
    const again = await reopen(dir, backend);
    expect(again.config.scoCacheMaxBytes).toBe(2 * 1024 * 1024);
  });

  it("reads a cluster from the backend when its local SCO copy is corrupt", async () => {
    const { volume, dir } = await create({ scoSizeBytes: 1024 * 1024, tlogMultiplier: 1 });
    const data = randomBytes(1024 * 1024);
    await volume.write(0, data);
    await volume.syncToBackend();
    const scoFile = path.join(dir, "sco", "00_00000001_00");
    const fd = fs.openSync(scoFile, "r+");
    fs.writeSync(fd, Buffer.from([0xff ^ data[100]!]), 0, 1, 100);
    fs.closeSync(fd);
    expect((await volume.read(0, 4096)).equals(data.subarray(0, 4096))).toBe(true);
    expect(volume.stats().checksumErrors).toBe(1);
  });

  it("fails a read with CHECKSUM_MISMATCH rather than return corrupt bytes", async () => {
    const { volume, dir, backend } = await create({ scoSizeBytes: 1024 * 1024, tlogMultiplier: 1 });
    await volume.write(0, randomBytes(1024 * 1024));
    await volume.syncToBackend();
    const objects = backend.namespaces.get(volume.config.namespace)!;
    const stored = objects.get("00_00000001_00")!;
    stored[5] = stored[5]! ^ 0xff;
    const fd = fs.openSync(path.join(dir, "sco", "00_00000001_00"), "r+");
    fs.writeSync(fd, Buffer.from([0]), 0, 1, 5);
    fs.writeSync(fd, Buffer.from([1]), 0, 1, 6);
    fs.closeSync(fd);
    const error = await volume.read(0, 4096).catch((e: unknown) => e);
    expect(isOvsError(error, "CHECKSUM_MISMATCH")).toBe(true);
  });

  it("throttles writes while uploads fail, and resumes once the backend is back", async () => {
    const backend = new MemoryBackend();
    const { volume } = await create({ scoSizeBytes: 1024 * 1024, tlogMultiplier: 1 }, backend);
    backend.failPuts = true;
    let done = false;
    const writing = (async () => {
      for (let i = 0; i < 8; i++) await volume.write(i * 1024 * 1024, randomBytes(1024 * 1024));
      done = true;
    })();
    await new Promise((r) => setTimeout(r, 500));
    expect(done).toBe(false); // blocked above 1.5 SCOs of non-disposable data, not failed
    expect(volume.stats().throttledWrites).toBe(1);
    backend.failPuts = false;
    await writing;
    expect(done).toBe(true);
    expect(volume.stats().throttledMsTotal).toBeGreaterThanOrEqual(400);
  });

  it("never evicts a SCO that is not safe on the backend yet, whatever the cap or the free space", async () => {
    const realStatfs = volumeOs.statfs;
    const backend = new MemoryBackend();
    const { volume, dir } = await create({ scoSizeBytes: 1024 * 1024, tlogMultiplier: 1, scoCacheMaxBytes: 4096 }, backend);
    try {
      backend.failPuts = true;
      const data = randomBytes(1024 * 1024 + 4096);
      await volume.write(0, data); // one full SCO (closed, its TLog closed, uploads failing) and one open
      await volume.flush();
      // The disk "fills up": the guard's check (every second) evicts what it may, which is nothing.
      volumeOs.statfs = async () => ({ freeBytes: 1024 ** 3, sizeBytes: 100 * 1024 ** 3 });
      await new Promise((r) => setTimeout(r, 1500));
      expect(volume.stats().localScoBytes).toBeGreaterThanOrEqual(1024 * 1024);
      expect(fs.existsSync(path.join(dir, "sco", "00_00000001_00"))).toBe(true);
      expect((await volume.read(0, data.length)).equals(data)).toBe(true);
      // Once the TLog is stored the SCO is disposable and goes.
      backend.failPuts = false;
      await volume.syncToBackend();
      expect(volume.stats().localScoBytes).toBeLessThanOrEqual(4096);
      expect((await volume.read(0, data.length)).equals(data)).toBe(true);
    } finally {
      volumeOs.statfs = realStatfs;
    }
  });

  it("evicts safe SCOs when the file system runs short of space; writes wait while it is nearly full, then resume", async () => {
    const realStatfs = volumeOs.statfs;
    let freeBytes = 50 * 1024 ** 3;
    volumeOs.statfs = async () => ({ freeBytes, sizeBytes: 100 * 1024 ** 3 });
    try {
      const { volume } = await create({ scoSizeBytes: 1024 * 1024, tlogMultiplier: 1 });
      const data = randomBytes(4 * 1024 * 1024);
      await volume.write(0, data);
      await volume.syncToBackend();
      expect(volume.stats().localScoBytes).toBeGreaterThanOrEqual(4 * 1024 * 1024); // no cap: kept as a read cache
      // Under the trigger (max(2 GiB, 5 %) = 5 GiB here): the next check evicts every disposable SCO.
      freeBytes = 3 * 1024 ** 3;
      await new Promise((r) => setTimeout(r, 1500));
      expect(volume.stats().localScoBytes).toBe(0);
      // Nearly full: writes wait, they do not fail (a full disk would halt the volume).
      freeBytes = volumeLimits.writeFreeBytesMin - 1;
      await new Promise((r) => setTimeout(r, 1200));
      let written = false;
      const writing = volume.write(0, Buffer.alloc(4096, 1)).then(() => (written = true));
      await new Promise((r) => setTimeout(r, 1500));
      expect(written).toBe(false);
      expect(volume.stats().halted).toBeUndefined();
      freeBytes = 3 * 1024 ** 3;
      await writing;
      expect((await volume.read(0, 4096)).equals(Buffer.alloc(4096, 1))).toBe(true);
      expect((await volume.read(4096, data.length - 4096)).equals(data.subarray(4096))).toBe(true);
    } finally {
      volumeOs.statfs = realStatfs;
    }
  });

  it("keeps memory bounded on a 1 TiB thin volume: the map goes to LMDB, not the heap", async () => {
    const { volume } = await create({ sizeBytes: 1024 ** 4 });
    const clusterCount = 2 ** 28; // 1 TiB of 4 KiB clusters
    const data = Buffer.alloc(4096, 0x5a);
    const addresses: number[] = [];
    for (let i = 0; i < 4000; i++) addresses.push(Math.floor(((i * 2654435761) % 2 ** 32) / 2 ** 32 * clusterCount));
    for (let i = 0; i < addresses.length; i += 100) {
      await Promise.all(addresses.slice(i, i + 100).map((a) => volume.write(a * 4096, data)));
    }
    await volume.flush();
    // The metadata commit follows the sync (in the background): wait for it, boundedly.
    for (const deadline = Date.now() + 10_000; volume.stats().uncommittedClusterCount > 0 && Date.now() < deadline; ) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(volume.stats().uncommittedClusterCount).toBe(0);
    for (const address of addresses.slice(0, 50)) expect((await volume.read(address * 4096, 4096)).equals(data)).toBe(true);
    expect((await volume.read((clusterCount - 1) * 4096, 4096)).equals(Buffer.alloc(4096))).toBe(true);
    // Trimming the whole terabyte costs the written clusters, not the range.
    const started = Date.now();
    await volume.trim(0, 1024 ** 4);
    expect(Date.now() - started).toBeLessThan(5000);
    for (const address of addresses.slice(0, 50)) expect((await volume.read(address * 4096, 4096)).equals(Buffer.alloc(4096))).toBe(true);
  });

  it("never reuses a SCO number after a crash, even for SCOs uploaded before any TLog named them", async () => {
    const { volume, dir, backend } = await create({ scoSizeBytes: 1024 * 1024, tlogMultiplier: 16 });
    await volume.write(0, randomBytes(3 * 1024 * 1024)); // rolls 3 SCOs: uploaded at once, no TLog yet
    await volume.waitForUploads();
    const objects = backend.namespaces.get(volume.config.namespace)!;
    const before = new Map([...objects].filter(([name]) => /^00_/.test(name)).map(([name, data]) => [name, Buffer.from(data)]));
    expect(before.size).toBeGreaterThanOrEqual(3);
    await volume.crashForTest();
    volumes.splice(volumes.indexOf(volume), 1);
    const again = await reopen(dir, backend);
    await again.write(0, randomBytes(4 * 1024 * 1024));
    await again.syncToBackend();
    for (const [name, data] of before) expect(objects.get(name)!.equals(data), name).toBe(true);
  });

  it("on the local backend, stores each closed SCO by linking its file, and reads it back after a restart from the backend", async () => {
    const backend = await LocalBackend.open({ dir: path.join(await tempDir(), "backend") });
    try {
      const { volume, dir } = await create({ scoSizeBytes: 1024 * 1024, tlogMultiplier: 2 }, backend);
      const data = randomBytes(5 * 1024 * 1024 + 8192);
      await volume.write(4096, data);
      await volume.syncToBackend();
      const scoDir = path.join(dir, "sco");
      const local = (await fsp.readdir(scoDir)).filter((name) => /^00_/.test(name));
      const linked = local.filter((name) => fs.statSync(path.join(scoDir, name)).nlink === 2);
      expect(linked.length).toBeGreaterThanOrEqual(5); // every closed SCO: one inode, no second copy
      for (const name of linked) expect((await backend.get(volume.config.namespace, name)).equals(await fsp.readFile(path.join(scoDir, name)))).toBe(true);
      await volume.close();
      volumes.splice(volumes.indexOf(volume), 1);
      const elsewhere = await Volume.openFromBackend({ dir: await tempDir(), backend, namespace: volume.config.namespace, log });
      volumes.push(elsewhere);
      expect(elsewhere.restoreReport).toBeDefined();
      expect((await elsewhere.read(4096, data.length)).equals(data)).toBe(true);
      await elsewhere.close();
      volumes.splice(volumes.indexOf(elsewhere), 1);
    } finally {
      await backend.close();
    }
  });

  it("drops the page cache of SCO files on the backend beyond the drop-behind window; reads still return every byte", async () => {
    const backend = await LocalBackend.open({ dir: path.join(await tempDir(), "backend") });
    const windowBytes = scoDropBehind.windowBytes;
    const drop = scoDropBehind.drop;
    const dropped: string[] = [];
    scoDropBehind.windowBytes = 2 * 1024 * 1024;
    scoDropBehind.drop = async (file) => {
      dropped.push(file);
      await drop(file);
    };
    try {
      const { volume, dir } = await create({ scoSizeBytes: 1024 * 1024, tlogMultiplier: 2 }, backend);
      const before = scoDropBehind.stats();
      const data = randomBytes(6 * 1024 * 1024);
      // Writes under scoDirectWriteRequestBytesMin, so the SCOs go through the page cache (not O_DIRECT).
      const pieceBytes = volumeLimits.scoDirectWriteRequestBytesMin / 2;
      for (let offset = 0; offset < data.length; offset += pieceBytes) await volume.write(offset, data.subarray(offset, offset + pieceBytes));
      await volume.syncToBackend();
      await new Promise((resolve) => setTimeout(resolve, 50)); // the drops run in the background
      const droppedFiles = scoDropBehind.stats().droppedFiles - before.droppedFiles;
      expect(droppedFiles).toBeGreaterThanOrEqual(3); // 6 SCOs stored, 2 MiB window
      expect(scoDropBehind.windowUse.bytes).toBeLessThanOrEqual(2 * 1024 * 1024);
      // The files dropped are this volume's oldest SCO files, by their real paths (a wrong path would
      // count as dropped and drop nothing). Whether the kernel took the advice is file-io.test.ts's part.
      const scoDir = path.join(dir, "sco");
      const scos = (await fsp.readdir(scoDir)).filter((name) => /^00_/.test(name)).sort();
      expect(scos.length).toBeGreaterThanOrEqual(6);
      const ours = dropped.filter((file) => path.dirname(file) === scoDir).map((file) => path.basename(file));
      expect(ours.length).toBeGreaterThanOrEqual(3); // the rest of droppedFiles: files earlier tests left in the window
      expect(ours.length).toBeLessThanOrEqual(droppedFiles);
      expect(ours).toEqual(scos.slice(0, ours.length));
      if (new Set([0xef53, 0x58465342, 0x9123683e]).has(fs.statfsSync(scoDir).type)) {
        const fd = fs.openSync(path.join(scoDir, scos[0]!), "r");
        try {
          // Not in the page cache (after at most a second advice: the kernel may skip a busy folio).
          // A probe that misses starts readahead, so each probe is taken once.
          let probe = isal().preadNoWait(fd, Buffer.alloc(4096), 0, 4096, 0);
          if (probe !== -1) {
            await drop(path.join(scoDir, scos[0]!));
            probe = isal().preadNoWait(fd, Buffer.alloc(4096), 0, 4096, 0);
          }
          expect(probe).toBe(-1);
        } finally {
          fs.closeSync(fd);
        }
      }
      expect((await volume.read(0, data.length)).equals(data)).toBe(true);
    } finally {
      scoDropBehind.windowBytes = windowBytes;
      scoDropBehind.drop = drop;
      for (const volume of volumes.splice(0)) await volume.close();
      await backend.close();
    }
  });

  it("never changes a SCO file another name links to when a crash left it open (copies it first)", async () => {
    const { volume, dir, backend } = await create({ scoSizeBytes: 1024 * 1024, tlogMultiplier: 16 });
    await volume.write(0, randomBytes(256 * 1024));
    await volume.flush(); // the open SCO's first clusters are referenced by a synced TLog
    await volume.write(256 * 1024, randomBytes(256 * 1024)); // reaches the file; its TLog entries are lost in the crash
    const scoDir = path.join(dir, "sco");
    const [open] = (await fsp.readdir(scoDir)).filter((name) => /^00_/.test(name)).sort().slice(-1);
    const file = path.join(scoDir, open!);
    await new Promise((resolve) => setTimeout(resolve, 50)); // the second write's pwrite lands
    // What a backend that links files holds after an upload the crash outran.
    const side = path.join(await tempDir(), "linked-by-a-backend");
    await fsp.link(file, side);
    const before = await fsp.readFile(side);
    await volume.crashForTest();
    volumes.splice(volumes.indexOf(volume), 1);
    const again = await reopen(dir, backend);
    expect(fs.statSync(side).nlink).toBe(1); // recovery cut a private copy
    expect((await fsp.readFile(side)).equals(before)).toBe(true);
    expect(fs.statSync(file).size).toBeLessThanOrEqual(before.length);
    expect((await again.read(0, 4096)).equals(before.subarray(0, 4096))).toBe(true);
  });

  it("writes a SCO started by a large write with O_DIRECT (not in the page cache), one started by small writes through it", async () => {
    const { volume, dir } = await create({ scoSizeBytes: 1024 * 1024 });
    const large = randomBytes(1024 * 1024);
    const small = randomBytes(1024 * 1024);
    await volume.write(0, large); // one request of 1 MiB: SCO 1
    for (let offset = 0; offset < small.length; offset += 4096) await volume.write(1024 * 1024 + offset, small.subarray(offset, offset + 4096)); // SCO 2
    await volume.flush();
    await volume.write(2 * 1024 * 1024, Buffer.alloc(4096, 1)); // SCO 3 opens: 1 and 2 closed, synced, released
    await volume.flush();
    const scoDir = path.join(dir, "sco");
    const [first, second] = (await fsp.readdir(scoDir)).filter((name) => /^00_/.test(name)).sort();
    expect(fs.statSync(path.join(scoDir, first!)).size).toBe(1024 * 1024);
    // RWF_NOWAIT reads tell whether a page is cached (ext4, xfs, btrfs: the file systems the volume runs on
    // here and in CI). A probe that misses starts readahead, so each file is probed once, before any read.
    const cached = (name: string): boolean => {
      const fd = fs.openSync(path.join(scoDir, name), "r");
      try {
        return isal().preadNoWait(fd, Buffer.alloc(4096), 0, 4096, 512 * 1024) === 4096;
      } finally {
        fs.closeSync(fd);
      }
    };
    expect(new Set([0xef53, 0x58465342, 0x9123683e]).has(fs.statfsSync(scoDir).type)).toBe(true);
    expect(cached(first!)).toBe(false);
    expect(cached(second!)).toBe(true);
    expect(fs.readFileSync(path.join(scoDir, first!)).equals(large)).toBe(true); // the file is the SCO, byte for byte
    expect((await volume.read(0, 2 * 1024 * 1024)).equals(Buffer.concat([large, small]))).toBe(true);
  });

  it("writes buffered where the file system refuses O_DIRECT (tmpfs), every byte intact after a reopen", async () => {
    const dir = await fsp.mkdtemp("/dev/shm/ovs-volume-");
    dirs.push(dir);
    const backend = new MemoryBackend();
    const volume = await Volume.create({ dir, backend, config: config({ scoSizeBytes: 1024 * 1024 }), log });
    volumes.push(volume);
    const data = randomBytes(3 * 1024 * 1024);
    await volume.write(4096, data);
    await volume.flush();
    await volume.close();
    volumes.splice(volumes.indexOf(volume), 1);
    const again = await reopen(dir, backend);
    expect((await again.read(4096, data.length)).equals(data)).toBe(true);
  });

  it("grows with resize and refuses to shrink", async () => {
    const { volume } = await create({ sizeBytes: 1024 * 1024 });
    await volume.resize(2 * 1024 * 1024);
    await volume.write(1024 * 1024 + 4096, Buffer.alloc(4096, 7));
    await expect(volume.resize(1024 * 1024)).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    expect(volume.sizeBytes).toBe(2 * 1024 * 1024);
  });
});
