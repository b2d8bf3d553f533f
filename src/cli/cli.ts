/**
 * The one yargs set-up every doe-emu entry shares: the full CLI (main.ts) with all commands, the
 * startup snapshots (snapshot.ts) with one command each. Each command's builder stays
 * the one definition of its flags.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import yargs, { type Argv } from "yargs";
import { packageRoot } from "../fixture/spawn-device.js";
import { watchParent } from "./parent.js";

// Read as this module is evaluated (for the device, at snapshot build time): left to itself yargs
// lists directory after directory looking for package.json in every run.
const { version } = JSON.parse(readFileSync(join(packageRoot(), "package.json"), "utf8")) as {
  version: string;
};

/** A command as each command's module exports it; each handler takes its own argument type. */
export interface Command {
  command: string;
  describe: string;
  builder: (y: Argv) => Argv<unknown>;
  // biome-ignore lint/suspicious/noExplicitAny: each handler narrows yargs' parsed arguments to its own type.
  handler: (argv: any) => Promise<void> | undefined;
}

/** Parses `args` (the arguments after the program) and runs the command they name. */
export async function runCli(args: string[], commands: Command[]): Promise<void> {
  watchParent();
  const cli = yargs(args);
  // yargs has getOptions() (the declared options so far, by kind) and getInternalMethods(); @types/yargs lacks them.
  const internals = cli as unknown as {
    getOptions(): { array: string[] };
    getInternalMethods(): { getUsageInstance(): { cacheHelpMessage(): void } };
  };
  // After starting a command's handler yargs renders that command's whole help text (measuring each
  // line's display width: ~100 ms and 13 MiB of a device's start-up), kept to show if the handler
  // fails later. Our handlers report their own failures (common.ts run); --help still renders it.
  internals.getInternalMethods().getUsageInstance().cacheHelpMessage = () => {};

  /** A repeated flag that is not a list comes as an array; like most tools, let the last one win. */
  const lastWins = (argv: Record<string, unknown>) => {
    const lists = new Set(internals.getOptions().array);
    for (const [key, value] of Object.entries(argv))
      if (key !== "_" && Array.isArray(value) && !lists.has(key)) argv[key] = value.at(-1);
  };

  let y: Argv = cli
    .scriptName("doe-emu")
    .usage(
      "$0 <command> [options]\n\nEmulated PCIe devices whose DOE mailboxes are TCP endpoints (DMTF spdm-emu socket protocol).",
    );
  for (const command of commands) y = y.command(command);
  await y
    .middleware(lastWins, true)
    .demandCommand(1, "name a command")
    .strict()
    .help()
    .alias("h", "help")
    .version(version)
    .parseAsync();
}
