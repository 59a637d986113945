// `ovs storagerouter|vpool|backend|domain ...` and `ovs vdisk restart`: the management model's commands
// over /api/v1 (storagerouters, vpools, backends, domains). Every command takes --json; errors are one
// sentence and a non-zero exit (main.ts prints them). Changes take --expect-version N to refuse a stale change
// (409 CONFLICT) instead of applying it over someone else's. Imported by main.ts only.

import { InvalidArgumentError, type Command } from "commander";
import { formatBytes } from "../base/index.js";
import { CliError, callApi } from "./api-client.js";
import { sizeOption } from "./alba-commands.js";
import { runTask } from "./task-commands.js";

interface StorageRouterView {
  id: string; name: string; ip: string; ports: { nbd: number; api: number }; status: string; alive: boolean; lastHeartbeat: string | null;
  backend: { kind: string; backendId?: string; storageRouterId?: string }; defaultVPool: string; domains: string[]; vpools: string[]; vdiskCount: number; version: number;
}

interface VPoolView {
  name: string; backendName: string; preset?: string; status: string; version: number; writeBufferBytes: number; vdiskCount: number;
  settings: { scoSizeBytes: number; tlogMultiplier: number; scoCacheMaxBytes: number; cacheMode: string };
  storageDrivers: Array<{ storageRouterId: string; status: string }>;
}

interface PolicySafetyView {
  k: number; m: number; c: number; x: number; satisfiable: boolean; fragmentsPlaced: number; asdFailuresTolerated: number; nodeFailuresTolerated: number; domainFailuresTolerated: number | null;
}

interface BackendView {
  name: string; kind: string; storageRouters: string[]; vpools: string[];
  usage?: { capacityBytes: number; usedBytes: number; freeBytes: number } | null;
  presets?: Array<{ name: string; isDefault: boolean; compression: string; encryption: string; policies: PolicySafetyView[] }>;
  asdNodes?: Array<{ nodeId: string; asdCount: number; capacityBytes: number; usedBytes: number }>;
  asds?: Array<{ asdId: string; nodeId: string; host: string; port: number; state: string; health: string; domain: string | null; capacityBytes: number; usedBytes: number }>;
}

interface DomainView {
  name: string; version: number; createdAt: string; storageRouters: string[]; asds: string[];
}

function table(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const row of [header, ...rows]) process.stdout.write(row.map((cell, i) => cell.padEnd(widths[i]!)).join("  ").trimEnd() + "\n");
}

function rows(pairs: Array<[string, string]>): void {
  for (const [key, value] of pairs) process.stdout.write(`${key.padEnd(16)}${value}\n`);
}

function versionOption(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 1) throw new InvalidArgumentError("a version is a whole number from 1 (see --json output).");
  return Number(value);
}

