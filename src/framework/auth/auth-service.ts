// Users, clients, bearer tokens and the auth settings, kept in the cluster store (keys under ovs/auth/,
// docs/formats/auth-keys.md), so every node of a cluster accepts the tokens of every other.
//
// Invariants:
// - Passwords and client secrets are stored only as scrypt hashes; tokens only as the SHA-256 of the
//   token (a token is 32 random bytes, so a hash without salt is enough and lets us look it up).
// - A token is checked on every request against its record (expiry) and against its subject's current
//   record: deleting a user or client, or changing a password, ends its tokens at once; roles are the
//   subject's current roles (narrowed by the token's scope).
// - Every change is one store sequence with asserts (optimistic concurrency): a create never overwrites,
//   a password change never loses a concurrent one, and the last user with role manage cannot be deleted.
// - Time comes from options.now (milliseconds), so tests can control expiry. Expired records stay an
//   hour (expiredTokenKeepMs) so a late request is told "expired", then the sweep task deletes them.
// Imported by the auth plugin and routes in this folder and by node.ts.

import { createHash, randomBytes } from "node:crypto";
import { OvsError, isOvsError, type Logger } from "../../base/index.js";
import type { ClusterStore, SequenceAssert } from "../../store/index.js";
import { checkPassword, generateSecret, hashPassword, verifyPassword, type PasswordHash } from "./passwords.js";

export const roleNames = ["read", "write", "manage"] as const;
export type Role = (typeof roleNames)[number];

/** A role level and everything below it: manage ⊃ write ⊃ read. */
export function rolesUpTo(role: Role): Role[] {
  return roleNames.slice(0, roleNames.indexOf(role) + 1) as Role[];
}

export const authPrefix = "ovs/auth/";
const usersPrefix = `${authPrefix}users/`;
const clientsPrefix = `${authPrefix}clients/`;
const tokensPrefix = `${authPrefix}tokens/`;
const settingsKey = `${authPrefix}settings`;
const bootstrapKey = `${authPrefix}bootstrap`;

export interface UserRecord {
  username: string;
  roles: Role[];
  password: PasswordHash;
  /** Raised by every password change: tokens issued under an older generation are refused. */
  tokenGeneration: number;
  createdAt: string;
}

export interface ClientRecord {
  clientId: string;
  roles: Role[];
  secret: PasswordHash;
  tokenGeneration: number;
  createdAt: string;
}

export type SubjectKind = "user" | "client";

export interface TokenRecord {
  kind: SubjectKind;
  name: string;
  tokenGeneration: number;
  /** Roles the token may use at most (the OAuth2 scope); the subject's current roles narrow it further. */
  scope: Role[];
  issuedAt: string;
  expiresAtMs: number;
}

export interface AuthSettings {
  userTokenTtlSeconds: number;
  clientTokenTtlSeconds: number;
  /** Token requests allowed per remote address per minute (per node). */
  tokenRequestsPerMinute: number;
}

/** Defaults from the original: 12 h for people, 1 h for programs; 10 token requests a minute. */
export const authSettingsDefault: AuthSettings = { userTokenTtlSeconds: 12 * 3600, clientTokenTtlSeconds: 3600, tokenRequestsPerMinute: 10 };
export const tokenTtlSecondsMin = 1;
export const tokenTtlSecondsMax = 30 * 24 * 3600;
export const tokenRequestsPerMinuteMax = 10_000;

/** Who made a request: its subject and the roles it may use. */
export interface Principal {
  kind: SubjectKind;
  name: string;
  roles: Role[];
}

export interface IssuedToken {
  access_token: string;
  token_type: "Bearer";
  expires_in: number;
  scope: string;
}

export interface UserInfo {
  username: string;
  roles: Role[];
  createdAt: string;
}

export interface ClientInfo {
  clientId: string;
  roles: Role[];
  createdAt: string;
}

const namePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const tokenPattern = /^ovs_[A-Za-z0-9_-]{43}$/;
/** Most users or clients listed (and scanned for the last-manager check); far above any real cluster. */
export const subjectsMax = 10_000;
/** Expired token records are kept this long, so a late request still hears "expired", then swept. */
export const expiredTokenKeepMs = 3600_000;
/** Most tokens deleted per sweep page. */
const sweepPageSize = 500;

export function checkName(name: unknown, what: "user name" | "client id"): string {
  if (typeof name !== "string" || !namePattern.test(name)) {
    throw new OvsError("INVALID_ARGUMENT", `"${String(name)}" is not a valid ${what}: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit.`);
  }
  return name;
}

