import { describe, expect, it } from "vitest";
import { TlogWriter, tlogMemoryCopyBytesMax } from "./tlog-writer.js";
import { tlogEntrySizeBytes } from "./tlog-format.js";

/** What the volume's sync step does: writes the pending bytes to the "file" and consumes them. */
function sync(tlog: TlogWriter, file: Buffer[]): void {
  const { bytes, entryCountAfter } = tlog.takePending();
  file.push(Buffer.from(bytes));
  tlog.consumePending(bytes.length, entryCountAfter);
}

describe("TlogWriter.fileContent", () => {
  it("is the file's bytes once the TLog is closed and synced, and undefined before", () => {
    const tlog = new TlogWriter({ seq: 1, id: "tlog_a", clusterSizeBytes: 4096 });
    const file: Buffer[] = [];
    for (let i = 0; i < 100; i++) tlog.appendLocation(i, 7, i, i * 31);
    sync(tlog, file);
    for (let i = 100; i < 150; i++) tlog.appendLocation(i, 8, i - 100, i * 17);
    expect(tlog.fileContent()).toBeUndefined(); // open
    tlog.close();
    expect(tlog.fileContent()).toBeUndefined(); // the closing entries are not in the file yet
    sync(tlog, file);
    const content = tlog.fileContent();
    expect(content?.equals(Buffer.concat(file))).toBe(true);
    expect(content?.length).toBe(tlog.fileSizeBytes);
  });

  it("is undefined for a resumed TLog (its first bytes are only in the file) and past the memory cap", () => {
    const resumed = new TlogWriter({ seq: 2, id: "tlog_b", resume: { fileSizeBytes: 4096, entryCount: 10, entriesCrc: 0 } });
    resumed.close();
    sync(resumed, []);
    expect(resumed.fileContent()).toBeUndefined();

    const big = new TlogWriter({ seq: 3, id: "tlog_c", clusterSizeBytes: 4096 });
    const file: Buffer[] = [];
    const entries = Math.ceil(tlogMemoryCopyBytesMax / tlogEntrySizeBytes) + 1;
    for (let i = 0; i < entries; i++) {
      big.appendLocation(i, 1, i % 1024, i);
      if (i % 8192 === 0) sync(big, file);
    }
    big.close();
    sync(big, file);
    expect(big.fileSizeBytes).toBeGreaterThan(tlogMemoryCopyBytesMax);
    expect(big.fileContent()).toBeUndefined();
  });
});

describe("TlogWriter.appendLocationRun", () => {
  it("writes the same bytes and TLog CRC as one appendLocation per cluster", () => {
    const single = new TlogWriter({ seq: 1, id: "tlog_a", clusterSizeBytes: 4096 });
    const run = new TlogWriter({ seq: 1, id: "tlog_a", clusterSizeBytes: 4096 });
    const singleFile: Buffer[] = [];
    const runFile: Buffer[] = [];
    const crcs = new Uint32Array(5000);
    for (let i = 0; i < crcs.length; i++) crcs[i] = (Math.imul(i + 1, 0x9e3779b1) >>> 0);
    // Runs of several lengths (the pending buffer grows within one), at addresses past 2^32.
    let address = 2 ** 32 - 100;
    let offset = 0;
    for (const count of [1, 256, 3, 4000, 17]) {
      for (let i = 0; i < count; i++) single.appendLocation(address + i, 0xfffffff0, offset + i, crcs[i]!);
      expect(run.appendLocationRun(address, count, 0xfffffff0, offset, crcs)).toBe(run.entryCount - count);
      expect(run.entryCount).toBe(single.entryCount);
      address += count;
      offset += count;
      if (count === 3) {
        sync(single, singleFile);
        sync(run, runFile);
      }
    }
    single.close();
    run.close();
    sync(single, singleFile);
    sync(run, runFile);
    expect(Buffer.concat(runFile).equals(Buffer.concat(singleFile))).toBe(true);
    expect(run.fileContent()?.equals(Buffer.concat(singleFile))).toBe(true);
  });
});

