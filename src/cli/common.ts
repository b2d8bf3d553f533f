/** What every CLI command shares: log flags and the one way a failure is reported. */
import type { Argv } from "yargs";
import { PCAP_MAX_SPDM_DUMP_SNAPLEN } from "../../protocol/pcap.js";
import { LOG_LEVELS, type Logger, type LogLevel } from "../log.js";
import { PcapCapture } from "../net/capture.js";
import { openKeyLog } from "../spdm/keylog.js";
import type { KeyLog } from "../spdm/session.js";

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

export interface CaptureArgs {
  pcap?: string;
  "pcap-snaplen": number;
}

/** `--pcap DIR` and `--pcap-snaplen N` (README "Captures"). */
export const captureOptions = <T>(y: Argv<T>) =>
  y
    .option("pcap", {
      type: "string",
      describe:
        "Write a pcap file per connection into DIR (link type PCI_DOE, as spdm-emu; spdm_dump reads it)",
    })
    .option("pcap-snaplen", {
      type: "number",
      default: PCAP_MAX_SPDM_DUMP_SNAPLEN,
      describe: "Longest pcap record; longer DOE objects are truncated (spdm_dump refuses more than 65536)",
    });

export const startCapture = (argv: CaptureArgs, processName: string, log: Logger): PcapCapture | undefined =>
  argv.pcap === undefined
    ? undefined
    : new PcapCapture({ dir: argv.pcap, process: processName, snaplen: argv["pcap-snaplen"], log });

/** `--keylog FILE`: off by default; when on, a warning says so (src/spdm/keylog.ts). */
export const keyLogOption = <T>(y: Argv<T>) =>
  y.option("keylog", {
    type: "string",
    describe:
      "Append each session's DHE secret or PSK to FILE as it is established (for spdm_dump and `doe-emu decode`); anyone with the file can decrypt",
  });

export const startKeyLog = (file: string | undefined, log: Logger): KeyLog | undefined =>
  file === undefined ? undefined : openKeyLog(file, log);

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
