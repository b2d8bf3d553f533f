/**
 * `doe-emu host`: the TSM host as a process; `doe-emu host status`: its topology as a tree;
 * `doe-emu host connect|disconnect BDF`: a TDEV's connect step (session + IDE) and its undoing;
 * `doe-emu host bind BDF --vm ID|unbind BDF|tdi BDF`: a TDI's bind (TDISP lock, report verified,
 * start), its undoing, and its state; `doe-emu host events`: the host's event stream, live, one line
 * each. Each prints the API's JSON answer, or exits 1 with its error.
 * The host's modules are imported when the command runs, so that other commands (a device process
 * above all, started by the dozen) do not pay for loading them.
 */

import { readFileSync } from "node:fs";
import type { Argv } from "yargs";
import { hexDigits } from "../../protocol/hex.js";
import type { TopologyView } from "../host/api.js";
import type { HostEventMessage } from "../host/api-client.js";
import type { HostDevice } from "../host/host.js";
import { createLogger, type LogLevel } from "../log.js";
import { formatEndpoint, parseEndpoint } from "../net/framed.js";
import {
  type CaptureArgs,
  captureOptions,
  keyLogOption,
  logOptions,
  run,
  startCapture,
  startKeyLog,
} from "./common.js";

export const DEFAULT_API = "127.0.0.1:2380";

interface HostArgs extends CaptureArgs {
  api: string;
  hotplug?: string;
  device: string[];
  topology?: string;
  "bounce-ip": string;
  "request-timeout": number;
  "probe-interval": number;
  "unreachable-timeout": number;
  "bounce-timeout": number;
  "trust-root"?: string;
  keylog?: string;
  "log-level": LogLevel;
  pretty: boolean;
}

async function runHost(argv: HostArgs): Promise<void> {
  const [{ loadTopology }, { startHost }, { GIVEN_SOURCE }] = await Promise.all([
    import("../fixture/topology.js"),
    import("../host/host.js"),
    import("../host/api.js"),
  ]);
  const log = createLogger({ level: argv["log-level"], pretty: argv.pretty, name: "host" });
  const devices: HostDevice[] = argv.device.map((d) => ({ control: parseEndpoint(d), source: GIVEN_SOURCE }));
  if (argv.topology) {
    for (const e of loadTopology(argv.topology).devices) {
      if (e.control !== undefined) devices.push({ control: parseEndpoint(e.control), source: "topology" });
      else
        log.warn(
          { device: e.name },
          "topology entry without a control endpoint: `doe-emu launch` starts those",
        );
    }
  }
  const host = await startHost({
    log,
    api: parseEndpoint(argv.api),
    hotplug: argv.hotplug ? parseEndpoint(argv.hotplug) : undefined,
    devices,
    bounceHost: argv["bounce-ip"],
    requestTimeoutMs: argv["request-timeout"],
    probeIntervalMs: argv["probe-interval"],
    unreachableTimeoutMs: argv["unreachable-timeout"],
    bounceTimeoutMs: argv["bounce-timeout"],
    trustRoot: argv["trust-root"] ? readFileSync(argv["trust-root"]) : undefined,
    capture: startCapture(argv, "host", log),
    keyLog: startKeyLog(argv.keylog, log),
  });
  console.log(`api listening on ${formatEndpoint(host.api)}`);
  if (host.hotplug) console.log(`hotplug listening on ${formatEndpoint(host.hotplug)}`);
  console.log(`host pid ${process.pid} ready`);
  const exit = (why: string) => {
    log.info({ why }, "stopping");
    void host.stop().then(() => process.exit(0));
  };
  process.once("SIGTERM", () => exit("SIGTERM"));
  process.once("SIGINT", () => exit("SIGINT"));
}

