import { describe, expect, it } from "vitest";
import { ControlError, ControlErrorCode } from "../../protocol/control.js";
import {
  CAP_LIST_NEXT,
  CapId,
  type ConfigWidth,
  DevCap,
  Doe,
  DoeStatus,
  decodeExtCapHeader,
  ExtCapId,
  FIRST_EXT_CAP,
  Header,
  HeaderType,
  PciExp,
  PciExpType,
  routingId,
  Status,
} from "../../protocol/pci.js";
import { ConfigSpace } from "../../src/device/config-space.js";
import { parseDescription } from "../../src/device/description.js";
import type { DeviceModel } from "../../src/device/model.js";
import { modelOf } from "../support/model.js";

interface ScannedFunction {
  rid: number;
  vendorId: number;
  deviceId: number;
  classRev: number;
  headerType: number;
  portType: number;
  devcap: number;
  doeOffsets: number[];
}

/** Enumerates a slot the way a PCI core does, using nothing but config reads. */
function scan(model: DeviceModel, bus: number, device: number): ScannedFunction[] {
  const read = (rid: number, off: number, w: ConfigWidth) => model.configRead(rid, off, w);
  const found: ScannedFunction[] = [];
  for (let fn = 0; fn < 8; fn++) {
    const rid = routingId(bus, device, fn);
    const id = read(rid, Header.VENDOR_ID, 4);
    if ((id & 0xffff) === 0xffff) continue;
    let expAt = 0;
    if (read(rid, Header.STATUS, 2) & Status.CAP_LIST) {
      for (let at = read(rid, Header.CAPABILITY_LIST, 1) & 0xfc, hops = 0; at && hops < 48; hops++) {
        if (read(rid, at, 1) === CapId.EXP) expAt = at;
        at = read(rid, at + CAP_LIST_NEXT, 1) & 0xfc;
      }
    }
    const doeOffsets: number[] = [];
    for (let at = FIRST_EXT_CAP, hops = 0; at && hops < 960; hops++) {
      const dw = read(rid, at, 4);
      if (dw === 0 || dw === 0xffffffff) break;
      const h = decodeExtCapHeader(dw);
      if (h.id === ExtCapId.DOE) doeOffsets.push(at);
      at = h.next;
    }
    found.push({
      rid,
      vendorId: id & 0xffff,
      deviceId: id >>> 16,
      classRev: read(rid, Header.REVISION_ID, 4),
      headerType: read(rid, Header.HEADER_TYPE, 1),
      portType: expAt ? (read(rid, expAt + PciExp.FLAGS, 2) >> 4) & 0xf : -1,
      devcap: expAt ? read(rid, expAt + PciExp.DEVCAP, 4) : 0,
      doeOffsets,
    });
    // Functions 1-7 exist only when function 0 says the device is multi-function.
    if (fn === 0 && !(read(rid, Header.HEADER_TYPE, 1) & HeaderType.MULTI_FUNCTION)) break;
  }
  return found;
}

const twoFunctions = parseDescription({
  bus: 3,
  device: 2,
  functions: [
    { function: 0, vendorId: "0x8086", deviceId: "0x1234", revision: 5, classCode: "0x020000" },
    {
      function: 2,
      teeIo: false,
      mailboxes: [{ protocols: ["0001:00", "0001:01"] }, { protocols: ["0001:00", "0001:02"] }],
    },
  ],
});

