import { describe, expect, it } from "vitest";
import { CapId, Command, Header, Msix, MsixFlags } from "../../protocol/pci.js";
import { DescriptionError, parseDescription } from "../../src/device/description.js";
import type { DeviceModel } from "../../src/device/model.js";
import { findCap, modelOf } from "../support/model.js";

const RID = 0x0100;
const bar = (i: number) => Header.BAR0 + 4 * i;
const fn = (f: object) => parseDescription({ functions: [f] });

/** What a host reads from BAR `i` after writing all ones to it (Linux __pci_read_base). */
function sizeMask(model: DeviceModel, i: number): number {
  model.configWrite(RID, bar(i), 4, 0xffffffff);
  return model.configRead(RID, bar(i), 4);
}

describe("BARs", () => {
  it("the default function has a 64-bit prefetchable 1 MiB BAR0, sized through both of its DWs", () => {
    const model = modelOf(parseDescription({}));
    expect([model.configRead(RID, bar(0), 4), model.configRead(RID, bar(1), 4)]).toEqual([0x0000000c, 0]);
    expect([sizeMask(model, 0), sizeMask(model, 1)]).toEqual([0xfff0000c, 0xffffffff]);
    expect([2, 3, 4, 5].map((i) => sizeMask(model, i))).toEqual([0, 0, 0, 0]);
  });

  it("all ones read back as the size mask with the type bits, for 32-bit, 64-bit and prefetchable BARs", () => {
    const model = modelOf(
      fn({
        bars: [
          { index: 0, type: "mem32", size: 4096 },
          { index: 1, type: "mem32", size: 16, prefetchable: true },
          { index: 2, type: "mem64", size: 2 ** 33, prefetchable: true },
          { index: 5, type: "mem32", size: "0x80000000" },
        ],
      }),
    );
    expect([0, 1, 2, 3, 4, 5].map((i) => sizeMask(model, i))).toEqual([
      0xfffff000, 0xfffffff8, 0x0000000c, 0xfffffffe, 0, 0x80000000,
    ]);
  });

  it("an address written reads back with the bits below the size as 0, and bars() reports it", () => {
    const model = modelOf(
      fn({
        bars: [
          { index: 0, size: 0x10_0000, prefetchable: true },
          { index: 2, type: "mem32", size: 4096 },
        ],
      }),
    );
    model.configWrite(RID, bar(0), 4, 0xfe012345);
    model.configWrite(RID, bar(1), 4, 0x1);
    model.configWrite(RID, bar(2), 4, 0x12345678);
    expect([0, 1, 2].map((i) => model.configRead(RID, bar(i), 4))).toEqual([0xfe00000c, 0x1, 0x12345000]);
    // Byte writes reach one byte of the address.
    model.configWrite(RID, bar(2) + 3, 1, 0xab);
    expect(model.configRead(RID, bar(2), 4)).toBe(0xab345000);
    expect(model.bars(RID)).toEqual([
      { index: 0, type: "mem64", prefetchable: true, size: 0x10_0000, address: 0x1_fe00_0000n },
      { index: 2, type: "mem32", prefetchable: false, size: 4096, address: 0xab34_5000n },
    ]);
    expect(model.bars(0x0107)).toEqual([]);
  });

  it("Memory Space Enable is read-write", () => {
    const model = modelOf(parseDescription({}));
    model.configWrite(RID, Header.COMMAND, 2, Command.MEMORY);
    expect(model.configRead(RID, Header.COMMAND, 2)).toBe(Command.MEMORY);
    model.configWrite(RID, Header.COMMAND, 2, 0);
    expect(model.configRead(RID, Header.COMMAND, 2)).toBe(0);
  });

  it.each([
    [[{ index: 0, size: 100 }], "functions[0].bars[0].size: must be a power of two of at least 16 bytes"],
    [[{ index: 0, size: 8 }], "functions[0].bars[0].size: must be a power of two of at least 16 bytes"],
    [[{ index: 0, type: "mem32", size: 2 ** 32 }], "functions[0].bars[0].size: must be at most 2 GiB"],
    [[{ index: 5, size: 4096 }], "functions[0].bars[0].index: a 64-bit BAR takes two slots"],
    [[{ index: 6, size: 4096 }], "functions[0].bars[0].index:"],
    [[{ index: 0, type: "mem16", size: 4096 }], "functions[0].bars[0].type:"],
    [
      [
        { index: 0, size: 4096 },
        { index: 1, type: "mem32", size: 4096 },
      ],
      "functions[0].bars[1].index: BAR slot 1 is already taken by BAR 0",
    ],
  ])("rejects BARs %j naming the bad field", (bars, message) => {
    expect(() => fn({ bars })).toThrow(DescriptionError);
    expect(() => fn({ bars })).toThrow(message);
  });
});

