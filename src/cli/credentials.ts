// Where `ovs login` keeps its tokens: $XDG_CONFIG_HOME/openvstorage/token (default
// ~/.config/openvstorage/token), mode 0600 in a 0700 directory. The file is JSON, one login per API URL,
// so logging in to a second cluster does not send the first one's token there:
//   { "version": 1, "logins": { "http://127.0.0.1:8080": { "token": "ovs_…", "subject": "user:admin", "expiresAt": ISO-8601 } } }
// $OVS_TOKEN, when set, is sent instead of anything in the file.

import fs from "node:fs";
import os from "node:os";
import path from "node:path";

export interface Login {
  token: string;
  subject: string;
  expiresAt: string;
}

interface TokenFile {
  version: 1;
  logins: Record<string, Login>;
}

export function tokenFilePath(): string {
  const configHome = process.env.XDG_CONFIG_HOME !== undefined && process.env.XDG_CONFIG_HOME !== "" ? process.env.XDG_CONFIG_HOME : path.join(os.homedir(), ".config");
  return path.join(configHome, "openvstorage", "token");
}

function readFile(): TokenFile {
  try {
    const parsed = JSON.parse(fs.readFileSync(tokenFilePath(), "utf8")) as TokenFile;
    if (parsed.version === 1 && typeof parsed.logins === "object" && parsed.logins !== null) return parsed;
  } catch {
    // missing or unreadable: no logins
  }
  return { version: 1, logins: {} };
}

function writeFile(file: TokenFile): void {
  const target = tokenFilePath();
  fs.mkdirSync(path.dirname(target), { recursive: true, mode: 0o700 });
  const temporary = `${target}.${process.pid}.tmp`;
  fs.writeFileSync(temporary, JSON.stringify(file, null, 2) + "\n", { mode: 0o600 });
  fs.chmodSync(temporary, 0o600);
  fs.renameSync(temporary, target);
}

/** The token to send to `apiUrl`: $OVS_TOKEN, else the one stored by `ovs login` for that URL. */
export function tokenFor(apiUrl: string): string | undefined {
  const fromEnv = process.env.OVS_TOKEN;
  if (fromEnv !== undefined && fromEnv !== "") return fromEnv;
  return readFile().logins[apiUrl]?.token;
}

/** The login stored for `apiUrl` when it is what the CLI sends (no $OVS_TOKEN). */
export function storedLoginFor(apiUrl: string): Login | undefined {
  const fromEnv = process.env.OVS_TOKEN;
  if (fromEnv !== undefined && fromEnv !== "") return undefined;
  return readFile().logins[apiUrl];
}

export function saveLogin(apiUrl: string, login: Login): string {
  const file = readFile();
  file.logins[apiUrl] = login;
  writeFile(file);
  return tokenFilePath();
}

export function forgetLogin(apiUrl: string): boolean {
  const file = readFile();
  if (file.logins[apiUrl] === undefined) return false;
  delete file.logins[apiUrl];
  writeFile(file);
  return true;
}
