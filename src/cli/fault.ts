/**
 * `doe-emu fault add|list|clear`: a device's fault injection rules (src/device/faults.ts), through
 * the host's API (`--api` with `--device`) or straight over the device's control wire (`--control`).
 * Prints the answer as one JSON line: the new rule's id, the rules with their counters, or how many
 * were cleared.
 */
import type { Argv } from "yargs";
import { CORRUPT_PARTS, FAULT_KINDS, FAULT_PROTOCOLS } from "../device/faults.js";
import { ControlClient } from "../host/control-client.js";
import { parseEndpoint } from "../net/framed.js";
import { run } from "./common.js";

type Action = "add" | "list" | "clear";

interface FaultArgs {
  action: Action;
  api?: string;
  device?: string;
  control?: string;
  kind?: string;
  function?: string;
  mailbox?: number;
  protocol?: string;
  code?: string;
  count?: number;
  probability?: number;
  seed?: number;
  ms?: number;
  part?: string;
}

/** The rule the flags describe; the device validates it (and names what is wrong). */
const RULE_FLAGS = [
  "kind",
  "function",
  "mailbox",
  "protocol",
  "code",
  "count",
  "probability",
  "seed",
  "ms",
  "part",
] as const;

function ruleOf(argv: FaultArgs): Record<string, unknown> {
  if (argv.kind === undefined) throw new Error("fault add: give --kind");
  return Object.fromEntries(RULE_FLAGS.filter((f) => argv[f] !== undefined).map((f) => [f, argv[f]]));
}

async function viaControl(argv: FaultArgs): Promise<unknown> {
  const client = await ControlClient.connect(parseEndpoint(argv.control!));
  try {
    if (argv.action === "add") return { id: await client.faultAdd(ruleOf(argv)) };
    if (argv.action === "list") return { rules: await client.faultList() };
    return { cleared: await client.faultClear() };
  } finally {
    client.close();
  }
}

async function viaApi(argv: FaultArgs): Promise<unknown> {
  if (argv.device === undefined) throw new Error("--api needs --device ID (as GET /v1/topology names it)");
  const { apiRequest } = await import("../host/api-client.js");
  const path = `/v1/devices/${encodeURIComponent(argv.device)}/faults`;
  const method = ({ add: "POST", list: "GET", clear: "DELETE" } as const)[argv.action];
  const rsp = await apiRequest<{ error?: string }>(
    parseEndpoint(argv.api!),
    method,
    path,
    argv.action === "add" ? ruleOf(argv) : undefined,
  );
  if (rsp.status >= 300) throw new Error(`${method} ${path}: ${rsp.body.error ?? rsp.status}`);
  return rsp.body;
}

async function runFault(argv: FaultArgs): Promise<void> {
  if ((argv.control === undefined) === (argv.api === undefined))
    throw new Error("give one of --control HOST:PORT (a device) and --api ADDR:PORT (the host)");
  console.log(JSON.stringify(argv.api !== undefined ? await viaApi(argv) : await viaControl(argv)));
}

export const faultCommand = {
  command: "fault <action>",
  describe: "Add, list or clear a device's fault injection rules (README: Faults and what the host does)",
  builder: (y: Argv) =>
    y
      .positional("action", { choices: ["add", "list", "clear"] as const, demandOption: true })
      .option("api", { type: "string", describe: "The host's management API ADDR:PORT (with --device)" })
      .option("device", { type: "string", describe: "The device's ID in the host's topology" })
      .option("control", { type: "string", describe: "A device's control endpoint HOST:PORT (or --api)" })
      .option("kind", { choices: FAULT_KINDS, describe: "add: what happens" })
      .option("function", { type: "string", describe: "add: only this function, bb:dd.f" })
      .option("mailbox", { type: "number", describe: "add: only this mailbox index of the function" })
      .option("protocol", { choices: FAULT_PROTOCOLS, describe: "add: only objects of this protocol" })
      .option("code", {
        type: "string",
        describe: "add: only this SPDM request code, TDISP request or IDE-KM object (e.g. GET_MEASUREMENTS)",
      })
      .option("count", { type: "number", describe: "add: the next N matching objects (default: every one)" })
      .option("probability", { type: "number", describe: "add: each matching object with probability P" })
      .option("seed", { type: "number", describe: "add: seed of the probability's generator (default 1)" })
      .option("ms", { type: "number", describe: "add: delay's milliseconds" })
      .option("part", { choices: CORRUPT_PARTS, describe: "add: what corrupt flips" })
      .example(
        "$0 fault add --api 127.0.0.1:2380 --device tee-nic --kind delay --ms 500 --count 3 --protocol SPDM --code GET_MEASUREMENTS",
        "Hold the next three measurement responses back 500 ms",
      )
      .example("$0 fault list --control 127.0.0.1:2400", "The rules and their counters, from the device")
      .example("$0 fault clear --api 127.0.0.1:2380 --device tee-nic", "Remove every rule"),
  handler: run(runFault),
};
