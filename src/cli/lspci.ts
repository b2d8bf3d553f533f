/**
 * `doe-emu lspci`: lists emulated functions and decodes their config space as Linux lspci does,
 * reading it over a device's control wire (a bus scan) or through the host's API (every function it
 * knows), then a snapshot per function.
 */
import type { Argv } from "yargs";
import { ExtCapId, Header, Sriov } from "../../protocol/pci.js";
import { sizeBars } from "../host/scan.js";
import { run } from "./common.js";
import { type AccessArgs, accessOptions, type PciAccess, parseBdf, withAccess } from "./pci-access.js";
import {
  type BarView,
  capabilities,
  formatFunctionLine,
  formatHexDump,
  formatVerbose,
  readBars,
} from "./pci-text.js";

/** BAR sizes by BAR index (sizeBars, config writes included). */
async function barSizes(access: PciAccess, rid: number, at: number): Promise<(bigint | undefined)[]> {
  const sizes: (bigint | undefined)[] = [];
  for (const b of await sizeBars(access.read, access.write, rid, at)) sizes[b.index] = b.size;
  return sizes;
}

/**
 * A VF's BARs read as zero; like lspci from sysfs, show where its share of the PF's VF BARs lies
 * ("[virtual]"). That takes the VF BAR sizes, so only when sizing is allowed.
 */
async function vfBars(access: PciAccess, rid: number, pf: number, sizing: boolean): Promise<BarView[]> {
  if (!sizing) return [];
  const pfCfg = await access.snapshot(pf, 4096);
  const sriov = capabilities(pfCfg).find((c) => c.extended && c.id === ExtCapId.SRIOV);
  if (!sriov) return [];
  const first = pf + pfCfg.readUInt16LE(sriov.offset + Sriov.VF_OFFSET);
  const stride = pfCfg.readUInt16LE(sriov.offset + Sriov.VF_STRIDE);
  const index = BigInt(stride ? (rid - first) / stride : 0);
  const at = sriov.offset + Sriov.BAR0;
  return readBars(pfCfg, at, await barSizes(access, pf, at)).map((b) => ({
    ...b,
    address: b.address + index * (b.size ?? 0n),
    virtual: true,
  }));
}

interface LspciArgs extends AccessArgs {
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
  await withAccess(argv, async (access) => {
    const functions = (await access.functions()).filter((f) => only === undefined || f.rid === only);
    const dump = dumpBytes(argv.x);
    const lines: string[] = [];
    for (const f of functions) {
      const cfg = await access.snapshot(f.rid, argv.v || dump > 256 ? 4096 : 256);
      lines.push(formatFunctionLine(f.rid, cfg, argv.n));
      if (argv.v) {
        const bars =
          f.pf === undefined
            ? readBars(cfg, Header.BAR0, argv["size-bars"] ? await barSizes(access, f.rid, Header.BAR0) : [])
            : await vfBars(access, f.rid, f.pf, argv["size-bars"]);
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
  describe:
    "List emulated PCI functions (a device's, or every one the host knows) and decode their config space, as Linux lspci",
  builder: (y: Argv) =>
    accessOptions(y)
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
      .example("$0 lspci -xxxx -s 01:00.0 --control 127.0.0.1:2400", "All 4096 bytes of config space")
      .example("$0 lspci -vv --api 127.0.0.1:2380", "Every function of every device the host knows"),
  handler: run(runLspci),
};