describe("config space of a described device", () => {
  it("a PCI scan of the default device finds one endpoint with TEE-IO and one DOE capability", () => {
    const model = modelOf(parseDescription({}));
    const fns = scan(model, 1, 0);
    expect(fns).toEqual([
      {
        rid: 0x0100,
        vendorId: 0x1b36,
        deviceId: 0xde00,
        classRev: (0x120000 << 8) | 1,
        headerType: HeaderType.NORMAL,
        portType: PciExpType.ENDPOINT,
        devcap: DevCap.RBER | DevCap.FLR | DevCap.TEE,
        doeOffsets: [0x100],
      },
    ]);
    expect(model.identity()).toEqual({
      name: "doe-emu",
      bus: 1,
      mailboxes: [{ rid: 0x0100, doeCapOffset: 0x100, mailbox: 0, host: "127.0.0.1", port: 5000 }],
    });
    // The DOE capability, then the IDE capability (for IDE_KM requesters), which ends the list.
    const doe = decodeExtCapHeader(model.configRead(0x100, 0x100, 4));
    expect(doe).toEqual({ id: ExtCapId.DOE, version: 1, next: 0x100 + Doe.SIZEOF });
    expect(decodeExtCapHeader(model.configRead(0x100, doe.next, 4))).toEqual({
      id: ExtCapId.IDE,
      version: 1,
      next: 0,
    });
  });

  it("a multi-function device sets bit 7 of the header type and chains a DOE capability per mailbox", () => {
    const model = modelOf(twoFunctions);
    const fns = scan(model, 3, 2);
    const [f0, f2] = fns;
    expect(fns.map((f) => f.rid)).toEqual([routingId(3, 2, 0), routingId(3, 2, 2)]);
    expect(f0!.headerType).toBe(HeaderType.MULTI_FUNCTION);
    expect(f0).toMatchObject({ vendorId: 0x8086, deviceId: 0x1234, classRev: 0x02000005 });
    expect(f0!.devcap & DevCap.TEE).toBe(DevCap.TEE);
    expect(f2!.devcap & DevCap.TEE).toBe(0);
    expect(f2!.doeOffsets).toEqual([0x100, 0x100 + Doe.SIZEOF]);
    expect(model.identity().mailboxes.map((m) => [m.rid, m.doeCapOffset, m.mailbox, m.port])).toEqual([
      [0x0310, 0x100, 0, 5000],
      [0x0312, 0x100, 0, 5010],
      [0x0312, 0x118, 1, 5011],
    ]);
  });

  it("reads all ones of the access width for a function that does not exist", () => {
    const model = modelOf(twoFunctions);
    const absent = routingId(3, 2, 1);
    expect(model.configRead(absent, 0, 4)).toBe(0xffffffff);
    expect(model.configRead(absent, 0x100, 2)).toBe(0xffff);
    expect(model.configRead(absent, 0x0e, 1)).toBe(0xff);
    expect(model.configRead(routingId(4, 2, 0), 0, 4)).toBe(0xffffffff);
    model.configWrite(absent, Header.COMMAND, 2, 0xffff); // goes nowhere, throws nothing
    expect(model.configRead(absent, Header.COMMAND, 2)).toBe(0xffff);
  });

  it("a block read returns what as many single reads do, mapped DOE registers and missing functions included", () => {
    const model = modelOf(twoFunctions);
    const rid = 0x0310;
    model.configWrite(rid, 0x100 + Doe.READ, 4, 0); // an ack with nothing to read: DOE Status shows Error
    for (const width of [1, 2, 4] as const) {
      for (const [at, count] of [
        [0, 4096 / width],
        [0x100 - width, 12 / width + 2],
        [0x104, 1],
      ] as const) {
        const block = Buffer.alloc(count * width + 2, 0x5a);
        model.configReadInto(rid, at, width, count, block, 1);
        const singles = Buffer.alloc(count * width);
        for (let i = 0; i < count; i++)
          singles.writeUIntLE(model.configRead(rid, at + i * width, width), i * width, width);
        expect(block.subarray(1, -1).equals(singles), `width ${width} from ${at}`).toBe(true);
        expect([block[0], block.at(-1)]).toEqual([0x5a, 0x5a]);
      }
    }
    const missing = Buffer.alloc(8);
    model.configReadInto(routingId(3, 2, 1), 0, 4, 2, missing, 0);
    expect(missing).toEqual(Buffer.alloc(8, 0xff));
  });

  it("keeps read-only fields and takes the writable bits", () => {
    const model = modelOf(parseDescription({}));
    const rid = 0x0100;
    const before = [0, 0x08, 0x0c, 0x34, 0x44, 0x100].map((off) => model.configRead(rid, off, 4));
    for (const off of [
      Header.VENDOR_ID,
      Header.REVISION_ID,
      Header.CAPABILITY_LIST,
      0x40 + PciExp.DEVCAP,
      FIRST_EXT_CAP,
    ]) {
      model.configWrite(rid, off, 4, 0xa5a5a5a5);
    }
    expect(model.configRead(rid, Header.VENDOR_ID, 4)).toBe(before[0]);
    expect(model.configRead(rid, Header.REVISION_ID, 4)).toBe(before[1]);
    expect(model.configRead(rid, Header.CAPABILITY_LIST, 4)).toBe(before[3]);
    expect(model.configRead(rid, 0x40 + PciExp.DEVCAP, 4)).toBe(before[4]);
    expect(model.configRead(rid, FIRST_EXT_CAP, 4)).toBe(before[5]);
    // Command: only memory, bus master and INTx disable stick; Status keeps its Capabilities List bit.
    model.configWrite(rid, Header.COMMAND, 4, 0xffffffff);
    expect(model.configRead(rid, Header.COMMAND, 2)).toBe(0x0406);
    expect(model.configRead(rid, Header.STATUS, 2)).toBe(Status.CAP_LIST);
    // A byte write touches one byte only.
    model.configWrite(rid, Header.CACHE_LINE_SIZE, 1, 0x10);
    expect(model.configRead(rid, Header.CACHE_LINE_SIZE, 4)).toBe(0x10);
    // Initiate-FLR reads back 0.
    model.configWrite(rid, 0x40 + PciExp.DEVCTL, 2, 0x8000 | 0x2000);
    expect(model.configRead(rid, 0x40 + PciExp.DEVCTL, 2)).toBe(0x2000);
  });

  it("refuses bad widths, misaligned and out-of-range accesses with a code", () => {
    const model = modelOf(parseDescription({}));
    const codeOf = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return e instanceof ControlError ? e.code : -1;
      }
      return 0;
    };
    expect(codeOf(() => model.configRead(0x100, 0, 3))).toBe(ControlErrorCode.BAD_WIDTH);
    expect(codeOf(() => model.configRead(0x100, 1, 2))).toBe(ControlErrorCode.MISALIGNED);
    expect(codeOf(() => model.configWrite(0x100, 0x1000, 4, 0))).toBe(ControlErrorCode.OUT_OF_RANGE);
    // The same rules hold for a missing function.
    expect(codeOf(() => model.configRead(0x0105, 2, 4))).toBe(ControlErrorCode.MISALIGNED);
  });

  it("DOE registers: only DW accesses reach the mailboxes, and Status reads at any width", () => {
    const model = modelOf(parseDescription({}));
    const rid = 0x0100;
    const cap = 0x100;
    model.configWrite(rid, cap + Doe.READ, 2, 0); // ignored: an ack needs a DW write
    expect(model.configRead(rid, cap + Doe.STATUS, 4)).toBe(0);
    model.configWrite(rid, cap + Doe.READ, 4, 0); // ack with nothing to read: Error
    expect(model.configRead(rid, cap + Doe.STATUS, 4)).toBe(DoeStatus.ERROR);
    expect(model.configRead(rid, cap + Doe.STATUS, 1)).toBe(DoeStatus.ERROR);
    model.configWrite(rid, cap + Doe.CTRL, 1, 1); // Abort through a byte write
    expect(model.configRead(rid, cap + Doe.STATUS, 4)).toBe(0);
    expect(model.configRead(rid, cap + Doe.CAP, 4)).toBe(0);
    expect(model.configRead(rid, cap + Doe.CTRL, 4)).toBe(0);
  });
});

describe("ConfigSpace masks", () => {
  it("clears write-1-to-clear bits and leaves the others", () => {
    const space = new ConfigSpace();
    space.define(0x06, 2, 0x8110, { w1c: 0xf900 });
    space.write(0x06, 2, 0x0100);
    expect(space.read(0x06, 2)).toBe(0x8010);
    space.write(0x06, 2, 0xffff);
    expect(space.read(0x06, 2)).toBe(0x0010);
  });
});
