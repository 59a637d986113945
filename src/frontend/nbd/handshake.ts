// The pure core of the NBD handshake (fixed newstyle): takes the client's flags and options, returns
// the bytes to send and what to do next. No I/O, no timers: connection.ts is the shell that reads
// the socket, calls this, and writes what it returns.
// Imported only by src/frontend/nbd/.
//
// Options: EXPORT_NAME, GO, INFO (with NBD_INFO_EXPORT, NAME, DESCRIPTION, BLOCK_SIZE), LIST, ABORT,
// STRUCTURED_REPLY, LIST_META_CONTEXT and SET_META_CONTEXT (the one context base:allocation, offered
// for exports that implement blockStatus). STARTTLS → NBD_REP_ERR_POLICY (we run NOTLS); anything
// else → NBD_REP_ERR_UNSUP.
// A context set for one export does not carry over to another: GO / EXPORT_NAME of a different export
// enters transmission without it (BLOCK_STATUS then gets EINVAL), as proto.md requires.
// Invariants: an export is attached (NbdExport.attach) only when the step is "transmission", and the
// shell then owns the matching detach(). Returned Buffers are new and owned by the caller.

import type { NbdExport, NbdExportProvider } from "./nbd-export.js";
import { isOvsError } from "../../base/index.js";
import { nbdLimits } from "./limits.js";
import { transmissionFlagsOf } from "./transmission.js";
import {
  BASE_ALLOCATION, decodeInfoRequest, decodeMetaContextRequest, decodeString, encodeExportNameReply, encodeInfoBlockSize, encodeInfoExport,
  encodeInfoString, encodeMetaContextReplyData, encodeServerReplyData, NBD_FLAG_C_NO_ZEROES, NBD_FLAG_FIXED_NEWSTYLE, NBD_FLAG_NO_ZEROES,
  NBD_INFO_DESCRIPTION, NBD_INFO_NAME, NBD_OPT_ABORT, NBD_OPT_EXPORT_NAME, NBD_OPT_GO, NBD_OPT_INFO, NBD_OPT_LIST, NBD_OPT_LIST_META_CONTEXT,
  NBD_OPT_SET_META_CONTEXT, NBD_OPT_STARTTLS, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK, NBD_REP_ERR_INVALID, NBD_REP_ERR_POLICY,
  NBD_REP_ERR_SHUTDOWN, NBD_REP_ERR_TOO_BIG, NBD_REP_ERR_UNKNOWN, NBD_REP_ERR_UNSUP, NBD_REP_INFO, NBD_REP_META_CONTEXT, NBD_REP_SERVER,
  optionReply,
} from "./protocol.js";

/** Handshake flags the server offers. */
export const SERVER_HANDSHAKE_FLAGS = NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES;
/** The id NBD_OPT_SET_META_CONTEXT gives base:allocation (any 32-bit value would do; LIST answers 0). */
export const BASE_ALLOCATION_CONTEXT_ID = 1;

export type HandshakeStep =
  /** Send `messages` and wait for the next option. */
  | { kind: "continue"; messages: Buffer[] }
  /** Send `messages` (maybe none), then close the connection. */
  | { kind: "close"; messages: Buffer[]; reason: string }
  /** Send `messages`, then the connection is in transmission on `nbdExport` (already attached). */
  | {
    kind: "transmission"; messages: Buffer[]; nbdExport: NbdExport; sizeBytes: number; transmissionFlags: number;
    /** READ replies are structured (NBD_OPT_STRUCTURED_REPLY was acknowledged). */
    structuredReplies: boolean;
    /** The id of base:allocation when it was selected for this export (BLOCK_STATUS is then valid). */
    blockStatusContextId: number | undefined;
  };

export interface HandshakeOptions {
  provider: NbdExportProvider;
  /** The export that the empty name ("") selects when the provider has none called "". */
  defaultExportName?: string;
}

export class HandshakeSession {
  private clientFlags = 0;
  private optionCount = 0;
  private structuredReplies = false;
  /** What the last NBD_OPT_SET_META_CONTEXT selected, and for which export. */
  private metaContext: { exportName: string; baseAllocation: boolean } | undefined;
  /** Set by the shell when the server is shutting down: further options get NBD_REP_ERR_SHUTDOWN. */
  shuttingDown = false;

  constructor(private readonly options: HandshakeOptions) {}

  onClientFlags(flags: number): void {
    this.clientFlags = flags;
  }

  /** An option whose data was too large to buffer (the shell skipped the data). */
  onOversizedOption(option: number): HandshakeStep {
    if (option === NBD_OPT_SET_META_CONTEXT) this.metaContext = undefined; // a failed SET clears the selection too
    if (option === NBD_OPT_EXPORT_NAME) return { kind: "close", messages: [], reason: "NBD_OPT_EXPORT_NAME: name too long" };
    return this.countAnd({ kind: "continue", messages: [optionReply(option, NBD_REP_ERR_TOO_BIG)] });
  }

