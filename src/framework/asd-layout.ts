// The local ASDs of `ovs up` on disk (docs/formats/asd-layout.md): <dataDir>/asds/layout.json says which
// ASD directories the node runs and on which host and port, so a restarted node finds the same ASDs at
// the same addresses; <dataDir>/asds/cluster-secret holds the cluster secret (mode 0600), generated once.
// The codec (encode / decode with a reason on bad input) and the atomic file writes. An ASD's identity
// is in its own directory (docs/formats/asd-protocol.md); asdId here is a copy for operators.
// Imported by asd-supervisor.ts only.
//
// Invariants: indexes are 0..n-1 in order; directories are distinct relative names asd-<index>; ports
// 1..65535 and distinct. Files are replaced atomically (temp file, fsync, rename, fsync of the directory).

import { randomBytes } from "node:crypto";
import fsp from "node:fs/promises";
import path from "node:path";
import { OvsError } from "../base/index.js";

export const asdLayoutFormat = "ovs-asd-layout";
export const asdLayoutVersion = 1;
export const layoutFileName = "layout.json";
export const secretFileName = "cluster-secret";
/** Bytes of a generated cluster secret (written as hex). */
export const clusterSecretBytes = 32;
/** Most local ASDs one node runs. */
export const localAsdCountMax = 64;

export interface LocalAsdEntry {
  index: number;
  /** Relative to <dataDir>/asds: "asd-<index>". */
  dir: string;
  port: number;
  /** 32 hex digits once the ASD has reported it, else null. */
  asdId: string | null;
}

export interface AsdLayout {
  host: string;
  asds: LocalAsdEntry[];
}

export function encodeAsdLayout(layout: AsdLayout): Buffer {
  const reason = checkLayout(layout);
  if (reason !== undefined) throw new OvsError("INVALID_ARGUMENT", `The ASD layout is invalid: ${reason}.`);
  const document = {
    format: asdLayoutFormat,
    version: asdLayoutVersion,
    host: layout.host,
    asds: layout.asds.map((entry) => ({ index: entry.index, dir: entry.dir, port: entry.port, asdId: entry.asdId })),
  };
  return Buffer.from(JSON.stringify(document, null, 2) + "\n", "utf8");
}

/** The layout, or a reason why the bytes are not one. */
export function decodeAsdLayout(bytes: Buffer): { layout: AsdLayout } | { reason: string } {
  let document: unknown;
  try {
    document = JSON.parse(bytes.toString("utf8"));
  } catch {
    return { reason: "it is not JSON" };
  }
  if (typeof document !== "object" || document === null) return { reason: "it is not an object" };
  const record = document as Record<string, unknown>;
  if (record.format !== asdLayoutFormat) return { reason: `its format is not ${asdLayoutFormat}` };
  if (record.version !== asdLayoutVersion) return { reason: `version ${String(record.version)} is not supported (this build reads ${asdLayoutVersion})` };
  if (!Array.isArray(record.asds)) return { reason: "asds is not a list" };
  const layout: AsdLayout = {
    host: record.host as string,
    asds: (record.asds as Array<Record<string, unknown>>).map((entry) => ({
      index: entry?.index as number, dir: entry?.dir as string, port: entry?.port as number, asdId: (entry?.asdId ?? null) as string | null,
    })),
  };
  const reason = checkLayout(layout);
  return reason === undefined ? { layout } : { reason };
}

function checkLayout(layout: AsdLayout): string | undefined {
  if (typeof layout.host !== "string" || layout.host.length === 0 || layout.host.length > 255) return "host is not a host name or address";
  if (layout.asds.length === 0 || layout.asds.length > localAsdCountMax) return `it lists ${layout.asds.length} ASDs (1 to ${localAsdCountMax})`;
  const ports = new Set<number>();
  for (const [position, entry] of layout.asds.entries()) {
    if (entry.index !== position) return `entry ${position} has index ${String(entry.index)}`;
    if (entry.dir !== `asd-${position}`) return `entry ${position} has directory ${JSON.stringify(entry.dir)}, not asd-${position}`;
    if (!Number.isInteger(entry.port) || entry.port < 1 || entry.port > 65535) return `entry ${position} has port ${String(entry.port)}`;
    if (ports.has(entry.port)) return `port ${entry.port} is listed twice`;
    ports.add(entry.port);
    if (entry.asdId !== null && (typeof entry.asdId !== "string" || !/^[0-9a-f]{32}$/.test(entry.asdId))) return `entry ${position} has ASD id ${JSON.stringify(entry.asdId)}`;
  }
  return undefined;
}

/** Writes `bytes` to `file` atomically and durably, with `mode`. */
export async function writeFileAtomic(file: string, bytes: Buffer, mode = 0o644): Promise<void> {
  const temp = `${file}.tmp-${process.pid}`;
  const handle = await fsp.open(temp, "w", mode);
  try {
    await handle.writeFile(bytes);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await fsp.chmod(temp, mode);
  await fsp.rename(temp, file);
  const dir = await fsp.open(path.dirname(file), "r");
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

export async function readAsdLayout(asdsDir: string): Promise<AsdLayout | undefined> {
  const file = path.join(asdsDir, layoutFileName);
  let bytes: Buffer;
  try {
    bytes = await fsp.readFile(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
  const decoded = decodeAsdLayout(bytes);
  if ("reason" in decoded) throw new OvsError("CORRUPT", `${file} is not an ASD layout: ${decoded.reason}.`);
  return decoded.layout;
}

export async function writeAsdLayout(asdsDir: string, layout: AsdLayout): Promise<void> {
  await writeFileAtomic(path.join(asdsDir, layoutFileName), encodeAsdLayout(layout));
}

/** Reads the cluster secret, generating it (mode 0600) at the first start. */
export async function loadOrCreateSecret(asdsDir: string): Promise<{ secret: string; file: string }> {
  const file = path.join(asdsDir, secretFileName);
  try {
    const text = await fsp.readFile(file, "utf8");
    const secret = text.split("\n")[0]!;
    if (!/^[0-9a-f]{64}$/.test(secret)) throw new OvsError("CORRUPT", `${file} does not hold a cluster secret (64 hex digits on its first line).`);
    return { secret, file };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  const secret = randomBytes(clusterSecretBytes).toString("hex");
  await writeFileAtomic(file, Buffer.from(secret + "\n"), 0o600);
  return { secret, file };
}
