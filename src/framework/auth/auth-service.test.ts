// AuthService on a real embedded store with a controllable clock, and the golden vectors of
// docs/formats/auth-keys.md (scrypt record, token key). The HTTP and CLI sides are in tests/auth.test.ts.

import { afterEach, beforeEach, describe, expect, it } from "vitest";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { EmbeddedStore } from "../../store/index.js";
import { silentLogger } from "../../base/index.js";
import { AuthService, expiredTokenKeepMs, tokenHash, type UserRecord, type TokenRecord } from "./auth-service.js";
import { hashPassword, verifyPassword } from "./passwords.js";
import { RateLimiter } from "./rate-limiter.js";

let dir: string;
let store: EmbeddedStore;
let nowMs: number;
let auth: AuthService;

beforeEach(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), "ovs-auth-unit-"));
  store = await EmbeddedStore.open({ dir });
  nowMs = Date.UTC(2026, 10, 26, 12, 0, 0);
  auth = new AuthService({ store, log: silentLogger(), now: () => nowMs });
});

afterEach(async () => {
  await store.close();
  await fsp.rm(dir, { recursive: true, force: true });
});

describe("golden vectors (docs/formats/auth-keys.md)", () => {
  it("hashes a password with scrypt N=32768 r=8 p=1 into the documented record", async () => {
    const record = await hashPassword("correct horse battery", Buffer.from("000102030405060708090a0b0c0d0e0f", "hex"));
    expect(record).toEqual({
      algorithm: "scrypt", N: 32768, r: 8, p: 1, keyLengthBytes: 32,
      salt: "AAECAwQFBgcICQoLDA0ODw==",
      hash: "xy6UCICz8Vv/P6JqOkkUD4DOmhxN0tXSe6sQAUBxupQ=",
    });
    expect(await verifyPassword("correct horse battery", record)).toBe(true);
    expect(await verifyPassword("correct horse batterY", record)).toBe(false);
  });

  it("keys a token by the hex SHA-256 of its text", () => {
    expect(tokenHash("ovs_" + "A".repeat(43))).toBe("0eb09c684398dc35f69a97aa4800875d8658ebb69955f5e75b7d676f51a80830");
  });

  it("refuses stored parameters out of bounds instead of allocating for them", async () => {
    const record = await hashPassword("correct horse battery");
    await expect(verifyPassword("x", { ...record, N: 1 << 24 })).rejects.toThrow(/out of bounds/);
    await expect(verifyPassword("x", { ...record, N: 1000 })).rejects.toThrow(/out of bounds/);
  });
});

describe("AuthService", () => {
  it("creates the first admin once per cluster and stores only hashes", async () => {
    const first = await auth.bootstrap();
    expect(first).toMatchObject({ username: "admin", generated: true });
    expect(await auth.bootstrap()).toBeUndefined();
    expect(await new AuthService({ store, log: silentLogger() }).bootstrap("another password")).toBeUndefined();
    const record = JSON.parse((await store.get("ovs/auth/users/admin"))!.toString()) as UserRecord;
    expect(record).toMatchObject({ username: "admin", roles: ["read", "write", "manage"], tokenGeneration: 0, password: { algorithm: "scrypt", N: 32768 } });
    expect(JSON.stringify(record)).not.toContain(first!.password);
    const issued = await auth.issueForPassword("admin", first!.password);
    const key = `ovs/auth/tokens/${tokenHash(issued.access_token)}`;
    const token = JSON.parse((await store.get(key))!.toString()) as TokenRecord;
    expect(token).toEqual({ kind: "user", name: "admin", tokenGeneration: 0, scope: ["read", "write", "manage"], issuedAt: "2026-11-26T12:00:00.000Z", expiresAtMs: nowMs + 12 * 3600 * 1000 });
    const all = await store.prefix("", { limit: 100 });
    for (const entry of all.entries) expect(entry.value.toString()).not.toContain(issued.access_token);
  });

  it("expires tokens by the clock and sweeps them", async () => {
    await auth.bootstrap("admin password");
    await auth.setSettings({ userTokenTtlSeconds: 60 });
    const { access_token } = await auth.issueForPassword("admin", "admin password");
    nowMs += 59_999;
    expect(await auth.authenticate(access_token)).toEqual({ kind: "user", name: "admin", roles: ["read", "write", "manage"] });
    nowMs += 1;
    await expect(auth.authenticate(access_token)).rejects.toThrow(/expired/);
    await expect(auth.authenticate(access_token)).rejects.toThrow(/expired/); // still said an hour later
    const second = await auth.issueForPassword("admin", "admin password");
    const third = await auth.issueForPassword("admin", "admin password");
    nowMs += 60_000 + expiredTokenKeepMs - 1;
    expect(await auth.sweepExpiredTokens()).toBe(1); // the first one only
    nowMs += 1;
    expect(await auth.sweepExpiredTokens()).toBe(2);
    await expect(auth.authenticate(second.access_token)).rejects.toThrow(/not valid/);
    await expect(auth.authenticate(third.access_token)).rejects.toThrow(/not valid/);
  });

  it("keeps the last manager, also against two concurrent deletes", async () => {
    await auth.bootstrap("admin password");
    await expect(auth.deleteUser("admin")).rejects.toThrow(/last user with role manage/);
    await auth.createUser("second", "second password", "manage");
    const results = await Promise.allSettled([auth.deleteUser("admin"), auth.deleteUser("second")]);
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    expect((await auth.listUsers()).filter((u) => u.roles.includes("manage"))).toHaveLength(1);
  });

  it("never loses one of two concurrent password changes silently", async () => {
    await auth.bootstrap("admin password");
    const results = await Promise.allSettled([auth.setPassword("admin", "password one"), auth.setPassword("admin", "password two")]);
    const applied = results.filter((r) => r.status === "fulfilled").length;
    for (const result of results) if (result.status === "rejected") expect(String(result.reason)).toMatch(/changed meanwhile/);
    const record = JSON.parse((await store.get("ovs/auth/users/admin"))!.toString()) as UserRecord;
    expect(record.tokenGeneration).toBe(applied);
  });

  it("refuses bad settings and bad names, changing nothing", async () => {
    await expect(auth.setSettings({ userTokenTtlSeconds: 0 })).rejects.toThrow(/userTokenTtlSeconds must be an integer/);
    await expect(auth.createUser("a b", "long enough", "read")).rejects.toThrow(/not a valid user name/);
    await expect(auth.createUser("ab", "short", "read")).rejects.toThrow(/8 to 1024 bytes/);
    expect(await store.prefix("ovs/auth/", { limit: 10 })).toEqual({ entries: [], more: false });
  });
});

describe("RateLimiter", () => {
  it("allows perWindow requests per key per window", () => {
    let now = 0;
    const limiter = new RateLimiter(() => now, 60_000);
    expect([1, 2, 3].map(() => limiter.take("a", 2))).toEqual([0, 0, 60]);
    expect(limiter.take("b", 2)).toBe(0);
    now = 30_000;
    expect(limiter.take("a", 2)).toBe(30);
    now = 60_000;
    expect(limiter.take("a", 2)).toBe(0);
  });
});