  onOption(option: number, data: Buffer): HandshakeStep {
    if (option === NBD_OPT_SET_META_CONTEXT) this.metaContext = undefined; // replaced, even when this SET fails (proto.md)
    if (this.shuttingDown && option !== NBD_OPT_ABORT) {
      if (option === NBD_OPT_EXPORT_NAME) return { kind: "close", messages: [], reason: "server shutting down" };
      return this.countAnd({ kind: "continue", messages: [optionReply(option, NBD_REP_ERR_SHUTDOWN)] });
    }
    switch (option) {
      case NBD_OPT_EXPORT_NAME:
        return this.exportName(data);
      case NBD_OPT_ABORT:
        return { kind: "close", messages: [optionReply(option, NBD_REP_ACK)], reason: "client sent NBD_OPT_ABORT" };
      case NBD_OPT_LIST:
        return this.countAnd(this.list(data));
      case NBD_OPT_STARTTLS:
        return this.countAnd({ kind: "continue", messages: [errorReply(option, NBD_REP_ERR_POLICY, "TLS is not offered by this server")] });
      case NBD_OPT_INFO:
      case NBD_OPT_GO:
        return this.countAnd(this.infoOrGo(option, data));
      case NBD_OPT_STRUCTURED_REPLY:
        if (data.length !== 0) return this.countAnd({ kind: "continue", messages: [errorReply(option, NBD_REP_ERR_INVALID, "NBD_OPT_STRUCTURED_REPLY takes no data")] });
        this.structuredReplies = true;
        return this.countAnd({ kind: "continue", messages: [optionReply(option, NBD_REP_ACK)] });
      case NBD_OPT_LIST_META_CONTEXT:
      case NBD_OPT_SET_META_CONTEXT:
        return this.countAnd(this.metaContextOption(option, data));
      default:
        return this.countAnd({ kind: "continue", messages: [optionReply(option, NBD_REP_ERR_UNSUP)] });
    }
  }

  private countAnd(step: HandshakeStep): HandshakeStep {
    this.optionCount++;
    if (step.kind === "continue" && this.optionCount >= nbdLimits.optionCountMax) {
      return { kind: "close", messages: step.messages, reason: `more than ${nbdLimits.optionCountMax} options` };
    }
    return step;
  }

  private lookUp(name: string): NbdExport | undefined {
    const found = this.options.provider.openExport(name);
    if (found !== undefined || name !== "" || this.options.defaultExportName === undefined) return found;
    return this.options.provider.openExport(this.options.defaultExportName);
  }

  private exportName(data: Buffer): HandshakeStep {
    const name = decodeString(data);
    if (!name.ok) return { kind: "close", messages: [], reason: `NBD_OPT_EXPORT_NAME: ${name.reason}` };
    const nbdExport = this.lookUp(name.value);
    if (nbdExport === undefined) return { kind: "close", messages: [], reason: `NBD_OPT_EXPORT_NAME: no export "${name.value}"` };
    const refusal = attach(nbdExport);
    if (refusal !== undefined) return { kind: "close", messages: [], reason: `NBD_OPT_EXPORT_NAME: ${refusal}` };
    const sizeBytes = nbdExport.sizeBytes();
    const transmissionFlags = transmissionFlagsOf(nbdExport, this.structuredReplies);
    const noZeroes = (this.clientFlags & NBD_FLAG_C_NO_ZEROES) !== 0;
    return {
      kind: "transmission", messages: [encodeExportNameReply(sizeBytes, transmissionFlags, noZeroes)], nbdExport, sizeBytes, transmissionFlags,
      structuredReplies: this.structuredReplies, blockStatusContextId: this.blockStatusContextFor(nbdExport),
    };
  }

  private blockStatusContextFor(nbdExport: NbdExport): number | undefined {
    const selected = this.metaContext;
    const selectedHere = selected !== undefined && selected.baseAllocation && selected.exportName === nbdExport.name;
    return selectedHere && nbdExport.blockStatus !== undefined ? BASE_ALLOCATION_CONTEXT_ID : undefined;
  }

