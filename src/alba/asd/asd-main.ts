// A small entry point that runs one ASD from argv, for process-level tests (kill -9) and by hand:
//   node dist/src/alba/asd/asd-main.js --dir DIR --port PORT [--host HOST] [--secret-file FILE]
// The cluster secret comes from --secret-file (its first line) or the OVS_CLUSTER_SECRET environment
// variable (never from argv, where other users could read it); neither means the empty secret.
// Prints "READY <port> <asd id>" on stdout once listening; SIGTERM / SIGINT close it cleanly.
// The `ovs asd` command of the CLI calls runAsd() the same way. Not part of the public face.

import { readFile } from "node:fs/promises";
import { createLogger } from "../../base/index.js";
import { runAsd } from "./asd-server.js";

function usage(message: string): never {
  process.stderr.write(`${message}\nusage: asd-main.js --dir DIR --port PORT [--host HOST] [--secret-file FILE]\n`);
  process.exit(2);
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const values = new Map<string, string>();
  for (let index = 0; index < args.length; index += 2) {
    const name = args[index]!;
    const value = args[index + 1];
    if (!["--dir", "--port", "--host", "--secret-file"].includes(name) || value === undefined) usage(`bad argument ${name}`);
    values.set(name, value);
  }
  const dir = values.get("--dir") ?? usage("--dir is required");
  const port = Number(values.get("--port") ?? usage("--port is required"));
  if (!Number.isInteger(port) || port < 0 || port > 65535) usage("--port takes 0..65535");
  const secretFile = values.get("--secret-file");
  const clusterSecret = secretFile !== undefined ? (await readFile(secretFile, "utf8")).split("\n")[0]! : process.env.OVS_CLUSTER_SECRET;
  const logger = createLogger("asd");
  const handle = await runAsd({ dir, host: values.get("--host") ?? "127.0.0.1", port, clusterSecret, logger });
  process.stdout.write(`READY ${handle.port} ${handle.asdId}\n`);
  let closing = false;
  const stop = (): void => {
    if (closing) return;
    closing = true;
    handle.close().then(
      () => process.exit(0),
      (error: unknown) => {
        process.stderr.write(`${String(error)}\n`);
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
