/**
 * `doe-emu lspci`: lists an emulated device's functions and decodes their config space as Linux
 * lspci does, reading it over the device's control wire (a bus scan, then a snapshot per function).
 */
import type { Argv } from "yargs";
import { type ConfigWidth, ExtCapId, Header, parseRoutingId, Sriov } from "../../protocol/pci.js";
import { ControlClient } from "../host/control-client.js";
import { scanBus, sizeBars } from "../host/scan.js";
import { parseEndpoint } from "../net/framed.js";
import { run } from "./common.js";
import {
  type BarView,
  capabilities,
  formatFunctionLine,
  formatHexDump,
  formatVerbose,
  readBars,
} from "./pci-text.js";

/** A function's config space, `bytes` of it, read a DW at a time. */
export async function readConfig(client: ControlClient, rid: number, bytes: number): Promise<Buffer> {
  const cfg = Buffer.alloc(bytes);
  for (let at = 0; at < bytes; at += 4) cfg.writeUInt32LE(await client.cfgRead(rid, at, 4), at);
  return cfg;
}

/** `bb:dd.f` to a routing ID, or a clear error. */
export function parseBdf(text: string): number {
  const rid = parseRoutingId(text);
  if (rid === undefined) throw new Error(`"${text}" is not a bus:device.function like 01:00.0`);
  return rid;
}

/** Connects to a device's control endpoint, runs `body`, closes. */
export async function withControl<T>(endpoint: string, body: (c: ControlClient) => Promise<T>): Promise<T> {
  const client = await ControlClient.connect(parseEndpoint(endpoint));
  try {
    return await body(client);
  } finally {
    client.close();
  }
}

/** BAR sizes by BAR index (sizeBars, config writes included). */
async function barSizes(client: ControlClient, rid: number, at: number): Promise<(bigint | undefined)[]> {
  const sizes: (bigint | undefined)[] = [];
  const read = (r: number, off: number, w: ConfigWidth) => client.cfgRead(r, off, w);
  const write = (r: number, off: number, w: ConfigWidth, v: number) => client.cfgWrite(r, off, w, v);
  for (const b of await sizeBars(read, write, rid, at)) sizes[b.index] = b.size;
  return sizes;
}

/**
 * A VF's BARs read as zero; like lspci from sysfs, show where its share of the PF's VF BARs lies
 * ("[virtual]"). That takes the VF BAR sizes, so only when sizing is allowed.
 */
async function vfBars(client: ControlClient, rid: number, pf: number, sizing: boolean): Promise<BarView[]> {
  if (!sizing) return [];
  const pfCfg = await readConfig(client, pf, 4096);
  const sriov = capabilities(pfCfg).find((c) => c.extended && c.id === ExtCapId.SRIOV);
  if (!sriov) return [];
  const first = pf + pfCfg.readUInt16LE(sriov.offset + Sriov.VF_OFFSET);
  const stride = pfCfg.readUInt16LE(sriov.offset + Sriov.VF_STRIDE);
  const index = BigInt(stride ? (rid - first) / stride : 0);
  const at = sriov.offset + Sriov.BAR0;
  return readBars(pfCfg, at, await barSizes(client, pf, at)).map((b) => ({
    ...b,
    address: b.address + index * (b.size ?? 0n),
    virtual: true,
  }));
}

interface LspciArgs {
  control: string;
  s?: string;
  n: boolean;
  v: number;
  x: number;
  "size-bars": boolean;
}

/** -x, -xxx, -xxxx: 64, 256 or 4096 bytes. */
const dumpBytes = (x: number): number => (x >= 4 ? 4096 : x >= 2 ? 256 : x >= 1 ? 64 : 0);

async function runLspci(argv: LspciArgs): Promise<void> {
  const only = argv.s === undefined ? undefined : parseBdf(argv.s);
  await withControl(argv.control, async (client) => {
    const { bus } = await client.identity();
    const read = (rid: number, off: number, w: ConfigWidth) => client.cfgRead(rid, off, w);
    const functions = (await scanBus(read, bus)).filter((f) => only === undefined || f.rid === only);
    const dump = dumpBytes(argv.x);
    const lines: string[] = [];
    for (const f of functions) {
      const cfg = await readConfig(client, f.rid, argv.v || dump > 256 ? 4096 : 256);
      lines.push(formatFunctionLine(f.rid, cfg, argv.n));
      if (argv.v) {
        const bars =
          f.pf === undefined
            ? readBars(cfg, Header.BAR0, argv["size-bars"] ? await barSizes(client, f.rid, Header.BAR0) : [])
            : await vfBars(client, f.rid, f.pf, argv["size-bars"]);
        lines.push(...formatVerbose(cfg, bars));
      }
      if (dump) lines.push(...formatHexDump(cfg, dump));
      if (argv.v || dump) lines.push("");
    }
    if (lines.length) console.log(lines.join("\n"));
  });
}

export const lspciCommand = {
  command: "lspci",
  describe: "List an emulated device's PCI functions and decode their config space, as Linux lspci",
  builder: (y: Argv) =>
    y
      .option("control", {
        type: "string",
        demandOption: true,
        describe: "The device's control endpoint HOST:PORT (going through the host's API is a later step)",
      })
      .option("s", { type: "string", describe: "Only the function bus:device.function, e.g. 01:00.0" })
      .option("n", { type: "boolean", default: false, describe: "Numeric class, vendor and device IDs" })
      .option("v", { type: "count", describe: "Decode config space (-v or -vv: the same detail)" })
      .option("x", { type: "count", describe: "Hex dump: -x 64 bytes, -xxx 256, -xxxx 4096" })
      .option("size-bars", {
        type: "boolean",
        default: false,
        describe:
          "With -v, size BARs by writing all ones and restoring them, as a kernel does at enumeration (a locked TDISP interface falls to ERROR)",
      })
      .example("$0 lspci --control 127.0.0.1:2400", "One line per function")
      .example("$0 lspci -vv -s 01:00.0 --control 127.0.0.1:2400", "BARs, MSI-X, Express, SR-IOV, DOE, IDE")
      .example("$0 lspci -xxxx -s 01:00.0 --control 127.0.0.1:2400", "All 4096 bytes of config space"),
  handler: run(runLspci),
};