export function tokenHash(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

function encode(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value), "utf8");
}

function decode<T>(value: Buffer): T {
  return JSON.parse(value.toString("utf8")) as T;
}

export class AuthService {
  private readonly now: () => number;
  private dummyHash: Promise<PasswordHash> | undefined;

  constructor(private readonly options: { store: ClusterStore; log: Logger; now?: () => number }) {
    this.now = options.now ?? Date.now;
  }

  private get store(): ClusterStore {
    return this.options.store;
  }

  /**
   * At the first start of a cluster: creates the user admin (role manage) with `password`, or a generated
   * one, and returns it so the caller can print it once. Returns undefined when the cluster was set up
   * before (by this node or another one): the marker key makes this happen once per cluster.
   */
  async bootstrap(password?: string): Promise<{ username: string; password: string; generated: boolean } | undefined> {
    if (await this.store.exists(bootstrapKey)) return undefined;
    const generated = password === undefined || password === "";
    const adminPassword = generated ? generateSecret() : checkPassword(password, "admin password (OVS_ADMIN_PASSWORD)");
    const record: UserRecord = { username: "admin", roles: rolesUpTo("manage"), password: await hashPassword(adminPassword), tokenGeneration: 0, createdAt: new Date(this.now()).toISOString() };
    try {
      await this.store.sequence(
        [{ kind: "absent", key: bootstrapKey }, { kind: "absent", key: usersPrefix + "admin" }],
        [
          { kind: "put", key: bootstrapKey, value: encode({ createdAt: record.createdAt, username: "admin" }) },
          { kind: "put", key: usersPrefix + "admin", value: encode(record) },
        ],
      );
    } catch (error) {
      if (isOvsError(error, "ASSERT_FAILED")) return undefined; // another node did it first
      throw error;
    }
    this.options.log.info({ username: "admin" }, "first start: created the first admin");
    return { username: "admin", password: adminPassword, generated };
  }

  // ---- settings ----

  async settings(): Promise<AuthSettings> {
    const value = await this.store.get(settingsKey);
    if (value === undefined) return { ...authSettingsDefault };
    try {
      return { ...authSettingsDefault, ...checkSettings(decode<Partial<AuthSettings>>(value)) };
    } catch (error) {
      this.options.log.warn({ err: error, key: settingsKey }, "the auth settings are not valid; using the defaults");
      return { ...authSettingsDefault };
    }
  }

  async setSettings(change: Partial<AuthSettings>): Promise<AuthSettings> {
    checkSettings(change);
    for (let attempt = 0; ; attempt++) {
      const old = await this.store.get(settingsKey);
      const next = { ...(await this.settings()), ...change };
      const assert: SequenceAssert = old === undefined ? { kind: "absent", key: settingsKey } : { kind: "equals", key: settingsKey, value: old };
      try {
        await this.store.sequence([assert], [{ kind: "put", key: settingsKey, value: encode(next) }]);
        return next;
      } catch (error) {
        if (!isOvsError(error, "ASSERT_FAILED") || attempt >= 4) throw error;
      }
    }
  }

  // ---- tokens ----

  async issueForPassword(username: unknown, password: unknown, scope?: Role[]): Promise<IssuedToken> {
    const name = typeof username === "string" && namePattern.test(username) ? username : undefined;
    const value = name === undefined ? undefined : await this.store.get(usersPrefix + name);
    const record = value === undefined ? undefined : decode<UserRecord>(value);
    // The same work for an unknown user as for a wrong password, so timing tells nothing.
    const ok = await verifyPassword(typeof password === "string" ? password : "", record?.password ?? (await this.dummy()));
    if (record === undefined || !ok) throw new OvsError("UNAUTHENTICATED", "wrong user name or password.");
    const settings = await this.settings();
    return this.issue({ kind: "user", name: record.username, tokenGeneration: record.tokenGeneration }, record.roles, scope, settings.userTokenTtlSeconds);
  }

  async issueForClient(clientId: unknown, secret: unknown, scope?: Role[]): Promise<IssuedToken> {
    const id = typeof clientId === "string" && namePattern.test(clientId) ? clientId : undefined;
    const value = id === undefined ? undefined : await this.store.get(clientsPrefix + id);
    const record = value === undefined ? undefined : decode<ClientRecord>(value);
    const ok = await verifyPassword(typeof secret === "string" ? secret : "", record?.secret ?? (await this.dummy()));
    if (record === undefined || !ok) throw new OvsError("UNAUTHENTICATED", "wrong client id or client secret.");
    const settings = await this.settings();
    return this.issue({ kind: "client", name: record.clientId, tokenGeneration: record.tokenGeneration }, record.roles, scope, settings.clientTokenTtlSeconds);
  }

