// AsdPool: one AsdClient per ASD (pipelined, reconnecting), the client's view of each ASD's health
// (down after a failed call, for downMs; full after NO_SPACE or a disk-usage report), its free space, and
// the error counts not yet folded into the manager's registry. Imported by alba-backend.ts only.
//
// Invariants: at most one AsdClient and one connection attempt per ASD at a time; a connection attempt
// to an ASD marked down is not made before its downMs ran out (calls fail fast with UNAVAILABLE);
// every counter only rises until takeObservations() hands it over.
// Limits: the number of ASDs in the registry (one connection each); requests per connection are bounded
// by AsdClient (asdLimits).

import { OvsError, isOvsError, type Logger } from "../../base/index.js";
import { AsdClient, type AsdDiskUsage } from "../asd/index.js";
import type { AsdErrorCounts, AsdObservation, AsdRecord } from "../manager/index.js";

export interface AsdPoolOptions {
  backendId: string;
  clusterSecret: string;
  requestTimeoutMs: number;
  connectTimeoutMs: number;
  /** How long an ASD that failed a call is left out of placement (and reads go to it only if needed). */
  downMs: number;
  nowMs: () => number;
  logger: Logger;
}

export interface AsdState {
  record: AsdRecord;
  client: AsdClient | undefined;
  connecting: Promise<AsdClient> | undefined;
  downUntilMs: number;
  /** Refusing writes (NO_SPACE seen, or the last disk usage said so) until the next disk-usage report. */
  full: boolean;
  usage: AsdDiskUsage | undefined;
  lastSeenMs: number;
  pendingErrors: AsdErrorCounts;
}

export class AsdPool {
  private readonly states = new Map<string, AsdState>();
  private closed = false;

  constructor(private readonly options: AsdPoolOptions) {}

  /** Adds or updates the ASDs known from the registry (address changes reconnect). */
  setRecords(records: readonly AsdRecord[]): void {
    for (const record of records) {
      const state = this.states.get(record.asdId);
      if (state === undefined) {
        this.states.set(record.asdId, {
          record, client: undefined, connecting: undefined, downUntilMs: 0, full: false, usage: undefined, lastSeenMs: 0,
          pendingErrors: { readErrors: 0, writeErrors: 0, checksumErrors: 0 },
        });
        continue;
      }
      if (state.record.host !== record.host || state.record.port !== record.port) {
        void state.client?.close();
        state.client = undefined;
      }
      state.record = record;
    }
  }

  get(asdId: string): AsdState | undefined {
    return this.states.get(asdId);
  }

  all(): AsdState[] {
    return [...this.states.values()];
  }

  isDown(asdId: string): boolean {
    const state = this.states.get(asdId);
    return state === undefined || state.downUntilMs > this.options.nowMs();
  }

  /** The connected client of an ASD; UNAVAILABLE while it is marked down or unreachable. */
  async client(asdId: string): Promise<AsdClient> {
    if (this.closed) throw new OvsError("CLOSED", "The ALBA client is closed.");
    const state = this.states.get(asdId);
    if (state === undefined) throw new OvsError("UNAVAILABLE", `ASD ${asdId} is not in the registry.`, { asdId });
    if (state.client !== undefined) {
      if (state.client.connected || state.downUntilMs <= this.options.nowMs()) return state.client;
      throw new OvsError("UNAVAILABLE", `ASD ${asdId} is marked down.`, { asdId });
    }
    if (state.downUntilMs > this.options.nowMs()) throw new OvsError("UNAVAILABLE", `ASD ${asdId} is marked down.`, { asdId });
    state.connecting ??= AsdClient.connect({
      host: state.record.host,
      port: state.record.port,
      clusterSecret: this.options.clusterSecret,
      backendId: this.options.backendId,
      expectedAsdId: asdId,
      requestTimeoutMs: this.options.requestTimeoutMs,
      connectTimeoutMs: this.options.connectTimeoutMs,
      logger: this.options.logger,
    }).then(
      (client) => {
        state.connecting = undefined;
        if (this.closed) {
          void client.close();
          throw new OvsError("CLOSED", "The ALBA client is closed.");
        }
        state.client = client;
        return client;
      },
      (error: unknown) => {
        state.connecting = undefined;
        this.markDown(asdId);
        throw error;
      },
    );
    return state.connecting;
  }

  /** Notes a successful call. */
  markSeen(asdId: string): void {
    const state = this.states.get(asdId);
    if (state === undefined) return;
    state.lastSeenMs = this.options.nowMs();
    state.downUntilMs = 0;
  }

  /** Notes a failed call: counts it, and marks the ASD down (unreachable) or full (NO_SPACE). */
  markFailure(asdId: string, error: unknown, kind: "read" | "write"): void {
    const state = this.states.get(asdId);
    if (state === undefined) return;
    if (kind === "read") state.pendingErrors.readErrors++;
    else state.pendingErrors.writeErrors++;
    if (isOvsError(error, "NO_SPACE")) {
      state.full = true;
      return;
    }
    if (isOvsError(error, "UNAVAILABLE") || isOvsError(error, "TIMEOUT") || isOvsError(error, "CONFLICT") || !isOvsError(error)) this.markDown(asdId);
  }

  /** Notes a fragment that came back but failed verification. */
  markBadFragment(asdId: string): void {
    const state = this.states.get(asdId);
    if (state !== undefined) state.pendingErrors.checksumErrors++;
  }

  markDown(asdId: string): void {
    const state = this.states.get(asdId);
    if (state !== undefined) state.downUntilMs = this.options.nowMs() + this.options.downMs;
  }

  /** Asks every ASD not marked down for its disk usage (in parallel); unreachable ones are marked down. */
  async refreshUsage(): Promise<void> {
    await Promise.all(
      this.all().map(async (state) => {
        const asdId = state.record.asdId;
        if (state.record.state !== "claimed" || this.isDown(asdId)) return;
        try {
          const usage = await (await this.client(asdId)).diskUsage();
          state.usage = usage;
          state.full = usage.refusingWrites;
          this.markSeen(asdId);
        } catch (error) {
          if (isOvsError(error, "CLOSED")) return;
          this.markDown(asdId);
        }
      }),
    );
  }

  /** Hands over what was seen since the last call (for AlbaManager.recordAsdObservations) and resets the counts. */
  takeObservations(): AsdObservation[] {
    const observations: AsdObservation[] = [];
    for (const state of this.states.values()) {
      const errors = state.pendingErrors;
      const hasErrors = errors.readErrors + errors.writeErrors + errors.checksumErrors > 0;
      if (!hasErrors && state.lastSeenMs === 0 && state.usage === undefined) continue;
      const observation: AsdObservation = { asdId: state.record.asdId, errors: { ...errors } };
      if (state.lastSeenMs > 0) observation.lastSeenMs = state.lastSeenMs;
      if (state.usage !== undefined) {
        observation.capacityBytes = state.usage.totalBytes;
        observation.usedBytes = state.usage.usedBytes;
      }
      observations.push(observation);
      state.pendingErrors = { readErrors: 0, writeErrors: 0, checksumErrors: 0 };
    }
    return observations;
  }

  async close(): Promise<void> {
    this.closed = true;
    const clients = this.all().map((state) => state.client);
    await Promise.all(clients.map((client) => client?.close()));
  }
}