/** The topology as an indented tree: device, its functions, and the TDEV/TDI of each. */
export function formatTree(view: TopologyView): string {
  const out: string[] = [];
  const tdevs = new Map(view.tdevs.map((t) => [t.bdf, t]));
  const tdis = new Map(view.tdis.map((t) => [t.bdf, t]));
  for (const d of view.devices) {
    out.push(`${d.id}  control ${d.control}  (${d.source}, ${d.state})`);
    for (const f of d.functions) {
      const kind = f.isVf ? "VF" : (f.portType ?? "PCI");
      out.push(
        `  ${f.bdf}  ${hexDigits(f.vendorId, 4)}:${hexDigits(f.deviceId, 4)}  ${kind}${f.tee ? "  TEE-IO" : ""}`,
      );
      for (const m of f.mailboxes)
        out.push(`      DOE 0x${m.capOffset.toString(16)}  ${m.endpoint ?? "-"}  ${m.protocols.join(" ")}`);
      const tdev = tdevs.get(f.bdf);
      if (tdev) {
        const auth = tdev.auth ? ` SPDM ${tdev.auth.version}` : tdev.authError ? ` (${tdev.authError})` : "";
        const link = tdev.session ? `  session ${tdev.session}` : "";
        const ide = tdev.ide ? `  IDE ${tdev.ide}` : "";
        out.push(`      TDEV ${tdev.state}${auth}${link}${ide}  bounce ${tdev.bounce}`);
        out.push(`           cma ${tdev.cmaMailbox ?? "none"}  secured ${tdev.securedMailbox ?? "none"}`);
      }
      const tdi = tdis.get(f.bdf);
      if (tdi) {
        const bound = tdi.boundTo === null ? tdi.state : `bound to VM ${tdi.boundTo}`;
        const tdisp = tdi.tdispState ? `  TDISP ${tdi.tdispState}` : "";
        const digest = tdi.reportDigest ? `  report ${tdi.reportDigest.slice(0, 16)}` : "";
        out.push(`      TDI  ${bound}${tdisp}${digest}${tdi.tdev === f.bdf ? "" : `  (TDEV ${tdi.tdev})`}`);
      }
    }
  }
  out.push(`${view.devices.length} devices, ${view.tdevs.length} TDEVs, ${view.tdis.length} TDIs`);
  return out.join("\n");
}

async function runStatus(argv: { api: string; json: boolean }): Promise<void> {
  const { getTopology } = await import("../host/api-client.js");
  const view = await getTopology(parseEndpoint(argv.api));
  console.log(argv.json ? JSON.stringify(view, null, 2) : formatTree(view));
}

