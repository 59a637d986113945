// Codecs of a volume's backend bookkeeping objects (spec: docs/formats/snapshots.md; golden vectors in
// snapshots-object.test.ts):
// - `snapshots.json`: the ordered list of the volume's TLogs that are on the backend, the snapshots as
//   cuts in that list, and (for a clone) its parent. It is the root a restart from the backend starts
//   from: every TLog it lists is stored, and every SCO those TLogs name is stored (DESIGN.md §4.3).
// - `owner_tag`: the fencing token; every start of the volume replaces it (compare-and-swap), and every
//   backend write of the volume asserts it (DESIGN.md §4.5).
// Decoders return a reason on bad input and never throw. Imported by volume/ only.

export const snapshotsObjectName = "snapshots.json";
export const ownerTagObjectName = "owner_tag";
export const snapshotsFormat = "ovs-volume-snapshots";
export const snapshotsFormatVersion = 1;
export const ownerTagFormat = "ovs-owner-tag";

export const snapshotLimits = {
  /** Snapshots kept per volume (the list lives in memory and in one backend object). */
  snapshotCountMax: 1024,
  nameBytesMax: 64,
  /** User metadata of one snapshot (the original's limit). */
  metadataBytesMax: 4096,
} as const;

export interface SnapshotsObjectTlog {
  seq: number;
  id: string;
}

export interface SnapshotsObjectSnapshot {
  number: number;
  name: string;
  createdAt: string;
  tlogSeq: number;
  sticky: boolean;
  metadata?: string;
}

export interface ParentRef {
  /** The parent volume's backend namespace. */
  namespace: string;
  /** The parent's snapshot the clone was made from: its name and its last TLog's seq. */
  snapshot: string;
  tlogSeq: number;
}

export interface SnapshotsObject {
  volumeId: string;
  /** Bumped by every rewrite that drops TLogs (rollback); informational. */
  generation: number;
  parent?: ParentRef;
  tlogs: SnapshotsObjectTlog[];
  snapshots: SnapshotsObjectSnapshot[];
}

const tlogIdPattern = /^tlog_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const snapshotNamePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function isValidSnapshotName(name: unknown): name is string {
  return typeof name === "string" && snapshotNamePattern.test(name);
}

/** Canonical encoding: fixed key order, no whitespace, one trailing newline. */
export function encodeSnapshotsObject(value: SnapshotsObject): Buffer {
  const ordered = {
    format: snapshotsFormat,
    version: snapshotsFormatVersion,
    volumeId: value.volumeId,
    generation: value.generation,
    ...(value.parent ? { parent: { namespace: value.parent.namespace, snapshot: value.parent.snapshot, tlogSeq: value.parent.tlogSeq } } : {}),
    tlogs: value.tlogs.map((t) => ({ seq: t.seq, id: t.id })),
    snapshots: value.snapshots.map((s) => ({
      number: s.number,
      name: s.name,
      createdAt: s.createdAt,
      tlogSeq: s.tlogSeq,
      sticky: s.sticky,
      ...(s.metadata !== undefined ? { metadata: s.metadata } : {}),
    })),
  };
  return Buffer.from(`${JSON.stringify(ordered)}\n`, "utf8");
}

export type DecodeResult<T> = { ok: true; value: T } | { ok: false; reason: string };

const isCount = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;

