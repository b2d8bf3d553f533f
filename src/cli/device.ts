/** `doe-emu device`: one emulated device as a process. */

import net from "node:net";
import type { Argv } from "yargs";
import { type ConfigAccess, encodeControlFrame } from "../../protocol/control.js";
import { encodeDoeObject, protocolId } from "../../protocol/doe.js";
import { encodeFrame, SocketCommand, type SocketFrame, TransportType } from "../../protocol/socket.js";
import { defaultDescription, loadDescription } from "../device/description.js";
import { type DeviceOptions, type RunningDevice, startDevice } from "../device/device.js";
import { discoveryRequest } from "../doe/discovery.js";
import { createLogger, type LogLevel } from "../log.js";
import { type Endpoint, formatEndpoint, parseEndpoint } from "../net/framed.js";
import { withMutualAuth, withPsk, withSlotFiles } from "../spdm/responder-settings.js";
import {
  type CaptureArgs,
  captureOptions,
  keyLogOption,
  logOptions,
  run,
  startCapture,
  startKeyLog,
} from "./common.js";

/** The exit status of a device an `exit` fault ended. */
export const FAULT_EXIT_CODE = 3;

interface DeviceArgs extends CaptureArgs {
  config?: string;
  bus?: number;
  ip: string;
  port?: number;
  "control-port": number;
  host?: string;
  "cert-chain"?: string;
  "private-key"?: string;
  "mut-auth-cert-chain"?: string;
  psk?: string;
  keylog?: string;
  "state-dir"?: string;
  "on-shutdown": "exit" | "close";
  "log-level": LogLevel;
  pretty: boolean;
}

/** The device `argv` describes, as startDevice takes it, less what the process does on SHUTDOWN and faults. */
function deviceOptions(argv: DeviceArgs): DeviceOptions {
  const log = createLogger({ level: argv["log-level"], pretty: argv.pretty, name: "device" });
  const described = argv.config ? loadDescription(argv.config) : defaultDescription();
  const description = argv.bus === undefined ? described : { ...described, bus: argv.bus };
  const [certChain, privateKey] = [argv["cert-chain"], argv["private-key"]];
  if (certChain && privateKey) description.spdm = withSlotFiles(description.spdm, 0, certChain, privateKey);
  if (argv.psk !== undefined) description.spdm = withPsk(description.spdm, argv.psk);
  const mutual = argv["mut-auth-cert-chain"];
  if (mutual !== undefined) description.spdm = withMutualAuth(description.spdm, mutual);
  return {
    description,
    ip: argv.ip,
    port: argv.port,
    controlPort: argv["control-port"],
    host: argv.host ? parseEndpoint(argv.host) : undefined,
    log,
    capture: startCapture(argv, "device", log),
    keyLog: startKeyLog(argv.keylog, log),
    stateDir: argv["state-dir"],
  };
}

async function runDevice(argv: DeviceArgs): Promise<void> {
  const options = deviceOptions(argv);
  const { log } = options;
  // A SHUTDOWN can arrive on a mailbox before startDevice has resolved (its ports listen first).
  let device: RunningDevice | undefined;
  let exitWhy: string | undefined;
  const exit = (why: string) => {
    if (exitWhy) return;
    exitWhy = why;
    log.info({ why }, "stopping");
    if (device) void device.stop().then(() => process.exit(0));
  };
  device = await startDevice({
    ...options,
    onShutdown: () =>
      argv["on-shutdown"] === "exit"
        ? exit("SHUTDOWN")
        : log.info("SHUTDOWN ends only its connection (--on-shutdown close)"),
    // An injected crash: no clean-up, as a device that dies mid-request.
    onFaultExit: () => process.exit(FAULT_EXIT_CODE),
  });
  if (exitWhy) {
    await device.stop();
    process.exit(0);
  }
  // Before "ready" is printed: a parent may signal as soon as it reads that line.
  process.once("SIGTERM", () => exit("SIGTERM"));
  process.once("SIGINT", () => exit("SIGINT"));
  for (const m of device.mailboxes) {
    const protocols = m.protocols.map(protocolId).join(",");
    console.log(`mailbox ${m.id} listening on ${formatEndpoint(m.endpoint)} protocols ${protocols}`);
  }
  console.log(`control listening on ${formatEndpoint(device.control)}`);
  console.log(`device ${device.name} pid ${process.pid} ready`);
}

/**
 * The device snapshot's build-time run (src/cli/snapshot.ts): the device `argv` describes started,
 * asked what a host's scan asks, and stopped again, printing nothing, so that what every device runs
 * as it starts and as it is scanned is compiled.
 */
export async function warmDevice(argv: DeviceArgs): Promise<void> {
  const device = await startDevice(deviceOptions(argv));
  try {
    await askAsAHostScans(device);
  } finally {
    await device.stop();
  }
}

/**
 * Sends the warm device what a host's scan sends (identity; per function its config space in a
 * batch, its BARs sized and placed, memory decoding on; DOE discovery on every mailbox), each
 * answered before the next: the snapshot then holds those paths compiled, and a scanned device's
 * CPU for the scan drops from ~20 to ~12 ms. Plain sockets and codecs, not the host's clients: the
 * snapshot gets no client state. A device that stops answering fails the build, not hangs it.
 */
