/**
 * `doe-emu`: the command-line entry point. Each command lives in its own module and is a thin
 * shell over the library: it parses flags, reports errors in one readable line, sets the exit code.
 */
import { hideBin } from "yargs/helpers";
import { certsCommand } from "./certs.js";
import { runCli } from "./cli.js";
import { decodeCommand } from "./decode.js";
import { demoCommand } from "./demo.js";
import { deviceCommand } from "./device.js";
import { doeCommand } from "./doe.js";
import { faultCommand } from "./fault.js";
import { hostCommand } from "./host.js";
import { launchCommand } from "./launch.js";
import { lspciCommand } from "./lspci.js";
import { requesterCommand } from "./requester.js";
import { setpciCommand } from "./setpci.js";

await runCli(hideBin(process.argv), [
  deviceCommand,
  doeCommand,
  decodeCommand,
  requesterCommand,
  demoCommand,
  certsCommand,
  hostCommand,
  launchCommand,
  lspciCommand,
  setpciCommand,
  faultCommand,
]);