/** An event as one line: id, name, then its fields as key=value. */
export function formatEvent(m: HostEventMessage): string {
  const { event, ...fields } = m.event;
  const text = Object.entries(fields).map(
    ([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`,
  );
  return [m.id, event, ...text].join(" ");
}

/** Prints the host's events as they come, until the host goes away (an error) or a signal. */
async function runEvents(argv: { api: string; json: boolean; since?: number }): Promise<void> {
  const { watchEvents } = await import("../host/api-client.js");
  const print = (m: HostEventMessage) => console.log(argv.json ? JSON.stringify(m) : formatEvent(m));
  const watch = await watchEvents(parseEndpoint(argv.api), print, { since: argv.since });
  const why = await watch.closed;
  if (why) throw why;
}

/** One API request; prints the answer's JSON, or fails with the API's error and its detail. */
async function runApi(api: string, method: "GET" | "POST", path: string, what: string, body?: unknown) {
  const { apiRequest } = await import("../host/api-client.js");
  const rsp = await apiRequest<{ error?: string }>(parseEndpoint(api), method, path, body);
  if (rsp.status !== 200) {
    const { error, ...detail } = rsp.body;
    const more = Object.keys(detail).length ? ` ${JSON.stringify(detail)}` : "";
    throw new Error(`${what}: ${error ?? rsp.status}${more}`);
  }
  console.log(JSON.stringify(rsp.body));
}

const apiOption = <T>(y: Argv<T>) =>
  y.option("api", { type: "string", default: DEFAULT_API, describe: "Management API address ADDR:PORT" });

const bdfCommand = (command: string, what: "TDEV" | "TDI", describe: string) => ({
  command: `${command} <bdf>`,
  describe,
  builder: (y: Argv) =>
    apiOption(y).positional("bdf", { type: "string", demandOption: true, describe: `The ${what}, BB:DD.F` }),
});

const tdevCommand = (op: "connect" | "disconnect", describe: string) => ({
  ...bdfCommand(op, "TDEV", describe),
  handler: run((argv: { api: string; bdf: string }) =>
    runApi(argv.api, "POST", `/v1/tdevs/${encodeURIComponent(argv.bdf)}/${op}`, `${op} ${argv.bdf}`),
  ),
});

const tdiPath = (bdf: string) => `/v1/tdis/${encodeURIComponent(bdf)}`;

const bindCommand = {
  ...bdfCommand(
    "bind",
    "TDI",
    "Bind a TDI to a VM over its connected TDEV's session: LOCK_INTERFACE, the report verified against the assigned BARs and MSI-X, START_INTERFACE (the TDI runs). Same VM again: no-op",
  ),
  builder: (y: Argv) =>
    bdfCommand("bind", "TDI", "").builder(y).option("vm", {
      type: "string",
      demandOption: true,
      describe: "The VM to bind to (a name, or a non-negative integer)",
    }),
  handler: run((argv: { api: string; bdf: string; vm: string }) => {
    // A number names a VM as the API takes it: {"vm": 7}, not {"vm": "7"}.
    const vm = /^\d+$/.test(argv.vm) ? Number(argv.vm) : argv.vm;
    return runApi(argv.api, "POST", `${tdiPath(argv.bdf)}/bind`, `bind ${argv.bdf}`, { vm });
  }),
};

export const hostCommand = {
  command: "host",
  describe: "Run the TSM host: bus scan, TDEV/TDI registry, SPDM bouncers, management API (HTTP JSON)",
  builder: (y: Argv) =>
    y
      .command(
        "status",
        "Print a running host's topology as a tree with TDEV/TDI state",
        (y2) => apiOption(y2).option("json", { type: "boolean", default: false, describe: "Print the JSON" }),
        run(runStatus),
      )
      .command(
        "events",
        "Print a running host's events live, one line each (device added/removed, TDEV and TDI states)",
        (y2) =>
          apiOption(y2)
            .option("json", { type: "boolean", default: false, describe: "One JSON object per line" })
            .option("since", { type: "number", describe: "Replay the kept events after this id first" }),
        run(runEvents),
      )
      .command(tdevCommand("connect", "Connect a TDEV: SPDM session, IDE keys, stream enabled and Secure"))
      .command(
        tdevCommand(
          "disconnect",
          "Disconnect a TDEV: its bound TDIs stopped, IDE keys stopped, stream disabled, session ended",
        ),
      )
      .command(bindCommand)
      .command({
        ...bdfCommand(
          "unbind",
          "TDI",
          "Unbind a TDI: STOP_INTERFACE (from RUN, CONFIG_LOCKED or ERROR). Unbound: no-op",
        ),
        handler: run((argv: { api: string; bdf: string }) =>
          runApi(argv.api, "POST", `${tdiPath(argv.bdf)}/unbind`, `unbind ${argv.bdf}`),
        ),
      })
      .command({
        ...bdfCommand(
          "tdi",
          "TDI",
          "Show a TDI: bound VM, live TDISP state (asked of the device when its TDEV is connected), the report verified at bind and its SHA-256",
        ),
        handler: run((argv: { api: string; bdf: string }) =>
          runApi(argv.api, "GET", tdiPath(argv.bdf), `tdi ${argv.bdf}`),
        ),
      })
      .command(
        "$0",
        "Run the host",
        (y2) =>
          keyLogOption(captureOptions(logOptions(apiOption(y2))))
            .option("hotplug", { type: "string", describe: "Accept device announcements on ADDR:PORT" })
            .option("device", {
              type: "string",
              array: true,
              default: [] as string[],
              describe: "A device's control endpoint HOST:PORT (repeatable)",
            })
            .option("topology", {
              type: "string",
              describe: "Topology file: its entries with a control endpoint",
            })
            .option("bounce-ip", {
              type: "string",
              default: "127.0.0.1",
              describe: "Address the bounce endpoints bind to",
            })
            .option("request-timeout", {
              type: "number",
              default: 1000,
              describe: "Control wire / DOE timeout in ms",
            })
            .option("probe-interval", {
              type: "number",
              default: 1000,
              describe: "Device liveness check period in ms",
            })
            .option("unreachable-timeout", {
              type: "number",
              default: 3000,
              describe: "Remove a device that has not answered for this many ms",
            })
            .option("bounce-timeout", {
              type: "number",
              default: 2000,
              describe: "How long the bouncer and authentication wait for a mailbox to answer, in ms",
            })
            .option("trust-root", {
              type: "string",
              describe: "Root certificate (DER) device chains must end in when authenticated",
            }),
        run(runHost),
      ),
  handler: () => undefined,
};
