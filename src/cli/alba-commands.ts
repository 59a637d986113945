// `ovs alba ...`: the ALBA backend's commands over /api/v1/alba (asd list|add|claim|decommission, preset
// list|add, namespace list|verify, object list|show, maintenance status|run). Every command takes --json;
// errors are one sentence and a non-zero exit (main.ts prints them). Imported by main.ts only.

import fs from "node:fs";
import { InvalidArgumentError, type Command } from "commander";
import { formatBytes, isOvsError, parseSizeBytes } from "../base/index.js";
import { CliError, callApi } from "./api-client.js";
import { runTask } from "./task-commands.js";

/** A commander option parser for sizes like 10G: refuses what parseSizeBytes refuses, keeps the text. */
export function sizeOption(value: string): string {
  try {
    parseSizeBytes(value);
  } catch (error) {
    throw new InvalidArgumentError(isOvsError(error) ? error.message : String(error));
  }
  return value;
}

interface AsdView {
  asdId: string; host: string; port: number; nodeId: string; state: string; health: string; capacityBytes: number; usedBytes: number;
  local?: { index: number; dir: string; pid: number | null; process: string; restarts: number };
}

function table(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const row of [header, ...rows]) process.stdout.write(row.map((cell, i) => cell.padEnd(widths[i]!)).join("  ").trimEnd() + "\n");
}

function asdIdArgument(value: string): string {
  if (!/^[0-9a-f]{32}$/.test(value)) throw new CliError(`"${value}" is not an ASD id: an ASD id is 32 lowercase hex digits (see ovs alba asd list).`);
  return value;
}

function hostPortArgument(value: string): { host: string; port: number } {
  const match = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(value);
  const port = match ? Number(match[2]) : NaN;
  if (!match || port < 1 || port > 65535) throw new CliError(`"${value}" is not an address: give the ASD's address as HOST:PORT, e.g. 10.0.0.5:8600.`);
  return { host: match[1]!.replace(/^\[|\]$/g, ""), port };
}

function printAsd(asd: AsdView): void {
  process.stdout.write(`${asd.asdId}  ${asd.host}:${asd.port}  node ${asd.nodeId}  ${asd.state}\n`);
}

interface PresetView {
  name: string; version: number; policies: Array<{ k: number; m: number; c: number; x: number }>; fragmentSizeMaxBytes: number;
  compression: string; encryption: string; fragmentChecksum: string; isDefault?: boolean;
}

function policiesOf(preset: PresetView): string {
  return preset.policies.map((p) => `(${p.k},${p.m},${p.c},${p.x})`).join(" ");
}

function policyList(value: string): Array<{ k: number; m: number; c: number; x: number }> {
  const policies = value.split(/\s*;\s*|\)\s*,?\s*\(/).map((part) => part.replace(/[()\s]/g, "")).filter((part) => part !== "");
  if (policies.length === 0) throw new InvalidArgumentError("give policies as k,m,c,x separated by ';', e.g. \"4,2,5,6;2,2,3,6\".");
  return policies.map((part) => {
    const numbers = part.split(",").map(Number);
    if (numbers.length !== 4 || numbers.some((n) => !Number.isInteger(n))) throw new InvalidArgumentError(`"${part}" is not a policy k,m,c,x of four integers.`);
    const [k, m, c, x] = numbers as [number, number, number, number];
    return { k, m, c, x };
  });
}

interface ObjectSummaryView {
  name: string; sizeBytes: number; policy: { k: number; m: number; c: number; x: number }; policyIndex: number; fragmentCount: number; holeCount: number; degraded: boolean;
}

interface MaintenanceView {
  looping: boolean; current?: { task: string; detail: string; startedAtMs: number }; queued: { repairs: number; verifies: string[]; decommissions: string[] };
  asds: Array<{ asdId: string; health: string; state: string; lastError?: string }>; counters: Record<string, number>; lastErrors: Array<{ atMs: number; task: string; message: string }>;
  lastFinishedMs: Record<string, number>;
}

