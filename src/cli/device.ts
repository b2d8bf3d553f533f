/** `doe-emu device`: one emulated device as a process. */
import type { Argv } from "yargs";
import { protocolId } from "../../protocol/doe.js";
import { defaultDescription, loadDescription } from "../device/description.js";
import { startDevice } from "../device/device.js";
import { createLogger, type LogLevel } from "../log.js";
import { formatEndpoint, parseEndpoint } from "../net/framed.js";
import { logOptions, run } from "./common.js";

interface DeviceArgs {
  config?: string;
  ip: string;
  port?: number;
  "control-port": number;
  host?: string;
  "log-level": LogLevel;
  pretty: boolean;
}

async function runDevice(argv: DeviceArgs): Promise<void> {
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
    host: argv.host ? parseEndpoint(argv.host) : undefined,
    log,
    onShutdown: () => exit("SHUTDOWN"),
  });
  for (const m of device.mailboxes) {
    const protocols = m.protocols.map(protocolId).join(",");
    console.log(`mailbox ${m.id} listening on ${formatEndpoint(m.endpoint)} protocols ${protocols}`);
  }
  console.log(`control listening on ${formatEndpoint(device.control)}`);
  console.log(`device ${device.name} pid ${process.pid} ready`);
  process.once("SIGTERM", () => exit("SIGTERM"));
  process.once("SIGINT", () => exit("SIGINT"));
}

export const deviceCommand = {
  command: "device",
  describe: "Run one emulated device: a TCP endpoint per DOE mailbox, plus a control endpoint for config space",
  builder: (y: Argv) =>
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
      .option("host", { type: "string", describe: "Announce this device to a TSM host's hotplug endpoint ADDR:PORT" })
      .example("$0 device --port 23230", "serve the default device's mailbox on 127.0.0.1:23230"),
  handler: run(runDevice),
};
