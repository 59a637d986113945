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
