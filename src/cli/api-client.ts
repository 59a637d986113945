// The CLI's HTTP client for the REST API. Every failure becomes one clear sentence (CliError); the API's
// own error messages are passed through as they are.

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

export async function callApi<T>(baseUrl: string, method: string, path: string, body?: unknown): Promise<T> {
  let response: Response;
  try {
    response = await fetch(baseUrl + path, {
      method,
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(120_000),
    });
  } catch (error) {
    const reason = (error as { cause?: { code?: string } }).cause?.code ?? (error as Error).message;
    throw new CliError(`cannot reach the ovs API at ${baseUrl} (${reason}); is \`ovs up\` running? Use --api URL or OVS_API_URL to point elsewhere.`);
  }
  if (response.status === 204) return undefined as T;
  const text = await response.text();
  let parsed: unknown;
  try {
    parsed = text.length > 0 ? JSON.parse(text) : undefined;
  } catch {
    throw new CliError(`the API at ${baseUrl} answered ${response.status} with a body that is not JSON.`);
  }
  if (!response.ok) {
    const message = (parsed as { error?: { message?: string } } | undefined)?.error?.message;
    throw new CliError(message ?? `the API answered ${response.status} ${response.statusText}.`);
  }
  return parsed as T;
}

/** Reads an NDJSON stream from the API, calling onLine per line, until the server or the user ends it. */
export async function streamApi(baseUrl: string, path: string, onLine: (line: string) => void): Promise<void> {
  let response: Response;
  try {
    response = await fetch(baseUrl + path);
  } catch (error) {
    const reason = (error as { cause?: { code?: string } }).cause?.code ?? (error as Error).message;
    throw new CliError(`cannot reach the ovs API at ${baseUrl} (${reason}); is \`ovs up\` running?`);
  }
  if (!response.ok || response.body === null) {
    const text = await response.text();
    let message: string | undefined;
    try {
      message = (JSON.parse(text) as { error?: { message?: string } }).error?.message;
    } catch {
      message = undefined;
    }
    throw new CliError(message ?? `the API answered ${response.status} ${response.statusText}.`);
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