async function askAsAHostScans(device: RunningDevice): Promise<void> {
  // Resolves at the socket's next `event`; rejects if it errs, closes or is silent for 5 s first.
  // A plain timer, cleared: AbortSignal.timeout leaves one pending, a handle no snapshot can hold,
  // and a socket timeout (socket.setTimeout) set at build time leaves devices started from the
  // snapshot not re-announced after their link comes back (test/integration/netns fails).
  const next = (socket: net.Socket, event: "connect" | "data") =>
    new Promise<void>((resolve, reject) => {
      const settle = (err?: Error) => {
        clearTimeout(timer);
        socket.off(event, ok).off("error", settle).off("close", closed);
        if (err) reject(err);
        else resolve();
      };
      const ok = () => settle();
      const closed = () => settle(new Error(`the warm device closed before its ${event}`));
      const timer = setTimeout(() => settle(new Error(`no ${event} from the warm device in 5 s`)), 5000);
      socket.once(event, ok).once("error", settle).once("close", closed);
    });
  const ask = async (to: Endpoint, frames: SocketFrame[]) => {
    const socket = net.connect(to.port, to.host);
    try {
      await next(socket, "connect");
      for (const frame of frames) {
        socket.write(encodeFrame(frame));
        await next(socket, "data");
      }
    } finally {
      socket.destroy();
    }
  };
  // The BARs sized and placed and memory decoding enabled, as the host's assignBars does.
  const bars = (rid: number, value: number): ConfigAccess[] => [
    ...[0, 1, 2, 3, 4, 5].map((i) => ({ op: "write" as const, rid, offset: 0x10 + 4 * i, width: 4, value })),
    { op: "read", rid, offset: 0x10, width: 4, count: 6 },
  ];
  const config = device.model.routingIds.flatMap((rid) => [
    encodeControlFrame(1, {
      kind: "cfgBatch",
      accesses: [{ op: "read", rid, offset: 0, width: 4, count: 1024 }],
    }),
    encodeControlFrame(2, { kind: "cfgBatch", accesses: [...bars(rid, 0xffff_ffff), ...bars(rid, 0)] }),
    encodeControlFrame(3, { kind: "cfgWrite", rid, offset: 4, width: 2, value: 2 }),
    encodeControlFrame(4, { kind: "cfgRead", rid, offset: 4, width: 2 }),
  ]);
  await ask(device.control, [encodeControlFrame(0, { kind: "identity" }), ...config]);
  for (const mailbox of device.mailboxes)
    await ask(
      mailbox.endpoint,
      mailbox.protocols.map((_, index) => ({
        command: SocketCommand.NORMAL,
        transport: TransportType.PCI_DOE,
        payload: encodeDoeObject(discoveryRequest(index)),
      })),
    );
}

export const deviceCommand = {
  command: "device",
  describe:
    "Run one emulated device: a TCP endpoint per DOE mailbox, plus a control endpoint for config space",
  builder: (y: Argv) =>
    keyLogOption(captureOptions(logOptions(y)))
      .option("config", {
        type: "string",
        describe: "Device description (JSON); built-in default: one function, one mailbox",
      })
      .option("bus", {
        type: "number",
        describe: "Bus number of the device's routing IDs (default: the description's, else 1)",
        coerce: (n: number) => {
          if (!Number.isInteger(n) || n < 0 || n > 255) throw new Error(`--bus ${n} is not 0..255`);
          return n;
        },
      })
      .option("ip", { type: "string", default: "127.0.0.1", describe: "Address every endpoint binds to" })
      .option("port", {
        type: "number",
        describe: "Port of the first mailbox (default 2323, as spdm-emu; 0 = any free port)",
      })
      .option("on-shutdown", {
        choices: ["exit", "close"] as const,
        default: "exit" as const,
        describe:
          "What a peer's SHUTDOWN does: exit the process (as spdm_responder_emu) or end only that connection and serve on (spdm_requester_emu sends SHUTDOWN after each run)",
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
      .option("cert-chain", {
        type: "string",
        implies: "private-key",
        describe: "SPDM slot 0 certificate chain: DER-concatenated or PEM certificates, root first",
      })
      .option("private-key", {
        type: "string",
        implies: "cert-chain",
        describe: "SPDM slot 0 private key (PEM or DER; PKCS#8 or SEC1)",
      })
      .option("mut-auth-cert-chain", {
        type: "string",
        describe:
          "Require mutual authentication in KEY_EXCHANGE sessions (no encapsulation): the requester's certificate chain (DER or PEM, root first) whose leaf must sign FINISH",
      })
      .option("psk", {
        type: "string",
        describe:
          'PSK for PSK_EXCHANGE: text, or hex with a 0x prefix (default the description\'s, else DMTF\'s "TestPskData\\0", hint "TestPskHint\\0")',
      })
      .option("state-dir", {
        type: "string",
        describe:
          "Keep what SET_CERTIFICATE and SET_KEY_PAIR_INFO provision in DIR/state.json across restarts (default: in memory)",
      })
      .example("$0 device --port 23230", "serve the default device's mailbox on 127.0.0.1:23230"),
  handler: run(runDevice),
};
