import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cliPath, type SpawnedDevice, spawnDevice } from "../../src/fixture/spawn-device.js";
import { formatEndpoint } from "../../src/net/framed.js";
import { descriptionFile } from "../support/description-file.js";

const exec = promisify(execFile);

describe("doe-emu lspci and setpci against a device process", () => {
  let dev: SpawnedDevice;
  const cli = async (...args: string[]) =>
    (await exec(process.execPath, [cliPath(), ...args, "--control", formatEndpoint(dev.control)])).stdout;
  const fails = async (...args: string[]) =>
    exec(process.execPath, [cliPath(), ...args, "--control", formatEndpoint(dev.control)]).then(
      () => expect.fail("succeeded"),
      (e: { stderr: string; code: number }) => ({ stderr: e.stderr, code: e.code }),
    );

  beforeAll(async () => {
    const file = descriptionFile({
      functions: [
        {
          bars: [
            { index: 0, type: "mem64", size: "0x100000", prefetchable: true },
            { index: 2, type: "mem32", size: 4096 },
          ],
          msix: { tableSize: 8, table: { bar: 2, offset: 0 } },
          ide: {},
          sriov: { totalVfs: 2 },
        },
      ],
    });
    dev = await spawnDevice({ args: ["--config", file] });
  });
  afterAll(async () => {
    await dev?.stop();
  });

  it("lspci lists the function; -vv decodes BARs, Express TEE-IO, MSI-X, SR-IOV, DOE and IDE", async () => {
    expect(await cli("lspci")).toBe("01:00.0 Processing accelerators: Vendor 1b36 Device de00 (rev 01)\n");
    const out = await cli("lspci", "-vv", "--size-bars", "-s", "01:00.0");
    expect(out).toContain("\tRegion 0: Memory at 00000000 (64-bit, prefetchable) [disabled] [size=1M]\n");
    expect(out).toContain("\tRegion 2: Memory at 00000000 (32-bit, non-prefetchable) [disabled] [size=4K]\n");
    expect(out).toMatch(/Capabilities: \[[0-9a-f]+\] Express \(v2\) Endpoint, MSI 00\n/);
    expect(out).toMatch(/RBE\+ FLReset\+ SlotPowerLimit 0W TEE-IO\+\n/);
    expect(out).toMatch(
      /MSI-X: Enable- Count=8 Masked-\n\t\tVector table: BAR=2 offset=00000000\n\t\tPBA: BAR=2 offset=00000080\n/,
    );
    expect(out).toMatch(/Capabilities: \[100 v1\] Data Object Exchange\n/);
    expect(out).toMatch(
      /Single Root I\/O Virtualization \(SR-IOV\)\n[\s\S]*\t\tRegion 0: Memory at 0000000000000000 \(64-bit, prefetchable\)\n/,
    );
    expect(out).toMatch(/Integrity & Data Encryption\n\t\tIDECap: Lnk=0 Sel=1 .*IDE_KM\+.*TeeLim\+\n/);
    // Sizing put every BAR back.
    expect(await cli("setpci", "-s", "01:00.0", "BASE_ADDRESS_0", "BASE_ADDRESS_2")).toBe(
      "0000000c\n00000000\n",
    );
  });

  it("-x dumps 64 bytes in lspci's format; -n prints numbers", async () => {
    const lines = (await cli("lspci", "-n", "-x")).split("\n");
    expect(lines[0]).toBe("01:00.0 1200: 1b36:de00 (rev 01)");
    expect(lines[1]).toBe("00: 36 1b 00 de 00 00 10 00 01 00 00 12 00 00 00 00");
    expect(lines.slice(1, 5).map((l) => l.slice(0, 3))).toEqual(["00:", "10:", "20:", "30:"]);
    expect(lines[5]).toBe("");
  });

  it("setpci writes a BAR (read back masked by its size) and sets Memory Space Enable with a mask", async () => {
    await cli("setpci", "-s", "01:00.0", "BASE_ADDRESS_2=0xfe000fff");
    expect(await cli("setpci", "-s", "01:00.0", "BASE_ADDRESS_2")).toBe("fe000000\n");
    await cli("setpci", "-s", "01:00.0", "BASE_ADDRESS_0=0xfe000000");
    expect(await cli("setpci", "-s", "01:00.0", "BASE_ADDRESS_0")).toBe("fe00000c\n");
    await cli("setpci", "-s", "01:00.0", "COMMAND=0x4");
    await cli("setpci", "-s", "01:00.0", "COMMAND=0x2:0x2");
    expect(await cli("setpci", "-s", "01:00.0", "COMMAND")).toBe("0006\n");
    expect(await cli("lspci", "-vv")).toContain("\tRegion 0: Memory at fe000000 (64-bit, prefetchable)\n");
    // Capability-relative registers: DEVCAP through CAP_EXP, IDE Capability through ECAP_IDE.
    const [devcap, idecap] = (await cli("setpci", "-s", "01:00.0", "CAP_EXP+4.l", "ECAP_IDE+4.l")).split(
      "\n",
    );
    expect(Number.parseInt(devcap!, 16) & 0x4000_0000).toBe(0x4000_0000);
    expect(Number.parseInt(idecap!, 16) & 0x40).toBe(0x40);
  });

  it("errors are one clear line and exit code 1", async () => {
    expect(await fails("setpci", "-s", "01:00.0", "FOO")).toEqual({
      stderr: "doe-emu: setpci: unknown register FOO\n",
      code: 1,
    });
    expect(await fails("setpci", "-s", "02:00.0", "COMMAND")).toEqual({
      stderr: "doe-emu: no such device 02:00.0\n",
      code: 1,
    });
  });
});
