import { describe, expect, it } from "vitest";
import { CapId, ExtCapId, encodeExtCapHeader, Header, Status } from "../../protocol/pci.js";
import {
  applyMask,
  capabilities,
  className,
  formatBarLine,
  formatFunctionLine,
  formatHexDump,
  formatSetpciValue,
  formatSize,
  parseSetpciOp,
  readBars,
  resolveRegister,
} from "../../src/cli/pci-text.js";

/** A config snapshot: IDs, class, a 64-bit BAR0, an Express cap at 0x40, MSI-X at 0x7c, IDE at 0x100, DOE at 0x140. */
function snapshot(): Buffer {
  const cfg = Buffer.alloc(4096);
  cfg.writeUInt16LE(0x1234, Header.VENDOR_ID);
  cfg.writeUInt16LE(0xabcd, Header.DEVICE_ID);
  cfg.writeUInt16LE(Status.CAP_LIST, Header.STATUS);
  cfg.writeUInt32LE((0x120000 << 8) | 0x01, Header.REVISION_ID);
  cfg.writeUInt32LE(0xfe00_000c, Header.BAR0);
  cfg.writeUInt32LE(0x1, Header.BAR0 + 4);
  cfg[Header.CAPABILITY_LIST] = 0x40;
  cfg[0x40] = CapId.EXP;
  cfg[0x41] = 0x7c;
  cfg[0x7c] = CapId.MSIX;
  cfg.writeUInt32LE(encodeExtCapHeader({ id: ExtCapId.IDE, version: 1, next: 0x140 }), 0x100);
  cfg.writeUInt32LE(encodeExtCapHeader({ id: ExtCapId.DOE, version: 1, next: 0 }), 0x140);
  return cfg;
}

describe("setpci expressions", () => {
  it("names carry their offset and width", () => {
    expect(parseSetpciOp("COMMAND")).toEqual({ register: { name: "COMMAND", offset: 4, width: 2 } });
    expect(parseSetpciOp("base_address_5").register).toMatchObject({ offset: 0x24, width: 4 });
    expect(parseSetpciOp("REVISION").register).toMatchObject({ offset: 8, width: 1 });
  });

  it("raw offsets are hex and need a width; a width overrides a name's", () => {
    expect(parseSetpciOp("0x10.l").register).toMatchObject({ offset: 0x10, width: 4 });
    expect(parseSetpciOp("3c.b").register).toMatchObject({ offset: 0x3c, width: 1 });
    expect(parseSetpciOp("COMMAND.b").register).toMatchObject({ offset: 4, width: 1 });
    expect(() => parseSetpciOp("0x10")).toThrow('setpci: missing width in "0x10" (.b, .w or .l)');
    expect(() => parseSetpciOp("0x11.w")).toThrow("is not a .w register");
    expect(() => parseSetpciOp("0x10.q")).toThrow('setpci: invalid width "q"');
  });

  it("capabilities by name or number, with an offset", () => {
    expect(parseSetpciOp("CAP_EXP+8.w").register).toEqual({
      name: "CAP_EXP+8.w",
      cap: { extended: false, id: CapId.EXP },
      offset: 8,
      width: 2,
    });
    expect(parseSetpciOp("ECAP_IDE+0x10.l").register).toMatchObject({
      cap: { extended: true, id: ExtCapId.IDE },
      offset: 0x10,
    });
    expect(parseSetpciOp("ECAP0x2e.l").register.cap).toEqual({ extended: true, id: ExtCapId.DOE });
    expect(parseSetpciOp("CAP11.w").register.cap).toEqual({ extended: false, id: CapId.MSIX });
    expect(() => parseSetpciOp("CAP_EXP")).toThrow("missing width");
  });

  it("writes: a hex value, a mask selecting the bits written", () => {
    expect(parseSetpciOp("BASE_ADDRESS_0=0xfe000000").write).toEqual({
      value: 0xfe00_0000,
      mask: 0xffff_ffff,
    });
    expect(parseSetpciOp("COMMAND=0x2:0x2").write).toEqual({ value: 2, mask: 2 });
    expect(parseSetpciOp("COMMAND=10").write).toEqual({ value: 0x10, mask: 0xffff });
    expect(applyMask(0x0104, 0x2, 0x2)).toBe(0x0106);
    expect(applyMask(0xffff_ffff, 0, 0x8000_0000)).toBe(0x7fff_ffff);
  });

  it("errors name what is wrong", () => {
    expect(() => parseSetpciOp("FOO")).toThrow("setpci: unknown register FOO");
    expect(() => parseSetpciOp("FOO=1")).toThrow("setpci: unknown register FOO");
    expect(() => parseSetpciOp("COMMAND=0x10000")).toThrow('setpci: value "0x10000" does not fit in .w');
    expect(() => parseSetpciOp("COMMAND=xyz")).toThrow('setpci: invalid value "xyz"');
    expect(() => parseSetpciOp("COMMAND=1:2:3")).toThrow('setpci: invalid value "1:2:3"');
  });

  it("capability registers resolve against a snapshot; reads print zero-padded hex", () => {
    const cfg = snapshot();
    expect(resolveRegister(parseSetpciOp("CAP_EXP+8.w").register, cfg, 0x100)).toBe(0x48);
    expect(resolveRegister(parseSetpciOp("ECAP_DOE+0x10.l").register, cfg, 0x100)).toBe(0x150);
    expect(() => resolveRegister(parseSetpciOp("ECAP_SRIOV.l").register, cfg, 0x100)).toThrow(
      "setpci: 01:00.0: extended capability 0x10 not found",
    );
    expect(formatSetpciValue(0x2, 2)).toBe("0002");
    expect(formatSetpciValue(0xfe00_000c, 4)).toBe("fe00000c");
    expect(formatSetpciValue(0x1, 1)).toBe("01");
  });
});

