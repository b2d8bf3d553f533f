/** Structured logging: one JSON line per event on stderr, or human-readable lines with --pretty. */
import { createRequire } from "node:module";
import { hostname } from "node:os";
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
  // pino reads pid and hostname when it loads, which a device's startup snapshot does at build time.
  const base = {
    level: opts.level ?? "info",
    name: opts.name ?? "doe-emu",
    base: { pid: process.pid, hostname: hostname() },
  };
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

/**
 * Warnings about a peer's input, at most `perSecond` a second from one source: a flood of bad input
 * must not become a flood of log lines, each several times the bytes that caused it. The lines
 * dropped are counted (`suppressed`) in the next one that goes out.
 */
export class WarnLimiter {
  private windowStart = Number.NEGATIVE_INFINITY;
  private sent = 0;
  private dropped = 0;

  constructor(
    private readonly perSecond = 10,
    private readonly now: () => number = Date.now,
  ) {}

  warn(log: Logger, fields: object, msg: string): void {
    const t = this.now();
    if (t - this.windowStart >= 1000) {
      this.windowStart = t;
      this.sent = 0;
    }
    if (this.sent >= this.perSecond) {
      this.dropped++;
      return;
    }
    this.sent++;
    log.warn(this.dropped > 0 ? { ...fields, suppressed: this.dropped } : fields, msg);
    this.dropped = 0;
  }
}
