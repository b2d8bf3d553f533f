/**
 * `doe-emu launch TOPOLOGY.json`: the host and one device process per entry; stops all on a signal.
 * `doe-emu launch --cleanup-netns`: removes the namespaces of launchers that died (netns.ts).
 */
import type { Argv } from "yargs";
import type { LogLevel } from "../log.js";
import { formatEndpoint } from "../net/framed.js";
import { type CaptureArgs, captureOptions, logOptions, run } from "./common.js";
import { DEFAULT_API } from "./host.js";

interface LaunchArgs extends CaptureArgs {
  topology?: string;
  netns: boolean;
  "cleanup-netns": boolean;
  api: string;
  hotplug?: string;
  "log-level": LogLevel;
}

async function runLaunch(argv: LaunchArgs): Promise<void> {
  if (argv["cleanup-netns"]) {
    const { cleanupStaleNetns } = await import("../fixture/netns.js");
    for (const ns of await cleanupStaleNetns()) console.log(`removed namespace ${ns}`);
    return;
  }
  if (argv.topology === undefined) throw new Error("give a topology file (or --cleanup-netns)");
  // Imported here so that other commands do not load the fixture (see host.ts).
  const { startTopology } = await import("../fixture/topology.js");
  const running = await startTopology(argv.topology, {
    netns: argv.netns,
    api: argv.api,
    hotplug: argv.hotplug,
    logLevel: argv["log-level"],
    stderr: "inherit",
    pcap: argv.pcap,
    pcapSnaplen: argv["pcap-snaplen"],
  });
  let stopping = false;
  const exit = (why: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`${why}: stopping ${running.devices.length} devices and the host`);
    void running.stop().then(() => process.exit(0));
  };
  // Registered before anything is printed, so a signal right after the ready line is not lost.
  process.on("SIGTERM", () => exit("SIGTERM"));
  process.on("SIGINT", () => exit("SIGINT"));
  for (const d of running.devices) {
    const where = d.netns ? ` netns ${d.netns.namespace} link ${d.netns.hostInterface}` : "";
    console.log(`device ${d.name} pid ${d.pid ?? "-"} control ${formatEndpoint(d.control)}${where}`);
  }
  for (const t of running.tdevs) console.log(`tdev ${t.bdf} bounce ${formatEndpoint(t.bounce)}`);
  if (running.hotplug) console.log(`host hotplug on ${formatEndpoint(running.hotplug)}`);
  console.log(`host pid ${running.host.pid} api ${running.apiUrl}`);
  console.log("launch ready");
}

export const launchCommand = {
  command: "launch [topology]",
  describe: "Start the host and a device process per topology entry; Ctrl-C stops everything",
  builder: (y: Argv) =>
    captureOptions(logOptions(y))
      .positional("topology", { type: "string", describe: "Topology file (JSON)" })
      .option("netns", {
        type: "boolean",
        default: false,
        describe:
          "Run every device in a network namespace of its own, linked to the host's by a veth pair (root)",
      })
      .option("cleanup-netns", {
        type: "boolean",
        default: false,
        describe: "Only remove the network namespaces left by launchers that died, and exit",
      })
      .option("api", {
        type: "string",
        default: DEFAULT_API,
        describe: "Host management API address ADDR:PORT",
      })
      .option("hotplug", { type: "string", describe: "Host hotplug endpoint ADDR:PORT" })
      .example("$0 launch examples/topology.json", "three devices and the host; then `doe-emu host status`")
      .example("$0 launch examples/topology.json --netns", "the same, each device behind its own veth link"),
  handler: run(runLaunch),
};