function printMaintenance(status: MaintenanceView): void {
  process.stdout.write(`loop       ${status.looping ? "running" : "stopped"}\n`);
  process.stdout.write(`current    ${status.current ? `${status.current.task}: ${status.current.detail}` : "idle"}\n`);
  process.stdout.write(`queued     ${status.queued.repairs} repairs, verifies [${status.queued.verifies.join(", ")}], decommissions [${status.queued.decommissions.join(", ")}]\n`);
  for (const asd of status.asds) process.stdout.write(`asd        ${asd.asdId} ${asd.health}${asd.lastError ? ` (${asd.lastError})` : ""}\n`);
  process.stdout.write(`counters   ${Object.entries(status.counters).map(([k, v]) => `${k}=${v}`).join(" ")}\n`);
  for (const [task, atMs] of Object.entries(status.lastFinishedMs)) process.stdout.write(`last ${task.padEnd(6)}${new Date(atMs).toISOString()}\n`);
  for (const error of status.lastErrors) process.stdout.write(`error      ${new Date(error.atMs).toISOString()} ${error.task}: ${error.message}\n`);
}

export function registerAlbaCommands(program: Command, context: { api: () => string; printJson: (value: unknown) => void }): void {
  const { api, printJson } = context;
  const alba = program.command("alba").description("the ALBA backend: ASDs, presets, namespaces, objects and maintenance");

  const albaAsd = alba.command("asd").description("ASDs: list, add by address, claim, decommission");

  albaAsd
    .command("list")
    .description("list the backend's ASDs (claimed, decommissioned, and added ones waiting to be claimed)")
    .option("--json", "print JSON")
    .action(async (options: { json?: boolean }) => {
      const { asds } = await callApi<{ asds: AsdView[] }>(api(), "GET", "/api/v1/alba/asds");
      if (options.json) return printJson(asds);
      table(
        ["ASD", "ADDRESS", "NODE", "STATE", "HEALTH", "USED", "CAPACITY", "LOCAL"],
        asds.map((a) => [
          a.asdId, `${a.host}:${a.port}`, a.nodeId, a.state, a.health, formatBytes(a.usedBytes), formatBytes(a.capacityBytes),
          a.local ? `asd-${a.local.index} pid ${a.local.pid ?? "-"} ${a.local.process}${a.local.restarts > 0 ? ` (${a.local.restarts} restarts)` : ""}` : "",
        ]),
      );
    });

  albaAsd
    .command("add <host:port>")
    .description("add an ASD by its address (it must use this backend's cluster secret); claim it next")
    .option("--node-id <id>", "its node (failure domain); default: its address")
    .option("--json", "print JSON")
    .action(async (address: string, options: { nodeId?: string; json?: boolean }) => {
      const target = hostPortArgument(address);
      const asd = await callApi<AsdView>(api(), "POST", "/api/v1/alba/asds", { ...target, ...(options.nodeId === undefined ? {} : { nodeId: options.nodeId }) });
      if (options.json) return printJson(asd);
      process.stdout.write(`added ASD ${asd.asdId} at ${asd.host}:${asd.port} (node ${asd.nodeId}); claim it with: ovs alba asd claim ${asd.asdId}\n`);
    });

  albaAsd
    .command("claim <asd-id>")
    .description("claim an added ASD for this backend (it then stores fragments)")
    .option("--json", "print JSON")
    .action(async (asdId: string, options: { json?: boolean }) => {
      const asd = await callApi<AsdView>(api(), "POST", `/api/v1/alba/asds/${asdIdArgument(asdId)}/claim`);
      if (options.json) return printJson(asd);
      process.stdout.write("claimed ");
      printAsd(asd);
    });

  albaAsd
    .command("decommission <asd-id>")
    .description("stop placing fragments on an ASD and move its fragments elsewhere, as a task with a progress bar (fragments moved)")
    .option("--json", "print the final task as JSON (its result is the drain report)")
    .option("--no-wait", "print the task id and return at once (the ASD is decommissioned; the task drains it)")
    .action(async (asdId: string, options: { json?: boolean; wait: boolean }) => {
      const task = await runTask(api(), "POST", `/api/v1/alba/asds/${asdIdArgument(asdId)}/decommission`, undefined, { json: options.json, wait: options.wait, printJson });
      if (task === undefined) return;
      const report = task.result as { asdId: string; fragmentsMoved: number; passes: number };
      process.stdout.write(`decommissioned ASD ${report.asdId}: ${report.fragmentsMoved} fragments moved to other ASDs in ${report.passes} maintenance passes\n`);
    });

  const albaPreset = alba.command("preset").description("presets: list, add");

  albaPreset
    .command("list")
    .description("list presets (policies as (k,m,c,x), best first)")
    .option("--json", "print JSON")
    .action(async (options: { json?: boolean }) => {
      const { presets } = await callApi<{ presets: PresetView[] }>(api(), "GET", "/api/v1/alba/presets");
      if (options.json) return printJson(presets);
      table(
        ["NAME", "POLICIES", "FRAGMENT", "COMPRESSION", "ENCRYPTION", "CHECKSUM", "DEFAULT"],
        presets.map((p) => [p.name, policiesOf(p), formatBytes(p.fragmentSizeMaxBytes), p.compression, p.encryption, p.fragmentChecksum, p.isDefault ? "yes" : ""]),
      );
    });

  albaPreset
    .command("add <name>")
    .description("add a preset")
    .requiredOption("--policies <list>", "policies k,m,c,x best first, separated by ';', e.g. \"4,2,5,6;2,2,3,6\"", policyList)
    .option("--fragment-size <size>", "largest fragment, e.g. 1M", sizeOption, "1M")
    .option("--compression <kind>", "none, lz4 or zstd", "none")
    .option("--encryption <kind>", "none or aes-256-gcm (with --key-file)", "none")
    .option("--key-file <file>", "file holding the 64-hex-digit AES-256 key")
    .option("--checksum <kind>", "fragment checksum: crc32c or none", "crc32c")
    .option("--json", "print JSON")
    .action(async (name: string, options: { policies: PresetView["policies"]; fragmentSize: string; compression: string; encryption: string; keyFile?: string; checksum: string; json?: boolean }) => {
      const body: Record<string, unknown> = {
        name, policies: options.policies, fragmentSizeMaxBytes: parseSizeBytes(options.fragmentSize), compression: options.compression, encryption: options.encryption,
        fragmentChecksum: options.checksum,
      };
      if (options.keyFile !== undefined) body.encryptionKeyHex = fs.readFileSync(options.keyFile, "utf8").trim();
      const preset = await callApi<PresetView>(api(), "POST", "/api/v1/alba/presets", body);
      if (options.json) return printJson(preset);
      process.stdout.write(`added preset ${preset.name}: ${policiesOf(preset)}\n`);
    });

  const albaNamespace = alba.command("namespace").description("namespaces (one per vDisk)");

  albaNamespace
    .command("list")
    .description("list namespaces")
    .option("--json", "print JSON")
    .action(async (options: { json?: boolean }) => {
      const { namespaces } = await callApi<{ namespaces: Array<{ name: string; namespaceId: number; presetName: string; nsmId: string }> }>(api(), "GET", "/api/v1/alba/namespaces");
      if (options.json) return printJson(namespaces);
      table(["NAMESPACE", "ID", "PRESET", "NSM"], namespaces.map((n) => [n.name, String(n.namespaceId), n.presetName, n.nsmId]));
    });

  albaNamespace
    .command("verify <namespace>")
    .description("re-read and check every fragment of a namespace now, as a task with a progress bar; bad ones are queued for repair")
    .option("--json", "print the final task as JSON (its result is the report)")
    .option("--no-wait", "print the task id and return at once")
    .action(async (namespace: string, options: { json?: boolean; wait: boolean }) => {
      const task = await runTask(api(), "POST", `/api/v1/alba/namespaces/${encodeURIComponent(namespace)}/verify`, undefined, { json: options.json, wait: options.wait, printJson });
      if (task === undefined) return;
      const report = task.result as { objectCount: number; fragmentsChecked: number; badCount: number; missingCount: number; unavailableCount: number; holeCount: number; bad: unknown[] };
      process.stdout.write(`${report.objectCount} objects, ${report.fragmentsChecked} fragments checked: ${report.badCount} bad (${report.missingCount} missing), ${report.unavailableCount} unavailable, ${report.holeCount} holes\n`);
    });

  const albaObject = alba.command("object").description("objects of a namespace and their manifests");

  albaObject
    .command("list <namespace>")
    .description("list a namespace's objects (all pages, or --limit)")
    .option("--limit <n>", "at most this many", (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError("the limit is a positive integer.");
      return n;
    })
    .option("--json", "print JSON")
    .action(async (namespace: string, options: { limit?: number; json?: boolean }) => {
      const objects: ObjectSummaryView[] = [];
      let after: string | undefined;
      for (;;) {
        const want = Math.min(1000, options.limit === undefined ? 1000 : options.limit - objects.length);
        const query = new URLSearchParams({ limit: String(want), ...(after === undefined ? {} : { after }) });
        const page = await callApi<{ objects: ObjectSummaryView[]; more: boolean }>(api(), "GET", `/api/v1/alba/namespaces/${encodeURIComponent(namespace)}/objects?${query.toString()}`);
        objects.push(...page.objects);
        if (!page.more || page.objects.length === 0 || (options.limit !== undefined && objects.length >= options.limit)) break;
        after = page.objects.at(-1)!.name;
      }
      if (options.json) return printJson(objects);
      table(
        ["NAME", "SIZE", "POLICY", "FRAGMENTS", "HOLES", "STATE"],
        objects.map((o) => [o.name, formatBytes(o.sizeBytes), `(${o.policy.k},${o.policy.m},${o.policy.c},${o.policy.x})${o.policyIndex > 0 ? " fallback" : ""}`, String(o.fragmentCount), String(o.holeCount), o.degraded ? "degraded" : "ok"]),
      );
    });

  albaObject
    .command("show <namespace> <name>")
    .description("an object's manifest and where each fragment is")
    .option("--json", "print JSON")
    .action(async (namespace: string, name: string, options: { json?: boolean }) => {
      const shown = await callApi<{
        summary: ObjectSummaryView; manifest: { objectId: string; presetName: string; presetVersion: number; objectCrc32c: number; compression: string; encryption: string; fragmentChecksum: string };
        fragments: Array<{ chunkIndex: number; fragmentIndex: number; hole?: boolean; kind?: string; asdId?: string; version?: number; packedSizeBytes?: number; address?: string | null; nodeId?: string | null; localDir?: string | null }>;
      }>(api(), "GET", `/api/v1/alba/namespaces/${encodeURIComponent(namespace)}/objects/${encodeURIComponent(name)}`);
      if (options.json) return printJson(shown);
      const { summary, manifest } = shown;
      process.stdout.write(`object     ${summary.name} (${formatBytes(summary.sizeBytes)}, id ${manifest.objectId}, crc32c ${manifest.objectCrc32c.toString(16).padStart(8, "0")})\n`);
      process.stdout.write(`preset     ${manifest.presetName} v${manifest.presetVersion}, policy (${summary.policy.k},${summary.policy.m},${summary.policy.c},${summary.policy.x})${summary.policyIndex > 0 ? " (fallback)" : ""}, ${manifest.compression}/${manifest.encryption}/${manifest.fragmentChecksum}\n`);
      process.stdout.write(`state      ${summary.degraded ? "degraded" : "ok"}: ${summary.fragmentCount} fragments, ${summary.holeCount} holes\n`);
      table(
        ["CHUNK", "FRAGMENT", "KIND", "ASD", "VERSION", "SIZE", "ADDRESS", "NODE", "LOCAL DIR"],
        shown.fragments.map((f) => f.hole
          ? [String(f.chunkIndex), String(f.fragmentIndex), "hole", "", "", "", "", "", ""]
          : [String(f.chunkIndex), String(f.fragmentIndex), f.kind!, f.asdId!, String(f.version), formatBytes(f.packedSizeBytes!), f.address ?? "?", f.nodeId ?? "?", f.localDir ?? ""]),
      );
    });

  const albaMaintenance = alba.command("maintenance").description("the maintenance agent of this node");

  albaMaintenance
    .command("status")
    .description("what maintenance is doing, what is queued, each ASD's health and the counters")
    .option("--json", "print JSON")
    .action(async (options: { json?: boolean }) => {
      const status = await callApi<MaintenanceView>(api(), "GET", "/api/v1/alba/maintenance");
      if (options.json) return printJson(status);
      printMaintenance(status);
    });

  albaMaintenance
    .command("run")
    .description("run one maintenance pass now (probe, repair, verifies, garbage collection, rebalance) as a task with a progress bar, then show the status")
    .option("--json", "print the final task as JSON (its result is the status)")
    .option("--no-wait", "print the task id and return at once")
    .action(async (options: { json?: boolean; wait: boolean }) => {
      const task = await runTask(api(), "POST", "/api/v1/alba/maintenance/pass", undefined, { json: options.json, wait: options.wait, printJson });
      if (task !== undefined) printMaintenance(task.result as MaintenanceView);
    });
}
