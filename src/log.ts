/** Structured logging: one JSON line per event on stderr, or human-readable lines with --pretty. */
import { createRequire } from "node:module";
import { type Logger, pino } from "pino";

export type { Logger };

export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface LogOptions {
  level?: LogLevel;
  pretty?: boolean;
  name?: string;
}

export function createLogger(opts: LogOptions = {}): Logger {
  const base = { level: opts.level ?? "info", name: opts.name ?? "doe-emu" };
  // Synchronous destinations, so that the last lines before process.exit are not lost.
  if (opts.pretty) {
    // Loaded only when asked for: it is a fifth of a device process's start-up otherwise.
    const pretty = createRequire(import.meta.url)("pino-pretty") as typeof import("pino-pretty");
    return pino(base, pretty({ destination: 2, sync: true, colorize: false }));
  }
  return pino(base, pino.destination({ dest: 2, sync: true }));
}

/** A logger that drops everything, for library users who pass none. */
export const silentLogger: Logger = pino({ level: "silent" });
