// Auth through the front door: a real `ovs up`, the real `ovs` CLI and plain HTTP. The first admin's
// generated password printed once, logins (password grant and client credentials), 401 without or with
// a bad or expired token, 403 for a missing role, 400 for bad input with nothing changed, user and client
// management, password changes ending tokens, the token endpoint's rate limit and the audit log.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fs from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import { RunningNode, expectOk, runOvs, tempDir } from "./platform.js";

let node: RunningNode;
let dataDir: string;
let configHome: string;

beforeAll(async () => {
  dataDir = await tempDir("ovs-auth-");
  configHome = await tempDir("ovs-auth-config-");
  node = await RunningNode.start(dataDir);
  expectOk(await node.ovs(["auth", "settings", "--token-requests-per-minute", "1000"]), "raise the token rate limit for this file");
});

afterAll(async () => {
  await node?.stop();
  await fsp.rm(dataDir, { recursive: true, force: true });
  await fsp.rm(configHome, { recursive: true, force: true });
});

/** The CLI as someone who has not logged in (own config dir, no OVS_TOKEN). */
function asNobody(args: string[], input?: string) {
  return node.ovs(args, 60_000, { env: { OVS_TOKEN: "", XDG_CONFIG_HOME: configHome }, input });
}

function asToken(token: string, args: string[]) {
  return node.ovs(args, 60_000, { env: { OVS_TOKEN: token } });
}

async function errorOf(response: Response): Promise<{ code: string; message: string }> {
  return ((await response.json()) as { error: { code: string; message: string } }).error;
}

async function tokenRequest(body: Record<string, string>, headers: Record<string, string> = {}, form = false): Promise<Response> {
  return fetch(`${node.apiUrl}/api/v1/oauth/token`, {
    method: "POST",
    headers: { "content-type": form ? "application/x-www-form-urlencoded" : "application/json", ...headers },
    body: form ? new URLSearchParams(body).toString() : JSON.stringify(body),
  });
}