function integerOption(value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError("give a whole number.");
  return Number(value);
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

const path = (...parts: string[]): string => parts.map((part) => encodeURIComponent(part)).join("/");

function printRouter(router: StorageRouterView): void {
  rows([
    ["id", router.id],
    ["address", `${router.ip} (API ${router.ports.api}, NBD ${router.ports.nbd})`],
    ["status", `${router.status}${router.alive ? "" : " (no recent heartbeat)"}`],
    ["last heartbeat", router.lastHeartbeat ?? "never"],
    ["backend", router.backend.kind === "alba" ? router.backend.backendId! : `local-${router.backend.storageRouterId!}`],
    ["default vPool", router.defaultVPool],
    ["vPools", router.vpools.join(", ") || "none"],
    ["domains", router.domains.join(", ") || "none"],
    ["vDisks", String(router.vdiskCount)],
    ["version", String(router.version)],
  ]);
}

function printVPool(pool: VPoolView): void {
  rows([
    ["name", pool.name],
    ["backend", `${pool.backendName}${pool.preset ? `, preset ${pool.preset}` : ""}`],
    ["status", pool.status],
    ["SCO size", formatBytes(pool.settings.scoSizeBytes)],
    ["TLog multiplier", String(pool.settings.tlogMultiplier)],
    ["write buffer", formatBytes(pool.writeBufferBytes)],
    ["SCO cache cap", pool.settings.scoCacheMaxBytes === 0 ? "none" : formatBytes(pool.settings.scoCacheMaxBytes)],
    ["cache mode", pool.settings.cacheMode],
    ["storage routers", pool.storageDrivers.map((d) => `${d.storageRouterId}${d.status === "running" ? "" : ` (${d.status})`}`).join(", ") || "none"],
    ["vDisks", String(pool.vdiskCount)],
    ["version", String(pool.version)],
  ]);
}

function printBackend(backend: BackendView): void {
  rows([
    ["name", backend.name],
    ["kind", backend.kind],
    ["storage routers", backend.storageRouters.join(", ") || "none"],
    ["vPools", backend.vpools.join(", ") || "none"],
    ["usage", backend.usage ? `${formatBytes(backend.usage.usedBytes)} used, ${formatBytes(backend.usage.freeBytes)} free of ${formatBytes(backend.usage.capacityBytes)}` : "unknown (ask the node that runs it)"],
  ]);
  for (const preset of backend.presets ?? []) {
    process.stdout.write(`\npreset ${preset.name}${preset.isDefault ? " (default)" : ""}: compression ${preset.compression}, encryption ${preset.encryption}\n`);
    table(
      ["POLICY", "WRITES", "FRAGMENTS", "ASD FAILURES OK", "NODE FAILURES OK", "DOMAIN FAILURES OK"],
      preset.policies.map((p) => [`(${p.k},${p.m},${p.c},${p.x})`, p.satisfiable ? "yes" : "no", String(p.fragmentsPlaced), String(p.asdFailuresTolerated), String(p.nodeFailuresTolerated), p.domainFailuresTolerated === null ? "-" : String(p.domainFailuresTolerated)]),
    );
  }
  if (backend.asds && backend.asds.length > 0) {
    process.stdout.write("\n");
    table(["ASD", "NODE", "ADDRESS", "STATE", "HEALTH", "DOMAIN", "USED", "CAPACITY"], backend.asds.map((a) => [a.asdId, a.nodeId, `${a.host}:${a.port}`, a.state, a.health, a.domain ?? "-", formatBytes(a.usedBytes), formatBytes(a.capacityBytes)]));
  }
}

export function registerModelCommands(program: Command, context: { api: () => string; printJson: (value: unknown) => void }): void {
  const { api, printJson } = context;

  // ---- storage routers ----
  const router = program.command("storagerouter").description("storage routers (the nodes): list, show, mark offline");
  router
    .command("list")
    .description("every storage router with its status and heartbeat")
    .option("--json", "print JSON")
    .action(async (options: { json?: boolean }) => {
      const { storageRouters } = await callApi<{ storageRouters: StorageRouterView[] }>(api(), "GET", "/api/v1/storagerouters");
      if (options.json) return printJson(storageRouters);
      table(["ID", "ADDRESS", "STATUS", "HEARTBEAT", "VPOOLS", "VDISKS"], storageRouters.map((r) => [r.id, `${r.ip}:${r.ports.api}`, r.status, r.alive ? "recent" : "missing", r.vpools.join(",") || "-", String(r.vdiskCount)]));
    });
  router
    .command("show <id>")
    .description("one storage router")
    .option("--json", "print JSON")
    .action(async (id: string, options: { json?: boolean }) => {
      const view = await callApi<StorageRouterView>(api(), "GET", `/api/v1/storagerouters/${path(id)}`);
      if (options.json) printJson(view);
      else printRouter(view);
    });
  router
    .command("offline <id>")
    .description("mark a storage router offline (it marks itself online when it starts again)")
    .option("--expect-version <n>", "refuse if the storage router changed since this version", versionOption)
    .option("--json", "print JSON")
    .action(async (id: string, options: { expectVersion?: number; json?: boolean }) => {
      const view = await callApi<StorageRouterView>(api(), "POST", `/api/v1/storagerouters/${path(id)}/offline`, options.expectVersion === undefined ? {} : { version: options.expectVersion });
      if (options.json) printJson(view);
      else process.stdout.write(`storage router ${id} is marked offline\n`);
    });

  // ---- vPools ----
  const vpool = program.command("vpool").description("vPools: a backend (and preset) with the defaults of its vDisks, on one or more storage routers");
  vpool
    .command("list")
    .description("every vPool")
    .option("--json", "print JSON")
    .action(async (options: { json?: boolean }) => {
      const { vpools } = await callApi<{ vpools: VPoolView[] }>(api(), "GET", "/api/v1/vpools");
      if (options.json) return printJson(vpools);
      table(["NAME", "BACKEND", "PRESET", "STATUS", "STORAGE ROUTERS", "VDISKS"], vpools.map((p) => [p.name, p.backendName, p.preset ?? "-", p.status, p.storageDrivers.map((d) => d.storageRouterId).join(",") || "-", String(p.vdiskCount)]));
    });
  vpool
    .command("show <name>")
    .description("one vPool")
    .option("--json", "print JSON")
    .action(async (name: string, options: { json?: boolean }) => {
      const view = await callApi<VPoolView>(api(), "GET", `/api/v1/vpools/${path(name)}`);
      if (options.json) printJson(view);
      else printVPool(view);
    });
  vpool
    .command("create <name>")
    .description("create a vPool on a backend and preset (default: this node's backend and its default preset)")
    .option("--backend <name>", "a backend from `ovs backend list`")
    .option("--preset <name>", "ALBA preset of its vDisks")
    .option("--storagerouter <id>", "a storage router to put it on (repeatable; default: the node you talk to)", collect)
    .option("--sco-size <size>", "SCO size of its vDisks, 1M to 128M (default 4M)", sizeOption)
    .option("--tlog-multiplier <n>", "SCOs per TLog (default 16)", integerOption)
    .option("--write-buffer <size>", "write buffer per vDisk; sets the TLog multiplier (write buffer / 1.5 / SCO size)", sizeOption)
    .option("--sco-cache-max <size>", "cap on a vDisk's local SCO bytes once on the backend (0 = none)", sizeOption)
    .option("--cache-mode <mode>", "the read cache mode of new vDisks: cache-on-read (default), cache-on-write or none")
    .option("--json", "print JSON")
    .action(async (name: string, options: { backend?: string; preset?: string; storagerouter?: string[]; scoSize?: string; tlogMultiplier?: number; writeBuffer?: string; scoCacheMax?: string; cacheMode?: string; json?: boolean }) => {
      const body = {
        name,
        ...(options.backend ? { backend: options.backend } : {}),
        ...(options.preset ? { preset: options.preset } : {}),
        ...(options.storagerouter ? { storageRouters: options.storagerouter } : {}),
        ...(options.scoSize ? { scoSize: options.scoSize } : {}),
        ...(options.tlogMultiplier !== undefined ? { tlogMultiplier: options.tlogMultiplier } : {}),
        ...(options.writeBuffer ? { writeBuffer: options.writeBuffer } : {}),
        ...(options.scoCacheMax ? { scoCacheMax: options.scoCacheMax } : {}),
        ...(options.cacheMode ? { cacheMode: options.cacheMode } : {}),
      };
      const view = await callApi<VPoolView>(api(), "POST", "/api/v1/vpools", body);
      if (options.json) printJson(view);
      else process.stdout.write(`created vPool ${view.name} on backend ${view.backendName}${view.preset ? ` (preset ${view.preset})` : ""}\n`);
    });
  vpool
    .command("set <name>")
    .description("change the defaults new vDisks of a vPool get (existing vDisks keep theirs)")
    .option("--sco-size <size>", "SCO size, 1M to 128M", sizeOption)
    .option("--tlog-multiplier <n>", "SCOs per TLog", integerOption)
    .option("--write-buffer <size>", "write buffer per vDisk; sets the TLog multiplier", sizeOption)
    .option("--sco-cache-max <size>", "cap on a vDisk's local SCO bytes once on the backend (0 = none)", sizeOption)
    .option("--cache-mode <mode>", "the read cache mode of new vDisks: cache-on-read (default), cache-on-write or none")
    .option("--expect-version <n>", "refuse if the vPool changed since this version", versionOption)
    .option("--json", "print JSON")
    .action(async (name: string, options: { scoSize?: string; tlogMultiplier?: number; writeBuffer?: string; scoCacheMax?: string; cacheMode?: string; expectVersion?: number; json?: boolean }) => {
      const body = {
        ...(options.scoSize ? { scoSize: options.scoSize } : {}),
        ...(options.tlogMultiplier !== undefined ? { tlogMultiplier: options.tlogMultiplier } : {}),
        ...(options.writeBuffer ? { writeBuffer: options.writeBuffer } : {}),
        ...(options.scoCacheMax ? { scoCacheMax: options.scoCacheMax } : {}),
        ...(options.cacheMode ? { cacheMode: options.cacheMode } : {}),
      };
      if (Object.keys(body).length === 0) throw new CliError("give at least one setting to change, e.g. --cache-mode none.");
      const view = await callApi<VPoolView>(api(), "PATCH", `/api/v1/vpools/${path(name)}`, { ...body, ...(options.expectVersion === undefined ? {} : { version: options.expectVersion }) });
      if (options.json) printJson(view);
      else printVPool(view);
    });
  for (const [action, description, done] of [
    ["extend", "put a vPool on a storage router, which can then create its vDisks", "extended vPool %s to storage router %s"],
    ["shrink", "take a vPool off a storage router (refused while it serves vDisks of the vPool)", "removed vPool %s from storage router %s"],
  ] as const) {
    vpool
      .command(`${action} <name> <storagerouter>`)
      .description(description)
      .option("--expect-version <n>", "refuse if the vPool changed since this version", versionOption)
      .option("--json", "print JSON")
      .action(async (name: string, storageRouter: string, options: { expectVersion?: number; json?: boolean }) => {
        const view = await callApi<VPoolView>(api(), "POST", `/api/v1/vpools/${path(name)}/${action}`, { storageRouter, ...(options.expectVersion === undefined ? {} : { version: options.expectVersion }) });
        if (options.json) printJson(view);
        else process.stdout.write(done.replace("%s", name).replace("%s", storageRouter) + "\n");
      });
  }
  vpool
    .command("delete <name>")
    .description("delete an empty vPool (refused while it has vDisks)")
    .option("--expect-version <n>", "refuse if the vPool changed since this version", versionOption)
    .action(async (name: string, options: { expectVersion?: number }) => {
      await callApi(api(), "DELETE", `/api/v1/vpools/${path(name)}${options.expectVersion === undefined ? "" : `?version=${options.expectVersion}`}`);
      process.stdout.write(`deleted vPool ${name}\n`);
    });

  // ---- backends ----
  const backend = program.command("backend").description("backends: usage, presets with the safety of each policy, ASD nodes and ASDs");
  backend
    .command("list")
    .description("every backend")
    .option("--json", "print JSON")
    .action(async (options: { json?: boolean }) => {
      const { backends } = await callApi<{ backends: BackendView[] }>(api(), "GET", "/api/v1/backends");
      if (options.json) return printJson(backends);
      table(["NAME", "KIND", "STORAGE ROUTERS", "VPOOLS"], backends.map((b) => [b.name, b.kind, b.storageRouters.join(",") || "-", b.vpools.join(",") || "-"]));
    });
  backend
    .command("show <name>")
    .description("a backend with its usage, presets (how many ASDs, nodes and domains each policy survives) and ASDs")
    .option("--json", "print JSON")
    .action(async (name: string, options: { json?: boolean }) => {
      const view = await callApi<BackendView>(api(), "GET", `/api/v1/backends/${path(name)}`);
      if (options.json) printJson(view);
      else printBackend(view);
    });

  // ---- domains ----
  const domain = program.command("domain").description("domains: groups of storage routers and ASDs (failure domains)");
  domain
    .command("list")
    .description("every domain with its storage routers and ASDs")
    .option("--json", "print JSON")
    .action(async (options: { json?: boolean }) => {
      const { domains } = await callApi<{ domains: DomainView[] }>(api(), "GET", "/api/v1/domains");
      if (options.json) return printJson(domains);
      if (domains.length === 0) return void process.stdout.write("no domains (create one with: ovs domain create NAME)\n");
      table(["NAME", "STORAGE ROUTERS", "ASDS", "VERSION"], domains.map((d) => [d.name, d.storageRouters.join(",") || "-", String(d.asds.length), String(d.version)]));
    });
  domain
    .command("show <name>")
    .description("one domain: its storage routers and ASDs")
    .option("--json", "print JSON")
    .action(async (name: string, options: { json?: boolean }) => {
      const view = await callApi<DomainView>(api(), "GET", `/api/v1/domains/${path(name)}`);
      if (options.json) return printJson(view);
      rows([
        ["name", view.name],
        ["storage routers", view.storageRouters.join(", ") || "none"],
        ["ASDs", view.asds.join(", ") || "none"],
        ["created", view.createdAt],
        ["version", String(view.version)],
      ]);
    });
  domain
    .command("create <name>")
    .description("create a domain")
    .option("--json", "print JSON")
    .action(async (name: string, options: { json?: boolean }) => {
      const view = await callApi<DomainView>(api(), "POST", "/api/v1/domains", { name });
      if (options.json) printJson(view);
      else process.stdout.write(`created domain ${view.name}\n`);
    });
  domain
    .command("delete <name>")
    .description("delete a domain (refused while storage routers or ASDs are in it)")
    .option("--expect-version <n>", "refuse if the domain changed since this version", versionOption)
    .action(async (name: string, options: { expectVersion?: number }) => {
      await callApi(api(), "DELETE", `/api/v1/domains/${path(name)}${options.expectVersion === undefined ? "" : `?version=${options.expectVersion}`}`);
      process.stdout.write(`deleted domain ${name}\n`);
    });
  domain
    .command("assign <name>")
    .description("put storage routers and ASDs in a domain (--unassign takes them out)")
    .option("--storagerouter <id>", "a storage router (repeatable)", collect)
    .option("--asd <id>", "an ASD id (repeatable; see ovs backend show)", collect)
    .option("--unassign", "take them out of the domain instead")
    .option("--expect-version <n>", "refuse if the domain changed since this version", versionOption)
    .option("--json", "print JSON")
    .action(async (name: string, options: { storagerouter?: string[]; asd?: string[]; unassign?: boolean; expectVersion?: number; json?: boolean }) => {
      if (!options.storagerouter && !options.asd) throw new CliError("name at least one --storagerouter ID or --asd ID.");
      const body = { ...(options.storagerouter ? { storageRouters: options.storagerouter } : {}), ...(options.asd ? { asds: options.asd } : {}), ...(options.expectVersion === undefined ? {} : { version: options.expectVersion }) };
      const view = await callApi<DomainView>(api(), "POST", `/api/v1/domains/${path(name)}/${options.unassign ? "unassign" : "assign"}`, body);
      if (options.json) return printJson(view);
      process.stdout.write(`domain ${name}: storage routers ${view.storageRouters.join(", ") || "none"}; ${view.asds.length} ASD${view.asds.length === 1 ? "" : "s"}\n`);
    });

  // ---- vdisk restart ----
  const vdisk = program.commands.find((command) => command.name() === "vdisk");
  if (vdisk === undefined) throw new Error("register the vdisk command before the model commands");
  vdisk
    .command("restart <name>")
    .description("restart a vDisk's volume, e.g. after a halt (refused while NBD clients are connected, unless --force); shows the task's progress")
    .option("--force", "disconnect NBD clients first")
    .option("--json", "print the final task as JSON (its result is the vDisk)")
    .option("--no-wait", "print the task id and return at once")
    .action(async (name: string, options: { force?: boolean; json?: boolean; wait: boolean }) => {
      const task = await runTask(api(), "POST", `/api/v1/vdisks/${path(name)}/restart`, options.force ? { force: true } : {}, { json: options.json, wait: options.wait, printJson });
      if (task === undefined) return;
      const info = task.result as { name: string; state: string };
      process.stdout.write(`restarted vDisk ${info.name} (${info.state})\n`);
    });
}
