// A vDisk (volume engine Volume) served as an NBD export. The volume does the read-modify-write of
// unaligned requests, copies write payloads into its SCO buffer (so it never keeps the server's socket
// chunk) and implements flush as a volume-wide group commit — which is why flush semantics hold
// across connections and CAN_MULTI_CONN is advertised. The vDisk's QoS limiter (shared by all its
// connections) delays requests before they reach the volume; without limits it costs nothing.

import type { QosLimiter, Volume } from "../../volume/index.js";
import { extentsOfUnits } from "./block-status.js";
import type { NbdExport } from "./nbd-export.js";
import type { BlockStatusExtent } from "./protocol.js";

/**
 * BLOCK_STATUS work bounds: the map is looked at in windows, the first of blockStatusWindowBytes, each next
 * one twice as long, until the reply has more extents than asked for, blockStatusDataClustersMax data
 * clusters were looked up, or blockStatusScanBytesMax were covered. The reply then covers a prefix of the
 * request (proto.md allows it; clients ask again from its end), so one request costs at most about
 * blockStatusDataClustersMax lookups on the event loop, and a REQ_ONE request about one window's.
 */
const blockStatusWindowBytes = 8 * 1024 * 1024;
const blockStatusDataClustersMax = 8_192;
const blockStatusScanBytesMax = 1024 * 1024 * 1024;

export class VolumeExport implements NbdExport {
  /** A template is read-only (new connections see NBD_FLAG_READ_ONLY). */
  get readOnly(): boolean {
    return this.volume.isTemplate;
  }
  readonly flushSemanticsAcrossConnections = true;
  private attachedCount = 0;

  constructor(private readonly volume: Volume, private readonly qos?: QosLimiter) {}

  get name(): string {
    return this.volume.name;
  }

  get description(): string {
    return `openvstorage vDisk ${this.volume.name}`;
  }

  /** Connections currently using this export. */
  get connectionCount(): number {
    return this.attachedCount;
  }

  sizeBytes(): number {
    return this.volume.sizeBytes;
  }

  read(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    const wait = this.qos?.admit("read", lengthBytes);
    return wait ? wait.then(() => this.volume.read(offsetBytes, lengthBytes)) : this.volume.read(offsetBytes, lengthBytes);
  }

  write(offsetBytes: number, data: Buffer, fua: boolean): Promise<void> {
    const wait = this.qos?.admit("write", data.length);
    return wait ? wait.then(() => this.volume.write(offsetBytes, data, fua)) : this.volume.write(offsetBytes, data, fua);
  }

  writeChunks(offsetBytes: number, chunks: readonly Buffer[], lengthBytes: number, fua: boolean): Promise<void> {
    const wait = this.qos?.admit("write", lengthBytes);
    return wait ? wait.then(() => this.volume.writeChunks(offsetBytes, chunks, lengthBytes, fua)) : this.volume.writeChunks(offsetBytes, chunks, lengthBytes, fua);
  }

  flush(): Promise<void> {
    return this.volume.flush();
  }

  trim(offsetBytes: number, lengthBytes: number): Promise<void> {
    const wait = this.qos?.admit("write", 0);
    return wait ? wait.then(() => this.volume.trim(offsetBytes, lengthBytes)) : this.volume.trim(offsetBytes, lengthBytes);
  }

  writeZeroes(offsetBytes: number, lengthBytes: number, noHole: boolean, fua: boolean): Promise<void> {
    // Counted as one write operation; with NO_HOLE it writes real zero clusters, counted as bytes.
    const wait = this.qos?.admit("write", noHole ? lengthBytes : 0);
    return wait ? wait.then(() => this.volume.writeZeroes(offsetBytes, lengthBytes, noHole, fua)) : this.volume.writeZeroes(offsetBytes, lengthBytes, noHole, fua);
  }

  /**
   * base:allocation from the volume's map: clusters that may hold data (written, or a clone's parent's)
   * are data; the rest were never written, trimmed or zeroed and read as zeroes. Not QoS-limited: it
   * touches metadata only.
   */
  async blockStatus(offsetBytes: number, lengthBytes: number, extentCountMax: number): Promise<BlockStatusExtent[]> {
    const clusterBytes = this.volume.clusterSizeBytes;
    const endBytes = offsetBytes + Math.min(lengthBytes, blockStatusScanBytesMax);
    const dataClusters: number[] = [];
    let scannedEnd = Math.floor(offsetBytes / clusterBytes); // clusters before it are looked at
    const endCluster = Math.ceil(endBytes / clusterBytes);
    const scan = this.volume.maybeDataScan(scannedEnd, endCluster);
    let windowClusters = blockStatusWindowBytes / clusterBytes;
    for (;;) {
      const windowEnd = Math.min(scannedEnd + windowClusters, endCluster);
      for (const cluster of scan(windowEnd)) dataClusters.push(cluster);
      scannedEnd = windowEnd;
      const coveredBytes = Math.min(scannedEnd * clusterBytes, endBytes) - offsetBytes;
      const done = coveredBytes === endBytes - offsetBytes || dataClusters.length >= blockStatusDataClustersMax ||
        extentsOfUnits(offsetBytes, coveredBytes, clusterBytes, dataClusters, extentCountMax + 1).length > extentCountMax;
      if (done) return extentsOfUnits(offsetBytes, coveredBytes, clusterBytes, dataClusters, extentCountMax);
      windowClusters *= 2;
    }
  }

  attach(): void {
    this.attachedCount++;
  }

  detach(): void {
    this.attachedCount--;
  }
}
