/**
 * `doe-emu setpci`: reads and writes an emulated function's config registers with setpci's syntax,
 * over the device's control wire or through the host's API.
 */
import type { Argv } from "yargs";
import { allOnes, Header, NO_FUNCTION_VENDOR_ID } from "../../protocol/pci.js";
import { run } from "./common.js";
import { type AccessArgs, accessOptions, noSuchDevice, parseBdf, withAccess } from "./pci-access.js";
import { applyMask, formatSetpciValue, parseSetpciOp, resolveRegister } from "./pci-text.js";

interface SetpciArgs extends AccessArgs {
  s: string;
  ops?: string[];
}

async function runSetpci(argv: SetpciArgs): Promise<void> {
  const rid = parseBdf(argv.s);
  // Every expression is checked before anything is written.
  const ops = (argv.ops ?? []).map(String).map(parseSetpciOp);
  if (!ops.length) throw new Error("setpci: name at least one register");
  await withAccess(argv, async (access) => {
    if ((await access.read(rid, Header.VENDOR_ID, 2)) === NO_FUNCTION_VENDOR_ID) throw noSuchDevice(rid);
    let cfg: Buffer | undefined;
    for (const { register, write } of ops) {
      // Capabilities are found in a fresh snapshot only when an expression names one.
      if (register.cap && !cfg) cfg = await access.snapshot(rid, 4096);
      const offset = cfg ? resolveRegister(register, cfg, rid) : register.offset;
      const { width } = register;
      if (!write) console.log(formatSetpciValue(await access.read(rid, offset, width), width));
      else {
        const old = write.mask === allOnes(width) ? 0 : await access.read(rid, offset, width);
        await access.write(rid, offset, width, applyMask(old, write.value, write.mask));
      }
    }
  });
}

export const setpciCommand = {
  command: "setpci <ops..>",
  describe: "Read or write an emulated function's config registers, as Linux setpci",
  builder: (y: Argv) =>
    accessOptions(y)
      .positional("ops", {
        type: "string",
        array: true,
        describe:
          "REG[+OFFSET][.b|.w|.l][=VALUE[:MASK]]: a name (COMMAND, BASE_ADDRESS_0, …), a capability (CAP_EXP, CAP_MSIX, ECAP_SRIOV, ECAP_DOE, ECAP_IDE, CAP0x10, ECAP0x30) or a hex offset; values in hex; without =VALUE the register is read",
      })
      .option("s", {
        type: "string",
        demandOption: true,
        describe: "The function bus:device.function, e.g. 01:00.0",
      })
      .example("$0 setpci -s 01:00.0 COMMAND=0x2:0x2 --control 127.0.0.1:2400", "Set Memory Space Enable")
      .example("$0 setpci -s 01:00.0 BASE_ADDRESS_0=fe000000 --control 127.0.0.1:2400", "Move BAR 0")
      .example(
        "$0 setpci -s 01:00.0 CAP_EXP+8.w ECAP_IDE+0x10.l --control 127.0.0.1:2400",
        "Read two registers",
      )
      .example(
        "$0 setpci -s 01:00.0 BASE_ADDRESS_0 --api 127.0.0.1:2380",
        "Through the host, to whichever device has 01:00.0",
      ),
  handler: run(runSetpci),
};