describe("first admin", () => {
  it("prints a generated password once, at the first start only", async () => {
    expect(node.output).toMatch(/First start: created the user admin with password [A-Za-z0-9_-]{32}\n/);
    expect(node.output).toMatch(/shown only this once/);
    expect(node.adminPassword).toMatch(/^[A-Za-z0-9_-]{32}$/);
    const dir = await tempDir("ovs-auth-restart-");
    let again = await RunningNode.start(dir);
    try {
      const first = again.adminPassword;
      expect(first).not.toBe(node.adminPassword); // generated, not a fixed default
      const ports = { nbd: again.nbdPort, api: again.apiPort };
      expect(await again.stop()).toBe(0);
      again = await RunningNode.start(dir, ports);
      expect(again.output).not.toMatch(/password/);
      expect(again.token).not.toBe(""); // the remembered password still logs in
    } finally {
      await again.stop();
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });

  it("takes the first password from OVS_ADMIN_PASSWORD when set", async () => {
    const dir = await tempDir("ovs-auth-env-");
    const envNode = await RunningNode.start(dir, { nbd: 0, api: 0 }, [], "up", { OVS_ADMIN_PASSWORD: "correct horse battery" });
    try {
      expect(envNode.output).toMatch(/created the user admin with the password from OVS_ADMIN_PASSWORD/);
      expect(envNode.output).not.toMatch(/correct horse/);
      expect(envNode.token).toMatch(/^ovs_/);
    } finally {
      await envNode.stop();
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });
});

describe("authentication", () => {
  it("answers 401 without a token, with a bad one and with a malformed header, on every route but the public ones", async () => {
    for (const [method, route] of [["GET", "/api/v1/vdisks"], ["POST", "/api/v1/vdisks"], ["GET", "/api/v1/node"], ["GET", "/api/v1/users"], ["GET", "/api/v1/config"], ["GET", "/api/v1/no-such-route"]] as const) {
      const response = await node.fetch(route, { method, headers: { "content-type": "application/json" }, body: method === "POST" ? JSON.stringify({ name: "x", size: "1M" }) : undefined }, "");
      expect(response.status, `${method} ${route}`).toBe(401);
      expect(response.headers.get("www-authenticate")).toMatch(/^Bearer/);
      expect((await errorOf(response)).code).toBe("UNAUTHENTICATED");
    }
    expect((await node.fetch("/api/v1/vdisks", {}, "ovs_" + "A".repeat(43))).status).toBe(401);
    expect((await node.fetch("/api/v1/vdisks", {}, "nonsense")).status).toBe(401);
    expect((await node.fetch("/api/v1/vdisks", { headers: { authorization: "Basic YTpi" } })).status).toBe(401);
    const live = await fetch(`${node.apiUrl}/api/v1/health/live`);
    expect(live.status).toBe(200);
    expect(await live.json()).toEqual({ status: "ok" });
    const list = await node.fetch("/api/v1/vdisks");
    expect(await list.json()).toMatchObject({ vdisks: [], total: 0 }); // the refused POST created nothing
  });

  it("logs in with the CLI, keeps the token in a 0600 file and uses it; OVS_TOKEN overrides it", async () => {
    const before = await asNobody(["vdisk", "list"]);
    expect(before.exitCode).toBe(1);
    expect(before.stderr).toBe("ovs: not logged in: run `ovs login`.\n");
    const wrong = await asNobody(["login", "--user", "admin", "--password-stdin"], "not the password\n");
    expect(wrong.exitCode).toBe(1);
    expect(wrong.stderr).toBe("ovs: wrong user name or password.\n");
    const noTerminal = await asNobody(["login"]);
    expect(noTerminal.stderr).toMatch(/--password-stdin/);
    const login = await asNobody(["login", "--user", "admin", "--password-stdin"], `${node.adminPassword}\n`);
    expectOk(login, "login");
    expect(login.stdout).toMatch(/logged in to .* as admin \(roles read, write, manage\)/);
    const file = path.join(configHome, "openvstorage", "token");
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(fs.readFileSync(file, "utf8")).toMatch(/"token": "ovs_/);
    expectOk(await asNobody(["vdisk", "list"]), "list with the stored token");
    expect((await asNobody(["whoami"])).stdout).toBe("user admin (roles read, write, manage)\n");
    const overridden = await node.ovs(["vdisk", "list"], 60_000, { env: { OVS_TOKEN: "ovs_" + "B".repeat(43), XDG_CONFIG_HOME: configHome } });
    expect(overridden.stderr).toBe("ovs: not logged in: run `ovs login`.\n");
    expectOk(await asNobody(["logout"]), "logout");
    expect((await asNobody(["vdisk", "list"])).stderr).toBe("ovs: not logged in: run `ovs login`.\n");
  });

  it("expires tokens after the configured lifetime", async () => {
    expectOk(await node.ovs(["auth", "settings", "--user-token-ttl", "4"]), "short lifetime");
    try {
      const login = await asNobody(["login", "--password-stdin"], node.adminPassword);
      expectOk(login, "login");
      expectOk(await asNobody(["vdisk", "list"]), "list while valid");
      await new Promise((resolve) => setTimeout(resolve, 4000));
      const expired = await asNobody(["vdisk", "list"]);
      expect(expired.exitCode).toBe(1);
      expect(expired.stderr).toBe("ovs: your login has expired: run `ovs login`.\n");
      const token = await node.login("admin", node.adminPassword);
      await new Promise((resolve) => setTimeout(resolve, 4000));
      const response = await node.fetch("/api/v1/vdisks", {}, token);
      expect(response.status).toBe(401);
      expect((await errorOf(response)).message).toMatch(/expired/);
    } finally {
      expectOk(await node.ovs(["auth", "settings", "--user-token-ttl", "43200"]), "restore the lifetime");
    }
  });
});

describe("roles", () => {
  it("refuses a missing role with 403 and changes nothing", async () => {
    expectOk(await node.ovs(["user", "create", "viewer", "--role", "read", "--password-stdin"], 60_000, { input: "viewer-password\n" }), "create viewer");
    expectOk(await node.ovs(["user", "create", "writer", "--role", "write", "--password-stdin"], 60_000, { input: "writer-password\n" }), "create writer");
    const viewer = await node.login("viewer", "viewer-password");
    const writer = await node.login("writer", "writer-password");
    const refused = await asToken(viewer, ["vdisk", "create", "v1", "--size", "1M"]);
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toBe("ovs: role write required (user viewer has read).\n");
    expectOk(await asToken(viewer, ["vdisk", "list"]), "viewer lists");
    expect((await asToken(viewer, ["vdisk", "list", "--json"])).stdout).toBe("[]\n");
    expectOk(await asToken(writer, ["vdisk", "create", "w1", "--size", "1M"]), "writer creates");
    expect((await asToken(writer, ["user", "list"])).stderr).toBe("ovs: role manage required (user writer has read, write).\n");
    expect((await asToken(writer, ["config", "list"])).stderr).toMatch(/role manage required/);
    const viaHttp = await node.fetch("/api/v1/users", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ username: "sneaky", role: "manage" }) }, writer);
    expect(viaHttp.status).toBe(403);
    expect((await errorOf(viaHttp)).code).toBe("FORBIDDEN");
    expect((await node.ovs(["user", "list", "--json"])).stdout).not.toMatch(/sneaky/);
    expectOk(await asToken(writer, ["vdisk", "delete", "w1"]), "writer deletes");
  });

  it("validates input: 400 naming the field, nothing changed", async () => {
    const before = (await node.ovs(["user", "list", "--json"])).stdout;
    const post = (body: unknown) => node.fetch("/api/v1/users", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    for (const [body, field] of [
      [{ username: "u1", role: "admin" }, /role/],
      [{ username: "u1", role: "read", password: "short" }, /password/],
      [{ username: "bad name", role: "read" }, /username/],
      [{ username: "u1", role: "read", extra: true }, /"extra"/],
      [{ role: "read" }, /"username"/],
    ] as const) {
      const response = await post(body);
      expect(response.status, JSON.stringify(body)).toBe(400);
      const error = await errorOf(response);
      expect(error.code).toBe("INVALID_ARGUMENT");
      expect(error.message).toMatch(field);
    }
    const badGrant = await tokenRequest({ grant_type: "implicit" });
    expect(badGrant.status).toBe(400);
    expect((await errorOf(badGrant)).message).toMatch(/grant_type/);
    expect((await node.ovs(["user", "list", "--json"])).stdout).toBe(before);
    const cli = await node.ovs(["user", "create", "u2", "--role", "owner"]);
    expect(cli.exitCode).not.toBe(0);
    expect(cli.stderr).toMatch(/a role is read, write or manage/);
  });
});

describe("users and clients", () => {
  it("changes passwords (own with read, others with manage) and ends the old tokens", async () => {
    const token = await node.login("viewer", "viewer-password");
    const other = await node.ovs(["user", "passwd", "writer", "--password-stdin"], 60_000, { env: { OVS_TOKEN: token }, input: "whatever-password\n" });
    expect(other.stderr).toBe("ovs: role manage required to change another user's password.\n");
    const own = await node.ovs(["user", "passwd", "viewer", "--password-stdin"], 60_000, { env: { OVS_TOKEN: token }, input: "viewer-password-2\n" });
    expectOk(own, "own password");
    const old = await asToken(token, ["vdisk", "list"]);
    expect(old.stderr).toMatch(/^ovs: the bearer token is no longer valid .*run `ovs login`\.\n$/);
    await expect(node.login("viewer", "viewer-password")).rejects.toThrow(/401/);
    expect(await node.login("viewer", "viewer-password-2")).toMatch(/^ovs_/);
  });

  it("creates, lists and deletes users; the last manager stays", async () => {
    const created = await node.ovs(["user", "create", "temp", "--role", "write", "--json"]);
    expectOk(created, "create with a generated password");
    const { password } = JSON.parse(created.stdout) as { password: string };
    const token = await node.login("temp", password);
    const list = await node.ovs(["user", "list"]);
    expect(list.stdout).toMatch(/^NAME\s+ROLES\s+CREATED\n/);
    expect(list.stdout).toMatch(/\ntemp\s+read,write\s+/);
    const duplicate = await node.ovs(["user", "create", "temp", "--role", "read"]);
    expect(duplicate.stderr).toBe("ovs: a user named temp already exists.\n");
    expectOk(await node.ovs(["user", "delete", "temp"]), "delete");
    expect((await node.fetch("/api/v1/vdisks", {}, token)).status).toBe(401); // its token ended with it
    expect((await node.ovs(["user", "delete", "temp"])).stderr).toBe("ovs: there is no user named temp.\n");
    const last = await node.ovs(["user", "delete", "admin"]);
    expect(last.stderr).toBe("ovs: admin is the last user with role manage; create another manager first.\n");
    expectOk(await node.ovs(["vdisk", "list"]), "admin still works");
  });

  it("issues tokens to clients (client_credentials, body or HTTP Basic, JSON or form) and narrows them by scope", async () => {
    const created = await node.ovs(["client", "create", "backup-tool", "--role", "write", "--json"]);
    expectOk(created, "client create");
    const { clientSecret } = JSON.parse(created.stdout) as { clientSecret: string };
    expect(clientSecret).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect((await node.ovs(["client", "list"])).stdout).toMatch(/\nbackup-tool\s+read,write\s+/);
    const inBody = await tokenRequest({ grant_type: "client_credentials", client_id: "backup-tool", client_secret: clientSecret });
    expect(inBody.status).toBe(200);
    const issued = (await inBody.json()) as { access_token: string; token_type: string; expires_in: number; scope: string };
    expect(issued).toMatchObject({ token_type: "Bearer", expires_in: 3600, scope: "read write" });
    expectOk(await asToken(issued.access_token, ["vdisk", "create", "c1", "--size", "1M"]), "client writes");
    const basic = Buffer.from(`backup-tool:${clientSecret}`).toString("base64");
    const form = await tokenRequest({ grant_type: "client_credentials", scope: "read" }, { authorization: `Basic ${basic}` }, true);
    expect(form.status).toBe(200);
    const readOnly = ((await form.json()) as { access_token: string; scope: string });
    expect(readOnly.scope).toBe("read");
    expect((await asToken(readOnly.access_token, ["vdisk", "delete", "c1"])).stderr).toBe("ovs: role write required (client backup-tool has read).\n");
    const wrong = await tokenRequest({ grant_type: "client_credentials", client_id: "backup-tool", client_secret: "x".repeat(32) });
    expect(wrong.status).toBe(401);
    expect((await errorOf(wrong)).message).toBe("wrong client id or client secret.");
    const password = await tokenRequest({ grant_type: "password", username: "admin", password: node.adminPassword }, {}, true);
    expect(password.status).toBe(200);
    expectOk(await node.ovs(["client", "delete", "backup-tool"]), "client delete");
    expect((await node.fetch("/api/v1/vdisks", {}, issued.access_token)).status).toBe(401);
    expectOk(await node.ovs(["vdisk", "delete", "c1"]), "cleanup");
  });
});

describe("token endpoint limits and the audit log", () => {
  it("rate-limits token requests per remote address", async () => {
    expectOk(await node.ovs(["auth", "settings", "--token-requests-per-minute", "2"]), "limit 2");
    try {
      // The window of this minute may already hold requests of the tests above: go until refused.
      let refused: Response | undefined;
      for (let attempt = 0; attempt < 5 && refused === undefined; attempt++) {
        const response = await tokenRequest({ grant_type: "password", username: "admin", password: node.adminPassword });
        if (response.status === 429) refused = response;
        else expect(response.status).toBe(200);
      }
      expect(refused).toBeDefined();
      expect(Number(refused!.headers.get("retry-after"))).toBeGreaterThan(0);
      const error = await errorOf(refused!);
      expect(error.code).toBe("RATE_LIMITED");
      expect(error.message).toMatch(/too many token requests from 127\.0\.0\.1/);
      const cli = await asNobody(["login", "--password-stdin"], node.adminPassword);
      expect(cli.stderr).toMatch(/^ovs: too many token requests/);
      expectOk(await node.ovs(["vdisk", "list"]), "other routes are not limited");
    } finally {
      expectOk(await node.ovs(["auth", "settings", "--token-requests-per-minute", "1000"]), "restore");
    }
    expect((await tokenRequest({ grant_type: "password", username: "admin", password: node.adminPassword })).status).toBe(200);
  });

  it("records every change with method, route, subject, status and time, and never a secret", async () => {
    const viewer = await node.login("viewer", "viewer-password-2");
    await node.fetch("/api/v1/vdisks", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name: "audited", size: "1M" }) }, viewer);
    expectOk(await node.ovs(["vdisk", "create", "audited", "--size", "1M"]), "create");
    await new Promise((resolve) => setTimeout(resolve, 200));
    const text = await fsp.readFile(path.join(dataDir, "audit.log"), "utf8");
    const entries = text.trim().split("\n").map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(entries.find((e) => e.subject === "user:viewer" && e.route === "/api/v1/vdisks" && e.method === "POST")).toMatchObject({ status: 403 });
    expect(entries.find((e) => e.subject === "user:admin" && e.route === "/api/v1/vdisks" && e.method === "POST" && e.status === 201)).toMatchObject({ target: "audited" });
    expect(entries.find((e) => e.route === "/api/v1/users/:username/password" && e.status === 204)).toMatchObject({ method: "PUT", subject: "user:viewer" });
    expect(entries.some((e) => e.route === "/api/v1/oauth/token" && e.status === 401)).toBe(true);
    expect(entries.some((e) => e.method === "GET")).toBe(false);
    for (const entry of entries) expect(typeof entry.time === "string" && !Number.isNaN(Date.parse(entry.time))).toBe(true);
    expect(text).not.toContain(node.adminPassword);
    expect(text).not.toContain("viewer-password");
    expect(text).not.toContain("ovs_");
  });
});

describe("the CLI without a node", () => {
  it("names the way to log in even when the token file is missing", async () => {
    const result = await runOvs(["--api", node.apiUrl, "user", "list"], { env: { XDG_CONFIG_HOME: path.join(configHome, "none") } });
    expect(result.stderr).toBe("ovs: not logged in: run `ovs login`.\n");
  });
});