export function decodeSnapshotsObject(bytes: Buffer): DecodeResult<SnapshotsObject> {
  let raw: unknown;
  try {
    raw = JSON.parse(bytes.toString("utf8"));
  } catch {
    return { ok: false, reason: "the snapshots object is not JSON" };
  }
  if (typeof raw !== "object" || raw === null) return { ok: false, reason: "the snapshots object is not a JSON object" };
  const o = raw as Record<string, unknown>;
  if (o.format !== snapshotsFormat) return { ok: false, reason: "bad snapshots object format" };
  if (o.version !== snapshotsFormatVersion) return { ok: false, reason: `unsupported snapshots object version ${String(o.version)}` };
  if (typeof o.volumeId !== "string" || !isCount(o.generation)) return { ok: false, reason: "bad volumeId or generation" };
  if (!Array.isArray(o.tlogs) || !Array.isArray(o.snapshots)) return { ok: false, reason: "tlogs and snapshots must be arrays" };
  const tlogs: SnapshotsObjectTlog[] = [];
  for (const t of o.tlogs as unknown[]) {
    const tlog = t as Record<string, unknown>;
    if (!isCount(tlog?.seq) || tlog.seq < 1 || typeof tlog.id !== "string" || !tlogIdPattern.test(tlog.id)) return { ok: false, reason: "bad TLog entry" };
    if (tlogs.length > 0 && tlog.seq <= tlogs.at(-1)!.seq) return { ok: false, reason: "TLog seqs are not increasing" };
    tlogs.push({ seq: tlog.seq, id: tlog.id });
  }
  const snapshots: SnapshotsObjectSnapshot[] = [];
  const lastSeq = tlogs.at(-1)?.seq ?? 0;
  for (const s of o.snapshots as unknown[]) {
    const snap = s as Record<string, unknown>;
    if (!isCount(snap?.number) || !isValidSnapshotName(snap.name) || typeof snap.createdAt !== "string" || !isCount(snap.tlogSeq) || typeof snap.sticky !== "boolean") {
      return { ok: false, reason: "bad snapshot entry" };
    }
    if (snap.metadata !== undefined && typeof snap.metadata !== "string") return { ok: false, reason: "bad snapshot metadata" };
    const previous = snapshots.at(-1);
    if (previous && (snap.number <= previous.number || snap.tlogSeq < previous.tlogSeq)) return { ok: false, reason: "snapshots are not in order" };
    if (snap.tlogSeq > lastSeq) return { ok: false, reason: `snapshot ${snap.name} names TLog ${snap.tlogSeq}, past the last listed one` };
    if (snapshots.some((x) => x.name === snap.name)) return { ok: false, reason: `snapshot name ${snap.name} is listed twice` };
    snapshots.push({ number: snap.number, name: snap.name, createdAt: snap.createdAt, tlogSeq: snap.tlogSeq, sticky: snap.sticky, ...(snap.metadata !== undefined ? { metadata: snap.metadata as string } : {}) });
  }
  let parent: ParentRef | undefined;
  if (o.parent !== undefined) {
    const p = o.parent as Record<string, unknown>;
    if (typeof p?.namespace !== "string" || !isValidSnapshotName(p.snapshot) || !isCount(p.tlogSeq)) return { ok: false, reason: "bad parent" };
    parent = { namespace: p.namespace, snapshot: p.snapshot, tlogSeq: p.tlogSeq };
  }
  return { ok: true, value: { volumeId: o.volumeId, generation: o.generation, ...(parent ? { parent } : {}), tlogs, snapshots } };
}

export interface OwnerTag {
  tag: string;
  volumeId: string;
  takenAt: string;
}

export function encodeOwnerTag(value: OwnerTag): Buffer {
  return Buffer.from(`${JSON.stringify({ format: ownerTagFormat, tag: value.tag, volumeId: value.volumeId, takenAt: value.takenAt })}\n`, "utf8");
}

export function decodeOwnerTag(bytes: Buffer): DecodeResult<OwnerTag> {
  try {
    const o = JSON.parse(bytes.toString("utf8")) as Record<string, unknown>;
    if (o.format !== ownerTagFormat || typeof o.tag !== "string" || typeof o.volumeId !== "string" || typeof o.takenAt !== "string") {
      return { ok: false, reason: "bad owner tag" };
    }
    return { ok: true, value: { tag: o.tag, volumeId: o.volumeId, takenAt: o.takenAt } };
  } catch {
    return { ok: false, reason: "the owner tag is not JSON" };
  }
}
