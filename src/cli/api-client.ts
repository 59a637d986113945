// The CLI's HTTP client for the REST API. Every failure becomes one clear sentence (CliError); the API's
// own error messages are passed through as they are, except 401, which always says how to log in.
// Every request carries the bearer token of `ovs login` (credentials.ts), or $OVS_TOKEN when set.

import { storedLoginFor, tokenFor } from "./credentials.js";

export class CliError extends Error {
  override name = "CliError";
}

export function resolveApiUrl(flag: string | undefined): string {
  const url = flag ?? process.env.OVS_API_URL ?? "http://127.0.0.1:8080";
  try {
    return new URL(url).toString().replace(/\/$/, "");
  } catch {
    throw new CliError(`"${url}" is not a valid API URL (use e.g. http://127.0.0.1:8080).`);
  }
}

function authHeaders(baseUrl: string, anonymous: boolean): Record<string, string> {
  if (anonymous) return {};
  const token = tokenFor(baseUrl);
  return token === undefined ? {} : { authorization: `Bearer ${token}` };
}

function unreachable(baseUrl: string, error: unknown): CliError {
  const reason = (error as { cause?: { code?: string } }).cause?.code ?? (error as Error).message;
  return new CliError(`cannot reach the ovs API at ${baseUrl} (${reason}); is \`ovs up\` running? Use --api URL or OVS_API_URL to point elsewhere.`);
}

/** The sentence for a failed reply: 401 says how to log in, the rest pass the API's message through. */
function failure(baseUrl: string, response: Response, parsed: unknown, anonymous: boolean): CliError {
  const message = (parsed as { error?: { message?: string } } | undefined)?.error?.message;
  if (response.status === 401 && !anonymous) {
    const stored = storedLoginFor(baseUrl);
    const storedExpired = stored !== undefined && Date.parse(stored.expiresAt) <= Date.now();
    if (storedExpired || (message !== undefined && /expired/.test(message))) return new CliError("your login has expired: run `ovs login`.");
    if (message !== undefined && /no longer valid/.test(message)) return new CliError(`${message.replace(/\.$/, "")}: run \`ovs login\`.`);
    return new CliError("not logged in: run `ovs login`.");
  }
  return new CliError(message ?? `the API answered ${response.status} ${response.statusText}.`);
}

export interface CallOptions {
  /** Send no token (the token endpoint). */
  anonymous?: boolean;
  /** Send the body form-encoded instead of JSON. */
  headers?: Record<string, string>;
}

export async function callApi<T>(baseUrl: string, method: string, path: string, body?: unknown, options: CallOptions = {}): Promise<T> {
  const anonymous = options.anonymous === true;
  let response: Response;
  try {
    response = await fetch(baseUrl + path, {
      method,
      headers: { ...authHeaders(baseUrl, anonymous), ...(body === undefined ? {} : { "content-type": "application/json" }), ...options.headers },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(120_000),
    });
  } catch (error) {
    throw unreachable(baseUrl, error);
  }
  if (response.status === 204) return undefined as T;
  const text = await response.text();
  let parsed: unknown;
  try {
    parsed = text.length > 0 ? JSON.parse(text) : undefined;
  } catch {
    if (!response.ok) throw failure(baseUrl, response, undefined, anonymous);
    throw new CliError(`the API at ${baseUrl} answered ${response.status} with a body that is not JSON.`);
  }
  if (!response.ok) throw failure(baseUrl, response, parsed, anonymous);
  return parsed as T;
}

/** GETs a text resource (e.g. /metrics) with the token. */
export async function fetchText(baseUrl: string, path: string): Promise<string> {
  let response: Response;
  try {
    response = await fetch(baseUrl + path, { headers: authHeaders(baseUrl, false), signal: AbortSignal.timeout(120_000) });
  } catch (error) {
    throw unreachable(baseUrl, error);
  }
  const text = await response.text();
  if (!response.ok) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    throw failure(baseUrl, response, parsed, false);
  }
  return text;
}

/** Reads an NDJSON stream from the API, calling onLine per line, until the server or the user ends it. */
export async function streamApi(baseUrl: string, path: string, onLine: (line: string) => void): Promise<void> {
  let response: Response;
  try {
    response = await fetch(baseUrl + path, { headers: authHeaders(baseUrl, false) });
  } catch (error) {
    throw unreachable(baseUrl, error);
  }
  if (!response.ok || response.body === null) {
    const text = await response.text();
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    throw failure(baseUrl, response, parsed, false);
  }
  const decoder = new TextDecoder();
  let pending = "";
  for await (const chunk of response.body) {
    pending += decoder.decode(chunk as Uint8Array, { stream: true });
    let newline: number;
    while ((newline = pending.indexOf("\n")) >= 0) {
      const line = pending.slice(0, newline);
      pending = pending.slice(newline + 1);
      if (line.trim() !== "") onLine(line);
    }
  }
}