  private async issue(subject: { kind: SubjectKind; name: string; tokenGeneration: number }, roles: Role[], scope: Role[] | undefined, ttlSeconds: number): Promise<IssuedToken> {
    const granted = scope === undefined ? roles : roles.filter((role) => scope.includes(role));
    if (granted.length === 0) throw new OvsError("FORBIDDEN", `the ${subject.kind} ${subject.name} has none of the roles asked for (${(scope ?? []).join(" ")}).`);
    const token = `ovs_${randomBytes(32).toString("base64url")}`;
    const nowMs = this.now();
    const record: TokenRecord = { ...subject, scope: granted, issuedAt: new Date(nowMs).toISOString(), expiresAtMs: nowMs + ttlSeconds * 1000 };
    await this.store.sequence([{ kind: "absent", key: tokensPrefix + tokenHash(token) }], [{ kind: "put", key: tokensPrefix + tokenHash(token), value: encode(record) }]);
    return { access_token: token, token_type: "Bearer", expires_in: ttlSeconds, scope: granted.join(" ") };
  }

  /** The principal of a bearer token; UNAUTHENTICATED when it is unknown, expired or revoked. */
  async authenticate(token: string): Promise<Principal> {
    if (!tokenPattern.test(token)) throw new OvsError("UNAUTHENTICATED", "the bearer token is not an openvstorage token.");
    const key = tokensPrefix + tokenHash(token);
    const value = await this.store.get(key);
    if (value === undefined) throw new OvsError("UNAUTHENTICATED", "the bearer token is not valid (unknown or revoked).");
    const record = decode<TokenRecord>(value);
    if (this.now() >= record.expiresAtMs) throw new OvsError("UNAUTHENTICATED", "the bearer token has expired.");
    const subjectValue = await this.store.get((record.kind === "user" ? usersPrefix : clientsPrefix) + record.name);
    const subject = subjectValue === undefined ? undefined : decode<UserRecord | ClientRecord>(subjectValue);
    if (subject === undefined || subject.tokenGeneration !== record.tokenGeneration) {
      await this.store.delete(key).catch(() => false);
      throw new OvsError("UNAUTHENTICATED", `the bearer token is no longer valid (the ${record.kind} ${record.name} was deleted or changed its password).`);
    }
    return { kind: record.kind, name: record.name, roles: subject.roles.filter((role) => record.scope.includes(role)) };
  }

  async revoke(token: string): Promise<boolean> {
    if (!tokenPattern.test(token)) return false;
    return this.store.delete(tokensPrefix + tokenHash(token));
  }

  /** Deletes token records expired for over expiredTokenKeepMs (a scheduled task); returns how many. */
  async sweepExpiredTokens(): Promise<number> {
    let deleted = 0;
    let after: string | undefined;
    const nowMs = this.now();
    for (;;) {
      const page = await this.store.prefix(tokensPrefix, { after, limit: sweepPageSize });
      for (const entry of page.entries) {
        if (decode<TokenRecord>(entry.value).expiresAtMs + expiredTokenKeepMs <= nowMs && (await this.store.testAndSet(entry.key, entry.value, undefined))) deleted++;
      }
      if (!page.more || page.entries.length === 0) return deleted;
      after = page.entries.at(-1)!.key;
    }
  }

  // ---- users ----

  async createUser(username: string, password: string, role: Role): Promise<UserInfo> {
    checkName(username, "user name");
    checkPassword(password);
    const record: UserRecord = { username, roles: rolesUpTo(role), password: await hashPassword(password), tokenGeneration: 0, createdAt: new Date(this.now()).toISOString() };
    try {
      await this.store.sequence([{ kind: "absent", key: usersPrefix + username }], [{ kind: "put", key: usersPrefix + username, value: encode(record) }]);
    } catch (error) {
      if (isOvsError(error, "ASSERT_FAILED")) throw new OvsError("ALREADY_EXISTS", `a user named ${username} already exists.`);
      throw error;
    }
    return userInfo(record);
  }

  async listUsers(): Promise<UserInfo[]> {
    return (await this.scan<UserRecord>(usersPrefix)).map(userInfo);
  }

