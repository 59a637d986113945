// `ovs login`, `ovs logout`, `ovs whoami`, `ovs user …`, `ovs client …` and `ovs auth settings`.
// Passwords are read from standard input with --password-stdin, else asked for on the terminal without
// echo; they never appear on a command line. Generated passwords and client secrets are printed once.

import fs from "node:fs";
import { Command, InvalidArgumentError } from "commander";
import { CliError, callApi } from "./api-client.js";
import { forgetLogin, saveLogin, tokenFor } from "./credentials.js";

type Role = "read" | "write" | "manage";

function roleOption(value: string): Role {
  if (value !== "read" && value !== "write" && value !== "manage") throw new InvalidArgumentError("a role is read, write or manage.");
  return value;
}

function positiveIntegerOption(value: string): number {
  const number = Number(value);
  if (!Number.isInteger(number) || number < 1) throw new InvalidArgumentError("give a positive integer.");
  return number;
}

/** The password from standard input (its first line) or, on a terminal, asked for without echo. */
async function readPassword(fromStdin: boolean | undefined, prompt: string): Promise<string> {
  if (fromStdin) {
    const text = fs.readFileSync(0, "utf8");
    const password = text.split(/\r?\n/)[0] ?? "";
    if (password === "") throw new CliError("standard input holds no password.");
    return password;
  }
  if (!process.stdin.isTTY) throw new CliError("no terminal to ask for the password on: pass it on standard input with --password-stdin.");
  process.stderr.write(prompt);
  process.stdin.setRawMode(true);
  process.stdin.resume();
  try {
    return await new Promise<string>((resolve, reject) => {
      let password = "";
      const onData = (chunk: Buffer): void => {
        for (const char of chunk.toString("utf8")) {
          if (char === "\r" || char === "\n") {
            process.stdin.off("data", onData);
            process.stderr.write("\n");
            return resolve(password);
          }
          if (char === "\u0003") {
            process.stdin.off("data", onData);
            process.stderr.write("\n");
            return reject(new CliError("interrupted."));
          }
          if (char === "\u007f" || char === "\b") password = password.slice(0, -1);
          else password += char;
        }
      };
      process.stdin.on("data", onData);
    });
  } finally {
    process.stdin.setRawMode(false);
    process.stdin.pause();
  }
}

interface IssuedToken {
  access_token: string;
  expires_in: number;
  scope: string;
}

function table(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const row of [header, ...rows]) process.stdout.write(row.map((cell, i) => cell.padEnd(widths[i]!)).join("  ").trimEnd() + "\n");
}

