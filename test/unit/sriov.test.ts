import { describe, expect, it } from "vitest";
import {
  CapId,
  DevCap,
  ExtCapId,
  FIRST_EXT_CAP,
  formatRoutingId,
  Header,
  HeaderType,
  PciExp,
  parseRoutingId,
  routingId,
  Sriov,
  SriovCtrl,
  vfIndexAt,
  vfRoutingId,
} from "../../protocol/pci.js";
import { DescriptionError, parseDescription } from "../../src/device/description.js";
import { findExtCap, modelOf } from "../support/model.js";

const nic = (sriov: object) =>
  parseDescription({
    bus: 1,
    functions: [{ deviceId: "0x1000", sriov: { totalVfs: 8, vfDeviceId: "0x1001", ...sriov } }],
  });

describe("SR-IOV", () => {
  it("computes VF routing IDs by the Linux formula, spilling onto the next bus", () => {
    const pf = routingId(1, 0, 0);
    expect(vfRoutingId(pf, 1, 1, 0)).toBe(0x0101);
    expect(vfRoutingId(pf, 0x80, 2, 3)).toBe(0x0186);
    expect(formatRoutingId(vfRoutingId(routingId(1, 0x1f, 7), 1, 1, 0))).toBe("02:00.0");
    const placement = { enabled: true, numVfs: 4, firstVfOffset: 0x80, vfStride: 2 };
    expect(vfIndexAt(0x0186, pf, placement)).toBe(3);
    expect(vfIndexAt(0x0185, pf, placement)).toBeUndefined(); // between strides
    expect(vfIndexAt(0x0188, pf, placement)).toBeUndefined(); // past NumVFs
    expect(vfIndexAt(0x0180, pf, { ...placement, enabled: false })).toBeUndefined();
  });

  it("parses and formats BDFs", () => {
    expect(parseRoutingId("02:1f.7")).toBe(routingId(2, 0x1f, 7));
    expect(formatRoutingId(parseRoutingId("0a:03.1")!)).toBe("0a:03.1");
    for (const bad of ["2:00.0", "02:20.0", "02:00.8", "02-00.0"])
      expect(parseRoutingId(bad)).toBeUndefined();
  });

  it("lays out the capability with the described registers, after the DOE capabilities", () => {
    const model = modelOf(nic({ numVfs: 3, vfEnable: true, firstVfOffset: 4, vfStride: 2 }));
    const pf = 0x0100;
    const base = findExtCap(model, pf, ExtCapId.SRIOV)!;
    expect(base).toBeGreaterThan(FIRST_EXT_CAP); // the DOE capability stays at 0x100
    expect(findExtCap(model, pf, ExtCapId.DOE)).toBe(FIRST_EXT_CAP);
    const r = (off: number) => model.configRead(pf, base + off, 2);
    expect([
      r(Sriov.CTRL),
      r(Sriov.TOTAL_VF),
      r(Sriov.NUM_VF),
      r(Sriov.VF_OFFSET),
      r(Sriov.VF_STRIDE),
    ]).toEqual([SriovCtrl.VFE, 8, 3, 4, 2]);
    expect(r(Sriov.VF_DID)).toBe(0x1001);
    expect(model.routingIds).toEqual([0x0100, 0x0104, 0x0106, 0x0108]);
  });

  it("answers config reads for enabled VFs only: a minimal type-0 header with a PCIe capability", () => {
    const model = modelOf(nic({ numVfs: 3, vfEnable: true }));
    const vf = 0x0102;
    expect(model.configRead(vf, Header.VENDOR_ID, 4)).toBe(0x10011b36);
    expect(model.configRead(vf, Header.HEADER_TYPE, 1)).toBe(HeaderType.NORMAL);
    const cap = model.configRead(vf, Header.CAPABILITY_LIST, 1);
    expect(model.configRead(vf, cap, 1)).toBe(CapId.EXP);
    expect(model.configRead(vf, cap + PciExp.FLAGS, 2) >> 4).toBe(0); // endpoint
    expect(model.configRead(vf, cap + PciExp.DEVCAP, 4) & DevCap.TEE).toBe(DevCap.TEE);
    expect(model.configRead(vf, FIRST_EXT_CAP, 4)).toBe(0); // no DOE, no SR-IOV
    expect(model.configRead(0x0104, Header.VENDOR_ID, 2)).toBe(0xffff); // VF 3 is beyond NumVFs
  });

  it("follows the PF's registers: NumVFs and VF Enable written by the host add and remove VFs", () => {
    const model = modelOf(nic({}));
    const base = findExtCap(model, 0x0100, ExtCapId.SRIOV)!;
    expect(model.routingIds).toEqual([0x0100]);
    expect(model.configRead(0x0101, 0, 2)).toBe(0xffff);
    model.configWrite(0x0100, base + Sriov.NUM_VF, 2, 2);
    model.configWrite(0x0100, base + Sriov.CTRL, 2, SriovCtrl.VFE);
    expect(model.routingIds).toEqual([0x0100, 0x0101, 0x0102]);
    model.configWrite(0x0102, Header.COMMAND, 2, 0x6);
    expect(model.configRead(0x0102, Header.COMMAND, 2)).toBe(0x6);
    model.configWrite(0x0100, base + Sriov.CTRL, 2, 0);
    expect(model.configRead(0x0102, 0, 2)).toBe(0xffff);
    model.configWrite(0x0100, base + Sriov.CTRL, 2, SriovCtrl.VFE);
    expect(model.configRead(0x0102, Header.COMMAND, 2)).toBe(0); // a re-enabled VF starts from reset
    // TotalVFs is read-only and bounds the VFs whatever NumVFs says.
    model.configWrite(0x0100, base + Sriov.TOTAL_VF, 2, 100);
    model.configWrite(0x0100, base + Sriov.NUM_VF, 2, 100);
    expect(model.routingIds).toHaveLength(9);
  });

  it("sizes VF BARs like BARs, each at least one system page, and places VF n at VF BAR + n × size", () => {
    const model = modelOf(
      nic({
        numVfs: 3,
        vfEnable: true,
        vfBars: [
          { index: 0, type: "mem64", size: "0x4000", prefetchable: true },
          { index: 2, type: "mem32", size: 256 },
        ],
      }),
    );
    const pf = 0x0100;
    const base = findExtCap(model, pf, ExtCapId.SRIOV)!;
    const vfBar = (i: number) => base + Sriov.BAR0 + 4 * i;
    const size = (i: number) => {
      model.configWrite(pf, vfBar(i), 4, 0xffffffff);
      return model.configRead(pf, vfBar(i), 4);
    };
    expect([size(0), size(1), size(2), size(3)]).toEqual([0xffffc00c, 0xffffffff, 0xfffff000, 0]);
    // An 8 KiB system page doubles the 256-byte BAR's aperture past 4 KiB; the 16 KiB one stays.
    model.configWrite(pf, base + Sriov.SYS_PGSIZE, 4, 0x2);
    expect([size(0), size(2)]).toEqual([0xffffc00c, 0xffffe000]);
    model.configWrite(pf, vfBar(0), 4, 0);
    model.configWrite(pf, vfBar(1), 4, 0x2);
    model.configWrite(pf, vfBar(2), 4, 0xe0001234);
    expect(model.configRead(pf, vfBar(2), 4)).toBe(0xe0000000);
    expect(model.bars(0x0102)).toEqual([
      { index: 0, type: "mem64", prefetchable: true, size: 0x4000, address: 0x2_0000_4000n },
      { index: 2, type: "mem32", prefetchable: false, size: 0x2000, address: 0xe000_2000n },
    ]);
    expect(model.bars(0x0104)).toEqual([]); // VF 3 is beyond NumVFs
    // A VF's own header has no BARs: they read 0 and ignore writes.
    for (let i = 0; i < 6; i++) {
      model.configWrite(0x0101, Header.BAR0 + 4 * i, 4, 0xffffffff);
      expect(model.configRead(0x0101, Header.BAR0 + 4 * i, 4)).toBe(0);
    }
  });

  it("gives every VF a 64-bit prefetchable 16 KiB VF BAR0 unless described", () => {
    expect(nic({}).functions[0]!.sriov!.vfBars).toEqual([
      { index: 0, type: "mem64", size: 0x4000, prefetchable: true },
    ]);
    expect(nic({ vfBars: [] }).functions[0]!.sriov!.vfBars).toEqual([]);
  });

  it("sets the multi-function bit with several PFs, and keeps TEE-IO per function", () => {
    const model = modelOf(
      parseDescription({ functions: [{}, { function: 1, teeIo: false, mailboxes: [] }] }),
    );
    for (const rid of [0x0100, 0x0101])
      expect(model.configRead(rid, Header.HEADER_TYPE, 1)).toBe(HeaderType.MULTI_FUNCTION);
    const devcap = (rid: number) => model.configRead(rid, 0x40 + PciExp.DEVCAP, 4) & DevCap.TEE;
    expect([devcap(0x0100), devcap(0x0101)]).toEqual([DevCap.TEE, 0]);
  });

  it("rejects descriptions whose VFs would collide or exceed TotalVFs, naming the field", () => {
    const bad =
      (fns: object[], bus = 1) =>
      () =>
        parseDescription({ bus, functions: fns });
    expect(bad([{ sriov: { totalVfs: 2, numVfs: 3 } }])).toThrow(/functions\[0\]\.sriov\.numVfs/);
    expect(bad([{ sriov: { totalVfs: 2 } }, { function: 1 }])).toThrow(/taken by function 1/);
    expect(bad([{ sriov: { totalVfs: 2, vfStride: 0 } }])).toThrow(/vfStride/);
    expect(bad([{ sriov: { totalVfs: 300 } }], 0xff)).toThrow(DescriptionError);
    expect(bad([{ sriov: { totalVfs: 300 } }], 0xff)).toThrow(/past routing ID 0xffff/);
    expect(bad([{ sriov: { totalVfs: 2, vfBars: [{ index: 0, size: 100 }] } }])).toThrow(
      "functions[0].sriov.vfBars[0].size: must be a power of two of at least 16 bytes",
    );
  });
});
