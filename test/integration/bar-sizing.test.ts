import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Bar, Command, Header } from "../../protocol/pci.js";
import { type SpawnedDevice, spawnDevice } from "../../src/fixture/spawn-device.js";
import { ControlClient } from "../../src/host/control-client.js";
import { sizeBars as sizeBarsOf } from "../../src/host/scan.js";
import { descriptionFile } from "../support/description-file.js";

const RID = 0x0100;
const barAt = (i: number) => Header.BAR0 + 4 * i;

/** Sizes the function's BARs as Linux does, with nothing but config reads and writes (sizeBars). */
const sizeBars = (client: ControlClient) =>
  sizeBarsOf(
    (rid, off, w) => client.cfgRead(rid, off, w),
    (rid, off, w, v) => client.cfgWrite(rid, off, w, v),
    RID,
  );

describe("BARs of a device process, sized and assigned over the control wire", () => {
  let dev: SpawnedDevice;
  let client: ControlClient;

  beforeAll(async () => {
    const file = descriptionFile({
      functions: [
        {
          bars: [
            { index: 0, type: "mem64", size: "0x100000", prefetchable: true },
            { index: 2, type: "mem32", size: 4096 },
          ],
        },
      ],
    });
    dev = await spawnDevice({ args: ["--config", file] });
    client = await ControlClient.connect(dev.control);
  });
  afterAll(async () => {
    client.close();
    await dev.stop();
  });

  it("a host finds each BAR's type and size by writing all ones, then assigns addresses and enables decode", async () => {
    expect(await sizeBars(client)).toEqual([
      { index: 0, is64: true, prefetchable: true, size: 0x100000n },
      { index: 2, is64: false, prefetchable: false, size: 0x1000n },
    ]);
    // Sizing restored every BAR.
    const bars = async () => Promise.all([0, 1, 2].map((i) => client.cfgRead(RID, barAt(i), 4)));
    expect(await bars()).toEqual([Bar.MEM_TYPE_64 | Bar.PREFETCH, 0, 0]);

    await client.cfgWrite(RID, barAt(0), 4, 0x4010_0000);
    await client.cfgWrite(RID, barAt(1), 4, 0x8);
    await client.cfgWrite(RID, barAt(2), 4, 0xfebf_f000);
    await client.cfgWrite(RID, Header.COMMAND, 2, Command.MEMORY | Command.MASTER);
    expect(await bars()).toEqual([0x4010_000c, 0x8, 0xfebf_f000]);
    expect(await client.cfgRead(RID, Header.COMMAND, 2)).toBe(Command.MEMORY | Command.MASTER);
  });
});
