// A vDisk (volume engine Volume) served as an NBD export. The volume does the read-modify-write of
// unaligned requests, copies write payloads into its SCO buffer (so it never keeps the server's socket
// chunk) and implements flush as a volume-wide group commit — which is why flush semantics hold
// across connections and CAN_MULTI_CONN is advertised.

import type { Volume } from "../../volume/index.js";
import type { NbdExport } from "./nbd-export.js";

export class VolumeExport implements NbdExport {
  /** A template is read-only (new connections see NBD_FLAG_READ_ONLY). */
  get readOnly(): boolean {
    return this.volume.isTemplate;
  }
  readonly flushSemanticsAcrossConnections = true;
  private attachedCount = 0;

  constructor(private readonly volume: Volume) {}

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
    return this.volume.read(offsetBytes, lengthBytes);
  }

  write(offsetBytes: number, data: Buffer, fua: boolean): Promise<void> {
    return this.volume.write(offsetBytes, data, fua);
  }

  flush(): Promise<void> {
    return this.volume.flush();
  }

  trim(offsetBytes: number, lengthBytes: number): Promise<void> {
    return this.volume.trim(offsetBytes, lengthBytes);
  }

  writeZeroes(offsetBytes: number, lengthBytes: number, noHole: boolean, fua: boolean): Promise<void> {
    return this.volume.writeZeroes(offsetBytes, lengthBytes, noHole, fua);
  }

  attach(): void {
    this.attachedCount++;
  }

  detach(): void {
    this.attachedCount--;
  }
}
