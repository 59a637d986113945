// `ovs healthcheck [--json] [MODULE [TEST]]`: runs the node's health check through GET /api/v1/health
// and prints one line per message, as the original did, then the recap. Exit status: 0 when nothing
// FAILED and no test raised an EXCEPTION (warnings and skips included), 1 otherwise — for monitoring.

import type { Command } from "commander";
import { callApi } from "./api-client.js";
import type { HealthReport } from "../framework/index.js";

const levelState: Record<string, string> = { success: "SUCCESS", warning: "WARNING", error: "FAILED", skip: "SKIPPED", exception: "EXCEPTION" };

export function registerHealthCommands(program: Command, api: () => string, printJson: (value: unknown) => void): void {
  program
    .command("healthcheck [module] [test]")
    .description("check the store, alba, volumedriver and node modules (or one module, or one test)")
    .option("--json", "print the report as JSON ({recap, result})")
    .action(async (module: string | undefined, test: string | undefined, options: { json?: boolean }) => {
      const query = new URLSearchParams({ ...(module === undefined ? {} : { module }), ...(test === undefined ? {} : { test }) });
      const report = await callApi<HealthReport>(api(), "GET", `/api/v1/health${query.size > 0 ? `?${query.toString()}` : ""}`);
      if (options.json) printJson(report);
      else {
        for (const [name, result] of Object.entries(report.result)) {
          for (const [level, messages] of Object.entries(result.messages)) {
            for (const message of messages ?? []) process.stdout.write(`[${levelState[level] ?? level.toUpperCase()}] ${name.padEnd(24)} ${message.code.padEnd(9)} ${message.message}\n`);
          }
        }
        const recap = Object.entries(report.recap).map(([state, count]) => `${state} ${count}`).join(", ");
        process.stdout.write(`recap: ${recap}\n`);
      }
      if (report.recap.FAILED > 0 || report.recap.EXCEPTION > 0) process.exitCode = 1;
    });
}
