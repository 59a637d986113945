// Golden vectors of docs/formats/snapshots.md: the snapshots object and the owner tag.

import { describe, expect, it } from "vitest";
import { decodeOwnerTag, decodeSnapshotsObject, encodeOwnerTag, encodeSnapshotsObject, type SnapshotsObject } from "./snapshots-object.js";

const example: SnapshotsObject = {
  volumeId: "3f2a9c1e-7d4b-4e8a-9b1c-2d3e4f5a6b7c",
  generation: 1,
  tlogs: [
    { seq: 1, id: "tlog_0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e" },
    { seq: 2, id: "tlog_1c2d3e4f-5a6b-4c7d-9e8f-0a1b2c3d4e5f" },
  ],
  snapshots: [{ number: 1, name: "daily-1", createdAt: "2026-11-26T12:00:00.000Z", tlogSeq: 1, sticky: true, metadata: "{\"by\":\"scheduler\"}" }],
};

// The spec's worked example, byte for byte.
const exampleText =
  '{"format":"ovs-volume-snapshots","version":1,"volumeId":"3f2a9c1e-7d4b-4e8a-9b1c-2d3e4f5a6b7c","generation":1,' +
  '"tlogs":[{"seq":1,"id":"tlog_0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e"},{"seq":2,"id":"tlog_1c2d3e4f-5a6b-4c7d-9e8f-0a1b2c3d4e5f"}],' +
  '"snapshots":[{"number":1,"name":"daily-1","createdAt":"2026-11-26T12:00:00.000Z","tlogSeq":1,"sticky":true,"metadata":"{\\"by\\":\\"scheduler\\"}"}]}\n';

describe("snapshots object", () => {
  it("encodes the spec's example exactly and decodes it back", () => {
    const bytes = encodeSnapshotsObject(example);
    expect(bytes.toString("utf8")).toBe(exampleText);
    expect(bytes.length).toBe(384);
    expect(decodeSnapshotsObject(bytes)).toEqual({ ok: true, value: example });
  });

  it("encodes a clone's parent", () => {
    const clone: SnapshotsObject = { volumeId: "v", generation: 0, parent: { namespace: "vdisk-p", snapshot: "base", tlogSeq: 7 }, tlogs: [], snapshots: [] };
    const text = encodeSnapshotsObject(clone).toString("utf8");
    expect(text).toBe('{"format":"ovs-volume-snapshots","version":1,"volumeId":"v","generation":0,"parent":{"namespace":"vdisk-p","snapshot":"base","tlogSeq":7},"tlogs":[],"snapshots":[]}\n');
    expect(decodeSnapshotsObject(Buffer.from(text))).toEqual({ ok: true, value: clone });
  });

  it("returns a reason for bad input and never throws", () => {
    const bad = [
      "not json",
      "[]",
      '{"format":"other","version":1}',
      exampleText.replace('"version":1', '"version":2'),
      exampleText.replace('"seq":2', '"seq":1'), // seqs not increasing
      exampleText.replace('"tlogSeq":1', '"tlogSeq":3'), // past the last TLog
      exampleText.replace("tlog_0b1c", "tlog_XXXX"),
      exampleText.replace('"name":"daily-1"', '"name":"bad name"'),
    ];
    for (const text of bad) {
      const result = decodeSnapshotsObject(Buffer.from(text));
      expect(result.ok, text).toBe(false);
      if (!result.ok) expect(result.reason.length).toBeGreaterThan(0);
    }
  });
});

describe("owner tag", () => {
  it("encodes the spec's example exactly and decodes it back", () => {
    const tag = { tag: "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a", volumeId: "3f2a9c1e-7d4b-4e8a-9b1c-2d3e4f5a6b7c", takenAt: "2026-11-26T12:00:00.000Z" };
    const bytes = encodeOwnerTag(tag);
    expect(bytes.toString("utf8")).toBe(
      '{"format":"ovs-owner-tag","tag":"9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a","volumeId":"3f2a9c1e-7d4b-4e8a-9b1c-2d3e4f5a6b7c","takenAt":"2026-11-26T12:00:00.000Z"}\n',
    );
    expect(decodeOwnerTag(bytes)).toEqual({ ok: true, value: tag });
    expect(decodeOwnerTag(Buffer.from("{}")).ok).toBe(false);
  });
});
