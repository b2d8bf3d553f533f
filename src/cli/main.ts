/**
 * `doe-emu`: the command-line entry point. Each command lives in its own module and is a thin
 * shell over the library: it parses flags, reports errors in one readable line, sets the exit code.
 */
import yargs from "yargs";
import { hideBin } from "yargs/helpers";
import { certsCommand } from "./certs.js";
import { decodeCommand } from "./decode.js";
import { demoCommand } from "./demo.js";
import { deviceCommand } from "./device.js";
import { doeCommand } from "./doe.js";
import { faultCommand } from "./fault.js";
import { hostCommand } from "./host.js";
import { launchCommand } from "./launch.js";
import { lspciCommand } from "./lspci.js";
import { watchParent } from "./parent.js";
import { requesterCommand } from "./requester.js";
import { setpciCommand } from "./setpci.js";

watchParent();

const cli = yargs(hideBin(process.argv));
// yargs has getOptions() (the declared options so far, by kind) and getInternalMethods(); @types/yargs lacks them.
const internals = cli as unknown as {
  getOptions(): { array: string[] };
  getInternalMethods(): { getUsageInstance(): { cacheHelpMessage(): void } };
};
// After starting a command's handler yargs renders that command's whole help text (measuring each
// line's display width: ~60 ms of a device's start-up), kept to show if the handler fails later.
// Our handlers report their own failures (common.ts run) and --help renders it anyway when asked.
internals.getInternalMethods().getUsageInstance().cacheHelpMessage = () => {};

/** A repeated flag that is not a list comes as an array; like most tools, let the last one win. */
const lastWins = (argv: Record<string, unknown>) => {
  const lists = new Set(internals.getOptions().array);
  for (const [key, value] of Object.entries(argv))
    if (key !== "_" && Array.isArray(value) && !lists.has(key)) argv[key] = value.at(-1);
};

await cli
  .scriptName("doe-emu")
  .usage(
    "$0 <command> [options]\n\nEmulated PCIe devices whose DOE mailboxes are TCP endpoints (DMTF spdm-emu socket protocol).",
  )
  .command(deviceCommand)
  .command(doeCommand)
  .command(decodeCommand)
  .command(requesterCommand)
  .command(demoCommand)
  .command(certsCommand)
  .command(hostCommand)
  .command(launchCommand)
  .command(lspciCommand)
  .command(setpciCommand)
  .command(faultCommand)
  .middleware(lastWins, true)
  .demandCommand(1, "name a command")
  .strict()
  .help()
  .alias("h", "help")
  .version()
  .parseAsync();