describe("MSI-X capability", () => {
  const bars = [
    { index: 0, size: 0x4000 },
    { index: 2, type: "mem32", size: 0x1000 },
    { index: 4, size: 2 ** 33 },
  ];

  it("follows the PCI Express capability: Table Size and the Table/PBA registers read-only, Enable and Function Mask read-write", () => {
    const model = modelOf(
      fn({
        bars,
        msix: { tableSize: 16, table: { bar: 0, offset: 0x2000 }, pba: { bar: 2, offset: 0x800 } },
      }),
    );
    const cap = findCap(model, RID, CapId.MSIX)!;
    expect(cap).toBeGreaterThan(findCap(model, RID, CapId.EXP)!);
    const regs = () =>
      [Msix.FLAGS, Msix.TABLE, Msix.PBA].map((off) =>
        model.configRead(RID, cap + off, off === Msix.FLAGS ? 2 : 4),
      );
    expect(regs()).toEqual([15, 0x2000, 0x802]);
    for (const off of [Msix.TABLE, Msix.PBA]) model.configWrite(RID, cap + off, 4, 0xffffffff);
    model.configWrite(RID, cap + Msix.FLAGS, 2, 0xffff);
    expect(regs()).toEqual([MsixFlags.ENABLE | MsixFlags.MASKALL | 15, 0x2000, 0x802]);
    model.configWrite(RID, cap + Msix.FLAGS, 2, 0);
    expect(regs()[0]).toBe(15);
  });

  it("puts the PBA right after the table unless placed, and has no capability unless described", () => {
    const msix = fn({ bars, msix: { tableSize: 4 } }).functions[0]!.msix;
    expect(msix).toEqual({ tableSize: 4, table: { bar: 0, offset: 0 }, pba: { bar: 0, offset: 64 } });
    expect(findCap(modelOf(parseDescription({})), RID, CapId.MSIX)).toBeUndefined();
  });

  it.each([
    [{ tableSize: 0 }, "functions[0].msix.tableSize:"],
    [{ tableSize: 2049 }, "functions[0].msix.tableSize:"],
    [{ tableSize: 1, table: { bar: 1, offset: 0 } }, "functions[0].msix.table.bar: BAR 1 is not described"],
    [
      { tableSize: 1, table: { bar: 0, offset: 4 } },
      "functions[0].msix.table.offset: must be a multiple of 8",
    ],
    [
      { tableSize: 65, pba: { bar: 2, offset: 0xff8 } },
      "functions[0].msix.pba.offset: 16 bytes at offset 4088 do not fit in BAR 2 (4096 bytes)",
    ],
    [
      { tableSize: 1025, table: { bar: 0, offset: 0 } },
      "functions[0].msix.table.offset: 16400 bytes at offset 0 do not fit in BAR 0 (16384 bytes)",
    ],
    [
      { tableSize: 8, pba: { bar: 0, offset: 64 } },
      "functions[0].msix.pba.offset: the PBA overlaps the table",
    ],
    [
      { tableSize: 2048, table: { bar: 4, offset: 0xffff_fff8 } },
      "functions[0].msix.pba.offset: must fit in 32 bits",
    ],
  ])("rejects MSI-X %j naming the bad field", (msix, message) => {
    expect(() => fn({ bars, msix })).toThrow(DescriptionError);
    expect(() => fn({ bars, msix })).toThrow(message);
  });
});
