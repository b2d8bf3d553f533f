/**
 * `doe-emu`: the command-line entry point. Each command is a thin shell over the library: it parses
 * flags, reports errors in one readable line and sets the exit code.
 */
import yargs, { type Argv } from "yargs";
import { hideBin } from "yargs/helpers";
import { protocolId, protocolName } from "../../protocol/doe.js";
import { defaultDescription, loadDescription } from "../device/description.js";
import { startDevice } from "../device/device.js";
import { spawnDevice } from "../fixture/spawn-device.js";
import { DoeClient } from "../host/doe-client.js";
import { createLogger, LOG_LEVELS, type LogLevel } from "../log.js";
import { formatEndpoint, parseEndpoint } from "../net/framed.js";

const logOptions = <T>(y: Argv<T>) =>
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

const endpointArg = (text: string) => parseEndpoint(text);

async function runDevice(argv: {
  config?: string;
  ip: string;
  port?: number;
  "control-port": number;
  host?: string;
  "log-level": LogLevel;
  pretty: boolean;
}): Promise<void> {
  const log = createLogger({ level: argv["log-level"], pretty: argv.pretty, name: "device" });
  const description = argv.config ? loadDescription(argv.config) : defaultDescription();
  let exiting = false;
  const exit = (why: string) => {
    if (exiting) return;
    exiting = true;
    log.info({ why }, "stopping");
    void device.stop().then(() => process.exit(0));
  };
  const device = await startDevice({
    description,
    ip: argv.ip,
    port: argv.port,
    controlPort: argv["control-port"],
    host: argv.host ? endpointArg(argv.host) : undefined,
    log,
    onShutdown: () => exit("SHUTDOWN"),
  });
  for (const m of device.mailboxes) {
    console.log(
      `mailbox ${m.id} listening on ${formatEndpoint(m.endpoint)} protocols ${m.protocols.map(protocolId).join(",")}`,
    );
  }
  console.log(`control listening on ${formatEndpoint(device.control)}`);
  console.log(`device ${device.name} pid ${process.pid} ready`);
  process.once("SIGTERM", () => exit("SIGTERM"));
  process.once("SIGINT", () => exit("SIGINT"));
}

async function runDiscover(argv: { endpoint: string; timeout: number }): Promise<void> {
  const doe = await DoeClient.connect(endpointArg(argv.endpoint), { timeoutMs: argv.timeout });
  doe.close();
  for (const p of doe.protocols) console.log(`${protocolId(p)} ${protocolName(p)}`);
}

async function runDemo(): Promise<void> {
  console.log("doe-emu demo: one device process, the host-side DOE client against it\n");
  const device = await spawnDevice();
  try {
    console.log(`device process ${device.pid} started`);
    for (const m of device.mailboxes) console.log(`  mailbox ${m.id} on ${formatEndpoint(m.endpoint)}`);
    console.log(`  control endpoint on ${formatEndpoint(device.control)}\n`);
    for (const m of device.mailboxes) {
      const doe = await DoeClient.connect(m.endpoint);
      console.log(`DOE discovery on mailbox ${m.id}:`);
      for (const p of doe.protocols) console.log(`  ${protocolId(p)}  ${protocolName(p)}`);
      await doe.shutdown();
    }
    const code = await device.exited;
    console.log(`\ndevice process exited with ${code} after SHUTDOWN`);
  } finally {
    await device.stop();
  }
}

/** Runs a command body; a failure becomes one line on stderr (the stack with DOE_EMU_DEBUG=1) and exit code 1. */
const run =
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

await yargs(hideBin(process.argv))
  .scriptName("doe-emu")
  .usage(
    "$0 <command> [options]\n\nEmulated PCIe devices whose DOE mailboxes are TCP endpoints (DMTF spdm-emu socket protocol).",
  )
  .command(
    "device",
    "Run one emulated device: a TCP endpoint per DOE mailbox, plus a control endpoint for config space",
    (y) =>
      logOptions(y)
        .option("config", {
          type: "string",
          describe: "Device description (JSON); built-in default: one function, one mailbox",
        })
        .option("ip", { type: "string", default: "127.0.0.1", describe: "Address every endpoint binds to" })
        .option("port", {
          type: "number",
          describe: "Port of the first mailbox (default 2323, as spdm-emu; 0 = any free port)",
        })
        .option("control-port", {
          type: "number",
          default: 0,
          describe: "Port of the control endpoint (0 = any free port)",
        })
        .option("host", {
          type: "string",
          describe: "Announce this device to a TSM host's hotplug endpoint ADDR:PORT",
        })
        .example("$0 device --port 23230", "serve the default device's mailbox on 127.0.0.1:23230"),
    run(runDevice),
  )
  .command("doe", "DOE client commands", (y) =>
    y
      .command(
        "discover <endpoint>",
        "List the protocols a mailbox endpoint reports through DOE discovery",
        (y2) =>
          y2
            .positional("endpoint", {
              type: "string",
              demandOption: true,
              describe: "Mailbox endpoint HOST:PORT",
            })
            .option("timeout", { type: "number", default: 1000, describe: "Per-request timeout in ms" }),
        run(runDiscover),
      )
      .demandCommand(1, "name a doe command"),
  )
  .command("demo", "Start a device process, discover its mailboxes, print a summary", {}, run(runDemo))
  .demandCommand(1, "name a command")
  .strict()
  .help()
  .alias("h", "help")
  .version()
  .parseAsync();
