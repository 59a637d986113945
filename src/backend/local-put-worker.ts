// The local backend's put, run synchronously in a worker thread (base/worker-pool.ts): the file-system
// calls of one put (about a dozen, three of them fsyncs) in one go, so a put costs the main thread one
// event-loop trip instead of one per call. Under sequential writes a linked SCO put made 9 such trips of
// 3–9 ms each (the trip waits for the main thread's turn), 30 ms in all; the calls themselves take well
// under a millisecond besides the syncs. Imported by local-backend.ts only (for its types); the pool
// loads the compiled module as the worker.
//
// Invariants (the same as the asynchronous path it replaces, docs/formats/local-backend.md): the object
// file (and for a linked object its data file) is complete and durable, and its name durable in the
// directory, before the rename gives it its name; the rename is then made durable before the job
// returns. On failure before the rename, what the job created is removed (best effort; the backend's
// open removes leftovers). The object's lock is held by the caller for the whole job.
// Buffers: `prefix` and `bytes` are transferred to the worker and dropped when the job ends.

import fs from "node:fs";
import { join } from "node:path";
import { serveWorkerJobs } from "../base/worker-pool.js";
import { decodeObjectHeader, linkedDataFileName, objectHeaderBytes } from "./local-backend-format.js";

export interface PutJob {
  /** The namespace's directory. */
  nsDir: string;
  /** The object's name (its file name in nsDir). */
  name: string;
  /** The temporary file name the object file is written under before the rename. */
  tempName: string;
  /** Read the replaced object's header first and remove its data file once replaced (it was linked). */
  replacesLinked: boolean;
  /**
   * A linked put: `file` is hard-linked as `dataName` and must be `sizeBytes` long; `prefix` (header
   * and checksum table) is written as the object file. Absent: a plain put of `bytes` (prefix and data).
   */
  linked?: { file: string; dataName: string; sizeBytes: number; prefix: Uint8Array };
  bytes?: Uint8Array;
}

export type PutOutcome =
  | { kind: "stored" }
  /** The namespace directory does not exist. */
  | { kind: "no-namespace" }
  /** The file cannot be linked here; `permanent`: not on this file system at all (EXDEV and the like). */
  | { kind: "unlinkable"; permanent: boolean };

function unlinkQuietly(path: string): void {
  try {
    fs.unlinkSync(path);
  } catch {
    // best effort: the backend's open removes leftovers
  }
}

function closeQuietly(fd: number | undefined): void {
  if (fd === undefined) return;
  try {
    fs.closeSync(fd);
  } catch {
    // a close after a completed fsync loses nothing
  }
}

function writeFully(fd: number, bytes: Uint8Array): void {
  for (let offset = 0; offset < bytes.length; ) offset += fs.writeSync(fd, bytes, offset, bytes.length - offset, offset);
}

function syncDirectory(path: string): void {
  const fd = fs.openSync(path, fs.constants.O_RDONLY);
  try {
    fs.fsyncSync(fd);
  } finally {
    closeQuietly(fd);
  }
}

/** The link id in the header of the object file at `path`, if it is a linked object. */
function linkIdAt(path: string): string | undefined {
  // Most puts create a new name (SCOs, TLogs): a stat that does not throw answers those without the
  // cost of building an exception for the missing file.
  if (fs.statSync(path, { throwIfNoEntry: false }) === undefined) return undefined;
  let fd: number;
  try {
    fd = fs.openSync(path, fs.constants.O_RDONLY);
  } catch (error) {
    if ((error as { code?: unknown }).code === "ENOENT") return undefined;
    throw error;
  }
  try {
    const header = Buffer.allocUnsafe(objectHeaderBytes);
    const bytesRead = fs.readSync(fd, header, 0, objectHeaderBytes, 0);
    const decoded = decodeObjectHeader(header.subarray(0, bytesRead));
    return decoded.ok ? decoded.linkId : undefined;
  } finally {
    closeQuietly(fd);
  }
}

const unsupportedLinkCodes = new Set(["EXDEV", "EPERM", "EOPNOTSUPP", "ENOTSUP"]);

export function runPutJob(job: PutJob): PutOutcome {
  const temp = join(job.nsDir, job.tempName);
  const dataPath = job.linked ? join(job.nsDir, job.linked.dataName) : undefined;
  if (job.linked) {
    try {
      fs.linkSync(job.linked.file, dataPath!);
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if (typeof code === "string" && unsupportedLinkCodes.has(code)) return { kind: "unlinkable", permanent: true };
      // ENOENT: the file or the namespace is missing (the plain put tells which); EMLINK: too many links.
      if (code === "ENOENT" || code === "EMLINK") return { kind: "unlinkable", permanent: false };
      throw error;
    }
  }
  let dataFd: number | undefined;
  let fd: number | undefined;
  try {
    if (job.linked) {
      dataFd = fs.openSync(dataPath!, fs.constants.O_RDONLY);
      if (fs.fstatSync(dataFd).size !== job.linked.sizeBytes) {
        closeQuietly(dataFd);
        dataFd = undefined;
        unlinkQuietly(dataPath!);
        return { kind: "unlinkable", permanent: false };
      }
    }
    try {
      fd = fs.openSync(temp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o644);
    } catch (error) {
      if ((error as { code?: unknown }).code === "ENOENT" && !fs.existsSync(job.nsDir)) return { kind: "no-namespace" };
      throw error;
    }
    writeFully(fd, job.linked ? job.linked.prefix : job.bytes!);
    fs.fdatasyncSync(fd);
    if (dataFd !== undefined) {
      // The data file's bytes were synced by its writer; this makes its new link count durable too.
      fs.fsyncSync(dataFd);
      // Both names (data file and temp file) durable before the rename names them.
      syncDirectory(job.nsDir);
    }
    closeQuietly(fd);
    fd = undefined;
    closeQuietly(dataFd);
    dataFd = undefined;
    const replaced = job.replacesLinked ? linkIdAt(join(job.nsDir, job.name)) : undefined;
    fs.renameSync(temp, join(job.nsDir, job.name));
    // From here the object has its new name: a failure to sync it is reported, nothing is removed.
    try {
      syncDirectory(job.nsDir);
    } catch (error) {
      (error as { renamed?: boolean }).renamed = true;
      throw error;
    }
    if (replaced !== undefined) unlinkQuietly(join(job.nsDir, linkedDataFileName(replaced, job.name)));
    return { kind: "stored" };
  } catch (error) {
    closeQuietly(fd);
    closeQuietly(dataFd);
    if ((error as { renamed?: boolean }).renamed !== true) {
      unlinkQuietly(temp);
      if (dataPath !== undefined) unlinkQuietly(dataPath);
    }
    throw error;
  }
}

serveWorkerJobs(runPutJob);
