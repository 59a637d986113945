// The ASD layout file (docs/formats/asd-layout.md): the spec's worked example is a golden vector, and bad
// input is refused with a reason.

import { describe, expect, it } from "vitest";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { decodeAsdLayout, encodeAsdLayout, loadOrCreateSecret, type AsdLayout } from "./asd-layout.js";

const golden = `{
  "format": "ovs-asd-layout",
  "version": 1,
  "host": "127.0.0.1",
  "asds": [
    {
      "index": 0,
      "dir": "asd-0",
      "port": 8600,
      "asdId": "0123456789abcdef0123456789abcdef"
    },
    {
      "index": 1,
      "dir": "asd-1",
      "port": 8601,
      "asdId": null
    }
  ]
}
`;

const layout: AsdLayout = {
  host: "127.0.0.1",
  asds: [
    { index: 0, dir: "asd-0", port: 8600, asdId: "0123456789abcdef0123456789abcdef" },
    { index: 1, dir: "asd-1", port: 8601, asdId: null },
  ],
};

describe("ASD layout codec", () => {
  it("encodes the spec's example byte for byte and decodes it back", async () => {
    expect(encodeAsdLayout(layout).toString("utf8")).toBe(golden);
    expect(decodeAsdLayout(Buffer.from(golden))).toEqual({ layout });
    const spec = await fsp.readFile(path.join(import.meta.dirname, "../../docs/formats/asd-layout.md"), "utf8");
    expect(spec).toContain("```json\n" + golden + "```");
  });

  it("refuses malformed layouts with a reason", () => {
    const bad = (change: (doc: Record<string, unknown> & { asds: Array<Record<string, unknown>> }) => void): string => {
      const doc = JSON.parse(golden) as Record<string, unknown> & { asds: Array<Record<string, unknown>> };
      change(doc);
      const decoded = decodeAsdLayout(Buffer.from(JSON.stringify(doc)));
      expect("reason" in decoded).toBe(true);
      return (decoded as { reason: string }).reason;
    };
    expect(decodeAsdLayout(Buffer.from("{"))).toEqual({ reason: "it is not JSON" });
    expect(bad((d) => (d.format = "other"))).toMatch(/format/);
    expect(bad((d) => (d.version = 2))).toMatch(/version 2 is not supported/);
    expect(bad((d) => (d.asds = []))).toMatch(/0 ASDs/);
    expect(bad((d) => (d.asds[1]!.port = 8600))).toMatch(/port 8600 is listed twice/);
    expect(bad((d) => (d.asds[1]!.port = 70000))).toMatch(/port 70000/);
    expect(bad((d) => (d.asds[1]!.dir = "../x"))).toMatch(/directory/);
    expect(bad((d) => (d.asds[0]!.index = 1))).toMatch(/index/);
    expect(bad((d) => (d.asds[0]!.asdId = "XYZ"))).toMatch(/ASD id/);
    expect(bad((d) => (d.host = ""))).toMatch(/host/);
  });

  it("generates the cluster secret once, mode 0600", async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), "ovs-secret-"));
    try {
      const first = await loadOrCreateSecret(dir);
      expect(first.secret).toMatch(/^[0-9a-f]{64}$/);
      expect((await fsp.stat(first.file)).mode & 0o777).toBe(0o600);
      expect((await loadOrCreateSecret(dir)).secret).toBe(first.secret);
      await fsp.writeFile(first.file, "short\n");
      await expect(loadOrCreateSecret(dir)).rejects.toThrow(/does not hold a cluster secret/);
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });
});