  async deleteUser(username: string): Promise<void> {
    checkName(username, "user name");
    const key = usersPrefix + username;
    const value = await this.store.get(key);
    if (value === undefined) throw new OvsError("NOT_FOUND", `there is no user named ${username}.`);
    const record = decode<UserRecord>(value);
    const asserts: SequenceAssert[] = [{ kind: "equals", key, value }];
    if (record.roles.includes("manage")) {
      // Keep one other manager: if two managers are deleted at once, the second sequence fails its assert.
      const other = (await this.scan<UserRecord>(usersPrefix)).find((user) => user.username !== username && user.roles.includes("manage"));
      if (other === undefined) throw new OvsError("CONFLICT", `${username} is the last user with role manage; create another manager first.`);
      asserts.push({ kind: "exists", key: usersPrefix + other.username });
    }
    try {
      await this.store.sequence(asserts, [{ kind: "delete", key }]);
    } catch (error) {
      if (isOvsError(error, "ASSERT_FAILED")) throw new OvsError("CONFLICT", `user ${username} or the other managers changed meanwhile; try again.`);
      throw error;
    }
  }

  async setPassword(username: string, password: string): Promise<void> {
    checkName(username, "user name");
    checkPassword(password);
    const key = usersPrefix + username;
    const value = await this.store.get(key);
    if (value === undefined) throw new OvsError("NOT_FOUND", `there is no user named ${username}.`);
    const record = decode<UserRecord>(value);
    const next: UserRecord = { ...record, password: await hashPassword(password), tokenGeneration: record.tokenGeneration + 1 };
    if (!(await this.store.testAndSet(key, value, encode(next)))) {
      throw new OvsError("CONFLICT", `user ${username} changed meanwhile (another password change or a delete); try again.`);
    }
  }

  // ---- clients ----

  /** Creates a client for a program; returns its secret, which is not stored and cannot be shown again. */
  async createClient(clientId: string, role: Role): Promise<ClientInfo & { clientSecret: string }> {
    checkName(clientId, "client id");
    const clientSecret = generateSecret();
    const record: ClientRecord = { clientId, roles: rolesUpTo(role), secret: await hashPassword(clientSecret), tokenGeneration: 0, createdAt: new Date(this.now()).toISOString() };
    try {
      await this.store.sequence([{ kind: "absent", key: clientsPrefix + clientId }], [{ kind: "put", key: clientsPrefix + clientId, value: encode(record) }]);
    } catch (error) {
      if (isOvsError(error, "ASSERT_FAILED")) throw new OvsError("ALREADY_EXISTS", `a client named ${clientId} already exists.`);
      throw error;
    }
    return { ...clientInfo(record), clientSecret };
  }

  async listClients(): Promise<ClientInfo[]> {
    return (await this.scan<ClientRecord>(clientsPrefix)).map(clientInfo);
  }

  async deleteClient(clientId: string): Promise<void> {
    checkName(clientId, "client id");
    if (!(await this.store.delete(clientsPrefix + clientId))) throw new OvsError("NOT_FOUND", `there is no client named ${clientId}.`);
  }

  private async scan<T>(prefix: string): Promise<T[]> {
    const records: T[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await this.store.prefix(prefix, { after, limit: 1000 });
      for (const entry of page.entries) records.push(decode<T>(entry.value));
      if (records.length > subjectsMax) throw new OvsError("INTERNAL", `more than ${subjectsMax} records under ${prefix}.`);
      if (!page.more || page.entries.length === 0) return records;
      after = page.entries.at(-1)!.key;
    }
  }

  private dummy(): Promise<PasswordHash> {
    this.dummyHash ??= hashPassword(generateSecret());
    return this.dummyHash;
  }
}

function userInfo(record: UserRecord): UserInfo {
  return { username: record.username, roles: record.roles, createdAt: record.createdAt };
}

function clientInfo(record: ClientRecord): ClientInfo {
  return { clientId: record.clientId, roles: record.roles, createdAt: record.createdAt };
}

function checkSettings(settings: Partial<AuthSettings>): Partial<AuthSettings> {
  const ranges: Record<keyof AuthSettings, [number, number]> = {
    userTokenTtlSeconds: [tokenTtlSecondsMin, tokenTtlSecondsMax],
    clientTokenTtlSeconds: [tokenTtlSecondsMin, tokenTtlSecondsMax],
    tokenRequestsPerMinute: [1, tokenRequestsPerMinuteMax],
  };
  for (const [key, value] of Object.entries(settings)) {
    const range = ranges[key as keyof AuthSettings];
    if (range === undefined) throw new OvsError("INVALID_ARGUMENT", `unknown auth setting ${key}.`);
    if (typeof value !== "number" || !Number.isInteger(value) || value < range[0] || value > range[1]) {
      throw new OvsError("INVALID_ARGUMENT", `${key} must be an integer from ${range[0]} to ${range[1]}.`);
    }
  }
  return settings;
}
