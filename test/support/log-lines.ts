/** A logger whose lines a test can wait for: the code under test saying what happened, not a clock. */
import { type Logger, pino } from "pino";

export interface LogLine {
  msg: string;
  [field: string]: unknown;
}

export interface LogLines {
  log: Logger;
  /** Resolves with the next line whose message is `msg`; call it before what causes the line. */
  next(msg: string): Promise<LogLine>;
  /** Every line written so far, as written. */
  readonly written: string[];
}

export function logLines(level = "debug"): LogLines {
  const waiting = new Set<{ msg: string; resolve: (line: LogLine) => void }>();
  const written: string[] = [];
  const log = pino(
    { level },
    {
      write(text: string) {
        written.push(text);
        const line = JSON.parse(text) as LogLine;
        for (const w of waiting) {
          if (w.msg !== line.msg) continue;
          waiting.delete(w);
          w.resolve(line);
        }
      },
    },
  );
  return { log, written, next: (msg) => new Promise((resolve) => waiting.add({ msg, resolve })) };
}
