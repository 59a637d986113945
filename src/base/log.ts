// JSON logs (pino). Daemons log to stderr so that stdout stays for what the command prints to people.

import { pino, type Logger } from "pino";

export type { Logger };

export function createLogger(name: string, level = process.env.OVS_LOG_LEVEL ?? "info"): Logger {
  return pino({ name, level, base: { pid: process.pid } }, pino.destination(2));
}

/** A logger that drops everything: for tests and library use without a daemon around it. */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}