  /**
   * LIST: the contexts the queries match (no query: all), each with id 0. SET: base:allocation if a
   * query names it exactly, with its id; replaces the earlier selection. Unknown queries match nothing
   * (not an error). Both need structured replies first.
   */
  private metaContextOption(option: number, data: Buffer): HandshakeStep {
    const what = option === NBD_OPT_SET_META_CONTEXT ? "NBD_OPT_SET_META_CONTEXT" : "NBD_OPT_LIST_META_CONTEXT";
    if (!this.structuredReplies) return { kind: "continue", messages: [errorReply(option, NBD_REP_ERR_INVALID, `${what} needs NBD_OPT_STRUCTURED_REPLY first`)] };
    const request = decodeMetaContextRequest(data);
    if (!request.ok) return { kind: "continue", messages: [errorReply(option, NBD_REP_ERR_INVALID, request.reason)] };
    const nbdExport = this.lookUp(request.value.exportName);
    if (nbdExport === undefined) return { kind: "continue", messages: [errorReply(option, NBD_REP_ERR_UNKNOWN, `no export "${request.value.exportName}"`)] };
    const offered = nbdExport.blockStatus !== undefined;
    const { queries } = request.value;
    const messages: Buffer[] = [];
    if (option === NBD_OPT_LIST_META_CONTEXT) {
      const matches = offered && (queries.length === 0 || queries.some((query) => query === BASE_ALLOCATION || query === "base:"));
      if (matches) messages.push(optionReply(option, NBD_REP_META_CONTEXT, encodeMetaContextReplyData(0, BASE_ALLOCATION)));
    } else {
      const baseAllocation = offered && queries.includes(BASE_ALLOCATION);
      this.metaContext = { exportName: nbdExport.name, baseAllocation };
      if (baseAllocation) messages.push(optionReply(option, NBD_REP_META_CONTEXT, encodeMetaContextReplyData(BASE_ALLOCATION_CONTEXT_ID, BASE_ALLOCATION)));
    }
    messages.push(optionReply(option, NBD_REP_ACK));
    return { kind: "continue", messages };
  }

  private list(data: Buffer): HandshakeStep {
    if (data.length !== 0) return { kind: "continue", messages: [errorReply(NBD_OPT_LIST, NBD_REP_ERR_INVALID, "NBD_OPT_LIST takes no data")] };
    const messages: Buffer[] = [];
    for (const entry of this.options.provider.listExports()) {
      messages.push(optionReply(NBD_OPT_LIST, NBD_REP_SERVER, encodeServerReplyData(entry.name, entry.description)));
    }
    messages.push(optionReply(NBD_OPT_LIST, NBD_REP_ACK));
    return { kind: "continue", messages };
  }

  private infoOrGo(option: number, data: Buffer): HandshakeStep {
    const request = decodeInfoRequest(data);
    if (!request.ok) return { kind: "continue", messages: [errorReply(option, NBD_REP_ERR_INVALID, request.reason)] };
    const { exportName, infoTypes } = request.value;
    const nbdExport = this.lookUp(exportName);
    if (nbdExport === undefined) return { kind: "continue", messages: [errorReply(option, NBD_REP_ERR_UNKNOWN, `no export "${exportName}"`)] };
    if (option === NBD_OPT_GO) {
      const refusal = attach(nbdExport);
      if (refusal !== undefined) return { kind: "continue", messages: [errorReply(option, NBD_REP_ERR_POLICY, refusal)] };
    }
    const sizeBytes = nbdExport.sizeBytes();
    const transmissionFlags = transmissionFlagsOf(nbdExport, this.structuredReplies);
    const messages = [optionReply(option, NBD_REP_INFO, encodeInfoExport(sizeBytes, transmissionFlags))];
    if (infoTypes.includes(NBD_INFO_NAME)) messages.push(optionReply(option, NBD_REP_INFO, encodeInfoString(NBD_INFO_NAME, nbdExport.name)));
    if (infoTypes.includes(NBD_INFO_DESCRIPTION) && nbdExport.description !== undefined) {
      messages.push(optionReply(option, NBD_REP_INFO, encodeInfoString(NBD_INFO_DESCRIPTION, nbdExport.description)));
    }
    // Sent even when not requested (proto.md allows it): the limits are advisory except the maximum.
    messages.push(optionReply(option, NBD_REP_INFO, encodeInfoBlockSize({
      minimumBytes: nbdLimits.blockSizeMinimumBytes,
      preferredBytes: nbdLimits.blockSizePreferredBytes,
      maximumBytes: nbdLimits.requestBytesMax,
    })));
    messages.push(optionReply(option, NBD_REP_ACK));
    if (option === NBD_OPT_GO) {
      return { kind: "transmission", messages, nbdExport, sizeBytes, transmissionFlags, structuredReplies: this.structuredReplies, blockStatusContextId: this.blockStatusContextFor(nbdExport) };
    }
    return { kind: "continue", messages };
  }
}

function errorReply(option: number, replyType: number, message: string): Buffer {
  return optionReply(option, replyType, Buffer.from(message.slice(0, 1024), "utf8"));
}

/** Attaches the export; returns undefined on success or the reason it was refused. */
function attach(nbdExport: NbdExport): string | undefined {
  try {
    nbdExport.attach();
    return undefined;
  } catch (error) {
    if (isOvsError(error)) return `${error.code}: ${error.message}`;
    throw error;
  }
}