export function registerAuthCommands(program: Command, api: () => string, printJson: (value: unknown) => void): void {
  program
    .command("login")
    .description("log in and keep the token for the other commands (in $XDG_CONFIG_HOME/openvstorage/token, mode 0600)")
    .option("--user <name>", "user name", "admin")
    .option("--password-stdin", "read the password from standard input")
    .action(async (options: { user: string; passwordStdin?: boolean }) => {
      const password = await readPassword(options.passwordStdin, `Password for ${options.user}: `);
      const url = api();
      const issued = await callApi<IssuedToken>(url, "POST", "/api/v1/oauth/token", { grant_type: "password", username: options.user, password }, { anonymous: true });
      const file = saveLogin(url, { token: issued.access_token, subject: `user:${options.user}`, expiresAt: new Date(Date.now() + issued.expires_in * 1000).toISOString() });
      process.stdout.write(`logged in to ${url} as ${options.user} (roles ${issued.scope.split(" ").join(", ")}) until ${new Date(Date.now() + issued.expires_in * 1000).toISOString()}; token kept in ${file}\n`);
    });

  program
    .command("logout")
    .description("revoke the token of `ovs login` and forget it")
    .action(async () => {
      const url = api();
      if (tokenFor(url) === undefined) throw new CliError(`not logged in to ${url}.`);
      try {
        await callApi(url, "DELETE", "/api/v1/oauth/token");
      } catch (error) {
        if (!(error instanceof CliError && /login|logged in/.test(error.message))) throw error; // an expired token is gone anyway
      }
      forgetLogin(url);
      process.stdout.write(`logged out of ${url}\n`);
    });

  program
    .command("whoami")
    .description("who the token belongs to and its roles")
    .option("--json", "print JSON")
    .action(async (options: { json?: boolean }) => {
      const me = await callApi<{ kind: string; name: string; roles: string[] }>(api(), "GET", "/api/v1/oauth/me");
      if (options.json) printJson(me);
      else process.stdout.write(`${me.kind} ${me.name} (roles ${me.roles.join(", ")})\n`);
    });

  const user = program.command("user").description("manage users (people; role manage needed)");

  user
    .command("create <name>")
    .description("create a user; without --password-stdin a password is generated and printed once")
    .requiredOption("--role <role>", "read, write or manage (each includes the ones below it)", roleOption)
    .option("--password-stdin", "read the password from standard input")
    .option("--json", "print JSON")
    .action(async (name: string, options: { role: Role; passwordStdin?: boolean; json?: boolean }) => {
      const password = options.passwordStdin ? await readPassword(true, "") : undefined;
      const created = await callApi<{ username: string; roles: string[]; password?: string }>(api(), "POST", "/api/v1/users", { username: name, role: options.role, ...(password === undefined ? {} : { password }) });
      if (options.json) return printJson(created);
      process.stdout.write(`created user ${created.username} (roles ${created.roles.join(", ")})\n`);
      if (created.password !== undefined) process.stdout.write(`password: ${created.password}\n(shown only this once)\n`);
    });

  user
    .command("list")
    .description("list users")
    .option("--json", "print JSON")
    .action(async (options: { json?: boolean }) => {
      const { users } = await callApi<{ users: Array<{ username: string; roles: string[]; createdAt: string }> }>(api(), "GET", "/api/v1/users");
      if (options.json) return printJson(users);
      table(["NAME", "ROLES", "CREATED"], users.map((u) => [u.username, u.roles.join(","), u.createdAt]));
    });

  user
    .command("delete <name>")
    .description("delete a user (its tokens stop working; the last manager cannot be deleted)")
    .action(async (name: string) => {
      await callApi(api(), "DELETE", `/api/v1/users/${encodeURIComponent(name)}`);
      process.stdout.write(`deleted user ${name}\n`);
    });

  user
    .command("passwd <name>")
    .description("change a password (your own, or anyone's with role manage); the user's tokens stop working")
    .option("--password-stdin", "read the new password from standard input")
    .action(async (name: string, options: { passwordStdin?: boolean }) => {
      const password = await readPassword(options.passwordStdin, `New password for ${name}: `);
      await callApi(api(), "PUT", `/api/v1/users/${encodeURIComponent(name)}/password`, { password });
      process.stdout.write(`changed the password of ${name}\n`);
    });

  const client = program.command("client").description("manage OAuth2 clients (programs using client_credentials; role manage needed)");

  client
    .command("create <id>")
    .description("create a client; its secret is printed once")
    .requiredOption("--role <role>", "read, write or manage", roleOption)
    .option("--json", "print JSON")
    .action(async (id: string, options: { role: Role; json?: boolean }) => {
      const created = await callApi<{ clientId: string; roles: string[]; clientSecret: string }>(api(), "POST", "/api/v1/clients", { clientId: id, role: options.role });
      if (options.json) return printJson(created);
      process.stdout.write(`created client ${created.clientId} (roles ${created.roles.join(", ")})\nclient secret: ${created.clientSecret}\n(shown only this once)\n`);
    });

  client
    .command("list")
    .description("list clients")
    .option("--json", "print JSON")
    .action(async (options: { json?: boolean }) => {
      const { clients } = await callApi<{ clients: Array<{ clientId: string; roles: string[]; createdAt: string }> }>(api(), "GET", "/api/v1/clients");
      if (options.json) return printJson(clients);
      table(["ID", "ROLES", "CREATED"], clients.map((c) => [c.clientId, c.roles.join(","), c.createdAt]));
    });

  client
    .command("delete <id>")
    .description("delete a client (its tokens stop working)")
    .action(async (id: string) => {
      await callApi(api(), "DELETE", `/api/v1/clients/${encodeURIComponent(id)}`);
      process.stdout.write(`deleted client ${id}\n`);
    });

  program
    .command("auth")
    .description("auth settings")
    .command("settings")
    .description("show or change token lifetimes and the token request rate limit")
    .option("--user-token-ttl <seconds>", "lifetime of tokens of people", positiveIntegerOption)
    .option("--client-token-ttl <seconds>", "lifetime of tokens of clients", positiveIntegerOption)
    .option("--token-requests-per-minute <n>", "token requests per remote address per minute", positiveIntegerOption)
    .option("--json", "print JSON")
    .action(async (options: { userTokenTtl?: number; clientTokenTtl?: number; tokenRequestsPerMinute?: number; json?: boolean }) => {
      const change = {
        ...(options.userTokenTtl === undefined ? {} : { userTokenTtlSeconds: options.userTokenTtl }),
        ...(options.clientTokenTtl === undefined ? {} : { clientTokenTtlSeconds: options.clientTokenTtl }),
        ...(options.tokenRequestsPerMinute === undefined ? {} : { tokenRequestsPerMinute: options.tokenRequestsPerMinute }),
      };
      const settings = Object.keys(change).length === 0
        ? await callApi<Record<string, number>>(api(), "GET", "/api/v1/auth/settings")
        : await callApi<Record<string, number>>(api(), "PATCH", "/api/v1/auth/settings", change);
      if (options.json) return printJson(settings);
      for (const [key, value] of Object.entries(settings)) process.stdout.write(`${key.padEnd(24)}${value}\n`);
    });
}
