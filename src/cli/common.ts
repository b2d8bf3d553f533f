/** What every CLI command shares: log flags and the one way a failure is reported. */
import type { Argv } from "yargs";
import { LOG_LEVELS, type LogLevel } from "../log.js";

export const logOptions = <T>(y: Argv<T>) =>
  y
    .option("log-level", {
      choices: LOG_LEVELS,
      default: "info" as LogLevel,
      describe: "Least severe log event printed (stderr)",
    })
    .option("pretty", {
      type: "boolean",
      default: false,
      describe: "Human-readable log lines instead of JSON",
    });

/** Runs a command body; a failure becomes one line on stderr (the stack with DOE_EMU_DEBUG=1) and exit code 1. */
export const run =
  <A>(body: (argv: A) => Promise<void>) =>
  async (argv: A) => {
    try {
      await body(argv);
    } catch (e) {
      const err = e as Error;
      console.error(`doe-emu: ${process.env.DOE_EMU_DEBUG ? err.stack : err.message}`);
      process.exit(1);
    }
  };