describe("lspci text", () => {
  it("the function line: class name, numeric IDs, revision; -n numbers", () => {
    const cfg = snapshot();
    expect(formatFunctionLine(0x100, cfg, false)).toBe(
      "01:00.0 Processing accelerators: Vendor 1234 Device abcd (rev 01)",
    );
    expect(formatFunctionLine(0x100, cfg, true)).toBe("01:00.0 1200: 1234:abcd (rev 01)");
    expect(className(0x020000)).toBe("Ethernet controller");
    expect(className(0x0c0330)).toBe("USB controller");
    expect(className(0x054200)).toBe("Memory controller");
    expect(className(0xfe0000)).toBe("Class fe00");
  });

  it("BAR lines as lspci prints them", () => {
    const cfg = snapshot();
    const [bar0] = readBars(cfg, Header.BAR0, [0x10_0000n]);
    expect(bar0).toEqual({
      index: 0,
      address: 0x1_fe00_0000n,
      is64: true,
      prefetchable: true,
      size: 0x10_0000n,
    });
    expect(formatBarLine(bar0!)).toBe("Region 0: Memory at 1fe000000 (64-bit, prefetchable) [size=1M]");
    expect(
      formatBarLine({ index: 2, address: 0n, is64: false, prefetchable: false, disabled: true, size: 4096n }),
    ).toBe("Region 2: Memory at 00000000 (32-bit, non-prefetchable) [disabled] [size=4K]");
    expect(formatBarLine({ index: 0, address: 0n, is64: true, prefetchable: true }, true)).toBe(
      "Region 0: Memory at 0000000000000000 (64-bit, prefetchable)",
    );
    expect(
      formatBarLine({ index: 1, address: 0x1000n, is64: false, prefetchable: false, virtual: true }),
    ).toBe("Region 1: Memory at 00001000 (32-bit, non-prefetchable) [virtual]");
    expect(formatSize(16n)).toBe("16");
    expect(formatSize(0x3000n)).toBe("12K");
    expect(formatSize(2n ** 33n)).toBe("8G");
  });

  it("hex dumps: offset, colon, 16 bytes a line", () => {
    const cfg = Buffer.alloc(4096);
    for (let i = 0; i < cfg.length; i++) cfg[i] = i & 0xff;
    const dump = formatHexDump(cfg, 64);
    expect(dump).toHaveLength(4);
    expect(dump[0]).toBe("00: 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f");
    expect(dump[3]).toBe("30: 30 31 32 33 34 35 36 37 38 39 3a 3b 3c 3d 3e 3f");
    expect(formatHexDump(cfg, 256)).toHaveLength(16);
    const full = formatHexDump(cfg, 4096);
    expect(full).toHaveLength(256);
    expect(full[16]).toBe("100: 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f");
    expect(full[255]).toBe("ff0: f0 f1 f2 f3 f4 f5 f6 f7 f8 f9 fa fb fc fd fe ff");
  });

  it("capabilities: the legacy list, then the extended one", () => {
    expect(capabilities(snapshot())).toEqual([
      { extended: false, id: CapId.EXP, offset: 0x40, version: 0 },
      { extended: false, id: CapId.MSIX, offset: 0x7c, version: 0 },
      { extended: true, id: ExtCapId.IDE, offset: 0x100, version: 1 },
      { extended: true, id: ExtCapId.DOE, offset: 0x140, version: 1 },
    ]);
  });
});
